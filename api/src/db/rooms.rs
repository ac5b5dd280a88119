//! Reads for the waiting-room cache and the admin figures.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_core::admission::{Admission, Draw, Policy};
use sqlx::PgPool;
use uuid::Uuid;

use crate::rooms::claim::Claim;

pub struct RoomRow {
    pub concert_id: Uuid,
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
    pub abandoned_total: i64,
    /// Every place up to this line number ended more than the retention ago and is pruned (or about to
    /// be): it reads EXPIRED without being held (`workers/src/retention.rs`).
    pub pruned_upto: i64,
}

/// Where the incremental refresh stands.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    /// The previous read's snapshot xmin: every transaction below it had finished when that snapshot
    /// was taken, so its changes were read then. `None` before the first read.
    pub xmin: Option<i64>,
    /// Successful refreshes so far.
    pub refreshes: u64,
}

/// A place whose claim, completion or end was recorded since the cursor.
#[derive(Debug, Clone, Copy)]
pub struct PlaceChange {
    pub concert_id: Uuid,
    pub seq: i64,
    pub claimed: bool,
    pub completed: bool,
    pub ended: bool,
}

/// A room's pre-queue and proof-of-work settings and its draw (issue 20), read apart from the policy.
/// A room absent from [`Changes::openings`] has none of them: no `opens_at`, no draw, no proof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opening {
    pub opens_at: Option<DateTime<Utc>>,
    /// Places 1..=prequeue_upto joined before the opening.
    pub prequeue_upto: i64,
    pub drawn_at: Option<DateTime<Utc>>,
    pub draw: Option<Draw>,
    pub join_proof_bits: i32,
}

impl Opening {
    /// Still waiting for its draw: a place beyond the frontier has no position yet.
    pub fn pre_queuing(&self) -> bool {
        self.draw.is_none() && (self.opens_at.is_some() || self.prequeue_upto > 0)
    }
}

struct OpeningRecord {
    concert_id: Uuid,
    opens_at: Option<DateTime<Utc>>,
    prequeue_upto: i64,
    drawn_at: Option<DateTime<Utc>>,
    draw_seed: Option<Vec<u8>>,
    draw_places: Option<i64>,
    join_proof_bits: i32,
}

impl From<OpeningRecord> for (Uuid, Opening) {
    fn from(r: OpeningRecord) -> Self {
        let draw = match (r.draw_seed, r.draw_places) {
            (Some(seed), Some(places)) => Draw::from_parts(&seed, places),
            _ => None,
        };
        let opening = Opening {
            opens_at: r.opens_at,
            prequeue_upto: r.prequeue_upto,
            drawn_at: r.drawn_at,
            draw,
            join_proof_bits: r.join_proof_bits,
        };
        (r.concert_id, opening)
    }
}

pub struct Changes {
    pub now: DateTime<Utc>,
    pub rooms: Vec<RoomRow>,
    /// The rooms with a pre-queue, a draw or a proof of work (from the same snapshot as `rooms`).
    pub openings: HashMap<Uuid, Opening>,
    pub admissions: Vec<(Uuid, Admission)>,
    pub places: Vec<PlaceChange>,
    pub cursor: Cursor,
}

/// A `waiting_rooms` row as selected (the same columns in `read_changes` and `room`), before its policy
/// columns are gathered into a `Policy`.
struct RoomRecord {
    concert_id: Uuid,
    max_active_users: Option<i32>,
    admit_per_interval: Option<i32>,
    interval_seconds: Option<i32>,
    active_seconds: i32,
    hold_seconds: i32,
    claim_seconds: i32,
    last_seq: i64,
    admitted_upto: i64,
    next_admit_at: Option<DateTime<Utc>>,
    abandoned_total: i64,
    pruned_upto: i64,
}

impl From<RoomRecord> for RoomRow {
    fn from(r: RoomRecord) -> Self {
        RoomRow {
            concert_id: r.concert_id,
            policy: Policy {
                max_active_users: r.max_active_users,
                admit_per_interval: r.admit_per_interval,
                interval_seconds: r.interval_seconds,
                active_seconds: r.active_seconds,
                hold_seconds: r.hold_seconds,
                claim_seconds: r.claim_seconds,
            },
            last_seq: r.last_seq,
            admitted_upto: r.admitted_upto,
            next_admit_at: r.next_admit_at,
            abandoned_total: r.abandoned_total,
            pruned_upto: r.pruned_upto,
        }
    }
}

