//! Joining a waiting room (through the log) and polling one's place (from memory).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::admission::{retry_after_seconds, PlaceStatus, DEFAULT_POLICY};
use concert_core::commands::{Command, JoinResult, Outcome};
use concert_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::error::{problem_response, ApiError, ApiResult};
use crate::extract::{ApiPath, AuthUser, IdempotencyKey, PreferWait, QueueTokenHeader};
use crate::queue_proof;
use crate::rooms::KnownPlace;
use crate::routes::catalog::ensure_concert;
use crate::state::AppState;
use crate::submit::{self, accepted, join_view, JoinView};

#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    #[serde(flatten)]
    pub place: JoinView,
    pub request_id: Uuid,
}

/// Joins the concert's waiting room. The join goes through the log, which decides the order; the answer
/// comes once a worker has placed it in line (201), or 202 to poll if that takes longer than the wait.
/// A user whose place is still live (waiting, or inside an open window) gets that place again at once,
/// without anything being published.
#[utoipa::path(post, path = "/v1/concerts/{concert_id}/queue", tag = "waiting room",
    params(("concert_id" = Uuid, Path), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 201, body = Joined), (status = 202, body = submit::Accepted), (status = 404, body = concert_core::Problem)))]
pub async fn join(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(concert_id): ApiPath<Uuid>,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
    headers: HeaderMap,
) -> ApiResult<Response> {
    ensure_concert(&state, concert_id).await?;
    let wait = wait.map_or(state.config.join_wait, Duration::from_secs);
    let command = Command::Join { concert_id };
    let decided = submit::already_decided(&state, user, &command, key.as_deref()).await?;
    let (request_id, reply) = match decided {
        Some((request_id, reply)) => (request_id, Some(reply)),
        None => {
            if let Some(known) = live_place(&state, concert_id, user) {
                metrics::counter!("joins_answered_from_cache_total").increment(1);
                let place = JoinResult {
                    concert_id,
                    seq: known.seq,
                    joined_at: known.joined_at,
                    opens_at: known.opens_at,
                };
                return Ok(created(&state, user, &place, known.request_id));
            }
            // Only a join that publishes pays: a repeat with a live place (above) or an answered
            // Idempotency-Key needs no proof.
            let proof = checked_proof(&state, &headers, user, concert_id).await?;
            let submitted = submit::submit(&state, user, command, key.as_deref(), wait).await;
            if let (Err(_), Some(proof)) = (&submitted, &proof) {
                // Nothing was let in: the challenge is not used up.
                if let Err(err) = db::rooms::unuse_proof(&state.pool, &proof.challenge).await {
                    tracing::warn!(error = %err, "could not give back a proof of work");
                }
            }
            submitted?
        }
    };
    let Some(reply) = reply else {
        return Ok(accepted(request_id, "PENDING"));
    };
    Ok(match reply.outcome {
        Outcome::Succeeded { result } => {
            let place: JoinResult = serde_json::from_value(result).map_err(anyhow::Error::from)?;
            state.rooms.learn_place(user, &place, request_id);
            created(&state, user, &place, request_id)
        }
        Outcome::Failed { error } => problem_response(&error.with_request_id(request_id)),
    })
}

/// The proof of work a join must bring when its room asks for one, checked and recorded as used (by the
/// challenge's unique key, so a second use fails on every instance). `None` when the room asks for none.
async fn checked_proof(
    state: &AppState,
    headers: &HeaderMap,
    user: Uuid,
    concert_id: Uuid,
) -> ApiResult<Option<queue_proof::CheckedProof>> {
    let bits = state.rooms.join_proof_bits(concert_id);
    if bits == 0 {
        return Ok(None);
    }
    let header = headers
        .get(PROOF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let proof = queue_proof::check(state, header, user, concert_id, bits as u32, Utc::now())?;
    if !db::rooms::use_proof(
        &state.pool,
        &proof.challenge,
        user,
        concert_id,
        proof.expires_at,
    )
    .await?
    {
        return Err(ApiError::new(
            ErrorCode::QueueProofInvalid,
            "this challenge was used already: get a new one from GET /v1/concerts/{concert_id}/queue/challenge",
        ));
    }
    Ok(Some(proof))
}

/// The header a join carries its proof of work in.
const PROOF_HEADER: &str = "x-queue-proof";

/// A proof-of-work challenge for joining this concert's waiting room.
#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    pub challenge: String,
    /// Leading zero bits SHA-256 of `<challenge>.<nonce>` must have (0: the room asks for no proof).
    pub bits: i32,
    pub expires_at: DateTime<Utc>,
}

