//! What a phase offered and sent, kept per round in the report, and how the workers of a closed-loop phase
//! are gathered into it. Shared by the hold phases, the closed-loop joins and the phases that only count
//! jobs.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{OpStats, Recorder};

/// What a timed phase offered and managed.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseFigures {
    pub name: String,
    pub seconds: f64,
    /// Commands the schedule called for (rated phase) or sent (unthrottled).
    pub offered: u64,
    /// Commands sent.
    pub sent: u64,
    /// Scheduled commands not sent because the in-flight cap was reached.
    pub shed: u64,
}

impl PhaseFigures {
    /// A phase that ran `n` jobs to the end since `started`: everything offered was sent.
    pub fn counted(name: &str, started: Instant, n: u64) -> Self {
        PhaseFigures {
            name: name.to_owned(),
            seconds: started.elapsed().as_secs_f64(),
            offered: n,
            sent: n,
            shed: 0,
        }
    }
}

/// Waits for a closed-loop phase's workers (moving the bar meanwhile), folds their figures into the
/// recorder, and sums up the phase: in a closed loop everything offered was sent.
pub async fn closed_loop_figures(
    rec: &Recorder,
    op: String,
    mut set: tokio::task::JoinSet<OpStats>,
    start: Instant,
    duration: Duration,
    bar: &indicatif::ProgressBar,
) -> PhaseFigures {
    let ticker = tick_bar(bar.clone(), start, duration);
    let mut sent = 0;
    while let Some(local) = set.join_next().await {
        let local = local.expect("a load worker panicked");
        sent += local.count();
        rec.absorb(&op, &local);
    }
    ticker.abort();
    PhaseFigures {
        name: op,
        seconds: start.elapsed().as_secs_f64(),
        offered: sent,
        sent,
        shed: 0,
    }
}

/// Moves a time-based progress bar (length in ms) until aborted.
fn tick_bar(
    bar: indicatif::ProgressBar,
    start: Instant,
    duration: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            bar.set_position(start.elapsed().min(duration).as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
