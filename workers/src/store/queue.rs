//! Waiting rooms, places in line (`queue_entries`) and admission steps (`admissions`).
//!
//! The `waiting_rooms` row is the lock that serialises a concert's joins and admission steps, whichever
//! process runs them: every writer here locks it first.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::admission::{Draw, Policy};
use sqlx::PgConnection;
use uuid::Uuid;

/// A place in line.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct Place {
    pub seq: i64,
    pub joined_at: DateTime<Utc>,
}

/// A place handed out by a run of joins, to be written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewPlace {
    pub concert_id: Uuid,
    pub seq: i64,
    pub user_id: Uuid,
}

/// A locked room as a run of joins sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedRoom {
    pub last_seq: i64,
    /// The room's `opens_at` while it is pre-queuing (not drawn, the opening still ahead): the run's new
    /// places are pre-queued.
    pub pre_queue_until: Option<DateTime<Utc>>,
}

/// Locks these concerts' waiting rooms, in concert order so two transactions cannot deadlock, and returns
/// each room's last handed-out seq and whether it is pre-queuing. Concerts without a waiting room are absent.
pub(crate) async fn lock_rooms(
    conn: &mut PgConnection,
    concert_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, LockedRoom>> {
    let rows = sqlx::query!(
        r#"SELECT concert_id, last_seq,
                CASE WHEN drawn_at IS NULL AND opens_at > now() THEN opens_at END AS pre_queue_until
         FROM waiting_rooms
         WHERE concert_id = ANY($1)
         ORDER BY concert_id
         FOR UPDATE"#,
        concert_ids,
    )
    .fetch_all(conn)
    .await
    .context("locking waiting rooms")?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let room = LockedRoom {
                last_seq: r.last_seq,
                pre_queue_until: r.pre_queue_until,
            };
            (r.concert_id, room)
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct LivePlaceRow {
    concert_id: Uuid,
    user_id: Uuid,
    seq: i64,
    joined_at: DateTime<Utc>,
}

/// The live place of each of these (concert, user) pairs that has one: not completed, not ended (an
/// unclaimed admission ends the place), and either still
/// waiting (its line number, see `admission::draw`, beyond the frontier) or inside an admission step whose window is open. Run with the rooms locked, so no frontier
/// moves underneath.
///
/// One newest-first probe of `queue_entries_by_user` per pair, by construction (a LIMIT 1 per pair in
/// that index's order). Written as one join, the planner without statistics took the primary key
/// (concert, seq) for a few hundred places and read every place of the concert once per pair
/// (`workers/tests/apply/plans.rs`).
pub(crate) async fn live_places(
    conn: &mut PgConnection,
    pairs: &[(Uuid, Uuid)],
) -> anyhow::Result<HashMap<(Uuid, Uuid), Place>> {
    let (concerts, users): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows: Vec<LivePlaceRow> = sqlx::query_as!(
        LivePlaceRow,
        r#"SELECT w.concert_id AS "concert_id!", w.user_id AS "user_id!", q.seq, q.joined_at
         FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::uuid[])) AS w(concert_id, user_id)
         JOIN waiting_rooms r ON r.concert_id = w.concert_id
         JOIN LATERAL (
             SELECT q.seq, q.joined_at FROM queue_entries q
             WHERE q.concert_id = w.concert_id AND q.user_id = w.user_id
               AND q.completed_at IS NULL AND q.ended_at IS NULL
               -- no line number yet: waiting for the draw or for the step that numbers it
               AND (q.line_no IS NULL OR q.line_no > r.admitted_upto OR EXISTS (
                     SELECT 1 FROM admissions a
                     WHERE a.concert_id = q.concert_id AND a.upto_seq >= q.line_no AND a.from_seq <= q.line_no
                       AND a.active_until > now()
                       -- unclaimed past its claim deadline: the api already calls it EXPIRED, even
                       -- before the ticker settles it (1 second = CLAIM_GRACE_MS)
                       AND (q.claimed_at IS NOT NULL OR a.claim_until + interval '1 second' > now())))
             ORDER BY q.seq DESC
             LIMIT 1) q ON true"#,
        &concerts,
        &users,
    )
    .fetch_all(conn)
    .await
    .context("looking for live places")?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let place = Place {
                seq: r.seq,
                joined_at: r.joined_at,
            };
            ((r.concert_id, r.user_id), place)
        })
        .collect())
}