/// Every room; the admission steps beyond the frontier the cache knows (`known`: concert to cached
/// `admitted_upto`; all open steps of a room it does not know); and the places claimed, completed or
/// ended by transactions the previous read may not have seen. All from one snapshot.
///
/// Neither read depends on when a transaction started: a step is found by its seqs (the frontier moves in
/// the step's own transaction, so a snapshot that shows the frontier shows the step), and a place change
/// carries its transaction id (`change_xid`, set by a trigger), read again until the snapshot xmin passes
/// it. A transaction that commits late is therefore never missed.
pub async fn read_changes(
    pool: &PgPool,
    cursor: &Cursor,
    known: &HashMap<Uuid, i64>,
) -> Result<Changes, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let snapshot = sqlx::query!(
        r#"SELECT now() AS "now!", pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "xmin!""#
    )
    .fetch_one(&mut *tx)
    .await?;
    let (now, xmin) = (snapshot.now, snapshot.xmin);
    let rooms: Vec<RoomRow> = sqlx::query_as!(
        RoomRecord,
        "SELECT concert_id, max_active_users, admit_per_interval, interval_seconds, active_seconds, \
         hold_seconds, claim_seconds, last_seq, admitted_upto, next_admit_at, abandoned_total, pruned_upto \
         FROM waiting_rooms"
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(RoomRow::from)
    .collect();
    let openings: HashMap<Uuid, Opening> = sqlx::query_as!(
        OpeningRecord,
        "SELECT concert_id, opens_at, prequeue_upto, drawn_at, draw_seed, draw_places, join_proof_bits
         FROM waiting_rooms
         WHERE opens_at IS NOT NULL OR prequeue_upto > 0 OR drawn_at IS NOT NULL OR join_proof_bits > 0"
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(<(Uuid, Opening)>::from)
    .collect();
    // Only the rooms whose frontier moved past what the cache holds.
    let (ids, uptos): (Vec<Uuid>, Vec<i64>) = rooms
        .iter()
        .filter_map(|r| {
            let cached = known.get(&r.concert_id).copied();
            (cached.is_none() || cached < Some(r.admitted_upto))
                .then(|| (r.concert_id, cached.unwrap_or(0)))
        })
        .unzip();
    let admissions = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query!(
            r#"SELECT k.concert_id AS "concert_id!", a.from_seq, a.upto_seq, a.admitted_at, a.active_until, a.claim_until
             FROM unnest($1::uuid[], $2::bigint[]) k(concert_id, upto)
             CROSS JOIN LATERAL (
                 SELECT * FROM admissions a
                 WHERE a.concert_id = k.concert_id AND a.upto_seq > k.upto AND a.active_until > now()) a"#,
            &ids,
            &uptos,
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| {
            (
                r.concert_id,
                Admission {
                    from_seq: r.from_seq,
                    upto_seq: r.upto_seq,
                    admitted_at: r.admitted_at,
                    active_until: r.active_until,
                    claim_until: r.claim_until,
                },
            )
        })
        .collect()
    };
    // Two statements rather than one with a CASE, so the incremental read always uses the index.
    let places: Vec<PlaceChange> = match cursor.xmin {
        Some(xmin) => {
            sqlx::query_as!(
                PlaceChange,
                r#"SELECT concert_id, seq, claimed_at IS NOT NULL AS "claimed!",
                    completed_at IS NOT NULL AS "completed!", ended_at IS NOT NULL AS "ended!"
                 FROM queue_entries WHERE change_xid >= $1::bigint::text::xid8"#,
                xmin,
            )
            .fetch_all(&mut *tx)
            .await?
        }
        // First read: every completed or ended place the retention has not pruned yet (nothing at or below
        // its room's `pruned_upto`: those read EXPIRED without being held), and the claims that can still
        // matter (no window is longer than MAX_SECONDS).
        None => {
            sqlx::query_as!(
                PlaceChange,
                r#"SELECT concert_id, seq, claimed_at IS NOT NULL AS "claimed!",
                    completed_at IS NOT NULL AS "completed!", ended_at IS NOT NULL AS "ended!"
                 FROM queue_entries q
                 WHERE change_xid IS NOT NULL
                   AND (completed_at IS NOT NULL OR ended_at IS NOT NULL
                        OR claimed_at > now() - make_interval(secs => $1))
                   AND NOT EXISTS (SELECT 1 FROM waiting_rooms r
                                   WHERE r.concert_id = q.concert_id AND q.line_no <= r.pruned_upto)"#,
                f64::from(concert_core::admission::MAX_SECONDS),
            )
            .fetch_all(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok(Changes {
        now,
        rooms,
        openings,
        admissions,
        places,
        cursor: Cursor {
            xmin: Some(xmin),
            refreshes: cursor.refreshes + 1,
        },
    })
}

/// Most claims one statement writes: the claim writer sends what it holds in statements of at most this
/// many, so one statement's work stays bounded however many claims piled up while the database was slow.
pub const MAX_CLAIMS_PER_STATEMENT: usize = 1_000;

/// Writes a batch of claims in one statement: each place's first use, if it is neither claimed nor
/// ended already. Rows are locked in (concert, seq) order (the claims are sorted, the probes follow the
/// array), the order the ticker ends places in, so the two never deadlock; a place the ticker ended first
/// keeps its end (the claim came too late to land).
///
/// One probe of the primary key per claim, by construction: each place is found by a LATERAL subquery
/// keyed by its claim, which also locks it (a subquery with FOR UPDATE is never flattened), so the claims
/// are always the outer side. Written as a plain join, it was turned inside out: with statistics taken
/// while every place was claimed, the planner expected no unclaimed place, read the unclaimed ones as the
/// outer side and compared each with every claim of the batch. 2,000 claims over 22,000 places took 20 s
/// that way (40 million comparisons) instead of 65 ms, past the statement timeout, every time
/// (`tests/tests/it/plans.rs`).
pub async fn write_claims(pool: &PgPool, claims: &[Claim]) -> Result<u64, sqlx::Error> {
    let mut claims = claims.to_vec();
    claims.sort_by_key(|c| (c.concert_id, c.seq));
    claims.dedup_by_key(|c| (c.concert_id, c.seq));
    let concerts: Vec<Uuid> = claims.iter().map(|c| c.concert_id).collect();
    let seqs: Vec<i64> = claims.iter().map(|c| c.seq).collect();
    let ats: Vec<DateTime<Utc>> = claims.iter().map(|c| c.at).collect();
    let done = sqlx::query!(
        "WITH target AS MATERIALIZED (
             SELECT p.concert_id, p.seq, c.at
             FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) AS c(concert_id, seq, at)
             CROSS JOIN LATERAL (
                 SELECT q.concert_id, q.seq FROM queue_entries q
                 WHERE q.concert_id = c.concert_id AND q.seq = c.seq
                   AND q.claimed_at IS NULL AND q.ended_at IS NULL
                 FOR UPDATE) p)
         UPDATE queue_entries q SET claimed_at = target.at
         FROM target WHERE q.concert_id = target.concert_id AND q.seq = target.seq",
        &concerts,
        &seqs,
        &ats,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// One room's policy and counters, straight from the database (admin view).
pub async fn room(pool: &PgPool, concert_id: Uuid) -> Result<Option<RoomRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        RoomRecord,
        "SELECT concert_id, max_active_users, admit_per_interval, interval_seconds, active_seconds, \
         hold_seconds, claim_seconds, last_seq, admitted_upto, next_admit_at, abandoned_total, pruned_upto \
         FROM waiting_rooms WHERE concert_id = $1",
        concert_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(RoomRow::from))
}

/// ACTIVE places right now: admitted, inside their window, not completed.
pub async fn active_count(pool: &PgPool, concert_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT count(*) AS \"count!\" FROM admissions a \
         JOIN queue_entries e ON e.concert_id = a.concert_id AND e.line_no BETWEEN a.from_seq AND a.upto_seq \
         WHERE a.concert_id = $1 AND a.active_until > now() AND e.completed_at IS NULL \
           AND e.ended_at IS NULL",
        concert_id,
    )
    .fetch_one(pool)
    .await
}

