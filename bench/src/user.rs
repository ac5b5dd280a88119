//! A user of the run as the phases and the verifier know it. Its own module because setup signs users up
//! (and records what it sees in the verifier's ledger) while the verifier reads every user's reservations:
//! both use the type, neither should import the other for it.

/// A signed-up user.
#[derive(Debug, Clone)]
pub struct User {
    /// Index in the run's user list.
    pub idx: usize,
    /// `Authorization: Bearer` token.
    pub token: String,
    /// Whether the balance covers one seat.
    pub funded: bool,
}
