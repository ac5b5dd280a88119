//! The holds phase: a concert of its own whose users are admitted first, then holds on fresh seats at an
//! offered rate, unthrottled and by closed-loop clients, and status polls ([`crate::hold_bench`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::Params;
use crate::client::Api;
use crate::crowd::{self, CrowdPlan};
use crate::figures::PhaseFigures;
use crate::hold_bench::{self, HoldBench};
use crate::progress::{bar, done};
use crate::rounds;
use crate::setup::{self, Policy};
use crate::stats::Recorder;
use crate::user::User;
use crate::verify::Ledger;

/// Creates the hold-phase concert, admits its users, and runs the rated, unthrottled and status-poll phases.
pub async fn run(
    base: &Api,
    api: &Api,
    rec: &Arc<Recorder>,
    ledger: &Arc<Ledger>,
    users: &Arc<Vec<User>>,
    p: &Params,
) -> anyhow::Result<Vec<PhaseFigures>> {
    let secs = Duration::from_secs_f64(p.phase_seconds);
    let mut out = Vec::new();
    let mut capacity = 0.0;
    if p.hold_rate > 0 {
        capacity += p.hold_rate as f64 * p.phase_seconds * 1.15;
    }
    if p.unthrottled {
        capacity += p.expect_max_rate as f64 * p.phase_seconds * 1.15;
    }
    if p.closed_loop_clients > 0 {
        capacity += p.expect_max_rate as f64 * p.phase_seconds * 1.15;
    }
    let n = p.tp_users.min(users.len());
    let (dates, seats) = hold_bench::layout((capacity as u64).max(n as u64), n);
    let policy = Policy {
        max_active_users: n,
        admit_per_interval: n,
        interval_seconds: 1,
        active_seconds: 3600,
        hold_seconds: 3600,
        claim_seconds: None,
    };
    let concert =
        setup::create_concert(base, "Bench hold throughput", dates, seats, p.price, policy).await?;

    let started = Instant::now();
    let tp_users = Arc::new(users[..n].to_vec());
    let b = bar("hold-phase join", n as u64, false);
    let plan = CrowdPlan {
        phase: "tp-setup".into(),
        concert_id: concert.concert_id.clone(),
        wait: p.wait,
        retry_cap: Duration::from_secs_f64(p.retry_after_cap),
        admit_deadline: Duration::from_secs(p.admit_deadline),
    };
    let tokens = crowd::run(api, rec, ledger, &tp_users, &plan, &b).await;
    let admitted: Vec<(usize, String, String)> = tp_users
        .iter()
        .zip(tokens)
        .filter_map(|(u, t)| t.map(|t| (u.idx, u.token.clone(), t)))
        .collect();
    done(
        &b,
        format!("{} admitted; {dates} dates x {seats} seats", admitted.len()),
    );
    out.push(PhaseFigures::counted("tp-setup", started, n as u64));
    if admitted.is_empty() {
        eprintln!("no user was admitted to the hold-phase concert: skipping the timed phases");
        return Ok(out);
    }

    let hb = Arc::new(HoldBench::new(
        base.unbounded(),
        rec.clone(),
        ledger.clone(),
        concert,
        admitted,
        p.wait,
    ));
    let ms = secs.as_millis() as u64;
    if p.hold_rate > 0 {
        let b = bar(&format!("holds @{}/s", p.hold_rate), ms, true);
        out.push(hb.at_rate(p.hold_rate, secs, p.max_inflight, &b).await);
        done(&b, String::new());
    }
    if p.unthrottled {
        let b = bar("holds max", ms, true);
        out.push(
            hb.closed_loop(rounds::ops::MAX_HOLD, p.hold_workers, secs, &b)
                .await,
        );
        done(&b, String::new());
    }
    if p.closed_loop_clients > 0 {
        let b = bar(&format!("holds x{}", p.closed_loop_clients), ms, true);
        out.push(
            hb.closed_loop(rounds::ops::C64_HOLD, p.closed_loop_clients, secs, &b)
                .await,
        );
        done(&b, String::new());
    }
    if p.poll_workers > 0 {
        let b = bar("status polls", ms, true);
        out.push(hb.status_polls(p.poll_workers, secs, &b).await);
        done(&b, String::new());
    }
    Ok(out)
}
