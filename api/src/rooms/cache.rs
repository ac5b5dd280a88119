//! The cache itself: every room by concert, the claims seen and not yet written, the places users were
//! given, and the watch channels of the event streams, each behind its own lock. It answers the status of a
//! place from memory, and applies what a refresh read from Postgres.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use concert_core::admission::{Admission, Draw, DrawOrder, PlaceStatus, Policy};
use concert_core::commands::{CommandKind, JoinResult, Outcome, PlaceRef, Reply};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db;
use crate::db::rooms::{Cursor, Opening, PlaceChange};
use crate::rooms::claim::Claim;
use crate::rooms::room::Room;

/// A place a user was given by a join, as learned from the reply topic or the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPlace {
    pub seq: i64,
    pub joined_at: DateTime<Utc>,
    /// The join request that gave it (a repeated join answers with it).
    pub request_id: Uuid,
    /// The room's opening, when the place joined before it (see `JoinResult::opens_at`).
    pub opens_at: Option<DateTime<Utc>>,
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

    /// Has this instance read the room's draw? Until then a place the workers called pre-queued is.
    pub fn has_draw(&self, concert_id: Uuid) -> bool {
        self.rooms
            .read()
            .expect("room cache lock")
            .get(&concert_id)
            .is_some_and(|r| r.opening.draw.is_some())
    }

    /// The proof of work the room asks joins for (0: none), as last read.
    pub fn join_proof_bits(&self, concert_id: Uuid) -> i32 {
        self.rooms
            .read()
            .expect("room cache lock")
            .get(&concert_id)
            .map_or(0, |r| r.opening.join_proof_bits)
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
            opens_at: place.opens_at,
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

    /// Takes up to `max` of the claims not yet written, oldest first.
    pub fn take_claims(&self, max: usize) -> Vec<Claim> {
        let mut pending = self.pending_claims.lock().expect("claims lock");
        let n = pending.len().min(max);
        pending.drain(..n).collect()
    }

    /// Puts back claims whose write failed, ahead of the others, to be tried with the next batch.
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
        let mut snapshot = db::rooms::read_changes(pool, &cursor, &known).await?;
        let now = snapshot.now;
        let orders = self.new_orders(&snapshot.openings).await;
        let mut woken: HashSet<Uuid> = HashSet::new();
        {
            let mut rooms = self.rooms.write().expect("room cache lock");
            for row in snapshot.rooms {
                let room = rooms
                    .entry(row.concert_id)
                    .or_insert_with(|| Room::new(row.policy.clone()));
                let mut opening = snapshot
                    .openings
                    .remove(&row.concert_id)
                    .unwrap_or_default();
                let order_ready = opening.draw.is_none()
                    || room.opening.draw == opening.draw
                    || orders.contains_key(&row.concert_id);
                if !order_ready {
                    // Its order could not be computed: the room stays before its draw until the next refresh.
                    opening = room.opening.clone();
                }
                if room.admitted_upto != row.admitted_upto
                    || room.policy != row.policy
                    || room.opening != opening
                {
                    woken.insert(row.concert_id);
                }
                // The order and the draw it comes from change together, in the same snapshot: nobody
                // sees part of an order.
                if let Some(order) = orders.get(&row.concert_id) {
                    room.order = order.clone();
                } else if opening.draw.is_none() && room.order.places() > 0 {
                    room.order = Arc::new(DrawOrder::none());
                }
                room.opening = opening;
                room.policy = row.policy;
                room.last_seq = row.last_seq;
                room.admitted_upto = row.admitted_upto;
                room.next_admit_at = row.next_admit_at;
                room.abandoned_total = row.abandoned_total;
                room.prune_upto(row.pruned_upto);
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
                let order = room.order.clone();
                for a in closed {
                    room.admissions.remove(&a.upto_seq);
                    room.claimed
                        .retain(|&s| !(a.from_seq..=a.upto_seq).contains(&order.line(s)));
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

impl RoomCache {
    /// The orders of the draws this cache does not hold yet, computed off the async threads and outside
    /// the cache's lock (one SHA-256 per pre-queued place and a sort: tens of milliseconds for 100,000).
    async fn new_orders(&self, openings: &HashMap<Uuid, Opening>) -> HashMap<Uuid, Arc<DrawOrder>> {
        let missing: Vec<(Uuid, Draw)> = {
            let rooms = self.rooms.read().expect("room cache lock");
            openings
                .iter()
                .filter_map(|(id, o)| {
                    let draw = o.draw.as_ref()?;
                    let known = rooms
                        .get(id)
                        .and_then(|r| r.opening.draw.as_ref())
                        .is_some_and(|d| d == draw);
                    (!known).then(|| (*id, draw.clone()))
                })
                .collect()
        };
        if missing.is_empty() {
            return HashMap::new();
        }
        let computed = tokio::task::spawn_blocking(move || {
            missing
                .into_iter()
                .map(|(id, draw)| (id, Arc::new(draw.order())))
                .collect::<HashMap<_, _>>()
        })
        .await;
        computed.unwrap_or_default()
    }
}

/// Refreshes between two prunings of the known places.
const PRUNE_EVERY: u64 = 40;

/// Applies one place's change; true when it may change what its stream shows (claims do not: the
/// place's own requests made them).
fn apply_change(room: &mut Room, change: &PlaceChange) -> bool {
    if room.line(change.seq) <= room.pruned_upto {
        // Pruned by the retention (read as EXPIRED): nothing to remember.
        return false;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::room::tests::{room, t};

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
            cache.take_claims(usize::MAX),
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
