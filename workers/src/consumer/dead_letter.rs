//! What becomes of a command the worker cannot read: it is parked on the dead-letter topic (retried
//! until the broker takes it, never skipped), and, when its request can still be told from the payload,
//! its request ends FAILED with `INTERNAL`, stored and replied like any outcome, so pollers stop waiting.

use anyhow::Context;
use concert_core::commands::{CommandKind, Outcome, Reply};
use concert_core::{ErrorCode, Problem};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::requests::{self, NewRequest};

/// Who sent an unreadable command, as far as its payload tells: enough to store an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sender {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub kind: CommandKind,
    pub fingerprint: String,
}

/// The request an unreadable payload belongs to: its `request_id`, `user_id` and `command.kind` (the
/// kind is taken from the topic when the command cannot tell it: joins have a topic of their own).
/// `None` when the payload does not name them; no client can be waiting for such a command.
pub(crate) fn sender(payload: Option<&[u8]>, from_joins_topic: bool) -> Option<Sender> {
    let value: Value = serde_json::from_slice(payload?).ok()?;
    let uuid = |field: &str| value.get(field)?.as_str()?.parse::<Uuid>().ok();
    let kind = value
        .pointer("/command/kind")
        .and_then(Value::as_str)
        .and_then(CommandKind::parse)
        .or(from_joins_topic.then_some(CommandKind::Join))?;
    Some(Sender {
        request_id: uuid("request_id")?,
        user_id: uuid("user_id")?,
        kind,
        fingerprint: value
            .get("fingerprint")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Stores the FAILED `INTERNAL` outcome of `sender`'s request and returns its reply. A request already
/// decided (an earlier delivery of the same command) keeps its outcome, and that is what is returned.
pub(crate) async fn record_failed(
    pool: &PgPool,
    sender: &Sender,
    partition: i32,
    offset: i64,
    reason: &str,
) -> anyhow::Result<Reply> {
    let problem = Problem::new(
        ErrorCode::Internal,
        "the command could not be read by the workers; it was set aside for an operator",
    )
    .with_request_id(sender.request_id);
    tracing::debug!(reason, request_id = %sender.request_id, "recording a dead-lettered command as failed");
    let outcome = Outcome::Failed { error: problem };
    let request = NewRequest {
        request_id: sender.request_id,
        user_id: sender.user_id,
        kind: sender.kind,
        fingerprint: &sender.fingerprint,
        partition,
        offset,
    };
    let mut tx = pool.begin().await.context("starting a transaction")?;
    let reply = if requests::insert_completed(&mut tx, &request, &outcome).await? {
        Reply {
            request_id: sender.request_id,
            user_id: sender.user_id,
            kind: sender.kind,
            fingerprint: sender.fingerprint.clone(),
            outcome,
            completed_place: None,
        }
    } else {
        requests::load(&mut tx, &[sender.request_id])
            .await?
            .into_iter()
            .next()
            .context("the request recorded before is gone")?
            .into_reply()?
    };
    tx.commit().await.context("committing the failed outcome")?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_is_read_from_whatever_of_the_envelope_is_left() {
        let (r, u) = (Uuid::new_v4(), Uuid::new_v4());
        let payload = serde_json::json!({
            "request_id": r, "user_id": u, "fingerprint": "f",
            "command": { "kind": "HOLD", "seat_no": "not a number" }
        })
        .to_string();
        assert_eq!(
            sender(Some(payload.as_bytes()), false),
            Some(Sender {
                request_id: r,
                user_id: u,
                kind: CommandKind::Hold,
                fingerprint: "f".into()
            })
        );
        // An unknown kind on the joins topic is a join; elsewhere nothing can be stored for it.
        let payload =
            serde_json::json!({ "request_id": r, "user_id": u, "command": { "kind": "DANCE" } })
                .to_string();
        assert_eq!(
            sender(Some(payload.as_bytes()), true).map(|s| s.kind),
            Some(CommandKind::Join)
        );
        assert_eq!(sender(Some(payload.as_bytes()), false), None);
        assert_eq!(sender(Some(b"\xff"), true), None);
        assert_eq!(sender(None, true), None);
        assert_eq!(
            sender(Some(br#"{"request_id":"nope","user_id":"x"}"#), true),
            None
        );
    }
}
