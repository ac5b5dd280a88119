//! RELEASE: the user gives a held seat back before its deadline.
//!
//! A run of releases is decided together: the holds are locked in one statement, each release is decided
//! in memory in log order, and the winners are written in two statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_core::commands::{Command, CommandEnvelope, ReleaseResult};
use concert_core::seats::{check_releasable, HoldState};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{hold_refusal, Decision};
use crate::store::seats::{self, LockedHold};

/// What a RELEASE asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReleaseRequest {
    pub user_id: Uuid,
    pub date_id: Uuid,
    pub hold_id: Uuid,
}

impl ReleaseRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match envelope.command {
            Command::Release {
                date_id, hold_id, ..
            } => Some(Self {
                user_id: envelope.user_id,
                date_id,
                hold_id,
            }),
            _ => None,
        }
    }
}

/// Ends each hold and frees its seat, if the hold is the user's and still live at `now`, in log order.
pub(crate) async fn release_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    requests: &[ReleaseRequest],
) -> anyhow::Result<Vec<Decision<ReleaseResult>>> {
    let ids: Vec<Uuid> = requests.iter().map(|r| r.hold_id).collect();
    let mut holds = seats::lock_holds(conn, &ids).await?;
    let decisions = decide_releases(requests, &mut holds, now);
    let released: Vec<&ReleaseResult> = decisions.iter().filter_map(|d| d.as_ref().ok()).collect();
    let ended: Vec<Uuid> = released.iter().map(|r| r.hold_id).collect();
    let freed: Vec<(Uuid, i32, Uuid)> = released
        .iter()
        .map(|r| (r.date_id, r.seat_no, r.hold_id))
        .collect();
    seats::end_holds(conn, &ended, HoldState::Released).await?;
    seats::clear_seat_holds(conn, &freed).await?;
    Ok(decisions)
}

/// Decides each release in order against the locked holds, marking a released hold RELEASED in `holds`
/// so a second release of it in the same run is refused as it would be after commit.
pub(crate) fn decide_releases(
    requests: &[ReleaseRequest],
    holds: &mut HashMap<Uuid, LockedHold>,
    now: DateTime<Utc>,
) -> Vec<Decision<ReleaseResult>> {
    requests
        .iter()
        .map(|r| {
            // A hold on another date than the command names is not this command's to touch.
            let Some(hold) = holds.get_mut(&r.hold_id).filter(|h| h.date_id == r.date_id) else {
                return Err(hold_refusal(ErrorCode::HoldNotFound, r.hold_id));
            };
            check_releasable(Some(hold.facts), r.user_id, now)
                .map_err(|code| hold_refusal(code, r.hold_id))?;
            hold.facts.state = HoldState::Released;
            Ok(ReleaseResult {
                hold_id: r.hold_id,
                date_id: hold.date_id,
                seat_no: hold.seat_no,
                released_at: now,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use concert_core::seats::HoldFacts;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_hold_is_released_once_and_only_by_its_owner() {
        let (owner, other, date, hold_id) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let hold = LockedHold {
            facts: HoldFacts {
                owner,
                state: HoldState::Held,
                expires_at: t(300),
            },
            concert_id: Uuid::new_v4(),
            date_id: date,
            seat_no: 4,
            price: 1_000,
        };
        let mut holds = HashMap::from([(hold_id, hold)]);
        let ask = |user_id| ReleaseRequest {
            user_id,
            date_id: date,
            hold_id,
        };
        let decisions = decide_releases(&[ask(other), ask(owner), ask(owner)], &mut holds, t(0));
        let codes: Vec<Option<ErrorCode>> = decisions
            .iter()
            .map(|d| d.as_ref().err().map(|r| r.code))
            .collect();
        assert_eq!(
            codes,
            [
                Some(ErrorCode::HoldNotFound),
                None,
                Some(ErrorCode::HoldNotFound)
            ]
        );
        assert_eq!(decisions[1].as_ref().unwrap().seat_no, 4);
    }
}
