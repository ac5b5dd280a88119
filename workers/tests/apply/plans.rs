//! The seat statements of a batch keep probing the primary key after the catalog grows, whatever the
//! planner statistics say. Regression test for the 20-second stalls of issue 7: a generic plan cached
//! while `seats` was small (a nested loop over a sequential scan) stayed in use after a 100,000-seat
//! concert was created, with autovacuum off, and every batch then read every seat once per hold.
//!
//! This checks plans, not time: no prepared statement on a worker connection runs a generic plan, and the
//! seat update's plan on that same connection uses the primary key.

use concert_workers::{apply_batch, ApplyContext};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{hold, join, pay, release, result, uuid_of, Log, TestDb};

/// A pool of one connection with the services' session settings, and an apply context on it: every batch
/// runs in the same session.
async fn one_connection(db: &TestDb) -> (PgPool, ApplyContext) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options())
        .await
        .expect("connect");
    let ctx = ApplyContext::new(pool.clone(), 4);
    (pool, ctx)
}

#[tokio::test]
async fn batch_plans_stay_on_the_index_after_the_catalog_grows_without_analyze() {
    let db = TestDb::new().await;
    // One connection, so every batch reuses its prepared statements and their cached plans.
    let (pool, ctx) = one_connection(&db).await;
    let show = db.concert(50, 100).await;
    let mut log = Log::default();

    // Enough executions while `seats` holds 50 rows for PostgreSQL to consider a generic plan.
    for seat_no in 1..=12 {
        let user = db.user(0).await;
        apply_batch(&ctx, &[log.at(user, hold(show, seat_no))])
            .await
            .expect("apply");
    }
    // A 100,000-seat concert arrives; nobody runs ANALYZE.
    sqlx::query(
        "WITH c AS (INSERT INTO concerts (concert_id, title, venue) VALUES ($1, 'Big', 'Stadium')
                    RETURNING concert_id),
              d AS (INSERT INTO concert_dates (date_id, concert_id, starts_at, total_seats)
                    SELECT gen_random_uuid(), c.concert_id, now() + interval '30 days', 50
                    FROM c, generate_series(1, 2000)
                    RETURNING date_id)
         INSERT INTO seats (date_id, seat_no, price) SELECT d.date_id, n, 1000 FROM d, generate_series(1, 50) n",
    )
    .bind(Uuid::new_v4())
    .execute(&db.pool)
    .await
    .expect("create the big concert");
    let user = db.user(0).await;
    apply_batch(&ctx, &[log.at(user, hold(show, 13))])
        .await
        .expect("apply");

    let mut conn = pool.acquire().await.expect("the worker's connection");
    let prepared: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT name, statement, generic_plans FROM pg_prepared_statements WHERE statement ILIKE '%seats%'
           AND statement NOT ILIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("list prepared statements");
    assert!(
        prepared.len() >= 2,
        "the batch's seat statements are prepared on this connection: {prepared:?}"
    );
    for (_, statement, generic_plans) in &prepared {
        assert_eq!(
            *generic_plans, 0,
            "a generic plan was used for: {statement}"
        );
    }
    let (name, _, _) = prepared
        .iter()
        .find(|(_, statement, _)| statement.contains("UPDATE seats s SET hold_id"))
        .expect("the seat update is prepared");
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN EXECUTE {name}(ARRAY['{date}']::uuid[], ARRAY[14], ARRAY[gen_random_uuid()],
                                ARRAY[gen_random_uuid()], ARRAY[now()])",
        date = show.date_id
    ))
    .fetch_all(&mut *conn)
    .await
    .expect("explain the seat update");
    let plan = plan.join("\n");
    assert!(
        plan.contains("seats_pkey"),
        "probes the primary key:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on seats"),
        "never scans all seats:\n{plan}"
    );
    drop(conn);
    pool.close().await;
    db.drop_database().await;
}

/// Rows read per command, whatever the planner knows: the tables fill up the way an on-sale fills them
/// (2,000 places, 2,000 holds, 4,000 requests, 5,000 seats) and nobody runs ANALYZE, so every
/// estimate is a guess. Then a batch of each kind is applied and the server's own counters say how many
/// rows each table gave up (sequential and index reads alike). A statement keyed by its batch reads a
/// handful per command; the plans the guessing planner made without `SESSION_SETTINGS`' plan shapes (a
/// scan of every live place, or of every live hold, once per key) read thousands.
///
/// Counters, not timings: the figure is the same on a loaded machine.
#[tokio::test]
async fn batches_read_a_handful_of_rows_per_command_from_tables_never_analyzed() {
    rows_read_per_command_after(2_000).await;
}

