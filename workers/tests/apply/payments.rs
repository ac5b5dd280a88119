use concert_core::commands::{Command, CommandEnvelope, Outcome, PaymentEvent};
use concert_core::ErrorCode;
use concert_workers::apply_batch;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn paying_with_too_little_balance_changes_nothing() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(PRICE - 1).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[log.at(user, join(show)), log.at(user, hold(show, 4))],
    )
    .await
    .unwrap();
    let hold_id = uuid_of(result(&replies[1]), "hold_id");

    let replies = apply_batch(&ctx, &[log.at(user, pay(show, hold_id, 1))])
        .await
        .unwrap();

    assert_eq!(code(&replies[0]), ErrorCode::InsufficientBalance);
    assert_eq!(db.balance(user).await, PRICE - 1);
    assert_eq!(
        db.seat(show.date_id, 4).await,
        (Some(hold_id), Some(user), None)
    );
    assert_eq!(db.hold_state(hold_id).await, "HELD");
    for table in ["reservations", "payments", "balance_ledger", "outbox"] {
        assert_eq!(db.count(table).await, 0, "{table}");
    }
    let completed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT completed_at FROM queue_entries")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(completed, None);
    db.drop_database().await;
}

#[tokio::test]
async fn a_payment_sells_the_seat_completes_the_place_and_queues_an_event() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (user, other) = (db.user(120_000).await, db.user(1_000_000).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[log.at(user, join(show)), log.at(user, hold(show, 9))],
    )
    .await
    .unwrap();
    let seq = result(&replies[0])["seq"].as_i64().unwrap();
    let hold_id = uuid_of(result(&replies[1]), "hold_id");

    let replies = apply_batch(
        &ctx,
        &[
            log.at(other, pay(show, hold_id, 1)),
            log.at(user, pay(show, hold_id, seq)),
            log.at(user, pay(show, hold_id, seq)),
        ],
    )
    .await
    .unwrap();

    assert_eq!(
        code(&replies[0]),
        ErrorCode::HoldNotFound,
        "someone else's hold is not found"
    );
    let paid = result(&replies[1]);
    assert_eq!(paid["amount"], PRICE);
    assert_eq!(paid["seat_no"], 9);
    assert_eq!(code(&replies[2]), ErrorCode::AlreadyPaid);
    let reservation_id = uuid_of(paid, "reservation_id");
    assert_eq!(
        db.seat(show.date_id, 9).await,
        (None, None, Some(reservation_id))
    );
    assert_eq!(db.balance(user).await, 120_000 - PRICE);
    assert_eq!(db.balance(other).await, 1_000_000);
    assert_eq!(db.hold_state(hold_id).await, "PAID");

    let (kind, amount, after): (String, i64, i64) =
        sqlx::query_as("SELECT kind, amount, balance_after FROM balance_ledger")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (kind.as_str(), amount, after),
        ("PAYMENT", PRICE, 120_000 - PRICE)
    );
    let done: bool =
        sqlx::query_scalar("SELECT completed_at IS NOT NULL FROM queue_entries WHERE seq = $1")
            .bind(seq)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(done, "paying completes the place in line");

    let (event_type, key, payload): (String, String, serde_json::Value) =
        sqlx::query_as("SELECT event_type, event_key, payload FROM outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let event: PaymentEvent = serde_json::from_value(payload).unwrap();
    assert_eq!(event_type, PaymentEvent::TYPE);
    assert_eq!(
        key,
        uuid_of(paid, "payment_id").to_string(),
        "keyed by payment_id"
    );
    assert_eq!(
        (event.user_id, event.hold_id, event.amount, event.seat_no),
        (user, hold_id, PRICE, 9)
    );
    assert_eq!(event.payment_id, uuid_of(paid, "payment_id"));
    db.drop_database().await;
}

