//! The phases of a round, one module each, and running a round: its phases in the order `main.rs` gives,
//! then the round's report from everything they recorded.

pub mod at_scale;
pub mod context;
pub mod holds;
pub mod joins;
pub mod on_sale;
pub mod prequeue;

use std::sync::Arc;
use std::time::Duration;

use self::context::{Bench, Round};
use crate::report::RoundReport;
use crate::rounds::RoundFigures;
use crate::stats::Recorder;

/// The phases of a round (`ROUND_PHASES` in main.rs runs them in the order it lists them). To add one: a
/// variant, its place in `ROUND_PHASES`, a module here, and an arm in [`Bench::phase`] that records under
/// operation names of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The on-sale: the crowd joins and is admitted, then races for a few seats, pays, releases, lets lapse.
    OnSale,
    /// Holds on fresh seats: at an offered rate, unthrottled, by 64 closed-loop clients; then status polls.
    Holds,
    /// Joins by 64 closed-loop clients.
    ClosedLoopJoins,
    /// The crowd at scale joins one concert at once; its places are checked gap-free.
    CrowdAtScale,
}

impl Bench {
    /// Runs the `phases` of round `n`, in that order, each on concerts of its own.
    pub async fn round(&self, n: usize, phases: &[Phase]) -> anyhow::Result<RoundReport> {
        let mut round = Round {
            n,
            rec: Arc::new(Recorder::new(Duration::from_millis(self.p.stall_ms))),
            phases: Vec::new(),
            places: None,
        };
        for phase in phases {
            self.phase(*phase, &mut round).await?;
        }
        let ops = round.rec.summaries();
        Ok(RoundReport {
            round: n,
            figures: RoundFigures::from_ops(&ops, self.p.hold_rate).with_costs(&round.phases),
            phases: round.phases,
            ops,
            places: round.places,
        })
    }

    async fn phase(&self, phase: Phase, round: &mut Round) -> anyhow::Result<()> {
        let p = &self.p;
        match phase {
            Phase::OnSale => on_sale::run(self, round).await,
            Phase::Holds
                if p.hold_rate > 0
                    || p.unthrottled
                    || p.poll_workers > 0
                    || p.closed_loop_clients > 0 =>
            {
                let rec = round.rec.clone();
                let figures =
                    holds::run(&self.base, &self.api, &rec, &self.ledger, &self.onsale, p).await?;
                round.phases.extend(figures);
                Ok(())
            }
            Phase::ClosedLoopJoins if p.closed_loop_clients > 0 => joins::run(self, round).await,
            Phase::CrowdAtScale if !self.crowd.is_empty() && p.crowd > 0 => {
                at_scale::run(self, round).await
            }
            Phase::Holds | Phase::ClosedLoopJoins | Phase::CrowdAtScale => Ok(()),
        }
    }
}