/// Replaces a room's policy; false when the concert has no room.
pub async fn set_policy(pool: &PgPool, concert_id: Uuid, p: &Policy) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE waiting_rooms SET max_active_users = $2, admit_per_interval = $3, interval_seconds = $4, \
         active_seconds = $5, hold_seconds = $6, claim_seconds = $7, updated_at = now() \
         WHERE concert_id = $1",
        concert_id,
        p.max_active_users,
        p.admit_per_interval,
        p.interval_seconds,
        p.active_seconds,
        p.hold_seconds,
        p.claim_seconds,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One room's pre-queue settings and draw (admin view); `None` when the concert has no room.
pub async fn opening(pool: &PgPool, concert_id: Uuid) -> Result<Option<Opening>, sqlx::Error> {
    let row = sqlx::query_as!(
        OpeningRecord,
        "SELECT concert_id, opens_at, prequeue_upto, drawn_at, draw_seed, draw_places, join_proof_bits
         FROM waiting_rooms WHERE concert_id = $1",
        concert_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| <(Uuid, Opening)>::from(r).1))
}

/// What setting a room's `opens_at` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpeningChange {
    /// Set (or unchanged).
    Done,
    /// The room has opened (drawn, past its `opens_at`, or in use without one): only the same value stands.
    AlreadyOpen,
    NoRoom,
}

