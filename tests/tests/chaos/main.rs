//! The fault and multi-instance suite: 2 `concert-api` and 3 `concert-worker` processes (plus a relay with a
//! failpoint) against the real Postgres and broker, a crowd of clients spread over both api instances, and
//! faults injected while the crowd runs:
//!
//! 1. `kill -9` the worker owning the most busy partitions, then start it again (same group): its partitions
//!    move to the others and come back;
//! 2. `kill -9` an api instance: clients go to the other one and still get every outcome; it starts again;
//! 3. every connection to the test database dropped again and again for 2 s: the services reconnect on
//!    their own, clients retry a 503 with the same `Idempotency-Key`;
//! 4. the outbox relay aborted between the broker's confirmation and marking the batch
//!    (`CHAOS_RELAY_ABORT_AFTER_PUBLISH`): a restarted relay publishes the batch again.
//!
//! Broker restarts under load (SIGTERM, then SIGKILL) are a test of their own, `broker_restart.rs`: it needs
//! a broker it may stop, so it starts a private nisshi instead of using the shared broker.
//!
//! Then, from Postgres and the topics: no seat sold twice, no two live holds on a seat at once, money
//! conserved, every accepted request decided exactly once as its client saw it, payments = distinct payment
//! events, FIFO admission. The figures are printed (`cargo test -p concert-tests --test chaos -- --nocapture`)
//! and repeated in the failure message. Needs `cargo build --workspace --bins` first (`./dev test` does it).

mod broker_restart;
mod checks;
mod faults;
mod load;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use concert_tests::procs::free_port;
use concert_tests::{Deadline, TestStack};
use serde_json::json;

use faults::Conductor;
use load::Crowd;

/// Concurrent clients, half on each api instance.
const CLIENTS: usize = 40;
const WORKERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_survives_killed_processes_and_a_database_outage() {
    let run_started = std::time::Instant::now();
    // Workers run the consumer, ticker and sweeper; the only relay is the one with the failpoint (and,
    // after it aborted, the same process started again without it), so its batch is sure to be claimed.
    let mut metrics_ports = BTreeMap::new();
    // The crowd's clients step every 20-120 ms and retry through faults: faster than the per-user limit
    // allows a real client. The limiter stays on (its code path runs), just out of their way.
    let mut builder = TestStack::builder()
        .process_apis(2)
        .rate_limit_per_user(1000);
    for index in 0..WORKERS {
        let port = free_port();
        metrics_ports.insert(format!("worker-{index}"), port);
        builder = builder.process_worker_with_env(
            "consumer,ticker,sweeper",
            &[("WORKER_METRICS_PORT", &port.to_string())],
        );
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
            .create_concert_with(&json!({ "title": title, "venue": "Chaos hall", "dates": dates }))
            .await;
        // Admit the crowd at once; holds lapse after 3 s, so lapsed holds are taken by others too.
        api.set_policy(
            concert.concert_id,
            &json!({ "max_active_users": 1000, "active_seconds": 600, "hold_seconds": 3 }),
        )
        .await;
        concerts.push(concert);
    }
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    println!(
        "chaos: seed {seed}, processes {:?}, logs in {}/concert-tests/{}*.log",
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

    let mut conductor = Conductor {
        crowd: crowd.clone(),
        load_started,
        faults: Vec::new(),
        violations: Vec::new(),
        metrics_ports,
        aborted: faults::AbortedBatch::default(),
    };
    // Let payments pile up in the outbox, so the failpoint relay's batch holds several events.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Each fault starts once the previous one has recovered; after a failed recovery the rest are skipped
    // (the run has failed already, and piling faults on a broken stack only blurs the report).
    conductor.relay_abort(&mut stack).await;
    if conductor.violations.is_empty() {
        conductor.worker_kill(&mut stack).await;
    }
    if conductor.violations.is_empty() {
        conductor.api_kill(&mut stack, 1).await;
    }
    if conductor.violations.is_empty() {
        conductor
            .database_outage(&mut stack, Duration::from_secs(2))
            .await;
    }
    if conductor.violations.is_empty() {
        // A last stretch of undisturbed load after the faults.
        tokio::time::sleep(Duration::from_secs(3)).await;
    } else {
        println!("chaos: a recovery failed; skipping the remaining faults");
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
    for api in stack.apis() {
        let ready = api.get("/readyz").try_send().await.map(|r| r.status);
        if !matches!(ready, Ok(200)) {
            conductor
                .violations
                .push(format!("{} not ready after the run: {ready:?}", api.base));
        }
    }
    checks::settle(&stack).await;

    let log = std::mem::take(&mut *crowd.log.lock().expect("log lock"));
    let verdict = checks::verify(
        &stack,
        &log,
        &conductor.faults,
        &conductor.aborted,
        conductor.violations.clone(),
        load_secs,
    )
    .await;
    println!(
        "chaos figures ({:.0} s in all):\n{}",
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
