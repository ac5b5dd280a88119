//! What the soak hands back: `soak.json` ([`SoakReport`]: the parameters, every minute's figures, the totals,
//! each series with its slope and verdict, the invariants) and the figures of the final `soak:` line.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::OpSummary;
use crate::verify::Verification;

use super::check::BoxOffice;
use super::minute::Minute;
use super::verdict::{Series, RETAINED};

/// Everything `soak.json` holds.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub timestamp: String,
    pub base_url: String,
    pub minutes: usize,
    pub fans_per_second: f64,
    pub warmup_minutes: usize,
    /// First minute at which the retention window (plus a place's life) has elapsed.
    pub settle_minute: usize,
    pub retention_seconds: u64,
    pub retention_from: &'static str,
    pub retention_interval_ms: u64,
    pub concert_every_s: u64,
    pub dates_per_concert: usize,
    pub seats_per_date: i32,
    pub active_seconds: u32,
    pub hold_seconds: u32,
    pub processes: Vec<(String, u32)>,
    pub per_minute: Vec<Minute>,
    pub totals: Vec<OpSummary>,
    pub series: Vec<Series>,
    pub users: usize,
    pub concerts: usize,
    pub fans_gave_up: u64,
    pub fans_lapsed: u64,
    pub verification: Verification,
    pub box_office: BoxOffice,
    pub anomalies: BTreeMap<String, u64>,
    pub not_flat: Vec<String>,
    pub flat: bool,
    pub invariants_hold: bool,
    pub line: String,
}

/// The figures of the `soak:` line: memory, retained rows, p99 of the main kinds and ready time.
pub fn headline(
    series: &[Series],
    per_minute: &[Minute],
    minutes: usize,
    rate: f64,
    warmup: usize,
    settle: usize,
    keep: u64,
) -> String {
    let find = |name: &str| series.iter().find(|s| s.name == name);
    let last = |name: &str| find(name).and_then(|s| s.last).unwrap_or(0.0);
    let slope = |name: &str| find(name).and_then(|s| s.slope_per_min).unwrap_or(0.0);
    let workers: Vec<&Series> = series
        .iter()
        .filter(|s| s.name.starts_with("rss/worker"))
        .collect();
    let worker_rss = workers.iter().filter_map(|s| s.last).fold(0.0, f64::max);
    let worker_slope = workers
        .iter()
        .filter_map(|s| s.slope_per_min)
        .reduce(f64::max)
        .unwrap_or(0.0);
    let retained_rows: f64 = RETAINED.iter().map(|t| last(&format!("rows/{t}"))).sum();
    let retained_slope: f64 = RETAINED.iter().map(|t| slope(&format!("rows/{t}"))).sum();
    let mut out = format!(
        "soak: minutes={minutes} fans_per_s={rate} warmup_min={warmup} retention_s={keep} settle_min={settle} \
         api_rss_mib={:.1} api_rss_slope_kib_per_min={:.1} worker_rss_mib={:.1} \
         worker_rss_slope_kib_per_min={:.1} retained_rows={retained_rows:.0} \
         retained_rows_slope_per_min={retained_slope:.1}",
        last("rss/api") / 1024.0,
        slope("rss/api"),
        worker_rss / 1024.0,
        worker_slope
    );
    for op in ["join", "status", "hold", "pay", "cancel"] {
        out += &format!(" p99_{op}_ms={:.1}", last(&format!("p99/{op}")));
    }
    let ready: Vec<f64> = per_minute.iter().filter_map(|m| m.ready_ms).collect();
    out += &format!(
        " ready_ms_first={:.0} ready_ms_last={:.0} ready_slope_ms_per_min={:.1}",
        ready.first().copied().unwrap_or(0.0),
        ready.last().copied().unwrap_or(0.0),
        slope("ready")
    );
    out
}
