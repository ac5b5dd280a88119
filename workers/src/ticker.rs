//! The admission ticker: moves each waiting room's frontier forward by the room's policy.
//!
//! Each step runs under the room's row lock and moves the frontier with a conditional update, so any
//! number of tickers in any number of processes never admit anyone twice or skip anyone. Admission order
//! is line-number order: the order in which the log accepted the joins, except that the places that joined
//! before a room's `opens_at` are admitted first, in the order of the room's draw (`admission::draw`).
//! The opening is a step like any other: the first ticker (or join batch) to hold the room lock after
//! `opens_at` records the draw, and nobody is admitted before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::TimeDelta;
use concert_core::admission::{admit_step, Draw, DrawOrder};
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
    let mut orders = Orders::default();
    loop {
        let delay = match admit_round(&pool, &mut orders).await {
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

/// The orders of the draws this ticker has seen, by concert: computed once per process (a draw never
/// changes), so a step costs no hashing.
#[derive(Default)]
struct Orders(HashMap<Uuid, ([u8; 32], Arc<DrawOrder>)>);

impl Orders {
    fn of(&mut self, concert_id: Uuid, draw: &Draw) -> Arc<DrawOrder> {
        match self.0.get(&concert_id) {
            Some((seed, order)) if *seed == draw.seed => order.clone(),
            _ => {
                let order = Arc::new(draw.order());
                self.0.insert(concert_id, (draw.seed, order.clone()));
                order
            }
        }
    }
}

/// One pass over the rooms with someone waiting, each in its own transaction.
async fn admit_round(pool: &PgPool, orders: &mut Orders) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await.context("getting a connection")?;
    let rooms = queue::rooms_with_work(&mut conn).await?;
    drop(conn);
    let mut failed = None;
    for concert_id in rooms {
        match admit_room(pool, concert_id, orders).await {
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
async fn admit_room(pool: &PgPool, concert_id: Uuid, orders: &mut Orders) -> anyhow::Result<i64> {
    let mut tx = pool.begin().await.context("starting a transaction")?;
    let Some(mut room) = queue::lock_room_for_admission(&mut tx, concert_id).await? else {
        return Ok(0);
    };
    if room.before_opening() {
        return Ok(0);
    }
    let drew = match room.draw {
        Some(_) => false,
        None => {
            room.draw = queue::draw_if_due(&mut tx, concert_id).await?;
            room.draw.is_some()
        }
    };
    let order = match &room.draw {
        Some(draw) => orders.of(concert_id, draw),
        None => Arc::new(DrawOrder::none()),
    };
    let settled = queue::end_unclaimed(&mut tx, concert_id).await?;
    let abandoned = settled.ended;
    let admitted = admit_waiting(&mut tx, concert_id, &room, &order).await?;
    // A step settled with every place claimed changes nothing else, but must be kept: unsettled, it would
    // never be pruned and its room would stay on the list of rooms with work.
    if settled.steps == 0 && admitted == 0 && !drew {
        return Ok(0);
    }
    tx.commit().await.context("committing the admission step")?;
    if let (true, Some(draw)) = (drew, &room.draw) {
        tracing::info!(
            places = draw.places,
            "drew the pre-queue's order at the opening"
        );
    }
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
    order: &DrawOrder,
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
    // The drawn places of the step get their line numbers now (the later ones have had theirs since
    // they joined): a step writes only its own places, so the opening itself writes none.
    let drawn_upto = (room.admitted_upto + step.count).min(order.places());
    let lines: Vec<i64> = (room.admitted_upto + 1..=drawn_upto).collect();
    let seqs: Vec<i64> = lines.iter().map(|&l| order.seq(l)).collect();
    queue::number_lines(tx, concert_id, &seqs, &lines).await?;
    Ok(step.count)
}
