//! The reply path: every api instance reads the whole reply topic into a bounded, expiring map and wakes the
//! requests waiting for an outcome (`Prefer: wait`). When the map does not have an outcome (another instance
//! restarted, the reply came before this instance started) the stored outcome in Postgres answers instead.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concert_core::commands::{CommandKind, Outcome, Reply};
use concert_core::kafka::FetchSettings;
use concert_core::kafka_stats::{self, Counted};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::rooms::RoomCache;
use crate::seat_maps::SeatMaps;

/// Replies count as flowing while the last one arrived less than this long ago.
pub const FLOWING_WITHIN: Duration = Duration::from_secs(2);

/// Outcomes seen on the reply topic, and the requests waiting for theirs.
pub struct ReplyHub {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
    /// Told of places a reply completed, so a status poll right after a payment already says COMPLETED.
    rooms: Arc<RoomCache>,
    /// Told of seats a reply changed, so the next read of their map is fresh.
    seat_maps: Arc<SeatMaps>,
}

#[derive(Default)]
struct Inner {
    /// When the reader last handed over a reply: replies flow if that was recent.
    last_reply: Option<Instant>,
    done: HashMap<Uuid, Reply>,
    order: VecDeque<(Instant, Uuid)>,
    waiters: HashMap<Uuid, Vec<oneshot::Sender<Reply>>>,
}

