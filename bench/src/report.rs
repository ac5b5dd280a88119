//! The printed table, `report.json`, `latency.svg` and the final summary line.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::cli::Params;
use crate::figures::{phase_table, PhaseFigures};
use crate::rounds::RoundFigures;
use crate::scale::PlaceCheck;
use crate::spread::Spread;
use crate::stats::OpSummary;
use crate::svg::{latency_chart, ChartRow};
use crate::verify::Verification;

/// The headline figures of the run (the last line): medians over the rounds, and what went wrong.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Headline {
    /// Each figure's median and range over the rounds, by line key, in line order (`None`: not measured).
    pub figures: Vec<(&'static str, Option<Spread>)>,
    /// Commands slower than the stall limit while at most 1,000 per second were offered, over all rounds.
    pub stalled: u64,
    pub oversold: u64,
    pub lost: u64,
    /// Places of the crowd at scale that were not one of 1..N exactly once (duplicates, gaps, unexpected
    /// states), over all rounds.
    pub misplaced: u64,
    pub rounds: usize,
    /// CPU of everything measured but the bench, as % of one core, over the idle window after setup.
    pub idle_stack_pct: Option<f64>,
}

/// The keys that were on the line before rounds existed, in their places: before `oversold` and `lost`.
const FIRST_KEYS: [&str; 4] = ["joins_per_s", "holds_per_s", "pays_per_s", "p99_hold_ms"];

impl Headline {
    /// The last line, exactly: `key=value` pairs, medians rounded to whole units, `-` for a figure that was
    /// not measured.
    pub fn line(&self) -> String {
        let value = |key: &str| {
            self.figures
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, s)| *s)
                .map_or_else(|| "-".to_owned(), |s| format!("{:.0}", s.median))
        };
        let mut parts = vec!["bench:".to_owned()];
        parts.extend(FIRST_KEYS.iter().map(|k| format!("{k}={}", value(k))));
        parts.push(format!("oversold={}", self.oversold));
        parts.push(format!("lost={}", self.lost));
        parts.push(format!("stalled={}", self.stalled));
        parts.extend(
            self.figures
                .iter()
                .filter(|(k, _)| !FIRST_KEYS.contains(k))
                .map(|(k, _)| format!("{k}={}", value(k))),
        );
        let idle = self
            .idle_stack_pct
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        parts.push(format!("idle_stack_pct={idle}"));
        parts.push(format!("misplaced={}", self.misplaced));
        parts.push(format!("rounds={}", self.rounds));
        parts.join(" ")
    }

    /// What makes the run a failure, one sentence each; empty when nothing did.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.oversold > 0 {
            out.push(format!("{} seat(s) oversold", self.oversold));
        }
        if self.lost > 0 {
            out.push(format!(
                "{} request(s) or payment(s) lost (never decided, or paid without a reservation)",
                self.lost
            ));
        }
        if self.stalled > 0 {
            out.push(format!(
                "{} command(s) stalled (decided only after the stall limit while at most 1,000/s were offered)",
                self.stalled
            ));
        }
        if self.misplaced > 0 {
            out.push(format!(
                "{} place(s) of the crowd at scale not gap-free (a position missing, doubled or in a wrong state)",
                self.misplaced
            ));
        }
        out
    }
}

/// Everything `report.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    pub timestamp: String,
    pub base_url: String,
    pub params: Params,
    /// Sign-ups and charges, before the rounds (not part of any figure).
    pub setup: Vec<OpSummary>,
    /// CPU of each process as % of one core over the idle window after setup (no load), by key as in
    /// [`PhaseFigures::cpu_us_per_op`].
    pub idle_cpu_pct: BTreeMap<String, f64>,
    /// Every round's phases, operations and figures.
    pub rounds: Vec<RoundReport>,
    pub verification: Verification,
    /// Answers that break the contract or the benchmark's expectations, by description.
    pub anomalies: BTreeMap<String, u64>,
    pub headline: Headline,
}

/// What one round measured.
#[derive(Debug, Serialize)]
pub struct RoundReport {
    pub round: usize,
    pub phases: Vec<PhaseFigures>,
    pub ops: Vec<OpSummary>,
    pub figures: RoundFigures,
    /// The gap-free check of the crowd at scale, if it ran.
    pub places: Option<PlaceCheck>,
}

/// The per-operation table.
pub fn table(ops: &[OpSummary]) -> String {
    let mut out = format!(
        "{:<20} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "operation",
        "count",
        "ok",
        "per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "errors by code"
    );
    for o in ops {
        let errors = if o.errors.is_empty() {
            "-".to_owned()
        } else {
            o.errors
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&format!(
            "{:<20} {:>8} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}\n",
            o.name, o.count, o.ok, o.per_s, o.p50_ms, o.p95_ms, o.p99_ms, o.max_ms, errors
        ));
    }
    out
}