/// Writes the places a run of joins handed out and moves each room's `last_seq` to `last_seq[concert]`,
/// two statements for the lot. The rooms are locked by [`lock_rooms`]; the seq primary key and the
/// `admitted_within_joined` check guard the result.
///
/// The room's update also keeps the pre-queue: a room before its `opens_at` (not drawn yet) counts the new
/// places as pre-queued (`prequeue_upto`), and a room whose opening has come is drawn first, in the same
/// statement (see [`draw_if_due`]), so a place joining after the opening never enters the draw. The places
/// are then written with their line number: none while pre-queued (the draw gives it), their seq otherwise.
pub(crate) async fn append_places(
    conn: &mut PgConnection,
    places: &[NewPlace],
    last_seq: &HashMap<Uuid, i64>,
) -> anyhow::Result<()> {
    if places.is_empty() {
        return Ok(());
    }
    let concerts: Vec<Uuid> = places.iter().map(|p| p.concert_id).collect();
    let seqs: Vec<i64> = places.iter().map(|p| p.seq).collect();
    let users: Vec<Uuid> = places.iter().map(|p| p.user_id).collect();
    let mut rooms: Vec<Uuid> = concerts.clone();
    rooms.sort_unstable();
    rooms.dedup();
    let lasts: Vec<i64> = rooms.iter().map(|c| last_seq[c]).collect();
    // Every SET expression reads the row as it was: the draw takes the places pre-queued before this run.
    let moved = sqlx::query!(
        "UPDATE waiting_rooms r SET last_seq = w.last_seq, updated_at = now(),
             drawn_at = CASE WHEN r.drawn_at IS NULL
                  AND (r.opens_at <= now() OR (r.opens_at IS NULL AND r.prequeue_upto > 0))
                 THEN now() ELSE r.drawn_at END,
             draw_seed = CASE WHEN r.drawn_at IS NULL
                  AND (r.opens_at <= now() OR (r.opens_at IS NULL AND r.prequeue_upto > 0))
                 THEN decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
                 ELSE r.draw_seed END,
             draw_places = CASE WHEN r.drawn_at IS NULL
                  AND (r.opens_at <= now() OR (r.opens_at IS NULL AND r.prequeue_upto > 0))
                 THEN r.prequeue_upto ELSE r.draw_places END,
             prequeue_upto = CASE WHEN r.drawn_at IS NULL AND r.opens_at > now()
                 THEN w.last_seq ELSE r.prequeue_upto END
         FROM UNNEST($1::uuid[], $2::bigint[]) AS w(concert_id, last_seq)
         WHERE r.concert_id = w.concert_id AND r.last_seq < w.last_seq",
        &rooms,
        &lasts,
    )
    .execute(&mut *conn)
    .await
    .context("moving the rooms' last seq")?
    .rows_affected();
    anyhow::ensure!(
        moved == rooms.len() as u64,
        "{moved} of {} locked rooms took their new places",
        rooms.len()
    );
    sqlx::query!(
        "INSERT INTO queue_entries (concert_id, seq, user_id, joined_at, line_no)
         SELECT w.concert_id, w.seq, w.user_id, now(),
                CASE WHEN r.drawn_at IS NULL AND r.opens_at IS NOT NULL THEN NULL ELSE w.seq END
         FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[]) AS w(concert_id, seq, user_id)
         JOIN waiting_rooms r ON r.concert_id = w.concert_id",
        &concerts,
        &seqs,
        &users,
    )
    .execute(conn)
    .await
    .context("appending places in line")?;
    Ok(())
}

