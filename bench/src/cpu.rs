//! CPU time per process while the bench runs, so each phase can say what one operation costs the api, the
//! workers, PostgreSQL, the broker and the bench itself (issue 17). Throughput alone on a shared 2-core machine
//! cannot tell a slower service from a busier neighbour; CPU per operation can, and says where the time goes.
//!
//! `./dev bench` names its processes in `BENCH_PROCS` (`api=PID,worker-1=PID,worker-2=PID,broker=PID`) and its
//! database in `BENCH_DB`. A background thread reads utime+stime (`/proc/PID/stat`) of each of them, of the
//! bench (`bench`) and of every PostgreSQL backend of that database (`postgres`) every 250 ms into a timeline;
//! a phase's cost is the difference between the samples nearest its start and its end. Without `BENCH_PROCS`
//! (the bench run by hand against some api) only `bench` is measured.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::procfs::{clock_ticks_per_second, Sampler, Snapshot};
pub use crate::procfs::{Procs, BENCH, BROKER, POSTGRES};

/// Key `./dev bench` gives the api in `BENCH_PROCS` (and [`BROKER`] the broker).
pub const API: &str = "api";
/// Derived keys: the workers summed, api + workers, and everything but the bench.
pub const WORKERS: &str = "workers";
pub const SERVICE: &str = "service";
pub const TOTAL: &str = "total";

/// How often the sampler reads `/proc`.
const EVERY: Duration = Duration::from_millis(250);
/// Samples kept: the last two hours.
const KEEP: usize = 2 * 3600 * 4;

struct Timeline {
    samples: Mutex<VecDeque<Snapshot>>,
    /// Clock ticks per second.
    hz: f64,
}

static TIMELINE: OnceLock<Timeline> = OnceLock::new();

/// Starts the background sampler (once; later calls do nothing). The first sample is taken before it returns.
pub fn start(procs: Procs) {
    if TIMELINE.get().is_some() {
        return;
    }
    let mut sampler = Sampler::new(procs);
    let first = sampler.sample();
    let timeline = TIMELINE.get_or_init(|| Timeline {
        samples: Mutex::new(VecDeque::from([first])),
        hz: clock_ticks_per_second() as f64,
    });
    std::thread::Builder::new()
        .name("cpu-sampler".into())
        .spawn(move || loop {
            std::thread::sleep(EVERY);
            let s = sampler.sample();
            let mut samples = timeline.samples.lock().expect("cpu timeline");
            if samples.len() >= KEEP {
                samples.pop_front();
            }
            samples.push_back(s);
        })
        .expect("starting the cpu sampler");
}

/// Microseconds of CPU per operation between `start` and `end` for `sent` operations, per key plus the derived
/// keys; empty when `sent` is 0, the sampler is not running, or no sample lies between the two nearest.
pub fn per_op(start: Instant, end: Instant, sent: u64) -> BTreeMap<String, f64> {
    match (sent, spent(start, end)) {
        (1.., Some((a, b, hz))) => per_op_of(&a, &b, hz, sent),
        _ => BTreeMap::new(),
    }
}

/// CPU between `start` and `end` as % of one core, per key plus the derived keys.
pub fn pct(start: Instant, end: Instant) -> BTreeMap<String, f64> {
    spent(start, end).map_or_else(BTreeMap::new, |(a, b, hz)| pct_of(&a, &b, hz))
}

/// The samples nearest `start` and `end`, if they differ, and the clock's ticks per second.
fn spent(start: Instant, end: Instant) -> Option<(Snapshot, Snapshot, f64)> {
    let t = TIMELINE.get()?;
    let samples = t.samples.lock().expect("cpu timeline");
    let (i, j) = (nearest(&samples, start)?, nearest(&samples, end)?);
    (i < j).then(|| (samples[i].clone(), samples[j].clone(), t.hz))
}

/// Index of the sample nearest `t` (samples in time order).
pub fn nearest(samples: &VecDeque<Snapshot>, t: Instant) -> Option<usize> {
    let after = samples.partition_point(|s| s.at < t);
    let before = after.checked_sub(1);
    match (before, samples.get(after)) {
        (Some(b), Some(a)) if t - samples[b].at <= a.at - t => Some(b),
        (_, Some(_)) => Some(after),
        (b, None) => b,
    }
}

/// Ticks each key used from `a` to `b` (keys read in both).
fn used(a: &Snapshot, b: &Snapshot) -> BTreeMap<String, u64> {
    b.ticks
        .iter()
        .filter_map(|(k, end)| Some((k.clone(), end.saturating_sub(*a.ticks.get(k)?))))
        .collect()
}

