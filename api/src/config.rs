//! The api's configuration, read from the environment. Plain data: it imports nothing else of the api, so
//! every module may read it.

use std::time::Duration;

use anyhow::Context;
use concert_core::config::{env_or, env_parse, required_secret, Settings};
use concert_core::kafka::DEFAULT_LINGER_MS;

/// The development admin token, used only with `CONCERT_ENV=dev`.
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
/// Shortest `ADMIN_TOKEN` accepted outside development.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 24;

/// Everything the api needs to run; tests build it with [`ApiConfig::for_tests`]. `Debug` leaves the
/// secrets out.
#[derive(Clone)]
pub struct ApiConfig {
    pub settings: Settings,
    /// `API_PORT`; 0 binds any free port.
    pub port: u16,
    /// `ADMIN_TOKEN`, the bearer token of the admin endpoints.
    pub admin_token: String,
    /// `MAX_CHARGE`, the largest single balance charge in won.
    pub max_charge: i64,
    /// `MAX_HOLDS_PER_USER` (the workers' limit on live holds per user and date): the most holds one
    /// checkout may name.
    pub max_holds_per_user: usize,
    /// `JOIN_WAIT_SECONDS`, how long a join waits to be placed in line before answering 202.
    pub join_wait: Duration,
    /// `ACCESS_TOKEN_TTL_SECONDS`, lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// `KAFKA_LINGER_MS`, how long the command producer waits to fill a batch.
    pub kafka_linger_ms: u32,
    /// `RATE_LIMIT_PER_USER`: command submissions (join, hold, release, pay) one user may make per second
    /// on one instance, sustained; 0 turns the limit off.
    pub rate_limit_per_user: u32,
    /// `RATE_LIMIT_BURST`: how many submissions one user may make at once before the rate applies.
    pub rate_limit_burst: u32,
    /// `SIGNUPS_PER_IP_PER_MINUTE`: sign-ups one client address may make per minute on one instance; 0
    /// turns the limit off.
    pub signups_per_ip_per_minute: u32,
    /// `TRUST_FORWARDED_FOR=1`: take the client address from `X-Forwarded-For` (set by a trusted proxy)
    /// rather than from the connection.
    pub trust_forwarded_for: bool,
    /// Concurrency, timeouts and the publish bound (see [`crate::shedding`]).
    pub limits: LoadLimits,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("settings", &self.settings)
            .field("port", &self.port)
            .field("admin_token", &"<redacted>")
            .field("max_charge", &self.max_charge)
            .field("max_holds_per_user", &self.max_holds_per_user)
            .field("join_wait", &self.join_wait)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("kafka_linger_ms", &self.kafka_linger_ms)
            .field("rate_limit_per_user", &self.rate_limit_per_user)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("signups_per_ip_per_minute", &self.signups_per_ip_per_minute)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The workers' default `MAX_HOLDS_PER_USER`.
pub const DEFAULT_MAX_HOLDS_PER_USER: usize = 4;
pub const DEFAULT_RATE_LIMIT_PER_USER: u32 = 10;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 20;
pub const DEFAULT_SIGNUPS_PER_IP_PER_MINUTE: u32 = 60;

/// The largest balance one user may hold, in won.
pub const MAX_BALANCE: i64 = 1_000_000_000;

impl ApiConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        // The signing secret is checked first, then the admin token: each failure names its variable.
        let settings = Settings::from_env()?;
        let admin_token = required_secret("ADMIN_TOKEN", MIN_ADMIN_TOKEN_BYTES, DEV_ADMIN_TOKEN)?;
        Ok(Self {
            settings,
            port: env_parse("API_PORT", 8080).context("API_PORT")?,
            admin_token,
            max_charge: env_parse("MAX_CHARGE", 10_000_000).context("MAX_CHARGE")?,
            max_holds_per_user: env_parse("MAX_HOLDS_PER_USER", DEFAULT_MAX_HOLDS_PER_USER)
                .context("MAX_HOLDS_PER_USER")?,
            join_wait: Duration::from_secs(
                env_parse("JOIN_WAIT_SECONDS", 10).context("JOIN_WAIT_SECONDS")?,
            ),
            access_token_ttl: Duration::from_secs(
                env_parse("ACCESS_TOKEN_TTL_SECONDS", 30 * 24 * 3600)
                    .context("ACCESS_TOKEN_TTL_SECONDS")?,
            ),
            kafka_linger_ms: env_parse("KAFKA_LINGER_MS", DEFAULT_LINGER_MS)
                .context("KAFKA_LINGER_MS")?,
            rate_limit_per_user: env_parse("RATE_LIMIT_PER_USER", DEFAULT_RATE_LIMIT_PER_USER)
                .context("RATE_LIMIT_PER_USER")?,
            rate_limit_burst: env_parse("RATE_LIMIT_BURST", DEFAULT_RATE_LIMIT_BURST)
                .context("RATE_LIMIT_BURST")?,
            signups_per_ip_per_minute: env_parse(
                "SIGNUPS_PER_IP_PER_MINUTE",
                DEFAULT_SIGNUPS_PER_IP_PER_MINUTE,
            )
            .context("SIGNUPS_PER_IP_PER_MINUTE")?,
            trust_forwarded_for: env_or("TRUST_FORWARDED_FOR", "0") == "1",
            limits: LoadLimits::from_env()?,
        })
    }

    /// Port 0, a fixed admin token and production defaults for everything else, except that sign-ups and
    /// anonymous calls are not limited per address: every test calls from 127.0.0.1.
    pub fn for_tests(settings: Settings) -> Self {
        Self {
            settings,
            port: 0,
            admin_token: "test-admin-token-of-24-bytes-or-more".into(),
            max_charge: 10_000_000,
            max_holds_per_user: DEFAULT_MAX_HOLDS_PER_USER,
            join_wait: Duration::from_secs(10),
            access_token_ttl: Duration::from_secs(3600),
            kafka_linger_ms: DEFAULT_LINGER_MS,
            rate_limit_per_user: DEFAULT_RATE_LIMIT_PER_USER,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            signups_per_ip_per_minute: 0,
            trust_forwarded_for: false,
            limits: LoadLimits {
                anonymous_per_address_per_second: 0,
                anonymous_in_flight_per_address: LoadLimits::default().max_in_flight,
                ..LoadLimits::default()
            },
        }
    }
}

