//! The on-sale phase: a concert of its own, the crowd joining and polling its places until ACTIVE
//! ([`crate::crowd`]), then the seat race of those admitted ([`crate::race`]).

use std::time::{Duration, Instant};

use super::context::{Bench, Round};
use crate::crowd::{self, CrowdPlan};
use crate::figures::PhaseFigures;
use crate::progress::{bar, done};
use crate::race::{self, RacePlan};
use crate::setup::{self, Policy};

/// Setup of the on-sale concert, the crowd (joins, polls until ACTIVE) and the seat race.
pub async fn run(bench: &Bench, round: &mut Round) -> anyhow::Result<()> {
    let (p, rec, ledger) = (&bench.p, &round.rec, &bench.ledger);
    let policy = Policy {
        max_active_users: p.users,
        admit_per_interval: p.users,
        interval_seconds: 1,
        active_seconds: 300,
        hold_seconds: p.hold_seconds,
        claim_seconds: None,
    };
    let concert = setup::create_concert(
        &bench.base,
        "Bench on-sale",
        p.dates,
        p.seats,
        p.price,
        policy,
    )
    .await?;

    let started = Instant::now();
    let b = bar("crowd", bench.onsale.len() as u64, false);
    let plan = CrowdPlan {
        phase: "crowd".into(),
        concert_id: concert.concert_id.clone(),
        wait: p.wait,
        retry_cap: Duration::from_secs_f64(p.retry_after_cap),
        admit_deadline: Duration::from_secs(p.admit_deadline),
    };
    let tokens = crowd::run(&bench.api, rec, ledger, &bench.onsale, &plan, &b).await;
    done(&b, format!("{} admitted", tokens.iter().flatten().count()));
    round.phases.push(PhaseFigures::counted(
        "crowd",
        started,
        bench.onsale.len() as u64,
    ));

    let started = Instant::now();
    let b = bar("race", 0, false);
    let race_plan = RacePlan {
        concert,
        hot_seats: p.hot_seats,
        hot_fraction: p.hot_fraction,
        retries: p.retries,
        lapse: p.lapse,
        release: p.release,
        late_pay: p.late_pay,
        wait: p.wait,
        seed: p.seed ^ round.n as u64,
    };
    race::run(
        &bench.api,
        rec,
        ledger,
        &bench.onsale,
        &tokens,
        &race_plan,
        &b,
    )
    .await;
    done(&b, format!("{} paid so far", ledger.payments()));
    round.phases.push(PhaseFigures::counted(
        "race",
        started,
        tokens.iter().flatten().count() as u64,
    ));
    Ok(())
}
