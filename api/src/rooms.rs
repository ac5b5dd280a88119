//! Per-instance cache of every waiting room's admission state, refreshed from Postgres several times a second.
//! Queue tokens carry their place (concert, seq), so with this cache a status poll or an admission check is
//! answered from memory: the hot path of a flash crowd never touches the database.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_core::admission::{place_status, Admission, PlaceStatus, Policy};
use concert_core::commands::PlaceRef;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db;

/// One room as last read.
#[derive(Debug, Clone)]
pub struct Room {
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
    /// Admission steps whose window may still be open, by `upto_seq`.
    admissions: BTreeMap<i64, Admission>,
    completed: HashSet<i64>,
}

impl Room {
    pub fn status(&self, seq: i64, now: DateTime<Utc>) -> PlaceStatus {
        let step = self
            .admissions
            .range(seq..)
            .next()
            .map(|(_, a)| *a)
            .filter(|a| a.from_seq <= seq);
        let steps: Vec<Admission> = step.into_iter().collect();
        place_status(
            seq,
            self.admitted_upto,
            &steps,
            self.completed.contains(&seq),
            &self.policy,
            self.next_admit_at,
            now,
        )
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
                    .filter(|s| !self.completed.contains(s))
                    .count() as i64
            })
            .sum()
    }
}

/// How far the incremental refresh has read.
#[derive(Debug, Default)]
struct Cursor {
    admissions_since: Option<DateTime<Utc>>,
    completed_since: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct RoomCache {
    rooms: RwLock<HashMap<Uuid, Room>>,
    cursor: tokio::sync::Mutex<Cursor>,
}

/// Rows committed this long before a refresh's start may still become visible after it (a transaction's
/// `now()` is its start, not its commit), so each refresh re-reads that much of the past.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(30);

impl RoomCache {
    pub fn status(&self, concert_id: Uuid, seq: i64, now: DateTime<Utc>) -> Option<PlaceStatus> {
        self.rooms
            .read()
            .expect("room cache lock")
            .get(&concert_id)
            .map(|r| r.status(seq, now))
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
        if let Some(room) = self
            .rooms
            .write()
            .expect("room cache lock")
            .get_mut(&place.concert_id)
        {
            room.completed.insert(place.seq);
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

    /// Reads what changed since the last refresh, in one snapshot so the frontier and the steps agree.
    pub async fn refresh(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut cursor = self.cursor.lock().await;
        let snapshot =
            db::rooms::read_changes(pool, cursor.admissions_since, cursor.completed_since).await?;
        let now = snapshot.now;
        let mut rooms = self.rooms.write().expect("room cache lock");
        let mut fresh: HashMap<Uuid, Room> = HashMap::with_capacity(snapshot.rooms.len());
        for row in snapshot.rooms {
            let mut room = rooms.remove(&row.concert_id).unwrap_or_else(|| Room {
                policy: row.policy.clone(),
                last_seq: 0,
                admitted_upto: 0,
                next_admit_at: None,
                admissions: BTreeMap::new(),
                completed: HashSet::new(),
            });
            room.policy = row.policy;
            room.last_seq = row.last_seq;
            room.admitted_upto = row.admitted_upto;
            room.next_admit_at = row.next_admit_at;
            // A closed window stays closed: forget it (an admitted seq with no step reads as EXPIRED).
            room.admissions.retain(|_, a| a.active_until > now);
            fresh.insert(row.concert_id, room);
        }
        for (concert_id, step) in snapshot.admissions {
            if let Some(room) = fresh.get_mut(&concert_id) {
                room.admissions.insert(step.upto_seq, step);
            }
        }
        for (concert_id, seq) in snapshot.completed {
            if let Some(room) = fresh.get_mut(&concert_id) {
                room.completed.insert(seq);
            }
        }
        *rooms = fresh;
        cursor.admissions_since = Some(now - OVERLAP);
        cursor.completed_since = Some(now - OVERLAP);
        Ok(())
    }
}

/// Refreshes the cache every `every` until shutdown; failures are logged and retried on the next beat.
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
