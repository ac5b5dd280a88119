//! One admission step: how many of those waiting to admit at a tick (the ticker's arithmetic), and the step
//! as the api caches it to tell its places' status.

use chrono::{DateTime, Duration, Utc};

use super::policy::Policy;

/// What one admission step should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitStep {
    pub count: i64,
    /// The new value for the room's `next_admit_at` (unchanged when nothing was admitted).
    pub next_admit_at: Option<DateTime<Utc>>,
}

/// How many of the `waiting` to admit now, given `active` users and the time the interval quota renews.
///
/// The interval quota is only spent when someone is admitted, so a room that was empty admits the first
/// arrivals at once rather than on a stale beat.
pub fn admit_step(
    policy: &Policy,
    waiting: i64,
    active: i64,
    now: DateTime<Utc>,
    next_admit_at: Option<DateTime<Utc>>,
) -> AdmitStep {
    let room = policy
        .max_active_users
        .map_or(i64::MAX, |m| (i64::from(m) - active).max(0));
    let quota = match (policy.admit_per_interval, next_admit_at) {
        (None, _) => i64::MAX,
        (Some(n), None) => i64::from(n),
        (Some(n), Some(at)) if now >= at => i64::from(n),
        (Some(_), Some(_)) => 0,
    };
    let count = waiting.max(0).min(room).min(quota);
    let next = match (count, policy.interval_seconds) {
        (c, Some(secs)) if c > 0 => Some(now + Duration::seconds(i64::from(secs))),
        _ => next_admit_at,
    };
    AdmitStep {
        count,
        next_admit_at: next,
    }
}

/// One admission step as the api caches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub from_seq: i64,
    pub upto_seq: i64,
    pub admitted_at: DateTime<Utc>,
    pub active_until: DateTime<Utc>,
    /// Places of the step not claimed by then end (`NOT_CLAIMED`).
    pub claim_until: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::testing::{policy, t};

    #[test]
    fn max_active_fills_free_slots_only() {
        let p = policy(Some(10), None);
        assert_eq!(admit_step(&p, 100, 3, t(0), None).count, 7);
        assert_eq!(admit_step(&p, 4, 3, t(0), None).count, 4);
        assert_eq!(admit_step(&p, 100, 10, t(0), None).count, 0);
        assert_eq!(
            admit_step(&p, 100, 12, t(0), None).count,
            0,
            "over-full room admits no one"
        );
    }

    #[test]
    fn per_interval_admits_once_per_beat() {
        let p = policy(None, Some((5, 10)));
        let first = admit_step(&p, 100, 0, t(0), None);
        assert_eq!(
            first,
            AdmitStep {
                count: 5,
                next_admit_at: Some(t(10))
            }
        );
        assert_eq!(admit_step(&p, 95, 5, t(9), first.next_admit_at).count, 0);
        assert_eq!(admit_step(&p, 95, 5, t(10), first.next_admit_at).count, 5);
    }

    #[test]
    fn empty_room_does_not_spend_the_beat() {
        let p = policy(None, Some((5, 10)));
        let idle = admit_step(&p, 0, 0, t(0), None);
        assert_eq!(
            idle,
            AdmitStep {
                count: 0,
                next_admit_at: None
            }
        );
        assert_eq!(admit_step(&p, 2, 0, t(3), idle.next_admit_at).count, 2);
    }

    #[test]
    fn both_limits_take_the_smaller() {
        let p = policy(Some(8), Some((5, 10)));
        assert_eq!(admit_step(&p, 100, 6, t(0), None).count, 2);
        assert_eq!(admit_step(&p, 100, 0, t(0), None).count, 5);
    }
}
