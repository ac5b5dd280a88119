//! `--streams N`: holds N live-update streams (`GET /v1/queue/events`) open against one api instance,
//! admits them in one admission step, and measures how long the pushes took and what a stream costs the
//! api in memory.
//!
//! - A concert whose room holds one claimed place (`max_active_users` 1), so everyone else waits.
//! - N users join, then each opens a stream and reads its first `status` event (WAITING).
//! - The api's resident memory is read from `/proc/<pid>/status` before and after the streams opened.
//! - The policy is raised to N + 1: the next ticker step admits all N at once. Each stream's ACTIVE event
//!   carries `active_until`, and `active_until - active_seconds` is the step's own time (`now()` of its
//!   transaction), so the push latency is measured from the step itself, not from the policy change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::cli::Args;
use crate::client::{Api, Caller, Outcome};

/// Active window of the bench's places: long, so nobody leaves during the run.
const ACTIVE_SECONDS: i64 = 3600;
/// Joins and sign-ups in flight at once.
const SETUP_CONCURRENCY: usize = 64;
/// Streams being opened at once (the api accepts them as fast as it can; this keeps the bench's own
/// connection storm bounded).
const OPEN_CONCURRENCY: usize = 256;

/// What the phase measured.
#[derive(Debug, serde::Serialize)]
pub struct StreamFigures {
    pub streams: usize,
    pub seconds_to_open: f64,
    pub api_pid: u32,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_stream: f64,
    pub pushed: usize,
    pub push_ms_p50: i64,
    pub push_ms_p99: i64,
    /// From the admission step to the last ACTIVE event received.
    pub push_ms_last: i64,
    pub nofile_limit: Option<String>,
}

/// Runs the phase and prints (and writes `streams.json` with) its figures.
pub async fn run(args: &Args, n: usize) -> anyhow::Result<StreamFigures> {
    let api = Api::new(&args.url, &args.admin_token)?;
    let pid = match args.api_pid {
        Some(pid) => pid,
        None => find_api_pid()?,
    };
    let nofile = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(str::to_owned)
        });
    eprintln!(
        "streams: api pid {pid}; this process: {}",
        nofile.as_deref().unwrap_or("?")
    );

    let concert_id = create_concert(&api).await?;
    let blocker = sign_up(&api, "stream-blocker").await?;
    let blocker_place = join(&api, &blocker, &concert_id).await?;
    // The blocker claims its place with a poll, so it holds the room's only slot.
    wait_active(&api, &blocker_place).await?;

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let tokens: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let (api, gate, concert_id) = (api.clone(), gate.clone(), concert_id.clone());
            async move {
                let _permit = gate.acquire().await.ok()?;
                let user = sign_up(&api, &format!("stream-{i}")).await.ok()?;
                join(&api, &user, &concert_id).await.ok()
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .filter_map(|t| async move { t })
        .collect()
        .await;
    eprintln!(
        "streams: {} of {n} users joined in {:.1}s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    if tokens.len() < n {
        bail!("only {} of {n} users could join", tokens.len());
    }

    let rss_before = rss_kib(pid)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let opened_at = Instant::now();
    let open_gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let (http, url, gate, opened) = (
            http.clone(),
            args.url.clone(),
            open_gate.clone(),
            opened_tx.clone(),
        );
        tasks.spawn(async move { follow(&http, &url, &token, &gate, &opened).await });
    }
    drop(opened_tx);
    let mut open = 0;
    while open < n {
        match tokio::time::timeout(Duration::from_secs(60), opened_rx.recv()).await {
            Ok(Some(())) => open += 1,
            Ok(None) => break,
            Err(_) => bail!("only {open} of {n} streams opened within 60 s"),
        }
    }
    let seconds_to_open = opened_at.elapsed().as_secs_f64();
    if open < n {
        bail!("only {open} of {n} streams opened");
    }
    // Let the allocator settle before reading the api's memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid)?;
    eprintln!("streams: {n} open in {seconds_to_open:.1}s; admitting them");

    let policy = json!({ "max_active_users": n + 1, "active_seconds": ACTIVE_SECONDS,
                         "hold_seconds": 600, "claim_seconds": 3600 });
    if let Outcome::Failed { status, code } = api.set_policy(&concert_id, &policy).await {
        bail!("raising the policy failed: {status} {code}");
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a stream task panicked")? {
            Ok(ms) => latencies.push(ms),
            Err(err) => eprintln!("streams: a stream failed: {err:#}"),
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(-1)
    };
    let figures = StreamFigures {
        streams: n,
        seconds_to_open,
        api_pid: pid,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        bytes_per_stream: (rss_after.saturating_sub(rss_before) * 1024) as f64 / n as f64,
        pushed: latencies.len(),
        push_ms_p50: at(0.5),
        push_ms_p99: at(0.99),
        push_ms_last: latencies.last().copied().unwrap_or(-1),
        nofile_limit: nofile,
    };
    println!(
        "streams: {} open on one api, {:.1} KiB per stream (RSS {} -> {} KiB); admission step to pushed \
         ACTIVE: p50 {} ms, p99 {} ms, last {} ms ({} of {} pushed)",
        figures.streams,
        figures.bytes_per_stream / 1024.0,
        figures.rss_before_kib,
        figures.rss_after_kib,
        figures.push_ms_p50,
        figures.push_ms_p99,
        figures.push_ms_last,
        figures.pushed,
        figures.streams
    );
    std::fs::create_dir_all(&args.out_dir).ok();
    let path = args.out_dir.join("streams.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&figures)?)
        .with_context(|| format!("writing {}", path.display()))?;
    if figures.pushed < n {
        bail!("{} of {n} streams saw their admission", figures.pushed);
    }
    Ok(figures)
}

