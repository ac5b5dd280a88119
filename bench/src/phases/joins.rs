//! The closed-loop joins phase: `closed_loop_clients` clients joining, each waiting for its answer
//! ([`crate::closed`]), on concerts made for the phase.

use std::sync::Arc;
use std::time::Duration;

use super::context::{Bench, Round};
use crate::closed::{self, JoinLoop};
use crate::progress::{bar, done};
use crate::rounds;
use crate::setup::{self, Policy};

/// Most concerts a closed-loop join phase creates (each gives every user one more join).
const MAX_JOIN_CONCERTS: usize = 200;

/// `closed_loop_clients` clients joining, each waiting for its answer, on concerts made for the phase.
pub async fn run(bench: &Bench, round: &mut Round) -> anyhow::Result<()> {
    let p = &bench.p;
    let secs = Duration::from_secs_f64(p.phase_seconds);
    let wanted = closed::concerts_needed(bench.users.len(), p.expect_max_rate, p.phase_seconds)
        .min(MAX_JOIN_CONCERTS);
    let mut concerts = Vec::with_capacity(wanted);
    for i in 0..wanted {
        let c = setup::create_concert(
            &bench.base,
            &format!("Bench closed-loop joins {}", i + 1),
            1,
            50,
            p.price,
            Policy::admit_nobody(),
        )
        .await?;
        concerts.push(c.concert_id);
    }
    let jl = Arc::new(JoinLoop {
        api: bench.base.unbounded(),
        rec: round.rec.clone(),
        ledger: bench.ledger.clone(),
        users: bench.users.clone(),
        concerts,
        wait: p.wait,
    });
    let op = rounds::ops::C64_JOIN;
    let b = bar(
        &format!("joins x{}", p.closed_loop_clients),
        secs.as_millis() as u64,
        true,
    );
    round
        .phases
        .push(jl.run(op, p.closed_loop_clients, secs, &b).await);
    done(&b, String::new());
    Ok(())
}
