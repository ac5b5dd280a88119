//! Closed-loop joins: a fixed number of clients, each joining with `Prefer: wait` and waiting for the answer
//! before its next join, as a real crowd's clients do. Every join is a new place (a user joins a concert only
//! once: joining again while a place is live answers the same place without publishing anything), so join
//! number `k` is user `k % U` on concert `k / U`; the phase ends at its duration or when the pairs run out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Api, Caller};
use crate::figures::{closed_loop_figures, PhaseFigures};
use crate::stats::{OpStats, Recorder};
use crate::user::User;
use crate::verify::{expected_codes, Kind, Ledger};

/// Join number `k` of `users` users over `concerts` concerts: (concert index, user index), or `None` once
/// every pair has been used.
pub fn pair(k: u64, users: usize, concerts: usize) -> Option<(usize, usize)> {
    let u = users as u64;
    if u == 0 || k >= u * concerts as u64 {
        return None;
    }
    Some(((k / u) as usize, (k % u) as usize))
}

/// Concerts needed so that `clients` closed-loop joins at up to `max_rate` per second for `seconds` never run
/// out of fresh (user, concert) pairs.
pub fn concerts_needed(users: usize, max_rate: u64, seconds: f64) -> usize {
    let joins = (max_rate as f64 * seconds).ceil() as u64;
    (joins.div_ceil(users.max(1) as u64) as usize).max(1)
}

/// The users and concerts of a closed-loop join phase.
pub struct JoinLoop {
    pub api: Api,
    pub rec: Arc<Recorder>,
    pub ledger: Arc<Ledger>,
    pub users: Arc<Vec<User>>,
    pub concerts: Vec<String>,
    pub wait: u64,
}

impl JoinLoop {
    /// `clients` closed-loop clients joining for `duration` (or until the pairs run out), recorded as `op`.
    pub async fn run(
        self: &Arc<Self>,
        op: &str,
        clients: usize,
        duration: Duration,
        bar: &indicatif::ProgressBar,
    ) -> PhaseFigures {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let until = start + duration;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..clients.max(1) {
            let (me, next, op) = (self.clone(), next.clone(), op.to_owned());
            set.spawn(async move {
                let mut local = OpStats::default();
                while Instant::now() < until {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((c, u)) = pair(k, me.users.len(), me.concerts.len()) else {
                        break;
                    };
                    let user = &me.users[u];
                    let caller = Caller {
                        token: &user.token,
                        queue: None,
                    };
                    let (out, t) = me.api.join(caller, &me.concerts[c], me.wait).await;
                    local.record(t, Instant::now(), out.code());
                    me.ledger.observe(
                        &op,
                        user.idx,
                        Some(Kind::Join),
                        &out,
                        expected_codes(Kind::Join),
                    );
                }
                local
            });
        }
        closed_loop_figures(&self.rec, op.to_owned(), set, start, duration, bar).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_pair_is_used_once_then_none() {
        let (users, concerts) = (7, 3);
        let pairs: Vec<_> = (0..21).map(|k| pair(k, users, concerts).unwrap()).collect();
        assert_eq!(pairs.iter().collect::<HashSet<_>>().len(), 21);
        assert_eq!(pairs[0], (0, 0));
        assert_eq!(pairs[8], (1, 1));
        assert_eq!(pair(21, users, concerts), None);
        assert_eq!(pair(0, 0, 3), None);
        assert_eq!(pair(0, 5, 0), None);
    }

    #[test]
    fn enough_concerts_for_the_expected_rate() {
        assert_eq!(concerts_needed(20_000, 8000, 10.0), 4);
        assert_eq!(concerts_needed(20_000, 1000, 3.0), 1);
        assert_eq!(concerts_needed(300, 8000, 3.0), 80);
        assert_eq!(concerts_needed(0, 8000, 3.0), 24_000);
    }
}
