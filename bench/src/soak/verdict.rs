//! Whether each series of the soak stayed flat, by rules stated here (and printed with every verdict):
//!
//! - memory of the api and of each worker: the least-squares growth over the minutes after the warm-up is at
//!   most [`RSS_GROWTH_KIB`] or [`RSS_GROWTH_SHARE`] of the mean, whichever is larger;
//! - rows of a table the retention prunes ([`RETAINED`]): bounded, i.e. the last minute's count is at most
//!   the largest of the first half of the minutes after the retention window elapsed (the `settle` minute)
//!   plus [`ROWS_TOLERANCE`] and [`ROWS_SLACK`] rows;
//! - rows of the other tables (users, seats, payments...: records of business done, kept by design): steady
//!   growth, i.e. the slope of the second half of the minutes after the warm-up at most [`LINEAR_FACTOR`]
//!   times the first half's plus [`LINEAR_SLACK`] rows a minute;
//! - p99 of each kind of call and the ready time of a fresh api: the median of the last few minutes at most
//!   [`LATENCY_FACTOR`] times the median of the first few after the warm-up, plus a small slack.
//!
//! Every series also gets its slope per minute over the minutes after the warm-up, flat or not.

use serde::Serialize;

use super::minute::Minute;

pub const RSS_GROWTH_KIB: f64 = 2048.0;
pub const RSS_GROWTH_SHARE: f64 = 0.05;
pub const ROWS_TOLERANCE: f64 = 0.10;
pub const ROWS_SLACK: f64 = 10.0;
pub const LINEAR_FACTOR: f64 = 1.5;
pub const LINEAR_SLACK: f64 = 5.0;
pub const LATENCY_FACTOR: f64 = 2.0;
pub const P99_SLACK_MS: f64 = 5.0;
pub const READY_SLACK_MS: f64 = 100.0;
/// Minutes compared at each end of a latency series (fewer in a short soak).
const ENDS: usize = 3;

/// The tables the workers' retention prunes (workers/src/retention.rs).
pub const RETAINED: [&str; 7] = [
    "requests",
    "idempotency_keys",
    "charge_keys",
    "outbox",
    "queue_entries",
    "admissions",
    "queue_proofs_used",
];

/// One series and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `rss/<process>`, `rows/<table>`, `p99/<kind>` or `ready`.
    pub name: String,
    pub unit: &'static str,
    /// (minute, value) over the minutes after the warm-up.
    pub points: Vec<(usize, f64)>,
    /// Least-squares slope, per minute.
    pub slope_per_min: Option<f64>,
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// Whether the series is judged at all (the broker's memory is reported only).
    pub judged: bool,
    pub flat: bool,
    /// The rule applied and the figures it compared.
    pub verdict: String,
}

/// Minutes `warmup` and before are left out of every series; row counts of retained tables are judged
/// from minute `settle` on.
pub fn judge(minutes: &[Minute], warmup: usize, settle: usize) -> Vec<Series> {
    let after: Vec<&Minute> = minutes.iter().filter(|m| m.minute > warmup).collect();
    let mut out = Vec::new();
    let keys = |f: &dyn Fn(&Minute) -> Vec<String>| {
        let mut k: Vec<String> = minutes.iter().flat_map(f).collect();
        k.sort();
        k.dedup();
        k
    };
    for proc in keys(&|m| m.rss_kib.keys().cloned().collect()) {
        let pts = points(&after, |m| m.rss_kib.get(&proc).map(|v| *v as f64));
        let judged = proc.starts_with("api") || proc.starts_with("worker");
        out.push(series(format!("rss/{proc}"), "KiB", pts, judged, rss_rule));
    }
    for table in keys(&|m| m.rows.keys().cloned().collect()) {
        let pts = points(&after, |m| m.rows.get(&table).map(|v| *v as f64));
        if RETAINED.contains(&table.as_str()) {
            let settled: Vec<(usize, f64)> =
                pts.iter().copied().filter(|(m, _)| *m >= settle).collect();
            let mut s = series(format!("rows/{table}"), "rows", pts, true, |_| {
                (true, String::new())
            });
            (s.flat, s.verdict) = bounded_rule(&settled, settle);
            out.push(s);
        } else {
            out.push(series(
                format!("rows/{table}"),
                "rows",
                pts,
                true,
                linear_rule,
            ));
        }
    }
    for op in keys(&|m| m.p99_ms.keys().cloned().collect()) {
        let pts = points(&after, |m| m.p99_ms.get(&op).copied());
        out.push(series(format!("p99/{op}"), "ms", pts, true, |p| {
            latency_rule(p, P99_SLACK_MS)
        }));
    }
    let pts = points(&after, |m| m.ready_ms);
    out.push(series("ready".into(), "ms", pts, true, |p| {
        latency_rule(p, READY_SLACK_MS)
    }));
    out
}

