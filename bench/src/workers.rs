//! Running many small jobs on the multi-threaded runtime with a bounded number at once.
//!
//! Jobs run as spawned tasks (not one `for_each_concurrent` future) so that the client's own work, encoding
//! and parsing JSON, spreads over every core.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs `job(0..n)` with at most `concurrency` at once and returns the results in index order.
pub async fn for_each<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (next, job) = (next.clone(), job.clone());
        set.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return done;
                }
                done.push((i, job(i).await));
            }
        });
    }
    let mut all: Vec<(usize, T)> = Vec::with_capacity(n);
    while let Some(part) = set.join_next().await {
        all.extend(part.expect("a bench job panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_every_index_once_in_order() {
        let out = for_each(1000, 7, |i| async move { i * 2 }).await;
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert!(for_each(0, 4, |i| async move { i }).await.is_empty());
    }
}
