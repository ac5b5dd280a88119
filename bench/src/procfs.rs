//! Reading CPU time from `/proc` for [`crate::cpu`]: which processes (`BENCH_PROCS`, `BENCH_DB`), one sample
//! of all of them, and the parsing of `stat` lines and PostgreSQL backend titles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

/// Key of the bench's own process.
pub const BENCH: &str = "bench";
/// Key of the PostgreSQL backends of the bench's database, summed.
pub const POSTGRES: &str = "postgres";
/// Key of the broker, whose storage backends (`BENCH_BROKER_DB`) are added to it.
pub const BROKER: &str = "broker";
/// What to measure besides the bench itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Procs {
    /// (key, pid) of each named process.
    pub named: Vec<(String, u32)>,
    /// The database whose backends count as `postgres`.
    pub db: Option<String>,
    /// The broker's own database when it keeps its log in PostgreSQL (nisshi's `postgres://` storage
    /// engine): its backends count as the broker's, since they do the broker's work.
    pub broker_db: Option<String>,
}

impl Procs {
    /// From `BENCH_PROCS` and `BENCH_DB`; entries that do not parse are reported and left out.
    pub fn from_env() -> Self {
        let spec = std::env::var("BENCH_PROCS").unwrap_or_default();
        let (named, bad) = parse_procs(&spec);
        for b in bad {
            eprintln!("concert-bench: BENCH_PROCS: ignoring {b:?} (expected name=pid)");
        }
        let db_of = |var: &str| std::env::var(var).ok().filter(|d| !d.is_empty());
        Procs {
            named,
            db: db_of("BENCH_DB"),
            broker_db: db_of("BENCH_BROKER_DB"),
        }
    }

    /// One line saying what is measured.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .named
            .iter()
            .map(|(k, pid)| format!("{k} ({pid})"))
            .collect();
        if let Some(db) = &self.db {
            parts.push(format!("{POSTGRES} (backends of {db})"));
        }
        if let Some(db) = &self.broker_db {
            parts.push(format!(
                "broker's storage (backends of {db}, counted as the broker's)"
            ));
        }
        parts.push(format!("{BENCH} ({})", std::process::id()));
        parts.join(", ")
    }
}

/// `name=pid` pairs, comma-separated: the pairs, and the entries that are not one (an empty pid included).
pub fn parse_procs(spec: &str) -> (Vec<(String, u32)>, Vec<String>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some((k, pid)) if !k.trim().is_empty() => match pid.trim().parse() {
                Ok(pid) => ok.push((k.trim().to_owned(), pid)),
                Err(_) => bad.push(entry.to_owned()),
            },
            _ => bad.push(entry.to_owned()),
        }
    }
    (ok, bad)
}

/// CPU time used so far by each key at one instant, in clock ticks (a process that could not be read is
/// absent).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub ticks: BTreeMap<String, u64>,
}

/// Reads `/proc` for one [`Snapshot`]; keeps what it needs to follow PostgreSQL's backends from one sample to
/// the next.
pub struct Sampler {
    procs: Procs,
    /// The backends of the bench's database.
    postgres: Backends,
    /// The backends of the broker's database, if it has one.
    broker_storage: Backends,
    /// Pids whose command line is not PostgreSQL's (not read again while they live).
    others: HashSet<u32>,
}

/// The backends of one database, followed from sample to sample.
#[derive(Default)]
struct Backends {
    /// Ticks of each backend (pid, start time) at the last sample.
    last: HashMap<(u32, u64), u64>,
    /// Ticks of the backends summed over the run so far.
    total: u64,
}

impl Sampler {
    pub fn new(procs: Procs) -> Self {
        Sampler {
            procs,
            postgres: Backends::default(),
            broker_storage: Backends::default(),
            others: HashSet::new(),
        }
    }

    pub fn sample(&mut self) -> Snapshot {
        let mut ticks = BTreeMap::new();
        let me = std::process::id();
        for (key, pid) in self.procs.named.iter().map(|(k, p)| (k.as_str(), *p)) {
            if let Some((t, _)) = read_stat(pid) {
                ticks.insert(key.to_owned(), t);
            }
        }
        if let Some((t, _)) = read_stat(me) {
            ticks.insert(BENCH.to_owned(), t);
        }
        if self.procs.db.is_some() || self.procs.broker_db.is_some() {
            self.follow_backends();
        }
        if self.procs.db.is_some() {
            ticks.insert(POSTGRES.to_owned(), self.postgres.total);
        }
        if self.procs.broker_db.is_some() {
            *ticks.entry(BROKER.to_owned()).or_default() += self.broker_storage.total;
        }
        Snapshot {
            at: Instant::now(),
            ticks,
        }
    }

