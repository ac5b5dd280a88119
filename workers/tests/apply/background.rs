//! The ticker and the sweeper need only Postgres, so `run` is driven with just those roles.

use std::time::Duration;

use concert_core::config::Settings;
use concert_workers::{apply_batch, run, Roles, WorkerConfig};
use tokio::sync::watch;

use crate::helpers::*;
use crate::holds::lapse;

fn config(db: &TestDb, roles: Roles) -> WorkerConfig {
    let settings = Settings {
        database_url: db.url.clone(),
        kafka_brokers: "127.0.0.1:1".into(),
        topic_prefix: "unused.".into(),
        token_secret: "a-test-secret-of-enough-length".into(),
        db_max_connections: 4,
        kafka_fetch: Default::default(),
        partitions: Default::default(),
    };
    WorkerConfig {
        roles,
        ..WorkerConfig::for_tests(settings)
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn tickers_admit_in_order_up_to_the_limit_and_refill_freed_slots() {
    let db = TestDb::new().await;
    let show = db.concert(10, 2).await;
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(db.user(0).await);
    }
    let mut log = Log::default();
    let joins: Vec<_> = users.iter().map(|u| log.at(*u, join(show))).collect();
    apply_batch(&db.ctx(), &joins).await.unwrap();

    // Two tickers at once, as in two processes: still no one admitted twice or skipped.
    let (stop, shutdown) = watch::channel(false);
    let ticker = Roles {
        ticker: true,
        ..Roles::none()
    };
    let a = tokio::spawn(run(config(&db, ticker), shutdown.clone()));
    let b = tokio::spawn(run(config(&db, ticker), shutdown));

    let frontier = || async {
        sqlx::query_scalar::<_, i64>("SELECT admitted_upto FROM waiting_rooms")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    eventually("two admitted", || async { frontier().await == 2 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(frontier().await, 2, "the room is full");

    sqlx::query("UPDATE queue_entries SET completed_at = now() WHERE seq = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    eventually("a freed slot refilled", || async { frontier().await == 3 }).await;

    let steps: Vec<(i64, i64)> =
        sqlx::query_as("SELECT from_seq, upto_seq FROM admissions ORDER BY from_seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let covered: Vec<i64> = steps
        .iter()
        .flat_map(|(from, upto)| *from..=*upto)
        .collect();
    assert_eq!(covered, [1, 2, 3], "contiguous steps, each seq once");

    stop.send(true).unwrap();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn the_sweeper_expires_lapsed_holds_and_frees_their_seats() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    let (alice, bob) = (db.user(0).await, db.user(0).await);
    let ctx = db.ctx();
    let mut log = Log::default();
    let replies = apply_batch(
        &ctx,
        &[
            log.at(alice, hold(show, 1)),
            log.at(alice, hold(show, 2)),
            log.at(alice, hold(show, 3)),
        ],
    )
    .await
    .unwrap();
    let ids: Vec<_> = replies
        .iter()
        .map(|r| uuid_of(result(r), "hold_id"))
        .collect();
    lapse(&db, ids[0]).await;
    lapse(&db, ids[1]).await;
    // Seat 2 was taken again after its hold lapsed: the sweeper must leave the new hold alone.
    let retaken = apply_batch(&ctx, &[log.at(bob, hold(show, 2))])
        .await
        .unwrap();
    let new = uuid_of(result(&retaken[0]), "hold_id");

    let (stop, shutdown) = watch::channel(false);
    let worker = tokio::spawn(run(
        config(
            &db,
            Roles {
                sweeper: true,
                ..Roles::none()
            },
        ),
        shutdown,
    ));
    eventually("holds expired", || async {
        db.hold_state(ids[1]).await == "EXPIRED"
    })
    .await;
    stop.send(true).unwrap();
    worker.await.unwrap().unwrap();

    assert_eq!(db.hold_state(ids[0]).await, "EXPIRED");
    assert_eq!(db.hold_state(ids[2]).await, "HELD");
    assert_eq!(db.seat(show.date_id, 1).await, (None, None, None));
    assert_eq!(db.seat(show.date_id, 2).await, (Some(new), Some(bob), None));
    assert_eq!(db.seat(show.date_id, 3).await.1, Some(alice));
    db.drop_database().await;
}
