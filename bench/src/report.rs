//! The printed table, `report.json`, `latency.svg` and the final summary line.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::cli::Params;
use crate::phases::PhaseFigures;
use crate::stats::OpSummary;
use crate::svg::{latency_chart, ChartRow};
use crate::verify::Verification;

/// The headline figures of the run (the last line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Headline {
    /// Crowd joins decided per second.
    pub joins_per_s: u64,
    /// Holds decided per second in the unthrottled phase (or the rated one, or the race, whichever ran last).
    pub holds_per_s: u64,
    /// Race payments decided per second, from the first payment submitted to the last answered.
    pub pays_per_s: u64,
    /// p99 submit-to-outcome of holds at the offered rate (or of the race's holds if that phase did not run).
    pub p99_hold_ms: u64,
    pub oversold: u64,
    pub lost: u64,
}

impl Headline {
    /// The last line, exactly.
    pub fn line(&self) -> String {
        format!(
            "bench: joins_per_s={} holds_per_s={} pays_per_s={} p99_hold_ms={} oversold={} lost={}",
            self.joins_per_s,
            self.holds_per_s,
            self.pays_per_s,
            self.p99_hold_ms,
            self.oversold,
            self.lost
        )
    }
}

/// Everything `report.json` holds.
#[derive(Debug, Serialize)]
pub struct Report {
    pub timestamp: String,
    pub base_url: String,
    pub params: Params,
    pub phases: Vec<PhaseFigures>,
    pub ops: Vec<OpSummary>,
    pub verification: Verification,
    /// Answers that break the contract or the benchmark's expectations, by description.
    pub anomalies: BTreeMap<String, u64>,
    pub headline: Headline,
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
    let rows: Vec<ChartRow> = report
        .ops
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_has_the_exact_shape() {
        let h = Headline {
            joins_per_s: 812,
            holds_per_s: 5230,
            pays_per_s: 96,
            p99_hold_ms: 41,
            oversold: 0,
            lost: 0,
        };
        assert_eq!(h.line(), "bench: joins_per_s=812 holds_per_s=5230 pays_per_s=96 p99_hold_ms=41 oversold=0 lost=0");
    }
}
