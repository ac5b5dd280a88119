//! The consumer's rebalance hook: stored offsets are committed synchronously before partitions are taken
//! away, so the next owner starts right after the last command this process finished.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};

/// Commits on revoke. Nothing is in flight at that moment: the consumer loop only polls (which is when
/// rebalance callbacks run) between batches, after the previous batch's offsets were stored.
pub(crate) struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked; committing stored offsets");
                commit_stored(consumer);
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned")
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
