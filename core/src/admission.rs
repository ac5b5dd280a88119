//! Waiting-room arithmetic: the admission policy, how many to admit at a tick, and what a place in line
//! looks like from a snapshot of the room. Pure functions, so they are unit-tested without a database.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A concert's admission policy: N per interval, at most M active at once, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    /// At most this many ACTIVE at once.
    pub max_active_users: Option<i32>,
    /// Admit up to this many every `interval_seconds`.
    pub admit_per_interval: Option<i32>,
    pub interval_seconds: Option<i32>,
    /// How long an admitted user stays ACTIVE without paying.
    pub active_seconds: i32,
    /// How long a hold keeps a seat.
    pub hold_seconds: i32,
}

/// The policy a concert gets when it is created, until an admin sets one.
pub const DEFAULT_POLICY: Policy = Policy {
    max_active_users: Some(100),
    admit_per_interval: None,
    interval_seconds: None,
    active_seconds: 600,
    hold_seconds: 300,
};

/// Bounds an admin may set; beyond them the request is refused.
pub const MAX_SECONDS: i32 = 7 * 24 * 3600;
pub const MAX_USERS: i32 = 1_000_000;

impl Policy {
    /// Why the policy cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_active_users.is_none() && self.admit_per_interval.is_none() {
            return Err(
                "set max_active_users, admit_per_interval with interval_seconds, or both".into(),
            );
        }
        if self.admit_per_interval.is_some() != self.interval_seconds.is_some() {
            return Err("admit_per_interval and interval_seconds go together".into());
        }
        let users = [
            ("max_active_users", self.max_active_users),
            ("admit_per_interval", self.admit_per_interval),
        ];
        for (name, v) in users {
            if let Some(v) = v {
                if !(1..=MAX_USERS).contains(&v) {
                    return Err(format!("{name} must be between 1 and {MAX_USERS}"));
                }
            }
        }
        let secs = [
            ("interval_seconds", self.interval_seconds),
            ("active_seconds", Some(self.active_seconds)),
            ("hold_seconds", Some(self.hold_seconds)),
        ];
        for (name, v) in secs {
            if let Some(v) = v {
                if !(1..=MAX_SECONDS).contains(&v) {
                    return Err(format!("{name} must be between 1 and {MAX_SECONDS}"));
                }
            }
        }
        Ok(())
    }
}

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
}

/// The state of one place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceStatus {
    Waiting {
        position: i64,
        eta_seconds: Option<i64>,
    },
    Active {
        active_until: DateTime<Utc>,
    },
    Expired,
    Completed,
}

