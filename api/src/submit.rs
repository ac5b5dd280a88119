//! Submit-then-poll: publishing a command to the log, waiting (if asked) for its outcome, and rendering
//! outcomes as the contract says.

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::admission::PlaceStatus;
use concert_core::commands::{Command, CommandEnvelope, CommandKind, JoinResult, Outcome, Reply};
use concert_core::token::QueueClaims;
use concert_core::{ErrorCode, Problem};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde::Serialize;
use tokio::sync::oneshot;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{problem_response, ApiError, ApiResult};
use crate::state::AppState;

/// How long one look for a stored outcome may take once the command is published: a database that
/// hangs must not hold the answer (it is then 202 with the request id).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long recording a refusal may take. The insert waits for a worker's transaction that holds the same
/// request (the command is then on the log and being applied), so this is as long as a worker's statement
/// may wait for a lock (`lock_timeout`); past it the answer stays 503, unguarded.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// What a submit keeps of its request's time after the wait for an outcome: a last lookup and rendering.
const AFTER_PUBLISH_RESERVE: Duration = Duration::from_secs(3);
/// While waiting for a reply and none has come through lately (the reply reader is behind or down), how
/// often to look for the stored outcome.
const STORE_POLL: Duration = Duration::from_millis(750);
/// How often to look while replies flow: only for a reply that went missing (a worker that could not
/// send it), so thousands of waiting requests do not poll Postgres.
const STORE_FALLBACK_POLL: Duration = Duration::from_secs(3);

/// The outcome already decided for this idempotency key, if any; one decided for a different body is refused.
///
/// Callers ask this before any gate: a retry of a decided request gets its outcome even if the first
/// attempt has since ended what the gate checks (a payment completes the queue token it needed).
pub async fn already_decided(
    state: &AppState,
    user: Uuid,
    command: &Command,
    key: Option<&str>,
) -> ApiResult<Option<(Uuid, Reply)>> {
    let Some(key) = key else { return Ok(None) };
    let request_id = state
        .request_ids
        .for_idempotency_key(user, command.kind(), key);
    match crate::db::requests::outcome(&state.pool, request_id).await? {
        Some(stored) => Ok(Some((
            request_id,
            same_body(stored, &command.fingerprint())?,
        ))),
        None => Ok(None),
    }
}

/// Publishes `command` for `user` and waits up to `wait` for its outcome. With an idempotency key the
/// request id is derived from the key, so a retry names the same request and the worker applies it once;
/// ask [`already_decided`] first to answer a retry without publishing again.
pub async fn submit(
    state: &AppState,
    user: Uuid,
    command: Command,
    key: Option<&str>,
    wait: Duration,
) -> ApiResult<(Uuid, Option<Reply>)> {
    // Before anything is published: a flooding client must not fill the partition others wait behind.
    state.limits.check_command(user)?;
    let kind = command.kind();
    let request_id = match key {
        Some(key) => state.request_ids.for_idempotency_key(user, kind, key),
        None => state.request_ids.fresh(user, kind),
    };
    let envelope = CommandEnvelope::new(request_id, user, command);
    if key.is_some() {
        let first = crate::db::idempotency::first_fingerprint(
            &state.pool,
            request_id,
            user,
            &envelope.fingerprint,
        )
        .await?;
        if first.fingerprint != envelope.fingerprint {
            return Err(key_reused());
        }
        if !first.now {
            // A retry: an earlier attempt may have been refused after publishing; this one is to count.
            crate::db::requests::withdraw_refusal(&state.pool, request_id).await?;
        }
    }
    let waiter = (!wait.is_zero()).then(|| state.replies.subscribe(request_id));
    let started = Instant::now();
    if let Err(err) = publish(state, &envelope).await {
        if refuse(state, &envelope, &err).await {
            return Err(err);
        }
        // A worker took the command first: it is on the log, so it was accepted after all.
        tracing::info!(%request_id, error = %err, "publish reported failed, but the command was taken from the log");
    }
    metrics::counter!("commands_submitted_total", "kind" => kind.as_str()).increment(1);
    // One hop of a command's way: until the broker acknowledged it (docs/PERFORMANCE.md, the hop table).
    metrics::histogram!("command_publish_seconds", "kind" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    // From here on the command is on the log: every answer names it (202 when its outcome is not known),
    // in time: the wait ends early enough for the request timeout never to cut the answer.
    let wait =
        crate::shedding::time_left(AFTER_PUBLISH_RESERVE).map_or(wait, |left| wait.min(left));
    let reply = match waiter {
        Some(rx) => await_outcome(state, request_id, rx, wait).await,
        None => None,
    };
    if let Some(reply) = &reply {
        if let (Outcome::Succeeded { .. }, Some(place)) =
            (&reply.outcome, envelope.command.completes_place())
        {
            state.rooms.mark_completed(place);
        }
        metrics::histogram!("command_outcome_seconds", "kind" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        if key.is_some() {
            return Ok((
                request_id,
                Some(same_body(reply.clone(), &envelope.fingerprint)?),
            ));
        }
    }
    Ok((request_id, reply))
}

fn same_body(stored: Reply, fingerprint: &str) -> ApiResult<Reply> {
    if stored.fingerprint == fingerprint {
        Ok(stored)
    } else {
        Err(key_reused())
    }
}

fn key_reused() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was used for a different request",
    )
}

