//! The real binaries (`concert-api`, `concert-worker`) as separate OS processes, configured through the
//! environment exactly as in production, and killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::env::{TestEnv, ADMIN_TOKEN, DB_CONNECTIONS_PER_INSTANCE};

/// What a process is and how it was configured, so that it can be started again the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcKind {
    /// `concert-api` listening on this port.
    Api { port: u16 },
    /// `concert-worker run` with `WORKER_ROLES=roles`.
    Worker { roles: String },
}

/// How to start one service process: its kind, its name (`api-0`, `worker-2`: also its log file) and the
/// environment it gets on top of the test's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSpec {
    pub name: String,
    pub kind: ProcKind,
    /// Extra environment, applied last (so it may override the defaults), e.g. a failpoint.
    pub env: Vec<(String, String)>,
}

impl ProcSpec {
    pub fn api(index: usize, port: u16) -> Self {
        Self {
            name: format!("api-{index}"),
            kind: ProcKind::Api { port },
            env: Vec::new(),
        }
    }

    pub fn worker(index: usize, roles: &str) -> Self {
        Self {
            name: format!("worker-{index}"),
            kind: ProcKind::Worker {
                roles: roles.to_owned(),
            },
            env: Vec::new(),
        }
    }

    /// The same spec with one more environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts it.
    pub fn spawn(&self, env: &TestEnv) -> Proc {
        let mut command = base_command(env, self.binary(), &self.name);
        match &self.kind {
            ProcKind::Api { port } => {
                command.env("API_PORT", port.to_string());
            }
            ProcKind::Worker { roles } => {
                command.arg("run").env("WORKER_ROLES", roles);
            }
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {} ({}): {err}", self.name, self.binary()));
        Proc {
            name: self.name.clone(),
            spec: self.clone(),
            child,
            stopped: false,
        }
    }

    fn binary(&self) -> &'static str {
        match self.kind {
            ProcKind::Api { .. } => "concert-api",
            ProcKind::Worker { .. } => "concert-worker",
        }
    }
}

/// A spawned service process; killed (and reaped) on drop.
pub struct Proc {
    pub name: String,
    pub spec: ProcSpec,
    child: Child,
    /// Stopped on purpose (killed by the test, or an exit the test waited for): not "exited early".
    stopped: bool,
}

impl Proc {
    /// `None` while running, else how it ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the test stopped it (or waited for its exit) on purpose.
    pub fn stopped_on_purpose(&self) -> bool {
        self.stopped
    }

    /// `kill -9`: SIGKILL, no chance to clean up (no offset commit, no leaving the group, no graceful
    /// close of connections), then reaps it. Returns how it ended.
    pub fn kill9(&mut self) -> ExitStatus {
        self.stopped = true;
        let _ = self.child.kill();
        self.child.wait().expect("reaping a killed process")
    }

    /// Marks an exit the test expected (e.g. a failpoint's abort), so it is not reported as early.
    pub fn mark_stopped(&mut self) {
        self.stopped = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `cargo build` put a binary of the workspace: `$CARGO_TARGET_DIR/debug`, else the profile directory
/// this test binary runs from (`target/debug/deps/..`).
pub fn binary(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|dir| dir.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("binary {name} not found: build it first (`cargo build --workspace --bins`, which ./dev test does)")
    })
}

/// A port that was free a moment ago: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// The environment every service process of this test gets.
fn base_command(env: &TestEnv, binary_name: &str, log_name: &str) -> Command {
    let mut command = Command::new(binary(binary_name));
    let settings = &env.settings;
    // Only what this test sets: nothing of the developer's shell (API_PORT, WORKER_METRICS_PORT, ...) leaks in.
    command.env_clear();
    for inherited in ["PATH", "HOME", "TMPDIR", "RUST_BACKTRACE"] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    command
        .env("DATABASE_URL", &settings.database_url)
        .env("KAFKA_BROKERS", &settings.kafka_brokers)
        .env("KAFKA_TOPIC_PREFIX", &settings.topic_prefix)
        .env("TOKEN_SECRET", &settings.token_secret)
        .env(
            "DATABASE_MAX_CONNECTIONS",
            DB_CONNECTIONS_PER_INSTANCE.to_string(),
        )
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        // Every test signs its users up from 127.0.0.1; the sign-up limit's own tests turn it on, and the
        // anonymous calls' limits per address likewise.
        .env("SIGNUPS_PER_IP_PER_MINUTE", "0")
        .env("API_ANONYMOUS_PER_ADDRESS_PER_SECOND", "0")
        .env("API_ANONYMOUS_IN_FLIGHT_PER_ADDRESS", "8192")
        .env("WORKER_GROUP_ID", &env.group_id)
        .env("MAX_HOLDS_PER_USER", "4")
        .env("ADMISSION_TICK_MS", "50")
        .env("HOLD_SWEEP_MS", "200")
        .env("OUTBOX_POLL_MS", "50")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn,rdkafka=warn".into()),
        )
        .stdin(Stdio::null());
    if std::env::var_os("TEST_LOG").is_some() {
        command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        // Quiet, but kept for a post-mortem: <tmp>/concert-tests/<topic prefix><name>.log
        let dir = std::env::temp_dir().join("concert-tests");
        let _ = std::fs::create_dir_all(&dir);
        // Appending: a restarted process writes after its predecessor's last words.
        let path = dir.join(format!("{}{log_name}.log", settings.topic_prefix));
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => {
                let err = file
                    .try_clone()
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null());
                command.stdout(Stdio::from(file)).stderr(err);
            }
            Err(_) => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
    }
    command
}

/// Starts `concert-api` on `port`.
pub fn spawn_api(env: &TestEnv, port: u16, index: usize) -> Proc {
    ProcSpec::api(index, port).spawn(env)
}

/// Starts `concert-worker run` with these roles (`WORKER_ROLES`, e.g. `consumer,relay`).
pub fn spawn_worker(env: &TestEnv, roles: &str, index: usize) -> Proc {
    ProcSpec::worker(index, roles).spawn(env)
}

/// Runs `concert-worker <subcommand>` to completion with this test's environment plus `extra`.
pub async fn run_worker_command(
    env: &TestEnv,
    subcommand: &str,
    extra: &[(&str, &str)],
) -> ExitStatus {
    let mut command = base_command(env, "concert-worker", subcommand);
    command.arg(subcommand);
    for (k, v) in extra {
        command.env(k, v);
    }
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command.spawn().expect("spawning concert-worker");
    tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("concert-worker {subcommand} did not finish within 60 s"))
        .expect("waiting for concert-worker")
}