/// Sets `opens_at` (`None` removes it) only while the room has not opened, in one statement under the
/// row lock, so it cannot slip past a draw made at the same moment. The same value is always accepted.
/// A room without `opens_at` counts as open once anyone joined it.
pub async fn set_opens_at(
    pool: &PgPool,
    concert_id: Uuid,
    opens_at: Option<DateTime<Utc>>,
) -> Result<OpeningChange, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH room AS (SELECT concert_id FROM waiting_rooms WHERE concert_id = $1 FOR UPDATE),
         done AS (
             UPDATE waiting_rooms r SET opens_at = $2, updated_at = now()
             FROM room
             WHERE r.concert_id = room.concert_id
               AND (r.opens_at IS NOT DISTINCT FROM $2
                    OR (r.drawn_at IS NULL AND (r.opens_at > now() OR (r.opens_at IS NULL AND r.last_seq = 0))))
             RETURNING 1)
         SELECT (SELECT count(*) FROM room) AS "rooms!", (SELECT count(*) FROM done) AS "done!""#,
        concert_id,
        opens_at,
    )
    .fetch_one(pool)
    .await?;
    Ok(match (row.rooms, row.done) {
        (0, _) => OpeningChange::NoRoom,
        (_, 0) => OpeningChange::AlreadyOpen,
        _ => OpeningChange::Done,
    })
}

/// Sets the room's proof-of-work difficulty; false when the concert has no room.
pub async fn set_join_proof_bits(
    pool: &PgPool,
    concert_id: Uuid,
    bits: i32,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE waiting_rooms SET join_proof_bits = $2, updated_at = now() WHERE concert_id = $1",
        concert_id,
        bits,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a proof-of-work challenge as used by the join it lets in; false when it was used already
/// (by this or any other api instance: the challenge is the key). Used challenges past their expiry are
/// deleted by the workers' retention role (`workers/src/store/retention.rs`).
pub async fn use_proof(
    pool: &PgPool,
    challenge: &str,
    user_id: Uuid,
    concert_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO queue_proofs_used (challenge, user_id, concert_id, expires_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (challenge) DO NOTHING",
        challenge,
        user_id,
        concert_id,
        expires_at,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a challenge back when the join it let in could not be handed to the log (a 503): it was not
/// used up.
pub async fn unuse_proof(pool: &PgPool, challenge: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM queue_proofs_used WHERE challenge = $1",
        challenge
    )
    .execute(pool)
    .await?;
    Ok(())
}
