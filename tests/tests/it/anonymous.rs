//! Limits per client address apply to anonymous calls only (v3): a flood of public catalog calls from one
//! address gets 429 `RATE_LIMITED` past its rate and 503 past its share of the slots in progress, while
//! calls that carry a token from the same address, and `/healthz`/`/readyz`, are never limited by address.

use concert_tests::TestStack;

use crate::support::buyer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_calls_are_limited_per_address_and_calls_with_a_token_are_not() {
    let stack = TestStack::builder()
        .apis(1)
        .workers(1)
        .configure_apis(|config| {
            config.limits.anonymous_per_address_per_second = 5;
            config.signups_per_ip_per_minute = 0;
        })
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let (fan, token) = buyer(api, "fan", &concert, 0).await;

    // 40 anonymous catalog calls at once: the burst (10) passes, the rest is refused with Retry-After.
    let flood = futures::future::join_all((0..40).map(|_| api.get("/v1/concerts").send())).await;
    let passed = flood.iter().filter(|r| r.status == 200).count();
    let limited: Vec<_> = flood.iter().filter(|r| r.status == 429).collect();
    assert_eq!(passed + limited.len(), flood.len(), "only 200 or 429");
    assert!(
        (10..=13).contains(&passed),
        "the burst of twice the rate passes, got {passed}"
    );
    for resp in &limited {
        resp.expect_problem(429, "RATE_LIMITED");
        assert!(resp.header("retry-after").is_some());
    }

    // The same address with a token: never limited by address (the user's own limits apply).
    let with_token = futures::future::join_all((0..40).map(|_| {
        api.get(&format!("/v1/concerts/{}/dates", concert.concert_id))
            .auth(&fan)
            .queue(&token)
            .send()
    }))
    .await;
    assert!(
        with_token.iter().all(|r| r.status == 200),
        "{:?}",
        with_token.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let balances =
        futures::future::join_all((0..40).map(|_| api.get("/v1/me/balance").auth(&fan).send()))
            .await;
    assert!(balances.iter().all(|r| r.status == 200));

    // Health and readiness are never limited.
    let health = futures::future::join_all((0..40).map(|i| {
        api.get(if i % 2 == 0 { "/healthz" } else { "/readyz" })
            .send()
    }))
    .await;
    assert!(health.iter().all(|r| r.status == 200));
}
