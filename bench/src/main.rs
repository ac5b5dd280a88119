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

mod cli;
mod client;
mod closed;
mod crowd;
mod phases;
mod race;
mod report;
mod rounds;
mod scale;
mod setup;
mod spread;
mod stats;
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
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Args, Params};
use crate::client::{Api, Outcome};
use crate::closed::JoinLoop;
use crate::crowd::CrowdPlan;
use crate::phases::{HoldBench, PhaseFigures};
use crate::race::RacePlan;
use crate::report::{Headline, Report, RoundReport};
use crate::rounds::RoundFigures;
use crate::scale::PlaceCheck;
use crate::setup::Policy;
use crate::user::User;
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

    let mut rounds = Vec::new();
    for n in 1..=p.rounds {
        eprintln!("round {n} of {}", p.rounds);
        let round = bench.round(n).await?;
        print_round(&round);
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
    };
    let report = Report {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        base_url: args.url.clone(),
        params: p.clone(),
        setup: setup_rec.summaries(),
        rounds,
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

/// The phases of a round, in the order they run. To add one: a variant, its place in [`ROUND_PHASES`], and
/// an arm in [`Bench::phase`] that records under operation names of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The on-sale: the crowd joins and is admitted, then races for a few seats, pays, releases, lets lapse.
    OnSale,
    /// Holds on fresh seats: at an offered rate, unthrottled, by 64 closed-loop clients; then status polls.
    Holds,
    /// Joins by 64 closed-loop clients.
    ClosedLoopJoins,
    /// The crowd at scale joins one concert at once; its places are checked gap-free.
    CrowdAtScale,
}

const ROUND_PHASES: &[Phase] = &[
    Phase::OnSale,
    Phase::Holds,
    Phase::ClosedLoopJoins,
    Phase::CrowdAtScale,
];

/// What the rounds share: parameters, clients, users, and the ledger the verifier reads at the end.
struct Bench {
    p: Params,
    /// Unbounded client (admin calls, and phases that bound themselves).
    base: Api,
    /// Client with at most `concurrency` requests in flight.
    api: Api,
    ledger: Arc<Ledger>,
    /// Everyone signed up.
    users: Arc<Vec<User>>,
    /// The on-sale crowd (charged): the first `users`.
    onsale: Arc<Vec<User>>,
    /// The crowd at scale: the first `crowd`.
    crowd: Arc<Vec<User>>,
}

/// One round in progress.
struct Round {
    /// 1-based.
    n: usize,
    rec: Arc<Recorder>,
    phases: Vec<PhaseFigures>,
    places: Option<PlaceCheck>,
}

impl Bench {
    /// Runs every phase of round `n` on concerts of its own.
    async fn round(&self, n: usize) -> anyhow::Result<RoundReport> {
        let mut round = Round {
            n,
            rec: Arc::new(Recorder::new(Duration::from_millis(self.p.stall_ms))),
            phases: Vec::new(),
            places: None,
        };
        for phase in ROUND_PHASES {
            self.phase(*phase, &mut round).await?;
        }
        let ops = round.rec.summaries();
        Ok(RoundReport {
            round: n,
            figures: RoundFigures::from_ops(&ops, self.p.hold_rate),
            phases: round.phases,
            ops,
            places: round.places,
        })
    }

    async fn phase(&self, phase: Phase, round: &mut Round) -> anyhow::Result<()> {
        let p = &self.p;
        match phase {
            Phase::OnSale => self.on_sale(round).await,
            Phase::Holds
                if p.hold_rate > 0
                    || p.unthrottled
                    || p.poll_workers > 0
                    || p.closed_loop_clients > 0 =>
            {
                let rec = round.rec.clone();
                let figures =
                    timed_phases(&self.base, &self.api, &rec, &self.ledger, &self.onsale, p)
                        .await?;
                round.phases.extend(figures);
                Ok(())
            }
            Phase::ClosedLoopJoins if p.closed_loop_clients > 0 => {
                self.closed_loop_joins(round).await
            }
            Phase::CrowdAtScale if !self.crowd.is_empty() && p.crowd > 0 => {
                self.crowd_at_scale(round).await
            }
            Phase::Holds | Phase::ClosedLoopJoins | Phase::CrowdAtScale => Ok(()),
        }
    }

