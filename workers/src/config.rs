//! The worker's own settings, on top of the connection settings shared with the api.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use concert_core::config::{env_or, env_parse, is_dev_env, Settings};

use crate::retention::Retention;

/// Everything a worker process needs to run. All fields are public so tests can build one with struct
/// literal syntax (`WorkerConfig { roles, ..WorkerConfig::for_tests(settings) }`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Database, broker, topic prefix and secret, shared with the api.
    pub settings: Settings,
    /// `WORKER_GROUP_ID`: the Kafka consumer group of the command consumers.
    pub group_id: String,
    /// `COMMAND_BATCH_MAX`: most messages taken from the log in one round.
    pub max_batch: usize,
    /// `MAX_HOLDS_PER_USER`: most live holds a user may have on one concert date.
    pub max_holds_per_user: i64,
    /// `ADMISSION_TICK_MS`: how often the admission ticker looks at the waiting rooms.
    pub admission_tick: Duration,
    /// `HOLD_SWEEP_MS`: how often lapsed holds are tidied up.
    pub sweep_interval: Duration,
    /// `OUTBOX_POLL_MS`: how often the relay looks for unpublished payment events.
    pub relay_interval: Duration,
    /// `WORKER_METRICS_PORT`: where `GET /metrics` is served; 0 serves nothing.
    pub metrics_port: u16,
    /// `WORKER_ROLES`: which of the loops this process runs.
    pub roles: Roles,
    /// `RETENTION_HOURS`, `RETENTION_INTERVAL_MS`: what the retention role keeps and how often it prunes.
    ///
    /// `RETENTION_SECONDS` (for soaks and tests only) overrides `RETENTION_HOURS` with a window of that many
    /// seconds, at least [`MIN_RETENTION_SECONDS`]. It is accepted only with `CONCERT_ENV=dev`, with a
    /// warning that it is shorter than the contract's 24 hours; otherwise the worker refuses to start. It
    /// must still be longer than a command read again from the log may be late (a rewinding consumer
    /// finds its request row, or applies it twice): a few minutes suits a soak, whose group never resets.
    pub retention: Retention,
}

impl WorkerConfig {
    /// Reads the configuration from the environment, with defaults for a local run.
    pub fn from_env() -> anyhow::Result<Self> {
        let millis = |name: &str, default: u64| -> anyhow::Result<Duration> {
            let ms: u64 = env_parse(name, default).with_context(|| name.to_owned())?;
            anyhow::ensure!(ms > 0, "{name} must be positive");
            Ok(Duration::from_millis(ms))
        };
        let max_batch: usize = env_parse("COMMAND_BATCH_MAX", 256).context("COMMAND_BATCH_MAX")?;
        anyhow::ensure!(max_batch > 0, "COMMAND_BATCH_MAX must be positive");
        let max_holds_per_user: i64 =
            env_parse("MAX_HOLDS_PER_USER", 4).context("MAX_HOLDS_PER_USER")?;
        anyhow::ensure!(
            max_holds_per_user > 0,
            "MAX_HOLDS_PER_USER must be positive"
        );
        Ok(Self {
            settings: Settings::from_env()?,
            group_id: env_or("WORKER_GROUP_ID", "concert-workers"),
            max_batch,
            max_holds_per_user,
            admission_tick: millis("ADMISSION_TICK_MS", 200)?,
            sweep_interval: millis("HOLD_SWEEP_MS", 1000)?,
            relay_interval: millis("OUTBOX_POLL_MS", 200)?,
            metrics_port: env_parse("WORKER_METRICS_PORT", 0).context("WORKER_METRICS_PORT")?,
            roles: env_or("WORKER_ROLES", "consumer,ticker,sweeper,relay,retention")
                .parse()
                .context("WORKER_ROLES")?,
            retention: retention_from_env()?,
        })
    }

    /// Defaults with short intervals, so tests see admissions, sweeps and events quickly. The consumer
    /// group is named after the topic prefix, so test runs sharing a broker never rebalance each other.
    pub fn for_tests(settings: Settings) -> Self {
        Self {
            group_id: format!("{}concert-workers", settings.topic_prefix),
            settings,
            max_batch: 256,
            max_holds_per_user: 4,
            admission_tick: Duration::from_millis(50),
            sweep_interval: Duration::from_millis(200),
            relay_interval: Duration::from_millis(50),
            metrics_port: 0,
            roles: Roles::all(),
            // Tests that need a round call `prune_once`; the role itself only has to run.
            retention: Retention {
                keep: Duration::from_secs(Retention::MIN_HOURS * 3600),
                interval: Duration::from_secs(5),
                batch: Retention::DEFAULT_BATCH,
            },
        }
    }
}

/// Shortest `RETENTION_SECONDS` accepted (with `CONCERT_ENV=dev` only).
pub const MIN_RETENTION_SECONDS: u64 = 60;

/// The retention's settings from the environment.
fn retention_from_env() -> anyhow::Result<Retention> {
    retention_from(|name| std::env::var(name).ok(), is_dev_env())
}