/// Longest wait a client may ask for with `Prefer: wait=N`.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// The longest a command's answer may take once it is published, besides `Prefer: wait` itself: the
/// bounded outcome lookups (see `submit::LOOKUP_TIMEOUT`) and rendering.
const AFTER_PUBLISH_SLACK: Duration = Duration::from_secs(5);

/// The api's bounds on work in progress, from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// `API_MAX_IN_FLIGHT`: requests handled at once; more are answered 503 at once. A join waits up to
    /// `JOIN_WAIT_SECONDS` to be placed, so an on-sale crowd keeps thousands in flight per instance: the
    /// bench's 20,000-user crowd (2,048 at a time) got 54,000 503s with a bound of 1,024. An in-flight
    /// request costs a task and a socket, not a thread.
    pub max_in_flight: usize,
    /// `API_REQUEST_TIMEOUT_SECONDS`: the longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// `API_HEADER_READ_TIMEOUT_SECONDS`: how long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// `KAFKA_PUBLISH_TIMEOUT_MS`: how long publishing a command may wait for the broker's acknowledgement.
    pub publish_timeout: Duration,
    /// `API_MAX_STREAMS`: live-update streams one instance holds open at most (beyond: 503).
    pub max_streams: usize,
    /// `API_ANONYMOUS_IN_FLIGHT_PER_ADDRESS`: anonymous requests (no access, queue or admin token) one client
    /// address (an IPv6 /64) may have in progress at once, beyond which it gets 503: its share of
    /// `API_MAX_IN_FLIGHT`, so slow or flooding anonymous clients cannot take every slot.
    pub anonymous_in_flight_per_address: usize,
    /// `API_ANONYMOUS_PER_ADDRESS_PER_SECOND`: anonymous requests per second per client address (burst of
    /// twice that); beyond it 429 `RATE_LIMITED`. `0` turns it off.
    pub anonymous_per_address_per_second: u32,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 8192,
            request_timeout: Duration::from_secs(45),
            header_read_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(5),
            max_streams: 20_000,
            anonymous_in_flight_per_address: 1024,
            anonymous_per_address_per_second: 1000,
        }
    }
}