/// The same early in an on-sale. With a few hundred rows and no statistics the planner costs the smaller
/// index below the exact one: the deadline index (every live hold) for a user's live-hold count, the
/// primary key (every place of the concert) for a user's live place; each command of a batch then read
/// them all. Both statements are now written so that only the exact index can serve them.
#[tokio::test]
async fn batches_read_a_handful_of_rows_per_command_early_in_an_on_sale() {
    rows_read_per_command_after(400).await;
}

/// Fills the tables with `crowd_count` places and holds (and twice as many requests) without ANALYZE, then
/// applies a batch of each kind and checks the rows each table gave up.
async fn rows_read_per_command_after(crowd_count: usize) {
    const MEASURED: usize = 20;
    let db = TestDb::new().await;
    // One connection, so the counters can be flushed from the session that did the work.
    let (pool, ctx) = one_connection(&db).await;
    let show = db.concert(5_000, 100_000).await;
    let users: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (user_id, name, balance)
         SELECT gen_random_uuid(), 'fan', 1000000000 FROM generate_series(1, $1) RETURNING user_id",
    )
    .bind((crowd_count + MEASURED) as i32)
    .fetch_all(&db.pool)
    .await
    .expect("sign up the crowd");
    let (crowd, newcomers) = users.split_at(crowd_count);
    let mut log = Log::default();

    // The on-sale: everyone joins, then everyone holds a seat, in batches as the consumer applies them.
    let mut seqs = Vec::with_capacity(crowd_count);
    let mut holds = Vec::with_capacity(crowd_count);
    for chunk in crowd.chunks(250) {
        let batch: Vec<_> = chunk.iter().map(|u| log.at(*u, join(show))).collect();
        for reply in apply_batch(&ctx, &batch).await.expect("joins") {
            seqs.push(result(&reply)["seq"].as_i64().expect("a place"));
        }
    }
    for (k, chunk) in crowd.chunks(250).enumerate() {
        let batch: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, u)| log.at(*u, hold(show, (k * 250 + i + 1) as i32)))
            .collect();
        for reply in apply_batch(&ctx, &batch).await.expect("holds") {
            holds.push(uuid_of(result(&reply), "hold_id"));
        }
    }

    // What the filling counted leaves every session first (the setup's too: a session flushes its
    // counters when it next goes idle, at most once a second, so one of them could otherwise land after
    // the reset: the 5,000 seat inserts' key checks once showed up as 5,002 reads of concert_dates), then
    // the server's counters start from zero.
    flush_every_session(&db.pool).await;
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .expect("flush the counters");
    sqlx::query("SELECT pg_stat_reset()")
        .execute(&pool)
        .await
        .expect("reset the counters");
    let measured = [
        newcomers
            .iter()
            .map(|u| log.at(*u, join(show)))
            .collect::<Vec<_>>(),
        (0..MEASURED)
            .map(|i| log.at(crowd[i], hold(show, (crowd_count + i + 1) as i32)))
            .collect(),
        (MEASURED..2 * MEASURED)
            .map(|i| log.at(crowd[i], release(show, holds[i])))
            .collect(),
        (2 * MEASURED..3 * MEASURED)
            .map(|i| log.at(crowd[i], pay(show, holds[i], seqs[i])))
            .collect(),
    ];
    for batch in &measured {
        for reply in apply_batch(&ctx, batch).await.expect("apply") {
            result(&reply);
        }
    }
    // The session's counters reach the server's statistics when it next goes idle.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .expect("flush the counters");
    let read: Vec<(String, i64)> = sqlx::query_as(
        "SELECT t.relname::text,
                (coalesce(t.seq_tup_read, 0) + coalesce(sum(i.idx_tup_read), 0))::bigint
         FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid
         GROUP BY t.relid, t.relname, t.seq_tup_read ORDER BY t.relname",
    )
    .fetch_all(&db.pool)
    .await
    .expect("read the counters");
    let commands = (4 * MEASURED) as i64;
    for (table, rows) in &read {
        assert!(
            *rows <= 10 * commands,
            "{commands} commands read {rows} rows of {table}; every table: {read:?}"
        );
    }
    assert!(
        read.iter()
            .any(|(table, rows)| table == "holds" && *rows > 0),
        "the counters were flushed: {read:?}"
    );
    pool.close().await;
    db.drop_database().await;
}

/// Makes every open session of `pool` flush the statistics it holds: it takes all of them at once and asks
/// each for a flush, which the session does as it goes idle after the request, before answering.
async fn flush_every_session(pool: &PgPool) {
    let mut sessions = Vec::new();
    for _ in 0..pool.size() {
        sessions.push(pool.acquire().await.expect("a session of the pool"));
    }
    for session in &mut sessions {
        sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(&mut **session)
            .await
            .expect("flush the counters");
    }
}
