//! The consumer's rebalance hook: stored offsets are committed synchronously before partitions are taken
//! away, so the next owner starts right after the last command this process finished; partitions given
//! to this process start a little before their committed offsets (see [`super::resume`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, TopicPartitionList};

use super::resume::ResumePoints;

/// Commits on revoke, and plans where assigned partitions start. The consumer loop only polls (which is
/// when rebalance callbacks run) between batches, after the previous batch committed in Postgres; its
/// offsets are stored once its replies are acknowledged, which may be after the revoke. Then they fail
/// to store, or are stored for a partition that moved: either way the next owner reads those records
/// again and dedupes them by request id. A batch gathered before the revoke may likewise be applied
/// after it.
///
/// Also keeps the number of partitions this process owns, for the stuck-group watchdog and the metrics.
#[derive(Default)]
pub(crate) struct CommitOnRevoke {
    pub assigned: Arc<AtomicUsize>,
    pub resume: Arc<ResumePoints>,
    /// Counts assignments and revokes, so the consumer loop can tell records read before a rebalance.
    pub rebalances: AtomicU64,
}

impl ClientContext for CommitOnRevoke {
    fn stats(&self, statistics: rdkafka::Statistics) {
        concert_core::kafka_stats::record_requests("command-consumer", &statistics);
    }
}

impl ConsumerContext for CommitOnRevoke {
    /// The default rebalance (assign what the group gave, unassign on revoke), with the start offsets of an
    /// assignment rewritten by [`ResumePoints::plan`]. This consumer uses the eager protocol (the default
    /// assignors), so an assignment replaces the previous one and a revoke takes everything.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let start = self.resume.plan(consumer, partitions);
                tracing::info!(partitions = %describe(&start), "partitions assigned");
                if let Err(err) = consumer.assign(&start) {
                    tracing::error!(error = %err, "assigning partitions failed");
                }
                self.set_assigned(partitions.count());
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    partitions = %describe(partitions),
                    lost = consumer.assignment_lost(),
                    "partitions revoked; committing stored offsets"
                );
                commit_stored(consumer);
                self.revoke_all(consumer);
            }
            other => {
                tracing::warn!(error = %RDKafkaErrorCode::from(other), "rebalance failed");
                self.revoke_all(consumer);
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(err) = result {
            if !is_nothing_to_commit(&err) {
                tracing::warn!(error = %err, "committing offsets failed");
            }
        }
    }
}

impl CommitOnRevoke {
    fn revoke_all(&self, consumer: &BaseConsumer<Self>) {
        self.resume.clear();
        if let Err(err) = consumer.unassign() {
            tracing::error!(error = %err, "unassigning partitions failed");
        }
        self.set_assigned(0);
    }

    fn set_assigned(&self, count: usize) {
        self.assigned.store(count, Ordering::Relaxed);
        metrics::gauge!("concert_worker_assigned_partitions").set(count as f64);
    }
}

/// Warns while this process owns no partition. Expected when there are more workers than partitions;
/// otherwise it means the group is stuck at the broker (tansu 0.6 was seen wedging a group for good when a
/// member left in the middle of a rebalance), which nothing but an operator can mend.
pub(crate) async fn watch_assignment(
    assigned: Arc<AtomicUsize>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
    let mut since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if assigned.load(Ordering::Relaxed) > 0 {
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= PATIENCE {
            tracing::warn!(
                seconds = since.elapsed().as_secs(),
                "no command partitions assigned: fine if there are more workers than partitions, \
                 otherwise the consumer group is stuck at the broker"
            );
        }
    }
}

/// Commits the stored offsets and waits for the broker's answer.
pub(crate) fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>) {
    match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => tracing::debug!("offsets committed"),
        Err(err) if is_nothing_to_commit(&err) => {}
        Err(err) => tracing::warn!(error = %err, "committing offsets failed"),
    }
}

fn is_nothing_to_commit(err: &KafkaError) -> bool {
    matches!(err, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
}

fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|p| format!("{}[{}]", p.topic(), p.partition()))
        .collect::<Vec<_>>()
        .join(",")
}
