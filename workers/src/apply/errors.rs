//! How a failed statement is classified: retry it (transient), or turn it into the command's FAILED
//! outcome with a stable code, never with SQL text.

use concert_core::db;
use concert_core::{ErrorCode, Problem};
use uuid::Uuid;

/// Asked to stop while waiting to retry: the batch was not applied and its offsets must not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuttingDown;

impl std::fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shutting down before the batch could be applied")
    }
}

impl std::error::Error for ShuttingDown {}

/// The first database error in the chain, if the failure came from the database.
fn sqlx_error(err: &anyhow::Error) -> Option<&sqlx::Error> {
    err.chain().find_map(|e| e.downcast_ref::<sqlx::Error>())
}

/// Worth retrying unchanged: the connection dropped, the pool ran dry, a deadlock or serialisation failure.
pub(crate) fn is_transient(err: &anyhow::Error) -> bool {
    sqlx_error(err).is_some_and(db::is_transient)
}

/// The domain code a violated constraint stands for. The conditional SQL normally decides these cases
/// first; the constraints are the last line of defence (a replay, a zombie consumer).
pub(crate) fn code_for_constraint(name: &str) -> Option<ErrorCode> {
    match name {
        "seat_sold_once" => Some(ErrorCode::SeatUnavailable),
        "hold_paid_once" | "reservation_per_hold" => Some(ErrorCode::AlreadyPaid),
        "balance_not_negative" => Some(ErrorCode::InsufficientBalance),
        "refund_per_reservation" => Some(ErrorCode::AlreadyCanceled),
        _ => None,
    }
}

/// The outcome a command gets when its own transaction failed for good.
pub(crate) fn problem_for_failure(err: &anyhow::Error, request_id: Uuid) -> Problem {
    let code = sqlx_error(err)
        .and_then(db::violated_constraint)
        .and_then(|name| code_for_constraint(&name));
    let problem = match code {
        Some(code) => Problem::new(code, code.title()),
        None => Problem::new(ErrorCode::Internal, "the command could not be applied"),
    };
    problem.with_request_id(request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_constraints_map_to_domain_codes() {
        assert_eq!(
            code_for_constraint("seat_sold_once"),
            Some(ErrorCode::SeatUnavailable)
        );
        assert_eq!(
            code_for_constraint("hold_paid_once"),
            Some(ErrorCode::AlreadyPaid)
        );
        assert_eq!(
            code_for_constraint("reservation_per_hold"),
            Some(ErrorCode::AlreadyPaid)
        );
        assert_eq!(
            code_for_constraint("balance_not_negative"),
            Some(ErrorCode::InsufficientBalance)
        );
        assert_eq!(code_for_constraint("holds_pkey"), None);
    }

    #[test]
    fn other_failures_are_internal_without_details() {
        let id = Uuid::new_v4();
        let err = anyhow::anyhow!("syntax error at or near SELECT").context("paying");
        let problem = problem_for_failure(&err, id);
        assert_eq!(problem.code, ErrorCode::Internal);
        assert!(!problem.detail.contains("SELECT"));
        assert_eq!(problem.request_id, Some(id));
    }

    #[test]
    fn transient_means_a_retryable_database_error() {
        assert!(is_transient(
            &anyhow::Error::new(sqlx::Error::PoolTimedOut).context("starting a transaction")
        ));
        assert!(!is_transient(&anyhow::Error::new(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&anyhow::anyhow!("the seat was not sold")));
    }
}