fn points(after: &[&Minute], value: impl Fn(&Minute) -> Option<f64>) -> Vec<(usize, f64)> {
    after
        .iter()
        .filter_map(|m| Some((m.minute, value(m)?)))
        .collect()
}

fn series(
    name: String,
    unit: &'static str,
    points: Vec<(usize, f64)>,
    judged: bool,
    rule: impl Fn(&[(usize, f64)]) -> (bool, String),
) -> Series {
    let (flat, verdict) = if !judged {
        (true, "reported, not judged (not the service)".to_owned())
    } else if points.len() < 2 {
        (false, "fewer than 2 minutes after the warm-up".to_owned())
    } else {
        rule(&points)
    };
    Series {
        name,
        unit,
        slope_per_min: slope(&points),
        first: points.first().map(|p| p.1),
        last: points.last().map(|p| p.1),
        points,
        judged,
        flat,
        verdict,
    }
}

/// Least-squares slope of `points`; `None` with fewer than two distinct minutes.
pub fn slope(points: &[(usize, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn span(points: &[(usize, f64)]) -> f64 {
    match (points.first(), points.last()) {
        (Some(a), Some(b)) => (b.0 - a.0) as f64,
        _ => 0.0,
    }
}

fn rss_rule(points: &[(usize, f64)]) -> (bool, String) {
    let growth = slope(points).unwrap_or(0.0) * span(points);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let limit = RSS_GROWTH_KIB.max(RSS_GROWTH_SHARE * mean);
    let flat = growth <= limit;
    let verdict = format!(
        "{}: fitted growth {growth:.0} KiB over {:.0} min, limit {limit:.0} KiB (2 MiB or 5% of {mean:.0} KiB)",
        if flat { "flat" } else { "GROWS" },
        span(points)
    );
    (flat, verdict)
}

fn bounded_rule(settled: &[(usize, f64)], settle: usize) -> (bool, String) {
    if settled.len() < 2 {
        return (
            false,
            format!(
                "unchecked: fewer than 2 minutes from minute {settle}, when the retention window has elapsed \
                 (set RETENTION_SECONDS, or soak longer)"
            ),
        );
    }
    let half = &settled[..settled.len() / 2];
    let peak = half.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let last = settled.last().map_or(0.0, |p| p.1);
    let limit = peak * (1.0 + ROWS_TOLERANCE) + ROWS_SLACK;
    let flat = last <= limit;
    let verdict = format!(
        "{}: last {last:.0} rows, largest of minutes {}..={} {peak:.0}, limit {limit:.0} (+10% +10 rows)",
        if flat { "bounded" } else { "GROWS" },
        half.first().map_or(0, |p| p.0),
        half.last().map_or(0, |p| p.0),
    );
    (flat, verdict)
}

fn linear_rule(points: &[(usize, f64)]) -> (bool, String) {
    if points.len() < 4 {
        return (
            true,
            "grows with the load (records kept by design); too short to compare halves".to_owned(),
        );
    }
    let (first, second) = points.split_at(points.len() / 2);
    let (a, b) = (slope(first).unwrap_or(0.0), slope(second).unwrap_or(0.0));
    let limit = LINEAR_FACTOR * a.max(0.0) + LINEAR_SLACK;
    let flat = b <= limit;
    let verdict = format!(
        "{}: grows with the load (records kept by design), {a:.1} then {b:.1} rows/min, limit {limit:.1} \
         (1.5x the first half + 5)",
        if flat { "steady" } else { "ACCELERATES" }
    );
    (flat, verdict)
}

fn latency_rule(points: &[(usize, f64)], slack: f64) -> (bool, String) {
    let k = (points.len() / 3).clamp(1, ENDS);
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let early = median(&values[..k]);
    let late = median(&values[values.len() - k..]);
    let limit = LATENCY_FACTOR * early + slack;
    let flat = late <= limit;
    let verdict = format!(
        "{}: median of the last {k} min {late:.1}, of the first {k} {early:.1}, limit {limit:.1} (2x + {slack:.0})",
        if flat { "flat" } else { "GROWS" }
    );
    (flat, verdict)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn minute(n: usize, rss: u64, requests: i64, users: i64, p99: f64, ready: f64) -> Minute {
        Minute {
            minute: n,
            rss_kib: BTreeMap::from([("api".into(), rss), ("broker".into(), rss * n as u64)]),
            rows: BTreeMap::from([("requests".into(), requests), ("users".into(), users)]),
            p99_ms: BTreeMap::from([("hold".into(), p99)]),
            ready_ms: Some(ready),
            ..Minute::default()
        }
    }

    fn find<'a>(s: &'a [Series], name: &str) -> &'a Series {
        s.iter().find(|s| s.name == name).expect(name)
    }

    #[test]
    fn slope_is_least_squares() {
        assert_eq!(slope(&[(1, 1.0), (2, 3.0), (3, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1, 4.0)]), None);
        assert!(slope(&[(1, 4.0), (2, 4.0)]).unwrap().abs() < 1e-9);
    }

    #[test]
    fn a_steady_soak_is_flat() {
        let ms: Vec<Minute> = (0..=10)
            .map(|n| {
                minute(
                    n,
                    50_000 + (n as u64 % 2) * 500,
                    (n as i64 * 100).min(400),
                    n as i64 * 60,
                    20.0,
                    800.0,
                )
            })
            .collect();
        let s = judge(&ms, 2, 5);
        assert!(s.iter().all(|s| s.flat), "{s:#?}");
        assert!(!find(&s, "rss/broker").judged);
        let users = find(&s, "rows/users").slope_per_min.unwrap();
        assert!((users - 60.0).abs() < 1e-9, "{users}");
    }

    #[test]
    fn growth_is_caught() {
        let ms: Vec<Minute> = (0..=10)
            .map(|n| {
                let n64 = n as u64;
                minute(
                    n,
                    50_000 + n64 * 1_000,
                    n as i64 * 100,
                    (n * n) as i64 * 60,
                    10.0 * n as f64,
                    800.0,
                )
            })
            .collect();
        let s = judge(&ms, 2, 5);
        for name in ["rss/api", "rows/requests", "rows/users", "p99/hold"] {
            assert!(!find(&s, name).flat, "{name}: {:?}", find(&s, name));
        }
        assert!(find(&s, "ready").flat);
    }

    #[test]
    fn retained_rows_are_unchecked_before_the_window_elapsed() {
        let ms: Vec<Minute> = (0..=4).map(|n| minute(n, 1, 10, 10, 1.0, 1.0)).collect();
        let s = judge(&ms, 1, 60);
        let r = find(&s, "rows/requests");
        assert!(!r.flat && r.verdict.starts_with("unchecked"), "{r:?}");
    }
}
