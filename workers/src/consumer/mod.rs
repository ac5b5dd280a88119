//! The command consumer: reads the join and booking topics in batches, applies each partition's commands
//! in one transaction, replies, and only then stores the offsets.
//!
//! Partitions in one batch are applied concurrently, each on its own connection; the next batch is not
//! read before this one is committed, so one partition is never applied by two tasks of this process at
//! once. Replies are handed to the producer as soon as a batch commits, and the next batch is read while
//! the broker acknowledges them: a task of its own ([`store_offsets`]) stores each batch's offsets once
//! its replies are on the log, batch after batch in the order they were applied.

mod batch;
mod context;
mod dead_letter;
mod publish;
mod resume;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use concert_core::kafka_stats::Producer;
use futures::future::{join_all, BoxFuture};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::instrument;

use crate::apply::{apply_batch, ApplyContext, LogCommand, ShuttingDown};
use crate::backoff::{sleep_or_stop, stopped, Backoff};
use crate::config::WorkerConfig;
use crate::metrics;
use concert_core::commands::Reply;
use context::{commit_stored, watch_assignment, CommitOnRevoke};
use publish::Publisher;
use resume::Verdict;

/// How long to keep gathering after the first message of a batch. Short: a batch takes what has already
/// arrived, it does not wait for more.
const LINGER: Duration = Duration::from_millis(2);
/// How long a seek waits for the fetcher to take the new position.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// Batches applied whose replies may still be on their way to the broker. The consumer waits for room
/// beyond it, so a broker that stops acknowledging stops the consumer too.
const UNACKNOWLEDGED_BATCHES: usize = 16;

type CommandConsumer = StreamConsumer<CommitOnRevoke>;

fn create_consumer(config: &WorkerConfig) -> anyhow::Result<CommandConsumer> {
    let mut client = concert_core::kafka::client_config(&config.settings.kafka_brokers);
    // Commands are latency-bound: the broker must answer a fetch as soon as a command arrives; how long it
    // holds an empty one is a trade of idle broker CPU against latency (see FetchSettings).
    config.settings.kafka_fetch.apply(&mut client);
    concert_core::kafka_stats::enable(&mut client);
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
    producer: Producer,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let topics = config.settings.topics();
    let publisher = Publisher {
        producer,
        replies_topic: topics.replies.clone(),
        dead_letters_topic: topics.dead_letters.clone(),
        joins_topic: topics.joins.clone(),
        shutdown: shutdown.clone(),
    };
    let consumer = Arc::new(create_consumer(config)?);
    consumer
        .subscribe(&[&topics.joins, &topics.bookings])
        .context("subscribing to the command topics")?;
    let ctx = ApplyContext::new(pool, config.max_holds_per_user).with_shutdown(shutdown.clone());
    tokio::spawn(watch_assignment(
        consumer.context().assigned.clone(),
        shutdown.clone(),
    ));
    let (applied, to_store) = mpsc::channel(UNACKNOWLEDGED_BATCHES);
    let storing = tokio::spawn(store_offsets(consumer.clone(), to_store));
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
            Err(err) if concert_core::kafka::is_connection_notice(&err) => {
                tracing::debug!(error = %err, "broker connection down; the client reconnects");
                continue;
            }
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
        let messages = screen(&consumer, messages);
        if !process(&ctx, &publisher, messages, &applied).await {
            break;
        }
    }

    // What was applied has its offsets stored once its replies are acknowledged; then they are committed.
    drop(applied);
    storing.await.context("storing the last offsets")?;
    commit_stored(consumer.as_ref());
    // Closing the consumer leaves the group (so partitions move at once) and may block on the broker.
    let consumer = Arc::into_inner(consumer).context("the consumer is still shared")?;
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .context("closing the consumer")?;
    tracing::info!("command consumer stopped");
    Ok(())
}

/// The first message plus whatever else has already arrived, up to `max`.
///
/// A rebalance served while gathering (callbacks run inside `recv`) makes what was gathered before it
/// stale: it belongs to the previous assignment, whose partitions are read again from their committed
/// offsets by their new owners (this process included). It is dropped, not applied.
async fn gather(consumer: &CommandConsumer, first: OwnedMessage, max: usize) -> Vec<OwnedMessage> {
    let rebalances = || consumer.context().rebalances.load(Ordering::SeqCst);
    let mut messages = vec![first];
    let mut assignment = rebalances();
    let deadline = Instant::now() + LINGER;
    while messages.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => {
                if rebalances() != assignment {
                    tracing::debug!(
                        dropped = messages.len(),
                        "a rebalance while gathering; dropping what the previous assignment read"
                    );
                    messages.clear();
                    assignment = rebalances();
                }
                messages.push(message.detach());
            }
            Ok(Err(err)) => {
                if !concert_core::kafka::is_connection_notice(&err) {
                    tracing::warn!(error = %err, "reading the command log failed");
                }
                break;
            }
            Err(_) => break,
        }
    }
    messages
}

