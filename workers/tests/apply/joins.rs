use concert_core::ErrorCode;
use concert_workers::apply_batch;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn places_are_dense_in_log_order_and_a_live_place_is_kept() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let users = [db.user(0).await, db.user(0).await, db.user(0).await];
    let ctx = db.ctx();
    let mut log = Log::default();

    let batch = [
        log.at(users[0], join(show)),
        log.at(users[1], join(show)),
        log.at(users[0], join(show)),
        log.at(users[2], join(show)),
        log.at(
            users[0],
            concert_core::commands::Command::Join {
                concert_id: Uuid::new_v4(),
            },
        ),
    ];
    let replies = apply_batch(&ctx, &batch).await.unwrap();
    let seqs: Vec<i64> = replies[..4]
        .iter()
        .map(|r| result(r)["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 1, 3]);
    assert_eq!(
        result(&replies[0]),
        result(&replies[2]),
        "joining again returns the same place"
    );
    assert_eq!(code(&replies[4]), ErrorCode::ConcertNotFound);
    let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM waiting_rooms")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(last_seq, 3);

    // A completed place is over: joining again takes a new place at the back.
    sqlx::query("UPDATE queue_entries SET completed_at = now() WHERE seq = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    let replies = apply_batch(&ctx, &[log.at(users[0], join(show))])
        .await
        .unwrap();
    assert_eq!(result(&replies[0])["seq"], 4);
    db.drop_database().await;
}

#[tokio::test]
async fn an_admitted_place_stays_live_until_its_window_closes() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(0).await;
    let ctx = db.ctx();
    let mut log = Log::default();
    apply_batch(&ctx, &[log.at(user, join(show))])
        .await
        .unwrap();
    sqlx::query("UPDATE waiting_rooms SET admitted_upto = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO admissions (concert_id, from_seq, upto_seq, admitted_at, active_until, claim_until)
         VALUES ($1, 1, 1, now(), now() + interval '10 minutes', now() + interval '10 minutes')",
    )
    .bind(show.concert_id)
    .execute(&db.pool)
    .await
    .unwrap();
    let replies = apply_batch(&ctx, &[log.at(user, join(show))])
        .await
        .unwrap();
    assert_eq!(result(&replies[0])["seq"], 1, "ACTIVE keeps the place");

    sqlx::query("UPDATE admissions SET active_until = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    let replies = apply_batch(&ctx, &[log.at(user, join(show))])
        .await
        .unwrap();
    assert_eq!(result(&replies[0])["seq"], 2, "EXPIRED takes a new place");
    db.drop_database().await;
}
