//! `--soak MINUTES`: a steady mixed load for that many minutes ([`load`]: sign-ups, charges, joins, status
//! polls, holds, checkouts, releases, lapses and cancellations, a new concert every 30 s), against a stack
//! whose retention runs at a short window (`RETENTION_SECONDS`, development only). Every minute it prints
//! and keeps one line ([`minute`]): calls and p99 per kind, the memory of the api and the workers, the rows of
//! every table and the ready time of a freshly started api ([`sample`]). At the end: the slope of each
//! series and whether it stayed flat ([`verdict`], which states its rules), the invariants (no seat sold
//! twice, nothing lost: [`crate::verify`]; the box office agrees with the buyers: [`check`]), `soak.json` in
//! `--out-dir`, and the `soak:` line. Exits 2 when a judged series is not flat or an invariant broke.

mod check;
mod fan;
mod load;
mod minute;
mod report;
mod sample;
mod verdict;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cli::Args;
use crate::client::{Api, Outcome};
use crate::procfs::Procs;
use crate::progress::{bar, done};
use crate::stats::{OpStats, DEFAULT_STALL};
use crate::verify;

use load::Load;
use minute::Minute;
use report::{headline, SoakReport};

const MINUTE: Duration = Duration::from_secs(60);
/// How long fans still under way at the end may take to finish their journey.
const FINISH: Duration = Duration::from_secs(150);
/// Seconds to chase commands still pending at the end.
const CHASE: Duration = Duration::from_secs(30);

/// The retention window the workers were given (they share this environment under `./dev bench`), where
/// it came from, and their pause between rounds.
fn retention() -> (u64, &'static str, u64) {
    let read = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let interval = read("RETENTION_INTERVAL_MS").unwrap_or(60_000);
    match (read("RETENTION_SECONDS"), read("RETENTION_HOURS")) {
        (Some(s), _) => (s, "RETENTION_SECONDS", interval),
        (None, Some(h)) => (h * 3600, "RETENTION_HOURS", interval),
        (None, None) => (24 * 3600, "default", interval),
    }
}

