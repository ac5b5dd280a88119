//! What a WAITING place is told: its wait estimate (by the interval quota and by when a capped room's ACTIVE
//! places free their slots) and how soon to poll again.

use chrono::{DateTime, Duration, Utc};

use super::policy::Policy;
use super::status::PlaceStatus;

/// When the places ACTIVE now are expected to free their slots: the slots of a capped room, soonest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turnover {
    /// Slots free now.
    pub free_now: i64,
    /// When each of the other slots frees, soonest first: a claimed place at its window's end, an
    /// unclaimed one at its claim deadline. Only the `max_active_users - free_now` latest matter.
    pub ends: Vec<DateTime<Utc>>,
}

impl Turnover {
    /// The slots of a room capped at `max` with these ACTIVE places' expected ends (any order).
    pub fn new(max: i64, mut ends: Vec<DateTime<Utc>>) -> Self {
        ends.sort_unstable();
        let active = ends.len() as i64;
        // An over-full room (the cap was lowered) admits only once `active - max + 1` places ended.
        if active > max {
            ends.drain(..(active - max) as usize);
        }
        Self {
            free_now: (max - active).max(0),
            ends,
        }
    }

    /// When the `index`-th (0-based) next admission can happen, with every later place assumed to stay
    /// its whole `active_seconds` (the cautious side).
    fn admission_at(&self, index: i64, active_seconds: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        let slots = self.free_now + self.ends.len() as i64;
        if slots <= 0 {
            return now;
        }
        let (round, slot) = (index / slots, index % slots);
        let first = if slot < self.free_now {
            now
        } else {
            self.ends[(slot - self.free_now) as usize].max(now)
        };
        first + Duration::seconds(round.saturating_mul(active_seconds))
    }
}

/// Works out a WAITING place's status: its position and a wait estimate.
pub fn waiting_status(
    position: i64,
    policy: &Policy,
    next_admit_at: Option<DateTime<Utc>>,
    turnover: Option<&Turnover>,
    now: DateTime<Utc>,
) -> PlaceStatus {
    PlaceStatus::Waiting {
        position,
        eta_seconds: eta_seconds(position, policy, next_admit_at, turnover, now),
    }
}

