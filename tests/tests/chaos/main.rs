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
//! a broker it may stop, so it starts a private nisshi instead of using the shared broker; so does
//! `broker_stall.rs` (a command the frozen broker confirms too late is refused, and applied only when sent
//! again); so does `relay_stall.rs` (the payment-event relay across a 12 s broker freeze).
//!
//! Then, from Postgres and the topics: no seat sold twice, no two live holds on a seat at once, money
//! conserved, every accepted request decided exactly once as its client saw it, payments = distinct payment
//! events, FIFO admission. The figures are printed (`cargo test -p concert-tests --test chaos -- --nocapture`)
//! and repeated in the failure message. Needs `cargo build --workspace --bins` first (`./dev test` does it).
//!
//! The other runs of this suite, one fault each under the same crowd: `freeze` (a worker SIGSTOPped for 30 s
//! and resumed) and `pg_restart` (PostgreSQL itself restarted). Heavy stacks run one at a time.

mod broker_restart;
mod broker_stall;
mod checks;
mod faults;
mod freeze;
mod harness;
mod load;
mod pg_restart;
mod relay_stall;

use std::time::Duration;

use concert_tests::TestStack;

use harness::Run;

/// Concurrent clients, half on each api instance.
const CLIENTS: usize = 40;
const WORKERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_survives_killed_processes_and_a_database_outage() {
    // Workers run the consumer, ticker and sweeper; the only relay is the one with the failpoint (and,
    // after it aborted, the same process started again without it), so its batch is sure to be claimed.
    let (builder, ports) = harness::with_workers(
        TestStack::builder().process_apis(2),
        WORKERS,
        "consumer,ticker,sweeper",
    );
    let stack = builder.start().await;
    let mut run = Run::start(stack, ports, CLIENTS, "chaos").await;
    // Let payments pile up in the outbox, so the failpoint relay's batch holds several events.
    run.settle_for(Duration::from_secs(4)).await;
    // Each fault starts once the previous one has recovered; after a failed recovery the rest are skipped
    // (the run has failed already, and piling faults on a broken stack only blurs the report).
    let Run {
        stack, conductor, ..
    } = &mut run;
    conductor.relay_abort(stack).await;
    if conductor.violations.is_empty() {
        conductor.worker_kill(stack).await;
    }
    if conductor.violations.is_empty() {
        conductor.api_kill(stack, 1).await;
    }
    if conductor.violations.is_empty() {
        conductor
            .database_outage(stack, Duration::from_secs(2))
            .await;
    }
    if conductor.violations.is_empty() {
        // A last stretch of undisturbed load after the faults.
        run.settle_for(Duration::from_secs(3)).await;
    } else {
        println!("chaos: a recovery failed; skipping the remaining faults");
    }
    run.finish("chaos", |_| Vec::new()).await;
}
