//! A private PostgreSQL server for a test that must restart its database: `initdb` into a temporary
//! directory and `pg_ctl` on a free port, never the shared server other tests use. Stopped and removed on
//! drop. Uses the binaries of `PG_BIN` (default `/usr/lib/postgresql/15/bin`); as root, they run as the
//! `postgres` user (PostgreSQL refuses to run as root).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::procs::free_port;

pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    /// Creates a cluster (trust authentication, user `postgres`, autovacuum off as on the shared server)
    /// and starts it on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let bin = PathBuf::from(
            std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        anyhow::ensure!(
            bin.join("initdb").exists(),
            "no initdb in {} (set PG_BIN)",
            bin.display()
        );
        let dir = std::env::temp_dir()
            .join("concert-tests")
            .join(format!("pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let server = Self {
            dir,
            port: free_port(),
            bin,
        };
        if as_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&server.dir))?;
        }
        run(server
            .pg("initdb")
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
            .arg(server.data()))?;
        server.pg_ctl("start")?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: sessions are ended, as in a real restart) and starts it again on
    /// the same port. Returns how long the server was unreachable.
    pub fn restart(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        run(self
            .pg("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data()))?;
        self.pg_ctl("start")?;
        Ok(started.elapsed())
    }

    /// Stops it without starting it again.
    pub fn stop(&self) -> anyhow::Result<()> {
        run(self
            .pg("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data()))
    }

    /// Starts it after [`stop`](Self::stop).
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl("start")
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c autovacuum=off -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(self
            .pg("pg_ctl")
            .args([action, "-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.join("server.log"))
            .arg("-D")
            .arg(self.data()))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output()?;
    anyhow::ensure!(
        status.success(),
        "{command:?} failed ({status}): {}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    Ok(())
}