/// The retention's settings from `var` (the environment, or a map in tests); `dev` is whether
/// `CONCERT_ENV=dev`. Fewer than [`Retention::MIN_HOURS`] hours is refused (the contract keeps idempotency
/// keys at least that long); `RETENTION_SECONDS` overrides the hours in development only.
fn retention_from(var: impl Fn(&str) -> Option<String>, dev: bool) -> anyhow::Result<Retention> {
    let read = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let number = |name: &str, default: u64| -> anyhow::Result<u64> {
        match read(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
        }
    };
    let hours = number("RETENTION_HOURS", Retention::MIN_HOURS)?;
    anyhow::ensure!(
        hours >= Retention::MIN_HOURS,
        "RETENTION_HOURS must be at least {}",
        Retention::MIN_HOURS
    );
    let keep = match read("RETENTION_SECONDS") {
        None => Duration::from_secs(hours * 3600),
        Some(_) => {
            anyhow::ensure!(
                dev,
                "RETENTION_SECONDS is for soaks and tests and is accepted only with CONCERT_ENV=dev; \
                 set RETENTION_HOURS (at least {}) instead",
                Retention::MIN_HOURS
            );
            let seconds = number("RETENTION_SECONDS", 0)?;
            anyhow::ensure!(
                seconds >= MIN_RETENTION_SECONDS,
                "RETENTION_SECONDS must be at least {MIN_RETENTION_SECONDS}"
            );
            tracing::warn!(
                seconds,
                "RETENTION_SECONDS is shorter than the contract's {} hours: accepted only because \
                 CONCERT_ENV=dev (soaks and tests)",
                Retention::MIN_HOURS
            );
            Duration::from_secs(seconds)
        }
    };
    let interval_ms = number("RETENTION_INTERVAL_MS", 60_000)?;
    anyhow::ensure!(interval_ms > 0, "RETENTION_INTERVAL_MS must be positive");
    Ok(Retention {
        keep,
        interval: Duration::from_millis(interval_ms),
        batch: Retention::DEFAULT_BATCH,
    })
}

/// Which loops a process runs. Every role is safe to run in any number of processes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Applies commands from the log.
    pub consumer: bool,
    /// Admits users from the waiting rooms.
    pub ticker: bool,
    /// Marks lapsed holds EXPIRED.
    pub sweeper: bool,
    /// Publishes payment events from the outbox.
    pub relay: bool,
    /// Deletes what is older than the retention.
    pub retention: bool,
}

impl Roles {
    /// All the roles: the default.
    pub fn all() -> Self {
        Self {
            consumer: true,
            ticker: true,
            sweeper: true,
            relay: true,
            retention: true,
        }
    }

    /// No role at all; combine with struct update syntax to pick some.
    pub fn none() -> Self {
        Self {
            consumer: false,
            ticker: false,
            sweeper: false,
            relay: false,
            retention: false,
        }
    }
}

impl FromStr for Roles {
    type Err = anyhow::Error;

    /// A comma-separated list such as `consumer,relay`.
    fn from_str(list: &str) -> anyhow::Result<Self> {
        let mut roles = Self::none();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "consumer" => roles.consumer = true,
                "ticker" => roles.ticker = true,
                "sweeper" => roles.sweeper = true,
                "relay" => roles.relay = true,
                "retention" => roles.retention = true,
                other => anyhow::bail!(
                    "unknown role {other:?} (expected consumer, ticker, sweeper, relay or retention)"
                ),
            }
        }
        anyhow::ensure!(roles != Self::none(), "name at least one role");
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_a_list() {
        assert_eq!(
            "consumer,ticker,sweeper,relay,retention"
                .parse::<Roles>()
                .unwrap(),
            Roles::all()
        );
        assert_eq!(
            " relay , ticker ".parse::<Roles>().unwrap(),
            Roles {
                relay: true,
                ticker: true,
                ..Roles::none()
            }
        );
        assert!("consumer,cook".parse::<Roles>().is_err());
        assert!("".parse::<Roles>().is_err());
    }

    /// Reads from a list of (name, value) instead of the process's environment, which tests share.
    fn retention_of(vars: &[(&str, &str)], dev: bool) -> anyhow::Result<Retention> {
        retention_from(
            |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            },
            dev,
        )
    }

    #[test]
    fn retention_is_a_day_unless_development_asks_for_seconds() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(retention_of(&[], false).unwrap().keep, day);
        assert_eq!(
            retention_of(&[("RETENTION_HOURS", "48")], false)
                .unwrap()
                .keep,
            2 * day
        );
        assert!(retention_of(&[("RETENTION_HOURS", "23")], true).is_err());

        let soak = [
            ("RETENTION_SECONDS", "180"),
            ("RETENTION_INTERVAL_MS", "10000"),
        ];
        let r = retention_of(&soak, true).unwrap();
        assert_eq!(r.keep, Duration::from_secs(180));
        assert_eq!(r.interval, Duration::from_secs(10));
        // Outside development the override is refused, naming the variable.
        let err = retention_of(&soak, false).unwrap_err().to_string();
        assert!(
            err.contains("RETENTION_SECONDS") && err.contains("CONCERT_ENV=dev"),
            "{err}"
        );
        assert!(retention_of(&[("RETENTION_SECONDS", "59")], true).is_err());
        assert!(retention_of(&[("RETENTION_SECONDS", "soon")], true).is_err());
        assert_eq!(
            retention_of(&[("RETENTION_SECONDS", "60")], true)
                .unwrap()
                .keep,
            Duration::from_secs(60)
        );
        // Empty is unset, as for every other setting.
        assert_eq!(
            retention_of(&[("RETENTION_SECONDS", "")], false)
                .unwrap()
                .keep,
            day
        );
    }
}