    /// Adds what every backend of the bench's database and of the broker's used since the last sample. A
    /// backend first seen now counts all its time (it started since the last sample, or the sampler did); one
    /// that ended since the last sample loses what it used after that sample (at most 250 ms of it), as
    /// `/proc` forgets it.
    fn follow_backends(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let (mut bench_now, mut broker_now) = (HashMap::new(), HashMap::new());
        let mut alive = HashSet::new();
        for pid in dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            alive.insert(pid);
            if self.others.contains(&pid) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let text = String::from_utf8_lossy(&cmdline);
            if !text.contains("postgres") {
                // Backends are forked by the postmaster, whose command line names postgres from the start.
                self.others.insert(pid);
                continue;
            }
            let of = |db: &Option<String>| db.as_deref().is_some_and(|db| is_backend_of(&text, db));
            let now = if of(&self.procs.db) {
                &mut bench_now
            } else if of(&self.procs.broker_db) {
                &mut broker_now
            } else {
                continue;
            };
            if let Some((t, started)) = read_stat(pid) {
                now.insert((pid, started), t);
            }
        }
        self.others.retain(|p| alive.contains(p));
        self.postgres.advance(bench_now);
        self.broker_storage.advance(broker_now);
    }
}

impl Backends {
    /// Adds what each backend used since the last sample, then remembers `now`.
    fn advance(&mut self, now: HashMap<(u32, u64), u64>) {
        for (key, t) in &now {
            self.total += t.saturating_sub(self.last.get(key).copied().unwrap_or(0));
        }
        self.last = now;
    }
}

/// Whether a command line (NULs and all) is a PostgreSQL backend's title naming `db` as a word.
pub fn is_backend_of(cmdline: &str, db: &str) -> bool {
    let text = cmdline.replace('\0', " ");
    text.starts_with("postgres: ") && text.split_whitespace().any(|w| w == db)
}

/// utime + stime and the start time of `pid`, in clock ticks.
fn read_stat(pid: u32) -> Option<(u64, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime (fields 14 and 15) and starttime (field 22) of a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses: the fields after it start after its last `)`.
pub fn parse_stat(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(22)?))
}

/// Clock ticks per second: `AT_CLKTCK` of the process's auxiliary vector (what `getconf CLK_TCK` reads),
/// else Linux's 100.
pub fn clock_ticks_per_second() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|a| clock_ticks_in_auxv(&a))
        .unwrap_or(100)
}

/// `AT_CLKTCK` (type 17) in an auxiliary vector of native-endian word pairs.
fn clock_ticks_in_auxv(auxv: &[u8]) -> Option<u64> {
    const AT_CLKTCK: usize = 17;
    let w = std::mem::size_of::<usize>();
    let word = |b: &[u8]| usize::from_ne_bytes(b.try_into().expect("one word"));
    auxv.chunks_exact(2 * w)
        .map(|p| (word(&p[..w]), word(&p[w..])))
        .find(|(t, _)| *t == AT_CLKTCK)
        .map(|(_, v)| v as u64)
        .filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line =
            "123 (tokio (worker) x) S 1 123 123 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 4242 \
                    123456 789 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some((325, 4242)));
        assert_eq!(parse_stat("123 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_the_real_stat_of_this_process() {
        let (ticks, started) = read_stat(std::process::id()).expect("own /proc/PID/stat");
        assert!(started > 0 && ticks < u64::MAX / 2);
        let hz = clock_ticks_per_second();
        assert!((1..=10_000).contains(&hz), "{hz}");
    }

    #[test]
    fn finds_clock_ticks_in_an_auxiliary_vector() {
        let words: Vec<usize> = vec![6, 4096, 17, 100, 0, 0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(clock_ticks_in_auxv(&bytes), Some(100));
        assert_eq!(clock_ticks_in_auxv(&bytes[..16]), None);
    }

    #[test]
    fn knows_a_backend_of_the_database_by_its_title() {
        let db = "concert_bench_20261207_42";
        let title = format!("postgres: 15/main: postgres {db} 127.0.0.1(51182) idle\0\0\0");
        assert!(is_backend_of(&title, db));
        assert!(is_backend_of(
            &format!("postgres: autovacuum worker {db}"),
            db
        ));
        assert!(!is_backend_of(
            &format!("postgres: 15/main: postgres {db}_x 127.0.0.1(5) idle"),
            db
        ));
        assert!(!is_backend_of(
            &format!("/usr/lib/postgresql/15/bin/postgres -D {db}"),
            db
        ));
        assert!(!is_backend_of("postgres: 15/main: checkpointer ", db));
    }

    #[test]
    fn parses_the_named_processes() {
        let (ok, bad) = parse_procs("api=10, worker-1=11,worker-2=12,broker=,=5,junk");
        assert_eq!(
            ok,
            vec![
                ("api".into(), 10),
                ("worker-1".into(), 11),
                ("worker-2".into(), 12)
            ]
        );
        assert_eq!(bad, vec!["broker=", "=5", "junk"]);
        assert_eq!(parse_procs(""), (vec![], vec![]));
    }
}
