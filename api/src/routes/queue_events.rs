//! Live updates of one place in line: `GET /v1/queue/events`, server-sent events.
//!
//! Served from the in-memory room cache like a status poll: a stream waits on its concert's watch
//! channel, which the cache refresh wakes when the room changed (an admission step, a completion, an
//! end, the draw at a room's opening), so an admission or a place's first position reaches every open
//! stream within one refresh, and no stream or event costs a database round trip.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use concert_core::admission::PlaceStatus;
use concert_core::token::QueueClaims;
use concert_core::ErrorCode;
use futures::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult};
use crate::event_streams::{StreamTicket, TooManyStreams};
use crate::extract::QueueTokenHeader;
use crate::routes::queue::QueueStatus;
use crate::state::AppState;

/// While nothing changes, the status is sent again this often (the contract: at least every 15 s), which
/// also keeps idle proxies from closing the stream.
const RESEND_EVERY: Duration = Duration::from_secs(10);
/// An ACTIVE place is looked at this often too, so a claim deadline or a window end shows without delay.
const ACTIVE_LOOK: Duration = Duration::from_secs(1);

/// Server-sent events for the place a queue token names (`X-Queue-Token`, or `?queue_token=` since
/// browsers' `EventSource` cannot set headers). Event `status` carries the JSON of `GET /v1/queue/status`:
/// once at once, again on every change, and every 10 s while nothing changes; the stream ends after
/// EXPIRED or COMPLETED. Opening it claims the place. A place keeps at most 3 streams open (a fourth closes
/// the oldest); an instance at most `API_MAX_STREAMS` (beyond: 503 `UNAVAILABLE` with `Retry-After`).
#[utoipa::path(get, path = "/v1/queue/events", tag = "waiting room",
    params(("X-Queue-Token" = Option<String>, Header), ("queue_token" = Option<String>, Query)),
    responses((status = 200, content_type = "text/event-stream", body = QueueStatus,
        description = "a stream of `status` events"),
        (status = 401, body = concert_core::Problem), (status = 503, body = concert_core::Problem)))]
pub async fn events(
    State(state): State<AppState>,
    QueueTokenHeader(header_token): QueueTokenHeader,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Response> {
    let query = query.map_err(|e| ApiError::validation(format!("unreadable query: {e}")))?;
    let token = header_token.or_else(|| query.get("queue_token").cloned());
    let claims = crate::queue_gate::verify(&state, token.as_deref(), None, None)?;
    let ticket = state
        .streams
        .open((claims.cid, claims.seq))
        .map_err(|TooManyStreams| {
            ApiError::new(
                ErrorCode::Unavailable,
                "this instance holds as many live streams as it may: poll GET /v1/queue/status, or try again later",
            )
        })?;
    let stream = place_stream(state, claims, ticket);
    Ok((
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // Reverse proxies (nginx) would otherwise buffer the stream.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Sse::new(stream),
    )
        .into_response())
}

/// What a client sees of a status; the estimate alone moving is not a change worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    name: &'static str,
    position: Option<i64>,
    active_until: Option<DateTime<Utc>>,
    reason: Option<&'static str>,
    opens_at: Option<DateTime<Utc>>,
}

impl Shown {
    fn of(status: &QueueStatus) -> Self {
        Self {
            name: status.status,
            position: status.position,
            active_until: status.active_until,
            reason: status.reason,
            opens_at: status.opens_at,
        }
    }
}

/// Counts open streams for `/metrics` while it lives.
struct OpenStream;

impl OpenStream {
    fn new() -> Self {
        metrics::gauge!("queue_event_streams").increment(1.0);
        Self
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("queue_event_streams").decrement(1.0);
    }
}

struct PlaceStream {
    state: AppState,
    claims: QueueClaims,
    changes: watch::Receiver<u64>,
    shown: Option<Shown>,
    sent_at: Instant,
    finished: bool,
    /// Counts the stream per place and per instance; signalled when a newer stream of the place took its slot.
    ticket: StreamTicket,
    _open: OpenStream,
}

fn place_stream(
    state: AppState,
    claims: QueueClaims,
    ticket: StreamTicket,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = state.rooms.watch(claims.cid);
    let stream = PlaceStream {
        state,
        claims,
        changes,
        shown: None,
        sent_at: Instant::now(),
        finished: false,
        ticket,
        _open: OpenStream::new(),
    };
    futures::stream::unfold(stream, next_event)
}

/// Waits until there is something to send: a changed status, or the periodic resend.
async fn next_event(mut s: PlaceStream) -> Option<(Result<Event, Infallible>, PlaceStream)> {
    if s.finished {
        return None;
    }
    loop {
        // Every look at an admitted place claims it: the stream is a request with the token.
        let place = crate::queue_gate::status_claiming(&s.state, &s.claims);
        let body = QueueStatus::of(&place);
        let shown = Shown::of(&body);
        let resend_at = s.sent_at + RESEND_EVERY;
        let now = Instant::now();
        if s.shown != Some(shown) || now >= resend_at {
            s.shown = Some(shown);
            s.sent_at = now;
            s.finished = place.is_final();
            let event = Event::default()
                .event("status")
                .json_data(&body)
                .unwrap_or_else(|_| Event::default().event("status"));
            return Some((Ok(event), s));
        }
        let wake_at = match place {
            PlaceStatus::Active { .. } => resend_at.min(now + ACTIVE_LOOK),
            _ => resend_at,
        };
        tokio::select! {
            // A newer stream of the same place took this one's slot: end it.
            _ = s.ticket.closed.notified() => return None,
            changed = s.changes.changed() => {
                if changed.is_err() {
                    // The room's channel is gone (never while we hold a receiver); fall back to time.
                    tokio::time::sleep_until(wake_at).await;
                }
            }
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
}