/// Writes `report.json` and `latency.svg` into `dir`.
pub fn write(dir: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).context("encoding the report")?;
    std::fs::write(dir.join("report.json"), json + "\n").context("writing report.json")?;
    // The chart shows the last round (every round's figures are in report.json).
    let last = report.rounds.last().map_or(&[][..], |r| &r.ops[..]);
    let rows: Vec<ChartRow> = last
        .iter()
        .filter(|o| o.count > 0)
        .map(|o| ChartRow {
            label: o.name.clone(),
            p50: o.p50_ms,
            p95: o.p95_ms,
            p99: o.p99_ms,
            max: o.max_ms,
        })
        .collect();
    let title = format!(
        "concert-bench latency per operation, submit to outcome ({})",
        report.timestamp
    );
    std::fs::write(dir.join("latency.svg"), latency_chart(&title, &rows))
        .context("writing latency.svg")?;
    Ok(())
}

/// A round's table, phases and figures.
pub fn print_round(r: &RoundReport) {
    println!();
    println!("round {}", r.round);
    print!("{}", table(&r.ops));
    print!("{}", phase_table(&r.phases));
    if let Some(c) = &r.places {
        println!(
            "crowd at scale: {} users, {} waiting (room: {}), {} active, {} expired, {} without a place; gaps={} duplicates={} out_of_range={} unexpected={} (read {} time(s))",
            c.users,
            c.waiting,
            c.room_waiting.map_or_else(|| "?".to_owned(), |w| w.to_string()),
            c.active,
            c.expired,
            c.unplaced,
            c.gaps,
            c.duplicates,
            c.out_of_range,
            c.unexpected,
            c.reads
        );
        for d in &c.details {
            println!("  {d}");
        }
    }
    let figures: Vec<String> = r
        .figures
        .keyed()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
            )
        })
        .collect();
    println!(
        "round {}: {} stalled={}",
        r.round,
        figures.join(" "),
        r.figures.stalled
    );
}

/// The idle window's CPU per process, as % of one core.
pub fn print_idle(seconds: f64, pct: &BTreeMap<String, f64>) {
    let parts: Vec<String> = pct.iter().map(|(k, v)| format!("{k}={v:.1}")).collect();
    println!(
        "idle {seconds:.0} s, no load, cpu % of one core: {}",
        if parts.is_empty() {
            "not measured".to_owned()
        } else {
            parts.join(" ")
        }
    );
}

/// Every figure's median and range over the rounds, the verification and the anomalies.
pub fn print_summary(r: &Report) {
    println!();
    println!("over {} round(s): median (min..max)", r.rounds.len());
    for (key, spread) in &r.headline.figures {
        let v = spread.map_or_else(|| "not measured".to_owned(), |s| s.describe());
        println!("  {key:<22} {v}");
    }
    let stalled: Vec<String> = r
        .rounds
        .iter()
        .map(|x| x.figures.stalled.to_string())
        .collect();
    println!(
        "  {:<22} {} (per round: {})",
        "stalled",
        r.headline.stalled,
        stalled.join(", ")
    );
    let v = &r.verification;
    println!(
        "verify: payments_seen={} reservations={} double_paid_seats={} double_reserved_seats={} chased={} (decided {}) undecided={} missing_reservations={} unreadable_users={}",
        v.payments_seen, v.reservations_total, v.double_paid_seats, v.double_reserved_seats, v.chased, v.chased_decided, v.undecided, v.missing_reservations, v.unreadable_users
    );
    for d in &v.details {
        println!("  {d}");
    }
    if r.anomalies.is_empty() {
        println!("anomalies: none");
    } else {
        println!("anomalies:");
        for (what, n) in &r.anomalies {
            println!("  {n:>6} x {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_has_the_exact_shape() {
        let spread = |m: f64| {
            Some(Spread {
                median: m,
                min: m - 1.0,
                max: m + 1.0,
                rounds: 3,
            })
        };
        let h = Headline {
            figures: vec![
                ("joins_per_s", spread(812.4)),
                ("holds_per_s", spread(5230.0)),
                ("pays_per_s", spread(96.0)),
                ("p99_hold_ms", spread(41.0)),
                ("c64_holds_per_s", spread(3100.0)),
                ("c64_p50_ms", spread(14.6)),
                ("crowd_joins_per_s", None),
            ],
            stalled: 0,
            oversold: 0,
            lost: 0,
            misplaced: 0,
            rounds: 3,
            idle_stack_pct: Some(3.26),
        };
        assert_eq!(
            h.line(),
            "bench: joins_per_s=812 holds_per_s=5230 pays_per_s=96 p99_hold_ms=41 oversold=0 lost=0 stalled=0 \
             c64_holds_per_s=3100 c64_p50_ms=15 crowd_joins_per_s=- idle_stack_pct=3.3 misplaced=0 rounds=3"
        );
        assert!(h.failures().is_empty());
    }

    #[test]
    fn names_every_failure() {
        let h = Headline {
            oversold: 1,
            stalled: 12,
            ..Headline::default()
        };
        let f = h.failures();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].contains("1 seat(s) oversold"));
        assert!(f[1].contains("12 command(s) stalled"));
        assert!(h.line().starts_with("bench: joins_per_s=- "));
    }
}
