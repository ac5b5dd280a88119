//! Money under concurrency (issue 18), against the real stack with two api instances and two workers: about
//! 200 operations at once over a few seats of one date (holds, checkouts of 1-3 seats, cancels as the
//! reservations appear, some sent twice), and a date cancel racing holds, payments and cancels on a second
//! date. Afterwards, exactly, from the database and the API: every balance is its charges - payments + refunds
//! (balances and balance history), no seat is both sold and available, every refund is one cancelled
//! reservation's and none is refunded twice, the events are the payments plus the refunds by `event_id`, and
//! the cancelled date has nothing sold and every payment made on it refunded exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use concert_tests::{kafka, wait_until, Api, Deadline, Outcome, TestStack, User};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{buyer, count, max_active, outbox_published, uuid};

const PRICE: i64 = 10_000;
const MONEY: i64 = 50_000;
/// The contested seats of the first date.
const CONTESTED: i64 = 12;
/// Fans racing for them, each checking out 1-3 seats once (a checkout completes the fan's place).
const FANS_A: usize = 60;
/// Fans holding and paying seats 1..=10 of the second date while it is cancelled.
const FANS_B: usize = 16;
/// Fans who bought a seat of the second date before the race (and try to cancel it during it).
const EARLY_B: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    Hold { date: Uuid, seat: i64 },
    Checkout { date: Uuid, seats: Vec<i64> },
    Cancel { date: Uuid, reservation: Uuid },
}

#[derive(Debug)]
struct Done {
    user: usize,
    op: Op,
    sent: Instant,
    outcome: Outcome,
}

/// Everything sent during the race, with its outcome.
#[derive(Default)]
struct Log(Mutex<Vec<Done>>);

impl Log {
    fn add(&self, user: usize, op: Op, sent: Instant, outcome: Outcome) {
        self.0.lock().expect("log").push(Done {
            user,
            op,
            sent,
            outcome,
        });
    }
}

fn api_for(stack: &TestStack, i: usize) -> &Api {
    &stack.apis()[i % stack.apis().len()]
}

/// The reservation ids a checkout's result names (several seats, or one in the v1 shape).
fn reservations_of(result: &Value) -> Vec<Uuid> {
    match result["reservations"].as_array() {
        Some(lines) => lines.iter().map(|r| uuid(&r["reservation_id"])).collect(),
        None => vec![uuid(&result["reservation_id"])],
    }
}

