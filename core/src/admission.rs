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
    /// An admitted place that makes no request with its queue token within this many seconds of its
    /// admission ends (`NOT_CLAIMED`) and its slot goes to the next in line.
    #[serde(default = "default_claim_seconds")]
    pub claim_seconds: i32,
}

/// `claim_seconds` when a policy does not say.
pub const DEFAULT_CLAIM_SECONDS: i32 = 60;
/// The `claim_seconds` an admin may set.
pub const CLAIM_SECONDS_RANGE: std::ops::RangeInclusive<i32> = 5..=3600;

fn default_claim_seconds() -> i32 {
    DEFAULT_CLAIM_SECONDS
}

/// How long past a claim deadline an unclaimed place still counts as ACTIVE. Claims reach Postgres in
/// batches (every few hundred milliseconds) and other api instances learn them on their next refresh, so
/// the ticker and every instance wait this long before taking "no claim seen" as "never claimed".
pub const CLAIM_GRACE_MS: i64 = 1000;

/// The policy a concert gets when it is created, until an admin sets one.
pub const DEFAULT_POLICY: Policy = Policy {
    max_active_users: Some(100),
    admit_per_interval: None,
    interval_seconds: None,
    active_seconds: 600,
    hold_seconds: 300,
    claim_seconds: DEFAULT_CLAIM_SECONDS,
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
        if !CLAIM_SECONDS_RANGE.contains(&self.claim_seconds) {
            return Err(format!(
                "claim_seconds must be between {} and {}",
                CLAIM_SECONDS_RANGE.start(),
                CLAIM_SECONDS_RANGE.end()
            ));
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
    /// Places of the step not claimed by then end (`NOT_CLAIMED`).
    pub claim_until: DateTime<Utc>,
}

/// Why a place ended without a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Admitted, but no request came with its queue token within `claim_seconds`.
    NotClaimed,
    /// The active window ran out.
    WindowEnded,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotClaimed => "NOT_CLAIMED",
            Self::WindowEnded => "WINDOW_ENDED",
        }
    }
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
    Expired {
        reason: EndReason,
    },
    Completed,
}

impl PlaceStatus {
    /// WAITING, ACTIVE, EXPIRED or COMPLETED, as the contract names them.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Waiting { .. } => "WAITING",
            Self::Active { .. } => "ACTIVE",
            Self::Expired { .. } => "EXPIRED",
            Self::Completed => "COMPLETED",
        }
    }

    /// EXPIRED and COMPLETED never change again.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Expired { .. } | Self::Completed)
    }
}

/// What is known about one admitted place besides its step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaceFacts {
    pub completed: bool,
    /// Ended by the ticker for want of a claim.
    pub ended: bool,
    /// A request with its token was seen in time (here or, through Postgres, by another instance).
    pub claimed: bool,
}

/// Works out the status of an admitted place from its admission step (`None`: the step's window closed
/// long ago and was forgotten).
pub fn admitted_status(
    step: Option<&Admission>,
    facts: PlaceFacts,
    now: DateTime<Utc>,
) -> PlaceStatus {
    if facts.completed {
        return PlaceStatus::Completed;
    }
    if facts.ended {
        return PlaceStatus::Expired {
            reason: EndReason::NotClaimed,
        };
    }
    match step {
        Some(a) if now < a.active_until => {
            let grace = Duration::milliseconds(CLAIM_GRACE_MS);
            if !facts.claimed && now >= a.claim_until + grace {
                PlaceStatus::Expired {
                    reason: EndReason::NotClaimed,
                }
            } else {
                PlaceStatus::Active {
                    active_until: a.active_until,
                }
            }
        }
        _ => PlaceStatus::Expired {
            reason: EndReason::WindowEnded,
        },
    }
}

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
pub fn retry_after_seconds(status: &PlaceStatus, policy: &Policy) -> u64 {
    let cap = (i64::from(policy.claim_seconds) / 2).clamp(1, 30);
    match status {
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
            claim_seconds: DEFAULT_CLAIM_SECONDS,
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

    fn step(claim: i64, until: i64) -> Admission {
        Admission {
            from_seq: 1,
            upto_seq: 3,
            admitted_at: t(0),
            active_until: t(until),
            claim_until: t(claim),
        }
    }

    #[test]
    fn admitted_status_follows_window_claim_and_completion() {
        let s = step(10, 60);
        let unclaimed = PlaceFacts::default();
        let claimed = PlaceFacts {
            claimed: true,
            ..PlaceFacts::default()
        };
        let active = PlaceStatus::Active {
            active_until: t(60),
        };
        let not_claimed = PlaceStatus::Expired {
            reason: EndReason::NotClaimed,
        };
        let window = PlaceStatus::Expired {
            reason: EndReason::WindowEnded,
        };
        assert_eq!(admitted_status(Some(&s), unclaimed, t(5)), active);
        assert_eq!(
            admitted_status(Some(&s), unclaimed, t(10)),
            active,
            "a claim may still be on its way"
        );
        assert_eq!(admitted_status(Some(&s), unclaimed, t(12)), not_claimed);
        assert_eq!(admitted_status(Some(&s), claimed, t(59)), active);
        assert_eq!(admitted_status(Some(&s), claimed, t(60)), window);
        assert_eq!(admitted_status(None, claimed, t(1)), window);
        let ended = PlaceFacts {
            ended: true,
            ..PlaceFacts::default()
        };
        assert_eq!(admitted_status(Some(&s), ended, t(1)), not_claimed);
        let paid = PlaceFacts {
            completed: true,
            ..claimed
        };
        assert_eq!(
            admitted_status(Some(&s), paid, t(1)),
            PlaceStatus::Completed
        );
        assert_eq!(not_claimed.name(), "EXPIRED");
        assert!(window.is_final() && !active.is_final());
    }

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
        assert_eq!(retry_after_seconds(&waiting(0), &p), 1);
        assert_eq!(retry_after_seconds(&waiting(8), &p), 2);
        assert_eq!(
            retry_after_seconds(&waiting(600), &p),
            30,
            "a full room's front polls slowly"
        );
        let short_claims = Policy {
            claim_seconds: 10,
            ..p
        };
        assert_eq!(
            retry_after_seconds(&waiting(600), &short_claims),
            5,
            "never so slow that an early admission misses its claim"
        );
    }

    #[test]
    fn claim_seconds_is_bounded() {
        let mut p = policy(Some(1), None);
        p.claim_seconds = 4;
        assert!(p.validate().is_err());
        p.claim_seconds = 3601;
        assert!(p.validate().is_err());
        p.claim_seconds = 5;
        assert!(p.validate().is_ok());
        let parsed: Policy =
            serde_json::from_str(r#"{"max_active_users":1,"active_seconds":1,"hold_seconds":1}"#)
                .unwrap();
        assert_eq!(parsed.claim_seconds, DEFAULT_CLAIM_SECONDS);
    }
}
