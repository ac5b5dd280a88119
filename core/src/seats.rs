//! Seat and hold rules. The worker's SQL enforces the same rules with conditional updates; these functions
//! state them once in plain Rust, decide the error code a failed command gets, and are unit-tested.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::ErrorCode;

/// Default number of seats on a date.
pub const DEFAULT_SEATS: i32 = 50;
/// Most seats a date may have.
pub const MAX_SEATS: i32 = 10_000;

/// What a seat looks like to a buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

/// A seat is SOLD once reserved, HELD while a hold's deadline lies ahead, AVAILABLE otherwise: a lapsed
/// hold frees the seat at its deadline, whether or not a sweeper has cleared it.
pub fn seat_status(
    reserved: bool,
    hold_expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> SeatStatus {
    match (reserved, hold_expires_at) {
        (true, _) => SeatStatus::Sold,
        (false, Some(deadline)) if now < deadline => SeatStatus::Held,
        _ => SeatStatus::Available,
    }
}

/// The lifecycle of a hold: HELD, then exactly one of RELEASED, PAID or EXPIRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldState {
    Held,
    Released,
    Paid,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Released => "RELEASED",
            Self::Paid => "PAID",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Held, Self::Released, Self::Paid, Self::Expired]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// The facts about a hold a payment or a release is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldFacts {
    pub owner: Uuid,
    pub state: HoldState,
    pub expires_at: DateTime<Utc>,
}

/// May `user` pay this hold at `now`? Someone else's hold is reported as not found, so hold ids cannot be probed.
pub fn check_payable(
    hold: Option<HoldFacts>,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ErrorCode> {
    let hold = hold
        .filter(|h| h.owner == user)
        .ok_or(ErrorCode::HoldNotFound)?;
    match hold.state {
        HoldState::Paid => Err(ErrorCode::AlreadyPaid),
        HoldState::Released => Err(ErrorCode::HoldNotFound),
        HoldState::Expired => Err(ErrorCode::HoldExpired),
        HoldState::Held if now >= hold.expires_at => Err(ErrorCode::HoldExpired),
        HoldState::Held => Ok(()),
    }
}

/// May `user` release this hold at `now`? The same answers as paying: a lapsed hold has nothing left to release.
pub fn check_releasable(
    hold: Option<HoldFacts>,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ErrorCode> {
    check_payable(hold, user, now)
}

/// Is `amount` a charge we accept: a positive whole number of won no larger than `max`?
pub fn check_charge_amount(amount: i64, max: i64) -> Result<i64, String> {
    if amount <= 0 {
        return Err("amount must be a positive whole number of won".into());
    }
    if amount > max {
        return Err(format!("amount must be at most {max} won"));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn seat_status_by_facts() {
        assert_eq!(seat_status(false, None, t(0)), SeatStatus::Available);
        assert_eq!(seat_status(false, Some(t(10)), t(9)), SeatStatus::Held);
        assert_eq!(
            seat_status(false, Some(t(10)), t(10)),
            SeatStatus::Available,
            "lapsed at the deadline"
        );
        assert_eq!(seat_status(true, None, t(0)), SeatStatus::Sold);
        assert_eq!(seat_status(true, Some(t(10)), t(0)), SeatStatus::Sold);
    }

    #[test]
    fn payment_rules() {
        let me = Uuid::new_v4();
        let held = HoldFacts {
            owner: me,
            state: HoldState::Held,
            expires_at: t(10),
        };
        assert_eq!(check_payable(Some(held), me, t(9)), Ok(()));
        assert_eq!(
            check_payable(Some(held), me, t(10)),
            Err(ErrorCode::HoldExpired)
        );
        assert_eq!(
            check_payable(Some(held), Uuid::new_v4(), t(0)),
            Err(ErrorCode::HoldNotFound)
        );
        assert_eq!(check_payable(None, me, t(0)), Err(ErrorCode::HoldNotFound));
        let paid = HoldFacts {
            state: HoldState::Paid,
            ..held
        };
        assert_eq!(
            check_payable(Some(paid), me, t(0)),
            Err(ErrorCode::AlreadyPaid)
        );
        let released = HoldFacts {
            state: HoldState::Released,
            ..held
        };
        assert_eq!(
            check_payable(Some(released), me, t(0)),
            Err(ErrorCode::HoldNotFound)
        );
        let swept = HoldFacts {
            state: HoldState::Expired,
            ..held
        };
        assert_eq!(
            check_releasable(Some(swept), me, t(0)),
            Err(ErrorCode::HoldExpired)
        );
    }

    #[test]
    fn charge_amounts() {
        assert_eq!(check_charge_amount(1, 100), Ok(1));
        assert_eq!(check_charge_amount(100, 100), Ok(100));
        assert!(check_charge_amount(0, 100).is_err());
        assert!(check_charge_amount(-5, 100).is_err());
        assert!(check_charge_amount(101, 100).is_err());
    }

    #[test]
    fn hold_state_names_round_trip() {
        for s in [
            HoldState::Held,
            HoldState::Released,
            HoldState::Paid,
            HoldState::Expired,
        ] {
            assert_eq!(HoldState::parse(s.as_str()), Some(s));
        }
        assert_eq!(HoldState::parse("nope"), None);
    }
}
