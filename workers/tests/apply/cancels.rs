//! CANCEL and CANCEL_DATE against `apply_batch`: the refund and everything it leaves behind, at most one
//! refund per reservation whatever the order of the log, the cutoff, and a date cancel's counts.

use concert_core::commands::{Command, RefundEvent, ADMIN_USER_ID};
use concert_core::ErrorCode;
use concert_workers::{apply_batch, LogCommand};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

/// A reservation bought by `user` (joined, held, paid in three batches): the payment's result.
async fn buy(db: &TestDb, log: &mut Log, show: Show, user: Uuid, seat_no: i32) -> Value {
    let ctx = db.ctx();
    let joined = apply_batch(&ctx, &[log.at(user, join(show))])
        .await
        .unwrap();
    let seq = result(&joined[0])["seq"].as_i64().unwrap();
    let held = apply_batch(&ctx, &[log.at(user, hold_with(show, seat_no, seq))])
        .await
        .unwrap();
    let hold_id = uuid_of(result(&held[0]), "hold_id");
    let paid = apply_batch(&ctx, &[log.at(user, pay(show, hold_id, seq))])
        .await
        .unwrap();
    result(&paid[0]).clone()
}

fn hold_with(show: Show, seat_no: i32, queue_seq: i64) -> Command {
    Command::Hold {
        concert_id: show.concert_id,
        date_id: show.date_id,
        seat_no,
        queue_seq,
    }
}

fn cancel(show: Show, reservation_id: Uuid) -> Command {
    Command::Cancel {
        concert_id: show.concert_id,
        date_id: show.date_id,
        reservation_id,
    }
}

fn cancel_date(show: Show) -> Command {
    Command::CancelDate {
        concert_id: show.concert_id,
        date_id: show.date_id,
    }
}

fn admin(log: &mut Log, command: Command) -> LogCommand {
    log.at(ADMIN_USER_ID, command)
}

