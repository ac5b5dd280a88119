//! The api's statements read a handful of rows per key whatever the planner's statistics say (the workers'
//! batch statements have the same test in `workers/tests/apply/plans.rs`).
//!
//! Regression test for issue 17: in one `./dev bench` run the claim writer's statement ran into the 15 s
//! statement timeout every time from round 2 on, with PostgreSQL at a full core. The statistics had been
//! taken when every place of the table was claimed, so the planner believed that no place is unclaimed,
//! put the "unclaimed places" side of the join outside, and compared every unclaimed place (the next
//! round's whole crowd) with every claim of the batch: for 2,000 claims over 22,000 places, 40 million
//! comparisons and 20 s. Here the statistics are made just as unlucky on purpose, then such a batch of
//! claims is written and the server's own counters say how many rows `queue_entries` gave up: two probes
//! a claim (lock, then update) with the statement as written, every place once more with the inside-out
//! plan. Counters, not timings: the figure is the same on a loaded machine.

use chrono::Utc;
use concert_api::db::rooms::write_claims;
use concert_api::rooms::claim::Claim;
use concert_tests::TestEnv;
use sqlx::PgPool;
use uuid::Uuid;

/// Places claimed when the statistics are taken, places that join after, claims written.
const CLAIMED_BEFORE: i64 = 2_000;
const JOINED_AFTER: i64 = 20_000;
const CLAIMS: i64 = 2_000;

#[tokio::test]
async fn the_claim_writer_probes_each_place_after_statistics_that_saw_no_unclaimed_place() {
    let env = TestEnv::new().await;
    let concert_id = Uuid::new_v4();
    let user_id = Uuid::new_v4();
    // The service's own session settings, one connection that also fills the tables, so that every
    // counter of the filling is flushed before the reset by the one session that did it all.
    let pool = concert_core::db::pool(&env.settings.database_url, 1).expect("pool");
    fill(&pool, concert_id, user_id).await;
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .expect("flush");
    sqlx::query("SELECT pg_stat_reset()")
        .execute(&pool)
        .await
        .expect("reset the counters");

    // Claims for places spread over the crowd that joined after the statistics, in no particular order.
    let at = Utc::now();
    let claims: Vec<Claim> = (0..CLAIMS)
        .map(|k| Claim {
            concert_id,
            seq: CLAIMED_BEFORE + 1 + (k * 7_919) % JOINED_AFTER,
            at,
        })
        .collect();
    let written = write_claims(&pool, &claims).await.expect("write claims");
    assert_eq!(written, CLAIMS as u64, "every claim landed");

    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .expect("flush");
    let (seq_read, idx_read): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(t.seq_tup_read, 0)::bigint,
                coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes i WHERE i.relid = t.relid), 0)::bigint
         FROM pg_stat_user_tables t WHERE t.relname = 'queue_entries'",
    )
    .fetch_one(&env.db)
    .await
    .expect("read the counters");
    assert!(
        idx_read > 0,
        "the counters were flushed (sequential {seq_read}, index {idx_read})"
    );
    let per_claim = (seq_read + idx_read) as f64 / CLAIMS as f64;
    assert!(
        per_claim <= 3.0,
        "{CLAIMS} claims read {seq_read} rows sequentially and {idx_read} through indexes of \
         queue_entries ({per_claim:.1} a claim) out of {} places",
        CLAIMED_BEFORE + JOINED_AFTER
    );
    pool.close().await;
}

/// A room whose first `CLAIMED_BEFORE` places are all claimed when ANALYZE runs, and `JOINED_AFTER` more
/// places, none claimed, added after it.
async fn fill(db: &PgPool, concert_id: Uuid, user_id: Uuid) {
    sqlx::query("INSERT INTO users (user_id, name) VALUES ($1, 'crowd')")
        .bind(user_id)
        .execute(db)
        .await
        .expect("user");
    sqlx::query("INSERT INTO concerts (concert_id, title, venue) VALUES ($1, 'Big', 'Stadium')")
        .bind(concert_id)
        .execute(db)
        .await
        .expect("concert");
    sqlx::query(
        "INSERT INTO waiting_rooms (concert_id, max_active_users, active_seconds, hold_seconds, last_seq)
         VALUES ($1, 100000, 600, 300, $2)",
    )
    .bind(concert_id)
    .bind(CLAIMED_BEFORE + JOINED_AFTER)
    .execute(db)
    .await
    .expect("room");
    sqlx::query(
        "INSERT INTO queue_entries (concert_id, seq, user_id, claimed_at)
         SELECT $1, n, $2, now() FROM generate_series(1, $3::bigint) n",
    )
    .bind(concert_id)
    .bind(user_id)
    .bind(CLAIMED_BEFORE)
    .execute(db)
    .await
    .expect("claimed places");
    sqlx::query("ANALYZE queue_entries")
        .execute(db)
        .await
        .expect("analyze");
    sqlx::query(
        "INSERT INTO queue_entries (concert_id, seq, user_id)
         SELECT $1, n, $2 FROM generate_series($3::bigint + 1, $3::bigint + $4::bigint) n",
    )
    .bind(concert_id)
    .bind(user_id)
    .bind(CLAIMED_BEFORE)
    .bind(JOINED_AFTER)
    .execute(db)
    .await
    .expect("places that joined after");
}
