//! Producer and consumer settings, and topic creation. Only the standard Kafka protocol is used, so the same
//! code runs against Apache Kafka and against the nisshi or tansu brokers used on development machines.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::kafka_stats::{self, Counted, Producer};
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

/// How a consumer asks the broker to hold a fetch that finds nothing new: `fetch.wait.max.ms` (how long the
/// broker may hold it) and `fetch.min.bytes` (how much it waits for). Commands and replies are latency-bound,
/// so the broker must answer as soon as a record arrives; how long it then holds an empty fetch decides how
/// often an idle consumer asks again, i.e. the broker's CPU while idle.
///
/// Brokers differ here. Apache Kafka parks a fetch and wakes it when a record arrives, so a long wait costs
/// nothing in latency. tansu and nisshi re-read their storage in rounds while they hold a fetch, sleeping
/// half of the remaining wait between rounds: a record that arrives early in a hold waits up to half the
/// wait, and a short wait makes an idle consumer re-fetch hundreds of times a second (measured figures in
/// docs/BROKER.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSettings {
    /// `KAFKA_FETCH_WAIT_MS`: `fetch.wait.max.ms` of every consumer of commands and replies.
    pub wait_ms: u32,
    /// `KAFKA_FETCH_MIN_BYTES`: `fetch.min.bytes`; 1 answers as soon as any record is there.
    pub min_bytes: u32,
}

impl FetchSettings {
    /// The default `KAFKA_FETCH_WAIT_MS`.
    pub const DEFAULT_WAIT_MS: u32 = 20;
    /// The default `KAFKA_FETCH_MIN_BYTES`.
    pub const DEFAULT_MIN_BYTES: u32 = 1;

    pub fn from_env() -> anyhow::Result<Self> {
        use crate::env_vars::env_parse;
        let settings = Self {
            wait_ms: env_parse("KAFKA_FETCH_WAIT_MS", Self::DEFAULT_WAIT_MS)?,
            min_bytes: env_parse("KAFKA_FETCH_MIN_BYTES", Self::DEFAULT_MIN_BYTES)?,
        };
        anyhow::ensure!(
            settings.min_bytes >= 1,
            "KAFKA_FETCH_MIN_BYTES must be at least 1"
        );
        Ok(settings)
    }

    /// Sets `fetch.wait.max.ms` and `fetch.min.bytes` on a consumer's configuration.
    pub fn apply<'a>(&self, config: &'a mut ClientConfig) -> &'a mut ClientConfig {
        config
            .set("fetch.wait.max.ms", self.wait_ms.to_string())
            .set("fetch.min.bytes", self.min_bytes.to_string())
    }
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            wait_ms: Self::DEFAULT_WAIT_MS,
            min_bytes: Self::DEFAULT_MIN_BYTES,
        }
    }
}

