use concert_core::commands::Command;
use concert_core::ErrorCode;
use concert_workers::{apply_batch, ApplyContext};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn two_holds_on_one_seat_in_one_batch_have_one_winner() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (alice, bob) = (db.user(0).await, db.user(0).await);
    let mut log = Log::default();

    let batch = [log.at(alice, hold(show, 7)), log.at(bob, hold(show, 7))];
    let replies = apply_batch(&db.ctx(), &batch).await.unwrap();

    let won = result(&replies[0]);
    assert_eq!(won["seat_no"], 7);
    assert_eq!(won["price"], PRICE);
    assert_eq!(code(&replies[1]), ErrorCode::SeatUnavailable);
    let (hold_id, held_by, sold) = db.seat(show.date_id, 7).await;
    assert_eq!(
        (hold_id, held_by, sold),
        (Some(uuid_of(won, "hold_id")), Some(alice), None)
    );
    assert_eq!(db.count("holds").await, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn unknown_date_seat_and_concert_are_told_apart() {
    let db = TestDb::new().await;
    let show = db.concert(5, 100).await;
    let other = db.concert(5, 100).await;
    let user = db.user(0).await;
    let mut log = Log::default();

    let batch = [
        log.at(user, hold(show, 6)),
        log.at(user, hold(show, 0)),
        log.at(
            user,
            Command::Hold {
                concert_id: show.concert_id,
                date_id: other.date_id,
                seat_no: 1,
                queue_seq: 1,
            },
        ),
        log.at(
            user,
            Command::Hold {
                concert_id: show.concert_id,
                date_id: Uuid::new_v4(),
                seat_no: 1,
                queue_seq: 1,
            },
        ),
        log.at(
            user,
            Command::Hold {
                concert_id: Uuid::new_v4(),
                date_id: show.date_id,
                seat_no: 1,
                queue_seq: 1,
            },
        ),
    ];
    let codes: Vec<_> = apply_batch(&db.ctx(), &batch)
        .await
        .unwrap()
        .iter()
        .map(code)
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::SeatNotFound,
            ErrorCode::SeatNotFound,
            ErrorCode::DateNotFound,
            ErrorCode::DateNotFound,
            ErrorCode::ConcertNotFound
        ]
    );
    assert_eq!(
        db.seat(other.date_id, 1).await,
        (None, None, None),
        "another concert's seat is untouched"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn the_hold_limit_counts_live_holds_only() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(0).await;
    let ctx = ApplyContext::new(db.pool.clone(), 2);
    let mut log = Log::default();

    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, hold(show, 1)),
            log.at(user, hold(show, 2)),
            log.at(user, hold(show, 3)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code(&replies[2]), ErrorCode::HoldLimitReached);

    // Releasing one frees a slot; a lapsed one no longer counts either.
    let first = uuid_of(result(&replies[0]), "hold_id");
    let second = uuid_of(result(&replies[1]), "hold_id");
    let replies = apply_batch(
        &ctx,
        &[
            log.at(user, release(show, first)),
            log.at(user, hold(show, 3)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(result(&replies[0])["seat_no"], 1);
    result(&replies[1]);
    lapse(&db, second).await;
    let replies = apply_batch(&ctx, &[log.at(user, hold(show, 4))])
        .await
        .unwrap();
    result(&replies[0]);
    db.drop_database().await;
}

/// Moves a hold's deadline into the past, as if its time had run out.
pub async fn lapse(db: &TestDb, hold_id: Uuid) {
    sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1")
        .bind(hold_id)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE seats SET hold_expires_at = now() - interval '1 second' WHERE hold_id = $1",
    )
    .bind(hold_id)
    .execute(&db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_lapsed_hold_frees_the_seat_without_a_sweeper() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (alice, bob) = (db.user(100_000).await, db.user(0).await);
    let ctx = db.ctx();
    let mut log = Log::default();

    let replies = apply_batch(&ctx, &[log.at(alice, hold(show, 5))])
        .await
        .unwrap();
    let old = uuid_of(result(&replies[0]), "hold_id");
    lapse(&db, old).await;

    let replies = apply_batch(
        &ctx,
        &[
            log.at(bob, hold(show, 5)),
            log.at(alice, pay(show, old, 1)),
            log.at(alice, release(show, old)),
        ],
    )
    .await
    .unwrap();
    let new = uuid_of(result(&replies[0]), "hold_id");
    assert_eq!(code(&replies[1]), ErrorCode::HoldExpired);
    assert_eq!(code(&replies[2]), ErrorCode::HoldExpired);
    assert_eq!(db.seat(show.date_id, 5).await, (Some(new), Some(bob), None));
    assert_eq!(db.balance(alice).await, 100_000);
    assert_eq!(
        db.hold_state(old).await,
        "HELD",
        "only the sweeper marks it EXPIRED"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn only_the_owner_can_release_and_only_once() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (alice, bob) = (db.user(0).await, db.user(0).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(&ctx, &[log.at(alice, hold(show, 2))])
        .await
        .unwrap();
    let hold_id = uuid_of(result(&replies[0]), "hold_id");

    let replies = apply_batch(
        &ctx,
        &[
            log.at(bob, release(show, hold_id)),
            log.at(alice, release(show, hold_id)),
            log.at(alice, release(show, hold_id)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code(&replies[0]), ErrorCode::HoldNotFound);
    assert_eq!(uuid_of(result(&replies[1]), "hold_id"), hold_id);
    assert_eq!(code(&replies[2]), ErrorCode::HoldNotFound);
    assert_eq!(db.seat(show.date_id, 2).await, (None, None, None));
    assert_eq!(db.hold_state(hold_id).await, "RELEASED");
    db.drop_database().await;
}
