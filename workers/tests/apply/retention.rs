//! The retention role: rows older than the retention go, in batches, and everything still needed stays.
//! Rows are backdated in plain SQL; `prune_once` is what the role runs every round.

use std::time::Duration;

use concert_workers::{apply_batch, prune_once, Pruned, Retention};
use uuid::Uuid;

use crate::helpers::*;

/// A day, with batches of 2 so that every table here takes several statements.
fn retention() -> Retention {
    Retention {
        keep: Duration::from_secs(24 * 3600),
        interval: Duration::from_secs(1),
        batch: 2,
    }
}

async fn exec(db: &TestDb, sql: &str) {
    sqlx::query(sql).execute(&db.pool).await.unwrap();
}

async fn ids(db: &TestDb, sql: &str) -> Vec<String> {
    let mut ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(&db.pool).await.unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn decided_requests_keys_published_events_and_used_proofs_older_than_the_retention_go() {
    let db = TestDb::new().await;
    let user = db.user(0).await;
    let request = |name: &str, status: &str, age: &str| {
        format!(
            "INSERT INTO requests (request_id, user_id, kind, fingerprint, status, created_at)
             VALUES ('{}', '{user}', 'JOIN', '{name}', '{status}', now() - interval '{age}')",
            Uuid::new_v4()
        )
    };
    for (i, status) in ["SUCCEEDED", "FAILED", "REFUSED", "SUCCEEDED", "FAILED"]
        .iter()
        .enumerate()
    {
        exec(&db, &request(&format!("old{i}"), status, "25 hours")).await;
    }
    // A PENDING row is never pruned (it is only ever seen inside its own transaction, but if one stayed
    // it would be a command still to decide), nor are decided rows inside the retention.
    exec(&db, &request("old-pending", "PENDING", "30 hours")).await;
    exec(&db, &request("young", "SUCCEEDED", "23 hours")).await;
    exec(&db, &request("young-refused", "REFUSED", "1 minute")).await;
    for (i, age) in ["25 hours", "26 hours", "40 hours", "23 hours"]
        .iter()
        .enumerate()
    {
        exec(
            &db,
            &format!(
                "INSERT INTO idempotency_keys (request_id, user_id, fingerprint, created_at)
                 VALUES ('{}', '{user}', 'k{i}', now() - interval '{age}')",
                Uuid::new_v4()
            ),
        )
        .await;
        exec(
            &db,
            &format!(
                "INSERT INTO charge_keys (user_id, idem_key, amount, balance_after, created_at)
                 VALUES ('{user}', 'k{i}', 100, 100, now() - interval '{age}')"
            ),
        )
        .await;
    }
    let event = |key: &str, published: &str| {
        format!(
            "INSERT INTO outbox (event_id, event_type, event_key, payload, created_at, published_at)
             VALUES ('{}', 'payment.succeeded', '{key}', '{{}}', now() - interval '3 days', {published})",
            Uuid::new_v4()
        )
    };
    exec(&db, &event("old1", "now() - interval '25 hours'")).await;
    exec(&db, &event("old2", "now() - interval '48 hours'")).await;
    exec(&db, &event("old3", "now() - interval '30 hours'")).await;
    // Never published: it stays whatever its age, the relay still owes it.
    exec(&db, &event("unpublished", "NULL")).await;
    exec(&db, &event("young", "now() - interval '1 hour'")).await;
    let proof = |name: &str, expires: &str| {
        format!(
            "INSERT INTO queue_proofs_used (challenge, user_id, concert_id, expires_at)
             VALUES ('{name}', '{user}', '{}', {expires})",
            Uuid::new_v4()
        )
    };
    exec(&db, &proof("expired1", "now() - interval '2 minutes'")).await;
    exec(&db, &proof("expired2", "now() - interval '1 hour'")).await;
    exec(&db, &proof("expired3", "now() - interval '1 day'")).await;
    exec(&db, &proof("live", "now() + interval '2 minutes'")).await;

    // Two workers running the role at once, as several processes may: each row goes once, nothing fails.
    let r = retention();
    let (a, b) = tokio::join!(prune_once(&db.pool, &r), prune_once(&db.pool, &r));
    let (a, b) = (a.unwrap(), b.unwrap());
    let sum = |f: fn(&Pruned) -> u64| f(&a) + f(&b);
    assert_eq!(sum(|p| p.requests), 5, "{a:?} {b:?}");
    assert_eq!(sum(|p| p.idempotency_keys), 3);
    assert_eq!(sum(|p| p.charge_keys), 3);
    assert_eq!(sum(|p| p.outbox), 3);
    assert_eq!(sum(|p| p.queue_proofs_used), 3);

    assert_eq!(
        ids(&db, "SELECT fingerprint FROM requests").await,
        ["old-pending", "young", "young-refused"]
    );
    assert_eq!(
        ids(&db, "SELECT fingerprint FROM idempotency_keys").await,
        ["k3"]
    );
    assert_eq!(ids(&db, "SELECT idem_key FROM charge_keys").await, ["k3"]);
    assert_eq!(
        ids(&db, "SELECT event_key FROM outbox").await,
        ["unpublished", "young"]
    );
    assert_eq!(
        ids(&db, "SELECT challenge FROM queue_proofs_used").await,
        ["live"]
    );
    // Nothing left to do: the next round deletes nothing.
    assert_eq!(
        prune_once(&db.pool, &retention()).await.unwrap(),
        Pruned::default()
    );
    db.drop_database().await;
}

/// A room with six places: steps 1-2 (window closed three days ago), 3-4 (window still open), and 5 (a
/// shorter window, closed three days ago: the admin shortened `active_seconds`), and 6 waiting.
async fn room_with_history(db: &TestDb) -> (Show, Vec<Uuid>) {
    let show = db.concert(10, 5).await;
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(db.user(0).await);
    }
    for (i, user) in users.iter().enumerate() {
        let seq = i as i64 + 1;
        sqlx::query(
            "INSERT INTO queue_entries (concert_id, seq, line_no, user_id, joined_at)
             VALUES ($1, $2, $2, $3, now() - interval '4 days')",
        )
        .bind(show.concert_id)
        .bind(seq)
        .bind(user)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let c = show.concert_id;
    exec(
        db,
        &format!(
            "UPDATE waiting_rooms SET last_seq = 6, admitted_upto = 5 WHERE concert_id = '{c}'"
        ),
    )
    .await;
    let step = |from: i64, upto: i64, until: &str| {
        format!(
            "INSERT INTO admissions (concert_id, from_seq, upto_seq, admitted_at, active_until, claim_until,
                                     claims_settled)
             VALUES ('{c}', {from}, {upto}, now() - interval '4 days', {until}, now() - interval '4 days', true)"
        )
    };
    exec(db, &step(1, 2, "now() - interval '3 days'")).await;
    exec(db, &step(3, 4, "now() + interval '1 hour'")).await;
    exec(db, &step(5, 5, "now() - interval '3 days'")).await;
    // 1 paid, 2 never claimed.
    exec(
        db,
        &format!(
            "UPDATE queue_entries SET completed_at = now() - interval '4 days' WHERE concert_id = '{c}' AND seq = 1"
        ),
    )
    .await;
    exec(
        db,
        &format!(
            "UPDATE queue_entries SET ended_at = now() - interval '4 days' WHERE concert_id = '{c}' AND seq = 2"
        ),
    )
    .await;
    (show, users)
}