/// Is this a consumer's notice that a broker connection is down (`BrokerTransportFailure`,
/// `AllBrokersDown`)? librdkafka reconnects on its own and keeps the consumer's positions; it delivers
/// these through the consumer's queue, where they pile up while the broker is away (one per failed
/// connection attempt) and are read after it is back. A reader must go on reading past them at once:
/// sleeping a backoff on each kept the workers from applying anything for 20-25 s after a 3 s broker
/// restart (the fault suite's `broker_restart`), and tearing the consumer down made a reply reader start
/// again from the end of the topic.
pub fn is_connection_notice(err: &rdkafka::error::KafkaError) -> bool {
    matches!(
        err,
        rdkafka::error::KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

/// How long a producer waits to fill a batch by default (`KAFKA_LINGER_MS`).
pub const DEFAULT_LINGER_MS: u32 = 1;

/// An idempotent producer that waits for every in-sync replica (acks=all): a send that succeeded is on the log
/// exactly once, even if the producer retried.
pub fn producer(brokers: &str) -> anyhow::Result<Producer> {
    producer_with_linger(brokers, DEFAULT_LINGER_MS)
}

/// How long a producer keeps trying to deliver a message by default before reporting it failed.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// [`producer`] with its batching delay: longer means fewer, larger produce requests (less broker work per
/// message under load) at the cost of that much latency per send.
pub fn producer_with_linger(brokers: &str, linger_ms: u32) -> anyhow::Result<Producer> {
    producer_with(brokers, linger_ms, DEFAULT_MESSAGE_TIMEOUT)
}

/// [`producer_with_linger`] that gives up on a delivery after `message_timeout` (queueing and retries
/// included): a send then fails instead of waiting for a broker that is down.
pub fn producer_with(
    brokers: &str,
    linger_ms: u32,
    message_timeout: Duration,
) -> anyhow::Result<Producer> {
    let mut config = client_config(brokers);
    kafka_stats::enable(&mut config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        // murmur2 is what the Java client uses, so every producer maps a key to the same partition.
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().max(1).to_string(),
        )
        .create_with_context(Counted::new("producer"))
        .context("creating Kafka producer")
}

/// Produce requests the command producer keeps in flight to a broker (all partitions together).
pub const COMMAND_REQUESTS_IN_FLIGHT: u32 = 5;

/// The api's command producer. Like [`producer_with`] (acks=all, murmur2, a delivery timeout) but not
/// idempotent, for two reasons:
///
/// - An idempotent producer keeps at most 5 produce requests in flight per partition, and librdkafka's
///   broker thread busy-polls while a partition has messages past their linger and 5 requests in flight
///   (`rd_kafka_toppar_producer_serve` returns with the wake-up time already past). With a durable
///   development broker answering a produce in milliseconds that is the normal state under load: the
///   thread took as much CPU as all the api's request handling (`./dev profile`, docs/PERFORMANCE.md).
/// - Nothing needs it: a command carries its request id and the workers apply a request once however
///   often it is on the log (a producer retry, a client retry with its `Idempotency-Key` and a redelivery
///   are the same case to them). A retry after a broker error may put a command behind one sent after it;
///   commands of one fan are sent one at a time (each waits for its answer), so no fan's order changes.
pub fn command_producer(
    brokers: &str,
    linger_ms: u32,
    message_timeout: Duration,
) -> anyhow::Result<Producer> {
    let mut config = client_config(brokers);
    kafka_stats::enable(&mut config)
        .set("enable.idempotence", "false")
        // The broker's share: few produce requests at a time, so messages gather into batches while they
        // wait (unbounded, a durable development broker drowned in small concurrent writes and timed
        // deliveries out). Waiting for room here does not spin: a partition only asks to be woken when it
        // may send.
        .set(
            "max.in.flight.requests.per.connection",
            COMMAND_REQUESTS_IN_FLIGHT.to_string(),
        )
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().max(1).to_string(),
        )
        .create_with_context(Counted::new("command-producer"))
        .context("creating Kafka command producer")
}

/// Replication factor of the topics `ensure_topics` creates by default: one copy, which is all a single
/// development broker can hold. Production sets `KAFKA_REPLICATION_FACTOR=3`.
pub const DEFAULT_REPLICATION_FACTOR: i32 = 1;

/// `KAFKA_REPLICATION_FACTOR`: how many brokers keep a copy of each topic's partitions.
pub fn replication_factor_from_env() -> anyhow::Result<i32> {
    let factor = match std::env::var("KAFKA_REPLICATION_FACTOR") {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse::<i32>()
            .with_context(|| format!("KAFKA_REPLICATION_FACTOR: {raw:?} is not a number"))?,
        _ => DEFAULT_REPLICATION_FACTOR,
    };
    anyhow::ensure!(factor >= 1, "KAFKA_REPLICATION_FACTOR must be at least 1");
    Ok(factor)
}

/// Creates the service's topics if they are missing, each partition kept on `replication_factor` brokers.
/// Existing topics are left as they are (a changed factor needs a partition reassignment by an operator).
pub async fn ensure_topics(
    brokers: &str,
    topics: &Topics,
    replication_factor: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .context("creating Kafka admin client")?;
    let wanted = topics.with_partitions();
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, parts)| {
            NewTopic::new(name, *parts, TopicReplication::Fixed(replication_factor))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_settings_set_both_consumer_properties() {
        let mut config = ClientConfig::new();
        FetchSettings {
            wait_ms: 20,
            min_bytes: 1,
        }
        .apply(&mut config);
        assert_eq!(config.get("fetch.wait.max.ms"), Some("20"));
        assert_eq!(config.get("fetch.min.bytes"), Some("1"));
    }

    #[test]
    fn the_default_answers_at_once_and_holds_an_empty_fetch_briefly() {
        let default = FetchSettings::default();
        assert_eq!(default.min_bytes, 1, "more would hold every lone command");
        assert!(
            (5..=100).contains(&default.wait_ms),
            "tansu and nisshi add up to half the wait to a lone command: {default:?}"
        );
    }
}
