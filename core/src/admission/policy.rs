//! A concert's admission policy (N per interval, at most M active at once, or both), the default one, and
//! the bounds an admin may set it within.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::testing::policy;

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
