//! Checkouts of several seats (v3, issue 18 item 1): `POST /v1/payments` with `{"hold_ids": [...]}` pays
//! every hold of one date or none, as one command on the date's partition; afterwards the queue token is
//! COMPLETED and the payer's other live holds on the concert are released.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use concert_tests::{wait_until, Api, Deadline, Outcome, TestStack, User};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{buyer, count, max_active, uuid};

/// The api instance the i-th client talks to.
fn api_for(stack: &TestStack, i: usize) -> &Api {
    &stack.apis()[i % stack.apis().len()]
}

/// Holds `seats` of `date_id` and returns their hold ids, in that order.
async fn hold_seats(
    api: &Api,
    user: &User,
    token: &str,
    date_id: Uuid,
    seats: &[i64],
) -> Vec<String> {
    let mut ids = Vec::with_capacity(seats.len());
    for &seat in seats {
        let hold = api.hold_ok(user, token, date_id, seat).await;
        ids.push(hold["hold_id"].as_str().expect("hold_id").to_owned());
    }
    ids
}

fn strs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

/// The state of a hold row.
async fn hold_state(stack: &TestStack, hold_id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM holds WHERE hold_id = $1::uuid")
        .bind(hold_id)
        .fetch_one(stack.db())
        .await
        .expect("hold")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_of_three_seats_is_one_payment_of_their_sum() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 20_000).await;
    let date = concert.date();
    let (ada, token) = buyer(api, "ada", &concert, 100_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let holds = hold_seats(api, &ada, &token, date, &[7, 3, 12]).await;

    let doc = api
        .checkout_raw(&ada, &token, &json!({ "hold_ids": holds }))
        .await
        .expect(200)
        .clone();
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("PAY"), Some("SUCCEEDED")),
        "{doc}"
    );
    let paid = &doc["result"];
    assert_eq!(paid["amount"], json!(60_000), "the sum: {paid}");
    let payment_id = uuid(&paid["payment_id"]);
    let lines = paid["reservations"].as_array().expect("reservations");
    let seats: Vec<i64> = lines
        .iter()
        .map(|r| r["seat_no"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seats,
        [7, 3, 12],
        "one reservation per seat, in the order named"
    );
    for line in lines {
        assert_eq!(uuid(&line["date_id"]), date);
        assert_eq!(line["price"], json!(20_000));
    }
    for v1_field in ["reservation_id", "date_id", "seat_no"] {
        assert!(
            paid.get(v1_field).is_none(),
            "{v1_field} is for one seat: {paid}"
        );
    }

    assert_eq!(api.balance(&ada).await, 40_000);
    let history = api.history(&ada, 10).await;
    let payments: Vec<&Value> = history.iter().filter(|e| e["kind"] == "PAYMENT").collect();
    assert_eq!(payments.len(), 1, "one debit: {history:?}");
    assert_eq!(payments[0]["amount"], json!(60_000));
    let mine = api.reservations(&ada).await;
    let listed: HashSet<Uuid> = mine.iter().map(|r| uuid(&r["reservation_id"])).collect();
    let answered: HashSet<Uuid> = lines.iter().map(|r| uuid(&r["reservation_id"])).collect();
    assert_eq!(listed, answered);
    assert_eq!(
        api.queue_status(&token).await.expect(200)["status"],
        "COMPLETED"
    );
    for seat in [7, 3, 12] {
        assert_eq!(
            api.seat_status(&bob, &bob_token, concert.concert_id, date, seat)
                .await,
            "SOLD"
        );
    }

    let db = stack.db();
    assert_eq!(count(db, "SELECT count(*) FROM payments", None).await, 1);
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM reservations WHERE payment_id = $1",
            Some(payment_id)
        )
        .await,
        3
    );
    let (key, event): (String, Value) =
        sqlx::query_as("SELECT event_key, payload FROM outbox WHERE topic = 'events.payments'")
            .fetch_one(db)
            .await
            .expect("one payment event");
    assert_eq!(key, payment_id.to_string(), "keyed by payment_id");
    assert_eq!(event["event_type"], "payment.completed");
    assert_eq!(event["amount"], json!(60_000));
    assert_eq!(event["reservations"], paid["reservations"]);
    assert_eq!(
        event["seat_no"],
        json!(7),
        "the v1 fields are the first seat's"
    );
    assert_eq!(event["hold_id"], json!(holds[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkout_changes_nothing_and_a_checkout_of_one_answers_as_v1() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 20_000).await;
    let date = concert.date();
    let (ada, token) = buyer(api, "ada", &concert, 50_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let holds = hold_seats(api, &ada, &token, date, &[1, 2, 3]).await;

    api.checkout(&ada, &token, &strs(&holds))
        .await
        .expect_failure(422, "INSUFFICIENT_BALANCE");
    // A hold given back is not payable: the checkout names it.
    api.release(&ada, &token, &holds[2]).await.expect_success();
    let problem = api
        .checkout(&ada, &token, &strs(&holds))
        .await
        .expect_failure(404, "HOLD_NOT_FOUND")
        .clone();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&holds[2]),
        "the detail names the hold: {problem}"
    );

    assert_eq!(api.balance(&ada).await, 50_000, "nothing debited");
    for seat in [1, 2] {
        assert_eq!(
            api.seat_status(&bob, &bob_token, concert.concert_id, date, seat)
                .await,
            "HELD",
            "nothing sold, nothing released"
        );
    }
    assert!(api.reservations(&ada).await.is_empty());
    assert_eq!(
        count(stack.db(), "SELECT count(*) FROM payments", None).await,
        0
    );
    assert_eq!(
        api.queue_status(&token).await.expect(200)["status"],
        "ACTIVE",
        "a failed checkout does not end the place"
    );

    // A list of one is a checkout of one, answered with the v1 fields too; the other hold is released.
    let paid = api
        .checkout(&ada, &token, &[holds[0].as_str()])
        .await
        .expect_success();
    assert_eq!(paid["amount"], json!(20_000));
    assert_eq!(paid["seat_no"], json!(1));
    assert_eq!(uuid(&paid["date_id"]), date);
    assert_eq!(
        paid["reservation_id"],
        paid["reservations"][0]["reservation_id"]
    );
    assert_eq!(hold_state(&stack, &holds[1]).await, "RELEASED");
    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, date, 2)
            .await,
        "AVAILABLE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_checkout_is_refused_before_anything_is_published() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(2, 1_000).await;
    let (first, second) = (concert.dates[0].date_id, concert.dates[1].date_id);
    let (ada, token) = buyer(api, "ada", &concert, 100_000).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let mut holds = hold_seats(api, &ada, &token, first, &[1, 2, 3, 4]).await;
    let elsewhere = hold_seats(api, &ada, &token, second, &[1]).await;
    let bobs = hold_seats(api, &bob, &bob_token, first, &[9]).await;

    let refused = |body: Value, status: u16, code: &'static str| {
        let (ada, token) = (&ada, &token);
        async move {
            let resp = api.checkout_raw(ada, token, &body).await;
            let problem = resp.expect_problem(status, code);
            assert!(
                problem.get("request_id").is_none(),
                "not published: {problem}"
            );
        }
    };
    refused(json!({ "hold_ids": [] }), 400, "VALIDATION_FAILED").await;
    refused(json!({}), 400, "VALIDATION_FAILED").await;
    refused(
        json!({ "hold_id": holds[0], "hold_ids": [holds[1]] }),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    refused(
        json!({ "hold_ids": [holds[0], holds[1], holds[0]] }),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    holds.push(elsewhere[0].clone());
    refused(json!({ "hold_ids": holds }), 400, "VALIDATION_FAILED").await;
    refused(
        json!({ "hold_ids": [holds[0], elsewhere[0]] }),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    refused(
        json!({ "hold_ids": [holds[0], Uuid::new_v4()] }),
        404,
        "HOLD_NOT_FOUND",
    )
    .await;
    refused(
        json!({ "hold_ids": [holds[0], bobs[0]] }),
        404,
        "HOLD_NOT_FOUND",
    )
    .await;

    assert_eq!(api.balance(&ada).await, 100_000);
    assert_eq!(
        count(
            stack.db(),
            "SELECT count(*) FROM requests WHERE kind = 'PAY'",
            None
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_releases_the_payers_other_holds_on_every_date_of_the_concert() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(3, 5_000).await;
    let other_concert = api.create_concert(1, 5_000).await;
    let dates: Vec<Uuid> = concert.dates.iter().map(|d| d.date_id).collect();
    let (ada, token) = buyer(api, "ada", &concert, 100_000).await;
    let other_token = api.enter(&ada, other_concert.concert_id).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let paid = hold_seats(api, &ada, &token, dates[0], &[1, 2]).await;
    let same_date = hold_seats(api, &ada, &token, dates[0], &[3]).await;
    let second = hold_seats(api, &ada, &token, dates[1], &[1, 2]).await;
    let third = hold_seats(api, &ada, &token, dates[2], &[5]).await;
    let bobs = hold_seats(api, &bob, &bob_token, dates[1], &[9]).await;
    let kept = hold_seats(api, &ada, &other_token, other_concert.date(), &[1]).await;

    api.checkout(&ada, &token, &strs(&paid))
        .await
        .expect_success();

    // The same date's: in the checkout's own transaction.
    assert_eq!(hold_state(&stack, &same_date[0]).await, "RELEASED");
    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, dates[0], 3)
            .await,
        "AVAILABLE"
    );
    // The other dates': through their own dates' order on the log, within seconds.
    let elsewhere: Vec<(Uuid, i64)> = vec![(dates[1], 1), (dates[1], 2), (dates[2], 5)];
    wait_until(
        "the holds on the other dates to be released",
        Deadline::secs(15),
        Duration::from_millis(100),
        || async {
            for &(date, seat) in &elsewhere {
                let status = api
                    .seat_status(&bob, &bob_token, concert.concert_id, date, seat)
                    .await;
                if status != "AVAILABLE" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for hold in second.iter().chain(&third) {
        assert_eq!(hold_state(&stack, hold).await, "RELEASED");
    }
    let listed = api.get("/v1/me/holds").auth(&ada).send().await;
    let live: Vec<String> = listed.expect(200)["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .map(|h| h["hold_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(live, kept, "a hold on another concert is kept");
    assert_eq!(
        hold_state(&stack, &bobs[0]).await,
        "HELD",
        "others' holds are kept"
    );
    assert_eq!(api.balance(&ada).await, 90_000);
}

/// One fan's race: holds on three seats, then all at once from both api instances three overlapping
/// checkouts, a release of one seat, and a rival's holds on all three.
struct Fan {
    user: User,
    token: String,
    seats: [i64; 3],
    holds: Vec<String>,
    rival: User,
    rival_token: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_racing_holds_and_each_other_have_one_winner_per_seat_and_keep_the_money() {
    const FANS: usize = 8;
    const PRICE: i64 = 10_000;
    const MONEY: i64 = 100_000;
    let stack = TestStack::builder().apis(2).workers(2).start().await;
    let api = stack.api();
    let concert = api.create_concert(1, PRICE).await;
    api.set_policy(concert.concert_id, &max_active(100, 600, 300))
        .await;
    let date = concert.date();
    let mut fans = Vec::with_capacity(FANS);
    for i in 0..FANS {
        let api = api_for(&stack, i);
        let (user, token) = buyer(api, &format!("fan-{i}"), &concert, MONEY).await;
        let (rival, rival_token) = buyer(api, &format!("rival-{i}"), &concert, MONEY).await;
        let first = 3 * i as i64 + 1;
        let seats = [first, first + 1, first + 2];
        let holds = hold_seats(api, &user, &token, date, &seats).await;
        fans.push(Fan {
            user,
            token,
            seats,
            holds,
            rival,
            rival_token,
        });
    }

    // Everyone at once: per fan, checkouts of [a, b, c], [a, b] and [b, c], a release of c, and the
    // rival's holds of a, b and c, spread over the two api instances.
    #[derive(Debug)]
    enum Sent {
        Checkout(Vec<usize>),
        Release,
        RivalHold(usize),
    }
    let stack_ref = &stack;
    let attempts = fans.iter().enumerate().flat_map(|(i, fan)| {
        let plans = [
            Sent::Checkout(vec![0, 1, 2]),
            Sent::Checkout(vec![0, 1]),
            Sent::Checkout(vec![1, 2]),
            Sent::Release,
            Sent::RivalHold(0),
            Sent::RivalHold(1),
            Sent::RivalHold(2),
        ];
        plans
            .into_iter()
            .enumerate()
            .map(move |(k, sent)| async move {
                let api = api_for(stack_ref, i + k);
                let outcome = match &sent {
                    Sent::Checkout(which) => {
                        let ids: Vec<&str> = which.iter().map(|&j| fan.holds[j].as_str()).collect();
                        api.checkout(&fan.user, &fan.token, &ids).await
                    }
                    Sent::Release => api.release(&fan.user, &fan.token, &fan.holds[2]).await,
                    Sent::RivalHold(j) => {
                        api.hold(&fan.rival, &fan.rival_token, date, fan.seats[*j])
                            .await
                    }
                };
                (i, sent, outcome)
            })
    });
    let outcomes: Vec<(usize, Sent, Outcome)> = futures::future::join_all(attempts).await;

    let db = stack.db();
    let sold: HashMap<i64, Uuid> = sqlx::query_as::<_, (i32, Uuid)>(
        "SELECT seat_no, user_id FROM reservations WHERE date_id = $1",
    )
    .bind(date)
    .fetch_all(db)
    .await
    .expect("reservations")
    .into_iter()
    .map(|(seat, user)| (i64::from(seat), user))
    .collect();
    let held: Vec<(i32, Uuid)> =
        sqlx::query_as("SELECT seat_no, user_id FROM holds WHERE date_id = $1 AND state = 'HELD'")
            .bind(date)
            .fetch_all(db)
            .await
            .expect("holds");
    let mut held_by: BTreeMap<i64, Vec<Uuid>> = BTreeMap::new();
    for (seat, user) in held {
        held_by.entry(i64::from(seat)).or_default().push(user);
    }

    for (i, fan) in fans.iter().enumerate() {
        let mine: Vec<&(usize, Sent, Outcome)> =
            outcomes.iter().filter(|(who, _, _)| *who == i).collect();
        let won: Vec<&(usize, Sent, Outcome)> = mine
            .iter()
            .copied()
            .filter(|(_, sent, o)| matches!(sent, Sent::Checkout(_)) && o.is_success())
            .collect();
        assert_eq!(won.len(), 1, "exactly one checkout per fan wins: {mine:?}");
        let (_, Sent::Checkout(paid), outcome) = won[0] else {
            unreachable!()
        };
        let result = outcome.clone().expect_success();
        assert_eq!(result["amount"], json!(PRICE * paid.len() as i64));
        for (_, sent, o) in &mine {
            if let (Sent::Checkout(_), false) = (sent, o.is_success()) {
                let code = o.code().unwrap_or_default();
                assert!(
                    ["ALREADY_PAID", "HOLD_NOT_FOUND", "QUEUE_TOKEN_EXPIRED"].contains(&code),
                    "a losing checkout: {o:?}"
                );
            }
        }
        assert_eq!(
            api.balance(&fan.user).await,
            MONEY - PRICE * paid.len() as i64,
            "debited once, for the seats it bought"
        );
        assert_eq!(api.balance(&fan.rival).await, MONEY, "holds cost nothing");
        for (j, &seat) in fan.seats.iter().enumerate() {
            let holders = held_by.get(&seat).cloned().unwrap_or_default();
            if paid.contains(&j) {
                assert_eq!(
                    sold.get(&seat),
                    Some(&fan.user.user_id),
                    "seat {seat} sold to its fan"
                );
                assert!(
                    holders.is_empty(),
                    "a sold seat has no live hold: {holders:?}"
                );
            } else {
                assert!(!sold.contains_key(&seat), "seat {seat} is not sold");
                assert!(
                    holders.len() <= 1,
                    "one hold at most on seat {seat}: {holders:?}"
                );
                assert!(
                    holders.iter().all(|u| *u == fan.rival.user_id),
                    "the fan's holds on seats it did not buy are released: {holders:?}"
                );
            }
            let rival_won = mine.iter().any(|(_, sent, o)| {
                matches!(sent, Sent::RivalHold(k) if *k == j) && o.is_success()
            });
            assert_eq!(
                rival_won,
                !holders.is_empty(),
                "seat {seat}: the rival holds it exactly when their hold succeeded"
            );
        }
    }
    let money: i64 = sqlx::query_scalar("SELECT sum(balance)::bigint FROM users")
        .fetch_one(db)
        .await
        .expect("balances");
    let paid: i64 = sqlx::query_scalar("SELECT coalesce(sum(amount), 0)::bigint FROM payments")
        .fetch_one(db)
        .await
        .expect("payments");
    assert_eq!(
        money + paid,
        2 * FANS as i64 * MONEY,
        "money conserved: balances + payments = charges"
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM payments", None).await,
        FANS as i64
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM outbox WHERE topic = 'events.payments'",
            None
        )
        .await,
        FANS as i64,
        "one event per checkout"
    );
}
