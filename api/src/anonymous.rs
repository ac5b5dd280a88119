//! Limits on anonymous calls: requests that carry no access, queue or admin token (sign-up, the public
//! catalog, the web app's files). Nothing identifies their sender but the client address, so they are
//! limited per address (an IPv6 /64 counts as one): a rate (429 `RATE_LIMITED`) and a share of the request
//! slots in progress (503 `UNAVAILABLE`), so neither a flood nor slow clients from one address can take the
//! slots every fan shares. Calls with a token are limited per user, never per address: many fans share an
//! address behind a carrier's NAT. `/healthz`, `/readyz` and `/metrics` are never limited.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::client_addr;
use crate::rate_limits::client_network;
use crate::state::AppState;

/// Does the request carry a token that identifies its sender (checked or not: a bad token is refused by
/// the handler, and counted against nobody's address)?
fn carries_a_token(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("x-queue-token")
        || request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("queue_token=")))
}

/// The middleware: anonymous requests pass the address's rate and take one of its slots.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if crate::shedding::operational(request.uri().path()) || carries_a_token(&request) {
        return next.run(request).await;
    }
    let addr = client_addr(
        request.headers(),
        request.extensions(),
        state.config.trust_forwarded_for,
    );
    let Some(addr) = addr else {
        return next.run(request).await;
    };
    if let Err(limited) = state.limits.check_anonymous(addr) {
        return ApiError::from(limited).into_response();
    }
    let Some(_slot) = state.anonymous_slots.acquire(client_network(addr)) else {
        metrics::counter!("http_requests_shed_total", "reason" => "address_share").increment(1);
        return crate::shedding::unavailable(
            "too many requests in progress from your address, try again shortly",
        );
    };
    next.run(request).await
}
