//! The api's configuration, read from the environment.

use std::time::Duration;

use anyhow::Context;
use concert_core::config::{env_or, env_parse, Settings};
use concert_core::kafka::DEFAULT_LINGER_MS;

use crate::shedding::LoadLimits;

/// Everything the api needs to run; tests build it with [`ApiConfig::for_tests`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub settings: Settings,
    /// `API_PORT`; 0 binds any free port.
    pub port: u16,
    /// `ADMIN_TOKEN`, the bearer token of the admin endpoints.
    pub admin_token: String,
    /// `MAX_CHARGE`, the largest single balance charge in won.
    pub max_charge: i64,
    /// `JOIN_WAIT_SECONDS`, how long a join waits to be placed in line before answering 202.
    pub join_wait: Duration,
    /// `ACCESS_TOKEN_TTL_SECONDS`, lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// `KAFKA_LINGER_MS`, how long the command producer waits to fill a batch.
    pub kafka_linger_ms: u32,
    /// Concurrency, timeouts and the publish bound (see [`crate::shedding`]).
    pub limits: LoadLimits,
}

/// The largest balance one user may hold, in won.
pub const MAX_BALANCE: i64 = 1_000_000_000;

impl ApiConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let admin_token = env_or("ADMIN_TOKEN", "dev-admin-token");
        if admin_token == "dev-admin-token" {
            tracing::warn!("ADMIN_TOKEN is not set: using the development admin token");
        }
        Ok(Self {
            settings: Settings::from_env()?,
            port: env_parse("API_PORT", 8080).context("API_PORT")?,
            admin_token,
            max_charge: env_parse("MAX_CHARGE", 10_000_000).context("MAX_CHARGE")?,
            join_wait: Duration::from_secs(
                env_parse("JOIN_WAIT_SECONDS", 10).context("JOIN_WAIT_SECONDS")?,
            ),
            access_token_ttl: Duration::from_secs(
                env_parse("ACCESS_TOKEN_TTL_SECONDS", 30 * 24 * 3600)
                    .context("ACCESS_TOKEN_TTL_SECONDS")?,
            ),
            kafka_linger_ms: env_parse("KAFKA_LINGER_MS", DEFAULT_LINGER_MS)
                .context("KAFKA_LINGER_MS")?,
            limits: LoadLimits::from_env()?,
        })
    }

    /// Port 0, a fixed admin token and production defaults for everything else.
    pub fn for_tests(settings: Settings) -> Self {
        Self {
            settings,
            port: 0,
            admin_token: "test-admin-token".into(),
            max_charge: 10_000_000,
            join_wait: Duration::from_secs(10),
            access_token_ttl: Duration::from_secs(3600),
            kafka_linger_ms: DEFAULT_LINGER_MS,
            limits: LoadLimits::default(),
        }
    }
}
