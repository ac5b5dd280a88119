//! The crowd-at-scale phase: the crowd joins one concert at once, then its places are read back and checked
//! gap-free ([`crate::scale`]).

use std::time::{Duration, Instant};

use super::context::{Bench, Round};
use crate::figures::PhaseFigures;
use crate::progress::{bar, done};
use crate::rounds;
use crate::scale;
use crate::setup::{self, Policy};

/// The crowd at scale joins one concert at once; then its places are read back and checked gap-free.
pub async fn run(bench: &Bench, round: &mut Round) -> anyhow::Result<()> {
    let p = &bench.p;
    let concert = setup::create_concert(
        &bench.base,
        "Bench crowd at scale",
        1,
        50,
        p.price,
        Policy::admit_nobody(),
    )
    .await?;
    let api = bench.base.bounded(p.crowd_concurrency);
    let n = bench.crowd.len();
    let started = Instant::now();
    let b = bar(&format!("crowd of {n}"), n as u64, false);
    let plan = scale::JoinPlan {
        concert_id: concert.concert_id.clone(),
        op: rounds::ops::SCALE_JOIN.to_owned(),
        wait: p.wait,
        deadline: Duration::from_secs(p.admit_deadline),
    };
    let tokens = scale::join_all(&api, &round.rec, &bench.ledger, &bench.crowd, &plan, &b).await;
    let placed = tokens.iter().flatten().count();
    done(&b, format!("{placed} placed"));
    round.phases.push(PhaseFigures::counted(
        rounds::ops::SCALE_PHASE,
        started,
        n as u64,
    ));

    let b = bar("gap-free check", 0, false);
    let check = scale::check(&api, &bench.base, &concert.concert_id, &tokens).await;
    done(
        &b,
        format!(
            "{} waiting, {} active, {} expired, {} misplaced",
            check.waiting,
            check.active,
            check.expired,
            check.misplaced()
        ),
    );
    round.places = Some(check);
    Ok(())
}
