//! What applying one command decides, and how a decision becomes the reply on the log.

use concert_core::commands::{CommandEnvelope, Outcome, Reply};
use concert_core::{ErrorCode, Problem};
use serde::Serialize;
use uuid::Uuid;

/// A command's domain answer: its result, or the reason it was refused. Refusals are decided by
/// conditional SQL before anything is written, so the batch transaction stays usable after one.
pub(crate) type Decision<T> = Result<T, Refusal>;

/// Why a command was refused: a stable code and a short, user-facing detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// The refusal for a hold that failed `check_payable` / `check_releasable`.
pub(crate) fn hold_refusal(code: ErrorCode, hold_id: Uuid) -> Refusal {
    let detail = match code {
        ErrorCode::AlreadyPaid => format!("hold {hold_id} is already paid"),
        ErrorCode::HoldExpired => format!("hold {hold_id} has expired"),
        _ => format!("hold {hold_id} was not found"),
    };
    Refusal::new(code, detail)
}

/// Turns a decision into the outcome stored and replied.
pub(crate) fn outcome<T: Serialize>(
    envelope: &CommandEnvelope,
    decision: Decision<T>,
) -> anyhow::Result<Outcome> {
    Ok(match decision {
        Ok(result) => Outcome::Succeeded {
            result: serde_json::to_value(result)?,
        },
        Err(refusal) => Outcome::Failed {
            error: Problem::new(refusal.code, refusal.detail).with_request_id(envelope.request_id),
        },
    })
}

/// The reply to a command applied now.
pub(crate) fn reply(envelope: &CommandEnvelope, outcome: Outcome) -> Reply {
    Reply::decided(envelope, outcome)
}

/// A replayed reply carries the same hint a fresh one does: the place its command completed. Only when the
/// redelivered command is the one stored (same fingerprint) and it succeeded.
pub(crate) fn with_place_hint(mut reply: Reply, envelope: &CommandEnvelope) -> Reply {
    if matches!(reply.outcome, Outcome::Succeeded { .. })
        && reply.fingerprint == envelope.fingerprint
    {
        reply.completed_place = envelope.command.completes_place();
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::requests::StoredRequest;
    use concert_core::commands::Command;

    fn envelope() -> CommandEnvelope {
        CommandEnvelope::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Command::Join {
                concert_id: Uuid::new_v4(),
            },
        )
    }

    #[test]
    fn refusal_becomes_a_problem_carrying_the_request_id() {
        let env = envelope();
        let decided: Decision<()> =
            Err(Refusal::new(ErrorCode::SeatUnavailable, "seat 3 is taken"));
        let Outcome::Failed { error } = outcome(&env, decided).unwrap() else {
            panic!("expected a failure")
        };
        assert_eq!(error.code, ErrorCode::SeatUnavailable);
        assert_eq!(error.status, 409);
        assert_eq!(error.request_id, Some(env.request_id));
    }

    #[test]
    fn stored_row_round_trips_to_the_same_reply() {
        let env = envelope();
        let first = reply(
            &env,
            outcome(
                &env,
                Err::<(), _>(Refusal::new(ErrorCode::HoldExpired, "late")),
            )
            .unwrap(),
        );
        let Outcome::Failed { error } = &first.outcome else {
            unreachable!()
        };
        let row = StoredRequest {
            request_id: env.request_id,
            user_id: env.user_id,
            kind: "JOIN".into(),
            fingerprint: env.fingerprint.clone(),
            status: "FAILED".into(),
            result: None,
            error: Some(serde_json::to_value(error).unwrap()),
        };
        assert_eq!(row.into_reply().unwrap(), first);
    }

    #[test]
    fn pending_row_is_not_a_reply() {
        let row = StoredRequest {
            request_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            kind: "PAY".into(),
            fingerprint: "f".into(),
            status: "PENDING".into(),
            result: None,
            error: None,
        };
        assert!(row.into_reply().is_err());
    }
}
