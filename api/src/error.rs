//! The one error type of the HTTP edge. Every failure renders as an RFC 9457 problem document with a stable
//! `code`; a 5xx never shows internals (they go to the log).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use concert_core::{ErrorCode, Problem};

use crate::rate_limits::RateLimited;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A decided failure, shown to the client as is.
    #[error("{0}")]
    Problem(Box<Problem>),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// Over a rate limit; `Retry-After` says when the next attempt can pass.
    #[error("rate limited for {retry_after:?}")]
    RateLimited { retry_after: std::time::Duration },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Problem(Box::new(Problem::new(code, detail)))
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, detail)
    }

    fn into_problem(self) -> Problem {
        match self {
            Self::Problem(p) => *p,
            Self::RateLimited { .. } => Problem::new(
                ErrorCode::RateLimited,
                "too many requests: wait for the Retry-After seconds, then try again",
            ),
            Self::Database(err) if concert_core::db::is_transient(&err) => {
                tracing::warn!(error = %err, "database unavailable");
                Problem::new(
                    ErrorCode::Unavailable,
                    "the service is temporarily unavailable, try again shortly",
                )
            }
            Self::Database(err) => match concert_core::db::violated_constraint(&err)
                .as_deref()
                .and_then(constraint_code)
            {
                Some(code) => Problem::new(code, "the request conflicts with the current state"),
                None => {
                    tracing::error!(error = %err, "database error");
                    Problem::new(ErrorCode::Internal, "an internal error occurred")
                }
            },
            Self::Broker(err) => {
                tracing::warn!(error = %err, "broker unavailable");
                Problem::new(
                    ErrorCode::Unavailable,
                    "the service is temporarily unavailable, try again shortly",
                )
            }
            // A database error wrapped on its way up is still judged as a database error.
            Self::Internal(err)
                if err.chain().any(|e| {
                    e.downcast_ref::<sqlx::Error>()
                        .is_some_and(concert_core::db::is_transient)
                }) =>
            {
                tracing::warn!(error = ?err, "database unavailable");
                Problem::new(
                    ErrorCode::Unavailable,
                    "the service is temporarily unavailable, try again shortly",
                )
            }
            Self::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                Problem::new(ErrorCode::Internal, "an internal error occurred")
            }
        }
    }
}

/// Constraint names that mean a domain conflict rather than a bug.
fn constraint_code(name: &str) -> Option<ErrorCode> {
    match name {
        "balance_not_negative" => Some(ErrorCode::InsufficientBalance),
        "seat_sold_once" => Some(ErrorCode::SeatUnavailable),
        "hold_paid_once" | "reservation_per_hold" => Some(ErrorCode::AlreadyPaid),
        _ => None,
    }
}

impl From<RateLimited> for ApiError {
    fn from(refused: RateLimited) -> Self {
        Self::RateLimited {
            retry_after: refused.retry_after,
        }
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(Box::new(p))
    }
}

/// Renders a problem document with its status and media type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    // A 503 is a blip or load shedding: say when to come back.
    with_retry_after(response)
}

/// Adds `Retry-After: 1` to a 503: refusals under load or during a blip are short-lived.
pub fn with_retry_after(mut response: Response) -> Response {
    if response.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(header::RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Whole seconds (RFC 9110), rounded up so that a client that waits exactly that long passes.
        let retry_after = match &self {
            Self::RateLimited { retry_after } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        };
        let mut response = problem_response(&self.into_problem());
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_transient_database_error_is_unavailable() {
        let err =
            anyhow::Error::from(sqlx::Error::PoolTimedOut).context("reading the stored outcome");
        assert_eq!(
            ApiError::Internal(err).into_problem().code,
            ErrorCode::Unavailable
        );
    }

    #[test]
    fn other_internal_errors_stay_internal_and_say_nothing() {
        let problem = ApiError::Internal(anyhow::anyhow!("SELECT broke")).into_problem();
        assert_eq!(problem.code, ErrorCode::Internal);
        assert!(!problem.detail.contains("SELECT"));
    }
}
