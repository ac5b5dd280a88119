//! The broker restarted under load. The test runs its own nisshi broker (SQLite storage in a directory of
//! its own, on a free port: the shared broker is never touched), 2 `concert-api` and 2 `concert-worker`
//! processes on it, and the chaos suite's crowd. The broker is stopped twice while the crowd runs, once
//! with SIGTERM and once with SIGKILL, kept down for a moment and started again on the same storage.
//!
//! Then the suite's invariants (`checks::verify`): every accepted command decided exactly once and as its
//! client saw it, no seat sold twice, no overlapping holds, money conserved, one payment event per payment.
//! And per restart: the commands in flight are all decided, the first outcome after the restart and the
//! time until every api instance reads replies from the broker again are printed
//! (`cargo test -p concert-tests --test chaos broker -- --nocapture`). Needs nisshi installed (`./dev test`
//! installs it) and `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_tests::broker::{PrivateBroker, Stop};
use concert_tests::{Api, Deadline, TestStack};
use serde_json::json;

use crate::checks;
use crate::faults::{AbortedBatch, Fault};
use crate::load::{self, Crowd};

const CLIENTS: usize = 24;
const WORKERS: usize = 2;
/// How long the broker stays down each time: long enough that producers, consumers and the group
/// coordinator all notice, short enough that clients retrying with their idempotency keys keep going.
const DOWN: Duration = Duration::from_secs(3);
/// Every command in flight at a restart must be decided within this long after the broker is back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_survives_broker_restarts() {
    let run_started = std::time::Instant::now();
    // Declared first, so it is dropped last: the stack deletes its topics on it when dropped.
    let mut broker = PrivateBroker::start();
    // The crowd's clients are faster than the per-user limit allows a real client (see the harness).
    let mut builder = TestStack::builder()
        .kafka_brokers(&broker.address())
        .process_apis(2)
        .rate_limit_per_user(1000);
    for _ in 0..WORKERS {
        builder = builder.process_worker("consumer,ticker,sweeper,relay");
    }
    let mut stack = builder.start().await;
    stack.warm_up().await;

    let api = stack.api().clone();
    let mut concerts = Vec::new();
    for title in ["Aurora", "Borealis"] {
        let dates: Vec<_> = (0..3)
            .map(|i| json!({ "starts_at": concert_tests::client::future_date(i), "seats": 120, "price": 1000 }))
            .collect();
        let concert = api
            .create_concert_with(&json!({ "title": title, "venue": "Broker hall", "dates": dates }))
            .await;
        api.set_policy(
            concert.concert_id,
            &json!({ "max_active_users": 1000, "active_seconds": 600, "hold_seconds": 3 }),
        )
        .await;
        concerts.push(concert);
    }
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    println!(
        "broker chaos: seed {seed}, broker nisshi at {} ({}), processes {:?}, logs in {}/concert-tests/{}*.log",
        broker.address(),
        broker.dir().display(),
        stack.process_names(),
        std::env::temp_dir().display(),
        stack.env.settings.topic_prefix
    );
    let crowd = Crowd::new(
        stack.apis().to_vec(),
        concerts,
        stack.env.request_ids(),
        seed,
    );
    let load_started = Utc::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(load::run_client(crowd.clone(), i)))
        .collect();

    let mut restarts = Restarts {
        crowd: crowd.clone(),
        load_started,
        faults: Vec::new(),
        violations: Vec::new(),
    };
    // Let payments and replies flow first, so the restarts interrupt all of them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    restarts.restart(&stack, &mut broker, Stop::Term).await;
    if restarts.violations.is_empty() {
        restarts.restart(&stack, &mut broker, Stop::Kill).await;
    }
    if restarts.violations.is_empty() {
        // Undisturbed load after the restarts: the service keeps working, not just recovers once.
        tokio::time::sleep(Duration::from_secs(3)).await;
    } else {
        println!("broker chaos: a recovery failed; skipping the rest");
        crowd.abandon.store(true, Ordering::Relaxed);
    }

    crowd.stop.store(true, Ordering::Relaxed);
    let load_secs = (Utc::now() - load_started).num_milliseconds() as f64 / 1000.0;
    let stopping = Deadline::secs(120);
    for client in clients {
        tokio::time::timeout(stopping.remaining(), client)
            .await
            .expect("the clients finish their last command within 120 s")
            .expect("a client panicked");
    }
    stack.assert_processes_alive();
    checks::settle(&stack).await;

    let log = std::mem::take(&mut *crowd.log.lock().expect("log lock"));
    let verdict = checks::verify(
        &stack,
        &log,
        &restarts.faults,
        &AbortedBatch::default(),
        restarts.violations.clone(),
        load_secs,
    )
    .await;
    println!(
        "broker chaos figures ({:.0} s in all):\n{}",
        run_started.elapsed().as_secs_f64(),
        verdict.figures
    );
    assert!(
        verdict.violations.is_empty(),
        "{} invariant violations:\n- {}\n\nfigures:\n{}",
        verdict.violations.len(),
        verdict.violations.join("\n- "),
        verdict.figures
    );
}

/// The restarts done so far and what was seen of each recovery.
struct Restarts {
    crowd: Arc<Crowd>,
    load_started: DateTime<Utc>,
    faults: Vec<Fault>,
    violations: Vec<String>,
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

impl Restarts {
    fn note(&mut self, note: String) {
        let fault = self.faults.last_mut().expect("a fault was recorded");
        println!("broker chaos:   {note}");
        fault.notes.push(note);
    }

    fn violation(&mut self, msg: String) {
        println!("broker chaos: VIOLATION {msg}");
        self.violations.push(msg);
    }