impl LoadLimits {
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let limits = Self {
            max_in_flight: env_parse("API_MAX_IN_FLIGHT", d.max_in_flight)
                .context("API_MAX_IN_FLIGHT")?,
            request_timeout: Duration::from_secs(
                env_parse("API_REQUEST_TIMEOUT_SECONDS", d.request_timeout.as_secs())
                    .context("API_REQUEST_TIMEOUT_SECONDS")?,
            ),
            header_read_timeout: Duration::from_secs(
                env_parse(
                    "API_HEADER_READ_TIMEOUT_SECONDS",
                    d.header_read_timeout.as_secs(),
                )
                .context("API_HEADER_READ_TIMEOUT_SECONDS")?,
            ),
            publish_timeout: Duration::from_millis(
                env_parse(
                    "KAFKA_PUBLISH_TIMEOUT_MS",
                    d.publish_timeout.as_millis() as u64,
                )
                .context("KAFKA_PUBLISH_TIMEOUT_MS")?,
            ),
            max_streams: env_parse("API_MAX_STREAMS", d.max_streams).context("API_MAX_STREAMS")?,
            anonymous_in_flight_per_address: env_parse(
                "API_ANONYMOUS_IN_FLIGHT_PER_ADDRESS",
                d.anonymous_in_flight_per_address,
            )
            .context("API_ANONYMOUS_IN_FLIGHT_PER_ADDRESS")?,
            anonymous_per_address_per_second: env_parse(
                "API_ANONYMOUS_PER_ADDRESS_PER_SECOND",
                d.anonymous_per_address_per_second,
            )
            .context("API_ANONYMOUS_PER_ADDRESS_PER_SECOND")?,
        };
        limits.validate()?;
        Ok(limits)
    }

    /// Refuses limits that would cut the answer of a published command, or that refuse everything.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_in_flight > 0, "API_MAX_IN_FLIGHT must be positive");
        anyhow::ensure!(self.max_streams > 0, "API_MAX_STREAMS must be positive");
        anyhow::ensure!(
            self.anonymous_in_flight_per_address > 0,
            "API_ANONYMOUS_IN_FLIGHT_PER_ADDRESS must be positive"
        );
        anyhow::ensure!(
            !self.header_read_timeout.is_zero(),
            "API_HEADER_READ_TIMEOUT_SECONDS must be positive"
        );
        anyhow::ensure!(
            self.publish_timeout >= Duration::from_millis(100),
            "KAFKA_PUBLISH_TIMEOUT_MS must be at least 100"
        );
        // A publish waits for room in the producer's queue and then for the delivery: twice the timeout. A
        // failed one then records its refusal (`submit::REFUSE_TIMEOUT`), instead of the wait for an outcome.
        let least =
            self.publish_timeout * 2 + Duration::from_secs(MAX_WAIT_SECONDS) + AFTER_PUBLISH_SLACK;
        anyhow::ensure!(
            self.request_timeout >= least,
            "API_REQUEST_TIMEOUT_SECONDS must be at least {} s (twice the publish timeout + the longest Prefer: wait + {} s), \
             or it would cut the answers of accepted commands",
            least.as_secs_f64().ceil(),
            AFTER_PUBLISH_SLACK.as_secs()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_would_cut_accepted_answers_are_refused() {
        assert!(LoadLimits::default().validate().is_ok());
        let short = LoadLimits {
            request_timeout: Duration::from_secs(20),
            ..LoadLimits::default()
        };
        assert!(short
            .validate()
            .unwrap_err()
            .to_string()
            .contains("API_REQUEST_TIMEOUT_SECONDS"));
        let none = LoadLimits {
            max_in_flight: 0,
            ..LoadLimits::default()
        };
        assert!(none.validate().is_err());
    }
}