#[tokio::test]
async fn a_broken_command_fails_alone_and_the_rest_of_the_batch_goes_through() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(1_000_000).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(&ctx, &[log.at(user, hold(show, 1))])
        .await
        .unwrap();
    let hold_id = uuid_of(result(&replies[0]), "hold_id");
    // Break an invariant behind the worker's back: the seat no longer names the live hold.
    sqlx::query(
        "UPDATE seats SET hold_id = NULL, held_by = NULL, hold_expires_at = NULL WHERE seat_no = 1",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let batch = [
        log.at(user, hold(show, 2)),
        log.at(user, pay(show, hold_id, 1)),
        log.at(user, hold(show, 3)),
    ];
    let replies = apply_batch(&ctx, &batch).await.unwrap();

    result(&replies[0]);
    let ErrorCode::Internal = code(&replies[1]) else {
        panic!("expected INTERNAL")
    };
    let Outcome::Failed { error } = &replies[1].outcome else {
        unreachable!()
    };
    assert!(
        !error.detail.to_lowercase().contains("seat"),
        "no internals in {error}"
    );
    result(&replies[2]);
    assert_eq!(
        db.balance(user).await,
        1_000_000,
        "the failed payment was rolled back"
    );
    assert_eq!(db.count("payments").await, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM requests WHERE request_id = $1")
        .bind(batch[1].envelope.request_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "FAILED");

    // Redelivered, the stored failure stands.
    let again = apply_batch(&ctx, &[log.again(batch[1].envelope.clone())])
        .await
        .unwrap();
    assert_eq!(again[0], replies[1]);
    db.drop_database().await;
}

#[tokio::test]
async fn a_run_of_checkouts_draws_on_the_balance_in_log_order() {
    let db = TestDb::new().await;
    // Two concerts, so the payer has two places: only the balance decides between the checkouts.
    let (first, second) = (db.concert(10, 100).await, db.concert(10, 100).await);
    let user = db.user(3 * PRICE + 10).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, join(first)),
            log.at(user, join(second)),
            log.at(user, hold(first, 1)),
            log.at(user, hold(first, 2)),
            log.at(user, hold(second, 1)),
            log.at(user, hold(second, 2)),
        ],
    )
    .await
    .unwrap();
    let holds: Vec<_> = replies[2..]
        .iter()
        .map(|r| uuid_of(result(r), "hold_id"))
        .collect();

    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, checkout(first, &holds[..2], 1)),
            log.at(user, checkout(second, &holds[2..], 1)),
            log.at(user, checkout(second, &holds[2..3], 1)),
        ],
    )
    .await
    .unwrap();

    assert_eq!(result(&replies[0])["amount"], 2 * PRICE);
    assert_eq!(
        code(&replies[1]),
        ErrorCode::InsufficientBalance,
        "the second checkout's sum no longer fits"
    );
    assert_eq!(result(&replies[2])["amount"], PRICE, "one seat of it does");
    assert_eq!(db.balance(user).await, 10);
    assert_eq!(db.hold_state(holds[2]).await, "PAID");
    assert_eq!(
        db.hold_state(holds[3]).await,
        "RELEASED",
        "the payer's other hold on the date is released by the checkout"
    );
    assert_eq!(db.seat(second.date_id, 2).await, (None, None, None));
    let after: Vec<i64> =
        sqlx::query_scalar("SELECT balance_after FROM balance_ledger ORDER BY entry_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        after,
        [PRICE + 10, 10],
        "one ledger entry per checkout, in log order"
    );
    assert_eq!(db.count("payments").await, 2);
    assert_eq!(db.count("outbox").await, 2);
    assert_eq!(db.count("reservations").await, 3);
    db.drop_database().await;
}