impl ReplyHub {
    pub fn new(
        capacity: usize,
        ttl: Duration,
        rooms: Arc<RoomCache>,
        seat_maps: Arc<SeatMaps>,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
            ttl,
            rooms,
            seat_maps,
        }
    }

    /// The outcome, if this instance has seen it.
    pub fn get(&self, request_id: Uuid) -> Option<Reply> {
        self.inner
            .lock()
            .expect("reply hub lock")
            .done
            .get(&request_id)
            .cloned()
    }

    /// A receiver that gets the outcome of `request_id`. Subscribe before publishing the command, so a fast
    /// reply cannot slip past.
    pub fn subscribe(&self, request_id: Uuid) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().expect("reply hub lock");
        match inner.done.get(&request_id) {
            Some(reply) => {
                let _ = tx.send(reply.clone());
            }
            None => inner.waiters.entry(request_id).or_default().push(tx),
        }
        rx
    }

    /// Records an outcome and wakes its waiters. A replayed refusal is not an outcome: the request was
    /// answered 503, and a retry with its key, which may be waiting now, is to be decided afresh.
    pub fn publish(&self, reply: Reply) {
        if reply.is_refusal() {
            let mut inner = self.inner.lock().expect("reply hub lock");
            inner.last_reply = Some(Instant::now());
            return;
        }
        if let Some(place) = reply.completed_place {
            self.rooms.mark_completed(place);
        }
        if let Outcome::Succeeded { result } = &reply.outcome {
            if reply.kind != CommandKind::Join {
                // Every other command that succeeds changes seats: its date's, or (a cancel names none)
                // some date's.
                let date = result
                    .get("date_id")
                    .and_then(|d| d.as_str())
                    .and_then(|d| Uuid::parse_str(d).ok());
                self.seat_maps.changed(date);
            }
        }
        self.rooms.learn_join(&reply);
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("reply hub lock");
        inner.last_reply = Some(now);
        for waiter in inner.waiters.remove(&reply.request_id).unwrap_or_default() {
            let _ = waiter.send(reply.clone());
        }
        if inner.done.insert(reply.request_id, reply.clone()).is_none() {
            inner.order.push_back((now, reply.request_id));
        }
        self.evict(&mut inner, now);
    }

    /// Drops outcomes past their time or beyond capacity, and waiters that gave up.
    /// Whether replies are coming through: one arrived within [`FLOWING_WITHIN`]. While they do, a waiting
    /// request trusts its reply to come and looks in Postgres only rarely.
    pub fn flowing(&self) -> bool {
        self.inner
            .lock()
            .expect("reply hub lock")
            .last_reply
            .is_some_and(|at| at.elapsed() < FLOWING_WITHIN)
    }

    pub fn prune(&self) {
        let mut inner = self.inner.lock().expect("reply hub lock");
        inner.waiters.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        self.evict(&mut inner, Instant::now());
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(at, id)) = inner.order.front() {
            if inner.order.len() <= self.capacity && now.duration_since(at) < self.ttl {
                break;
            }
            inner.order.pop_front();
            inner.done.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("reply hub lock").done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the reply topic from its end on every partition (no consumer group: each instance reads it all)
/// and feeds the hub. Reconnects on its own when the broker goes away.
pub async fn run_reply_reader(
    hub: Arc<ReplyHub>,
    brokers: String,
    fetch: FetchSettings,
    topic: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match read_replies(&hub, &brokers, fetch, &topic, &mut shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = ?err, "reply reader failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn read_replies(
    hub: &ReplyHub,
    brokers: &str,
    fetch: FetchSettings,
    topic: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut config = concert_core::kafka::client_config(brokers);
    // Replies are latency-bound like commands: see FetchSettings for how long the broker holds a fetch.
    fetch.apply(&mut config);
    kafka_stats::enable(&mut config);
    let consumer: StreamConsumer<Counted> = config
        // A group id is required by the client but never joined: partitions are assigned by hand.
        .set(
            "group.id",
            format!("concert-api-replies-{}", Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(Counted::new("reply-consumer"))
        .context("creating reply consumer")?;
    let metadata = tokio::task::block_in_place(|| {
        consumer.fetch_metadata(Some(topic), Duration::from_secs(5))
    })
    .context("reading reply topic metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "reply topic {topic} has no partitions yet"
    );
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::End)
            .context("building assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning reply partitions")?;
    tracing::info!(topic, partitions = partitions.len(), "reading replies");
    // The gauge of each partition, looked up once rather than per reply (a registry lookup and a label).
    let mut last_offsets: HashMap<i32, metrics::Gauge> = HashMap::new();
    let transit = metrics::histogram!("reply_transit_seconds");
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            message = consumer.recv() => {
                let message = match message {
                    Ok(message) => message,
                    // The client reconnects and keeps its positions: read on, nothing is skipped.
                    Err(err) if concert_core::kafka::is_connection_notice(&err) => {
                        tracing::debug!(error = %err, "broker connection down; the client reconnects");
                        continue;
                    }
                    Err(err) => return Err(err).context("reading a reply"),
                };
                let Some(payload) = message.payload() else { continue };
                // From the worker's send to here: the reply's hop through the broker.
                if let Some(sent_ms) = message.timestamp().to_millis() {
                    let transit_ms = chrono::Utc::now().timestamp_millis() - sent_ms;
                    transit.record(transit_ms.max(0) as f64 / 1000.0);
                }
                match serde_json::from_slice::<Reply>(payload) {
                    Ok(reply) => hub.publish(reply),
                    Err(err) => tracing::warn!(error = %err, offset = message.offset(), "undecodable reply skipped"),
                }
                last_offsets
                    .entry(message.partition())
                    .or_insert_with(|| metrics::gauge!("reply_last_offset", "partition" => message.partition().to_string()))
                    .set(message.offset() as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(capacity: usize) -> ReplyHub {
        ReplyHub::new(
            capacity,
            Duration::from_secs(60),
            Arc::new(RoomCache::default()),
            Arc::new(SeatMaps::default()),
        )
    }

    fn reply(id: Uuid) -> Reply {
        Reply {
            request_id: id,
            user_id: Uuid::nil(),
            kind: CommandKind::Hold,
            fingerprint: String::new(),
            outcome: Outcome::Succeeded {
                result: serde_json::json!({}),
            },
            completed_place: None,
        }
    }

    #[tokio::test]
    async fn waiter_is_woken_by_publish() {
        let hub = hub(10);
        let id = Uuid::new_v4();
        let rx = hub.subscribe(id);
        hub.publish(reply(id));
        assert_eq!(rx.await.unwrap().request_id, id);
    }

    #[test]
    fn replies_flow_only_while_they_keep_coming() {
        let hub = hub(10);
        assert!(!hub.flowing(), "nothing came yet");
        hub.publish(reply(Uuid::new_v4()));
        assert!(hub.flowing());
        hub.inner.lock().unwrap().last_reply =
            Some(Instant::now() - FLOWING_WITHIN - Duration::from_millis(1));
        assert!(!hub.flowing(), "the last reply is too old");
    }

    #[tokio::test]
    async fn late_subscriber_gets_stored_outcome() {
        let hub = hub(10);
        let id = Uuid::new_v4();
        hub.publish(reply(id));
        assert_eq!(hub.subscribe(id).await.unwrap().request_id, id);
    }

    #[test]
    fn capacity_bounds_the_map() {
        let hub = hub(3);
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            hub.publish(reply(*id));
        }
        assert_eq!(hub.len(), 3);
        assert!(hub.get(ids[0]).is_none());
        assert!(hub.get(ids[4]).is_some());
    }

    #[test]
    fn abandoned_waiters_are_pruned() {
        let hub = hub(3);
        drop(hub.subscribe(Uuid::new_v4()));
        hub.prune();
        assert!(hub.inner.lock().unwrap().waiters.is_empty());
    }
}