#[tokio::test]
async fn places_and_steps_go_up_to_the_first_step_still_inside_the_retention() {
    let db = TestDb::new().await;
    let (show, users) = room_with_history(&db).await;
    let c = show.concert_id;

    let pruned = prune_once(&db.pool, &retention()).await.unwrap();
    assert_eq!((pruned.queue_entries, pruned.admissions), (2, 1));
    let pruned_upto: i64 = sqlx::query_scalar(&format!(
        "SELECT pruned_upto FROM waiting_rooms WHERE concert_id = '{c}'"
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        pruned_upto, 2,
        "step 5 closed long ago, but step 3-4 is still open"
    );
    assert_eq!(
        ids(&db, "SELECT seq::text FROM queue_entries").await,
        ["3", "4", "5", "6"]
    );
    assert_eq!(
        ids(&db, "SELECT upto_seq::text FROM admissions").await,
        ["4", "5"]
    );

    // Once step 3-4 has been closed a day, everything up to 5 goes; 6 (waiting) stays.
    exec(
        &db,
        &format!("UPDATE admissions SET active_until = now() - interval '25 hours' WHERE concert_id = '{c}' AND upto_seq = 4"),
    )
    .await;
    let pruned = prune_once(&db.pool, &retention()).await.unwrap();
    assert_eq!((pruned.queue_entries, pruned.admissions), (3, 2));
    assert_eq!(ids(&db, "SELECT seq::text FROM queue_entries").await, ["6"]);

    // A join by the owner of a pruned place gets a new place; the waiting one keeps its own.
    let mut log = Log::default();
    let replies = apply_batch(
        &db.ctx(),
        &[log.at(users[0], join(show)), log.at(users[5], join(show))],
    )
    .await
    .unwrap();
    let seqs: Vec<i64> = replies
        .iter()
        .map(|r| result(r)["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [7, 6]);
    db.drop_database().await;
}

#[tokio::test]
async fn a_room_nobody_was_admitted_to_keeps_every_place() {
    let db = TestDb::new().await;
    let show = db.concert(10, 5).await;
    let mut log = Log::default();
    let mut joins = Vec::new();
    for _ in 0..3 {
        joins.push(log.at(db.user(0).await, join(show)));
    }
    apply_batch(&db.ctx(), &joins).await.unwrap();
    exec(
        &db,
        "UPDATE queue_entries SET joined_at = now() - interval '10 days'",
    )
    .await;
    let pruned = prune_once(&db.pool, &retention()).await.unwrap();
    assert_eq!(pruned.queue_entries, 0);
    assert_eq!(db.count("queue_entries").await, 3);
    db.drop_database().await;
}