    /// Setup of the on-sale concert, the crowd (joins, polls until ACTIVE) and the seat race.
    async fn on_sale(&self, round: &mut Round) -> anyhow::Result<()> {
        let (p, rec, ledger) = (&self.p, &round.rec, &self.ledger);
        let policy = Policy {
            max_active_users: p.users,
            admit_per_interval: p.users,
            interval_seconds: 1,
            active_seconds: 300,
            hold_seconds: p.hold_seconds,
            claim_seconds: None,
        };
        let concert = setup::create_concert(
            &self.base,
            "Bench on-sale",
            p.dates,
            p.seats,
            p.price,
            policy,
        )
        .await?;

        let started = Instant::now();
        let b = bar("crowd", self.onsale.len() as u64, false);
        let plan = CrowdPlan {
            phase: "crowd".into(),
            concert_id: concert.concert_id.clone(),
            wait: p.wait,
            retry_cap: Duration::from_secs_f64(p.retry_after_cap),
            admit_deadline: Duration::from_secs(p.admit_deadline),
        };
        let tokens = crowd::run(&self.api, rec, ledger, &self.onsale, &plan, &b).await;
        done(&b, format!("{} admitted", tokens.iter().flatten().count()));
        round
            .phases
            .push(figures("crowd", started, self.onsale.len() as u64));

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
            &self.api,
            rec,
            ledger,
            &self.onsale,
            &tokens,
            &race_plan,
            &b,
        )
        .await;
        done(&b, format!("{} paid so far", ledger.payments()));
        round.phases.push(figures(
            "race",
            started,
            tokens.iter().flatten().count() as u64,
        ));
        Ok(())
    }

    /// `closed_loop_clients` clients joining, each waiting for its answer, on concerts made for the phase.
    async fn closed_loop_joins(&self, round: &mut Round) -> anyhow::Result<()> {
        let p = &self.p;
        let secs = Duration::from_secs_f64(p.phase_seconds);
        let wanted = closed::concerts_needed(self.users.len(), p.expect_max_rate, p.phase_seconds)
            .min(MAX_JOIN_CONCERTS);
        let mut concerts = Vec::with_capacity(wanted);
        for i in 0..wanted {
            let c = setup::create_concert(
                &self.base,
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
            api: self.base.unbounded(),
            rec: round.rec.clone(),
            ledger: self.ledger.clone(),
            users: self.users.clone(),
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

    /// The crowd at scale joins one concert at once; then its places are read back and checked gap-free.
    async fn crowd_at_scale(&self, round: &mut Round) -> anyhow::Result<()> {
        let p = &self.p;
        let concert = setup::create_concert(
            &self.base,
            "Bench crowd at scale",
            1,
            50,
            p.price,
            Policy::admit_nobody(),
        )
        .await?;
        let api = self.base.bounded(p.crowd_concurrency);
        let n = self.crowd.len();
        let started = Instant::now();
        let b = bar(&format!("crowd of {n}"), n as u64, false);
        let plan = scale::JoinPlan {
            concert_id: concert.concert_id.clone(),
            op: rounds::ops::SCALE_JOIN.to_owned(),
            wait: p.wait,
            deadline: Duration::from_secs(p.admit_deadline),
        };
        let tokens = scale::join_all(&api, &round.rec, &self.ledger, &self.crowd, &plan, &b).await;
        let placed = tokens.iter().flatten().count();
        done(&b, format!("{placed} placed"));
        round.phases.push(figures("scale", started, n as u64));

        let b = bar("gap-free check", 0, false);
        let check = scale::check(&api, &self.base, &concert.concert_id, &tokens).await;
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
}

/// Most concerts a closed-loop join phase creates (each gives every user one more join).
const MAX_JOIN_CONCERTS: usize = 200;

/// Creates the hold-phase concert, admits its users, and runs the rated, unthrottled and status-poll phases.
async fn timed_phases(
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
    let (dates, seats) = phases::layout((capacity as u64).max(n as u64), n);
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

/// A round's table, phases and figures.
fn print_round(r: &RoundReport) {
    println!();
    println!("round {}", r.round);
    print!("{}", report::table(&r.ops));
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
    if let Some(c) = &r.places {
        println!(
            "crowd at scale: {} users, {} waiting (room: {}), {} active, {} expired, {} without a place; gaps={} duplicates={} out_of_range={} unexpected={} (read {} time(s))",
            c.users,
            c.waiting,
            c.room_waiting.map_or_else(|| "?".to_owned(), |w| w.to_string()),
            c.active,
            c.expired,
            c.unplaced,
            c.gaps,
            c.duplicates,
            c.out_of_range,
            c.unexpected,
            c.reads
        );
        for d in &c.details {
            println!("  {d}");
        }
    }
    let figures: Vec<String> = r
        .figures
        .keyed()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
            )
        })
        .collect();
    println!(
        "round {}: {} stalled={}",
        r.round,
        figures.join(" "),
        r.figures.stalled
    );
}

/// Every figure's median and range over the rounds, the verification and the anomalies.
fn print_summary(r: &Report) {
    println!();
    println!("over {} round(s): median (min..max)", r.rounds.len());
    for (key, spread) in &r.headline.figures {
        let v = spread.map_or_else(|| "not measured".to_owned(), |s| s.describe());
        println!("  {key:<22} {v}");
    }
    let stalled: Vec<String> = r
        .rounds
        .iter()
        .map(|x| x.figures.stalled.to_string())
        .collect();
    println!(
        "  {:<22} {} (per round: {})",
        "stalled",
        r.headline.stalled,
        stalled.join(", ")
    );
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
