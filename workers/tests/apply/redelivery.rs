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
