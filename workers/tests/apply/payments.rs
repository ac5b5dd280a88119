use concert_core::commands::PaymentEvent;
use concert_core::ErrorCode;
use concert_workers::apply_batch;

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
    assert_eq!(key, reservation_id.to_string());
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
    let concert_core::commands::Outcome::Failed { error } = &replies[1].outcome else {
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
async fn a_run_of_payments_draws_on_the_balance_in_log_order() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(2 * PRICE + 10).await;
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

    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, pay(show, holds[0], 1)),
            log.at(user, pay(show, holds[1], 1)),
            log.at(user, pay(show, holds[2], 1)),
        ],
    )
    .await
    .unwrap();

    assert_eq!(result(&replies[0])["seat_no"], 1);
    assert_eq!(result(&replies[1])["seat_no"], 2);
    assert_eq!(code(&replies[2]), ErrorCode::InsufficientBalance);
    assert_eq!(db.balance(user).await, 10);
    assert_eq!(db.hold_state(holds[2]).await, "HELD");
    let after: Vec<i64> =
        sqlx::query_scalar("SELECT balance_after FROM balance_ledger ORDER BY entry_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(after, [PRICE + 10, 10], "ledger entries in payment order");
    assert_eq!(db.count("outbox").await, 2);
    assert_eq!(db.count("reservations").await, 2);
    db.drop_database().await;
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
