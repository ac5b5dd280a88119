//! What the consumer sends back to the log: replies, and dead letters for messages it cannot read.

use std::time::Duration;

use concert_core::commands::Reply;
use concert_core::kafka_stats::Producer;
use futures::future::{join_all, BoxFuture};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use tokio::sync::watch;

use crate::apply::ShuttingDown;
use crate::backoff::{sleep_or_stop, Backoff};
use crate::metrics;

/// How long a send may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends replies and dead letters with the idempotent, acks=all producer.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub producer: Producer,
    pub replies_topic: String,
    pub dead_letters_topic: String,
    /// Commands read from this topic are joins, whatever their payload says.
    pub joins_topic: String,
    /// Ends the retries of a dead letter when the worker stops.
    pub shutdown: watch::Receiver<bool>,
}

impl Publisher {
    /// Hands every reply to the producer now and returns a future that resolves once the broker has
    /// acknowledged them all. The consumer goes on with its next batch meanwhile: the broker's round trip
    /// is no longer on the path of the commands that arrive behind this batch. A reply that does not get
    /// through is only logged: the outcome is in Postgres, where the api looks when the reply does not
    /// come.
    pub(crate) fn start_replies(&self, replies: &[Reply]) -> BoxFuture<'static, ()> {
        let sends: Vec<BoxFuture<'static, Result<(), String>>> = replies
            .iter()
            .map(|reply| self.start_reply(reply))
            .collect();
        Box::pin(async move {
            let failed: Vec<String> = join_all(sends)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            if let Some(first) = failed.first() {
                tracing::warn!(failed = failed.len(), error = %first, "some replies were not delivered; outcomes are stored");
            }
        })
    }

    /// Enqueues one reply at once when the producer's queue has room; otherwise waits for room (up to
    /// [`QUEUE_TIMEOUT`]) in a task of its own.
    fn start_reply(&self, reply: &Reply) -> BoxFuture<'static, Result<(), String>> {
        let payload = match serde_json::to_vec(reply) {
            Ok(payload) => payload,
            Err(err) => return Box::pin(std::future::ready(Err(err.to_string()))),
        };
        let key = reply.request_id.to_string();
        let record = FutureRecord::to(&self.replies_topic)
            .key(&key)
            .payload(&payload);
        match self.producer.send_result(record) {
            Ok(delivery) => Box::pin(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err(err.to_string()),
                    Err(_) => Err("the producer dropped the delivery report".to_owned()),
                }
            }),
            Err((err, _)) => {
                tracing::debug!(error = %err, "the producer queue is full; waiting for room");
                let producer = self.producer.clone();
                let topic = self.replies_topic.clone();
                let waiting = tokio::spawn(async move {
                    let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                    producer
                        .send(record, QUEUE_TIMEOUT)
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| e.to_string())
                });
                Box::pin(async move { waiting.await.map_err(|e| e.to_string())? })
            }
        }
    }

    /// Parks an unreadable message (same key and payload, `reason` header) so the partition can move on.
    /// Retried with backoff until the broker takes it: a command is never skipped. Only shutdown ends the
    /// retries ([`ShuttingDown`]); the batch is then read again, and parked again, by the next owner.
    pub(crate) async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
    ) -> Result<(), ShuttingDown> {
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "parking an unreadable command"
        );
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "reason",
            value: Some(reason),
        });
        if let Some(original) = message.headers() {
            for h in original.iter().filter(|h| h.key != "reason") {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut backoff = Backoff::new();
        let mut shutdown = self.shutdown.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&self.dead_letters_topic).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, QUEUE_TIMEOUT).await {
                Ok(_) => {
                    metrics::dead_lettered();
                    return Ok(());
                }
                Err((err, _)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, attempt, ?delay, "parking a dead letter failed; retrying");
                    if !sleep_or_stop(delay, &mut shutdown).await {
                        return Err(ShuttingDown);
                    }
                }
            }
        }
    }
}
