//! Producer and consumer settings, and topic creation. Only the standard Kafka protocol is used, so the same
//! code runs against Apache Kafka and against the tansu broker used on development machines.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::topics::Topics;

/// Base client settings shared by every client.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.keepalive.enable", "true")
        .set("reconnect.backoff.max.ms", "2000");
    config
}

/// How long a producer waits to fill a batch by default (`KAFKA_LINGER_MS`).
pub const DEFAULT_LINGER_MS: u32 = 1;

/// An idempotent producer that waits for every in-sync replica (acks=all): a send that succeeded is on the log
/// exactly once, even if the producer retried.
pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    producer_with_linger(brokers, DEFAULT_LINGER_MS)
}

/// [`producer`] with its batching delay: longer means fewer, larger produce requests (less broker work per
/// message under load) at the cost of that much latency per send.
pub fn producer_with_linger(brokers: &str, linger_ms: u32) -> anyhow::Result<FutureProducer> {
    client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        // murmur2 is what the Java client uses, so every producer maps a key to the same partition.
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "15000")
        .create()
        .context("creating Kafka producer")
}

/// Creates the service's topics if they are missing.
pub async fn ensure_topics(brokers: &str, topics: &Topics) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .context("creating Kafka admin client")?;
    let wanted = topics.with_partitions();
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .context("creating topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}
