//! The harness' and the services' log output in tests. Its own module because every way of starting a test
//! ([`crate::env::TestEnv`] and what builds on it) turns it on first.

use tracing_subscriber::EnvFilter;

/// Sends the harness' and the services' logs to the test output when `TEST_LOG` is set; otherwise tests
/// stay quiet. Safe to call from every test.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
