//! The admission ticker: moves each waiting room's frontier forward by the room's policy.
//!
//! Each step runs under the room's row lock and moves the frontier with a conditional update, so any
//! number of tickers in any number of processes never admit anyone twice or skip anyone. Admission order
//! is seq order, which is the order in which the log accepted the joins.

use std::time::Duration;

use anyhow::Context;
use chrono::TimeDelta;
use concert_core::admission::admit_step;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::instrument;
use uuid::Uuid;

use crate::backoff::{sleep_or_stop, Backoff};
use crate::metrics;
use crate::store::queue::{self, AdmissionStep};

/// Runs admission rounds every `tick` until shutdown.
pub(crate) async fn run(
    pool: PgPool,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        let delay = match admit_round(&pool).await {
            Ok(()) => {
                backoff.reset();
                tick
            }
            Err(err) => {
                let delay = backoff.next_delay().max(tick);
                tracing::warn!(error = format!("{err:#}"), ?delay, "admission round failed");
                delay
            }
        };
        if !sleep_or_stop(delay, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// One pass over the rooms with someone waiting, each in its own transaction.
async fn admit_round(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await.context("getting a connection")?;
    let rooms = queue::rooms_with_work(&mut conn).await?;
    drop(conn);
    let mut failed = None;
    for concert_id in rooms {
        match admit_room(pool, concert_id).await {
            Ok(_) => {}
            // A join batch or another ticker held the room for long; the next tick will do.
            Err(err) if queue::is_lock_timeout(&err) => {
                tracing::debug!(%concert_id, "waiting room busy; skipped")
            }
            Err(err) => {
                tracing::warn!(%concert_id, error = format!("{err:#}"), "admission step failed");
                failed = Some(err);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Ends the places nobody claimed in time, then admits as many as the policy allows now, in one
/// transaction under the room lock: the slots the ghosts held go to the next in line in the same step.
/// Returns how many were admitted.
#[instrument(skip_all, fields(%concert_id))]
async fn admit_room(pool: &PgPool, concert_id: Uuid) -> anyhow::Result<i64> {
    let mut tx = pool.begin().await.context("starting a transaction")?;
    let Some(room) = queue::lock_room_for_admission(&mut tx, concert_id).await? else {
        return Ok(0);
    };
    let abandoned = queue::end_unclaimed(&mut tx, concert_id).await?;
    let admitted = admit_waiting(&mut tx, concert_id, &room).await?;
    if abandoned == 0 && admitted == 0 {
        return Ok(0);
    }
    tx.commit().await.context("committing the admission step")?;
    if abandoned > 0 {
        tracing::debug!(abandoned, "ended unclaimed places");
        metrics::abandoned(abandoned);
    }
    if admitted > 0 {
        tracing::debug!(
            from = room.admitted_upto + 1,
            upto = room.admitted_upto + admitted,
            "admitted"
        );
        metrics::admitted(admitted);
    }
    Ok(admitted)
}

/// The admission step itself, inside the caller's transaction. Returns how many were admitted.
async fn admit_waiting(
    tx: &mut sqlx::PgConnection,
    concert_id: Uuid,
    room: &queue::RoomForAdmission,
) -> anyhow::Result<i64> {
    let waiting = room.last_seq - room.admitted_upto;
    if waiting <= 0 {
        return Ok(0);
    }
    let active = queue::active_count(tx, concert_id).await?;
    let step = admit_step(&room.policy, waiting, active, room.now, room.next_admit_at);
    if step.count <= 0 {
        return Ok(0);
    }
    let active_until = room.now + TimeDelta::seconds(i64::from(room.policy.active_seconds));
    let admission = AdmissionStep {
        concert_id,
        old_upto: room.admitted_upto,
        count: step.count,
        admitted_at: room.now,
        active_until,
        claim_until: (room.now + TimeDelta::seconds(i64::from(room.policy.claim_seconds)))
            .min(active_until),
        next_admit_at: step.next_admit_at,
    };
    if !queue::admit(tx, &admission).await? {
        return Ok(0);
    }
    Ok(step.count)
}
