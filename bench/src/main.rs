//! `concert-bench`: a flash-crowd on-sale against a running service, over real HTTP.
//!
//! Phases: setup (concert, policy, users, charges), crowd (everyone joins at once and polls until ACTIVE),
//! race (holds on hot and spread seats, pay / release / lapse), hold throughput at an offered rate and
//! unthrottled, status polls, then verification from the service's own answers. Prints a table per operation,
//! writes `report.json` and `latency.svg`, and ends with the `bench:` line; exits 2 if anything was oversold
//! or lost.

mod cli;
mod client;
mod crowd;
mod phases;
mod race;
mod report;
mod setup;
mod stats;
mod streams;
mod svg;
mod verify;
mod workers;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Args, Params};
use crate::client::{Api, Outcome};
use crate::crowd::CrowdPlan;
use crate::phases::{HoldBench, PhaseFigures};
use crate::race::RacePlan;
use crate::report::{Headline, Report};
use crate::setup::Policy;
use crate::stats::Recorder;
use crate::verify::Ledger;

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
    match run(&args).await {
        Ok(h) if h.oversold > 0 || h.lost > 0 => ExitCode::from(2),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concert-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A progress bar for a phase of `len` steps (or milliseconds, for timed phases).
fn bar(name: &str, len: u64, timed: bool) -> ProgressBar {
    let template = if timed {
        "{prefix:>16} [{bar:40.cyan/blue}] {elapsed:>4} / {msg}"
    } else {
        "{prefix:>16} [{bar:40.cyan/blue}] {pos:>6}/{len:<6} {elapsed:>4} {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let b = ProgressBar::new(len)
        .with_style(style)
        .with_prefix(name.to_owned());
    if timed {
        b.set_message(format!("{:.0}s", len as f64 / 1000.0));
    }
    b
}

/// Ends a phase's bar; without a terminal (bars hidden) says the same on stderr.
fn done(b: &ProgressBar, msg: String) {
    if b.is_hidden() {
        eprintln!(
            "{}: done in {:.1}s {msg}",
            b.prefix(),
            b.elapsed().as_secs_f64()
        );
    }
    b.finish_with_message(msg);
}

fn figures(name: &str, started: Instant, n: u64) -> PhaseFigures {
    PhaseFigures {
        name: name.to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        offered: n,
        sent: n,
        shed: 0,
    }
}

async fn run(args: &Args) -> anyhow::Result<Headline> {
    let p = args.params();
    let base = Api::new(&args.url, &args.admin_token)?;
    match base.ready().await {
        Outcome::Done(_) => {}
        other => bail!(
            "{} is not ready ({other:?}); start the service with ./dev up",
            args.url
        ),
    }
    let api = base.bounded(p.concurrency);
    let rec = Arc::new(Recorder::default());
    let ledger = Arc::new(Ledger::default());
    let mut phases = Vec::new();
    let secs = Duration::from_secs_f64(p.phase_seconds);

    // 1. Setup.
    let started = Instant::now();
    let policy = Policy {
        max_active_users: p.users,
        admit_per_interval: p.users,
        interval_seconds: 1,
        active_seconds: 300,
        hold_seconds: p.hold_seconds,
    };
    let concert =
        setup::create_concert(&base, "Bench on-sale", p.dates, p.seats, p.price, policy).await?;
    let b = bar("setup", p.users as u64, false);
    let users =
        Arc::new(setup::users(&api, &rec, &ledger, p.users, p.underfunded, p.price, &b).await);
    done(&b, String::new());
    phases.push(figures("setup", started, p.users as u64));
    if users.is_empty() {
        bail!("no user could sign up; see the errors above");
    }

    // 2. Flash crowd.
    let started = Instant::now();
    let b = bar("crowd", users.len() as u64, false);
    let plan = CrowdPlan {
        phase: "crowd".into(),
        concert_id: concert.concert_id.clone(),
        wait: p.wait,
        retry_cap: Duration::from_secs_f64(p.retry_after_cap),
        admit_deadline: Duration::from_secs(p.admit_deadline),
    };
    let tokens = crowd::run(&api, &rec, &ledger, &users, &plan, &b).await;
    done(&b, format!("{} admitted", tokens.iter().flatten().count()));
    phases.push(figures("crowd", started, users.len() as u64));

    // 3. Seat race.
    let started = Instant::now();
    let b = bar("race", 0, false);
    let race_plan = RacePlan {
        concert: concert.clone(),
        hot_seats: p.hot_seats,
        hot_fraction: p.hot_fraction,
        retries: p.retries,
        lapse: p.lapse,
        release: p.release,
        late_pay: p.late_pay,
        wait: p.wait,
        seed: p.seed,
    };
    race::run(&api, &rec, &ledger, &users, &tokens, &race_plan, &b).await;
    done(&b, format!("{} paid", ledger.payments()));
    phases.push(figures(
        "race",
        started,
        tokens.iter().flatten().count() as u64,
    ));

    // 4. Hold throughput and status polls, on a concert of their own.
    if p.hold_rate > 0 || p.unthrottled || p.poll_workers > 0 {
        phases.extend(timed_phases(&base, &api, &rec, &ledger, &users, &p, secs).await?);
    }

    // 5. Verification.
    let b = bar("verify", 0, false);
    let verification = verify::verify(
        &api,
        &users,
        &ledger,
        Duration::from_secs(p.lost_deadline),
        &b,
    )
    .await;
    done(&b, String::new());

    let ops = rec.summaries();
    let get = |name: &str| ops.iter().find(|o| o.name == name && o.count > 0);
    let rated = format!("tp@{}/hold", p.hold_rate);
    let hold_tp = get("tp@max/hold")
        .or_else(|| get(&rated))
        .or_else(|| get("race/hold"));
    let hold_p99 = get(&rated).or_else(|| get("race/hold"));
    let headline = Headline {
        joins_per_s: get("crowd/join").map_or(0, |o| o.per_s.round() as u64),
        holds_per_s: hold_tp.map_or(0, |o| o.per_s.round() as u64),
        pays_per_s: get("race/pay").map_or(0, |o| o.per_s.round() as u64),
        p99_hold_ms: hold_p99.map_or(0, |o| o.p99_ms.round() as u64),
        oversold: verification.oversold,
        lost: verification.lost,
    };
    let report = Report {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        base_url: args.url.clone(),
        params: p.clone(),
        phases,
        ops,
        verification,
        anomalies: ledger.anomalies(),
        headline: headline.clone(),
    };
    print_summary(&report);
    report::write(&args.out_dir, &report)?;
    println!(
        "wrote {0}/report.json and {0}/latency.svg",
        args.out_dir.display()
    );
    println!("{}", headline.line());
    Ok(headline)
}

/// Creates the hold-phase concert, admits its users, and runs the rated, unthrottled and status-poll phases.
async fn timed_phases(
    base: &Api,
    api: &Api,
    rec: &Arc<Recorder>,
    ledger: &Arc<Ledger>,
    users: &Arc<Vec<crate::setup::User>>,
    p: &Params,
    secs: Duration,
) -> anyhow::Result<Vec<PhaseFigures>> {
    let mut out = Vec::new();
    let mut capacity = 0.0;
    if p.hold_rate > 0 {
        capacity += p.hold_rate as f64 * p.phase_seconds * 1.15;
    }
    if p.unthrottled {
        capacity += p.expect_max_rate as f64 * p.phase_seconds * 1.15;
    }
    let n = p.tp_users.min(users.len());
    let (dates, seats) = phases::layout((capacity as u64).max(n as u64), n);
    let policy = Policy {
        max_active_users: n,
        admit_per_interval: n,
        interval_seconds: 1,
        active_seconds: 3600,
        hold_seconds: 3600,
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
    out.push(figures("tp-setup", started, n as u64));
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
        out.push(hb.unthrottled(p.hold_workers, secs, &b).await);
        done(&b, String::new());
    }
    if p.poll_workers > 0 {
        let b = bar("status polls", ms, true);
        out.push(hb.status_polls(p.poll_workers, secs, &b).await);
        done(&b, String::new());
    }
    Ok(out)
}

fn print_summary(r: &Report) {
    println!();
    print!("{}", report::table(&r.ops));
    println!();
    for ph in &r.phases {
        let shed = if ph.shed > 0 {
            format!(" shed={}", ph.shed)
        } else {
            String::new()
        };
        println!(
            "phase {:<16} {:>7.2}s sent={}{shed}",
            ph.name, ph.seconds, ph.sent
        );
    }
    let v = &r.verification;
    println!(
        "verify: payments_seen={} reservations={} double_paid_seats={} double_reserved_seats={} chased={} (decided {}) undecided={} missing_reservations={} unreadable_users={}",
        v.payments_seen, v.reservations_total, v.double_paid_seats, v.double_reserved_seats, v.chased, v.chased_decided, v.undecided, v.missing_reservations, v.unreadable_users
    );
    for d in &v.details {
        println!("  {d}");
    }
    if r.anomalies.is_empty() {
        println!("anomalies: none");
    } else {
        println!("anomalies:");
        for (what, n) in &r.anomalies {
            println!("  {n:>6} x {what}");
        }
    }
}
