//! What the consumer sends back to the log: replies, and dead letters for messages it cannot read.

use std::time::Duration;

use concert_core::commands::Reply;
use futures::future::join_all;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use crate::backoff::Backoff;
use crate::metrics;

/// How long a send may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries to park a dead letter before giving up on it (it is logged either way).
const DEAD_LETTER_ATTEMPTS: usize = 5;

/// Sends replies and dead letters with the idempotent, acks=all producer.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub producer: FutureProducer,
    pub replies_topic: String,
    pub dead_letters_topic: String,
}

impl Publisher {
    /// Sends every reply and waits for the delivery reports. A reply that does not get through is only
    /// logged: the outcome is in Postgres, where the api looks when the reply does not come.
    pub(crate) async fn send_replies(&self, replies: &[Reply]) {
        let sends = replies.iter().map(|reply| async move {
            let payload = serde_json::to_vec(reply).map_err(|e| e.to_string())?;
            let key = reply.request_id.to_string();
            let record = FutureRecord::to(&self.replies_topic)
                .key(&key)
                .payload(&payload);
            self.producer
                .send(record, QUEUE_TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|(e, _)| e.to_string())
        });
        let failed: Vec<String> = join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if let Some(first) = failed.first() {
            tracing::warn!(failed = failed.len(), error = %first, "some replies were not delivered; outcomes are stored");
        }
    }

    /// Parks an unreadable message (same key and payload, `reason` header) so the partition can move on.
    /// It is retried a few times against a broker outage, then given up with an error log, never forever.
    pub(crate) async fn dead_letter(&self, message: &OwnedMessage, reason: &str) {
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
        for attempt in 1..=DEAD_LETTER_ATTEMPTS {
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
                    return;
                }
                Err((err, _)) if attempt < DEAD_LETTER_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, "parking a dead letter failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err((err, _)) => tracing::error!(
                    error = %err,
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    payload = %String::from_utf8_lossy(message.payload().unwrap_or_default()),
                    "could not park the unreadable command; skipping it"
                ),
            }
        }
    }
}