/// The `outbox` rows of payment events: (event_key, payload), in the order written.
async fn payment_events(db: &TestDb) -> Vec<(String, PaymentEvent)> {
    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_key, payload FROM outbox WHERE topic = 'events.payments' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(key, payload)| (key, serde_json::from_value(payload).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_checkout_of_three_seats_is_one_debit_one_payment_and_one_event() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(1_000_000).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let mut batch = vec![log.at(user, join(show))];
    batch.extend([5, 3, 8].map(|seat| log.at(user, hold(show, seat))));
    let replies = apply_batch(&ctx, &batch).await.unwrap();
    let holds: Vec<_> = replies[1..]
        .iter()
        .map(|r| uuid_of(result(r), "hold_id"))
        .collect();

    let replies = apply_batch(&ctx, &[log.at(user, checkout(show, &holds, 1))])
        .await
        .unwrap();

    let paid = result(&replies[0]);
    let payment_id = uuid_of(paid, "payment_id");
    assert_eq!(paid["amount"], 3 * PRICE);
    let seats: Vec<i64> = paid["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seat_no"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seats,
        [5, 3, 8],
        "one reservation per seat, in the order named"
    );
    for v1_field in ["reservation_id", "date_id", "seat_no"] {
        assert!(paid.get(v1_field).is_none(), "{v1_field} only for one seat");
    }
    assert_eq!(db.balance(user).await, 1_000_000 - 3 * PRICE);
    let ledger: Vec<(i64, Option<Uuid>)> =
        sqlx::query_as("SELECT amount, payment_id FROM balance_ledger")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        ledger,
        [(3 * PRICE, Some(payment_id))],
        "one debit of the sum"
    );
    let payments: Vec<(Uuid, i64)> = sqlx::query_as("SELECT payment_id, amount FROM payments")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(payments, [(payment_id, 3 * PRICE)]);
    for (i, seat_no) in [5, 3, 8].into_iter().enumerate() {
        let reservation_id = uuid_of(&paid["reservations"][i], "reservation_id");
        assert_eq!(
            db.seat(show.date_id, seat_no).await,
            (None, None, Some(reservation_id))
        );
        let (paid_by, hold_id): (Uuid, Uuid) = sqlx::query_as(
            "SELECT payment_id, hold_id FROM reservations WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((paid_by, hold_id), (payment_id, holds[i]));
        assert_eq!(db.hold_state(holds[i]).await, "PAID");
    }
    let done: bool = sqlx::query_scalar("SELECT completed_at IS NOT NULL FROM queue_entries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(done, "the checkout completes the place");

    let events = payment_events(&db).await;
    let [(key, event)] = events.as_slice() else {
        panic!("one event per checkout: {events:?}")
    };
    assert_eq!(*key, payment_id.to_string(), "keyed by payment_id");
    assert_eq!(event.event_type, PaymentEvent::TYPE);
    assert_eq!((event.payment_id, event.amount), (payment_id, 3 * PRICE));
    assert_eq!(
        (event.hold_id, event.seat_no, event.date_id),
        (holds[0], 5, show.date_id),
        "the v1 fields are the first seat's"
    );
    assert_eq!(
        event.reservation_id,
        uuid_of(&paid["reservations"][0], "reservation_id")
    );
    assert_eq!(
        serde_json::to_value(&event.reservations).unwrap(),
        paid["reservations"],
        "the event lists the seats as the result does"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_checkout_with_one_hold_not_payable_or_too_little_money_changes_nothing() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(2 * PRICE).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, join(show)),
            log.at(user, hold(show, 1)),
            log.at(user, hold(show, 2)),
            log.at(user, hold(show, 3)),
        ],
    )
    .await
    .unwrap();
    let holds: Vec<_> = replies[1..]
        .iter()
        .map(|r| uuid_of(result(r), "hold_id"))
        .collect();
    // The third hold lapses behind the worker's back.
    sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1")
        .bind(holds[2])
        .execute(&db.pool)
        .await
        .unwrap();
    let unknown = Uuid::new_v4();

    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, checkout(show, &[holds[0], unknown], 1)),
            log.at(user, checkout(show, &holds, 1)),
            log.at(user, checkout(show, &[holds[0], holds[1], holds[1]], 1)),
        ],
    )
    .await
    .unwrap();

    assert_eq!(code(&replies[0]), ErrorCode::HoldNotFound);
    assert_eq!(code(&replies[1]), ErrorCode::HoldExpired);
    assert_eq!(code(&replies[2]), ErrorCode::ValidationFailed);
    let Outcome::Failed { error } = &replies[0].outcome else {
        unreachable!()
    };
    assert!(
        error.detail.contains(&unknown.to_string()),
        "the detail names the hold: {}",
        error.detail
    );
    let Outcome::Failed { error } = &replies[1].outcome else {
        unreachable!()
    };
    assert!(
        error.detail.contains(&holds[2].to_string()),
        "{}",
        error.detail
    );

    // Live holds of three seats with money for two.
    sqlx::query("UPDATE holds SET expires_at = now() + interval '5 minutes' WHERE hold_id = $1")
        .bind(holds[2])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE seats SET hold_expires_at = now() + interval '5 minutes' WHERE hold_id = $1",
    )
    .bind(holds[2])
    .execute(&db.pool)
    .await
    .unwrap();
    let replies = apply_batch(&ctx, &[log.at(user, checkout(show, &holds, 1))])
        .await
        .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::InsufficientBalance);

    assert_eq!(db.balance(user).await, 2 * PRICE);
    for (seat_no, hold_id) in (1..).zip(&holds) {
        assert_eq!(db.hold_state(*hold_id).await, "HELD");
        assert_eq!(
            db.seat(show.date_id, seat_no).await,
            (Some(*hold_id), Some(user), None)
        );
    }
    for table in ["reservations", "payments", "balance_ledger", "outbox"] {
        assert_eq!(db.count(table).await, 0, "{table}");
    }
    let completed: bool = sqlx::query_scalar("SELECT completed_at IS NOT NULL FROM queue_entries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!completed, "a refused checkout leaves the place as it was");
    db.drop_database().await;
}

