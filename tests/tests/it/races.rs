//! Real concurrency against real Postgres and a real broker, asserting invariants (exactly one winner, money
//! conserved, FIFO admission), never timings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_core::commands::{Command, CommandEnvelope, CommandKind};
use concert_tests::{kafka, wait_until, Api, Deadline, Outcome, TestStack, User};
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{buyer, count, max_active, time, uuid};

/// The api instance the i-th client talks to.
fn api_for(stack: &TestStack, i: usize) -> &Api {
    &stack.apis()[i % stack.apis().len()]
}

/// One admission step as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Step {
    from_seq: i64,
    upto_seq: i64,
    admitted_at: DateTime<Utc>,
    active_until: DateTime<Utc>,
}

async fn admission_steps(db: &PgPool, concert_id: Uuid) -> Vec<Step> {
    sqlx::query_as("SELECT from_seq, upto_seq, admitted_at, active_until FROM admissions WHERE concert_id = $1 ORDER BY from_seq")
        .bind(concert_id)
        .fetch_all(db)
        .await
        .expect("admissions")
}

async fn admitted_upto(db: &PgPool, concert_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT admitted_upto FROM waiting_rooms WHERE concert_id = $1")
        .bind(concert_id)
        .fetch_one(db)
        .await
        .expect("waiting room")
}

