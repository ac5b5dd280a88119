//! The outbox: every payment gets exactly one outbox row and at least one event on `<prefix>events.payments`,
//! also with two relays running at once.

use std::collections::{HashMap, HashSet};

use concert_tests::{kafka, TestStack};
use serde_json::Value;
use uuid::Uuid;

use crate::support::{buyer, count, max_active, outbox_published, uuid};

/// `n` users each buy one seat; returns the payment results.
async fn make_payments(stack: &TestStack, n: usize) -> Vec<Value> {
    let api = stack.api();
    let concert = api.create_concert(2, 7_000).await;
    api.set_policy(concert.concert_id, &max_active(100, 600, 300))
        .await;
    let concert = &concert;
    let buys = (0..n).map(|i| async move {
        let api = &stack.apis()[i % stack.apis().len()];
        let (user, token) = buyer(api, &format!("buyer-{i}"), concert, 7_000).await;
        let date = concert.dates[i % 2].date_id;
        let hold = api.hold_ok(&user, &token, date, i as i64 + 1).await;
        api.pay(&user, &token, hold["hold_id"].as_str().expect("hold_id"))
            .await
            .expect_success()
    });
    futures::future::join_all(buys).await
}

/// Checks the outbox and the events topic against the payments made.
async fn assert_one_row_and_events(stack: &TestStack, payments: &[Value]) {
    let db = stack.db();
    let n = payments.len() as i64;
    assert_eq!(count(db, "SELECT count(*) FROM payments", None).await, n);
    assert_eq!(
        count(db, "SELECT count(*) FROM outbox", None).await,
        n,
        "exactly one outbox row per payment"
    );
    for payment in payments {
        let id = uuid(&payment["payment_id"]);
        let rows = count(
            db,
            "SELECT count(*) FROM outbox WHERE payload->>'payment_id' = $1::text",
            Some(id),
        )
        .await;
        assert_eq!(rows, 1, "payment {id} has one outbox row");
    }
    outbox_published(db, "every outbox row to be published", 60).await;

    let topic = &stack.env.topics.payment_events;
    let records = kafka::read_all(
        &stack.env.settings.kafka_brokers,
        topic,
        stack.env.partitions(topic),
        payments.len(),
    )
    .await;
    let mut by_event: HashMap<Uuid, Value> = HashMap::new();
    for record in &records {
        let event = record.json();
        assert_eq!(event["event_type"], "payment.completed", "{event}");
        let key = String::from_utf8(record.key.clone().unwrap_or_default()).expect("utf-8 key");
        assert_eq!(
            key,
            event["payment_id"].as_str().unwrap_or_default(),
            "keyed by payment_id"
        );
        let event_id = uuid(&event["event_id"]);
        if let Some(seen) = by_event.insert(event_id, event.clone()) {
            assert_eq!(seen, event, "a repeated event is the same event");
        }
    }
    assert!(
        records.len() >= payments.len(),
        "at least one event per payment: {} events for {} payments",
        records.len(),
        payments.len()
    );
    assert_eq!(
        by_event.len(),
        payments.len(),
        "distinct event ids = payments: {records:?}"
    );

    let outbox_ids: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM outbox")
        .fetch_all(db)
        .await
        .expect("outbox")
        .into_iter()
        .collect();
    assert_eq!(
        by_event.keys().copied().collect::<HashSet<_>>(),
        outbox_ids,
        "events carry the outbox event ids"
    );
    for payment in payments {
        let event = by_event
            .values()
            .find(|e| e["payment_id"] == payment["payment_id"])
            .unwrap_or_else(|| panic!("an event for {payment}"));
        for field in ["reservation_id", "amount", "date_id", "seat_no"] {
            assert_eq!(event[field], payment[field], "{field} of {event}");
        }
        for field in ["hold_id", "user_id", "concert_id"] {
            uuid(&event[field]);
        }
        crate::support::time(&event["occurred_at"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_payment_has_one_outbox_row_and_an_event() {
    let stack = TestStack::start().await;
    let payments = make_payments(&stack, 4).await;
    assert_one_row_and_events(&stack, &payments).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_in_process_relays_publish_each_event() {
    let stack = TestStack::start_with(1, 2).await;
    let payments = make_payments(&stack, 8).await;
    assert_one_row_and_events(&stack, &payments).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_processes_publish_each_event() {
    let mut stack = TestStack::processes(1, &["consumer,ticker,sweeper,relay", "relay"]).await;
    stack.warm_up().await;
    let payments = make_payments(&stack, 8).await;
    assert_one_row_and_events(&stack, &payments).await;
    stack.assert_processes_alive();
}
