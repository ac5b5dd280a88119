//! Cancellation rules: until when a reservation may be cancelled, and the code a cancel that may not
//! happen gets. The worker decides every cancel with these; the api and the web app show the same deadline.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::problem::ErrorCode;

/// `cancel_cutoff_hours` of a waiting room nobody set it for.
pub const DEFAULT_CANCEL_CUTOFF_HOURS: i32 = 24;
/// The `cancel_cutoff_hours` an admin may set (a year at most).
pub const CANCEL_CUTOFF_HOURS_RANGE: std::ops::RangeInclusive<i32> = 0..=8760;

/// Why `hours` cannot be a cutoff, if it cannot.
pub fn check_cutoff_hours(hours: i32) -> Result<(), String> {
    if CANCEL_CUTOFF_HOURS_RANGE.contains(&hours) {
        Ok(())
    } else {
        Err(format!(
            "cancel_cutoff_hours must be between {} and {}",
            CANCEL_CUTOFF_HOURS_RANGE.start(),
            CANCEL_CUTOFF_HOURS_RANGE.end()
        ))
    }
}

/// The last moment (exclusive) a reservation for a date starting at `starts_at` may be cancelled.
pub fn cancel_deadline(starts_at: DateTime<Utc>, cutoff_hours: i32) -> DateTime<Utc> {
    starts_at - Duration::hours(i64::from(cutoff_hours))
}

/// The facts about a reservation a cancel is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationFacts {
    pub owner: Uuid,
    pub canceled: bool,
    /// [`cancel_deadline`] of its date.
    pub deadline: DateTime<Utc>,
}

/// May `user` cancel this reservation at `now`? Someone else's is reported as not found, so reservation ids
/// cannot be probed; a cancelled one is `ALREADY_CANCELED` (also after its date was cancelled), one past
/// its deadline `CANCEL_CLOSED`.
pub fn check_cancellable(
    reservation: Option<ReservationFacts>,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ErrorCode> {
    let reservation = reservation
        .filter(|r| r.owner == user)
        .ok_or(ErrorCode::ReservationNotFound)?;
    if reservation.canceled {
        return Err(ErrorCode::AlreadyCanceled);
    }
    if now >= reservation.deadline {
        return Err(ErrorCode::CancelClosed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(hours)
    }

    #[test]
    fn a_reservation_is_cancellable_until_the_cutoff_before_its_date() {
        let me = Uuid::new_v4();
        let starts_at = t(100);
        let facts = ReservationFacts {
            owner: me,
            canceled: false,
            deadline: cancel_deadline(starts_at, 24),
        };
        assert_eq!(facts.deadline, t(76));
        assert_eq!(check_cancellable(Some(facts), me, t(75)), Ok(()));
        assert_eq!(
            check_cancellable(Some(facts), me, t(76)),
            Err(ErrorCode::CancelClosed)
        );
        let no_cutoff = ReservationFacts {
            deadline: cancel_deadline(starts_at, 0),
            ..facts
        };
        assert_eq!(check_cancellable(Some(no_cutoff), me, t(99)), Ok(()));
        assert_eq!(
            check_cancellable(Some(no_cutoff), me, t(100)),
            Err(ErrorCode::CancelClosed),
            "not once the date started"
        );
    }

    #[test]
    fn others_unknown_and_cancelled_reservations() {
        let me = Uuid::new_v4();
        let facts = ReservationFacts {
            owner: me,
            canceled: false,
            deadline: t(10),
        };
        assert_eq!(
            check_cancellable(Some(facts), Uuid::new_v4(), t(0)),
            Err(ErrorCode::ReservationNotFound)
        );
        assert_eq!(
            check_cancellable(None, me, t(0)),
            Err(ErrorCode::ReservationNotFound)
        );
        let canceled = ReservationFacts {
            canceled: true,
            ..facts
        };
        assert_eq!(
            check_cancellable(Some(canceled), me, t(20)),
            Err(ErrorCode::AlreadyCanceled),
            "cancelled says so, whatever the time"
        );
    }

    #[test]
    fn cutoff_bounds() {
        assert!(check_cutoff_hours(0).is_ok());
        assert!(check_cutoff_hours(8760).is_ok());
        assert!(check_cutoff_hours(-1).is_err());
        assert!(check_cutoff_hours(8761).is_err());
        assert!(check_cutoff_hours(DEFAULT_CANCEL_CUTOFF_HOURS).is_ok());
    }
}