#[tokio::test]
async fn a_completed_or_ended_place_takes_no_more_holds_or_checkouts() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (ada, bob) = (db.user(1_000_000).await, db.user(1_000_000).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[
            log.at(ada, join(show)),
            log.at(bob, join(show)),
            log.at(ada, hold(show, 1)),
        ],
    )
    .await
    .unwrap();
    let (ada_seq, bob_seq) = (
        result(&replies[0])["seq"].as_i64().unwrap(),
        result(&replies[1])["seq"].as_i64().unwrap(),
    );
    let first = uuid_of(result(&replies[2]), "hold_id");
    let hold_with = |seat_no, seq| Command::Hold {
        concert_id: show.concert_id,
        date_id: show.date_id,
        seat_no,
        queue_seq: seq,
    };
    // Bob's place ends unclaimed behind the api's back.
    sqlx::query("UPDATE queue_entries SET ended_at = now() WHERE seq = $1")
        .bind(bob_seq)
        .execute(&db.pool)
        .await
        .unwrap();

    // In one batch, as an api that had not heard of the checkout yet would send them.
    let replies = apply_batch(
        &ctx,
        &[
            log.at(ada, hold(show, 2)),
            log.at(ada, checkout(show, &[first], ada_seq)),
            log.at(ada, hold_with(3, ada_seq)),
            log.at(bob, hold_with(4, bob_seq)),
        ],
    )
    .await
    .unwrap();
    let second = uuid_of(result(&replies[0]), "hold_id");
    result(&replies[1]);
    assert_eq!(
        code(&replies[2]),
        ErrorCode::QueueTokenExpired,
        "a hold after the checkout on its place"
    );
    assert_eq!(
        code(&replies[3]),
        ErrorCode::QueueTokenExpired,
        "a hold on an ended place"
    );
    assert_eq!(
        db.hold_state(second).await,
        "RELEASED",
        "the hold taken before the checkout was released by it"
    );
    for seat_no in [2, 3, 4] {
        assert_eq!(db.seat(show.date_id, seat_no).await, (None, None, None));
    }

    // A hold the checkout could not see (written behind the worker's back), paid with the completed place.
    let replies = apply_batch(&ctx, &[log.at(ada, hold_with(5, 99))])
        .await
        .unwrap();
    let late = uuid_of(result(&replies[0]), "hold_id");
    let replies = apply_batch(&ctx, &[log.at(ada, checkout(show, &[late], ada_seq))])
        .await
        .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::QueueTokenExpired);
    assert_eq!(db.hold_state(late).await, "HELD");
    assert_eq!(db.balance(ada).await, 1_000_000 - PRICE);
    assert_eq!(db.count("payments").await, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn holds_on_other_dates_are_released_by_commands_on_their_own_dates() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let other = another_date(&db, show).await;
    let user = db.user(1_000_000).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, join(show)),
            log.at(user, hold(show, 1)),
            log.at(user, hold(other, 1)),
            log.at(user, hold(other, 2)),
        ],
    )
    .await
    .unwrap();
    let paid = uuid_of(result(&replies[1]), "hold_id");
    let elsewhere = [
        uuid_of(result(&replies[2]), "hold_id"),
        uuid_of(result(&replies[3]), "hold_id"),
    ];

    let replies = apply_batch(&ctx, &[log.at(user, checkout(show, &[paid], 1))])
        .await
        .unwrap();
    result(&replies[0]);
    for hold_id in elsewhere {
        assert_eq!(
            db.hold_state(hold_id).await,
            "HELD",
            "another date's holds change only in that date's order"
        );
    }

    // What the relay will put on the log: a RELEASE per hold, keyed by its date.
    let rows: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_id, event_key, payload FROM outbox WHERE topic = 'commands.bookings' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let mut releases = Vec::new();
    for (event_id, key, payload) in rows {
        let envelope: CommandEnvelope = serde_json::from_value(payload).unwrap();
        assert_eq!(event_id, envelope.request_id);
        assert_eq!(key, other.date_id.to_string());
        assert_eq!(envelope.user_id, user);
        let Command::Release { hold_id, .. } = envelope.command else {
            panic!("a release: {envelope:?}")
        };
        assert!(elsewhere.contains(&hold_id));
        releases.push(envelope);
    }

    // Applied on the other date's partition, twice (the relay publishes at least once): released once.
    let batch: Vec<_> = releases.iter().map(|e| log.again(e.clone())).collect();
    let replies = apply_batch(&ctx, &batch).await.unwrap();
    assert!(replies.iter().all(|r| result(r)["hold_id"].is_string()));
    let batch: Vec<_> = releases.iter().map(|e| log.again(e.clone())).collect();
    let again = apply_batch(&ctx, &batch).await.unwrap();
    assert_eq!(again, replies, "a repeat is a replay");
    for (seat_no, hold_id) in (1..).zip(elsewhere) {
        assert_eq!(db.hold_state(hold_id).await, "RELEASED");
        assert_eq!(db.seat(other.date_id, seat_no).await, (None, None, None));
    }
    db.drop_database().await;
}

