//! Paying holds.

use std::time::Duration;

use concert_tests::{wait_until, Deadline, TestStack};
use serde_json::json;
use uuid::Uuid;

use crate::support::{buyer, count, max_active, time, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_a_hold_sells_the_seat_and_completes_the_place() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 30_000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 100_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let hold = api.hold_ok(&ada, &ada_token, concert.date(), 3).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id").to_owned();

    let resp = api.pay_raw(&ada, &ada_token, &hold_id).await;
    let doc = resp.expect(200).clone();
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("PAY"), Some("SUCCEEDED")),
        "{doc}"
    );
    let paid = &doc["result"];
    let payment_id = uuid(&paid["payment_id"]);
    let reservation_id = uuid(&paid["reservation_id"]);
    assert_eq!(paid["amount"], json!(30_000));
    assert_eq!(uuid(&paid["date_id"]), concert.date());
    assert_eq!(paid["seat_no"], json!(3));
    let paid_at = time(&paid["paid_at"]);

    // Read your writes: once the payment answered 200, its effects are visible through the api.
    let status = api.queue_status(&ada_token).await;
    assert_eq!(
        status.expect(200)["status"],
        "COMPLETED",
        "the place is COMPLETED once paid"
    );
    api.dates_raw(&ada, Some(&ada_token), concert.concert_id)
        .await
        .expect_problem(401, "QUEUE_TOKEN_EXPIRED");

    assert_eq!(api.balance(&ada).await, 70_000);
    let history = api.history(&ada, 50).await;
    assert_eq!(
        (history[0]["kind"].as_str(), history[0]["amount"].as_i64()),
        (Some("PAYMENT"), Some(30_000)),
        "{history:?}"
    );
    assert_eq!(history[0]["balance_after"], json!(70_000));

    let reservations = api.reservations(&ada).await;
    assert_eq!(reservations.len(), 1, "{reservations:?}");
    let r = &reservations[0];
    assert_eq!(uuid(&r["reservation_id"]), reservation_id);
    assert_eq!(uuid(&r["concert_id"]), concert.concert_id);
    assert_eq!(uuid(&r["date_id"]), concert.date());
    assert_eq!(
        (r["seat_no"].as_i64(), r["price"].as_i64()),
        (Some(3), Some(30_000))
    );
    assert_eq!(time(&r["paid_at"]), paid_at);
    assert!(
        api.reservations(&bob).await.is_empty(),
        "reservations are per user"
    );

    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, concert.date(), 3)
            .await,
        "SOLD"
    );
    api.hold(&bob, &bob_token, concert.date(), 3)
        .await
        .expect_failure(409, "SEAT_UNAVAILABLE");
    let dates = api
        .dates_raw(&bob, Some(&bob_token), concert.concert_id)
        .await;
    assert_eq!(dates.expect(200)["dates"][0]["available_seats"], json!(49));

    let db = stack.db();
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM payments WHERE payment_id = $1",
            Some(payment_id)
        )
        .await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM outbox WHERE payload->>'payment_id' = $1::text",
            Some(payment_id)
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_someone_elses_or_an_unknown_hold_is_not_found() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 10_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 10_000).await;
    let hold = api.hold_ok(&ada, &ada_token, concert.date(), 1).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id");

    api.pay(&bob, &bob_token, hold_id)
        .await
        .expect_failure(404, "HOLD_NOT_FOUND");
    api.pay_raw(&bob, &bob_token, &Uuid::new_v4().to_string())
        .await
        .expect_problem(404, "HOLD_NOT_FOUND");
    assert_eq!(api.balance(&bob).await, 10_000);
    assert_eq!(
        api.seat_status(&ada, &ada_token, concert.concert_id, concert.date(), 1)
            .await,
        "HELD"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_a_lapsed_hold_is_hold_expired() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(10, 600, 1))
        .await;
    let (ada, token) = buyer(api, "ada", &concert, 10_000).await;
    let hold = api.hold_ok(&ada, &token, concert.date(), 1).await;
    let expires = time(&hold["expires_at"]);
    wait_until(
        "the hold's deadline to pass",
        Deadline::secs(30),
        Duration::from_millis(100),
        || async {
            (chrono::Utc::now() > expires + chrono::Duration::milliseconds(100)).then_some(())
        },
    )
    .await;

    let hold_id = hold["hold_id"].as_str().expect("hold_id");
    api.pay(&ada, &token, hold_id)
        .await
        .expect_failure(410, "HOLD_EXPIRED");
    api.release(&ada, &token, hold_id)
        .await
        .expect_failure(410, "HOLD_EXPIRED");
    assert_eq!(api.balance(&ada).await, 10_000);
    assert_eq!(
        api.seat_status(&ada, &token, concert.concert_id, concert.date(), 1)
            .await,
        "AVAILABLE"
    );
    assert_eq!(
        count(stack.db(), "SELECT count(*) FROM payments", None).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_twice_is_already_paid_and_debits_once() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let (ada, token) = buyer(api, "ada", &concert, 10_000).await;
    let hold = api.hold_ok(&ada, &token, concert.date(), 1).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id");
    api.pay(&ada, &token, hold_id).await.expect_success();

    // The place is COMPLETED; a new place (at the back) is needed to submit anything again.
    let again = api.enter(&ada, concert.concert_id).await;
    assert_ne!(again, token);
    api.pay(&ada, &again, hold_id)
        .await
        .expect_failure(409, "ALREADY_PAID");
    api.release(&ada, &again, hold_id)
        .await
        .expect_failure(409, "ALREADY_PAID");
    assert_eq!(api.balance(&ada).await, 9_000);
    assert_eq!(
        count(
            stack.db(),
            "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT'",
            None
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_balance_changes_nothing() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 30_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 10_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let hold = api.hold_ok(&ada, &token, concert.date(), 1).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id");

    let problem = api.pay(&ada, &token, hold_id).await;
    problem.expect_failure(422, "INSUFFICIENT_BALANCE");
    assert_eq!(api.balance(&ada).await, 10_000);
    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, concert.date(), 1)
            .await,
        "HELD"
    );
    assert_eq!(
        api.queue_status(&token).await.expect(200)["status"],
        "ACTIVE",
        "a failed payment does not end the place"
    );
    assert!(api.reservations(&ada).await.is_empty());

    api.charge(&ada, 20_000).await;
    api.pay(&ada, &token, hold_id).await.expect_success();
    assert_eq!(
        api.balance(&ada).await,
        0,
        "a balance may reach exactly zero"
    );
}