/// Ends the sessions these payments completed, in one statement. A place already completed (an earlier
/// payment in the same session) is left as it is.
pub(crate) async fn complete_places(
    conn: &mut PgConnection,
    places: &[(Uuid, i64, Uuid)],
) -> anyhow::Result<()> {
    if places.is_empty() {
        return Ok(());
    }
    let concerts: Vec<Uuid> = places.iter().map(|p| p.0).collect();
    let seqs: Vec<i64> = places.iter().map(|p| p.1).collect();
    let users: Vec<Uuid> = places.iter().map(|p| p.2).collect();
    sqlx::query!(
        "UPDATE queue_entries q SET completed_at = now()
         FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[]) AS w(concert_id, seq, user_id)
         WHERE q.concert_id = w.concert_id AND q.seq = w.seq AND q.user_id = w.user_id
           AND q.completed_at IS NULL",
        &concerts,
        &seqs,
        &users,
    )
    .execute(conn)
    .await
    .context("completing places in line")?;
    Ok(())
}

/// Concerts with someone waiting to be admitted (not before the room's opening), a draw due, or with
/// admission steps whose claim deadline passed and
/// whose unclaimed places are still to be ended.
pub(crate) async fn rooms_with_work(conn: &mut PgConnection) -> anyhow::Result<Vec<Uuid>> {
    // A UNION's column carries no table, so the macro cannot tell it is never NULL; an alias marking it
    // would also rename what ORDER BY refers to, hence the check here.
    let ids: Vec<Option<Uuid>> = sqlx::query_scalar!(
        "SELECT concert_id FROM waiting_rooms
         WHERE (admitted_upto < last_seq AND NOT (drawn_at IS NULL AND COALESCE(opens_at > now(), false)))
            OR (drawn_at IS NULL AND opens_at <= now())
         UNION
         SELECT DISTINCT concert_id FROM admissions
         WHERE NOT claims_settled AND claim_until + make_interval(secs => $1) <= now()
         ORDER BY concert_id",
        claim_grace_secs(),
    )
    .fetch_all(conn)
    .await
    .context("listing waiting rooms with work to do")?;
    ids.into_iter()
        .collect::<Option<Vec<Uuid>>>()
        .context("a waiting room with work to do has no concert id")
}

fn claim_grace_secs() -> f64 {
    concert_core::admission::CLAIM_GRACE_MS as f64 / 1000.0
}

/// Ends the places nobody claimed in the admission steps whose claim deadline (plus the grace that lets
/// batched claims land) has passed, and counts them in the room's `abandoned_total`. Each step is settled
/// once. Run under the room lock, before counting the active places, so freed slots are refilled in the
/// same step.
///
/// A claim racing this statement: both lock the place's row (in seq order, so they cannot deadlock) and
/// re-check their condition on the row they get, so either the claim lands first and the place is not
/// ended, or the place is ended first and the claim does not land (the api then learns the end).
///
/// Returns the steps settled and the places ended. A step whose places were all claimed is settled
/// with none ended: the caller must commit that too, or the step stays unsettled, is never pruned by
/// the retention, and keeps its room on the ticker's list of rooms with work.
pub(crate) async fn end_unclaimed(
    conn: &mut PgConnection,
    concert_id: Uuid,
) -> anyhow::Result<Settled> {
    let due = sqlx::query!(
        "UPDATE admissions SET claims_settled = true
         WHERE concert_id = $1 AND NOT claims_settled AND claim_until + make_interval(secs => $2) <= now()
         RETURNING from_seq, upto_seq",
        concert_id,
        claim_grace_secs(),
    )
    .fetch_all(&mut *conn)
    .await
    .context("settling admission steps past their claim deadline")?;
    if due.is_empty() {
        return Ok(Settled::default());
    }
    let steps = due.len();
    let (froms, uptos): (Vec<i64>, Vec<i64>) =
        due.into_iter().map(|r| (r.from_seq, r.upto_seq)).unzip();
    let ended = sqlx::query!(
        "WITH target AS (
             SELECT q.seq FROM queue_entries q
             JOIN unnest($2::bigint[], $3::bigint[]) r(from_seq, upto_seq)
               ON q.line_no BETWEEN r.from_seq AND r.upto_seq
             WHERE q.concert_id = $1 AND q.claimed_at IS NULL AND q.completed_at IS NULL
               AND q.ended_at IS NULL
             ORDER BY q.seq
             FOR UPDATE OF q)
         UPDATE queue_entries q SET ended_at = now()
         FROM target WHERE q.concert_id = $1 AND q.seq = target.seq",
        concert_id,
        &froms,
        &uptos,
    )
    .execute(&mut *conn)
    .await
    .context("ending unclaimed places")?
    .rows_affected() as i64;
    if ended > 0 {
        sqlx::query!(
            "UPDATE waiting_rooms SET abandoned_total = abandoned_total + $2, updated_at = now()
             WHERE concert_id = $1",
            concert_id,
            ended,
        )
        .execute(conn)
        .await
        .context("counting abandoned places")?;
    }
    Ok(Settled { steps, ended })
}