/// Microseconds per operation from `a` to `b` for `sent` operations, per key plus the derived keys.
pub fn per_op_of(a: &Snapshot, b: &Snapshot, hz: f64, sent: u64) -> BTreeMap<String, f64> {
    let per_key = used(a, b)
        .into_iter()
        .map(|(k, t)| (k, t as f64 * 1e6 / hz / sent as f64))
        .collect();
    with_derived(per_key)
}

/// % of one core from `a` to `b`, per key plus the derived keys.
pub fn pct_of(a: &Snapshot, b: &Snapshot, hz: f64) -> BTreeMap<String, f64> {
    let secs = (b.at - a.at).as_secs_f64();
    if secs <= 0.0 {
        return BTreeMap::new();
    }
    let per_key = used(a, b)
        .into_iter()
        .map(|(k, t)| (k, t as f64 / hz / secs * 100.0))
        .collect();
    with_derived(per_key)
}

/// Adds `workers` (every `worker-*`), `service` (api + workers) and `total` (everything but the bench), each
/// only when something it sums was measured.
pub fn with_derived(mut m: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let sum = |keep: &dyn Fn(&str) -> bool| {
        let v: Vec<f64> = m.iter().filter(|(k, _)| keep(k)).map(|(_, v)| *v).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>())
    };
    let workers = sum(&|k| k.starts_with("worker-"));
    let service = sum(&|k| k == API || k.starts_with("worker-"));
    let total = sum(&|k| k != BENCH);
    for (k, v) in [(WORKERS, workers), (SERVICE, service), (TOTAL, total)] {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: Instant, ticks: &[(&str, u64)]) -> Snapshot {
        Snapshot {
            at,
            ticks: ticks.iter().map(|(k, t)| (k.to_string(), *t)).collect(),
        }
    }

    #[test]
    fn costs_per_operation_with_the_derived_keys() {
        let t0 = Instant::now();
        let a = snap(
            t0,
            &[
                ("api", 100),
                ("worker-1", 10),
                ("worker-2", 20),
                ("postgres", 0),
                ("bench", 5),
            ],
        );
        let b = snap(
            t0 + Duration::from_secs(2),
            &[
                ("api", 150),
                ("worker-1", 30),
                ("worker-2", 20),
                ("postgres", 40),
                ("bench", 25),
                ("broker", 9),
            ],
        );
        // 100 ticks/s: 1 tick = 10 ms; 1,000 operations.
        let c = per_op_of(&a, &b, 100.0, 1000);
        let get = |k: &str| c.get(k).copied();
        assert_eq!(get("api"), Some(500.0));
        assert_eq!(get("worker-1"), Some(200.0));
        assert_eq!(get("worker-2"), Some(0.0));
        assert_eq!(get(WORKERS), Some(200.0));
        assert_eq!(get(SERVICE), Some(700.0));
        assert_eq!(get(POSTGRES), Some(400.0));
        assert_eq!(get(BENCH), Some(200.0));
        // Read only at the end: no figure.
        assert_eq!(get("broker"), None);
        assert_eq!(get(TOTAL), Some(1100.0));
        // Over 2 s: the api used 0.5 s, 25% of a core.
        let p = pct_of(&a, &b, 100.0);
        assert_eq!(p.get("api"), Some(&25.0));
        assert_eq!(p.get(TOTAL), Some(&55.0));
    }

    #[test]
    fn only_the_bench_gives_no_derived_keys_but_itself() {
        let m = with_derived(BTreeMap::from([(BENCH.to_owned(), 3.0)]));
        assert_eq!(m.len(), 1);
        assert!(with_derived(BTreeMap::new()).is_empty());
    }

    #[test]
    fn picks_the_nearest_samples() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let samples: VecDeque<Snapshot> = [0, 250, 500, 750]
            .iter()
            .map(|&n| snap(ms(n), &[]))
            .collect();
        assert_eq!(nearest(&samples, ms(0)), Some(0));
        assert_eq!(nearest(&samples, ms(100)), Some(0));
        assert_eq!(nearest(&samples, ms(130)), Some(1));
        assert_eq!(nearest(&samples, ms(500)), Some(2));
        assert_eq!(nearest(&samples, ms(5000)), Some(3));
        assert_eq!(nearest(&VecDeque::new(), ms(10)), None);
        let later: VecDeque<Snapshot> = [snap(ms(300), &[])].into_iter().collect();
        assert_eq!(nearest(&later, ms(10)), Some(0));
    }
}
