//! Anonymous floods cannot make an instance unready: `/readyz` is answered from memory (the database and
//! the broker are checked in the background) and the waiting-room cache refreshes on connections no request
//! can take, so while hundreds of clients loop on `/readyz` and the public catalog, readiness stays 200 and
//! an admission shows in the status within 2 s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_tests::TestStack;

/// Clients looping on the anonymous endpoints at once.
const FLOODERS: usize = 300;
/// Calls of each kind the flood makes at least, whatever the machine's speed: the flood lasts until the
/// admission was seen, a second more, and both counts are reached (the catalog reads the database and runs
/// much slower than `/readyz` on a loaded 2-core machine).
const MIN_CALLS: u64 = 1_000;
/// A ceiling on the flood, so a machine too slow to reach `MIN_CALLS` fails the count below, not the timeout.
const MAX_FLOOD: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_readiness_and_catalog_calls_leaves_readiness_and_admissions_alone() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let user = api.sign_up("ada").await;

    let stop = AtomicBool::new(false);
    let (ready, unready, catalog) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let flood = futures::future::join_all((0..FLOODERS).map(|i| {
        let (stop, ready, unready, catalog) = (&stop, &ready, &unready, &catalog);
        async move {
            while !stop.load(Ordering::Relaxed) {
                if i % 2 == 0 {
                    let resp = api.get("/readyz").send().await;
                    let counter = if resp.status == 200 { ready } else { unready };
                    counter.fetch_add(1, Ordering::Relaxed);
                } else {
                    api.get("/v1/concerts").send().await;
                    catalog.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }));

    // Meanwhile a fan joins and watches for the admission.
    let watch = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let joined = api.join(&user, concert.concert_id).await;
        let mut seen: Option<DateTime<Utc>> = None;
        for _ in 0..1500 {
            let resp = api.queue_status(&joined.queue_token).await;
            if resp.json["status"] == "ACTIVE" {
                seen = Some(Utc::now());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A second of flood after the admission, for readiness to be seen under it, and enough calls of
        // each kind (a slow machine makes fewer per second).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = std::time::Instant::now();
        while (ready.load(Ordering::Relaxed) < MIN_CALLS
            || catalog.load(Ordering::Relaxed) < MIN_CALLS)
            && started.elapsed() < MAX_FLOOD
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        seen
    };
    let (_, seen) = tokio::join!(flood, watch);

    let seen = seen.expect("the fan was admitted and saw it");
    let admitted_at: DateTime<Utc> = sqlx::query_scalar(
        "SELECT admitted_at FROM admissions WHERE concert_id = $1 AND 1 BETWEEN from_seq AND upto_seq",
    )
    .bind(concert.concert_id)
    .fetch_one(stack.db())
    .await
    .expect("the admission step");
    let lag = seen - admitted_at;
    let (ready, unready, catalog) = (
        ready.into_inner(),
        unready.into_inner(),
        catalog.into_inner(),
    );
    assert!(
        ready >= MIN_CALLS && catalog >= MIN_CALLS,
        "the flood ran: {ready} readiness and {catalog} catalog calls"
    );
    assert_eq!(unready, 0, "readiness stayed 200 ({ready} calls)");
    assert!(
        lag <= chrono::Duration::seconds(2),
        "the admission showed {lag} after it was made, under {ready} readiness and {catalog} catalog calls"
    );
}