async fn publish(state: &AppState, envelope: &CommandEnvelope) -> ApiResult<()> {
    let topic = match envelope.command.kind() {
        CommandKind::Join => &state.topics.joins,
        _ => &state.topics.bookings,
    };
    let key = envelope.command.partition_key().to_string();
    let payload = serde_json::to_vec(envelope).map_err(anyhow::Error::from)?;
    let record = FutureRecord::to(topic).key(&key).payload(&payload);
    // The producer fails a delivery after its message timeout (`KAFKA_PUBLISH_TIMEOUT_MS`); waiting that
    // long for room in its queue as well keeps the whole publish within about twice that.
    state
        .producer
        .send(record, Timeout::After(state.config.limits.publish_timeout))
        .await
        .map_err(|(err, _)| ApiError::Broker(err.to_string()))?;
    Ok(())
}

/// After a failed publish, makes the 503 true: the command must not take effect, though the broker may
/// have put it on the log (a delivery that timed out while the broker stalled or stopped may have been
/// persisted; librdkafka cannot say which through rdkafka's producer). Records the request as REFUSED, so a
/// copy that lands is not applied. `false` when a worker recorded the request first: it was accepted.
///
/// A database that cannot be reached leaves the answer 503 (`true`): a worker cannot apply the command
/// while the database is down either, and a client that retries with its key gets the one outcome. This
/// double fault is the one case where a 503'd command can still take effect (docs/DESIGN.md).
async fn refuse(state: &AppState, envelope: &CommandEnvelope, err: &ApiError) -> bool {
    let request_id = envelope.request_id;
    let recorded = tokio::time::timeout(
        REFUSE_TIMEOUT,
        crate::db::requests::refuse(&state.pool, envelope),
    )
    .await;
    let (refused, what) = match recorded {
        Ok(Ok(true)) => (true, "refused"),
        Ok(Ok(false)) => (false, "accepted"),
        Ok(Err(db)) => {
            tracing::warn!(%request_id, publish = %err, error = %db, "could not record a refused command");
            (true, "unrecorded")
        }
        Err(_) => {
            tracing::warn!(%request_id, publish = %err, "recording a refused command timed out");
            (true, "unrecorded")
        }
    };
    // After a failed publish: refused (503, recorded), accepted (a worker had it), unrecorded (503 unguarded).
    metrics::counter!("commands_unconfirmed_total", "outcome" => what).increment(1);
    refused
}

/// Waits up to `wait` for the outcome: woken by the reply topic, or found in Postgres if the reply is missed.
///
/// The command is on the log by then, so nothing here fails: a database that cannot be read only means
/// the outcome is not known yet (the answer is then 202 with the request id). While replies flow, the
/// database is looked at rarely ([`STORE_FALLBACK_POLL`]): the reply is what wakes the request.
pub async fn await_outcome(
    state: &AppState,
    request_id: Uuid,
    mut rx: oneshot::Receiver<Reply>,
    wait: Duration,
) -> Option<Reply> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let every = if state.replies.flowing() {
            STORE_FALLBACK_POLL
        } else {
            STORE_POLL
        };
        let next_look = (tokio::time::Instant::now() + every).min(deadline);
        tokio::select! {
            reply = &mut rx => return reply.ok(),
            _ = tokio::time::sleep_until(next_look) => {
                if let Some(stored) = look_up(state, request_id).await {
                    return Some(stored);
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
            }
        }
    }
}

