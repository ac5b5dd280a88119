//! `--prequeue N`: N fans join a room before its opening, then the room opens, and the phase measures what
//! the opening costs (issue 20):
//!
//! - the time from `opens_at` to the draw being recorded (the admin figures' `draw.drawn_at`), and from
//!   `opens_at` to the last place of a sample of 1,000 (spread over the whole pre-queue, polled every 50 ms)
//!   having a position: an api instance learns the whole order at once, so the sample's last is the last;
//! - how long the join partition paused: 8 closed-loop clients keep joining (fresh users) from 2 s before the
//!   opening to 3 s after it; the slowest join around the opening against the median of those before it;
//! - then every place's status once: the positions of the N must be N distinct numbers (one admitted).
//!
//! The room admits 1 per hour, so the positions stay put while they are read. Writes `prequeue.json`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::cli::Args;
use crate::client::{Api, Caller, Outcome};

/// Sign-ups, joins and status reads in flight at once.
const CONCURRENCY: usize = 256;
/// Places whose first position is timed.
const SAMPLE: usize = 1_000;
/// Closed-loop joiners probing the join partition around the opening.
const PROBES: usize = 8;
/// How far ahead of the end of the joins the opening is set.
const LEAD: chrono::Duration = chrono::Duration::seconds(4);

/// What the phase measured.
#[derive(Debug, serde::Serialize)]
pub struct PrequeueFigures {
    pub places: usize,
    pub seconds_to_join: f64,
    pub opens_at: DateTime<Utc>,
    pub drawn_after_ms: i64,
    /// From `opens_at` to the last sampled place having a position.
    pub last_position_after_ms: i64,
    pub sampled: usize,
    pub probe_joins: usize,
    pub probe_join_ms_p50_before: f64,
    /// The slowest probe join sent within a second either side of the opening.
    pub probe_join_ms_max_at_opening: f64,
    pub distinct_positions: usize,
}

fn policy(opens_at: DateTime<Utc>) -> Value {
    json!({ "admit_per_interval": 1, "interval_seconds": 3600, "active_seconds": 3600,
            "hold_seconds": 600, "opens_at": opens_at.to_rfc3339() })
}

