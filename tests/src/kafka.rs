//! Reading topics from the beginning and producing raw messages, as a test sees the log.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::wait::Deadline;

/// One message as read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// Deletes topics; errors are ignored (cleanup only).
pub async fn delete_topics(brokers: &str, topics: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        concert_core::kafka::client_config(brokers).create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    admin
        .delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
        )
        .await?;
    Ok(())
}

/// Every message on `topic` (all `partitions`) from the beginning: reads until at least `at_least` messages
/// arrived and then nothing more came for 1.5 s, or until 60 s passed. Records are in offset order within
/// each partition.
///
/// It does not stop at the high watermark: the tansu broker used here reports `base offset + 1` after a
/// multi-record batch, so a watermark-bounded read misses messages.
pub async fn read_all(brokers: &str, topic: &str, partitions: i32, at_least: usize) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        read_blocking(&brokers, &topic, partitions, at_least, Deadline::secs(60))
    })
    .await
    .expect("reader thread")
    .unwrap_or_else(|err| panic!("reading a topic: {err:#}"))
}

fn read_blocking(
    brokers: &str,
    topic: &str,
    partitions: i32,
    at_least: usize,
    deadline: Deadline,
) -> anyhow::Result<Vec<Record>> {
    const IDLE: Duration = Duration::from_millis(1500);
    // The first fetch (metadata, connection, offset lookup) takes a while; do not call that idleness.
    const START_UP: Duration = Duration::from_secs(3);
    let consumer: BaseConsumer = concert_core::kafka::client_config(brokers)
        .set(
            "group.id",
            format!("test-reader-{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating a reader")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    let mut records = Vec::new();
    let mut last_arrival = std::time::Instant::now() + START_UP;
    while !deadline.passed() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(message) => {
                let message = message.context("reading a message")?;
                records.push(Record {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                });
                last_arrival = std::time::Instant::now();
            }
            None if records.len() >= at_least
                && std::time::Instant::now() >= last_arrival + IDLE =>
            {
                break
            }
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records.dedup_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Produces one message with the service's own producer settings (idempotent, acks=all).
pub async fn produce(brokers: &str, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
    let producer = concert_core::kafka::producer(brokers).expect("producer");
    let delivered = producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("producing to {topic}: {err}"));
    (delivered.partition, delivered.offset)
}
