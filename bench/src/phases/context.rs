//! What every phase of a round works with: what the rounds share ([`Bench`]) and the round in progress
//! ([`Round`]). Below the phase modules, which each take both, and the round loop that hands them out.

use std::sync::Arc;

use crate::cli::Params;
use crate::client::Api;
use crate::figures::PhaseFigures;
use crate::scale::PlaceCheck;
use crate::stats::Recorder;
use crate::user::User;
use crate::verify::Ledger;

/// What the rounds share: parameters, clients, users, and the ledger the verifier reads at the end.
pub struct Bench {
    pub p: Params,
    /// Unbounded client (admin calls, and phases that bound themselves).
    pub base: Api,
    /// Client with at most `concurrency` requests in flight.
    pub api: Api,
    pub ledger: Arc<Ledger>,
    /// Everyone signed up.
    pub users: Arc<Vec<User>>,
    /// The on-sale crowd (charged): the first `users`.
    pub onsale: Arc<Vec<User>>,
    /// The crowd at scale: the first `crowd`.
    pub crowd: Arc<Vec<User>>,
}

/// One round in progress.
pub struct Round {
    /// 1-based.
    pub n: usize,
    pub rec: Arc<Recorder>,
    pub phases: Vec<PhaseFigures>,
    pub places: Option<PlaceCheck>,
}