/// Admission steps are contiguous from seq 1 and cover exactly 1..=`joined` (nobody twice, nobody skipped),
/// and at no admission instant are more than `max` places ACTIVE (nobody in these tests completes).
fn assert_admissions_sound(steps: &[Step], joined: i64, max: i64) {
    let mut next = 1;
    for step in steps {
        assert_eq!(
            step.from_seq, next,
            "steps are contiguous and do not overlap: {steps:?}"
        );
        assert!(step.upto_seq >= step.from_seq);
        assert!(
            step.upto_seq - step.from_seq < max,
            "one step admits at most max_active_users: {step:?}"
        );
        next = step.upto_seq + 1;
    }
    assert_eq!(next - 1, joined, "every place admitted exactly once");
    for (i, step) in steps.iter().enumerate() {
        let t = step.admitted_at;
        let active: i64 = steps[..=i]
            .iter()
            .filter(|s| s.admitted_at <= t && s.active_until > t)
            .map(|s| s.upto_seq - s.from_seq + 1)
            .sum();
        assert!(
            active <= max,
            "{active} ACTIVE at {t} exceeds max_active_users {max}: {steps:?}"
        );
    }
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].admitted_at <= w[1].admitted_at),
        "admitted in seq order: {steps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_charges_add_up() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    let balances =
        futures::future::join_all((1..=100).map(|amount| api.charge(&user, amount))).await;
    assert_eq!(api.balance(&user).await, 5050);
    assert_eq!(balances.iter().max(), Some(&5050));
    assert_eq!(
        balances.iter().collect::<HashSet<_>>().len(),
        100,
        "each charge saw its own new balance"
    );

    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT amount, balance_after FROM balance_ledger WHERE user_id = $1")
            .bind(user.user_id)
            .fetch_all(stack.db())
            .await
            .expect("ledger");
    assert_eq!(rows.len(), 100, "one ledger row per charge");
    // The rows chain: each row's balance before is another row's balance after (or 0), each used once.
    let mut before: Vec<i64> = rows
        .iter()
        .map(|(amount, after)| after - amount)
        .chain([5050])
        .collect();
    let mut after: Vec<i64> = rows.iter().map(|(_, after)| *after).chain([0]).collect();
    before.sort_unstable();
    after.sort_unstable();
    assert_eq!(
        before, after,
        "the ledger is one unbroken chain from 0 to 5050"
    );

    let history = api.history(&user, 100).await;
    assert_eq!(history.len(), 100);
    assert_eq!(
        history
            .iter()
            .map(|e| e["amount"].as_i64().expect("amount"))
            .sum::<i64>(),
        5050
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_of_joins_is_sequenced_and_admitted_in_log_order() {
    const CROWD: usize = 300;
    const MAX_ACTIVE: i64 = 30;
    let mut stack = TestStack::processes(
        2,
        &[
            "consumer,ticker,sweeper,relay",
            "consumer,ticker,sweeper,relay",
        ],
    )
    .await;
    stack.warm_up().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(MAX_ACTIVE, 1, 300))
        .await;
    let users: Vec<User> = futures::stream::iter(0..CROWD)
        .map(|i| {
            let api = api_for(&stack, i);
            async move { api.sign_up(&format!("fan-{i}")).await }
        })
        .buffered(16)
        .collect()
        .await;

    let joins = futures::future::join_all(
        users
            .iter()
            .enumerate()
            .map(|(i, u)| api_for(&stack, i).join(u, concert.concert_id)),
    )
    .await;

    // Seqs are exactly 1..=N, one per user, and each token names its own user's entry.
    let seqs: Vec<i64> = joins
        .iter()
        .map(|j| stack.env.queue_seq(&j.queue_token))
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=CROWD as i64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    let entries: Vec<(i64, Uuid)> =
        sqlx::query_as("SELECT seq, user_id FROM queue_entries WHERE concert_id = $1 ORDER BY seq")
            .bind(concert.concert_id)
            .fetch_all(stack.db())
            .await
            .expect("queue entries");
    assert_eq!(entries.len(), CROWD);
    let owner: HashMap<i64, Uuid> = entries.into_iter().collect();
    for (user, seq) in users.iter().zip(&seqs) {
        assert_eq!(
            owner[seq], user.user_id,
            "the token's seq is the user's own entry"
        );
    }

    // While admission runs: a sequential scan from the back sees no WAITING place before an admitted one.
    let by_seq: BTreeMap<i64, &str> = seqs
        .iter()
        .zip(&joins)
        .map(|(s, j)| (*s, j.queue_token.as_str()))
        .collect();
    for _ in 0..3 {
        let mut lowest_admitted_seen: Option<i64> = None;
        let mut last_waiting: Option<(i64, i64)> = None;
        for (seq, token) in by_seq.iter().rev() {
            let body = api.queue_status(token).await.expect(200).clone();
            match body["status"].as_str() {
                Some("WAITING") => {
                    assert!(
                        lowest_admitted_seen.is_none(),
                        "seq {seq} WAITING after seq {lowest_admitted_seen:?} was admitted"
                    );
                    let position = body["position"].as_i64().expect("position");
                    assert!(
                        position >= 1 && position <= *seq,
                        "position {position} of seq {seq}"
                    );
                    if let Some((higher, its_position)) = last_waiting {
                        assert!(
                            position <= its_position - (higher - seq),
                            "positions only move forward: {body}"
                        );
                    }
                    last_waiting = Some((*seq, position));
                }
                Some("ACTIVE" | "EXPIRED") => lowest_admitted_seen = Some(*seq),
                other => panic!("unexpected status {other:?} for seq {seq}"),
            }
        }
    }

    // Everyone is admitted eventually, in contiguous steps within capacity.
    wait_until(
        "everyone to be admitted",
        Deadline::secs(120),
        Duration::from_millis(250),
        || async {
            (admitted_upto(stack.db(), concert.concert_id).await == CROWD as i64).then_some(())
        },
    )
    .await;
    let steps = admission_steps(stack.db(), concert.concert_id).await;
    assert_admissions_sound(&steps, CROWD as i64, MAX_ACTIVE);

    // Seq order is log order: per concert, the join commands' seqs increase with their offsets.
    let topic = &stack.env.topics.joins;
    let records = kafka::read_all(
        &stack.env.settings.kafka_brokers,
        topic,
        stack.env.partitions(topic),
        CROWD,
    )
    .await;
    let ours: Vec<_> = records
        .iter()
        .filter(|r| {
            let v = r.json();
            v["command"]["kind"] == "JOIN"
                && v["command"]["concert_id"] == json!(concert.concert_id.to_string())
        })
        .collect();
    let partitions: HashSet<i32> = ours.iter().map(|r| r.partition).collect();
    assert_eq!(
        partitions.len(),
        1,
        "one concert's joins share one partition"
    );
    type Stored = (Option<i64>, Option<i32>, Option<i64>);
    let stored: HashMap<Uuid, Stored> = sqlx::query_as::<_, (Uuid, Option<i64>, Option<i32>, Option<i64>)>(
        "SELECT request_id, (result->>'seq')::bigint, source_partition, source_offset FROM requests WHERE kind = 'JOIN'",
    )
    .fetch_all(stack.db())
    .await
    .expect("requests")
    .into_iter()
    .map(|(id, seq, partition, offset)| (id, (seq, partition, offset)))
    .collect();
    let mut seen = HashSet::new();
    let mut last_seq = 0;
    for record in &ours {
        let request_id = uuid(&record.json()["request_id"]);
        if !seen.insert(request_id) {
            continue;
        }
        let (seq, partition, offset) = stored
            .get(&request_id)
            .copied()
            .unwrap_or_else(|| panic!("request {request_id} is stored"));
        assert_eq!(
            (partition, offset),
            (Some(record.partition), Some(record.offset)),
            "source of {request_id}"
        );
        let seq = seq.unwrap_or_else(|| panic!("JOIN {request_id} stores its seq"));
        assert!(
            seq > last_seq,
            "seq {seq} at offset {} follows seq {last_seq}",
            record.offset
        );
        last_seq = seq;
    }
    assert_eq!(seen.len(), CROWD, "one join command per user");
    stack.assert_processes_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tickers_admit_contiguously_and_within_capacity() {
    const CROWD: usize = 60;
    const MAX_ACTIVE: i64 = 5;
    let mut stack = TestStack::processes(1, &["consumer", "ticker", "ticker"]).await;
    stack.warm_up().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(MAX_ACTIVE, 1, 300))
        .await;
    let users = api.sign_up_many("fan", CROWD).await;
    futures::future::join_all(users.iter().map(|u| api.join(u, concert.concert_id))).await;

    wait_until(
        "everyone to be admitted",
        Deadline::secs(120),
        Duration::from_millis(250),
        || async {
            (admitted_upto(stack.db(), concert.concert_id).await == CROWD as i64).then_some(())
        },
    )
    .await;
    let steps = admission_steps(stack.db(), concert.concert_id).await;
    assert_admissions_sound(&steps, CROWD as i64, MAX_ACTIVE);
    stack.assert_processes_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_hold_one_seat_once() {
    const CLIENTS: usize = 100;
    let mut stack = TestStack::processes(
        2,
        &[
            "consumer,ticker,sweeper,relay",
            "consumer,ticker,sweeper,relay",
        ],
    )
    .await;
    stack.warm_up().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(200, 600, 300))
        .await;
    let users = api.sign_up_many("fan", CLIENTS).await;
    let tokens: Vec<String> = futures::stream::iter(users.iter().enumerate())
        .map(|(i, u)| api_for(&stack, i).enter(u, concert.concert_id))
        .buffered(25)
        .collect()
        .await;

    let outcomes: Vec<Outcome> = futures::future::join_all(
        users
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(i, (u, t))| api_for(&stack, i).hold(u, t, concert.date(), 7)),
    )
    .await;
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_success())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one hold succeeds: {outcomes:?}");
    for outcome in outcomes.iter().filter(|o| !o.is_success()) {
        outcome.expect_failure(409, "SEAT_UNAVAILABLE");
    }
    let winner = &users[winners[0]];
    let holds: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT user_id, state FROM holds WHERE date_id = $1 AND seat_no = 7")
            .bind(concert.date())
            .fetch_all(stack.db())
            .await
            .expect("holds");
    assert_eq!(
        holds,
        vec![(winner.user_id, "HELD".to_owned())],
        "one hold row, the winner's"
    );
    let held_by: Option<Uuid> =
        sqlx::query_scalar("SELECT held_by FROM seats WHERE date_id = $1 AND seat_no = 7")
            .bind(concert.date())
            .fetch_one(stack.db())
            .await
            .expect("seat");
    assert_eq!(held_by, Some(winner.user_id));
    stack.assert_processes_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_payments_of_one_hold_debit_once() {
    // Fifty at once from one user is past the per-user burst; this race is about the debit, not the limit.
    let stack = TestStack::builder()
        .apis(2)
        .workers(2)
        .rate_limit_per_user(1000)
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(1, 10_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 100_000).await;
    let hold = api.hold_ok(&ada, &token, concert.date(), 1).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id");

    let outcomes: Vec<Outcome> =
        futures::future::join_all((0..50).map(|i| api_for(&stack, i).pay(&ada, &token, hold_id)))
            .await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_success()).count(),
        1,
        "exactly one payment succeeds: {outcomes:?}"
    );
    for outcome in outcomes.iter().filter(|o| !o.is_success()) {
        // A payment that reached the log finds the hold paid. One submitted after the winner completed the
        // place is refused at the door, as the contract says for a COMPLETED token.
        match outcome.request_id() {
            Some(_) => outcome.expect_failure(409, "ALREADY_PAID"),
            None => outcome.expect_failure(401, "QUEUE_TOKEN_EXPIRED"),
        };
    }
    assert_eq!(api.balance(&ada).await, 90_000);
    let db = stack.db();
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT'",
            None
        )
        .await,
        1,
        "one debit"
    );
    assert_eq!(count(db, "SELECT count(*) FROM payments", None).await, 1);
    assert_eq!(
        count(db, "SELECT count(*) FROM reservations", None).await,
        1
    );
    assert_eq!(count(db, "SELECT count(*) FROM outbox", None).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_two_holds_with_money_for_one() {
    const USERS: usize = 5;
    let stack = TestStack::start_with(2, 2).await;
    let api = stack.api();
    // Two concerts, so each payment has its own live place: only the balance decides between them.
    let first = api.create_concert(1, 10_000).await;
    let second = api.create_concert(1, 10_000).await;
    let mut buyers = Vec::new();
    for i in 0..USERS {
        let (user, token_a) = buyer(api, &format!("fan-{i}"), &first, 15_000).await;
        let token_b = api.enter(&user, second.concert_id).await;
        let seat = i as i64 + 1;
        let hold_a = api.hold_ok(&user, &token_a, first.date(), seat).await["hold_id"]
            .as_str()
            .expect("hold")
            .to_owned();
        let hold_b = api.hold_ok(&user, &token_b, second.date(), seat).await["hold_id"]
            .as_str()
            .expect("hold")
            .to_owned();
        buyers.push((user, [(token_a, hold_a), (token_b, hold_b)]));
    }

    let pays = buyers.iter().enumerate().flat_map(|(i, (user, holds))| {
        holds
            .iter()
            .enumerate()
            .map(move |(j, (token, hold))| (i, j, user, token, hold))
    });
    let stack_ref = &stack;
    let outcomes: Vec<(usize, usize, Outcome)> =
        futures::future::join_all(pays.map(|(i, j, user, token, hold)| async move {
            (i, j, api_for(stack_ref, i + j).pay(user, token, hold).await)
        }))
        .await;

    for (i, (user, _)) in buyers.iter().enumerate() {
        let mine: Vec<&Outcome> = outcomes
            .iter()
            .filter(|(u, _, _)| *u == i)
            .map(|(_, _, o)| o)
            .collect();
        assert_eq!(
            mine.iter().filter(|o| o.is_success()).count(),
            1,
            "exactly one of two payments succeeds: {mine:?}"
        );
        let loser = mine.iter().find(|o| !o.is_success()).expect("one fails");
        loser.expect_failure(422, "INSUFFICIENT_BALANCE");
        assert_eq!(
            api.balance(user).await,
            5_000,
            "debited once, never below zero"
        );
        let debits = count(
            stack.db(),
            "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT' AND user_id = $1",
            Some(user.user_id),
        )
        .await;
        assert_eq!(debits, 1);
    }
    let negative = count(
        stack.db(),
        "SELECT count(*) FROM users WHERE balance < 0",
        None,
    )
    .await;
    assert_eq!(negative, 0);
    let sold = count(stack.db(), "SELECT count(*) FROM reservations", None).await;
    assert_eq!(sold, USERS as i64, "the failed payments sold nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_commands_change_nothing() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 12_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 50_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let queue_seq = stack.env.queue_seq(&token);
    let ids = stack.env.request_ids();
    let brokers = &stack.env.settings.kafka_brokers;
    let bookings = &stack.env.topics.bookings;
    let key = concert.date().to_string();

    let hold_request = ids.fresh(ada.user_id, CommandKind::Hold);
    let hold = Command::Hold {
        concert_id: concert.concert_id,
        date_id: concert.date(),
        seat_no: 5,
        queue_seq,
    };
    let envelope =
        serde_json::to_vec(&CommandEnvelope::new(hold_request, ada.user_id, hold)).expect("json");
    kafka::produce(brokers, bookings, &key, &envelope).await;
    kafka::produce(brokers, bookings, &key, &envelope).await;
    let held = api
        .await_request(&ada, &hold_request.to_string())
        .await
        .expect_success();
    let hold_id = uuid(&held["hold_id"]);

    let pay_request = ids.fresh(ada.user_id, CommandKind::Pay);
    let pay = Command::Pay {
        concert_id: concert.concert_id,
        date_id: concert.date(),
        hold_ids: vec![hold_id],
        queue_seq,
    };
    let envelope =
        serde_json::to_vec(&CommandEnvelope::new(pay_request, ada.user_id, pay)).expect("json");
    kafka::produce(brokers, bookings, &key, &envelope).await;
    kafka::produce(brokers, bookings, &key, &envelope).await;
    let paid = api
        .await_request(&ada, &pay_request.to_string())
        .await
        .expect_success();

    // A later command on the same partition: once it is answered, both duplicates have been consumed.
    api.hold_ok(&bob, &bob_token, concert.date(), 6).await;

    let db = stack.db();
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM holds WHERE user_id = $1",
            Some(ada.user_id)
        )
        .await,
        1,
        "one hold"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM payments WHERE user_id = $1",
            Some(ada.user_id)
        )
        .await,
        1,
        "one payment"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM balance_ledger WHERE kind = 'PAYMENT'",
            None
        )
        .await,
        1,
        "one debit"
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM outbox", None).await,
        1,
        "one event"
    );
    assert_eq!(api.balance(&ada).await, 38_000);
    for request in [hold_request, pay_request] {
        assert_eq!(
            count(
                db,
                "SELECT count(*) FROM requests WHERE request_id = $1",
                Some(request)
            )
            .await,
            1
        );
    }
    let again = api
        .await_request(&ada, &pay_request.to_string())
        .await
        .expect_success();
    assert_eq!(again, paid, "the stored outcome is unchanged");

    // Each delivery was answered on the reply topic, the second with the same outcome as the first.
    let replies_topic = &stack.env.topics.replies;
    let replies = kafka::read_all(
        brokers,
        replies_topic,
        stack.env.partitions(replies_topic),
        4,
    )
    .await;
    for request in [hold_request, pay_request] {
        let answers: Vec<Value> = replies
            .iter()
            .map(kafka::Record::json)
            .filter(|r| r["request_id"] == json!(request.to_string()))
            .collect();
        assert!(
            answers.len() >= 2,
            "both deliveries of {request} answered: {answers:?}"
        );
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "the same outcome every time: {answers:?}"
        );
        assert_eq!(answers[0]["status"], "SUCCEEDED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapsed_hold_is_taken_by_another_and_cannot_be_paid() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 8_000).await;
    api.set_policy(concert.concert_id, &max_active(10, 600, 1))
        .await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 20_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 20_000).await;
    let lapsed = api.hold_ok(&ada, &ada_token, concert.date(), 5).await;
    let expires = time(&lapsed["expires_at"]);
    wait_until(
        "seat 5 to be free again",
        Deadline::secs(30),
        Duration::from_millis(100),
        || async {
            let status = api
                .seat_status(&bob, &bob_token, concert.concert_id, concert.date(), 5)
                .await;
            (status == "AVAILABLE").then_some(())
        },
    )
    .await;
    assert!(
        Utc::now() >= expires,
        "the seat is free only once the deadline passed"
    );

    // Bob's own hold gets a long deadline, so only Ada's lapse is under test.
    api.set_policy(concert.concert_id, &max_active(10, 600, 300))
        .await;
    let taken = api.hold_ok(&bob, &bob_token, concert.date(), 5).await;
    let bob_pays = api.pay(
        &bob,
        &bob_token,
        taken["hold_id"].as_str().expect("hold_id"),
    );
    let ada_pays = api.pay(
        &ada,
        &ada_token,
        lapsed["hold_id"].as_str().expect("hold_id"),
    );
    let (bob_paid, ada_paid) = tokio::join!(bob_pays, ada_pays);
    ada_paid.expect_failure(410, "HOLD_EXPIRED");
    bob_paid.expect_success();
    assert_eq!(api.balance(&ada).await, 20_000);
    assert_eq!(api.balance(&bob).await, 12_000);
    let reservations: Vec<Uuid> =
        sqlx::query_scalar("SELECT user_id FROM reservations WHERE date_id = $1 AND seat_no = 5")
            .bind(concert.date())
            .fetch_all(stack.db())
            .await
            .expect("reservations");
    assert_eq!(
        reservations,
        vec![bob.user_id],
        "the seat is sold once, to Bob"
    );
    let state: String = sqlx::query_scalar("SELECT state FROM holds WHERE hold_id = $1")
        .bind(uuid(&lapsed["hold_id"]))
        .fetch_one(stack.db())
        .await
        .expect("hold");
    assert_ne!(state, "PAID");
}