/// What [`end_unclaimed`] did: admission steps settled, and the places of theirs nobody claimed, ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    pub steps: usize,
    pub ended: i64,
}

/// A locked waiting room as the admission ticker sees it.
#[derive(Debug, Clone)]
pub(crate) struct RoomForAdmission {
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// When the room opens; with no draw yet and `now` before it, nobody is admitted.
    pub opens_at: Option<DateTime<Utc>>,
    /// The room's draw, once made.
    pub draw: Option<Draw>,
}

impl RoomForAdmission {
    /// Still before the opening: the pre-queue waits for the draw.
    pub fn before_opening(&self) -> bool {
        self.draw.is_none() && self.opens_at.is_some_and(|at| self.now < at)
    }
}

#[derive(sqlx::FromRow)]
struct RoomRow {
    max_active_users: Option<i32>,
    admit_per_interval: Option<i32>,
    interval_seconds: Option<i32>,
    active_seconds: i32,
    hold_seconds: i32,
    claim_seconds: i32,
    last_seq: i64,
    admitted_upto: i64,
    next_admit_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    opens_at: Option<DateTime<Utc>>,
    draw_seed: Option<Vec<u8>>,
    draw_places: Option<i64>,
}

/// Locks the room for an admission step. Waits at most a moment for a join batch or another ticker
/// holding it (the statement then fails with `lock_not_available`, see [`is_lock_timeout`]).
pub(crate) async fn lock_room_for_admission(
    conn: &mut PgConnection,
    concert_id: Uuid,
) -> anyhow::Result<Option<RoomForAdmission>> {
    sqlx::query!("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *conn)
        .await
        .context("setting lock_timeout")?;
    let row: Option<RoomRow> = sqlx::query_as!(
        RoomRow,
        r#"SELECT max_active_users, admit_per_interval, interval_seconds, active_seconds, hold_seconds,
                claim_seconds, last_seq, admitted_upto, next_admit_at, now() AS "now!",
                opens_at, draw_seed, draw_places
         FROM waiting_rooms WHERE concert_id = $1
         FOR UPDATE"#,
        concert_id,
    )
    .fetch_optional(conn)
    .await
    .context("locking the waiting room for admission")?;
    Ok(row.map(|r| RoomForAdmission {
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
        now: r.now,
        opens_at: r.opens_at,
        draw: match (r.draw_seed, r.draw_places) {
            (Some(seed), Some(places)) => Draw::from_parts(&seed, places),
            _ => None,
        },
    }))
}

/// Makes the room's draw if its opening has come (or its `opens_at` was removed with places pre-queued):
/// one row update under the room lock, recording a seed of 32 random bytes drawn by Postgres and the
/// places pre-queued so far. Returns the draw it made, if it made one.
pub(crate) async fn draw_if_due(
    conn: &mut PgConnection,
    concert_id: Uuid,
) -> anyhow::Result<Option<Draw>> {
    let row = sqlx::query!(
        r#"UPDATE waiting_rooms SET drawn_at = now(), draw_places = prequeue_upto, updated_at = now(),
             draw_seed = decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
         WHERE concert_id = $1 AND drawn_at IS NULL
           AND (opens_at <= now() OR (opens_at IS NULL AND prequeue_upto > 0))
         RETURNING draw_seed AS "draw_seed!", draw_places AS "draw_places!""#,
        concert_id,
    )
    .fetch_optional(conn)
    .await
    .context("drawing the pre-queue's order")?;
    Ok(row.and_then(|r| Draw::from_parts(&r.draw_seed, r.draw_places)))
}

/// Writes the line numbers the draw gave to the places an admission step is about to admit (pairs of
/// seq and line number), so that every statement over admitted places finds them by line number. One
/// primary-key probe per place: a condition on `line_no IS NULL` here would tempt the planner into the
/// line index, where every not-yet-admitted drawn place is NULL (4 s for 1,000 of 100,000 places); the
/// unique line index already refuses a number given twice.
pub(crate) async fn number_lines(
    conn: &mut PgConnection,
    concert_id: Uuid,
    seqs: &[i64],
    lines: &[i64],
) -> anyhow::Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let numbered = sqlx::query!(
        "UPDATE queue_entries q SET line_no = w.line_no
         FROM unnest($2::bigint[], $3::bigint[]) AS w(seq, line_no)
         WHERE q.concert_id = $1 AND q.seq = w.seq",
        concert_id,
        seqs,
        lines,
    )
    .execute(conn)
    .await
    .context("numbering drawn places")?
    .rows_affected();
    anyhow::ensure!(
        numbered == seqs.len() as u64,
        "{numbered} of {} drawn places took their line number",
        seqs.len()
    );
    Ok(())
}

