//! Cancelling a reservation over HTTP: the refund, the seat, the ledger, the event, the cutoff, and one
//! refund per reservation however many cancels race (two api instances, two workers).

use std::collections::HashMap;
use std::time::Duration;

use concert_tests::{kafka, Api, Concert, Outcome, TestStack, User};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{buyer, count, max_active, outbox_published, time, uuid};

/// `user` (with `money` won) buys seat `seat_no` of the concert's first date; returns the payment's result.
async fn bought(api: &Api, user: &User, concert: &Concert, seat_no: i64) -> Value {
    let token = api.enter(user, concert.concert_id).await;
    let hold = api.hold_ok(user, &token, concert.date(), seat_no).await;
    api.pay(user, &token, hold["hold_id"].as_str().expect("hold_id"))
        .await
        .expect_success()
}

fn reservation_of(paid: &Value) -> String {
    paid["reservation_id"]
        .as_str()
        .expect("reservation_id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_refunds_the_price_frees_the_seat_and_keeps_the_reservation() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 30_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 100_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let paid = bought(api, &ada, &concert, 3).await;
    let reservation_id = reservation_of(&paid);
    assert_eq!(api.balance(&ada).await, 70_000);

    let resp = api.cancel_raw(&ada, &reservation_id).await;
    let doc = resp.expect(200).clone();
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("CANCEL"), Some("SUCCEEDED")),
        "{doc}"
    );
    let canceled = &doc["result"];
    assert_eq!(canceled["reservation_id"], json!(reservation_id));
    assert_eq!(canceled["amount"], json!(30_000));
    uuid(&canceled["refund_id"]);
    let canceled_at = time(&canceled["canceled_at"]);

    assert_eq!(api.balance(&ada).await, 100_000);
    let history = api.history(&ada, 50).await;
    assert_eq!(
        (
            history[0]["kind"].as_str(),
            history[0]["amount"].as_i64(),
            history[0]["balance_after"].as_i64()
        ),
        (Some("REFUND"), Some(30_000), Some(100_000)),
        "{history:?}"
    );
    let reservations = api.reservations(&ada).await;
    assert_eq!(reservations.len(), 1, "a cancelled reservation is kept");
    let r = &reservations[0];
    assert_eq!(r["status"], "CANCELED", "{r}");
    assert_eq!(time(&r["canceled_at"]), canceled_at);
    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, concert.date(), 3)
            .await,
        "AVAILABLE"
    );

    // Once is all: again is 409, and the seat goes to the next buyer.
    api.cancel(&ada, &reservation_id)
        .await
        .expect_failure(409, "ALREADY_CANCELED");
    assert_eq!(api.balance(&ada).await, 100_000);
    api.hold_ok(&bob, &bob_token, concert.date(), 3).await;
    let db = stack.db();
    assert_eq!(
        count(db, "SELECT count(*) FROM refunds", None).await,
        1,
        "one refund"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM balance_ledger WHERE kind = 'REFUND'",
            None
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_or_an_unknown_reservation_is_not_found() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 1_000).await;
    let bob = api.sign_up("bob").await;
    let reservation_id = reservation_of(&bought(api, &ada, &concert, 1).await);

    api.cancel_raw(&bob, &reservation_id)
        .await
        .expect_problem(404, "RESERVATION_NOT_FOUND");
    api.cancel_raw(&bob, &Uuid::new_v4().to_string())
        .await
        .expect_problem(404, "RESERVATION_NOT_FOUND");
    api.delete(&format!("/v1/reservations/{reservation_id}"))
        .send()
        .await
        .expect_problem(401, "UNAUTHORIZED");
    api.cancel_raw(&ada, "not-a-uuid")
        .await
        .expect_problem(400, "VALIDATION_FAILED");
    assert_eq!(api.balance(&ada).await, 0);
    let r = &api.reservations(&ada).await[0];
    assert_eq!(r["status"], "CONFIRMED");
    assert!(r.get("canceled_at").is_none(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_is_submitted_then_polled_and_a_key_applies_it_once() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 5_000).await;
    let reservation_id = reservation_of(&bought(api, &ada, &concert, 9).await);
    let path = format!("/v1/reservations/{reservation_id}");

    let first = api
        .delete(&path)
        .auth(&ada)
        .idempotency_key("cancel-9")
        .send()
        .await;
    let accepted = first.expect(202).clone();
    assert_eq!(accepted["status"], "PENDING");
    let request_id = accepted["request_id"].as_str().expect("request_id");
    assert_eq!(
        first.header("location"),
        Some(format!("/v1/requests/{request_id}").as_str())
    );
    let outcome = api.await_request(&ada, request_id).await.expect_success();
    assert_eq!(outcome["amount"], json!(5_000));

    // The same key again names the same request and its outcome; nothing is refunded twice.
    let again = api
        .delete(&path)
        .auth(&ada)
        .idempotency_key("cancel-9")
        .wait(5)
        .send()
        .await;
    let doc = again.expect(200);
    assert_eq!(doc["request_id"], json!(request_id));
    assert_eq!(doc["result"], outcome);
    assert_eq!(api.balance(&ada).await, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_cutoff_is_set_per_concert_and_kept_when_omitted() {
    let stack = TestStack::start().await;
    let api = stack.api();
    // Its date starts in 30 days, at 19:00 UTC.
    let concert = api.create_concert(1, 2_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 4_000).await;
    let room = api.room(concert.concert_id).await;
    assert_eq!(room["cancel_cutoff_hours"], json!(24), "the default");

    for bad in [json!(-1), json!(8761), json!("24"), json!(1.5)] {
        let mut policy = max_active(100, 600, 300);
        policy["cancel_cutoff_hours"] = bad.clone();
        api.put_policy(concert.concert_id, &policy)
            .await
            .expect_problem(400, "VALIDATION_FAILED");
    }
    assert_eq!(
        api.room(concert.concert_id).await["cancel_cutoff_hours"],
        json!(24)
    );
    let mut policy = max_active(100, 600, 300);
    policy["cancel_cutoff_hours"] = json!(32 * 24);
    let set = api.put_policy(concert.concert_id, &policy).await;
    assert_eq!(set.expect(200)["cancel_cutoff_hours"], json!(32 * 24));
    // A policy without it keeps it.
    api.set_policy(concert.concert_id, &max_active(100, 600, 300))
        .await;
    assert_eq!(
        api.room(concert.concert_id).await["cancel_cutoff_hours"],
        json!(32 * 24)
    );

    // 32 days before a date 30 days away has passed.
    let first = reservation_of(&bought(api, &ada, &concert, 1).await);
    let listed = &api.reservations(&ada).await[0];
    assert!(
        time(&listed["cancelable_until"]) < chrono::Utc::now(),
        "{listed}"
    );
    api.cancel(&ada, &first)
        .await
        .expect_failure(409, "CANCEL_CLOSED");
    assert_eq!(api.balance(&ada).await, 2_000);

    let mut policy = max_active(100, 600, 300);
    policy["cancel_cutoff_hours"] = json!(0);
    api.set_policy(concert.concert_id, &policy).await;
    api.cancel(&ada, &first).await.expect_success();
    assert_eq!(api.balance(&ada).await, 4_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_is_published_keyed_by_its_payment() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 8_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 8_000).await;
    let paid = bought(api, &ada, &concert, 5).await;
    let reservation_id = reservation_of(&paid);
    let canceled = api.cancel(&ada, &reservation_id).await.expect_success();

    let topic = &stack.env.topics.payment_events;
    let records = kafka::read_all(
        &stack.env.settings.kafka_brokers,
        topic,
        stack.env.partitions(topic),
        2,
    )
    .await;
    let refunds: Vec<(String, Value)> = records
        .iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap_or_default()).expect("utf-8 key");
            (key, r.json())
        })
        .filter(|(_, e)| e["event_type"] == "payment.refunded")
        .collect();
    assert!(!refunds.is_empty(), "a refund event: {records:?}");
    let (key, event) = &refunds[0];
    assert!(
        refunds
            .iter()
            .all(|(_, e)| e["event_id"] == event["event_id"]),
        "repeats are the same event: {refunds:?}"
    );
    assert_eq!(key, paid["payment_id"].as_str().expect("payment_id"));
    assert_eq!(event["payment_id"], paid["payment_id"]);
    assert_eq!(event["refund_id"], canceled["refund_id"]);
    assert_eq!(event["reservation_id"], json!(reservation_id));
    assert_eq!(event["user_id"], json!(ada.user_id));
    assert_eq!(event["date_id"], json!(concert.date()));
    assert_eq!(event["seat_no"], json!(5));
    assert_eq!(event["amount"], json!(8_000));
    uuid(&event["event_id"]);
    time(&event["occurred_at"]);
    // And it follows its payment's event on that key's partition.
    let completed = records.iter().position(|r| {
        r.json()["event_type"] == "payment.completed"
            && r.json()["payment_id"] == paid["payment_id"]
    });
    let refunded = records
        .iter()
        .position(|r| r.json()["event_type"] == "payment.refunded");
    assert!(
        completed.is_some() && completed < refunded,
        "payment then refund: {records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_cancels_of_one_reservation_on_two_instances_refund_it_once() {
    // Thirty at once from one user is past the per-user burst; this race is about the refund, not the limit.
    let stack = TestStack::builder()
        .apis(2)
        .workers(2)
        .rate_limit_per_user(0)
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(1, 10_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 10_000).await;
    let reservation_id = reservation_of(&bought(api, &ada, &concert, 1).await);
    assert_eq!(api.balance(&ada).await, 0);

    let outcomes: Vec<Outcome> = futures::future::join_all((0..30).map(|i| {
        let api = &stack.apis()[i % 2];
        api.cancel(&ada, &reservation_id)
    }))
    .await;

    assert_eq!(
        outcomes.iter().filter(|o| o.is_success()).count(),
        1,
        "exactly one cancel succeeds: {outcomes:?}"
    );
    for outcome in outcomes.iter().filter(|o| !o.is_success()) {
        outcome.expect_failure(409, "ALREADY_CANCELED");
    }
    assert_eq!(api.balance(&ada).await, 10_000);
    let db = stack.db();
    for (sql, n) in [
        ("SELECT count(*) FROM refunds", 1),
        (
            "SELECT count(*) FROM balance_ledger WHERE kind = 'REFUND'",
            1,
        ),
        (
            "SELECT count(*) FROM outbox WHERE event_type = 'payment.refunded'",
            1,
        ),
        (
            "SELECT count(*) FROM reservations WHERE status = 'CANCELED'",
            1,
        ),
    ] {
        assert_eq!(count(db, sql, None).await, n, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_their_date_cancel_refund_every_reservation_once() {
    const BUYERS: usize = 8;
    let stack = TestStack::builder()
        .apis(2)
        .workers(2)
        .rate_limit_per_user(0)
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(1, 3_000).await;
    api.set_policy(concert.concert_id, &max_active(100, 600, 300))
        .await;
    let concert = &concert;
    let buyers: Vec<(User, String)> = futures::future::join_all((0..BUYERS).map(|i| async move {
        let user = api.sign_up(&format!("buyer-{i}")).await;
        api.charge(&user, 3_000).await;
        let paid = bought(api, &user, concert, i as i64 + 1).await;
        (user, reservation_of(&paid))
    }))
    .await;

    // Every buyer cancels (twice, on both instances) while the organizer cancels the date.
    let cancels = buyers.iter().enumerate().flat_map(|(i, (user, r))| {
        [0, 1].map(|k| {
            let api = &stack.apis()[(i + k) % 2];
            async move { api.cancel(user, r).await }
        })
    });
    let date_cancel = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stack.apis()[1].cancel_date_raw(concert.date()).await
    };
    let (outcomes, date_cancel) = tokio::join!(futures::future::join_all(cancels), date_cancel);

    let result = date_cancel.expect(200)["result"].clone();
    let by_users = outcomes.iter().filter(|o| o.is_success()).count();
    for outcome in outcomes.iter().filter(|o| !o.is_success()) {
        outcome.expect_failure(409, "ALREADY_CANCELED");
    }
    assert_eq!(
        by_users as i64 + result["reservations_refunded"].as_i64().expect("count"),
        BUYERS as i64,
        "each reservation refunded by its buyer or by the date cancel: {result}"
    );
    for (user, _) in &buyers {
        assert_eq!(api.balance(user).await, 3_000, "{}", user.name);
    }
    let db = stack.db();
    let per_reservation: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT r.reservation_id, count(f.refund_id) FROM reservations r
         LEFT JOIN refunds f ON f.reservation_id = r.reservation_id GROUP BY r.reservation_id",
    )
    .fetch_all(db)
    .await
    .expect("refunds")
    .into_iter()
    .collect();
    assert_eq!(per_reservation.len(), BUYERS);
    assert!(
        per_reservation.values().all(|&n| n == 1),
        "one refund each: {per_reservation:?}"
    );
    outbox_published(db, "every refund event to be published", 60).await;
}