async fn sum(db: &PgPool, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_cancels_and_a_date_cancel_racing_keep_every_won_and_seat_exact() {
    let seed: u64 = std::env::var("PURCHASE_RACES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("purchase_races seed {seed} (PURCHASE_RACES_SEED to repeat)");
    let started = Instant::now();
    let stack = TestStack::builder()
        .apis(2)
        .workers(2)
        .rate_limit_per_user(0)
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(2, PRICE).await;
    api.set_policy(concert.concert_id, &max_active(500, 600, 300))
        .await;
    let (date_a, date_b) = (concert.dates[0].date_id, concert.dates[1].date_id);
    let concert = &concert;
    let stack = &stack;

    // Everyone signs up with MONEY won and an ACTIVE queue token, over both instances.
    let everyone = FANS_A + FANS_B + EARLY_B;
    let fans: Vec<(User, String)> = futures::future::join_all((0..everyone).map(|i| async move {
        buyer(api_for(stack, i), &format!("fan-{i}"), concert, MONEY).await
    }))
    .await;
    let fans = &fans;
    let owner: HashMap<Uuid, usize> = fans
        .iter()
        .enumerate()
        .map(|(i, (u, _))| (u.user_id, i))
        .collect();
    let owner = &owner;
    let (a_fans, rest) = (0..FANS_A, FANS_A..FANS_A + FANS_B);
    let early = FANS_A + FANS_B..everyone;

    // The early buyers of the second date: seats 21.. (paid before the cancel, whatever happens next).
    let early_bought: Vec<(usize, Uuid, Uuid)> =
        futures::future::join_all(early.clone().map(|i| async move {
            let (user, token) = &fans[i];
            let api = api_for(stack, i);
            let seat = 21 + (i - FANS_A - FANS_B) as i64;
            let hold = api.hold_ok(user, token, date_b, seat).await;
            let paid = api
                .pay(user, token, hold["hold_id"].as_str().expect("hold_id"))
                .await
                .expect_success();
            (i, uuid(&paid["payment_id"]), reservations_of(&paid)[0])
        }))
        .await;
    eprintln!("set up in {:?}", started.elapsed());

    let log = Log::default();
    let log = &log;
    let fans_done = AtomicBool::new(false);
    let fans_done = &fans_done;

    // First date: each fan holds 1-3 of the contested seats (at once), checks out what it got, and cancels
    // some of what it bought at once (sometimes twice, on both instances); up to 6 tries while it gets nothing.
    let race_a = futures::future::join_all(a_fans.map(|i| async move {
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64 + 1));
        let (user, token) = &fans[i];
        for attempt in 0..6 {
            let k = rng.gen_range(1..=3);
            let all: Vec<i64> = (1..=CONTESTED).collect();
            let seats: Vec<i64> = all.choose_multiple(&mut rng, k).copied().collect();
            let holds =
                futures::future::join_all(seats.iter().enumerate().map(|(j, &seat)| async move {
                    let sent = Instant::now();
                    let outcome = api_for(stack, i + j + attempt)
                        .hold(user, token, date_a, seat)
                        .await;
                    log.add(i, Op::Hold { date: date_a, seat }, sent, outcome.clone());
                    (seat, outcome)
                }))
                .await;
            let held: Vec<(i64, String)> = holds
                .into_iter()
                .filter_map(|(seat, o)| match o {
                    Outcome::Succeeded { result, .. } => Some((
                        seat,
                        result["hold_id"].as_str().expect("hold_id").to_owned(),
                    )),
                    Outcome::Failed { .. } => None,
                })
                .collect();
            if held.is_empty() {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..150))).await;
                continue;
            }
            let ids: Vec<&str> = held.iter().map(|(_, id)| id.as_str()).collect();
            let sent = Instant::now();
            let outcome = api_for(stack, i + attempt)
                .checkout(user, token, &ids)
                .await;
            let seats = held.iter().map(|(seat, _)| *seat).collect();
            log.add(
                i,
                Op::Checkout {
                    date: date_a,
                    seats,
                },
                sent,
                outcome.clone(),
            );
            if let Outcome::Succeeded { result, .. } = outcome {
                let mut cancels = Vec::new();
                for r in reservations_of(&result) {
                    if rng.gen_bool(0.4) {
                        let copies = if rng.gen_bool(0.3) { 2 } else { 1 };
                        cancels.extend((0..copies).map(|c| (r, c)));
                    }
                }
                futures::future::join_all(cancels.into_iter().map(|(r, c)| async move {
                    let sent = Instant::now();
                    let outcome = api_for(stack, i + c).cancel(user, &r.to_string()).await;
                    log.add(
                        i,
                        Op::Cancel {
                            date: date_a,
                            reservation: r,
                        },
                        sent,
                        outcome,
                    );
                }))
                .await;
            }
            return;
        }
    }));

    // ...while a sweeper cancels every reservation of an odd seat as soon as it appears (racing the fans'
    // own cancels of the same reservations), and once more after the fans are done.
    let sweeper = async {
        let mut tried = HashSet::new();
        loop {
            let finished = fans_done.load(Ordering::SeqCst);
            let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT reservation_id, user_id FROM reservations
                 WHERE date_id = $1 AND status = 'CONFIRMED' AND seat_no % 2 = 1",
            )
            .bind(date_a)
            .fetch_all(stack.db())
            .await
            .expect("reservations");
            let new: Vec<(Uuid, usize)> = rows
                .into_iter()
                .filter(|(r, _)| tried.insert(*r))
                .map(|(r, u)| (r, owner[&u]))
                .collect();
            futures::future::join_all(new.into_iter().map(|(r, i)| async move {
                let sent = Instant::now();
                let outcome = api_for(stack, i + 1)
                    .cancel(&fans[i].0, &r.to_string())
                    .await;
                log.add(
                    i,
                    Op::Cancel {
                        date: date_a,
                        reservation: r,
                    },
                    sent,
                    outcome,
                );
            }))
            .await;
            if finished {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };

    // Second date: fans hold 1-2 of seats 1..=10 and pay them, the early buyers cancel their tickets, all at
    // random moments over 600 ms, and the organizer cancels the date after 250 ms.
    let race_b = futures::future::join_all(rest.map(|i| async move {
        let mut rng = StdRng::seed_from_u64(seed ^ (1000 + i as u64));
        let (user, token) = &fans[i];
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..600))).await;
        let all: Vec<i64> = (1..=10).collect();
        let how_many = rng.gen_range(1..=2);
        let seats: Vec<i64> = all.choose_multiple(&mut rng, how_many).copied().collect();
        let mut held = Vec::new();
        for (j, &seat) in seats.iter().enumerate() {
            let sent = Instant::now();
            let outcome = api_for(stack, i + j).hold(user, token, date_b, seat).await;
            log.add(i, Op::Hold { date: date_b, seat }, sent, outcome.clone());
            if let Outcome::Succeeded { result, .. } = outcome {
                held.push((
                    seat,
                    result["hold_id"].as_str().expect("hold_id").to_owned(),
                ));
            }
        }
        if held.is_empty() {
            return;
        }
        let ids: Vec<&str> = held.iter().map(|(_, id)| id.as_str()).collect();
        let sent = Instant::now();
        let outcome = api_for(stack, i + 1).checkout(user, token, &ids).await;
        let seats = held.iter().map(|(seat, _)| *seat).collect();
        log.add(
            i,
            Op::Checkout {
                date: date_b,
                seats,
            },
            sent,
            outcome,
        );
    }));
    let early_cancels =
        futures::future::join_all(early_bought.iter().map(|&(i, _, r)| async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (2000 + i as u64));
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..600))).await;
            let sent = Instant::now();
            let outcome = api_for(stack, i).cancel(&fans[i].0, &r.to_string()).await;
            log.add(
                i,
                Op::Cancel {
                    date: date_b,
                    reservation: r,
                },
                sent,
                outcome,
            );
        }));
    let date_cancel = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let resp = stack.apis()[1].cancel_date_raw(date_b).await;
        (resp, Instant::now())
    };
    let fans_a = async {
        race_a.await;
        fans_done.store(true, Ordering::SeqCst);
    };
    let race_started = Instant::now();
    let (_, _, _, _, (date_canceled, canceled_by)) =
        tokio::join!(fans_a, sweeper, race_b, early_cancels, date_cancel);
    let date_canceled = date_canceled.expect(200)["result"].clone();
    let log = std::mem::take(&mut *log.0.lock().expect("log"));
    eprintln!(
        "{} operations (and the date cancel) in {:?}",
        log.len(),
        race_started.elapsed()
    );
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for d in &log {
        let kind = match d.op {
            Op::Hold { .. } => "hold",
            Op::Checkout { ref seats, .. } if seats.len() > 1 => "checkout of several",
            Op::Checkout { .. } => "checkout of one",
            Op::Cancel { .. } => "cancel",
        };
        let date = if d.op_date() == date_a { "A" } else { "B" };
        let after = if d.op_date() == date_b && d.sent > canceled_by {
            " (after the date cancel)"
        } else {
            ""
        };
        *tally
            .entry(format!(
                "{kind} {date}{after}: {}",
                d.outcome.code().unwrap_or("ok")
            ))
            .or_default() += 1;
    }
    eprintln!("{tally:#?}\ndate cancel: {date_canceled}");
    assert!(
        log.len() >= 150,
        "the race is about 200 operations: {}",
        log.len()
    );

    // ---- what every operation answered ---------------------------------------------------------------
    for done in &log {
        let allowed: &[&str] = match (&done.op, done.op_date()) {
            (Op::Hold { .. }, d) if d == date_a => &["SEAT_UNAVAILABLE"],
            (Op::Hold { .. }, _) => &["SEAT_UNAVAILABLE", "DATE_CLOSED"],
            // A fan's own live holds are always payable, except when their date was cancelled.
            (Op::Checkout { .. }, d) if d == date_a => &[],
            (Op::Checkout { .. }, _) => &["DATE_CLOSED"],
            (Op::Cancel { .. }, _) => &["ALREADY_CANCELED"],
        };
        if let Some(code) = done.outcome.code() {
            assert!(
                allowed.contains(&code),
                "fan-{}: {:?} answered {:?}",
                done.user,
                done.op,
                done.outcome
            );
        }
        // Nothing sent to the second date after its cancel was answered succeeds (a cancel of an already
        // refunded ticket is ALREADY_CANCELED).
        if done.op_date() == date_b && done.sent > canceled_by {
            assert!(
                !done.outcome.is_success(),
                "after the date cancel: {:?} succeeded",
                done.op
            );
        }
    }
    let sold_a = log
        .iter()
        .filter(|d| {
            matches!(d.op, Op::Checkout { date, .. } if date == date_a) && d.outcome.is_success()
        })
        .count();
    assert!(
        sold_a >= 2,
        "the first date sold something: {sold_a} checkouts"
    );

    let db = stack.db();
    outbox_published(db, "every event to be published", 30).await;

    // ---- payments and refunds: the database holds exactly what the API answered -------------------------
    let answered_payments: BTreeMap<Uuid, (usize, i64)> = log
        .iter()
        .filter(|d| matches!(d.op, Op::Checkout { .. }))
        .filter_map(|d| match &d.outcome {
            Outcome::Succeeded { result, .. } => Some((
                uuid(&result["payment_id"]),
                (d.user, result["amount"].as_i64().expect("amount")),
            )),
            Outcome::Failed { .. } => None,
        })
        .chain(early_bought.iter().map(|&(i, p, _)| (p, (i, PRICE))))
        .collect();
    for d in &log {
        if let (Op::Hold { seat, .. }, Outcome::Succeeded { result, .. }) = (&d.op, &d.outcome) {
            assert_eq!(result["seat_no"].as_i64(), Some(*seat), "{result}");
        }
        if let (Op::Checkout { seats, .. }, Outcome::Succeeded { result, .. }) = (&d.op, &d.outcome)
        {
            assert_eq!(
                result["amount"].as_i64(),
                Some(PRICE * seats.len() as i64),
                "one debit of the seats' sum: {result}"
            );
        }
    }
    let stored_payments: BTreeMap<Uuid, (usize, i64)> =
        sqlx::query_as::<_, (Uuid, Uuid, i64)>("SELECT payment_id, user_id, amount FROM payments")
            .fetch_all(db)
            .await
            .expect("payments")
            .into_iter()
            .map(|(p, u, amount)| (p, (owner[&u], amount)))
            .collect();
    assert_eq!(
        stored_payments, answered_payments,
        "the payments stored are exactly the checkouts answered"
    );
    let answered_refunds: HashSet<Uuid> = log
        .iter()
        .filter(|d| matches!(d.op, Op::Cancel { .. }))
        .filter_map(|d| match &d.outcome {
            Outcome::Succeeded { result, .. } => Some(uuid(&result["refund_id"])),
            Outcome::Failed { .. } => None,
        })
        .collect();
    let by_cause: Vec<(Uuid, String)> = sqlx::query_as("SELECT refund_id, cause FROM refunds")
        .fetch_all(db)
        .await
        .expect("refunds");
    let cancel_refunds: HashSet<Uuid> = by_cause
        .iter()
        .filter(|(_, cause)| cause == "CANCEL")
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(
        cancel_refunds, answered_refunds,
        "the refunds of cancels are exactly the cancels answered"
    );
    let date_refunds = by_cause.len() - cancel_refunds.len();
    assert_eq!(
        date_canceled["reservations_refunded"].as_u64(),
        Some(date_refunds as u64),
        "the date cancel's count is its refunds: {date_canceled}"
    );
    // Per reservation, the cancels answered: exactly one success among them (or the date cancel's refund).
    let mut cancels: HashMap<Uuid, (usize, usize)> = HashMap::new();
    for d in &log {
        if let Op::Cancel { reservation, .. } = d.op {
            let entry = cancels.entry(reservation).or_default();
            entry.0 += 1;
            entry.1 += usize::from(d.outcome.is_success());
        }
    }
    assert!(
        cancels.values().all(|&(_, won)| won <= 1),
        "one cancel of a reservation succeeds at most: {cancels:?}"
    );
    assert!(
        cancels.values().any(|&(sent, _)| sent >= 2),
        "some reservation was cancelled twice at once: {cancels:?}"
    );

    // ---- every refund is one cancelled reservation's, and none is refunded twice ---------------------------
    let mismatched = count(
        db,
        "SELECT count(*) FROM refunds f LEFT JOIN reservations r USING (reservation_id)
         WHERE r.reservation_id IS NULL OR r.status <> 'CANCELED' OR r.user_id <> f.user_id
            OR r.payment_id <> f.payment_id OR r.date_id <> f.date_id OR r.price <> f.amount",
        None,
    )
    .await;
    assert_eq!(
        mismatched, 0,
        "every refund matches its cancelled reservation"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM reservations WHERE status = 'CANCELED'",
            None
        )
        .await,
        by_cause.len() as i64,
        "every cancelled reservation has a refund"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(DISTINCT reservation_id) FROM refunds",
            None
        )
        .await,
        by_cause.len() as i64,
        "no reservation is refunded twice"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM (SELECT p.payment_id FROM payments p JOIN refunds f USING (payment_id)
             GROUP BY p.payment_id, p.amount HAVING sum(f.amount) > p.amount) over",
            None
        )
        .await,
        0,
        "no payment is refunded more than it paid"
    );

    // ---- every balance is charges - payments + refunds, by the API and by the tables ------------------------
    let mut all_money = 0;
    for (i, (user, _)) in fans.iter().enumerate() {
        let api = api_for(stack, i);
        let paid = sum(
            db,
            "SELECT coalesce(sum(amount), 0)::bigint FROM payments WHERE user_id = $1",
            user.user_id,
        )
        .await;
        let refunded = sum(
            db,
            "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE user_id = $1",
            user.user_id,
        )
        .await;
        let balance = api.balance(user).await;
        assert_eq!(
            balance,
            MONEY - paid + refunded,
            "{}: balance = charges - payments + refunds",
            user.name
        );
        let history = api.history(user, 100).await;
        let mut by_kind: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for entry in &history {
            let kind = by_kind
                .entry(entry["kind"].as_str().expect("kind").to_owned())
                .or_default();
            kind.0 += 1;
            kind.1 += entry["amount"].as_i64().expect("amount");
        }
        let payments = sum(
            db,
            "SELECT count(*) FROM payments WHERE user_id = $1",
            user.user_id,
        )
        .await;
        let refunds = sum(
            db,
            "SELECT count(*) FROM refunds WHERE user_id = $1",
            user.user_id,
        )
        .await;
        let expected: BTreeMap<String, (i64, i64)> = [
            ("CHARGE", (1, MONEY)),
            ("PAYMENT", (payments, paid)),
            ("REFUND", (refunds, refunded)),
        ]
        .into_iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            by_kind, expected,
            "{}: the balance history: {history:?}",
            user.name
        );
        assert_eq!(
            history[0]["balance_after"].as_i64(),
            Some(balance),
            "{}: the newest entry ends at the balance",
            user.name
        );
        all_money += balance;
    }
    let (paid, refunded): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(amount), 0)::bigint FROM payments),
                (SELECT coalesce(sum(amount), 0)::bigint FROM refunds)",
    )
    .fetch_one(db)
    .await
    .expect("sums");
    assert_eq!(
        all_money + paid - refunded,
        everyone as i64 * MONEY,
        "no won made or lost"
    );

    // ---- no seat both sold and available ----------------------------------------------------------------------
    let disagreeing = count(
        db,
        "SELECT count(*) FROM seats s
         LEFT JOIN reservations r ON r.date_id = s.date_id AND r.seat_no = s.seat_no AND r.status = 'CONFIRMED'
         WHERE s.date_id = $1
           AND (r.reservation_id IS DISTINCT FROM s.reservation_id
                OR (r.reservation_id IS NOT NULL AND s.hold_id IS NOT NULL))",
        Some(date_a),
    )
    .await;
    assert_eq!(
        disagreeing, 0,
        "a seat is sold exactly when it has a confirmed reservation, and then not held"
    );
    let sold: HashSet<i64> = sqlx::query_scalar::<_, i32>(
        "SELECT seat_no FROM reservations WHERE date_id = $1 AND status = 'CONFIRMED'",
    )
    .bind(date_a)
    .fetch_all(db)
    .await
    .expect("sold")
    .into_iter()
    .map(i64::from)
    .collect();
    assert!(
        sold.iter().all(|seat| seat % 2 == 0),
        "the sweeper cancelled every odd seat: {sold:?}"
    );
    let (observer, observer_token) = buyer(api, "observer", concert, 0).await;
    wait_until(
        "the seat map to show the sales",
        Deadline::secs(10),
        Duration::from_millis(200),
        || async {
            let map = api
                .seats(&observer, &observer_token, concert.concert_id, date_a)
                .await;
            let shown: HashMap<i64, String> = map
                .iter()
                .map(|s| {
                    (
                        s["seat_no"].as_i64().expect("seat_no"),
                        s["status"].as_str().expect("status").to_owned(),
                    )
                })
                .collect();
            let agrees = shown
                .iter()
                .all(|(seat, status)| (status == "SOLD") == sold.contains(seat));
            agrees.then_some(())
        },
    )
    .await;
    let sales = api.sales(concert.concert_id).await;
    let figures = |date: Uuid| {
        sales["dates"]
            .as_array()
            .expect("dates")
            .iter()
            .find(|d| d["date_id"] == json!(date))
            .expect("the date's figures")
            .clone()
    };
    let a = figures(date_a);
    assert_eq!(a["sold"].as_u64(), Some(sold.len() as u64), "{a}");
    assert_eq!(
        a["revenue"].as_i64(),
        Some(PRICE * sold.len() as i64),
        "{a}"
    );
    assert_eq!(
        a["sold"].as_i64().unwrap()
            + a["held"].as_i64().unwrap()
            + a["available"].as_i64().unwrap(),
        a["total_seats"].as_i64().unwrap(),
        "{a}"
    );
    assert_eq!(
        a["refunded"].as_i64(),
        Some(
            sum(
                db,
                "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE date_id = $1",
                date_a
            )
            .await
        ),
        "{a}"
    );

    // ---- the events: one per payment and one per refund, by event_id -------------------------------------------
    let payments = stored_payments.len() as i64;
    let refunds = by_cause.len() as i64;
    for (sql, n) in [
        ("SELECT count(DISTINCT event_id) FROM outbox WHERE topic = 'events.payments'", payments + refunds),
        ("SELECT count(*) FROM outbox WHERE topic = 'events.payments'", payments + refunds),
        ("SELECT count(*) FROM outbox WHERE event_type = 'payment.completed'", payments),
        ("SELECT count(DISTINCT payload->>'payment_id') FROM outbox WHERE event_type = 'payment.completed'", payments),
        ("SELECT count(DISTINCT payload->>'refund_id') FROM outbox WHERE event_type = 'payment.refunded'", refunds),
        (
            "SELECT count(*) FROM outbox o JOIN refunds f ON f.refund_id::text = o.payload->>'refund_id'
             WHERE o.event_type = 'payment.refunded' AND o.event_key = f.payment_id::text",
            refunds,
        ),
    ] {
        assert_eq!(count(db, sql, None).await, n, "{sql}");
    }
    let topic = &stack.env.topics.payment_events;
    let records = kafka::read_all(
        &stack.env.settings.kafka_brokers,
        topic,
        stack.env.partitions(topic),
        (payments + refunds) as usize,
    )
    .await;
    let published: HashMap<String, String> = records
        .iter()
        .map(|r| {
            let e = r.json();
            (
                e["event_id"].as_str().expect("event_id").to_owned(),
                e["event_type"].as_str().expect("event_type").to_owned(),
            )
        })
        .collect();
    let kinds = |kind: &str| published.values().filter(|k| *k == kind).count() as i64;
    assert_eq!(
        (kinds("payment.completed"), kinds("payment.refunded")),
        (payments, refunds),
        "the topic holds one event per payment and per refund, by event_id"
    );

    // ---- the cancelled date -----------------------------------------------------------------------------------
    for (sql, n) in [
        ("SELECT count(*) FROM reservations WHERE date_id = $1 AND status = 'CONFIRMED'", 0),
        ("SELECT count(*) FROM holds WHERE date_id = $1 AND state = 'HELD'", 0),
        (
            "SELECT count(*) FROM seats WHERE date_id = $1 AND (reservation_id IS NOT NULL OR hold_id IS NOT NULL)",
            0,
        ),
        (
            "SELECT count(*) FROM reservations r WHERE r.date_id = $1
               AND (SELECT count(*) FROM refunds f WHERE f.reservation_id = r.reservation_id) <> 1",
            0,
        ),
        (
            "SELECT count(*) FROM payments p WHERE EXISTS
               (SELECT 1 FROM reservations r WHERE r.payment_id = p.payment_id AND r.date_id = $1)
             AND p.amount <> (SELECT coalesce(sum(f.amount), 0) FROM refunds f WHERE f.payment_id = p.payment_id)",
            0,
        ),
    ] {
        assert_eq!(count(db, sql, Some(date_b)).await, n, "{sql}");
    }
    for &(i, payment_id, _) in &early_bought {
        assert_eq!(
            sum(
                db,
                "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE payment_id = $1",
                payment_id
            )
            .await,
            PRICE,
            "fan-{i}'s payment before the cancel is refunded once"
        );
    }
    let b = figures(date_b);
    assert_eq!(
        (
            b["status"].as_str(),
            b["sold"].as_i64(),
            b["held"].as_i64(),
            b["revenue"].as_i64()
        ),
        (Some("CANCELED"), Some(0), Some(0), Some(0)),
        "{b}"
    );
    // Again: nothing more refunded, the same counts.
    let again = stack.apis()[0].cancel_date_raw(date_b).await.expect(200)["result"].clone();
    assert_eq!(
        (&again["reservations_refunded"], &again["holds_released"]),
        (
            &date_canceled["reservations_refunded"],
            &date_canceled["holds_released"]
        ),
        "{again}"
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM refunds", None).await,
        refunds
    );
    eprintln!(
        "{payments} payments, {refunds} refunds ({date_refunds} by the date cancel), {} seats sold at the end, in {:?}",
        sold.len(),
        started.elapsed()
    );
}

impl Done {
    fn op_date(&self) -> Uuid {
        match self.op {
            Op::Hold { date, .. } | Op::Checkout { date, .. } | Op::Cancel { date, .. } => date,
        }
    }
}