/// The outcome of `request_id` if known to this instance or stored. A database that cannot be read
/// means "not known yet": the request is on the log, and its poller is told PENDING, not 5xx.
pub async fn known_outcome(state: &AppState, request_id: Uuid) -> Option<Reply> {
    if let Some(reply) = state.replies.get(request_id) {
        return Some(reply);
    }
    look_up(state, request_id).await
}

/// The stored outcome, within [`LOOKUP_TIMEOUT`]; a database that fails or hangs means "not known yet".
async fn look_up(state: &AppState, request_id: Uuid) -> Option<Reply> {
    let lookup = crate::db::requests::outcome(&state.pool, request_id);
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, %request_id, "cannot look up an outcome; answering without it");
            None
        }
        Err(_) => {
            tracing::warn!(%request_id, "looking up an outcome took too long; answering without it");
            None
        }
    }
}

/// `{"request_id", "status": "PENDING"}` (or the current status), as a submit without an outcome answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub request_id: Uuid,
    pub status: &'static str,
}

/// 202 Accepted with `Location` pointing at the request, and its status (PENDING unless a retry of a
/// decided request).
pub fn accepted(request_id: Uuid, status: &'static str) -> Response {
    let location = format!("/v1/requests/{request_id}");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Accepted { request_id, status }),
    )
        .into_response()
}

/// The poll document of a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestDoc {
    pub request_id: Uuid,
    pub kind: CommandKind,
    /// PENDING, SUCCEEDED or FAILED.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

impl RequestDoc {
    pub fn pending(request_id: Uuid, kind: CommandKind) -> Self {
        Self {
            request_id,
            kind,
            status: "PENDING",
            result: None,
            error: None,
        }
    }

    pub fn from_reply(state: &AppState, reply: Reply) -> Self {
        let status = reply.outcome.status_name();
        let (result, error) = match reply.outcome {
            Outcome::Succeeded { result } => (
                Some(public_result(state, reply.kind, reply.user_id, result)),
                None,
            ),
            Outcome::Failed { error } => (None, Some(error.with_request_id(reply.request_id))),
        };
        Self {
            request_id: reply.request_id,
            kind: reply.kind,
            status,
            result,
            error,
        }
    }
}

/// A join's place as the client sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinView {
    pub concert_id: Uuid,
    pub queue_token: String,
    /// WAITING, ACTIVE, EXPIRED or COMPLETED.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// When the room opens, for a place that joined before it (no `position` until then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
}

pub fn join_view(state: &AppState, user: Uuid, place: &JoinResult) -> JoinView {
    let claims = QueueClaims {
        cid: place.concert_id,
        uid: user,
        seq: place.seq as u64,
    };
    let mut status = crate::queue_gate::status(state, &claims);
    // The workers said the place joined before the opening; an instance that has not read the room's
    // opening yet (its cache is refreshed every 250 ms) must not give it a position meanwhile.
    if place.opens_at.is_some()
        && matches!(status, PlaceStatus::Waiting { .. })
        && !state.rooms.has_draw(place.concert_id)
    {
        status = PlaceStatus::PreQueued {
            opens_at: place.opens_at,
        };
    }
    JoinView {
        concert_id: place.concert_id,
        queue_token: state.signer.sign_queue(&claims),
        status: status_name(&status),
        position: match status {
            PlaceStatus::Waiting { position, .. } => Some(position),
            _ => None,
        },
        opens_at: match status {
            PlaceStatus::PreQueued { opens_at } => opens_at,
            _ => None,
        },
    }
}

pub fn status_name(status: &PlaceStatus) -> &'static str {
    status.name()
}

/// Workers store a join's place; clients get it as a signed queue token.
fn public_result(
    state: &AppState,
    kind: CommandKind,
    user: Uuid,
    result: serde_json::Value,
) -> serde_json::Value {
    if kind != CommandKind::Join {
        return result;
    }
    match serde_json::from_value::<JoinResult>(result.clone()) {
        Ok(place) => serde_json::to_value(join_view(state, user, &place)).unwrap_or(result),
        Err(_) => result,
    }
}

/// Answers a decided outcome directly (`Prefer: wait`): 200 with the request document on success, the
/// problem's own status with the problem document on failure.
pub fn decided(state: &AppState, reply: Reply) -> Response {
    match RequestDoc::from_reply(state, reply) {
        RequestDoc {
            error: Some(problem),
            ..
        } => problem_response(&problem),
        doc => (StatusCode::OK, Json(doc)).into_response(),
    }
}