/// Did this error come from waiting too long for a lock (`lock_not_available`)?
pub(crate) fn is_lock_timeout(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<sqlx::Error>())
        .any(|e| matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03")))
}

/// Users ACTIVE now: everyone in an admission step whose window is open, less those who completed or
/// were ended for want of a claim.
pub(crate) async fn active_count(conn: &mut PgConnection, concert_id: Uuid) -> anyhow::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(SUM(a.upto_seq - a.from_seq + 1 - done.n), 0)::bigint AS "active!"
         FROM admissions a
         CROSS JOIN LATERAL (
             SELECT count(*) AS n FROM queue_entries q
             WHERE q.concert_id = a.concert_id AND q.line_no BETWEEN a.from_seq AND a.upto_seq
               AND (q.completed_at IS NOT NULL OR q.ended_at IS NOT NULL)) done
         WHERE a.concert_id = $1 AND a.active_until > now()"#,
        concert_id,
    )
    .fetch_one(conn)
    .await
    .context("counting active users")
}

/// One admission step to record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdmissionStep {
    pub concert_id: Uuid,
    pub old_upto: i64,
    pub count: i64,
    pub admitted_at: DateTime<Utc>,
    pub active_until: DateTime<Utc>,
    /// Places not claimed by then end.
    pub claim_until: DateTime<Utc>,
    pub next_admit_at: Option<DateTime<Utc>>,
}

