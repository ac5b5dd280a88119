//! One minute of the soak as it is printed (one line) and kept for `soak.json`: calls per kind, their p99,
//! the memory of each process, the rows of each table and the ready time of a fresh api.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::{OpStats, DEFAULT_STALL};

use super::load::OPS;

/// The figures of one minute; minute 0 is read before the load starts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Minute {
    pub minute: usize,
    /// Calls made in the minute, by kind.
    pub ops: BTreeMap<String, u64>,
    /// Of those, calls that failed (any code, pending or without an answer), by kind.
    pub errors: BTreeMap<String, u64>,
    /// p99 latency of the minute's calls, by kind (kinds without a call are absent).
    pub p99_ms: BTreeMap<String, f64>,
    /// VmRSS at the end of the minute, by process.
    pub rss_kib: BTreeMap<String, u64>,
    /// Rows at the end of the minute, by table.
    pub rows: BTreeMap<String, i64>,
    /// Milliseconds a fresh api took to answer `/readyz` 200, started at the end of the minute.
    pub ready_ms: Option<f64>,
}

impl Minute {
    pub fn new(
        minute: usize,
        ops: &BTreeMap<&'static str, OpStats>,
        rss_kib: BTreeMap<String, u64>,
        rows: BTreeMap<String, i64>,
        ready_ms: Option<f64>,
    ) -> Self {
        let mut m = Minute {
            minute,
            rss_kib,
            rows,
            ready_ms,
            ..Minute::default()
        };
        for (op, stats) in ops {
            let s = stats.summary(op, DEFAULT_STALL);
            m.ops.insert((*op).to_owned(), s.count);
            m.errors.insert((*op).to_owned(), s.count - s.ok);
            if s.count > 0 {
                m.p99_ms.insert((*op).to_owned(), s.p99_ms);
            }
        }
        m
    }

    /// The minute's line: `minute N | ops ... | p99 ms ... | rss MiB ... | rows ... | ready ... ms`.
    pub fn line(&self) -> String {
        let ops: Vec<String> = OPS
            .iter()
            .map(|op| format!("{op}={}", self.ops.get(*op).copied().unwrap_or(0)))
            .collect();
        let errors: u64 = self.errors.values().sum();
        let p99: Vec<String> = OPS
            .iter()
            .filter_map(|op| Some(format!("{op}={:.1}", self.p99_ms.get(*op)?)))
            .collect();
        let rss: Vec<String> = self
            .rss_kib
            .iter()
            .map(|(k, v)| format!("{k}={:.1}", *v as f64 / 1024.0))
            .collect();
        let rows: Vec<String> = self.rows.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let ready = self
            .ready_ms
            .map_or_else(|| "?".to_owned(), |ms| format!("{ms:.0}"));
        format!(
            "minute {} | ops {} errors={errors} | p99 ms {} | rss MiB {} | rows {} | ready {ready} ms",
            self.minute,
            ops.join(" "),
            if p99.is_empty() { "-".to_owned() } else { p99.join(" ") },
            rss.join(" "),
            rows.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_minute_line_names_every_kind_and_figure() {
        let t0 = Instant::now();
        let mut hold = OpStats::default();
        hold.record(t0, t0 + Duration::from_millis(12), None);
        hold.record(t0, t0 + Duration::from_millis(30), Some("SEAT_UNAVAILABLE"));
        let ops = BTreeMap::from([("hold", hold)]);
        let m = Minute::new(
            3,
            &ops,
            BTreeMap::from([("api".to_owned(), 2048)]),
            BTreeMap::from([("requests".to_owned(), 7)]),
            Some(812.4),
        );
        assert_eq!(m.ops["hold"], 2);
        assert_eq!(m.errors["hold"], 1);
        let line = m.line();
        assert!(line.starts_with("minute 3 | ops signup=0 "), "{line}");
        assert!(
            line.contains("hold=2 ") && line.contains("errors=1"),
            "{line}"
        );
        assert!(line.contains("p99 ms hold=30.0"), "{line}");
        assert!(
            line.contains("rss MiB api=2.0") && line.contains("rows requests=7"),
            "{line}"
        );
        assert!(line.ends_with("ready 812 ms"), "{line}");
    }
}
