//! The seat statements of a batch keep probing the primary key after the catalog grows, whatever the
//! planner statistics say. Regression test for the 20-second stalls of issue 7: a generic plan cached
//! while `seats` was small (a nested loop over a sequential scan) stayed in use after a 100,000-seat
//! concert was created, with autovacuum off, and every batch then read every seat once per hold.
//!
//! This checks plans, not time: no prepared statement on a worker connection runs a generic plan, and the
//! seat update's plan on that same connection uses the primary key.

use concert_workers::{apply_batch, ApplyContext};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::helpers::{hold, Log, TestDb};

#[tokio::test]
async fn batch_plans_stay_on_the_index_after_the_catalog_grows_without_analyze() {
    let db = TestDb::new().await;
    // One connection, so every batch reuses its prepared statements and their cached plans.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options())
        .await
        .expect("connect");
    let ctx = ApplyContext::new(pool.clone(), 4);
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
