//! Capped exponential backoff and shutdown-aware sleeping, shared by every loop that retries.

use std::time::Duration;

use tokio::sync::watch;

/// 100 ms doubling to 5 s: quick to recover from a blip, gentle on a database or broker that is down.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    first: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self::with_limits(Duration::from_millis(100), Duration::from_secs(5))
    }

    pub fn with_limits(first: Duration, max: Duration) -> Self {
        Self {
            next: first,
            max,
            first,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Called after a success, so the next failure starts with a short delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Has shutdown been asked for? A dropped sender counts as yes: nobody is left to run for.
pub fn is_stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once shutdown is asked for (or the sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleeps for `delay` unless shutdown comes first. Returns `false` when the caller should stop.
pub async fn sleep_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => !is_stopping(shutdown),
        _ = stopped(shutdown) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn sleep_ends_early_on_shutdown() {
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).unwrap();
        let started = std::time::Instant::now();
        assert!(!sleep_or_stop(Duration::from_secs(30), &mut rx).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn sleep_runs_out_when_nobody_stops_it() {
        let (_tx, mut rx) = watch::channel(false);
        assert!(sleep_or_stop(Duration::from_millis(5), &mut rx).await);
    }
}
