//! Latency histograms and error counts per operation.
//!
//! Hot loops keep their own [`OpStats`] and hand it to the [`Recorder`] when done; everything else records
//! straight into the recorder, which keeps operations in the order they were first seen.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::{PENDING, TRANSPORT};

/// Longest latency the histograms track, in microseconds (ten minutes); longer ones are clamped to it.
const MAX_MICROS: u64 = 600_000_000;
/// Calls slower than this count as stalled unless the recorder is told otherwise.
pub const DEFAULT_STALL: Duration = Duration::from_secs(2);

/// The figures gathered for one operation.
#[derive(Clone)]
pub struct OpStats {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
            first: None,
            last: None,
        }
    }
}

impl OpStats {
    /// One call that started at `start` and was answered at `end`; `code` is `None` on success.
    pub fn record(&mut self, start: Instant, end: Instant, code: Option<&str>) {
        let micros = end
            .saturating_duration_since(start)
            .as_micros()
            .clamp(1, u128::from(MAX_MICROS)) as u64;
        self.hist.saturating_record(micros);
        match code {
            None => self.ok += 1,
            Some(c) => *self.errors.entry(c.to_owned()).or_default() += 1,
        }
        self.first = Some(self.first.map_or(start, |f| f.min(start)));
        self.last = Some(self.last.map_or(end, |l| l.max(end)));
    }

    /// Adds another set of figures for the same operation.
    pub fn merge(&mut self, other: &OpStats) {
        self.hist
            .add(&other.hist)
            .expect("histograms share their bounds");
        self.ok += other.ok;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, other.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Calls recorded, whatever their outcome.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Calls that reached a final answer (success or a problem document): not pending, not transport failures.
    pub fn decided(&self) -> u64 {
        self.count()
            - self.errors.get(PENDING).unwrap_or(&0)
            - self.errors.get(TRANSPORT).unwrap_or(&0)
    }

    /// From the first submit to the last answer.
    pub fn span(&self) -> Duration {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.saturating_duration_since(f),
            _ => Duration::ZERO,
        }
    }

    /// Calls that took longer than `limit` (to the histogram's precision: 3 significant digits).
    pub fn slower_than(&self, limit: Duration) -> u64 {
        let micros = (limit.as_micros() as u64).clamp(1, MAX_MICROS - 1);
        let above = self.hist.highest_equivalent(micros) + 1;
        if above > MAX_MICROS || self.count() == 0 {
            return 0;
        }
        self.hist.count_between(above, MAX_MICROS)
    }

    /// The summary of these figures under `name`; calls slower than `stall` are counted as such.
    pub fn summary(&self, name: &str, stall: Duration) -> OpSummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let span = self.span().as_secs_f64();
        let empty = self.count() == 0;
        OpSummary {
            name: name.to_owned(),
            count: self.count(),
            ok: self.ok,
            decided: self.decided(),
            span_s: span,
            per_s: if span > 0.0 {
                self.decided() as f64 / span
            } else {
                0.0
            },
            p50_ms: if empty {
                0.0
            } else {
                ms(self.hist.value_at_quantile(0.50))
            },
            p95_ms: if empty {
                0.0
            } else {
                ms(self.hist.value_at_quantile(0.95))
            },
            p99_ms: if empty {
                0.0
            } else {
                ms(self.hist.value_at_quantile(0.99))
            },
            max_ms: if empty { 0.0 } else { ms(self.hist.max()) },
            mean_ms: if empty {
                0.0
            } else {
                self.hist.mean() / 1000.0
            },
            slower_than_stall: self.slower_than(stall),
            errors: self.errors.clone(),
        }
    }
}

/// The printed and reported figures of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    /// `phase/operation`, e.g. `race/hold`.
    pub name: String,
    /// Calls made.
    pub count: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that reached a final answer, success or failure.
    pub decided: u64,
    /// Seconds from the first submit to the last answer.
    pub span_s: f64,
    /// Decided calls per second over the span.
    pub per_s: f64,
    /// Latency percentiles, submit to outcome, in milliseconds.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Calls that took longer than the stall limit (2 s unless set otherwise), whatever their outcome.
    pub slower_than_stall: u64,
    /// Failures by problem `code` (plus `PENDING` and `TRANSPORT`).
    pub errors: BTreeMap<String, u64>,
}

/// All operations' figures, shared by the phases.
pub struct Recorder {
    ops: Mutex<Vec<(String, OpStats)>>,
    /// Calls slower than this are counted as stalled in the summaries.
    stall: Duration,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new(DEFAULT_STALL)
    }
}

