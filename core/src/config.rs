//! Settings both binaries share, read from the environment. Defaults suit a local run (`./dev up`).

use anyhow::{bail, Context};

/// Read `name`, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Read and parse `name`, or `default` when it is unset or empty.
pub fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
    }
}

pub const DEV_TOKEN_SECRET: &str = "dev-only-secret-change-me-in-production";

/// Connection and signing settings.
#[derive(Debug, Clone)]
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
    pub kafka_fetch: crate::kafka::FetchSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let token_secret = env_or("TOKEN_SECRET", DEV_TOKEN_SECRET);
        if token_secret.len() < 16 {
            bail!("TOKEN_SECRET must be at least 16 bytes");
        }
        if token_secret == DEV_TOKEN_SECRET {
            tracing::warn!("TOKEN_SECRET is not set: using the development secret");
        }
        Ok(Self {
            database_url: env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/concert"),
            kafka_brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic_prefix: env_or("KAFKA_TOPIC_PREFIX", ""),
            token_secret,
            db_max_connections: env_parse("DATABASE_MAX_CONNECTIONS", 16)
                .context("DATABASE_MAX_CONNECTIONS")?,
            kafka_fetch: crate::kafka::FetchSettings::from_env()?,
        })
    }

    pub fn topics(&self) -> crate::topics::Topics {
        crate::topics::Topics::new(&self.topic_prefix)
    }
}
