//! Test harness of the concert booking service: a fresh database and topic set per test, the api and the
//! workers run in-process or as real OS processes, a small HTTP client that speaks `docs/API.md`, and readers
//! of the Kafka topics.
//!
//! ```no_run
//! # async fn demo() {
//! use concert_tests::TestStack;
//! let stack = TestStack::start().await;
//! let api = stack.api();
//! let user = api.sign_up("ada").await;
//! assert_eq!(api.charge(&user, 1_000).await, 1_000);
//! # }
//! ```

pub mod broker;
pub mod browser;
pub mod client;
pub mod env;
pub mod kafka;
pub mod pg_server;
pub mod procs;
pub mod stack;
pub mod wait;

pub use client::{Api, Concert, Joined, Outcome, Resp, User};
pub use env::TestEnv;
pub use stack::TestStack;
pub use wait::{wait_until, Deadline};

/// The admin token every stack is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-of-24-bytes-or-more";

/// Sends the harness' and the services' logs to the test output when `TEST_LOG` is set; otherwise tests
/// stay quiet. Safe to call from every test.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter =
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,sqlx=warn,rdkafka=warn")
                });
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
