//! What the soak reads at the end of every minute besides its own calls: the resident memory (VmRSS) of the
//! service's processes named in `BENCH_PROCS`, the row count of every table of the service's schema (from
//! `DATABASE_URL`, which `./dev bench` exports), and how long a freshly started api takes to become ready:
//! its start-up read of the waiting rooms is what the retention bounds, so that time must not grow either.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::streams::rss_kib;

/// Longest wait for a fresh api to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a fresh api has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Reads the figures of one minute.
pub struct Sampler {
    procs: Vec<(String, u32)>,
    pool: PgPool,
    api_bin: PathBuf,
    api_log: PathBuf,
}

impl Sampler {
    /// Connects to `DATABASE_URL` and finds `concert-api` beside this executable; the fresh apis' output
    /// goes to `soak-fresh-api.log` in `out_dir`.
    pub async fn new(procs: Vec<(String, u32)>, out_dir: &Path) -> anyhow::Result<Self> {
        let url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .context(
                "--soak counts rows through DATABASE_URL, which is not set (./dev bench sets it)",
            )?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .context("connecting to DATABASE_URL")?;
        let exe = std::env::current_exe().context("finding this executable")?;
        let api_bin = exe.with_file_name("concert-api");
        if !api_bin.is_file() {
            bail!(
                "{} not found: --soak starts a fresh api every minute from beside concert-bench",
                api_bin.display()
            );
        }
        std::fs::create_dir_all(out_dir).ok();
        Ok(Self {
            procs,
            pool,
            api_bin,
            api_log: out_dir.join("soak-fresh-api.log"),
        })
    }

    /// The processes whose memory is read.
    pub fn procs(&self) -> &[(String, u32)] {
        &self.procs
    }

    /// VmRSS of each named process, in KiB (a process that could not be read is left out, and said so).
    pub fn rss(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (name, pid) in &self.procs {
            match rss_kib(*pid) {
                Ok(kib) => {
                    out.insert(name.clone(), kib);
                }
                Err(e) => eprintln!("soak: memory of {name} ({pid}): {e:#}"),
            }
        }
        out
    }

    /// Rows of every table of the public schema but the migrations' own.
    pub async fn rows(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' \
             AND tablename <> '_sqlx_migrations' ORDER BY tablename",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing the tables")?;
        let mut out = BTreeMap::new();
        for table in tables {
            let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
            let n: i64 = sqlx::query_scalar(&sql)
                .fetch_one(&self.pool)
                .await
                .with_context(|| format!("counting {table}"))?;
            out.insert(table, n);
        }
        Ok(out)
    }

    /// Starts a fresh api on a free port (with this process's environment, which `./dev bench` set up for
    /// the stack), polls `GET /readyz` until 200 and answers the milliseconds that took; then stops it with
    /// SIGTERM (SIGKILL after [`STOP_GRACE`]).
    pub async fn ready_ms(&self) -> anyhow::Result<f64> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.api_log)
            .with_context(|| format!("opening {}", self.api_log.display()))?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&self.api_bin)
            .env("API_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.api_bin.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://127.0.0.1:{port}/readyz");
        let outcome = loop {
            if let Some(status) = child.try_wait()? {
                break Err(anyhow::anyhow!(
                    "the fresh api exited ({status}) before it was ready; see {}",
                    self.api_log.display()
                ));
            }
            if started.elapsed() > READY_DEADLINE {
                break Err(anyhow::anyhow!(
                    "the fresh api was not ready within {} s",
                    READY_DEADLINE.as_secs()
                ));
            }
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().is_success() {
                    break Ok(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stop(&mut child).await;
        outcome
    }
}

/// SIGTERM, a wait of [`STOP_GRACE`], then SIGKILL.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let term = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if term.is_ok_and(|s| s.success())
            && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok()
        {
            return;
        }
        eprintln!("soak: the fresh api ({pid}) did not stop on SIGTERM; killing it");
    }
    let _ = child.kill().await;
}