/// A challenge bound to the caller and the concert, good for a few minutes and for one join: find a
/// nonce (no `.`) such that SHA-256 of `<challenge>.<nonce>` begins with `bits` zero bits, and send
/// `X-Queue-Proof: <challenge>.<nonce>` with the join.
#[utoipa::path(get, path = "/v1/concerts/{concert_id}/queue/challenge", tag = "waiting room",
    params(("concert_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Challenge), (status = 401, body = concert_core::Problem), (status = 404, body = concert_core::Problem)))]
pub async fn challenge(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(concert_id): ApiPath<Uuid>,
) -> ApiResult<Response> {
    // Read from the database, not the cache: a challenge asked for right after the admin raised the
    // difficulty must carry it.
    let opening = db::rooms::opening(&state.pool, concert_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ConcertNotFound,
                format!("concert {concert_id} was not found"),
            )
        })?;
    let bits = opening.join_proof_bits;
    let (challenge, expires_at) = queue_proof::issue(&state, user, concert_id, bits as u32);
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(Challenge {
            challenge,
            bits,
            expires_at,
        }),
    )
        .into_response())
}

fn created(state: &AppState, user: Uuid, place: &JoinResult, request_id: Uuid) -> Response {
    let body = Joined {
        place: join_view(state, user, place),
        request_id,
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The user's live place, from memory: every instance learns each place from the JOIN replies it reads.
/// There is deliberately no database fallback: a flash crowd's first joins would each cost a query (and
/// exhaust the pool). An instance that missed the reply (it started later) publishes the join, and the
/// worker answers with the same live place: the answer is the same, only the shortcut is lost.
fn live_place(state: &AppState, concert_id: Uuid, user: Uuid) -> Option<KnownPlace> {
    state.rooms.live_place(concert_id, user, Utc::now())
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueStatus {
    /// WAITING, ACTIVE, EXPIRED or COMPLETED.
    pub status: &'static str,
    /// 1 means next in line (WAITING only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Estimated seconds until admission (WAITING only); counts the time a full room needs to free slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<i64>,
    /// When the active window closes (ACTIVE only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<DateTime<Utc>>,
    /// Why the place ended (EXPIRED only): NOT_CLAIMED or WINDOW_ENDED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// When the room opens (WAITING before the opening only; there is no `position` until then: the
    /// places that joined before it are put in a random order at the opening).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
}

impl QueueStatus {
    pub fn of(place: &PlaceStatus) -> Self {
        let mut body = Self {
            status: place.name(),
            position: None,
            eta_seconds: None,
            active_until: None,
            reason: None,
            opens_at: None,
        };
        match *place {
            PlaceStatus::PreQueued { opens_at } => body.opens_at = opens_at,
            PlaceStatus::Waiting {
                position,
                eta_seconds,
            } => {
                body.position = Some(position);
                body.eta_seconds = eta_seconds;
            }
            PlaceStatus::Active { active_until } => body.active_until = Some(active_until),
            PlaceStatus::Expired { reason } => body.reason = reason.shown(),
            PlaceStatus::Completed => {}
        }
        body
    }
}

/// The status of the place an `X-Queue-Token` names, answered from memory; `Retry-After` says when to poll
/// again. Polling an admitted place claims it.
#[utoipa::path(get, path = "/v1/queue/status", tag = "waiting room", params(("X-Queue-Token" = String, Header)),
    responses((status = 200, body = QueueStatus), (status = 401, body = concert_core::Problem)))]
pub async fn status(
    State(state): State<AppState>,
    QueueTokenHeader(token): QueueTokenHeader,
) -> ApiResult<Response> {
    let claims = crate::queue_gate::verify(&state, token.as_deref(), None, None)?;
    let place = crate::queue_gate::status_claiming(&state, &claims);
    let policy = state.rooms.policy(claims.cid).unwrap_or(DEFAULT_POLICY);
    let retry_after = HeaderValue::from(retry_after_seconds(&place, &policy, Utc::now()));
    Ok((
        [
            (header::RETRY_AFTER, retry_after),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(QueueStatus::of(&place)),
    )
        .into_response())
}
