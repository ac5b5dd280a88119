//! Building and running the api: `Application::build` binds (port 0 allowed) and `app` gives the router, so
//! tests can drive either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use concert_core::request_id::RequestIds;
use concert_core::token::TokenSigner;
use concert_core::{ErrorCode, Problem};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::ApiConfig;
use crate::error::problem_response;
use crate::event_streams::StreamRegistry;
use crate::openapi::ApiDoc;
use crate::readiness::Readiness;
use crate::replies::{run_reply_reader, ReplyHub};
use crate::rooms::{run_claim_writer, run_refresher, RoomCache};
use crate::seat_maps::SeatMaps;
use crate::state::{AppState, DateCache, Shared};

/// Outcomes kept in memory per instance, and for how long.
const REPLY_CAPACITY: usize = 200_000;
const REPLY_TTL: Duration = Duration::from_secs(120);
/// How stale the waiting-room cache may get.
const ROOM_REFRESH: Duration = Duration::from_millis(250);
/// How often the claims seen by this instance are written (one statement per beat). Well inside
/// `CLAIM_GRACE_MS`, the time the ticker waits past a claim deadline before ending unclaimed places.
const CLAIM_WRITE: Duration = Duration::from_millis(250);
/// How long a stopping api tries to write the claims made while it drained.
const FINAL_CLAIMS_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of the background tasks' pool: the refresher, the claim writer and the readiness check.
const BACKGROUND_CONNECTIONS: u32 = 3;
/// Largest request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects (lazily: a down database or broker makes the instance unready, not dead) and binds the port.
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        let settings = &config.settings;
        let pool = concert_core::db::pool(&settings.database_url, settings.db_max_connections)?;
        let background_pool =
            concert_core::db::pool(&settings.database_url, BACKGROUND_CONNECTIONS)?;
        let producer = concert_core::kafka::command_producer(
            &settings.kafka_brokers,
            config.kafka_linger_ms,
            config.limits.publish_timeout,
        )?;
        let rooms = Arc::new(RoomCache::default());
        let seat_maps = Arc::new(SeatMaps::default());
        let state = AppState::new(Shared {
            pool,
            background_pool,
            producer,
            topics: Arc::new(settings.topics()),
            signer: TokenSigner::new(settings.token_secret.as_bytes().to_vec()),
            request_ids: RequestIds::new(settings.token_secret.as_bytes().to_vec()),
            replies: Arc::new(ReplyHub::new(
                REPLY_CAPACITY,
                REPLY_TTL,
                rooms.clone(),
                seat_maps.clone(),
            )),
            rooms,
            dates: Arc::new(DateCache::default()),
            seat_maps: seat_maps.clone(),
            limits: Arc::new(crate::rate_limits::RateLimiters::new(&config)),
            anonymous_slots: Arc::new(crate::address_slots::AddressSlots::new(
                config.limits.anonymous_in_flight_per_address,
            )),
            metrics: crate::http_metrics::recorder(),
            readiness: Arc::new(Readiness::default()),
            streams: Arc::new(StreamRegistry::new(config.limits.max_streams)),
            config: Arc::new(config),
        });
        state
            .readiness
            .check(&state.background_pool, &state.producer)
            .await;
        if let Err(err) = state.rooms.refresh(&state.background_pool).await {
            tracing::warn!(error = ?err, "waiting room cache not loaded yet; will retry");
        }
        let listener = TcpListener::bind(("0.0.0.0", state.config.port))
            .await
            .context("binding the api port")?;
        Ok(Self { listener, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` turns true, with the reply reader and the cache refresher alongside.
    pub async fn run_until_stopped(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let state = self.state.clone();
        let settings = &state.config.settings;
        tokio::spawn(run_reply_reader(
            state.replies.clone(),
            settings.kafka_brokers.clone(),
            settings.kafka_fetch,
            state.topics.replies.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(run_refresher(
            state.rooms.clone(),
            state.background_pool.clone(),
            ROOM_REFRESH,
            shutdown.clone(),
        ));
        tokio::spawn(run_claim_writer(
            state.rooms.clone(),
            state.background_pool.clone(),
            CLAIM_WRITE,
            shutdown.clone(),
        ));
        tokio::spawn(crate::readiness::run_checks(
            state.readiness.clone(),
            state.background_pool.clone(),
            state.producer.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(prune_replies(state.replies.clone(), shutdown.clone()));
        tokio::spawn(concert_core::telemetry::drain_histograms(
            state.metrics.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(crate::rate_limits::run_forgetter(
            state.limits.clone(),
            shutdown.clone(),
        ));
        tracing::info!(addr = %self.addr(), "api listening");
        let header_read_timeout = state.config.limits.header_read_timeout;
        let served = crate::shedding::serve(
            self.listener,
            app(state.clone()),
            header_read_timeout,
            shutdown,
        )
        .await
        .context("serving http");
        // Requests answered while the connections drained claimed places too; the claim writer stopped at
        // the signal, so they are written now (a bounded wait: a database that does not answer loses them).
        let flushed = tokio::time::timeout(
            FINAL_CLAIMS_TIMEOUT,
            crate::rooms::claim_writer::write_claims(&state.rooms, &state.background_pool),
        )
        .await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("claims made while draining could not all be written");
        }
        served
    }
}

async fn prune_replies(hub: Arc<ReplyHub>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => hub.prune(),
            _ = shutdown.changed() => return,
        }
    }
}

/// The router with every route, the docs, and the layers that keep every answer a problem document and
/// the work in progress bounded.
pub fn app(state: AppState) -> Router {
    let limits = state.config.limits;
    let router = crate::routes::router()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(|| async { problem(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            problem(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::anonymous::limit,
        ))
        .layer(axum::middleware::from_fn(crate::http_metrics::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            problem(ErrorCode::Internal, "an internal error occurred")
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    crate::shedding::limit(router, &limits)
}

fn problem(code: ErrorCode, detail: &str) -> Response {
    let response = problem_response(&Problem::new(code, detail));
    debug_assert_ne!(response.status(), StatusCode::OK);
    response.into_response()
}