/// Records the step and moves the frontier, only if it is still where this ticker read it. Returns whether
/// the step was taken; with the row lock held it always is, the condition is a second guard.
pub(crate) async fn admit(conn: &mut PgConnection, step: &AdmissionStep) -> anyhow::Result<bool> {
    let moved = sqlx::query!(
        "UPDATE waiting_rooms
         SET admitted_upto = admitted_upto + $3, next_admit_at = $4, updated_at = now()
         WHERE concert_id = $1 AND admitted_upto = $2",
        step.concert_id,
        step.old_upto,
        step.count,
        step.next_admit_at,
    )
    .execute(&mut *conn)
    .await
    .context("moving the admission frontier")?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "INSERT INTO admissions (concert_id, from_seq, upto_seq, admitted_at, active_until, claim_until)
         VALUES ($1, $2, $3, $4, $5, $6)",
        step.concert_id,
        step.old_upto + 1,
        step.old_upto + step.count,
        step.admitted_at,
        step.active_until,
        step.claim_until,
    )
    .execute(conn)
    .await
    .context("recording the admission step")?;
    Ok(true)
}

/// Whether a place in line can still take holds and payments, as a run of them found it (locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlaceState {
    pub user_id: Uuid,
    /// A checkout completed it.
    pub completed: bool,
    /// It ended unclaimed.
    pub ended: bool,
}

/// How a run locks the places its commands were sent with: holds share them (so a checkout that completes
/// the place waits for them, and they for it), a checkout takes them for update (two checkouts of one place
/// on two dates, on two partitions, take turns: the second finds the place completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaceLock {
    Share,
    Update,
}

#[derive(sqlx::FromRow)]
struct PlaceStateRow {
    concert_id: Uuid,
    seq: i64,
    user_id: Uuid,
    completed: bool,
    ended: bool,
}

/// Locks these places (concert, seq) in that order, the order the claim writer and the ticker lock them in,
/// so none of them can deadlock with another, and says whether each is completed or ended. Places that do
/// not exist are absent. One probe of the primary key per place: the lock sits in a LATERAL subquery keyed
/// by the place, which the planner never flattens.
///
/// Lock order: places before holds, users and seats. The api's answer is not enough on its own: a hold
/// applied on one date while a checkout on another date completes the same place would otherwise be granted
/// after the checkout looked for the payer's live holds, and never be released.
pub(crate) async fn lock_places(
    conn: &mut PgConnection,
    places: &[(Uuid, i64)],
    lock: PlaceLock,
) -> anyhow::Result<HashMap<(Uuid, i64), PlaceState>> {
    let (concerts, seqs): (Vec<Uuid>, Vec<i64>) = places.iter().copied().unzip();
    let rows: Vec<PlaceStateRow> = match lock {
        PlaceLock::Share => sqlx::query_as!(
            PlaceStateRow,
            r#"SELECT w.concert_id AS "concert_id!", w.seq AS "seq!", q.user_id,
                    q.completed_at IS NOT NULL AS "completed!", q.ended_at IS NOT NULL AS "ended!"
             FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::bigint[]) ORDER BY 1, 2) AS w(concert_id, seq)
             CROSS JOIN LATERAL (
                 SELECT q.user_id, q.completed_at, q.ended_at FROM queue_entries q
                 WHERE q.concert_id = w.concert_id AND q.seq = w.seq
                 FOR SHARE) q"#,
            &concerts,
            &seqs,
        )
        .fetch_all(conn)
        .await
        .context("locking places in line (share)")?,
        PlaceLock::Update => sqlx::query_as!(
            PlaceStateRow,
            r#"SELECT w.concert_id AS "concert_id!", w.seq AS "seq!", q.user_id,
                    q.completed_at IS NOT NULL AS "completed!", q.ended_at IS NOT NULL AS "ended!"
             FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::bigint[]) ORDER BY 1, 2) AS w(concert_id, seq)
             CROSS JOIN LATERAL (
                 SELECT q.user_id, q.completed_at, q.ended_at FROM queue_entries q
                 WHERE q.concert_id = w.concert_id AND q.seq = w.seq
                 FOR NO KEY UPDATE) q"#,
            &concerts,
            &seqs,
        )
        .fetch_all(conn)
        .await
        .context("locking places in line (update)")?,
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            let state = PlaceState {
                user_id: r.user_id,
                completed: r.completed,
                ended: r.ended,
            };
            ((r.concert_id, r.seq), state)
        })
        .collect())
}
