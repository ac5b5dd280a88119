//! Waiting-room arithmetic: the admission policy, how many to admit at a tick, and what a place in line
//! looks like from a snapshot of the room. Pure functions, so they are unit-tested without a database.
//!
//! One file per idea, each below the next: the policy ([`policy`]), the admission step ([`step`]), the
//! status of a place ([`status`]) and what a waiting place is told ([`eta`]). Everything is named here too,
//! so `concert_core::admission::X` is the path the api and the workers use.

pub mod draw;
pub mod eta;
pub mod policy;
pub mod status;
pub mod step;

pub use draw::{Draw, DrawOrder};
pub use eta::{eta_seconds, retry_after_seconds, waiting_status, Turnover};
pub use policy::{
    Policy, CLAIM_SECONDS_RANGE, DEFAULT_CLAIM_SECONDS, DEFAULT_POLICY, MAX_SECONDS, MAX_USERS,
};
pub use status::{admitted_status, EndReason, PlaceFacts, PlaceStatus, CLAIM_GRACE_MS};
pub use step::{admit_step, Admission, AdmitStep};

#[cfg(test)]
mod testing;