    /// Stops the broker with `how`, keeps it down for [`DOWN`], starts it on the same storage, and follows
    /// the recovery: replies read again by every api instance, the first outcome decided after the restart,
    /// every command in flight at the stop decided.
    async fn restart(&mut self, stack: &TestStack, broker: &mut PrivateBroker, how: Stop) {
        let apis = stack.apis().to_vec();
        let inflight: Vec<u64> = self.crowd.inflight().into_iter().map(|(n, _)| n).collect();
        let stopped_at = Utc::now();
        let took = tokio::task::block_in_place(|| broker.stop(how));
        let what = match how {
            Stop::Term => "SIGTERM",
            Stop::Kill => "SIGKILL",
        };
        let at_load_s = secs(stopped_at - self.load_started);
        println!("broker chaos: +{at_load_s:.1}s broker stopped with {what}");
        self.faults.push(Fault {
            what: format!(
                "broker stopped with {what} ({:.2} s to exit), down for {:.0} s",
                took.as_secs_f64(),
                DOWN.as_secs_f64()
            ),
            at: stopped_at,
            at_load_s,
            notes: Vec::new(),
        });
        tokio::time::sleep(DOWN).await;
        let listening = tokio::task::block_in_place(|| broker.start_again());
        let back = Utc::now();
        // Where the reply readers are now: anything read past this came from the restarted broker. (Read
        // before the stop, the baseline would count replies still read on the way down.)
        let replies_before = reply_offsets(&apis).await;
        self.note(format!(
            "started again on the same storage, listening after {:.2} s; {} commands were in flight at the stop",
            listening.as_secs_f64(),
            inflight.len()
        ));
        // Commands submitted while it was down are in flight too; follow them as well.
        let mut snapshot = inflight;
        snapshot.extend(self.crowd.inflight().into_iter().map(|(n, _)| n));
        snapshot.sort_unstable();
        snapshot.dedup();

        let deadline = Deadline::after(RECOVERY_LIMIT);
        let (first, replies, drained) = tokio::join!(
            first_outcome_after(stack, back, deadline),
            replies_flowing(&apis, &replies_before, back, deadline),
            drained(&self.crowd, back, &snapshot, deadline)
        );
        match first {
            Some(s) => self.note(format!(
                "first command decided {s:.2} s after the broker was back"
            )),
            None => self.violation(format!(
                "after the {what} restart no command was decided within {} s",
                RECOVERY_LIMIT.as_secs()
            )),
        }
        match replies {
            Ok(s) => self.note(format!(
                "every api instance read new replies from the broker {s:.2} s after it was back"
            )),
            Err(stuck) => self.violation(format!(
                "after the {what} restart, api instances {stuck:?} read no reply within {} s",
                RECOVERY_LIMIT.as_secs()
            )),
        }
        let (left, given_up, took) = drained;
        if left > 0 {
            self.violation(format!(
                "after the {what} restart, {left} of {} commands in flight were still undecided {} s later",
                snapshot.len(),
                RECOVERY_LIMIT.as_secs()
            ));
        } else {
            self.note(format!(
                "recovered: all {} commands in flight were done {took:.2} s after the broker was back ({given_up} given up by their clients)",
                snapshot.len()
            ));
        }
        if given_up > 0 {
            self.violation(format!(
                "after the {what} restart, {given_up} commands in flight got no outcome before their clients gave up"
            ));
        }
    }
}

/// Seconds after `since` of the first outcome decided after it.
async fn first_outcome_after(
    stack: &TestStack,
    since: DateTime<Utc>,
    deadline: Deadline,
) -> Option<f64> {
    loop {
        let first: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(completed_at) FROM requests WHERE completed_at > $1")
                .bind(since)
                .fetch_one(stack.db())
                .await
                .ok()
                .flatten();
        if let Some(first) = first {
            return Some(secs(first - since));
        }
        if deadline.passed() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until none of `commands` is in flight: (still in flight, given up, seconds after `since`).
async fn drained(
    crowd: &Crowd,
    since: DateTime<Utc>,
    commands: &[u64],
    deadline: Deadline,
) -> (usize, usize, f64) {
    loop {
        let left = crowd.still_inflight(commands);
        if left == 0 || deadline.passed() {
            return (left, crowd.given_up(commands), secs(Utc::now() - since));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum over partitions of each api instance's `reply_last_offset` gauge: how far its reply reader
/// has read the reply topic.
async fn reply_offsets(apis: &[Api]) -> Vec<f64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut sums = Vec::new();
    for api in apis {
        let text = match http.get(format!("{}/metrics", api.base)).send().await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let by_partition: BTreeMap<&str, f64> = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("reply_last_offset{")?;
                let (labels, value) = rest.split_once("} ")?;
                Some((labels, value.trim().parse().ok()?))
            })
            .collect();
        sums.push(by_partition.values().sum());
    }
    sums
}

/// Waits until every api instance has read replies past `before` (taken once the broker was back): its
/// reply reader found the restarted broker. Seconds after `since`, or the instances that did not.
async fn replies_flowing(
    apis: &[Api],
    before: &[f64],
    since: DateTime<Utc>,
    deadline: Deadline,
) -> Result<f64, Vec<String>> {
    loop {
        let now = reply_offsets(apis).await;
        let stuck: Vec<String> = apis
            .iter()
            .zip(now.iter().zip(before))
            .filter(|(_, (now, before))| now <= before)
            .map(|(api, _)| api.base.clone())
            .collect();
        if stuck.is_empty() {
            return Ok(secs(Utc::now() - since));
        }
        if deadline.passed() {
            return Err(stuck);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
