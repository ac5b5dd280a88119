//! Deadlines: every wait in the suite has one, so no test hangs forever. Waiting is always polling for a
//! condition, never sleeping as an assertion about timing.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A point in time after which a wait gives up.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(duration: Duration) -> Self {
        Self(Instant::now() + duration)
    }

    pub fn secs(secs: u64) -> Self {
        Self::after(Duration::from_secs(secs))
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Polls `check` every `every` until it returns `Some`, and panics with `what` once `deadline` passes.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    deadline: Deadline,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(!deadline.passed(), "timed out waiting for {what}");
        tokio::time::sleep(
            every
                .min(deadline.remaining())
                .max(Duration::from_millis(1)),
        )
        .await;
    }
}
