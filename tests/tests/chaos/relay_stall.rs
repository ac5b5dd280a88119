//! The payment-event relay across a 12-second broker freeze. The relay leases a batch of outbox rows in one
//! short statement, produces them outside any transaction and marks them only once the broker confirmed
//! them (`workers/src/relay.rs`). A relay that held a transaction open while the broker delivered would
//! be ended by PostgreSQL's 10 s idle-in-transaction limit in a freeze this long: its rows published but
//! never marked, sent again every round.
//!
//! Payments are made while the relay process is frozen (SIGSTOP), so their events wait in the outbox; then
//! the broker is frozen and the relay resumed: it leases the rows and produces into the frozen broker.
//! While the broker is frozen nothing may be marked published; 12 s later the broker resumes, and every row
//! must be marked within the delivery timeout and each event be on the topic once (at most the one batch
//! that was in flight may be there twice).
//!
//! Runs its own nisshi, one api, one worker without the relay role in process and the relay as a
//! `concert-worker` process (`cargo test -p concert-tests --test chaos relay -- --nocapture`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use concert_tests::broker::PrivateBroker;
use concert_tests::{kafka, wait_until, Deadline, TestStack};
use concert_workers::Roles;
use serde_json::json;

use crate::freeze::signal;

/// Payments whose events cross the freeze (fewer than one relay batch, so they are all in flight at once).
const PAYMENTS: usize = 24;
/// As long as the issue asks: past PostgreSQL's 10 s idle-in-transaction limit, inside the producer's
/// 15 s delivery timeout.
const FREEZE: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_marks_events_after_a_twelve_second_broker_freeze_and_sends_each_once() {
    // Declared first, so it is dropped last: the stack deletes its topics on it when dropped.
    let broker = PrivateBroker::start();
    let mut stack = TestStack::builder()
        .kafka_brokers(&broker.address())
        .apis(1)
        .worker_with(Roles {
            relay: false,
            ..Roles::all()
        })
        .process_worker("relay")
        .start()
        .await;
    stack.warm_up().await;
    let relay_pid = stack.process("worker-0").pid();

    // The relay stands still while the payments are made: their events wait in the outbox.
    signal(relay_pid, "STOP");
    let api = stack.api().clone();
    let concert = api.create_concert(1, 1_000).await;
    let date = concert.date();
    let payments = futures::future::join_all((0..PAYMENTS).map(|i| {
        let api = api.clone();
        let concert_id = concert.concert_id;
        async move {
            let user = api.sign_up(&format!("fan-{i}")).await;
            api.charge(&user, 1_000).await;
            let token = api.enter(&user, concert_id).await;
            let hold = api.hold_ok(&user, &token, date, i as i64 + 1).await;
            api.pay(&user, &token, hold["hold_id"].as_str().expect("hold_id"))
                .await
                .expect_success()
        }
    }))
    .await;
    assert_eq!(payments.len(), PAYMENTS);
    assert_eq!(
        unpublished(&stack).await,
        PAYMENTS as i64,
        "the events wait"
    );

    // The broker freezes; the relay resumes, leases the rows and produces into the frozen broker.
    broker.freeze();
    signal(relay_pid, "CONT");
    let frozen_at = Instant::now();
    wait_until(
        "the relay to lease the waiting rows",
        Deadline::secs(5),
        Duration::from_millis(50),
        || async {
            let leased: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND leased_until > now()",
            )
            .fetch_one(stack.db())
            .await
            .expect("counting leases");
            (leased == PAYMENTS as i64).then_some(())
        },
    )
    .await;
    while frozen_at.elapsed() < FREEZE {
        assert_eq!(
            unpublished(&stack).await,
            PAYMENTS as i64,
            "a row was marked published while the broker was frozen ({:?} in)",
            frozen_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    broker.thaw();
    let thawed_at = Instant::now();

    wait_until(
        "every row marked published after the broker resumed",
        Deadline::secs(30),
        Duration::from_millis(100),
        || async { (unpublished(&stack).await == 0).then_some(()) },
    )
    .await;
    let marked_after = thawed_at.elapsed();

    let topic = &stack.env.topics.payment_events;
    let records = kafka::read_all(
        &stack.env.settings.kafka_brokers,
        topic,
        stack.env.partitions(topic),
        PAYMENTS,
    )
    .await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for record in &records {
        let event = record.json();
        *copies
            .entry(event["event_id"].as_str().expect("event_id").to_owned())
            .or_default() += 1;
    }
    let repeated = copies.values().filter(|&&n| n > 1).count();
    println!(
        "relay across a {FREEZE:?} broker freeze: all {PAYMENTS} rows marked {marked_after:?} after the \
         broker resumed; {} records on the topic for {} events, {repeated} sent twice",
        records.len(),
        copies.len()
    );
    assert_eq!(copies.len(), PAYMENTS, "one event per payment: {copies:?}");
    assert!(
        copies.values().all(|&n| n <= 2),
        "an event was sent more than twice: {copies:?}"
    );
    // The payments were decided before the freeze, and nothing else published in between.
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(stack.db())
        .await
        .expect("counting payments");
    assert_eq!(paid, PAYMENTS as i64, "{}", json!(payments));
    stack.assert_processes_alive();
}

async fn unpublished(stack: &TestStack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(stack.db())
        .await
        .expect("counting unpublished rows")
}
