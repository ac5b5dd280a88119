//! What applying commands works with: a command as read from the log, and the context every batch is
//! applied in (the pool, the rules that come from configuration, the shutdown signal).

use std::time::Duration;

use concert_core::commands::CommandEnvelope;
use sqlx::PgPool;
use tokio::sync::watch;

use super::errors::ShuttingDown;
use crate::backoff::sleep_or_stop;
use crate::store::requests::NewRequest;

/// A command as read from the log, with where it sat (recorded as `source_partition`/`source_offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCommand {
    pub partition: i32,
    pub offset: i64,
    pub envelope: CommandEnvelope,
}

impl LogCommand {
    /// The `requests` row that records this command: who sent it, what it is, where it sat in the log.
    pub(crate) fn request_row(&self) -> NewRequest<'_> {
        NewRequest {
            request_id: self.envelope.request_id,
            user_id: self.envelope.user_id,
            kind: self.envelope.command.kind(),
            fingerprint: &self.envelope.fingerprint,
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// What applying commands needs: the pool and the rules that come from configuration.
#[derive(Debug, Clone)]
pub struct ApplyContext {
    pub pool: PgPool,
    /// Most live holds a user may have on one concert date.
    pub max_holds_per_user: i64,
    shutdown: Option<watch::Receiver<bool>>,
}

impl ApplyContext {
    pub fn new(pool: PgPool, max_holds_per_user: i64) -> Self {
        Self {
            pool,
            max_holds_per_user,
            shutdown: None,
        }
    }

    /// Lets a retry loop give up (with [`ShuttingDown`]) when shutdown is asked for, instead of waiting for
    /// a database that may never come back.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Waits `delay` before a retry; fails with [`ShuttingDown`] if shutdown is asked for meanwhile.
    pub(super) async fn pause(&self, delay: Duration) -> anyhow::Result<()> {
        match &self.shutdown {
            None => tokio::time::sleep(delay).await,
            Some(shutdown) => {
                if !sleep_or_stop(delay, &mut shutdown.clone()).await {
                    return Err(ShuttingDown.into());
                }
            }
        }
        Ok(())
    }
}
