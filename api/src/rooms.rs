//! Per-instance cache of every waiting room's admission state, refreshed from Postgres several times a second.
//! Queue tokens carry their place (concert, seq), so with this cache a status poll, an event stream or an
//! admission check is answered from memory: the hot path of a flash crowd never touches the database.
//!
//! Besides the frontier and the open admission steps the cache holds what it knows of single places
//! (claimed, completed, ended for want of a claim), the claims this instance saw and has not written yet,
//! the places users were given (so a repeated join is answered without publishing), and one watch channel
//! per concert that wakes the event streams when the room changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use concert_core::admission::{
    admitted_status, waiting_status, Admission, PlaceFacts, PlaceStatus, Policy, Turnover,
    CLAIM_GRACE_MS,
};
use concert_core::commands::{CommandKind, JoinResult, Outcome, PlaceRef, Reply};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db;
use crate::db::rooms::{Cursor, PlaceChange};

/// One room as last read.
#[derive(Debug, Clone)]
pub struct Room {
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
    pub abandoned_total: i64,
    /// Admission steps whose window may still be open, by `upto_seq`.
    admissions: BTreeMap<i64, Admission>,
    /// Kept for good: a paid place reads COMPLETED even after its window closed.
    completed: HashSet<i64>,
    /// Ended for want of a claim; kept for good like `completed`.
    ended: HashSet<i64>,
    /// Claimed places of the open steps (forgotten with their step).
    claimed: HashSet<i64>,
    /// When the ACTIVE places free their slots, for the wait estimate (capped rooms only).
    turnover: Option<Turnover>,
}

impl Room {
    fn new(policy: Policy) -> Self {
        Self {
            policy,
            last_seq: 0,
            admitted_upto: 0,
            next_admit_at: None,
            abandoned_total: 0,
            admissions: BTreeMap::new(),
            completed: HashSet::new(),
            ended: HashSet::new(),
            claimed: HashSet::new(),
            turnover: None,
        }
    }

    fn step(&self, seq: i64) -> Option<&Admission> {
        self.admissions
            .range(seq..)
            .next()
            .map(|(_, a)| a)
            .filter(|a| a.from_seq <= seq)
    }

    fn facts(&self, seq: i64) -> PlaceFacts {
        PlaceFacts {
            completed: self.completed.contains(&seq),
            ended: self.ended.contains(&seq),
            claimed: self.claimed.contains(&seq),
        }
    }

    pub fn status(&self, seq: i64, now: DateTime<Utc>) -> PlaceStatus {
        if seq > self.admitted_upto {
            return waiting_status(
                seq - self.admitted_upto,
                &self.policy,
                self.next_admit_at,
                self.turnover.as_ref(),
                now,
            );
        }
        admitted_status(self.step(seq), self.facts(seq), now)
    }

    pub fn waiting(&self) -> i64 {
        self.last_seq - self.admitted_upto
    }

    /// ACTIVE places by this cache's reckoning (the ticker counts again in Postgres before admitting anyone).
    pub fn active(&self, now: DateTime<Utc>) -> i64 {
        self.admissions
            .values()
            .filter(|a| a.active_until > now)
            .map(|a| {
                (a.from_seq..=a.upto_seq)
                    .filter(|&s| matches!(self.status(s, now), PlaceStatus::Active { .. }))
                    .count() as i64
            })
            .sum()
    }

    /// When each ACTIVE place is expected to end: a claimed one at its window's end, an unclaimed one at
    /// its claim deadline (it ends then unless it is claimed).
    fn expected_ends(&self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let grace = chrono::Duration::milliseconds(CLAIM_GRACE_MS);
        let mut ends = Vec::new();
        for a in self.admissions.values().filter(|a| a.active_until > now) {
            for seq in a.from_seq..=a.upto_seq {
                let facts = self.facts(seq);
                if facts.completed || facts.ended {
                    continue;
                }
                if facts.claimed {
                    ends.push(a.active_until);
                } else if now < a.claim_until + grace {
                    ends.push((a.claim_until + grace).min(a.active_until));
                }
            }
        }
        ends
    }

    fn recompute_turnover(&mut self, now: DateTime<Utc>) {
        self.turnover = self
            .policy
            .max_active_users
            .map(|max| Turnover::new(i64::from(max), self.expected_ends(now)));
    }
}