/// Works out the status of place `seq` from the room's admission frontier and steps.
///
/// `admissions` must hold every step whose window may still be open (the api keeps them all until
/// `active_until` has passed); an admitted seq not covered by one has had its window close.
pub fn place_status(
    seq: i64,
    admitted_upto: i64,
    admissions: &[Admission],
    completed: bool,
    policy: &Policy,
    next_admit_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> PlaceStatus {
    if completed {
        return PlaceStatus::Completed;
    }
    if seq > admitted_upto {
        let position = seq - admitted_upto;
        return PlaceStatus::Waiting {
            position,
            eta_seconds: eta_seconds(position, policy, next_admit_at, now),
        };
    }
    match admissions
        .iter()
        .find(|a| (a.from_seq..=a.upto_seq).contains(&seq))
    {
        Some(a) if now < a.active_until => PlaceStatus::Active {
            active_until: a.active_until,
        },
        _ => PlaceStatus::Expired,
    }
}

/// A rough wait for `position`: by the interval quota when there is one, and assuming a full room frees a
/// slot only when a session's window closes. Taking the slower of the two keeps it on the cautious side.
pub fn eta_seconds(
    position: i64,
    policy: &Policy,
    next_admit_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<i64> {
    let by_interval = match (policy.admit_per_interval, policy.interval_seconds) {
        (Some(n), Some(secs)) => {
            let rounds_before = (position - 1) / i64::from(n);
            let first = next_admit_at.map_or(0, |at| (at - now).num_seconds().max(0));
            Some(first + rounds_before * i64::from(secs))
        }
        _ => None,
    };
    let by_capacity = policy
        .max_active_users
        .map(|m| ((position - 1) / i64::from(m)) * i64::from(policy.active_seconds));
    match (by_interval, by_capacity) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// How long a client should wait before polling its status again.
pub fn retry_after_seconds(status: &PlaceStatus) -> u64 {
    match status {
        PlaceStatus::Waiting {
            position,
            eta_seconds,
        } => {
            let by_eta = eta_seconds.map_or(5, |eta| (eta / 4).clamp(1, 30) as u64);
            if *position <= 10 {
                1
            } else {
                by_eta
            }
        }
        PlaceStatus::Active { .. } => 30,
        PlaceStatus::Expired | PlaceStatus::Completed => 3600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn policy(max_active: Option<i32>, per: Option<(i32, i32)>) -> Policy {
        Policy {
            max_active_users: max_active,
            admit_per_interval: per.map(|p| p.0),
            interval_seconds: per.map(|p| p.1),
            active_seconds: 60,
            hold_seconds: 30,
        }
    }

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

    #[test]
    fn policy_validation() {
        assert!(policy(Some(1), None).validate().is_ok());
        assert!(policy(None, Some((1, 1))).validate().is_ok());
        assert!(policy(None, None).validate().is_err());
        assert!(policy(Some(0), None).validate().is_err());
        let mut half = policy(None, Some((1, 1)));
        half.interval_seconds = None;
        assert!(half.validate().is_err());
        let mut bad = policy(Some(1), None);
        bad.active_seconds = 0;
        assert!(bad.validate().is_err());
        assert!(DEFAULT_POLICY.validate().is_ok());
    }

    #[test]
    fn place_status_follows_frontier_and_window() {
        let p = policy(Some(10), None);
        let steps = [Admission {
            from_seq: 1,
            upto_seq: 3,
            admitted_at: t(0),
            active_until: t(60),
        }];
        assert_eq!(
            place_status(5, 3, &steps, false, &p, None, t(1)),
            PlaceStatus::Waiting {
                position: 2,
                eta_seconds: Some(0)
            }
        );
        assert_eq!(
            place_status(4, 3, &steps, false, &p, None, t(1)),
            PlaceStatus::Waiting {
                position: 1,
                eta_seconds: Some(0)
            }
        );
        assert_eq!(
            place_status(2, 3, &steps, false, &p, None, t(59)),
            PlaceStatus::Active {
                active_until: t(60)
            }
        );
        assert_eq!(
            place_status(2, 3, &steps, false, &p, None, t(60)),
            PlaceStatus::Expired
        );
        assert_eq!(
            place_status(2, 3, &steps, true, &p, None, t(1)),
            PlaceStatus::Completed
        );
        assert_eq!(
            place_status(1, 3, &[], false, &p, None, t(1)),
            PlaceStatus::Expired,
            "forgotten step is long over"
        );
    }

    #[test]
    fn eta_counts_interval_rounds() {
        let p = policy(None, Some((5, 10)));
        assert_eq!(eta_seconds(1, &p, Some(t(4)), t(0)), Some(4));
        assert_eq!(eta_seconds(5, &p, Some(t(4)), t(0)), Some(4));
        assert_eq!(eta_seconds(6, &p, Some(t(4)), t(0)), Some(14));
        assert_eq!(eta_seconds(11, &p, None, t(0)), Some(20));
        let capacity = policy(Some(10), None);
        assert_eq!(eta_seconds(25, &capacity, None, t(0)), Some(120));
    }

    #[test]
    fn retry_after_is_short_near_the_front() {
        assert_eq!(
            retry_after_seconds(&PlaceStatus::Waiting {
                position: 1,
                eta_seconds: Some(600)
            }),
            1
        );
        assert_eq!(
            retry_after_seconds(&PlaceStatus::Waiting {
                position: 500,
                eta_seconds: Some(600)
            }),
            30
        );
        assert_eq!(
            retry_after_seconds(&PlaceStatus::Waiting {
                position: 500,
                eta_seconds: Some(8)
            }),
            2
        );
    }
}