/// Checks each partition's records against where its read had to resume (see [`resume`]): drops the
/// records a previous owner already applied, and when the broker skipped records, drops the partition's
/// records and reads it again from further back.
fn screen(consumer: &CommandConsumer, messages: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
    let mut kept = Vec::with_capacity(messages.len());
    let groups = batch::group_by_partition(messages, |m| (m.topic().to_owned(), m.partition()));
    for ((topic, partition), records) in groups {
        let Some(first) = records.first().map(Message::offset) else {
            continue;
        };
        match consumer.context().resume.check(&topic, partition, first) {
            Verdict::Apply { from } => {
                kept.extend(records.into_iter().filter(|m| m.offset() >= from))
            }
            Verdict::Rewind {
                to,
                committed,
                first,
            } => {
                tracing::error!(
                    topic,
                    partition,
                    committed,
                    first,
                    rewind_to = to,
                    "the broker skipped records after the committed offset; reading the partition again from further back"
                );
                metrics::broker_skipped_records(&topic, partition);
                if let Err(err) = consumer.seek(&topic, partition, Offset::Offset(to), SEEK_TIMEOUT)
                {
                    tracing::error!(topic, partition, error = %err, "seeking back failed");
                }
            }
        }
    }
    kept
}

/// A partition's batch that is committed in Postgres, and its replies on their way to the broker.
struct Applied {
    topic: String,
    partition: i32,
    last_offset: i64,
    replies_sent: BoxFuture<'static, ()>,
}

/// Applies one batch and hands each finished partition's offset to [`store_offsets`]. Returns `false`
/// when shutdown interrupted it: those partitions' offsets stay where they were, to be read again.
async fn process(
    ctx: &ApplyContext,
    publisher: &Publisher,
    messages: Vec<OwnedMessage>,
    applied: &mpsc::Sender<Applied>,
) -> bool {
    let groups = batch::group_by_partition(messages, |m| (m.topic().to_owned(), m.partition()));
    let results = join_all(groups.iter().map(|((topic, partition), messages)| {
        process_partition(ctx, publisher, topic, *partition, messages)
    }))
    .await;
    let mut finished = true;
    for (((topic, partition), messages), result) in groups.into_iter().zip(results) {
        let Some(last) = messages.last() else {
            continue;
        };
        match result {
            Ok(replies_sent) => {
                let batch = Applied {
                    topic,
                    partition,
                    last_offset: last.offset(),
                    replies_sent,
                };
                if applied.send(batch).await.is_err() {
                    tracing::error!(
                        "the offset store stopped; leaving the batch for the next reader"
                    );
                    finished = false;
                }
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

/// Stores each applied batch's offset once its replies are acknowledged, in the order the batches were
/// applied, so a partition's stored offset only moves forward. Ends when the consumer loop drops its
/// sender, after the last batch handed over.
async fn store_offsets(consumer: Arc<CommandConsumer>, mut applied: mpsc::Receiver<Applied>) {
    while let Some(batch) = applied.recv().await {
        batch.replies_sent.await;
        let Applied {
            topic,
            partition,
            last_offset,
            ..
        } = batch;
        // Offsets are stored only now: the outcome is committed and the replies were sent.
        if let Err(err) = consumer.store_offset(&topic, partition, last_offset) {
            // Usually the partition was revoked meanwhile; its new owner re-reads and dedupes.
            tracing::warn!(topic, partition, error = %err, "could not store the offset");
        }
        metrics::offset_processed(&topic, partition, last_offset);
    }
}

#[instrument(skip_all, fields(topic = topic, partition = partition, size = messages.len()))]
async fn process_partition(
    ctx: &ApplyContext,
    publisher: &Publisher,
    topic: &str,
    partition: i32,
    messages: &[OwnedMessage],
) -> anyhow::Result<BoxFuture<'static, ()>> {
    let mut commands = Vec::with_capacity(messages.len());
    let mut unreadable = Vec::new();
    metrics::commands_waited(messages.iter().filter_map(|m| m.timestamp().to_millis()));
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
    let sending = std::time::Instant::now();
    let sent = publisher.start_replies(&replies);
    let replies_sent = Box::pin(async move {
        sent.await;
        metrics::replies_sent(sending.elapsed());
    });
    for (message, reason) in unreadable {
        publisher.dead_letter(message, &reason).await?;
        if let Some(sender) = dead_letter::sender(message.payload(), topic == publisher.joins_topic)
        {
            if let Some(reply) =
                record_dead_letter(ctx, publisher, &sender, message, &reason).await?
            {
                publisher.start_replies(&[reply]).await;
            }
        }
    }
    Ok(replies_sent)
}

/// Stores the FAILED outcome of a parked command, retrying what may pass (the database is away). A
/// failure for good is logged and the command stays parked without an outcome: the partition moves on.
async fn record_dead_letter(
    ctx: &ApplyContext,
    publisher: &Publisher,
    sender: &dead_letter::Sender,
    message: &OwnedMessage,
    reason: &str,
) -> Result<Option<Reply>, ShuttingDown> {
    let mut backoff = Backoff::new();
    let mut shutdown = publisher.shutdown.clone();
    loop {
        match dead_letter::record_failed(
            &ctx.pool,
            sender,
            message.partition(),
            message.offset(),
            reason,
        )
        .await
        {
            Ok(reply) => return Ok(Some(reply)),
            Err(err) if is_transient(&err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = format!("{err:#}"),
                    ?delay,
                    "recording a dead letter's outcome failed; retrying"
                );
                if !sleep_or_stop(delay, &mut shutdown).await {
                    return Err(ShuttingDown);
                }
            }
            Err(err) => {
                tracing::error!(
                    error = format!("{err:#}"),
                    request_id = %sender.request_id,
                    "could not record a dead letter's outcome; it stays parked without one"
                );
                return Ok(None);
            }
        }
    }
}

fn is_transient(err: &anyhow::Error) -> bool {
    err.chain()
        .find_map(|e| e.downcast_ref::<sqlx::Error>())
        .is_some_and(concert_core::db::is_transient)
}
