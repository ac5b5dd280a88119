//! The command consumer: reads the join and booking topics in batches, applies each partition's commands
//! in one transaction, replies, and only then stores the offsets.
//!
//! Partitions in one batch are applied concurrently, each on its own connection; the next batch is not
//! read before this one is done, so one partition is never applied by two tasks of this process at once.

mod batch;
mod context;
mod publish;

use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::instrument;

use crate::apply::{apply_batch, ApplyContext, LogCommand};
use crate::backoff::{sleep_or_stop, stopped, Backoff};
use crate::config::WorkerConfig;
use crate::metrics;
use context::{commit_stored, watch_assignment, CommitOnRevoke};
use publish::Publisher;

/// How long to keep gathering after the first message of a batch. Short: a batch takes what has already
/// arrived, it does not wait for more.
const LINGER: Duration = Duration::from_millis(2);

type CommandConsumer = StreamConsumer<CommitOnRevoke>;

fn create_consumer(config: &WorkerConfig) -> anyhow::Result<CommandConsumer> {
    let mut client = concert_core::kafka::client_config(&config.settings.kafka_brokers);
    // Commands are latency-bound: the broker must answer a fetch as soon as a command arrives; how long it
    // holds an empty one is a trade of idle broker CPU against latency (see FetchSettings).
    config.settings.kafka_fetch.apply(&mut client);
    client
        .set("group.id", &config.group_id)
        .set("client.id", "concert-worker")
        // Offsets are stored by hand after the batch committed; auto-commit then commits only those.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create_with_context(CommitOnRevoke::default())
        .context("creating the Kafka consumer")
}

/// Runs the consumer until shutdown, then commits what was stored and leaves the group.
pub(crate) async fn run(
    config: &WorkerConfig,
    pool: PgPool,
    producer: FutureProducer,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let topics = config.settings.topics();
    let publisher = Publisher {
        producer,
        replies_topic: topics.replies.clone(),
        dead_letters_topic: topics.dead_letters.clone(),
    };
    let consumer = create_consumer(config)?;
    consumer
        .subscribe(&[&topics.joins, &topics.bookings])
        .context("subscribing to the command topics")?;
    let ctx = ApplyContext::new(pool, config.max_holds_per_user).with_shutdown(shutdown.clone());
    tokio::spawn(watch_assignment(
        consumer.context().assigned.clone(),
        shutdown.clone(),
    ));
    tracing::info!(group = %config.group_id, "command consumer started");

    let mut backoff = Backoff::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            read = consumer.recv() => read,
        };
        let first = match first {
            Ok(message) => message.detach(),
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, ?delay, "reading the command log failed");
                if !sleep_or_stop(delay, &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        let messages = gather(&consumer, first, config.max_batch).await;
        if !process(&consumer, &ctx, &publisher, messages).await {
            break;
        }
    }

    commit_stored(&consumer);
    // Closing the consumer leaves the group (so partitions move at once) and may block on the broker.
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .context("closing the consumer")?;
    tracing::info!("command consumer stopped");
    Ok(())
}

/// The first message plus whatever else has already arrived, up to `max`.
async fn gather(consumer: &CommandConsumer, first: OwnedMessage, max: usize) -> Vec<OwnedMessage> {
    let mut messages = vec![first];
    let deadline = Instant::now() + LINGER;
    while messages.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "reading the command log failed");
                break;
            }
            Err(_) => break,
        }
    }
    messages
}

/// Applies one batch and stores the offsets of the partitions that finished. Returns `false` when
/// shutdown interrupted it: those partitions' offsets stay where they were, to be read again.
async fn process(
    consumer: &CommandConsumer,
    ctx: &ApplyContext,
    publisher: &Publisher,
    messages: Vec<OwnedMessage>,
) -> bool {
    let groups = batch::group_by_partition(messages, |m| (m.topic().to_owned(), m.partition()));
    let results = join_all(groups.iter().map(|((topic, partition), messages)| {
        process_partition(ctx, publisher, topic, *partition, messages)
    }))
    .await;
    let mut finished = true;
    for (((topic, partition), messages), result) in groups.iter().zip(results) {
        let Some(last) = messages.last() else {
            continue;
        };
        match result {
            Ok(()) => {
                // Offsets are stored only now: the outcome is committed and the replies were sent.
                if let Err(err) = consumer.store_offset(topic, *partition, last.offset()) {
                    // Usually the partition was revoked meanwhile; its new owner re-reads and dedupes.
                    tracing::warn!(topic, partition, error = %err, "could not store the offset");
                }
                metrics::offset_processed(topic, *partition, last.offset());
            }
            Err(err) => {
                tracing::info!(
                    topic,
                    partition,
                    error = format!("{err:#}"),
                    "batch left for the next reader"
                );
                finished = false;
            }
        }
    }
    finished
}

#[instrument(skip_all, fields(topic = topic, partition = partition, size = messages.len()))]
async fn process_partition(
    ctx: &ApplyContext,
    publisher: &Publisher,
    topic: &str,
    partition: i32,
    messages: &[OwnedMessage],
) -> anyhow::Result<()> {
    let mut commands = Vec::with_capacity(messages.len());
    let mut unreadable = Vec::new();
    for message in messages {
        match batch::decode(message.payload()) {
            Ok(envelope) => commands.push(LogCommand {
                partition,
                offset: message.offset(),
                envelope,
            }),
            Err(reason) => unreadable.push((message, reason)),
        }
    }
    let replies = apply_batch(ctx, &commands)
        .await
        .with_context(|| format!("applying {topic}[{partition}]"))?;
    publisher.send_replies(&replies).await;
    for (message, reason) in unreadable {
        publisher.dead_letter(message, &reason).await;
    }
    Ok(())
}
