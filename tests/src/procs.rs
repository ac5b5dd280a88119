//! The real binaries (`concert-api`, `concert-worker`) as separate OS processes, configured through the
//! environment exactly as in production, and killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::env::{TestEnv, DB_CONNECTIONS_PER_INSTANCE};

/// A spawned service process; killed (and reaped) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// `None` while running, else how it ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
        .env("ADMIN_TOKEN", crate::ADMIN_TOKEN)
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
        match std::fs::File::create(dir.join(format!("{}{log_name}.log", settings.topic_prefix))) {
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
    let name = format!("api-{index}");
    let child = base_command(env, "concert-api", &name)
        .env("API_PORT", port.to_string())
        .spawn()
        .expect("spawning concert-api");
    Proc { name, child }
}

/// Starts `concert-worker run` with these roles (`WORKER_ROLES`, e.g. `consumer,relay`).
pub fn spawn_worker(env: &TestEnv, roles: &str, index: usize) -> Proc {
    let name = format!("worker-{index}");
    let child = base_command(env, "concert-worker", &name)
        .arg("run")
        .env("WORKER_ROLES", roles)
        .spawn()
        .expect("spawning concert-worker");
    Proc { name, child }
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
