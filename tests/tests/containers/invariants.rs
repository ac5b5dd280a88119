//! The booking invariants, each test on containers of its own.

use concert_tests::{Deadline, Outcome, TestStack};
use serde_json::json;
use uuid::Uuid;

use crate::engine::{self, Servers};

/// This test's containers and a stack on them (one in-process api, two workers), or `None` when skipped.
/// The stack is returned after the servers, so that it drops first (its database is dropped while the
/// server still runs).
async fn stack_on_containers(test: &str) -> Option<(Servers, TestStack)> {
    let servers = engine::servers(test).await?;
    let stack = TestStack::builder()
        .apis(1)
        .workers(2)
        // The races send more from one user than a real client would.
        .rate_limit_per_user(1000)
        .database_server(&servers.admin_database_url)
        .kafka_brokers(&servers.kafka_brokers)
        .start()
        .await;
    stack.warm_up().await;
    Some((servers, stack))
}

async fn count(stack: &TestStack, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(stack.db())
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_holds_of_one_seat_have_one_winner() {
    let Some((_servers, stack)) =
        stack_on_containers("concurrent_holds_of_one_seat_have_one_winner").await
    else {
        return;
    };
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(
        concert.concert_id,
        &json!({ "max_active_users": 100, "active_seconds": 600, "hold_seconds": 300 }),
    )
    .await;
    let users = api.sign_up_many("fan", 20).await;
    let tokens =
        futures::future::join_all(users.iter().map(|u| api.enter(u, concert.concert_id))).await;

    let outcomes: Vec<Outcome> = futures::future::join_all(
        users
            .iter()
            .zip(&tokens)
            .map(|(u, t)| api.hold(u, t, concert.date(), 7)),
    )
    .await;
    let winners: Vec<usize> = (0..outcomes.len())
        .filter(|&i| outcomes[i].is_success())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one hold succeeds: {outcomes:?}");
    for outcome in outcomes.iter().filter(|o| !o.is_success()) {
        outcome.expect_failure(409, "SEAT_UNAVAILABLE");
    }
    let held_by: Option<Uuid> =
        sqlx::query_scalar("SELECT held_by FROM seats WHERE date_id = $1 AND seat_no = 7")
            .bind(concert.date())
            .fetch_one(stack.db())
            .await
            .expect("seat");
    assert_eq!(
        held_by,
        Some(users[winners[0]].user_id),
        "the winner holds it"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM holds WHERE date_id = $1 AND seat_no = 7",
            concert.date()
        )
        .await,
        1,
        "one hold row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_debits_once() {
    let Some((_servers, stack)) = stack_on_containers("a_payment_debits_once").await else {
        return;
    };
    let api = stack.api();
    let concert = api.create_concert(1, 10_000).await;
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 100_000).await;
    let token = api.enter(&ada, concert.concert_id).await;
    let hold = api.hold_ok(&ada, &token, concert.date(), 1).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id");

    let outcomes: Vec<Outcome> =
        futures::future::join_all((0..20).map(|_| api.pay(&ada, &token, hold_id))).await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_success()).count(),
        1,
        "exactly one payment succeeds: {outcomes:?}"
    );
    for outcome in outcomes.iter().filter(|o| !o.is_success()) {
        // On the log: the hold is paid already. Submitted after the winner completed the place: refused at
        // the door, as the contract says for a COMPLETED token.
        match outcome.request_id() {
            Some(_) => outcome.expect_failure(409, "ALREADY_PAID"),
            None => outcome.expect_failure(401, "QUEUE_TOKEN_EXPIRED"),
        };
    }
    assert_eq!(api.balance(&ada).await, 90_000, "debited once");
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT' AND user_id = $1",
            ada.user_id
        )
        .await,
        1,
        "one debit in the ledger"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM reservations WHERE date_id = $1",
            concert.date()
        )
        .await,
        1,
        "one reservation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_admitted_in_order() {
    let Some((_servers, stack)) = stack_on_containers("joins_are_admitted_in_order").await else {
        return;
    };
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(
        concert.concert_id,
        &json!({ "max_active_users": 2, "active_seconds": 600, "hold_seconds": 300 }),
    )
    .await;
    let users = api.sign_up_many("fan", 6).await;
    // One after the other: each join is placed behind the previous one.
    let mut tokens = Vec::new();
    for user in &users {
        api.charge(user, 1000).await;
        tokens.push(api.join(user, concert.concert_id).await.queue_token);
    }
    let seqs: Vec<i64> = tokens.iter().map(|t| stack.env.queue_seq(t)).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "places in join order: {seqs:?}"
    );

    // Two ACTIVE at a time; each payment completes a place and admits exactly the next in line.
    for i in 0..users.len() {
        // The two oldest open places are ACTIVE (admission runs on the worker's tick: wait for it).
        for token in tokens.iter().skip(i).take(2) {
            api.wait_until_active(token, Deadline::secs(30)).await;
        }
        for (ahead, token) in tokens.iter().enumerate().skip(i + 2) {
            let body = api.queue_status(token).await.expect(200).clone();
            assert_eq!(
                (body["status"].as_str(), body["position"].as_i64()),
                (Some("WAITING"), i64::try_from(ahead - i - 1).ok()),
                "place {ahead} while {i} is the oldest ACTIVE one: {body}"
            );
        }
        let seat = i64::try_from(i + 1).expect("a seat number");
        let hold = api
            .hold_ok(&users[i], &tokens[i], concert.date(), seat)
            .await;
        api.pay(
            &users[i],
            &tokens[i],
            hold["hold_id"].as_str().expect("hold_id"),
        )
        .await
        .expect_success();
    }
    let steps: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT from_seq, upto_seq FROM admissions WHERE concert_id = $1 ORDER BY admitted_at, from_seq",
    )
    .bind(concert.concert_id)
    .fetch_all(stack.db())
    .await
    .expect("admissions");
    let admitted: Vec<i64> = steps.iter().flat_map(|&(a, b)| a..=b).collect();
    assert_eq!(
        admitted, seqs,
        "admitted once each, in line order: {steps:?}"
    );
}