async fn refunds_of(db: &TestDb, reservation_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM refunds WHERE reservation_id = $1")
        .bind(reservation_id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn status_of(db: &TestDb, reservation_id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM reservations WHERE reservation_id = $1")
        .bind(reservation_id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cancel_refunds_frees_the_seat_and_queues_an_event() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (user, other) = (db.user(120_000).await, db.user(PRICE).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let paid = buy(&db, &mut log, show, user, 4).await;
    let (reservation_id, payment_id) = (
        uuid_of(&paid, "reservation_id"),
        uuid_of(&paid, "payment_id"),
    );
    assert_eq!(db.balance(user).await, 120_000 - PRICE);

    let replies = apply_batch(&ctx, &[log.at(user, cancel(show, reservation_id))])
        .await
        .unwrap();

    let canceled = result(&replies[0]);
    assert_eq!(uuid_of(canceled, "reservation_id"), reservation_id);
    assert_eq!(canceled["amount"], PRICE);
    let refund_id = uuid_of(canceled, "refund_id");
    assert!(canceled["canceled_at"].is_string(), "{canceled}");
    assert_eq!(db.balance(user).await, 120_000);
    assert_eq!(db.seat(show.date_id, 4).await, (None, None, None));
    assert_eq!(status_of(&db, reservation_id).await, "CANCELED");
    let (kind, amount, after, ledger_payment): (String, i64, i64, Uuid) = sqlx::query_as(
        "SELECT kind, amount, balance_after, payment_id FROM balance_ledger ORDER BY entry_id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), amount, after, ledger_payment),
        ("REFUND", PRICE, 120_000, payment_id)
    );

    let (event_type, key, payload): (String, String, Value) =
        sqlx::query_as("SELECT event_type, event_key, payload FROM outbox WHERE event_type = $1")
            .bind(RefundEvent::TYPE)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(event_type, "payment.refunded");
    assert_eq!(key, payment_id.to_string(), "keyed by the payment");
    let event: RefundEvent = serde_json::from_value(payload.clone()).unwrap();
    assert_eq!(event.event_type, "payment.refunded");
    assert_eq!(
        (
            event.payment_id,
            event.refund_id,
            event.reservation_id,
            event.user_id
        ),
        (payment_id, refund_id, reservation_id, user)
    );
    assert_eq!(
        (event.date_id, event.seat_no, event.amount),
        (show.date_id, 4, PRICE)
    );
    for field in ["event_id", "occurred_at"] {
        assert!(payload[field].is_string(), "{field} in {payload}");
    }

    // The seat is on sale again, and can be sold again: one CONFIRMED reservation per seat, not one ever.
    let again = buy(&db, &mut log, show, other, 4).await;
    assert_ne!(uuid_of(&again, "reservation_id"), reservation_id);
    assert_eq!(db.balance(other).await, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn a_reservation_is_refunded_once_whatever_the_log_holds() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (user, stranger) = (db.user(PRICE).await, db.user(0).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let paid = buy(&db, &mut log, show, user, 1).await;
    let reservation_id = uuid_of(&paid, "reservation_id");

    // Distinct requests (two tabs, two api instances), and a stranger's, in one batch.
    let replies = apply_batch(
        &ctx,
        &[
            log.at(stranger, cancel(show, reservation_id)),
            log.at(user, cancel(show, reservation_id)),
            log.at(user, cancel(show, reservation_id)),
            log.at(user, cancel(show, Uuid::new_v4())),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::ReservationNotFound);
    result(&replies[1]);
    assert_eq!(code(&replies[2]), ErrorCode::AlreadyCanceled);
    assert_eq!(code(&replies[3]), ErrorCode::ReservationNotFound);
    // And in a later batch.
    let later = apply_batch(&ctx, &[log.at(user, cancel(show, reservation_id))])
        .await
        .unwrap();
    assert_eq!(code(&later[0]), ErrorCode::AlreadyCanceled);

    assert_eq!(db.balance(user).await, PRICE);
    assert_eq!(db.balance(stranger).await, 0);
    assert_eq!(refunds_of(&db, reservation_id).await, 1);
    assert_eq!(db.count("refunds").await, 1);

    // The schema refuses a second refund of it, whatever writes it.
    let second = sqlx::query(
        "INSERT INTO refunds (refund_id, reservation_id, payment_id, user_id, date_id, amount, cause, refunded_at)
         SELECT gen_random_uuid(), reservation_id, payment_id, user_id, date_id, amount, 'CANCEL', now()
         FROM refunds",
    )
    .execute(&db.pool)
    .await
    .unwrap_err();
    let constraint = second.as_database_error().and_then(|e| e.constraint());
    assert_eq!(constraint, Some("refund_per_reservation"));
    db.drop_database().await;
}

#[tokio::test]
async fn a_hold_of_the_seat_before_the_cancel_is_refused_and_after_it_wins() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (user, other) = (db.user(PRICE).await, db.user(0).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let paid = buy(&db, &mut log, show, user, 7).await;
    let reservation_id = uuid_of(&paid, "reservation_id");

    let replies = apply_batch(
        &ctx,
        &[
            log.at(other, hold(show, 7)),
            log.at(user, cancel(show, reservation_id)),
            log.at(other, hold(show, 7)),
        ],
    )
    .await
    .unwrap();

    assert_eq!(code(&replies[0]), ErrorCode::SeatUnavailable);
    result(&replies[1]);
    let hold_id = uuid_of(result(&replies[2]), "hold_id");
    assert_eq!(
        db.seat(show.date_id, 7).await,
        (Some(hold_id), Some(other), None)
    );
    assert_eq!(db.balance(user).await, PRICE);
    db.drop_database().await;
}

#[tokio::test]
async fn past_the_cutoff_or_after_the_start_a_reservation_stays() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(2 * PRICE).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let first = uuid_of(&buy(&db, &mut log, show, user, 1).await, "reservation_id");
    let second = uuid_of(&buy(&db, &mut log, show, user, 2).await, "reservation_id");

    // The date starts in 30 days: a cutoff of 31 days has passed, one of 29 days has not.
    sqlx::query("UPDATE waiting_rooms SET cancel_cutoff_hours = 31 * 24")
        .execute(&db.pool)
        .await
        .unwrap();
    let replies = apply_batch(&ctx, &[log.at(user, cancel(show, first))])
        .await
        .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::CancelClosed);

    sqlx::query("UPDATE waiting_rooms SET cancel_cutoff_hours = 29 * 24")
        .execute(&db.pool)
        .await
        .unwrap();
    let replies = apply_batch(&ctx, &[log.at(user, cancel(show, first))])
        .await
        .unwrap();
    result(&replies[0]);

    // With no cutoff, until the date starts and not after.
    for sql in [
        "UPDATE waiting_rooms SET cancel_cutoff_hours = 0",
        "UPDATE concert_dates SET starts_at = now() - interval '1 minute'",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    let replies = apply_batch(&ctx, &[log.at(user, cancel(show, second))])
        .await
        .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::CancelClosed);
    assert_eq!(status_of(&db, second).await, "CONFIRMED");
    assert_eq!(db.balance(user).await, PRICE);
    db.drop_database().await;
}

#[tokio::test]
async fn a_date_cancel_releases_refunds_closes_and_answers_the_same_again() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (ada, bob, cy) = (
        db.user(2 * PRICE).await,
        db.user(PRICE).await,
        db.user(PRICE).await,
    );
    let ctx = db.ctx();
    let mut log = Log::default();
    let ada_1 = uuid_of(&buy(&db, &mut log, show, ada, 1).await, "reservation_id");
    let ada_2 = uuid_of(&buy(&db, &mut log, show, ada, 2).await, "reservation_id");
    let bob_3 = uuid_of(&buy(&db, &mut log, show, bob, 3).await, "reservation_id");
    // Bob cancels one himself first: the date cancel refunds the other two.
    result(
        &apply_batch(&ctx, &[log.at(bob, cancel(show, bob_3))])
            .await
            .unwrap()[0],
    );
    // Cy holds seat 5 (live) and seat 6, lapsed but not swept yet.
    let joined = apply_batch(&ctx, &[log.at(cy, join(show))]).await.unwrap();
    let seq = result(&joined[0])["seq"].as_i64().unwrap();
    let held = apply_batch(
        &ctx,
        &[
            log.at(cy, hold_with(show, 5, seq)),
            log.at(cy, hold_with(show, 6, seq)),
        ],
    )
    .await
    .unwrap();
    let (live, lapsed) = (
        uuid_of(result(&held[0]), "hold_id"),
        uuid_of(result(&held[1]), "hold_id"),
    );
    crate::holds::lapse(&db, lapsed).await;

    let closing = admin(&mut log, cancel_date(show));
    let replies = apply_batch(
        &ctx,
        &[
            closing.clone(),
            log.at(cy, hold_with(show, 8, seq)),
            log.at(cy, pay(show, live, seq)),
            log.at(ada, cancel(show, ada_1)),
        ],
    )
    .await
    .unwrap();

    let closed = result(&replies[0]).clone();
    assert_eq!(uuid_of(&closed, "date_id"), show.date_id);
    assert_eq!(closed["reservations_refunded"], 2);
    assert_eq!(
        closed["holds_released"], 1,
        "the lapsed hold is not counted"
    );
    assert_eq!(code(&replies[1]), ErrorCode::DateClosed);
    assert_eq!(
        code(&replies[2]),
        ErrorCode::DateClosed,
        "DATE_CLOSED wins over the hold the cancel released"
    );
    assert_eq!(code(&replies[3]), ErrorCode::AlreadyCanceled);

    assert_eq!(db.balance(ada).await, 2 * PRICE);
    let ada_ledger: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, balance_after FROM balance_ledger WHERE user_id = $1 ORDER BY entry_id",
    )
    .bind(ada)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let refunds: Vec<i64> = ada_ledger
        .iter()
        .filter(|(kind, _)| kind == "REFUND")
        .map(|(_, after)| *after)
        .collect();
    assert_eq!(
        refunds,
        [PRICE, 2 * PRICE],
        "each refund's balance after it"
    );
    assert_eq!(db.balance(bob).await, PRICE);
    assert_eq!(db.balance(cy).await, PRICE);
    for r in [ada_1, ada_2, bob_3] {
        assert_eq!(status_of(&db, r).await, "CANCELED");
        assert_eq!(refunds_of(&db, r).await, 1);
    }
    for seat_no in 1..=10 {
        assert_eq!(
            db.seat(show.date_id, seat_no).await,
            (None, None, None),
            "seat {seat_no}"
        );
    }
    assert_eq!(db.hold_state(live).await, "RELEASED");
    assert_eq!(db.hold_state(lapsed).await, "EXPIRED");
    let refund_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'payment.refunded'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(refund_events, 3, "one per refund");
    let causes: Vec<String> =
        sqlx::query_scalar("SELECT cause FROM refunds ORDER BY cause, refund_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(causes, ["CANCEL", "DATE_CANCELED", "DATE_CANCELED"]);

    // Sent again, and the first delivered again: the same answer, nothing more refunded.
    let balances = (db.balance(ada).await, db.balance(bob).await);
    let again = apply_batch(
        &ctx,
        &[
            admin(&mut log, cancel_date(show)),
            log.again(closing.envelope.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        result(&again[0]),
        &closed,
        "a repeat answers the same counts"
    );
    assert_eq!(
        again[1], replies[0],
        "a redelivery answers the stored outcome"
    );
    assert_eq!((db.balance(ada).await, db.balance(bob).await), balances);
    assert_eq!(db.count("refunds").await, 3);
    db.drop_database().await;
}

#[tokio::test]
async fn a_cancel_and_a_date_cancel_refund_each_reservation_once_in_either_order() {
    let db = TestDb::new().await;
    let (first, second) = (db.concert(10, 100).await, db.concert(10, 100).await);
    let user = db.user(4 * PRICE).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let mut reservations = Vec::new();
    for show in [first, second] {
        for seat_no in [1, 2] {
            let paid = buy(&db, &mut log, show, user, seat_no).await;
            reservations.push(uuid_of(&paid, "reservation_id"));
        }
    }
    assert_eq!(db.balance(user).await, 0);

    // On the first date the user's cancel comes first, on the second the date's.
    let on_first = apply_batch(
        &ctx,
        &[
            log.at(user, cancel(first, reservations[0])),
            admin(&mut log, cancel_date(first)),
        ],
    )
    .await
    .unwrap();
    let on_second = apply_batch(
        &ctx,
        &[
            admin(&mut log, cancel_date(second)),
            log.at(user, cancel(second, reservations[2])),
        ],
    )
    .await
    .unwrap();

    result(&on_first[0]);
    assert_eq!(result(&on_first[1])["reservations_refunded"], 1);
    assert_eq!(result(&on_second[0])["reservations_refunded"], 2);
    assert_eq!(code(&on_second[1]), ErrorCode::AlreadyCanceled);
    assert_eq!(
        db.balance(user).await,
        4 * PRICE,
        "every seat refunded once"
    );
    for r in &reservations {
        assert_eq!(refunds_of(&db, *r).await, 1);
    }
    db.drop_database().await;
}

#[tokio::test]
async fn cancelling_an_unknown_date_is_date_not_found() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let mut log = Log::default();
    let unknown = Show {
        date_id: Uuid::new_v4(),
        ..show
    };
    let other_concert = Show {
        concert_id: Uuid::new_v4(),
        ..show
    };
    let replies = apply_batch(
        &db.ctx(),
        &[
            admin(&mut log, cancel_date(unknown)),
            admin(&mut log, cancel_date(other_concert)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::DateNotFound);
    assert_eq!(code(&replies[1]), ErrorCode::DateNotFound);
    let canceled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM concert_dates WHERE canceled_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(canceled, 0);
    db.drop_database().await;
}

/// A date of 10,000 seats, every one sold to a different fan: the cancel refunds them all in one batch, with
/// the same handful of statements as a small date. Prints how long the partition was held.
#[tokio::test]
async fn a_sold_out_date_of_ten_thousand_seats_is_cancelled_in_one_batch() {
    const SEATS: i32 = 10_000;
    let db = TestDb::new().await;
    let show = db.concert(SEATS, 100).await;
    sqlx::query(
        "WITH fan AS (
             INSERT INTO users (user_id, name, balance)
             SELECT gen_random_uuid(), 'fan', 0 FROM generate_series(1, $2) RETURNING user_id),
         sale AS (
             SELECT user_id, (row_number() OVER ())::int AS seat_no, gen_random_uuid() AS hold_id,
                    gen_random_uuid() AS payment_id, gen_random_uuid() AS reservation_id FROM fan),
         hold AS (
             INSERT INTO holds (hold_id, user_id, concert_id, date_id, seat_no, price, state, expires_at)
             SELECT hold_id, user_id, $3, $1, seat_no, $4, 'PAID', now() FROM sale),
         payment AS (
             INSERT INTO payments (payment_id, user_id, amount) SELECT payment_id, user_id, $4 FROM sale),
         reservation AS (
             INSERT INTO reservations (reservation_id, payment_id, user_id, concert_id, date_id, seat_no, price, hold_id)
             SELECT reservation_id, payment_id, user_id, $3, $1, seat_no, $4, hold_id FROM sale)
         UPDATE seats s SET reservation_id = sale.reservation_id
         FROM sale WHERE s.date_id = $1 AND s.seat_no = sale.seat_no",
    )
    .bind(show.date_id)
    .bind(SEATS)
    .bind(show.concert_id)
    .bind(PRICE)
    .execute(&db.pool)
    .await
    .unwrap();
    let mut log = Log::default();

    let started = std::time::Instant::now();
    let replies = apply_batch(&db.ctx(), &[admin(&mut log, cancel_date(show))])
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("a date cancel of {SEATS} sold seats held its partition for {took:?}");

    assert_eq!(result(&replies[0])["reservations_refunded"], SEATS);
    let (refunded, balances): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM refunds), (SELECT sum(balance)::bigint FROM users)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (refunded, balances),
        (i64::from(SEATS), i64::from(SEATS) * PRICE)
    );
    assert_eq!(db.count("outbox").await, i64::from(SEATS));
    db.drop_database().await;
}
