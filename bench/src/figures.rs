//! What a phase offered and sent, kept per round in the report, and how the workers of a closed-loop phase
//! are gathered into it. Shared by the hold phases, the closed-loop joins and the phases that only count
//! jobs. Each also says what an operation of the phase cost in CPU ([`crate::cpu`]), and the phase table
//! shows it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cpu::{self, API, BENCH, BROKER, POSTGRES, TOTAL, WORKERS};
use crate::kafka_requests;
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
    /// Microseconds of CPU per command sent, by process (`api`, `worker-1`, `postgres`, `broker`, `bench`, ...)
    /// and summed (`workers`, `service`: api + workers, `total`: all but the bench); empty when not measured.
    pub cpu_us_per_op: BTreeMap<String, f64>,
    /// Kafka requests per command sent, by `process/request` and summed as `produce` and `fetch`
    /// ([`crate::kafka_requests`]); empty when not measured.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kafka_requests_per_op: BTreeMap<String, f64>,
}

impl PhaseFigures {
    /// A phase that ran `n` jobs to the end since `started`: everything offered was sent.
    pub fn counted(name: &str, started: Instant, n: u64) -> Self {
        Self::timed(name.to_owned(), started, n, 0)
    }

    /// A phase that ran from `started` until now, sent `sent` commands and shed `shed`.
    pub fn timed(name: String, started: Instant, sent: u64, shed: u64) -> Self {
        let now = Instant::now();
        PhaseFigures {
            name,
            seconds: (now - started).as_secs_f64(),
            offered: sent + shed,
            sent,
            shed,
            cpu_us_per_op: cpu::per_op(started, now, sent),
            kafka_requests_per_op: kafka_requests::per_op(started, now, sent),
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
    PhaseFigures::timed(op, start, sent, 0)
}

/// The cost columns of the phase table: (heading, key).
const COST_COLUMNS: [(&str, &str); 6] = [
    ("api", API),
    ("workers", WORKERS),
    ("postgres", POSTGRES),
    ("broker", BROKER),
    ("bench", BENCH),
    ("total", TOTAL),
];

/// The per-phase table: duration, commands sent (and shed), and CPU microseconds per command by process.
pub fn phase_table(phases: &[PhaseFigures]) -> String {
    let mut out = format!(
        "{:<20} {:>8} {:>8} {:>6}  cpu µs/op:",
        "phase", "seconds", "sent", "shed"
    );
    for (heading, _) in COST_COLUMNS {
        out.push_str(&format!(" {heading:>8}"));
    }
    out.push('\n');
    for ph in phases {
        out.push_str(&format!(
            "{:<20} {:>8.2} {:>8} {:>6}  {:10}",
            ph.name, ph.seconds, ph.sent, ph.shed, ""
        ));
        for (_, key) in COST_COLUMNS {
            let v = ph.cpu_us_per_op.get(key);
            let v = v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
            out.push_str(&format!(" {v:>8}"));
        }
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_table_shows_the_costs_measured() {
        let ph = PhaseFigures {
            name: "tp@max/hold".into(),
            seconds: 10.0,
            offered: 5000,
            sent: 5000,
            shed: 0,
            cpu_us_per_op: [
                ("api", 312.4),
                ("workers", 99.6),
                ("bench", 50.0),
                ("total", 500.0),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
            kafka_requests_per_op: BTreeMap::new(),
        };
        let t = phase_table(&[ph]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(
            lines[0].ends_with("api  workers postgres   broker    bench    total"),
            "{t}"
        );
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "tp@max/hold",
                "10.00",
                "5000",
                "0",
                "312",
                "100",
                "-",
                "-",
                "50",
                "500"
            ]
        );
    }
}
