//! The pre-queue (issue 20): joins before `opens_at` wait without a line number, the opening records one
//! draw (by a join batch or a ticker, whichever holds the room first), and admission follows the draw's
//! order, then join order. The last test opens a room of 100,000 pre-queued places and prints the times.

use std::time::{Duration, Instant};

use concert_core::admission::Draw;
use concert_core::config::Settings;
use concert_workers::{apply_batch, run, Roles, WorkerConfig};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::helpers::*;

fn ticker_config(db: &TestDb) -> WorkerConfig {
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
        roles: Roles {
            ticker: true,
            ..Roles::none()
        },
        ..WorkerConfig::for_tests(settings)
    }
}

async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn frontier(pool: &PgPool, concert: Uuid) -> i64 {
    sqlx::query_scalar("SELECT admitted_upto FROM waiting_rooms WHERE concert_id = $1")
        .bind(concert)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The recorded draw, if any.
async fn draw(pool: &PgPool, concert: Uuid) -> Option<Draw> {
    let row: (Option<Vec<u8>>, Option<i64>) =
        sqlx::query_as("SELECT draw_seed, draw_places FROM waiting_rooms WHERE concert_id = $1")
            .bind(concert)
            .fetch_one(pool)
            .await
            .unwrap();
    match row {
        (Some(seed), Some(places)) => Draw::from_parts(&seed, places),
        _ => None,
    }
}

/// (seq, line_no) of every place, by seq.
async fn lines(pool: &PgPool, concert: Uuid) -> Vec<(i64, Option<i64>)> {
    sqlx::query_as("SELECT seq, line_no FROM queue_entries WHERE concert_id = $1 ORDER BY seq")
        .bind(concert)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn set_opens_at(pool: &PgPool, concert: Uuid, from_now_ms: i64) {
    sqlx::query(
        "UPDATE waiting_rooms SET opens_at = now() + make_interval(secs => $2) WHERE concert_id = $1",
    )
    .bind(concert)
    .bind(from_now_ms as f64 / 1000.0)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn pre_queued_places_are_admitted_in_the_draws_order_then_in_join_order() {
    let db = TestDb::new().await;
    let show = db.concert(10, 3).await;
    set_opens_at(&db.pool, show.concert_id, 1500).await;
    let mut users = Vec::new();
    for _ in 0..7 {
        users.push(db.user(0).await);
    }
    let mut log = Log::default();
    let joins: Vec<_> = users[..6].iter().map(|u| log.at(*u, join(show))).collect();
    apply_batch(&db.ctx(), &joins).await.unwrap();
    assert!(
        lines(&db.pool, show.concert_id)
            .await
            .iter()
            .all(|(_, l)| l.is_none()),
        "pre-queued places have no line number before the draw"
    );

    // Two tickers, as in two processes.
    let (stop, shutdown) = watch::channel(false);
    let a = tokio::spawn(run(ticker_config(&db), shutdown.clone()));
    let b = tokio::spawn(run(ticker_config(&db), shutdown));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        frontier(&db.pool, show.concert_id).await,
        0,
        "nobody before the opening"
    );
    assert!(draw(&db.pool, show.concert_id).await.is_none());

    eventually("the opening's admissions", 10, || async {
        frontier(&db.pool, show.concert_id).await == 3
    })
    .await;
    let drawn = draw(&db.pool, show.concert_id).await.expect("drawn");
    assert_eq!(drawn.places, 6);
    let before: bool =
        sqlx::query_scalar("SELECT drawn_at >= opens_at FROM waiting_rooms WHERE concert_id = $1")
            .bind(show.concert_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(before, "drawn at the opening, not before");
    let order = drawn.order();
    // The order the method's SQL gives is the one admitted by.
    let sql_order: Vec<(i64, i64)> = sqlx::query_as(&format!("{} ORDER BY seq", Draw::METHOD_SQL))
        .bind(show.concert_id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    for (seq, line) in &sql_order {
        assert_eq!(order.line(*seq), *line, "Rust and SQL agree on seq {seq}");
    }
    let numbered = lines(&db.pool, show.concert_id).await;
    for (seq, line) in &numbered {
        match line {
            Some(l) => assert!(*l <= 3 && order.line(*seq) == *l, "seq {seq} line {l}"),
            None => assert!(order.line(*seq) > 3, "seq {seq} not admitted yet"),
        }
    }

    // A join after the opening takes the next seq and keeps it as its line number.
    let late = apply_batch(&db.ctx(), &[log.at(users[6], join(show))])
        .await
        .unwrap();
    assert_eq!(result(&late[0])["seq"], 7);
    // Free every slot: the rest of the draw, then the late joiner, in that order.
    sqlx::query(
        "UPDATE queue_entries SET completed_at = now() WHERE concert_id = $1 AND line_no <= 3",
    )
    .bind(show.concert_id)
    .execute(&db.pool)
    .await
    .unwrap();
    eventually("the rest admitted", 10, || async {
        frontier(&db.pool, show.concert_id).await == 6
    })
    .await;
    sqlx::query(
        "UPDATE queue_entries SET completed_at = now() WHERE concert_id = $1 AND line_no <= 6",
    )
    .bind(show.concert_id)
    .execute(&db.pool)
    .await
    .unwrap();
    eventually("the late joiner admitted", 10, || async {
        frontier(&db.pool, show.concert_id).await == 7
    })
    .await;
    let numbered = lines(&db.pool, show.concert_id).await;
    let expected: Vec<(i64, Option<i64>)> = (1..=7).map(|s| (s, Some(order.line(s)))).collect();
    assert_eq!(
        numbered, expected,
        "every place numbered by the draw, then by seq"
    );
    let steps: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT from_seq, upto_seq FROM admissions WHERE concert_id = $1 ORDER BY from_seq",
    )
    .bind(show.concert_id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let covered: Vec<i64> = steps.iter().flat_map(|(f, u)| *f..=*u).collect();
    assert_eq!(
        covered,
        (1..=7).collect::<Vec<_>>(),
        "each line admitted once"
    );

    stop.send(true).unwrap();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn the_first_join_after_the_opening_draws_and_is_not_in_the_draw() {
    let db = TestDb::new().await;
    let show = db.concert(10, 100).await;
    set_opens_at(&db.pool, show.concert_id, 60_000).await;
    let mut log = Log::default();
    let mut early = Vec::new();
    for _ in 0..3 {
        early.push(log.at(db.user(0).await, join(show)));
    }
    apply_batch(&db.ctx(), &early).await.unwrap();
    // A repeat before the opening keeps its place (it is live while pre-queued).
    let again = apply_batch(&db.ctx(), &[log.at(early[0].envelope.user_id, join(show))])
        .await
        .unwrap();
    assert_eq!(result(&again[0])["seq"], 1);
    assert!(
        result(&again[0])["opens_at"].is_string(),
        "a pre-queued place is told the opening"
    );
    // The opening comes.
    set_opens_at(&db.pool, show.concert_id, -10).await;
    let late = apply_batch(&db.ctx(), &[log.at(db.user(0).await, join(show))])
        .await
        .unwrap();
    assert_eq!(result(&late[0])["seq"], 4);
    assert!(result(&late[0]).get("opens_at").is_none());
    let drawn = draw(&db.pool, show.concert_id)
        .await
        .expect("the join drew");
    assert_eq!(drawn.places, 3, "the late joiner is not in the draw");
    assert_eq!(
        lines(&db.pool, show.concert_id).await,
        vec![(1, None), (2, None), (3, None), (4, Some(4))]
    );
    db.drop_database().await;
}

/// 100,000 places pre-queued, then the opening: the join batch that draws (the join partition's pause),
/// the first admission step after it (the ticker's), and the order every api instance computes, timed.
#[tokio::test]
async fn a_pre_queue_of_100000_opens_without_stalling() {
    const N: i64 = 100_000;
    let db = TestDb::new().await;
    let show = db.concert(10, 1000).await;
    let fan = db.user(0).await;
    sqlx::query(
        "INSERT INTO queue_entries (concert_id, seq, user_id, joined_at)
         SELECT $1, g, $2, now() FROM generate_series(1, $3) g",
    )
    .bind(show.concert_id)
    .bind(fan)
    .bind(N)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE waiting_rooms SET last_seq = $2, prequeue_upto = $2, opens_at = now() - interval '1 ms'
         WHERE concert_id = $1",
    )
    .bind(show.concert_id)
    .bind(N)
    .execute(&db.pool)
    .await
    .unwrap();

    let mut log = Log::default();
    let started = Instant::now();
    let replies = apply_batch(&db.ctx(), &[log.at(db.user(0).await, join(show))])
        .await
        .unwrap();
    let join_pause = started.elapsed();
    assert_eq!(result(&replies[0])["seq"], N + 1);
    let drawn = draw(&db.pool, show.concert_id).await.expect("drawn");
    assert_eq!(drawn.places, N);

    let started = Instant::now();
    let order = drawn.order();
    let order_time = started.elapsed();

    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let ticker = tokio::spawn(run(ticker_config(&db), shutdown));
    eventually("the first admission step", 30, || async {
        frontier(&db.pool, show.concert_id).await == 1000
    })
    .await;
    let first_step = started.elapsed();
    stop.send(true).unwrap();
    ticker.await.unwrap().unwrap();
    let first: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT seq, line_no FROM queue_entries WHERE concert_id = $1 AND line_no IS NOT NULL ORDER BY line_no LIMIT 1000",
    )
    .bind(show.concert_id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(first.len(), 1000);
    for (seq, line) in first {
        assert_eq!(Some(order.line(seq)), line);
    }
    println!(
        "pre-queue of {N}: join batch drawing at the opening {join_pause:?}; order computed (one process) in \
         {order_time:?}; first admission step of 1,000 within {first_step:?} of starting a ticker"
    );
    assert!(
        join_pause < Duration::from_secs(1),
        "the join partition paused {join_pause:?} at the opening"
    );
    db.drop_database().await;
}
