//! Settings both binaries share, read from the environment. Defaults suit a local run (`./dev up`).

use anyhow::{bail, Context};

use crate::kafka::FetchSettings;
use crate::topics::{Partitions, Topics};

/// The readers live in [`crate::env_vars`], below every module that reads a setting; named here too, where
/// the api and the workers have always found them.
pub use crate::env_vars::{env_or, env_parse};

/// The development signing secret, used only with `CONCERT_ENV=dev`.
pub const DEV_TOKEN_SECRET: &str = "dev-only-secret-change-me-in-production";
/// Shortest `TOKEN_SECRET` accepted outside development: 256 bits for HMAC-SHA256.
pub const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// Whether `CONCERT_ENV=dev`: the only setting under which development defaults for secrets apply.
pub fn is_dev_env() -> bool {
    std::env::var("CONCERT_ENV").is_ok_and(|v| v.eq_ignore_ascii_case("dev"))
}

/// Reads the secret `name`, which must be at least `min_bytes` long. Outside development an unset or short
/// value is an error naming the variable, so that a deployment never runs on a published default; with
/// `CONCERT_ENV=dev` an unset value falls back to `dev_default` and a short one is kept, each with a warning.
pub fn required_secret(name: &str, min_bytes: usize, dev_default: &str) -> anyhow::Result<String> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    let dev = is_dev_env();
    match value {
        Some(v) if v.len() >= min_bytes => Ok(v),
        Some(v) if dev => {
            tracing::warn!("{name} is shorter than {min_bytes} bytes: accepted only because CONCERT_ENV=dev");
            Ok(v)
        }
        None if dev => {
            tracing::warn!("{name} is not set: using the development default (CONCERT_ENV=dev)");
            Ok(dev_default.to_owned())
        }
        Some(_) => bail!(
            "{name} must be at least {min_bytes} bytes (set a long random value, or CONCERT_ENV=dev for development)"
        ),
        None => bail!(
            "{name} is not set: it must be at least {min_bytes} bytes (set a long random value, or CONCERT_ENV=dev for development)"
        ),
    }
}

/// Connection and signing settings. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_URL`
    pub database_url: String,
    /// `KAFKA_BROKERS`, comma-separated host:port
    pub kafka_brokers: String,
    /// `KAFKA_TOPIC_PREFIX`, prepended to every topic name
    pub topic_prefix: String,
    /// `TOKEN_SECRET`, signs access tokens, queue tokens and request ids; the same on every instance
    pub token_secret: String,
    /// `DATABASE_MAX_CONNECTIONS`
    pub db_max_connections: u32,
    /// `KAFKA_FETCH_WAIT_MS` and `KAFKA_FETCH_MIN_BYTES`: how consumers long-poll the broker
    pub kafka_fetch: FetchSettings,
    /// `KAFKA_JOIN_PARTITIONS`, `KAFKA_BOOKING_PARTITIONS`, `KAFKA_REPLY_PARTITIONS`: partition counts of
    /// topics `concert-worker topics` creates
    pub partitions: Partitions,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_password(&self.database_url))
            .field("kafka_brokers", &self.kafka_brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("token_secret", &"<redacted>")
            .field("db_max_connections", &self.db_max_connections)
            .finish()
    }
}

/// A connection URL with its password (between `user:` and `@`) replaced.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:<redacted>@{host}")
        }
        _ => url.to_owned(),
    }
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let token_secret =
            required_secret("TOKEN_SECRET", MIN_TOKEN_SECRET_BYTES, DEV_TOKEN_SECRET)?;
        Ok(Self {
            database_url: env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/concert"),
            kafka_brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic_prefix: env_or("KAFKA_TOPIC_PREFIX", ""),
            token_secret,
            db_max_connections: env_parse("DATABASE_MAX_CONNECTIONS", 16)
                .context("DATABASE_MAX_CONNECTIONS")?,
            kafka_fetch: FetchSettings::from_env()?,
            partitions: Partitions::from_env()?,
        })
    }

    pub fn topics(&self) -> Topics {
        Topics::with_counts(&self.topic_prefix, self.partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let settings = Settings {
            database_url: "postgres://app:hunter2@db:5432/concert".into(),
            kafka_brokers: "kafka:9092".into(),
            topic_prefix: String::new(),
            token_secret: "a-very-secret-value-of-forty-bytes-long!".into(),
            db_max_connections: 4,
            kafka_fetch: Default::default(),
            partitions: Default::default(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("a-very-secret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:<redacted>@db:5432/concert"),
            "{shown}"
        );
    }
}
