//! Who has which live-update streams open. A stream outlives the request limits (its headers are sent at
//! once, then it may stay open for the whole wait), so without a count one queue token could open streams
//! until the instance ran out of memory or descriptors. At most [`STREAMS_PER_PLACE`] streams per place in
//! line (a fan's tabs and devices; a fourth closes the oldest) and a fixed number per instance (beyond it
//! a new stream is refused with 503, and the client polls the status instead).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// Streams one place in line (one queue token) may hold open at once.
pub const STREAMS_PER_PLACE: usize = 3;

/// A place in line: (concert, seq).
type Place = (Uuid, u64);

/// The open streams of one instance.
#[derive(Debug)]
pub struct StreamRegistry {
    max_open: usize,
    inner: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    count: usize,
    next_id: u64,
    /// Per place, its streams oldest first, each with the signal that closes it.
    by_place: HashMap<Place, VecDeque<(u64, Arc<Notify>)>>,
}

/// One open stream, counted until dropped. `closed` is signalled when a newer stream of the same place
/// took its slot: the stream should end then.
#[derive(Debug)]
pub struct StreamTicket {
    registry: Arc<StreamRegistry>,
    place: Place,
    id: u64,
    pub closed: Arc<Notify>,
}

/// The instance holds as many streams as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyStreams;

impl StreamRegistry {
    pub fn new(max_open: usize) -> Self {
        Self {
            max_open,
            inner: Mutex::new(Open::default()),
        }
    }

    /// Opens a stream for `place`, closing the place's oldest if it already has [`STREAMS_PER_PLACE`].
    pub fn open(self: &Arc<Self>, place: Place) -> Result<StreamTicket, TooManyStreams> {
        let mut open = self.inner.lock().expect("stream registry lock");
        if open.count >= self.max_open {
            return Err(TooManyStreams);
        }
        open.count += 1;
        open.next_id += 1;
        let id = open.next_id;
        let closed = Arc::new(Notify::new());
        let streams = open.by_place.entry(place).or_default();
        if streams.len() >= STREAMS_PER_PLACE {
            if let Some((_, oldest)) = streams.pop_front() {
                // Stored as a permit if that stream is not waiting right now: it ends at its next wait.
                oldest.notify_one();
            }
        }
        streams.push_back((id, closed.clone()));
        Ok(StreamTicket {
            registry: self.clone(),
            place,
            id,
            closed,
        })
    }

    /// Streams open on this instance (closing ones included until they end).
    pub fn open_count(&self) -> usize {
        self.inner.lock().expect("stream registry lock").count
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = self.registry.inner.lock().expect("stream registry lock");
        open.count -= 1;
        if let Some(streams) = open.by_place.get_mut(&self.place) {
            streams.retain(|(id, _)| *id != self.id);
            if streams.is_empty() {
                open.by_place.remove(&self.place);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fourth_stream_of_a_place_closes_the_oldest() {
        let registry = Arc::new(StreamRegistry::new(100));
        let place = (Uuid::new_v4(), 1);
        let first = registry.open(place).unwrap();
        let _second = registry.open(place).unwrap();
        let _third = registry.open(place).unwrap();
        let _other_place = registry.open((place.0, 2)).unwrap();
        let fourth = registry.open(place).unwrap();
        // The oldest was told to close (the permit waits for it), the newest was not.
        tokio::time::timeout(std::time::Duration::from_secs(1), first.closed.notified())
            .await
            .expect("the oldest stream is closed");
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                fourth.closed.notified()
            )
            .await
            .is_err(),
            "the newest stays open"
        );
        assert_eq!(registry.open_count(), 5, "until the closed one ends");
        drop(first);
        assert_eq!(registry.open_count(), 4);
    }

    #[test]
    fn the_instance_refuses_streams_beyond_its_limit_until_one_ends() {
        let registry = Arc::new(StreamRegistry::new(2));
        let a = registry.open((Uuid::new_v4(), 1)).unwrap();
        let _b = registry.open((Uuid::new_v4(), 1)).unwrap();
        assert_eq!(
            registry.open((Uuid::new_v4(), 1)).err(),
            Some(TooManyStreams)
        );
        drop(a);
        assert!(registry.open((Uuid::new_v4(), 1)).is_ok());
    }
}
