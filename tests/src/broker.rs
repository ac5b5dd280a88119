//! A private, durable Kafka-protocol broker for one test: nisshi with SQLite storage in a directory of its
//! own, on a free loopback port, so a test may stop and restart it (SIGTERM or SIGKILL) without touching the
//! shared broker other tests use. Killed, and its directory removed, when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::free_port;

/// How `./dev` installs nisshi; repeated in the panic message when it is missing.
pub const NISSHI_INSTALL: &str = "cargo install nisshi@0.8.1 --locked --ignore-rust-version";

/// Where the nisshi binary is: `NISSHI_BIN`, else `nisshi` on `PATH`, else `$CARGO_HOME/bin` (or
/// `~/.cargo/bin`), where `cargo install` puts it. `None` when it is nowhere.
pub fn nisshi_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NISSHI_BIN").map(PathBuf::from) {
        return bin.is_file().then_some(bin);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(cargo_home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join("nisshi"))
        .find(|candidate| candidate.is_file())
}

/// How a broker is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: a clean shutdown.
    Term,
    /// SIGKILL: no chance to flush or close anything.
    Kill,
}

/// A nisshi broker owned by one test.
pub struct PrivateBroker {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started, for its log file's name.
    starts: u32,
}

impl PrivateBroker {
    /// Starts nisshi on a free loopback port with an empty SQLite log and waits until it accepts
    /// connections. Panics, saying how to install it, when nisshi is not installed.
    pub fn start() -> Self {
        let binary = nisshi_binary().unwrap_or_else(|| {
            panic!(
                "this test needs the nisshi broker: `{NISSHI_INSTALL}` (./dev test installs it), or set NISSHI_BIN"
            )
        });
        let port = free_port();
        let dir = std::env::temp_dir()
            .join("concert-tests")
            .join(format!("nisshi-{port}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating the broker's directory");
        let mut broker = Self {
            binary,
            port,
            dir,
            child: None,
            starts: 0,
        };
        broker.start_again();
        broker
    }

    /// `127.0.0.1:PORT`, for `KAFKA_BROKERS`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where its log (the SQLite file) and its output live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops it with `how` and waits until the process is gone. Returns how long the stop took.
    pub fn stop(&mut self, how: Stop) -> Duration {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        match how {
            Stop::Kill => {
                let _ = child.kill();
            }
            Stop::Term => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                // A clean stop that hangs is a finding too, but not this test's: give it 20 s, then kill.
                while started.elapsed() < Duration::from_secs(20) {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        started.elapsed()
    }

    /// Freezes it (SIGSTOP): its connections stay open and the kernel still takes what clients send, but
    /// nothing is read or answered, as in a long pause of the broker's machine. [`Self::thaw`] resumes it,
    /// and it then handles what was sent meanwhile.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a [`Self::freeze`]d broker.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the broker is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} of the broker failed");
    }

    /// Starts it again on the same port with the same storage and waits (up to 30 s) until it accepts
    /// connections. Returns how long that took.
    pub fn start_again(&mut self) -> Duration {
        assert!(self.child.is_none(), "the broker is still running");
        self.starts += 1;
        let out = std::fs::File::create(self.dir.join(format!("nisshi-{}.log", self.starts)))
            .expect("creating the broker's log file");
        let err = out.try_clone().expect("cloning a file handle");
        let url = format!("tcp://{}", self.address());
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            // Relative to the working directory: the file lives in this broker's own directory.
            .args(["--storage-engine", "sqlite://broker.db"])
            // A test's group starts with all its members at once; Kafka's 3 s default would only add delay.
            .args(["--group-initial-rebalance-delay", "100ms"])
            .current_dir(&self.dir)
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", self.binary.display()));
        self.child = Some(child);
        let addr = ([127, 0, 0, 1], self.port).into();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nisshi exited at start ({status}); see {}",
                    self.dir.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nisshi did not listen on {} within 30 s; see {}",
                self.address(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop(Stop::Kill);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
