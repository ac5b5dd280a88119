//! Seat maps as served: each date's map read from Postgres at most once per [`FRESH_FOR`] per instance,
//! kept as the finished JSON body with its `ETag`, so a thousand fans re-reading a 10,000-seat map every
//! two seconds cost one query per date per instance, and a fan whose map did not change gets a 304 with
//! no body (`If-None-Match`).
//!
//! The contract allows a change to take up to a second to show; a map is kept half of that. A change this
//! instance learns of (every api reads every reply: a hold, release, checkout or cancel that succeeded)
//! drops its date's map at once, so a fan who held a seat and reads the map next sees the hold. One request
//! per date reads the database while the others of that moment wait for its answer (a per-date lock), so
//! a stale map never sends a crowd to Postgres at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long a map read from Postgres is served as it is.
pub const FRESH_FOR: Duration = Duration::from_millis(500);
/// Dates kept at most; past it, maps not read for a minute are dropped.
const MAX_DATES: usize = 10_000;
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// A rendered seat map.
#[derive(Clone)]
pub struct SeatMap {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl SeatMap {
    /// The map's body with a strong `ETag` of its bytes (the first 16 bytes of their SHA-256, in hex).
    pub fn new(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let etag =
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value");
        Self {
            body: Bytes::from(body),
            etag,
        }
    }

    /// Does an `If-None-Match` header name this map (a list of tags, weak or strong, or `*`)?
    pub fn matches(&self, if_none_match: &str) -> bool {
        let ours = self.etag.as_bytes();
        if_none_match
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
    }
}

#[derive(Default)]
struct Slot {
    /// The map, and when the read that rendered it started.
    map: Option<(Instant, SeatMap)>,
}

/// The per-instance cache of rendered seat maps.
#[derive(Default)]
pub struct SeatMaps {
    dates: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Slot>>>>,
    /// When a change of each date was last learnt of; a map read before it is stale.
    changed: Mutex<HashMap<Uuid, Instant>>,
    /// When a change of an unnamed date was last learnt of (every map read before it is stale).
    changed_any: Mutex<Option<Instant>>,
}

impl SeatMaps {
    /// The date's map, fresh within [`FRESH_FOR`]; `read` renders it from the database when it is not.
    pub async fn get<F, Fut, E>(&self, date_id: Uuid, read: F) -> Result<SeatMap, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    {
        let slot = self.slot(date_id);
        let mut slot = slot.lock().await;
        if let Some((at, map)) = &slot.map {
            if at.elapsed() < FRESH_FOR && !self.changed_since(date_id, *at) {
                return Ok(map.clone());
            }
        }
        // Stamped before the read: a change learnt of while it runs makes it stale at once.
        let started = Instant::now();
        let map = SeatMap::new(read().await?);
        slot.map = Some((started, map.clone()));
        Ok(map)
    }

    /// A change of `date_id` (or of some date, when `None`) was applied: maps read before now are stale.
    pub fn changed(&self, date_id: Option<Uuid>) {
        let now = Instant::now();
        match date_id {
            Some(date) => {
                let mut changed = self.changed.lock().expect("seat map lock");
                if changed.len() >= MAX_DATES {
                    changed.retain(|_, at| at.elapsed() < FRESH_FOR);
                }
                changed.insert(date, now);
            }
            None => *self.changed_any.lock().expect("seat map lock") = Some(now),
        }
    }

    fn changed_since(&self, date_id: Uuid, read_at: Instant) -> bool {
        let any = self.changed_any.lock().expect("seat map lock");
        if any.is_some_and(|at| at >= read_at) {
            return true;
        }
        drop(any);
        let changed = self.changed.lock().expect("seat map lock");
        changed.get(&date_id).is_some_and(|at| *at >= read_at)
    }

    fn slot(&self, date_id: Uuid) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut dates = self.dates.lock().expect("seat map lock");
        if dates.len() >= MAX_DATES && !dates.contains_key(&date_id) {
            // Maps nobody waits for and nobody read lately; a slot in use is kept.
            dates.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |s| {
                        s.map
                            .as_ref()
                            .is_some_and(|(at, _)| at.elapsed() < FORGET_AFTER)
                    })
            });
        }
        dates.entry(date_id).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_tag_matches_itself_weak_or_in_a_list_and_nothing_else() {
        let map = SeatMap::new(b"{\"seats\":[]}".to_vec());
        let tag = map.etag.to_str().unwrap().to_owned();
        assert!(map.matches(&tag));
        assert!(map.matches(&format!("W/{tag}")));
        assert!(map.matches(&format!("\"other\", {tag}")));
        assert!(map.matches("*"));
        assert!(!map.matches("\"other\""));
        assert_ne!(
            SeatMap::new(b"{}".to_vec()).etag,
            map.etag,
            "another body, another tag"
        );
    }

    #[tokio::test]
    async fn a_fresh_map_is_read_once_however_many_ask_at_once() {
        let maps = SeatMaps::default();
        let reads = AtomicUsize::new(0);
        let date = Uuid::new_v4();
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(b"map".to_vec())
        };
        let all = futures::future::join_all((0..50).map(|_| maps.get(date, read))).await;
        assert!(all.iter().all(|m| m.as_ref().unwrap().body == "map"));
        assert_eq!(reads.load(Ordering::SeqCst), 1);

        tokio::time::sleep(FRESH_FOR).await;
        maps.get(date, read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2, "a stale map is read again");

        maps.changed(Some(Uuid::new_v4()));
        maps.get(date, read).await.unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "another date's change leaves it"
        );
        maps.changed(Some(date));
        maps.get(date, read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 3, "its own change drops it");
        maps.changed(None);
        maps.get(date, read).await.unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            4,
            "a change of an unnamed date drops it"
        );
    }
}