/// Opens one stream, reports it open after its first event, then waits for ACTIVE and returns how many
/// milliseconds after the admission step it arrived.
async fn follow(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    gate: &Semaphore,
    opened: &tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<i64> {
    // Held while connecting only: opening is what the gate bounds.
    let mut permit = Some(gate.acquire().await?);
    let mut response = http
        .get(format!("{url}/v1/queue/events"))
        .header("X-Queue-Token", token)
        .send()
        .await?
        .error_for_status()?;
    let mut buffer = String::new();
    let mut first = true;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let received = Utc::now();
            let status: Value = serde_json::from_str(data.trim())?;
            if first {
                first = false;
                permit.take();
                let _ = opened.send(());
            }
            if status["status"] == "ACTIVE" {
                let until: DateTime<Utc> = status["active_until"]
                    .as_str()
                    .context("active_until")?
                    .parse()?;
                let step = until - chrono::Duration::seconds(ACTIVE_SECONDS);
                return Ok((received - step).num_milliseconds());
            }
        }
        match response.chunk().await? {
            Some(bytes) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            None => bail!("the stream ended before ACTIVE"),
        }
    }
}

async fn create_concert(api: &Api) -> anyhow::Result<String> {
    let starts = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let body = json!({ "title": "Stream bench", "venue": "Bench Arena",
                       "dates": [{ "starts_at": starts, "seats": 10, "price": 1000 }] });
    let created = match api.create_concert(&body).await {
        Outcome::Done(v) => v,
        other => bail!("creating the concert failed: {other:?}"),
    };
    let concert_id = created["concert_id"]
        .as_str()
        .context("concert_id")?
        .to_owned();
    let policy = json!({ "max_active_users": 1, "active_seconds": ACTIVE_SECONDS,
                         "hold_seconds": 600, "claim_seconds": 3600 });
    if let Outcome::Failed { status, code } = api.set_policy(&concert_id, &policy).await {
        bail!("setting the policy failed: {status} {code}");
    }
    Ok(concert_id)
}

async fn sign_up(api: &Api, name: &str) -> anyhow::Result<String> {
    match api.sign_up(name).await.0 {
        Outcome::Done(v) => Ok(v["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned()),
        other => bail!("sign-up failed: {other:?}"),
    }
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

async fn wait_active(api: &Api, queue_token: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let (Outcome::Done(v), _, _) = api.queue_status(queue_token).await {
            if v["status"] == "ACTIVE" {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the blocker was not admitted within 30 s")
}

/// Resident memory of `pid`, in KiB (VmRSS); the soak reads it too.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (pass --api-pid)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// The one `concert-api` process on this machine.
fn find_api_pid() -> anyhow::Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "concert-api" {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no concert-api process found; pass --api-pid"),
        many => bail!("several concert-api processes ({many:?}); pass --api-pid"),
    }
}
