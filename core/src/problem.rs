//! Stable error codes and the RFC 9457 problem document they render to.
//!
//! The same [`Problem`] travels inside a command's stored outcome, on the reply topic and over HTTP, so a
//! failure decided by a worker reaches the client exactly as it was decided.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The `code` clients branch on. Never renamed; new codes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationFailed,
    Unauthorized,
    Forbidden,
    QueueTokenInvalid,
    QueueNotAdmitted,
    QueueTokenExpired,
    /// A join without the proof of work its room asks for, or with a wrong, expired, used or someone
    /// else's one.
    QueueProofInvalid,
    ConcertNotFound,
    DateNotFound,
    SeatNotFound,
    SeatUnavailable,
    HoldLimitReached,
    DateClosed,
    HoldNotFound,
    HoldExpired,
    AlreadyPaid,
    ReservationNotFound,
    AlreadyCanceled,
    CancelClosed,
    InsufficientBalance,
    InvalidAmount,
    UserNotFound,
    RequestNotFound,
    IdempotencyKeyReused,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            ValidationFailed | QueueProofInvalid => 400,
            Unauthorized | QueueTokenInvalid | QueueTokenExpired => 401,
            Forbidden | QueueNotAdmitted => 403,
            ConcertNotFound | DateNotFound | SeatNotFound | HoldNotFound | ReservationNotFound
            | UserNotFound | RequestNotFound | NotFound => 404,
            MethodNotAllowed => 405,
            SeatUnavailable | HoldLimitReached | DateClosed | AlreadyPaid | AlreadyCanceled
            | CancelClosed => 409,
            HoldExpired => 410,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            InsufficientBalance | InvalidAmount | IdempotencyKeyReused => 422,
            RateLimited => 429,
            Internal => 500,
            Unavailable => 503,
        }
    }

    /// A short human title, the same for every occurrence of the code.
    pub fn title(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ValidationFailed => "The request is not valid",
            Unauthorized => "Authentication required",
            Forbidden => "Not allowed",
            QueueTokenInvalid => "The queue token is not valid",
            QueueNotAdmitted => "Not admitted from the waiting room yet",
            QueueTokenExpired => "The queue token has ended",
            QueueProofInvalid => "The proof of work for joining is not valid",
            ConcertNotFound => "Concert not found",
            DateNotFound => "Concert date not found",
            SeatNotFound => "Seat not found",
            SeatUnavailable => "The seat is not available",
            HoldLimitReached => "Too many live holds",
            DateClosed => "The concert date is closed",
            HoldNotFound => "Hold not found",
            HoldExpired => "The hold has expired",
            AlreadyPaid => "The hold is already paid",
            ReservationNotFound => "Reservation not found",
            AlreadyCanceled => "The reservation is already cancelled",
            CancelClosed => "The reservation can no longer be cancelled",
            InsufficientBalance => "Insufficient balance",
            InvalidAmount => "Invalid amount",
            UserNotFound => "User not found",
            RequestNotFound => "Request not found",
            IdempotencyKeyReused => "Idempotency key reused with a different request",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            PayloadTooLarge => "Payload too large",
            UnsupportedMediaType => "Unsupported media type",
            RateLimited => "Too many requests",
            Unavailable => "Service unavailable",
            Internal => "Internal error",
        }
    }

    /// The code as it appears on the wire, e.g. `SEAT_UNAVAILABLE`.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// An RFC 9457 problem document with the stable `code` extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// The command this problem is the outcome of, when it came from the log.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<Uuid>,
    /// Place in line, on `QUEUE_NOT_ADMITTED`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub position: Option<u64>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            type_: format!(
                "https://concert-booking.dev/problems/{}",
                code.as_str().to_lowercase().replace('_', "-")
            ),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            code,
            request_id: None,
            position: None,
        }
    }

    pub fn with_request_id(mut self, request_id: Uuid) -> Self {
        self.request_id = Some(request_id);
        self
    }

    pub fn with_position(mut self, position: u64) -> Self {
        self.position = Some(position);
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_render_upper_snake_case() {
        assert_eq!(ErrorCode::QueueNotAdmitted.as_str(), "QUEUE_NOT_ADMITTED");
        assert_eq!(
            ErrorCode::IdempotencyKeyReused.as_str(),
            "IDEMPOTENCY_KEY_REUSED"
        );
    }

    #[test]
    fn problem_round_trips_with_its_code() {
        let p =
            Problem::new(ErrorCode::SeatUnavailable, "seat 7 is held").with_request_id(Uuid::nil());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["code"], "SEAT_UNAVAILABLE");
        assert_eq!(json["status"], 409);
        assert!(json["type"]
            .as_str()
            .unwrap()
            .ends_with("/seat-unavailable"));
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn only_two_codes_are_server_errors() {
        use ErrorCode::*;
        for code in [
            ValidationFailed,
            SeatUnavailable,
            HoldExpired,
            RateLimited,
            InvalidAmount,
        ] {
            assert!(code.status() < 500);
        }
        assert_eq!(Internal.status(), 500);
        assert_eq!(Unavailable.status(), 503);
    }
}
