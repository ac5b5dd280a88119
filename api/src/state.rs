//! The application state every handler gets: one cheap-to-clone handle.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use concert_core::kafka_stats::Producer;
use concert_core::request_id::RequestIds;
use concert_core::token::TokenSigner;
use concert_core::topics::Topics;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use uuid::Uuid;

use crate::address_slots::AddressSlots;
use crate::config::ApiConfig;
use crate::db::catalog::DateInfo;
use crate::event_streams::StreamRegistry;
use crate::rate_limits::RateLimiters;
use crate::readiness::Readiness;
use crate::replies::ReplyHub;
use crate::rooms::RoomCache;
use crate::seat_maps::SeatMaps;

/// The state behind one `Arc`: axum clones it for every extractor and middleware of every request, so a
/// clone is one reference count, not one per field (the token keys' `Vec`s were copied on each clone).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub config: Arc<ApiConfig>,
    /// The pool requests use.
    pub pool: PgPool,
    /// A few connections of the background tasks' own (the waiting-room refresher, the claim writer, the
    /// readiness check), which no request can take.
    pub background_pool: PgPool,
    pub producer: Producer,
    pub topics: Arc<Topics>,
    pub signer: TokenSigner,
    pub request_ids: RequestIds,
    pub replies: Arc<ReplyHub>,
    pub rooms: Arc<RoomCache>,
    pub dates: Arc<DateCache>,
    /// Rendered seat maps, re-read at most every half second per date (`seat_maps`).
    pub seat_maps: Arc<SeatMaps>,
    pub limits: Arc<RateLimiters>,
    /// Anonymous requests in progress per client address (`address_slots`, taken by `anonymous`).
    pub anonymous_slots: Arc<AddressSlots>,
    pub metrics: PrometheusHandle,
    pub readiness: Arc<Readiness>,
    pub streams: Arc<StreamRegistry>,
}

/// Dates never move between concerts nor change their seat count, so once read they are kept.
#[derive(Default)]
pub struct DateCache(RwLock<HashMap<Uuid, DateInfo>>);

impl DateCache {
    pub async fn get(&self, pool: &PgPool, date_id: Uuid) -> Result<Option<DateInfo>, sqlx::Error> {
        if let Some(info) = self.0.read().expect("date cache lock").get(&date_id) {
            return Ok(Some(*info));
        }
        let info = crate::db::catalog::date_info(pool, date_id).await?;
        if let Some(info) = info {
            self.0
                .write()
                .expect("date cache lock")
                .insert(date_id, info);
        }
        Ok(info)
    }
}