impl Recorder {
    /// An empty recorder that counts calls slower than `stall`.
    pub fn new(stall: Duration) -> Self {
        Self {
            ops: Mutex::new(Vec::new()),
            stall,
        }
    }

    /// Records one call of `op`.
    pub fn record(&self, op: &str, start: Instant, code: Option<&str>) {
        let end = Instant::now();
        self.with(op, |s| s.record(start, end, code));
    }

    /// Adds a batch of figures gathered elsewhere for `op`.
    pub fn absorb(&self, op: &str, stats: &OpStats) {
        self.with(op, |s| s.merge(stats));
    }

    fn with(&self, op: &str, f: impl FnOnce(&mut OpStats)) {
        let mut ops = self.ops.lock().expect("recorder lock");
        match ops.iter_mut().find(|(name, _)| name == op) {
            Some((_, s)) => f(s),
            None => {
                let mut s = OpStats::default();
                f(&mut s);
                ops.push((op.to_owned(), s));
            }
        }
    }

    /// Every operation's summary, in first-seen order.
    pub fn summaries(&self) -> Vec<OpSummary> {
        let ops = self.ops.lock().expect("recorder lock");
        ops.iter()
            .map(|(name, s)| s.summary(name, self.stall))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(latencies_ms: &[u64]) -> OpStats {
        let t0 = Instant::now();
        let mut s = OpStats::default();
        for &ms in latencies_ms {
            s.record(t0, t0 + Duration::from_millis(ms), None);
        }
        s
    }

    #[test]
    fn percentiles_follow_the_samples() {
        let s = stats_of(&(1..=100).collect::<Vec<_>>()).summary("x", DEFAULT_STALL);
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{}", s.p50_ms);
        assert!((s.p95_ms - 95.0).abs() < 0.1, "{}", s.p95_ms);
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{}", s.p99_ms);
        assert!((s.max_ms - 100.0).abs() < 0.1, "{}", s.max_ms);
    }

    #[test]
    fn errors_count_by_code_and_undecided_do_not_count_as_throughput() {
        let t0 = Instant::now();
        let mut s = OpStats::default();
        s.record(t0, t0 + Duration::from_secs(1), None);
        s.record(
            t0,
            t0 + Duration::from_millis(500),
            Some("SEAT_UNAVAILABLE"),
        );
        s.record(
            t0,
            t0 + Duration::from_millis(700),
            Some("SEAT_UNAVAILABLE"),
        );
        s.record(t0, t0 + Duration::from_secs(2), Some(PENDING));
        let sum = s.summary("race/hold", DEFAULT_STALL);
        assert_eq!((sum.count, sum.ok, sum.decided), (4, 1, 3));
        assert_eq!(sum.errors.get("SEAT_UNAVAILABLE"), Some(&2));
        assert!((sum.span_s - 2.0).abs() < 1e-6);
        assert!((sum.per_s - 1.5).abs() < 1e-6);
    }

    #[test]
    fn merging_adds_counts_and_widens_the_span() {
        let t0 = Instant::now();
        let mut a = OpStats::default();
        a.record(t0, t0 + Duration::from_millis(10), None);
        let mut b = OpStats::default();
        b.record(
            t0 + Duration::from_secs(1),
            t0 + Duration::from_secs(3),
            Some("X"),
        );
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.span(), Duration::from_secs(3));
        let rec = Recorder::default();
        rec.absorb("p/op", &a);
        rec.absorb("p/op", &b);
        rec.record("p/other", Instant::now(), None);
        let all = rec.summaries();
        assert_eq!(
            all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["p/op", "p/other"]
        );
        assert_eq!(all[0].errors.get("X"), Some(&2));
    }

    #[test]
    fn counts_calls_slower_than_the_stall_limit() {
        let s = stats_of(&[5, 1_999, 2_000, 2_010, 2_500, 25_000]);
        assert_eq!(s.slower_than(Duration::from_secs(2)), 3);
        assert_eq!(s.slower_than(Duration::from_millis(3)), 6);
        assert_eq!(s.slower_than(Duration::from_secs(30)), 0);
        assert_eq!(OpStats::default().slower_than(Duration::from_secs(2)), 0);
        let rec = Recorder::new(Duration::from_millis(2_400));
        rec.absorb("tp/hold", &s);
        assert_eq!(rec.summaries()[0].slower_than_stall, 2);
    }

    #[test]
    fn empty_stats_summarise_to_zero() {
        let s = OpStats::default().summary("none", DEFAULT_STALL);
        assert_eq!((s.count, s.per_s, s.p99_ms), (0, 0.0, 0.0));
    }
}