/// Runs the soak; `Ok(false)` when something was not flat or an invariant broke.
pub async fn run(args: &Args, minutes: usize) -> anyhow::Result<bool> {
    if minutes < 3 {
        bail!("a soak needs at least 3 minutes (a warm-up, then minutes to fit a slope to)");
    }
    let p = args.params();
    let rate = args.soak_rate;
    let base = Api::new(&args.url, &args.admin_token)?;
    if let other @ (Outcome::Failed { .. } | Outcome::Pending(_) | Outcome::Transport(_)) =
        base.ready().await
    {
        bail!("{} is not ready ({other:?})", args.url);
    }
    let api = base.bounded(p.concurrency);
    let procs = Procs::from_env();
    let sampler = sample::Sampler::new(procs.named, &args.out_dir).await?;
    let (keep, keep_from, interval_ms) = retention();
    let warmup = (minutes / 4).clamp(1, 3);
    let life = 2 * load::ACTIVE_SECONDS as u64 + load::CONCERT_EVERY.as_secs();
    let settle = (keep + interval_ms / 1000 + life).div_ceil(60) as usize;
    println!(
        "soak: {minutes} min at {rate} fans/s, a concert every {} s ({} dates of {} seats, active {} s, hold {} s); \
         retention {keep} s ({keep_from}) every {interval_ms} ms; warm-up {warmup} min; retained rows judged \
         from minute {settle}; memory of {:?}",
        load::CONCERT_EVERY.as_secs(),
        load::DATES,
        p.seats,
        load::ACTIVE_SECONDS,
        load::HOLD_SECONDS,
        sampler.procs()
    );
    if settle >= minutes {
        eprintln!(
            "soak: the retention window ({keep} s) does not elapse within the run: the retained tables cannot be \
             judged (export RETENTION_SECONDS=180 RETENTION_INTERVAL_MS=10000 to the workers, or soak longer)"
        );
    }

    let read_minute = |n: usize, ops: BTreeMap<&'static str, OpStats>| {
        let sampler = &sampler;
        async move {
            let rss = sampler.rss();
            let rows = sampler.rows().await?;
            let ready = match sampler.ready_ms().await {
                Ok(ms) => Some(ms),
                Err(e) => {
                    eprintln!("soak: minute {n}: {e:#}");
                    None
                }
            };
            let m = Minute::new(n, &ops, rss, rows, ready);
            println!("{}", m.line());
            anyhow::Ok(m)
        }
    };
    let mut per_minute = vec![read_minute(0, BTreeMap::new()).await?];

    let load = Load::new(api.clone(), p.price, p.seats);
    let concerts = tokio::spawn(load.clone().make_concerts());
    while load.concerts().is_empty() {
        if concerts.is_finished() {
            bail!("no concert could be created");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fans = tokio::spawn(load.clone().run_fans(rate, p.seed));
    let started = Instant::now();
    let mut totals: BTreeMap<&'static str, OpStats> = BTreeMap::new();
    let mut absorb = |ops: &BTreeMap<&'static str, OpStats>| {
        for (op, s) in ops {
            totals.entry(*op).or_default().merge(s);
        }
    };
    for n in 1..=minutes {
        tokio::time::sleep_until((started + MINUTE * n as u32).into()).await;
        let ops = load.window.take();
        absorb(&ops);
        per_minute.push(read_minute(n, ops).await?);
    }

    load.stop();
    let finishing = bar("finish", 0, false);
    let _ = concerts.await;
    if tokio::time::timeout(FINISH, fans).await.is_err() {
        eprintln!(
            "soak: fans still under way after {} s were left",
            FINISH.as_secs()
        );
    }
    absorb(&load.window.take());
    // Lapsed holds end, so the box office's held seats are settled ones.
    tokio::time::sleep(Duration::from_secs(u64::from(load::HOLD_SECONDS) + 2)).await;
    done(&finishing, String::new());

    let users = load.users();
    let concerts = load.concerts();
    let b = bar("verify", 0, false);
    let verification = verify::verify(&api, &users, &load.ledger, CHASE, &b).await;
    done(&b, String::new());
    let box_office = check::box_office(&api, &concerts, &users).await;

    let series = verdict::judge(&per_minute, warmup, settle);
    println!(
        "soak: slopes over minutes {}..={minutes} (after the warm-up):",
        warmup + 1
    );
    for s in &series {
        println!(
            "  {:<28} {:>12} {}/min  {}",
            s.name,
            s.slope_per_min
                .map_or_else(|| "?".to_owned(), |v| format!("{v:+.2}")),
            s.unit,
            s.verdict
        );
    }
    let not_flat: Vec<String> = series
        .iter()
        .filter(|s| s.judged && !s.flat)
        .map(|s| s.name.clone())
        .collect();
    let invariants_hold =
        verification.oversold == 0 && verification.lost == 0 && box_office.mismatches == 0;
    for d in verification.details.iter().chain(&box_office.details) {
        eprintln!("soak: {d}");
    }
    let anomalies = load.ledger.anomalies();
    for (what, n) in &anomalies {
        eprintln!("soak: anomaly ({n}x): {what}");
    }
    let flat = not_flat.is_empty();
    let line = headline(&series, &per_minute, minutes, rate, warmup, settle, keep)
        + &format!(
            " users={} concerts={} oversold={} lost={} box_office_mismatches={} anomalies={} not_flat={} flat={}",
            users.len(),
            concerts.len(),
            verification.oversold,
            verification.lost,
            box_office.mismatches,
            anomalies.values().sum::<u64>(),
            if flat { "-".to_owned() } else { not_flat.join(",") },
            if flat { "yes" } else { "no" }
        );
    let report = SoakReport {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        base_url: args.url.clone(),
        minutes,
        fans_per_second: rate,
        warmup_minutes: warmup,
        settle_minute: settle,
        retention_seconds: keep,
        retention_from: keep_from,
        retention_interval_ms: interval_ms,
        concert_every_s: load::CONCERT_EVERY.as_secs(),
        dates_per_concert: load::DATES,
        seats_per_date: p.seats,
        active_seconds: load::ACTIVE_SECONDS,
        hold_seconds: load::HOLD_SECONDS,
        processes: sampler.procs().to_vec(),
        per_minute,
        totals: totals
            .iter()
            .map(|(op, s)| s.summary(op, DEFAULT_STALL))
            .collect(),
        series,
        users: users.len(),
        concerts: concerts.len(),
        fans_gave_up: load.gave_up.load(Ordering::Relaxed),
        fans_lapsed: load.lapsed.load(Ordering::Relaxed),
        verification,
        box_office,
        anomalies,
        not_flat,
        flat,
        invariants_hold,
        line: line.clone(),
    };
    std::fs::create_dir_all(&args.out_dir).ok();
    let path = args.out_dir.join("soak.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("{line}");
    if !invariants_hold {
        eprintln!("concert-bench --soak: FAILED: an invariant broke (see above)");
    }
    if !flat {
        eprintln!(
            "concert-bench --soak: FAILED: not flat: {}",
            report.not_flat.join(", ")
        );
    }
    Ok(flat && invariants_hold)
}
