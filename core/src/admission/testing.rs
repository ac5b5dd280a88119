//! What the unit tests of the admission modules share: instants a few seconds apart and a policy built
//! from its limits.

use chrono::{DateTime, Utc};

use super::policy::{Policy, DEFAULT_CLAIM_SECONDS};

pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

pub fn policy(max_active: Option<i32>, per: Option<(i32, i32)>) -> Policy {
    Policy {
        max_active_users: max_active,
        admit_per_interval: per.map(|p| p.0),
        interval_seconds: per.map(|p| p.1),
        active_seconds: 60,
        hold_seconds: 30,
        claim_seconds: DEFAULT_CLAIM_SECONDS,
    }
}
