//! `concert-bench`: a flash-crowd on-sale against a running service, over real HTTP.
//!
//! Setup once (users signed up and charged, not timed), then `--rounds` rounds of the measured phases, each on
//! concerts of its own: the on-sale (crowd joins and polls until ACTIVE, then races for seats and pays,
//! releases or lets lapse), holds on fresh seats (at an offered rate, unthrottled, and by 64 closed-loop
//! clients) and status polls, joins by 64 closed-loop clients, and the crowd at scale (20,000 join one
//! concert at once; places checked gap-free). Then verification from the service's own answers. Prints a
//! table per operation and round and the median (min..max) of each figure over the rounds, writes
//! `report.json` and `latency.svg`, and ends with the `bench:` line; exits 2 if anything was oversold, lost,
//! stalled or misplaced.
//!
//! `--soak MINUTES` instead runs a steady mixed load and reports, per minute, memory, rows, p99 and a fresh
//! api's time to ready, then whether each stayed flat ([`soak`]).
//!
//! Throughout, it samples the CPU time of the processes `./dev bench` names in `BENCH_PROCS` (api, workers,
//! broker), of the PostgreSQL backends of `BENCH_DB` and of itself ([`cpu`]): every phase reports microseconds
//! of CPU per command sent, by process, and a 5-second idle window after setup each one's cost with no load.

mod cli;
mod client;
mod closed;
mod cpu;
mod crowd;
mod figures;
mod hold_bench;
mod kafka_requests;
mod phases;
mod procfs;
mod progress;
mod race;
mod report;
mod rounds;
mod scale;
mod setup;
mod soak;
mod spread;
mod stats;
mod status_poller;
mod streams;
mod svg;
mod user;
mod verify;
mod workers;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;

use crate::cli::Args;
use crate::client::{Api, Outcome};
use crate::phases::context::Bench;
use crate::phases::Phase;
use crate::progress::{bar, done};
use crate::report::{Headline, Report};
use crate::rounds::RoundFigures;
use crate::scale::PlaceCheck;
use crate::stats::Recorder;
use crate::verify::Ledger;

/// mimalloc, as the api and the workers use: the load generator shares the cores with the stack it measures,
/// and glibc's allocator was a large share of every process's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The phases of every round, in the order they run (each is described at [`Phase`]).
const ROUND_PHASES: &[Phase] = &[
    Phase::OnSale,
    Phase::Holds,
    Phase::ClosedLoopJoins,
    Phase::CrowdAtScale,
];

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(n) = args.streams {
        return match streams::run(&args, n).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("concert-bench --streams: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(minutes) = args.soak {
        return match soak::run(&args, minutes).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(2),
            Err(e) => {
                eprintln!("concert-bench --soak: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(n) = args.prequeue {
        return match phases::prequeue::run(&args, n).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("concert-bench --prequeue: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    match run(&args).await {
        Ok(h) => {
            let failures = h.failures();
            for f in &failures {
                eprintln!("concert-bench: FAILED: {f}");
            }
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("concert-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The idle window after setup, in which the stack's cost with no load is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

async fn run(args: &Args) -> anyhow::Result<Headline> {
    let p = args.params();
    let procs = cpu::Procs::from_env();
    println!("cpu time of: {}", procs.describe());
    cpu::start(procs);
    kafka_requests::start(kafka_requests::sources_from_env());
    let base = Api::new(&args.url, &args.admin_token)?;
    match base.ready().await {
        Outcome::Done(_) => {}
        other => bail!(
            "{} is not ready ({other:?}); start the service with ./dev up",
            args.url
        ),
    }
    let api = base.bounded(p.concurrency);
    let stall = Duration::from_millis(p.stall_ms);
    let ledger = Arc::new(Ledger::default());

    // Setup, once and not timed: every user the rounds need, the on-sale crowd's charged for every round.
    let total = p.users.max(p.crowd);
    let setup_rec = Arc::new(Recorder::new(stall));
    let b = bar("setup", total as u64, false);
    let users = setup::users(
        &api,
        &setup_rec,
        &ledger,
        total,
        p.users,
        p.underfunded,
        p.price,
        p.rounds as u32,
        &b,
    )
    .await;
    done(&b, format!("{} users", users.len()));
    if users.is_empty() {
        bail!("no user could sign up; see the errors above");
    }
    let bench = Bench {
        onsale: Arc::new(users[..p.users.min(users.len())].to_vec()),
        crowd: Arc::new(users[..p.crowd.min(users.len())].to_vec()),
        users: Arc::new(users),
        p: p.clone(),
        base,
        api,
        ledger: ledger.clone(),
    };

    // The stack's cost with no load, before round 1.
    let b = bar("idle", 0, false);
    let idle_started = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle = cpu::pct(idle_started, Instant::now());
    done(&b, String::new());
    report::print_idle(IDLE_WINDOW.as_secs_f64(), &idle);

    let mut rounds = Vec::new();
    for n in 1..=p.rounds {
        eprintln!("round {n} of {}", p.rounds);
        let round = bench.round(n, ROUND_PHASES).await?;
        report::print_round(&round);
        rounds.push(round);
    }

    let b = bar("verify", 0, false);
    let verification = verify::verify(
        &bench.api,
        &bench.users,
        &ledger,
        Duration::from_secs(p.lost_deadline),
        &b,
    )
    .await;
    done(&b, String::new());

    let figures: Vec<RoundFigures> = rounds.iter().map(|r| r.figures.clone()).collect();
    let headline = Headline {
        figures: rounds::spreads(&figures),
        stalled: figures.iter().map(|f| f.stalled).sum(),
        oversold: verification.oversold,
        lost: verification.lost,
        misplaced: rounds
            .iter()
            .filter_map(|r| r.places.as_ref())
            .map(PlaceCheck::misplaced)
            .sum(),
        rounds: rounds.len(),
        idle_stack_pct: idle.get(cpu::TOTAL).copied(),
    };
    let report = Report {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        base_url: args.url.clone(),
        params: p.clone(),
        setup: setup_rec.summaries(),
        idle_cpu_pct: idle,
        rounds,
        verification,
        anomalies: ledger.anomalies(),
        headline: headline.clone(),
    };
    report::print_summary(&report);
    report::write(&args.out_dir, &report)?;
    println!(
        "wrote {0}/report.json and {0}/latency.svg",
        args.out_dir.display()
    );
    println!("{}", headline.line());
    Ok(headline)
}