/// A wait for `position`: by the interval quota when there is one, and by when the ACTIVE places of a
/// capped room end (`turnover`; without it, a full window per round). The slower of the two.
pub fn eta_seconds(
    position: i64,
    policy: &Policy,
    next_admit_at: Option<DateTime<Utc>>,
    turnover: Option<&Turnover>,
    now: DateTime<Utc>,
) -> Option<i64> {
    let position = position.max(1);
    let by_interval = match (policy.admit_per_interval, policy.interval_seconds) {
        (Some(n), Some(secs)) => {
            let rounds_before = (position - 1) / i64::from(n);
            let first = next_admit_at.map_or(0, |at| (at - now).num_seconds().max(0));
            Some(first + rounds_before * i64::from(secs))
        }
        _ => None,
    };
    let active_seconds = i64::from(policy.active_seconds);
    let by_capacity = policy.max_active_users.map(|m| match turnover {
        Some(t) => {
            let at = t.admission_at(position - 1, active_seconds, now);
            // Rounded up: "0" only when a slot is free now.
            ((at - now).num_milliseconds().max(0) + 999) / 1000
        }
        None => ((position - 1) / i64::from(m)) * active_seconds,
    });
    match (by_interval, by_capacity) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// How long a client should wait before polling its status again: a quarter of the estimated wait,
/// between 1 and 30 seconds, and never more than half of `claim_seconds` (a place admitted sooner than
/// estimated must still be claimed in time). Far back, that is one poll every 30 s, not a stampede.
/// A pre-queued place is never sent past `opens_at` + 1 s: it learns its position right after the draw.
pub fn retry_after_seconds(status: &PlaceStatus, policy: &Policy, now: DateTime<Utc>) -> u64 {
    let cap = (i64::from(policy.claim_seconds) / 2).clamp(1, 30);
    match status {
        PlaceStatus::PreQueued { opens_at } => {
            let until_open = opens_at.map_or(0, |at| (at - now).num_seconds().max(0));
            (until_open + 1).clamp(1, cap) as u64
        }
        PlaceStatus::Waiting { eta_seconds, .. } => {
            eta_seconds.map_or(5, |eta| eta / 4).clamp(1, cap) as u64
        }
        PlaceStatus::Active { .. } => 30,
        PlaceStatus::Expired { .. } | PlaceStatus::Completed => 3600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::testing::{policy, t};

    #[test]
    fn eta_counts_interval_rounds() {
        let p = policy(None, Some((5, 10)));
        assert_eq!(eta_seconds(1, &p, Some(t(4)), None, t(0)), Some(4));
        assert_eq!(eta_seconds(5, &p, Some(t(4)), None, t(0)), Some(4));
        assert_eq!(eta_seconds(6, &p, Some(t(4)), None, t(0)), Some(14));
        assert_eq!(eta_seconds(11, &p, None, None, t(0)), Some(20));
        let capacity = policy(Some(10), None);
        assert_eq!(eta_seconds(25, &capacity, None, None, t(0)), Some(120));
    }

    #[test]
    fn eta_waits_for_a_full_room_to_turn_over() {
        // 3 slots, all taken: ending at 20, 40 and (unclaimed) 8 seconds from now; windows of 60 s.
        let p = policy(Some(3), None);
        let full = Turnover::new(3, vec![t(20), t(40), t(8)]);
        assert_eq!(full.free_now, 0);
        assert_eq!(eta_seconds(1, &p, None, Some(&full), t(0)), Some(8));
        assert_eq!(eta_seconds(2, &p, None, Some(&full), t(0)), Some(20));
        assert_eq!(eta_seconds(3, &p, None, Some(&full), t(0)), Some(40));
        assert_eq!(
            eta_seconds(4, &p, None, Some(&full), t(0)),
            Some(68),
            "the next round starts when the first replacement's window ends"
        );
        let one_free = Turnover::new(3, vec![t(20), t(40)]);
        assert_eq!(eta_seconds(1, &p, None, Some(&one_free), t(0)), Some(0));
        assert_eq!(eta_seconds(2, &p, None, Some(&one_free), t(0)), Some(20));
        let over_full = Turnover::new(2, vec![t(5), t(20), t(40)]);
        assert_eq!(
            eta_seconds(1, &policy(Some(2), None), None, Some(&over_full), t(0)),
            Some(20),
            "two must end before a lowered cap admits anyone"
        );
    }

    #[test]
    fn retry_after_follows_the_estimate() {
        let p = policy(Some(10), None);
        let waiting = |eta| PlaceStatus::Waiting {
            position: 1,
            eta_seconds: Some(eta),
        };
        assert_eq!(retry_after_seconds(&waiting(0), &p, t(0)), 1);
        assert_eq!(retry_after_seconds(&waiting(8), &p, t(0)), 2);
        assert_eq!(
            retry_after_seconds(&waiting(600), &p, t(0)),
            30,
            "a full room's front polls slowly"
        );
        let short_claims = Policy {
            claim_seconds: 10,
            ..p
        };
        assert_eq!(
            retry_after_seconds(&waiting(600), &short_claims, t(0)),
            5,
            "never so slow that an early admission misses its claim"
        );
    }

    #[test]
    fn a_pre_queued_place_polls_again_right_after_the_opening() {
        let p = policy(Some(10), None);
        let pre = |at| PlaceStatus::PreQueued { opens_at: Some(at) };
        assert_eq!(retry_after_seconds(&pre(t(600)), &p, t(0)), 30, "far off");
        assert_eq!(
            retry_after_seconds(&pre(t(5)), &p, t(0)),
            6,
            "opens_at + 1 s"
        );
        let half = t(0) + Duration::milliseconds(500);
        assert_eq!(retry_after_seconds(&pre(half), &p, t(0)), 1);
        assert_eq!(
            retry_after_seconds(&pre(t(-3)), &p, t(0)),
            1,
            "opened, draw due"
        );
        let removed = PlaceStatus::PreQueued { opens_at: None };
        assert_eq!(retry_after_seconds(&removed, &p, t(0)), 1);
    }
}