/// Runs the phase and prints (and writes `prequeue.json` with) its figures.
pub async fn run(args: &Args, n: usize) -> anyhow::Result<PrequeueFigures> {
    let api = Api::new(&args.url, &args.admin_token)?;
    let starts = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let created = match api
        .create_concert(&json!({ "title": "Pre-queue bench", "venue": "Bench Arena",
            "dates": [{ "starts_at": starts, "seats": 10, "price": 1000 }] }))
        .await
    {
        Outcome::Done(v) => v,
        other => bail!("creating the concert failed: {other:?}"),
    };
    let concert_id = created["concert_id"]
        .as_str()
        .context("concert_id")?
        .to_owned();
    // Far ahead while the crowd joins; moved close once everyone is in (allowed before the opening).
    set_policy(&api, &concert_id, Utc::now() + chrono::Duration::hours(6)).await?;

    let started = Instant::now();
    let accounts = sign_up_many(&api, "preq", n + PROBES * 200).await?;
    let (crowd, probes) = accounts.split_at(n);
    let tokens: Vec<String> = futures::stream::iter(crowd.iter().cloned())
        .map(|access| {
            let (api, concert_id) = (api.clone(), concert_id.clone());
            async move { join(&api, &access, &concert_id).await.ok() }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|t| async move { t })
        .collect()
        .await;
    let seconds_to_join = started.elapsed().as_secs_f64();
    eprintln!(
        "prequeue: {} of {n} joined in {seconds_to_join:.1}s",
        tokens.len()
    );
    if tokens.len() < n {
        bail!("only {} of {n} joined", tokens.len());
    }

    let opens_at = Utc::now() + LEAD;
    set_policy(&api, &concert_id, opens_at).await?;
    let sample: Vec<String> = tokens
        .iter()
        .step_by((n / SAMPLE).max(1))
        .take(SAMPLE)
        .cloned()
        .collect();

    // The probes: closed-loop joins of fresh users from 2 s before to 3 s after the opening.
    let probe_from = opens_at - chrono::Duration::seconds(2);
    let probe_until = opens_at + chrono::Duration::seconds(3);
    let probes: Vec<Vec<String>> = probes.chunks(200).map(|c| c.to_vec()).collect();
    let probe_tasks: Vec<_> = probes
        .into_iter()
        .map(|users| {
            let (api, concert_id) = (api.clone(), concert_id.clone());
            tokio::spawn(async move {
                sleep_until(probe_from).await;
                let mut times: Vec<(DateTime<Utc>, f64)> = Vec::new();
                for access in users {
                    if Utc::now() >= probe_until {
                        break;
                    }
                    let sent = Utc::now();
                    let clock = Instant::now();
                    if join(&api, &access, &concert_id).await.is_ok() {
                        times.push((sent, clock.elapsed().as_secs_f64() * 1000.0));
                    }
                }
                times
            })
        })
        .collect();

    // The sample, from just before the opening: when does each first show a position?
    sleep_until(opens_at - chrono::Duration::milliseconds(500)).await;
    let mut pending: Vec<String> = sample.clone();
    let mut last_position_at = opens_at;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "{} sampled places had no position 60 s after the opening",
                pending.len()
            );
        }
        let checked: Vec<(String, bool)> = futures::stream::iter(pending.clone())
            .map(|token| {
                let api = api.clone();
                async move {
                    let placed = matches!(api.queue_status(&token).await.0,
                        Outcome::Done(v) if v.get("position").is_some() || v["status"] == "ACTIVE");
                    (token, placed)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let now = Utc::now();
        let before = pending.len();
        pending = checked
            .into_iter()
            .filter(|(_, p)| !p)
            .map(|(t, _)| t)
            .collect();
        if pending.len() < before {
            last_position_at = now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let room = match api.waiting_room(&concert_id).await {
        Outcome::Done(v) => v,
        other => bail!("reading the room failed: {other:?}"),
    };
    let drawn_at: DateTime<Utc> = room["draw"]["drawn_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the room has no draw after the opening")?;

    let mut probe_times = Vec::new();
    for task in probe_tasks {
        probe_times.extend(task.await.unwrap_or_default());
    }
    let mut before: Vec<f64> = probe_times
        .iter()
        .filter(|(at, _)| *at < opens_at - chrono::Duration::seconds(1))
        .map(|(_, ms)| *ms)
        .collect();
    before.sort_by(f64::total_cmp);
    let around = probe_times
        .iter()
        .filter(|(at, _)| (*at - opens_at).num_milliseconds().abs() <= 1000)
        .map(|(_, ms)| *ms)
        .fold(0.0, f64::max);

    // Every place once: N distinct positions (or ACTIVE).
    let positions: Vec<Option<i64>> = futures::stream::iter(tokens.clone())
        .map(|token| {
            let api = api.clone();
            async move {
                match api.queue_status(&token).await.0 {
                    Outcome::Done(v) if v["status"] == "ACTIVE" => Some(0),
                    Outcome::Done(v) => v["position"].as_i64(),
                    _ => None,
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let distinct: std::collections::HashSet<i64> = positions.iter().flatten().copied().collect();

    let figures = PrequeueFigures {
        places: n,
        seconds_to_join,
        opens_at,
        drawn_after_ms: (drawn_at - opens_at).num_milliseconds(),
        last_position_after_ms: (last_position_at - opens_at).num_milliseconds(),
        sampled: sample.len(),
        probe_joins: probe_times.len(),
        probe_join_ms_p50_before: before.get(before.len() / 2).copied().unwrap_or(f64::NAN),
        probe_join_ms_max_at_opening: around,
        distinct_positions: distinct.len(),
    };
    println!(
        "prequeue: {n} places; drawn {} ms after opens_at; last sampled place had its position {} ms after \
         opens_at; probe joins: median {:.1} ms before the opening, slowest within 1 s of it {:.1} ms \
         ({} joins); {} distinct positions",
        figures.drawn_after_ms,
        figures.last_position_after_ms,
        figures.probe_join_ms_p50_before,
        figures.probe_join_ms_max_at_opening,
        figures.probe_joins,
        figures.distinct_positions
    );
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(
        args.out_dir.join("prequeue.json"),
        serde_json::to_vec_pretty(&figures)?,
    )?;
    if figures.distinct_positions != n {
        bail!(
            "{} distinct positions for {n} places",
            figures.distinct_positions
        );
    }
    Ok(figures)
}

async fn set_policy(api: &Api, concert_id: &str, opens_at: DateTime<Utc>) -> anyhow::Result<()> {
    match api.set_policy(concert_id, &policy(opens_at)).await {
        Outcome::Failed { status, code } => bail!("setting the policy failed: {status} {code}"),
        _ => Ok(()),
    }
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

async fn sign_up_many(api: &Api, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let accounts: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                match api.sign_up(&format!("{prefix}-{i}")).await.0 {
                    Outcome::Done(v) => v["access_token"].as_str().map(str::to_owned),
                    _ => None,
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|t| async move { t })
        .collect()
        .await;
    if accounts.len() < n {
        bail!("only {} of {n} sign-ups succeeded", accounts.len());
    }
    Ok(accounts)
}

async fn join(api: &Api, access_token: &str, concert_id: &str) -> anyhow::Result<String> {
    let caller = Caller {
        token: access_token,
        queue: None,
    };
    match api.join(caller, concert_id, 10).await.0 {
        Outcome::Done(v) => Ok(v["queue_token"].as_str().context("queue_token")?.to_owned()),
        other => bail!("join failed: {other:?}"),
    }
}
