use concert_core::commands::REFUSED;
use concert_workers::apply_batch;

use crate::helpers::*;

#[tokio::test]
async fn redelivered_commands_change_nothing_and_get_the_same_outcome() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(100_000).await;
    let ctx = db.ctx();
    let mut log = Log::default();

    let joined = log.at(user, join(show));
    let held = log.at(user, hold(show, 3));
    let refused = log.at(user, hold(show, 99));
    let first = apply_batch(&ctx, &[joined.clone(), held.clone(), refused.clone()])
        .await
        .unwrap();
    let hold_id = uuid_of(result(&first[1]), "hold_id");
    let paid = log.at(user, pay(show, hold_id, 1));
    let payment = apply_batch(&ctx, std::slice::from_ref(&paid))
        .await
        .unwrap();
    let balance = db.balance(user).await;
    assert_eq!(balance, 100_000 - PRICE);
    let counts = (
        db.count("queue_entries").await,
        db.count("holds").await,
        db.count("outbox").await,
    );

    // The whole history again, as after a rebalance, plus a repeat inside one batch.
    let again: Vec<_> = [&joined, &held, &refused, &paid, &paid]
        .into_iter()
        .map(|c| log.again(c.envelope.clone()))
        .collect();
    let replies = apply_batch(&ctx, &again).await.unwrap();

    assert_eq!(replies[..3], first[..]);
    assert_eq!(replies[3], payment[0]);
    assert_eq!(replies[4], payment[0]);
    assert_eq!(db.balance(user).await, balance);
    assert_eq!(
        (
            db.count("queue_entries").await,
            db.count("holds").await,
            db.count("outbox").await
        ),
        counts
    );
    assert_eq!(db.count("requests").await, 4);
    let (offset, partition): (i64, i32) = sqlx::query_as(
        "SELECT source_offset, source_partition FROM requests WHERE request_id = $1",
    )
    .bind(paid.envelope.request_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (offset, partition),
        (paid.offset, 0),
        "where the command first sat is kept"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_repeat_inside_one_batch_is_applied_once() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(0).await;
    let mut log = Log::default();
    let first = log.at(user, hold(show, 1));
    let repeat = log.again(first.envelope.clone());

    let replies = apply_batch(&db.ctx(), &[first, repeat]).await.unwrap();
    assert_eq!(replies[0], replies[1]);
    result(&replies[0]);
    assert_eq!(db.count("holds").await, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn a_command_the_api_refused_is_not_applied_when_it_lands_and_is_once_the_refusal_is_lifted()
{
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let user = db.user(0).await;
    let mut log = Log::default();
    let held = log.at(user, hold(show, 1));
    let other = log.at(user, hold(show, 2));
    // What the api writes before a 503 whose publish the broker did not confirm.
    let env = &held.envelope;
    sqlx::query(
        "INSERT INTO requests (request_id, user_id, kind, fingerprint, status) VALUES ($1, $2, 'HOLD', $3, $4)",
    )
    .bind(env.request_id)
    .bind(env.user_id)
    .bind(&env.fingerprint)
    .bind(REFUSED)
    .execute(&db.pool)
    .await
    .unwrap();

    // The copy lands after all, in a batch with another command: it changes nothing, the other applies.
    let replies = apply_batch(&db.ctx(), &[held.clone(), other])
        .await
        .unwrap();
    assert!(replies[0].is_refusal(), "{:?}", replies[0]);
    result(&replies[1]);
    assert_eq!(db.count("holds").await, 1);
    let status: String = sqlx::query_scalar("SELECT status FROM requests WHERE request_id = $1")
        .bind(env.request_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, REFUSED, "the refusal stands");

    // A retry with the key deletes the refusal first; then the same request is applied, once.
    sqlx::query("DELETE FROM requests WHERE request_id = $1 AND status = $2")
        .bind(env.request_id)
        .bind(REFUSED)
        .execute(&db.pool)
        .await
        .unwrap();
    let retried = log.again(env.clone());
    let replies = apply_batch(&db.ctx(), &[held, retried]).await.unwrap();
    assert_eq!(replies[0], replies[1]);
    assert_eq!(result(&replies[0])["seat_no"], 1);
    assert_eq!(db.count("holds").await, 2);
    db.drop_database().await;
}
