//! Claims racing the tickers: many users claiming, abandoning and claiming right at the deadline at once,
//! through two api instances, with three admission tickers. Asserts invariants, never timings.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_tests::{wait_until, Api, Deadline, TestStack};
use concert_workers::Roles;
use rand::Rng;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const CROWD: usize = 30;
const MAX_ACTIVE: i64 = 8;
const CLAIM_SECONDS: i64 = 5;
const ACTIVE_SECONDS: i64 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Polls until admitted (claims at once).
    Claimer,
    /// Never comes back.
    Ghost,
    /// Comes back for the first time right around the claim deadline.
    Racer,
}

#[derive(Debug, sqlx::FromRow)]
struct Step {
    from_seq: i64,
    upto_seq: i64,
    admitted_at: DateTime<Utc>,
    active_until: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
struct Entry {
    seq: i64,
    claimed_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

async fn admitted_at(db: &PgPool, concert_id: Uuid, seq: i64) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT admitted_at FROM admissions WHERE concert_id = $1 AND $2 BETWEEN from_seq AND upto_seq",
    )
    .bind(concert_id)
    .bind(seq)
    .fetch_optional(db)
    .await
    .expect("admissions")
}

/// One user's part: join, then behave as `kind` says.
async fn fan(
    api: &Api,
    db: &PgPool,
    stack_seq: impl Fn(&str) -> i64,
    user: concert_tests::User,
    concert_id: Uuid,
    kind: Kind,
) -> (i64, String) {
    let token = api.join(&user, concert_id).await.queue_token;
    let seq = stack_seq(&token);
    match kind {
        Kind::Claimer => {
            api.wait_until_active(&token, Deadline::secs(90)).await;
        }
        Kind::Ghost => {}
        Kind::Racer => {
            let admitted = wait_until(
                "admitted",
                Deadline::secs(90),
                Duration::from_millis(50),
                || async { admitted_at(db, concert_id, seq).await },
            )
            .await;
            let jitter = rand::thread_rng().gen_range(-400..400);
            let at = admitted + chrono::Duration::milliseconds(CLAIM_SECONDS * 1000 + jitter);
            tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
            api.queue_status(&token).await.expect(200);
        }
    }
    (seq, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_abandons_with_several_tickers_keep_admission_contiguous_and_in_order() {
    let ticker_only = Roles {
        consumer: false,
        ticker: true,
        sweeper: false,
        relay: false,
        retention: false,
    };
    let stack = TestStack::builder()
        .apis(2)
        .workers(1)
        .worker_with(ticker_only)
        .worker_with(ticker_only)
        .start()
        .await;
    let api = &stack.apis()[0];
    let concert = api.create_concert(1, 1000).await;
    let policy = json!({ "max_active_users": MAX_ACTIVE, "active_seconds": ACTIVE_SECONDS,
                         "hold_seconds": 60, "claim_seconds": CLAIM_SECONDS });
    api.set_policy(concert.concert_id, &policy).await;
    let users = api.sign_up_many("fan", CROWD).await;
    let kinds: Vec<Kind> = (0..CROWD)
        .map(|i| [Kind::Claimer, Kind::Ghost, Kind::Racer][i % 3])
        .collect();
    let db = stack.db().clone();
    let fans = users.into_iter().enumerate().map(|(i, user)| {
        let api = &stack.apis()[i % 2];
        let (db, env) = (db.clone(), &stack.env);
        let kind = kinds[i];
        async move {
            let (seq, token) = fan(
                api,
                &db,
                |t| env.queue_seq(t),
                user,
                concert.concert_id,
                kind,
            )
            .await;
            (seq, (kind, token))
        }
    });
    let places: HashMap<i64, (Kind, String)> =
        futures::future::join_all(fans).await.into_iter().collect();

    // Everyone gets admitted in the end: ghosts and late racers free their slots, claimers' windows end.
    wait_until(
        "everyone admitted and every claim deadline settled",
        Deadline::secs(120),
        Duration::from_millis(250),
        || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT (SELECT last_seq - admitted_upto FROM waiting_rooms WHERE concert_id = $1)
                      + (SELECT count(*) FROM admissions WHERE concert_id = $1 AND NOT claims_settled)",
            )
            .bind(concert.concert_id)
            .fetch_one(&db)
            .await
            .expect("room");
            (open == 0).then_some(())
        },
    )
    .await;

    let steps: Vec<Step> = sqlx::query_as(
        "SELECT from_seq, upto_seq, admitted_at, active_until FROM admissions WHERE concert_id = $1 ORDER BY from_seq",
    )
    .bind(concert.concert_id)
    .fetch_all(&db)
    .await
    .expect("steps");
    let entries: Vec<Entry> = sqlx::query_as(
        "SELECT seq, claimed_at, ended_at FROM queue_entries WHERE concert_id = $1 ORDER BY seq",
    )
    .bind(concert.concert_id)
    .fetch_all(&db)
    .await
    .expect("entries");

    // Admission is contiguous from 1, covers everyone once, in seq (= log) order.
    let mut next = 1;
    for step in &steps {
        assert_eq!(step.from_seq, next, "contiguous steps: {steps:?}");
        next = step.upto_seq + 1;
    }
    assert_eq!(next - 1, CROWD as i64, "everyone admitted exactly once");
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].admitted_at <= w[1].admitted_at),
        "admitted in seq order: {steps:?}"
    );

    // Every place was either claimed or ended for want of a claim, never both, and as its user behaved.
    let mut ended_count = 0;
    for entry in &entries {
        let (kind, _) = &places[&entry.seq];
        assert!(
            entry.claimed_at.is_some() != entry.ended_at.is_some(),
            "claimed xor ended: {entry:?}"
        );
        match kind {
            Kind::Claimer => assert!(entry.claimed_at.is_some(), "{entry:?}"),
            Kind::Ghost => assert!(entry.ended_at.is_some(), "{entry:?}"),
            Kind::Racer => {}
        }
        ended_count += i64::from(entry.ended_at.is_some());
    }
    let room = api.room(concert.concert_id).await;
    assert_eq!(room["abandoned_total"], ended_count, "{room}");

    // At no admission instant were more than MAX_ACTIVE places holding a slot; a slot is held from
    // admission until the place ended (ghosts) or its window closed.
    let ends: HashMap<i64, DateTime<Utc>> = entries
        .iter()
        .map(|e| {
            let step = steps
                .iter()
                .find(|s| (s.from_seq..=s.upto_seq).contains(&e.seq))
                .expect("admitted");
            (e.seq, e.ended_at.unwrap_or(step.active_until))
        })
        .collect();
    for step in &steps {
        let t = step.admitted_at;
        let holding = steps
            .iter()
            .filter(|s| s.admitted_at <= t)
            .flat_map(|s| s.from_seq..=s.upto_seq)
            .filter(|seq| ends[seq] > t)
            .count() as i64;
        assert!(
            holding <= MAX_ACTIVE,
            "{holding} slots held at {t}, over {MAX_ACTIVE}: {steps:?} {entries:?}"
        );
    }

    // Both api instances tell every user what the database says.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for entry in &entries {
        let (_, token) = &places[&entry.seq];
        for instance in stack.apis() {
            let status = instance.queue_status(token).await.expect(200).clone();
            if entry.ended_at.is_some() {
                assert_eq!(
                    (status["status"].as_str(), status["reason"].as_str()),
                    (Some("EXPIRED"), Some("NOT_CLAIMED")),
                    "{entry:?}: {status}"
                );
            } else {
                assert!(
                    status["status"] == "ACTIVE" || status["reason"] == "WINDOW_ENDED",
                    "a claimed place keeps its window: {entry:?}: {status}"
                );
            }
        }
    }
}