/// A second date of `show`'s concert, with its seats at [`PRICE`].
async fn another_date(db: &TestDb, show: Show) -> Show {
    let date_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO concert_dates (date_id, concert_id, starts_at, total_seats)
         VALUES ($1, $2, now() + interval '31 days', 10)",
    )
    .bind(date_id)
    .bind(show.concert_id)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO seats (date_id, seat_no, price) SELECT $1, n, $2 FROM generate_series(1, 10) AS n")
        .bind(date_id)
        .bind(PRICE)
        .execute(&db.pool)
        .await
        .unwrap();
    Show {
        concert_id: show.concert_id,
        date_id,
    }
}

#[tokio::test]
async fn a_mixed_batch_is_decided_as_if_applied_one_by_one() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (a, b, c) = (db.user(PRICE).await, db.user(PRICE).await, db.user(0).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[
            log.at(a, join(show)),
            log.at(a, hold(show, 1)),
            log.at(a, hold(show, 2)),
        ],
    )
    .await
    .unwrap();
    let (h1, h2) = (
        uuid_of(result(&replies[1]), "hold_id"),
        uuid_of(result(&replies[2]), "hold_id"),
    );

    let replies = apply_batch(
        &ctx,
        &[
            log.at(b, hold(show, 1)),
            log.at(a, release(show, h1)),
            log.at(b, hold(show, 1)),
            log.at(a, pay(show, h2, 1)),
            log.at(c, join(show)),
            log.at(a, release(show, h2)),
            log.at(b, join(show)),
            log.at(c, join(show)),
        ],
    )
    .await
    .unwrap();

    assert_eq!(code(&replies[0]), ErrorCode::SeatUnavailable);
    assert_eq!(result(&replies[1])["seat_no"], 1);
    let b_hold = uuid_of(result(&replies[2]), "hold_id");
    assert_eq!(result(&replies[3])["amount"], PRICE);
    let c_seq = result(&replies[4])["seq"].as_i64().unwrap();
    assert_eq!(
        code(&replies[5]),
        ErrorCode::AlreadyPaid,
        "a hold paid earlier in the batch"
    );
    let b_seq = result(&replies[6])["seq"].as_i64().unwrap();
    assert_eq!((c_seq, b_seq), (2, 3), "places follow a's, in log order");
    assert_eq!(result(&replies[7])["seq"], c_seq, "a live place is kept");
    assert_eq!(
        db.seat(show.date_id, 1).await,
        (Some(b_hold), Some(b), None)
    );
    assert_eq!(db.hold_state(h1).await, "RELEASED");
    assert_eq!(db.hold_state(h2).await, "PAID");
    assert_eq!(db.balance(a).await, 0);
    db.drop_database().await;
}