/// A place a user was given by a join, as learned from the reply topic or the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPlace {
    pub seq: i64,
    pub joined_at: DateTime<Utc>,
    /// The join request that gave it (a repeated join answers with it).
    pub request_id: Uuid,
}

/// A claim seen by this instance, to be written with the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub concert_id: Uuid,
    pub seq: i64,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
pub struct RoomCache {
    rooms: RwLock<HashMap<Uuid, Room>>,
    cursor: tokio::sync::Mutex<Cursor>,
    /// Claims not yet written to Postgres.
    pending_claims: Mutex<Vec<Claim>>,
    /// Places by (concert, user).
    places: RwLock<HashMap<(Uuid, Uuid), KnownPlace>>,
    /// Wakes the event streams of a concert when its room changed.
    watchers: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
    /// When the last refresh succeeded.
    last_refresh: Mutex<Option<Instant>>,
}

impl RoomCache {
    pub fn status(&self, concert_id: Uuid, seq: i64, now: DateTime<Utc>) -> Option<PlaceStatus> {
        self.rooms
            .read()
            .expect("room cache lock")
            .get(&concert_id)
            .map(|r| r.status(seq, now))
    }

    /// The status of a place used with its queue token, counting the use as its claim. Only a use before
    /// the step's claim deadline counts; the first one is queued for the next batched write and
    /// remembered, so later uses cost a read lock only.
    pub fn status_claiming(
        &self,
        concert_id: Uuid,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Option<PlaceStatus> {
        let (status, claimable) = {
            let rooms = self.rooms.read().expect("room cache lock");
            let room = rooms.get(&concert_id)?;
            let status = room.status(seq, now);
            let claimable = matches!(status, PlaceStatus::Active { .. })
                && !room.claimed.contains(&seq)
                && room.step(seq).is_some_and(|a| now < a.claim_until);
            (status, claimable)
        };
        if claimable {
            let first = self
                .rooms
                .write()
                .expect("room cache lock")
                .get_mut(&concert_id)
                .is_some_and(|room| room.claimed.insert(seq));
            if first {
                self.pending_claims
                    .lock()
                    .expect("claims lock")
                    .push(Claim {
                        concert_id,
                        seq,
                        at: now,
                    });
            }
        }
        Some(status)
    }

    /// The room's policy as last read.
    pub fn policy(&self, concert_id: Uuid) -> Option<Policy> {
        self.rooms
            .read()
            .expect("room cache lock")
            .get(&concert_id)
            .map(|r| r.policy.clone())
    }

    pub fn room(&self, concert_id: Uuid) -> Option<Room> {
        self.rooms
            .read()
            .expect("room cache lock")
            .get(&concert_id)
            .cloned()
    }

    /// Records that a place ended with a payment, ahead of the next refresh that would read it.
    pub fn mark_completed(&self, place: PlaceRef) {
        let changed = self
            .rooms
            .write()
            .expect("room cache lock")
            .get_mut(&place.concert_id)
            .is_some_and(|room| room.completed.insert(place.seq));
        if changed {
            self.wake(&[place.concert_id]);
        }
    }

    pub fn contains(&self, concert_id: Uuid) -> bool {
        self.rooms
            .read()
            .expect("room cache lock")
            .contains_key(&concert_id)
    }

    /// (waiting, active) summed over all rooms, for the metrics gauges.
    pub fn totals(&self, now: DateTime<Utc>) -> (i64, i64) {
        let rooms = self.rooms.read().expect("room cache lock");
        rooms
            .values()
            .fold((0, 0), |(w, a), r| (w + r.waiting(), a + r.active(now)))
    }

    /// Did a refresh succeed within `max_age`? A stale cache would answer statuses from the past.
    pub fn is_fresh(&self, max_age: Duration) -> bool {
        self.last_refresh
            .lock()
            .expect("refresh time lock")
            .is_some_and(|at| at.elapsed() <= max_age)
    }

    /// A receiver woken whenever the concert's room changed in a way that may move a place's status.
    pub fn watch(&self, concert_id: Uuid) -> watch::Receiver<u64> {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        watchers
            .entry(concert_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn wake(&self, concerts: &[Uuid]) {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        for concert_id in concerts {
            if let Some(tx) = watchers.get(concert_id) {
                tx.send_modify(|v| *v += 1);
            }
        }
        // Rooms nobody watches any more need no channel.
        watchers.retain(|_, tx| tx.receiver_count() > 0);
    }

    // ---- places given by joins ----

    /// Learns the place a JOIN reply gave (every instance reads every reply).
    pub fn learn_join(&self, reply: &Reply) {
        if reply.kind != CommandKind::Join {
            return;
        }
        let Outcome::Succeeded { result } = &reply.outcome else {
            return;
        };
        if let Ok(place) = serde_json::from_value::<JoinResult>(result.clone()) {
            self.learn_place(reply.user_id, &place, reply.request_id);
        }
    }

    pub fn learn_place(&self, user: Uuid, place: &JoinResult, request_id: Uuid) {
        let known = KnownPlace {
            seq: place.seq,
            joined_at: place.joined_at,
            request_id,
        };
        let mut places = self.places.write().expect("places lock");
        let entry = places.entry((place.concert_id, user)).or_insert(known);
        // A newer place replaces an older one; the same place keeps the first request that gave it.
        if known.seq > entry.seq {
            *entry = known;
        }
    }

    /// The user's place in the concert's line if this instance knows it and it is live (not ended,
    /// waiting or inside an open window).
    pub fn live_place(
        &self,
        concert_id: Uuid,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> Option<KnownPlace> {
        let known = *self
            .places
            .read()
            .expect("places lock")
            .get(&(concert_id, user))?;
        let live = self
            .status(concert_id, known.seq, now)
            .is_none_or(|s| !s.is_final());
        live.then_some(known)
    }

    /// Forgets the places that ended: their users join anew.
    fn prune_places(&self, now: DateTime<Utc>) {
        let rooms = self.rooms.read().expect("room cache lock");
        self.places
            .write()
            .expect("places lock")
            .retain(|(concert_id, _), p| {
                rooms
                    .get(concert_id)
                    .is_none_or(|r| !r.status(p.seq, now).is_final())
            });
    }

    // ---- claims ----

    /// Takes the claims not yet written.
    pub fn take_claims(&self) -> Vec<Claim> {
        std::mem::take(&mut *self.pending_claims.lock().expect("claims lock"))
    }

    /// Puts back claims whose write failed, to be tried with the next batch.
    pub fn return_claims(&self, mut claims: Vec<Claim>) {
        let mut pending = self.pending_claims.lock().expect("claims lock");
        claims.append(&mut pending);
        *pending = claims;
    }

    // ---- refresh ----

    /// Reads what changed since the last refresh, in one snapshot so the frontier, the steps and the
    /// places agree. Admission steps are read by the frontier (steps beyond the one the cache knows), the
    /// places by the transactions that changed them (see `db::rooms::read_changes`): neither depends on
    /// when a transaction started, so one that commits late is read all the same.
    pub async fn refresh(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut cursor = self.cursor.lock().await;
        let known: HashMap<Uuid, i64> = self
            .rooms
            .read()
            .expect("room cache lock")
            .iter()
            .map(|(id, r)| (*id, r.admitted_upto))
            .collect();
        let snapshot = db::rooms::read_changes(pool, &cursor, &known).await?;
        let now = snapshot.now;
        let mut woken: HashSet<Uuid> = HashSet::new();
        {
            let mut rooms = self.rooms.write().expect("room cache lock");
            for row in snapshot.rooms {
                let room = rooms
                    .entry(row.concert_id)
                    .or_insert_with(|| Room::new(row.policy.clone()));
                if room.admitted_upto != row.admitted_upto || room.policy != row.policy {
                    woken.insert(row.concert_id);
                }
                room.policy = row.policy;
                room.last_seq = row.last_seq;
                room.admitted_upto = row.admitted_upto;
                room.next_admit_at = row.next_admit_at;
                room.abandoned_total = row.abandoned_total;
            }
            for (concert_id, step) in snapshot.admissions {
                if let Some(room) = rooms.get_mut(&concert_id) {
                    room.admissions.insert(step.upto_seq, step);
                }
            }
            for change in snapshot.places {
                let Some(room) = rooms.get_mut(&change.concert_id) else {
                    continue;
                };
                if apply_change(room, &change) {
                    woken.insert(change.concert_id);
                }
            }
            for room in rooms.values_mut() {
                // A closed window stays closed: forget it (an admitted seq with no step reads as EXPIRED).
                let closed: Vec<Admission> = room
                    .admissions
                    .values()
                    .filter(|a| a.active_until <= now)
                    .copied()
                    .collect();
                for a in closed {
                    room.admissions.remove(&a.upto_seq);
                    room.claimed
                        .retain(|s| !(a.from_seq..=a.upto_seq).contains(s));
                }
                room.recompute_turnover(now);
            }
        }
        *cursor = snapshot.cursor;
        *self.last_refresh.lock().expect("refresh time lock") = Some(Instant::now());
        let woken: Vec<Uuid> = woken.into_iter().collect();
        self.wake(&woken);
        if cursor.refreshes % PRUNE_EVERY == 0 {
            self.prune_places(now);
        }
        Ok(())
    }
}

/// Refreshes between two prunings of the known places.
const PRUNE_EVERY: u64 = 40;

/// Applies one place's change; true when it may change what its stream shows (claims do not: the
/// place's own requests made them).
fn apply_change(room: &mut Room, change: &PlaceChange) -> bool {
    if change.claimed {
        room.claimed.insert(change.seq);
    }
    let mut visible = false;
    if change.completed {
        visible |= room.completed.insert(change.seq);
    }
    if change.ended {
        visible |= room.ended.insert(change.seq);
    }
    visible
}

/// Refreshes the cache every `every` until shutdown; failures are logged and retried on the next beat
/// (and `/readyz` turns unready once the cache is stale).
pub async fn run_refresher(
    cache: std::sync::Arc<RoomCache>,
    pool: PgPool,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(err) = cache.refresh(&pool).await {
                    tracing::warn!(error = ?err, "waiting room cache refresh failed");
                }
                let (waiting, active) = cache.totals(Utc::now());
                metrics::gauge!("waiting_room_waiting").set(waiting as f64);
                metrics::gauge!("waiting_room_active").set(active as f64);
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Writes the claims seen since the last beat, in one statement, every `every` until shutdown (and once
/// more at shutdown). A failed write keeps them for the next beat.
pub async fn run_claim_writer(
    cache: std::sync::Arc<RoomCache>,
    pool: PgPool,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        let claims = cache.take_claims();
        if !claims.is_empty() {
            match db::rooms::write_claims(&pool, &claims).await {
                Ok(written) => {
                    metrics::counter!("queue_claims_written_total").increment(written);
                }
                Err(err) => {
                    tracing::warn!(error = ?err, claims = claims.len(), "writing claims failed; retrying");
                    cache.return_claims(claims);
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn room() -> Room {
        let mut room = Room::new(Policy {
            max_active_users: Some(2),
            claim_seconds: 10,
            ..concert_core::admission::DEFAULT_POLICY
        });
        room.last_seq = 5;
        room.admitted_upto = 2;
        room.admissions.insert(
            2,
            Admission {
                from_seq: 1,
                upto_seq: 2,
                admitted_at: t(0),
                active_until: t(600),
                claim_until: t(10),
            },
        );
        room
    }

    #[test]
    fn an_unclaimed_place_frees_its_slot_in_the_estimate() {
        let mut room = room();
        room.claimed.insert(1);
        room.recompute_turnover(t(1));
        assert_eq!(
            room.status(3, t(1)),
            PlaceStatus::Waiting {
                position: 1,
                eta_seconds: Some(10)
            },
            "seq 2 is expected to end at its claim deadline (plus the grace)"
        );
        assert_eq!(
            room.status(4, t(1)),
            PlaceStatus::Waiting {
                position: 2,
                eta_seconds: Some(599)
            },
            "the claimed place keeps its slot for its whole window"
        );
    }

    #[test]
    fn claims_are_queued_once_and_only_in_time() {
        let cache = RoomCache::default();
        let id = Uuid::new_v4();
        cache.rooms.write().unwrap().insert(id, room());
        cache.status_claiming(id, 1, t(3));
        cache.status_claiming(id, 1, t(4));
        cache.status_claiming(id, 2, t(10));
        cache.status_claiming(id, 4, t(3));
        assert_eq!(
            cache.take_claims(),
            vec![Claim {
                concert_id: id,
                seq: 1,
                at: t(3)
            }],
            "one claim per place, none after the deadline or while waiting"
        );
        assert_eq!(
            cache.status(id, 2, t(12)),
            Some(PlaceStatus::Expired {
                reason: concert_core::admission::EndReason::NotClaimed
            })
        );
    }
}
