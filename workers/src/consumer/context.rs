//! The consumer's rebalance hook: stored offsets are committed synchronously before partitions are taken
//! away, so the next owner starts right after the last command this process finished.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};

/// Commits on revoke. Nothing is in flight at that moment: the consumer loop only polls (which is when
/// rebalance callbacks run) between batches, after the previous batch's offsets were stored.
///
/// Also keeps the number of partitions this process owns, for the stuck-group watchdog and the metrics.
#[derive(Default)]
pub(crate) struct CommitOnRevoke {
    pub assigned: Arc<AtomicUsize>,
}

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked; committing stored offsets");
                commit_stored(consumer);
                self.set_assigned(0);
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
                self.set_assigned(partitions.count());
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance failed"),
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
