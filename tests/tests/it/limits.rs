//! Abuse limits (v2): a user's command submissions beyond `RATE_LIMIT_PER_USER` and sign-ups beyond
//! `SIGNUPS_PER_IP_PER_MINUTE` get 429 `RATE_LIMITED` with `Retry-After`, before anything is published.

use std::time::Duration;

use concert_tests::{wait_until, Deadline, Resp, TestStack};
use serde_json::json;

use crate::support::{buyer, count};

fn retry_after(resp: &Resp) -> u64 {
    resp.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After in whole seconds: {:?}", resp.headers))
}

/// The default limit (10 per second, bursts of 20): a user firing 40 holds at once gets about 20 through
/// and the rest refused with nothing published; another user is not slowed down at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_user_is_limited_and_nothing_of_the_refused_is_published() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 0).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    // Let ada's join (one submission) be forgotten, so the burst is exactly the configured one.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No Prefer: wait, so each answer is immediate: 202 if published, 429 if refused at the door.
    let flood = futures::future::join_all((1..=40).map(|seat| {
        api.post("/v1/holds")
            .auth(&ada)
            .queue(&ada_token)
            .json(&json!({ "date_id": concert.date(), "seat_no": seat }))
            .send()
    }))
    .await;
    let accepted = flood.iter().filter(|r| r.status == 202).count();
    let limited: Vec<&Resp> = flood.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        accepted + limited.len(),
        flood.len(),
        "only 202 or 429: {:?}",
        flood.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        (20..=23).contains(&accepted),
        "the burst of 20 (plus what refilled meanwhile) gets through, got {accepted}"
    );
    for resp in &limited {
        let problem = resp.expect_problem(429, "RATE_LIMITED");
        assert!(
            problem.get("request_id").is_none(),
            "nothing published, so no request: {problem}"
        );
        assert!((1..=2).contains(&retry_after(resp)));
    }

    // Another user is unaffected, at once.
    api.hold_ok(&bob, &bob_token, concert.date(), 50).await;

    // Exactly the accepted holds reached the log and were applied; none of the refused ones.
    wait_until(
        "the accepted holds to be decided",
        Deadline::secs(30),
        Duration::from_millis(100),
        || async {
            let decided = count(
                stack.db(),
                "SELECT count(*) FROM requests WHERE user_id = $1 AND kind = 'HOLD' AND status <> 'PENDING'",
                Some(ada.user_id),
            )
            .await;
            (decided as usize >= accepted).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reached_the_log = count(
        stack.db(),
        "SELECT count(*) FROM requests WHERE user_id = $1 AND kind = 'HOLD'",
        Some(ada.user_id),
    )
    .await;
    assert_eq!(reached_the_log as usize, accepted);

    // After the wait it was told, ada may submit again.
    let wait = limited.iter().map(|r| retry_after(r)).max().unwrap_or(1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&ada_token)
        .json(&json!({ "date_id": concert.date(), "seat_no": 49 }))
        .send()
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
}

/// Charges are not commands: a hundred at once from one user all count (the contract's exception).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_not_limited() {
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    let answers = futures::future::join_all((0..100).map(|_| {
        api.post("/v1/me/balance/charges")
            .auth(&user)
            .json(&json!({ "amount": 10 }))
            .send()
    }))
    .await;
    assert!(
        answers.iter().all(|r| r.status == 200),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(api.balance(&user).await, 1_000);
}

/// `RATE_LIMIT_PER_USER=0` turns the limit off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_rate_turns_the_command_limit_off() {
    let stack = TestStack::builder()
        .apis(1)
        .workers(1)
        .rate_limit_per_user(0)
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;
    let flood = futures::future::join_all((1..=40).map(|seat| {
        api.post("/v1/holds")
            .auth(&ada)
            .queue(&token)
            .json(&json!({ "date_id": concert.date(), "seat_no": seat }))
            .send()
    }))
    .await;
    assert!(
        flood.iter().all(|r| r.status == 202),
        "{:?}",
        flood.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

fn sign_up_body(i: usize) -> serde_json::Value {
    json!({ "name": format!("fan-{i}") })
}

/// Three sign-ups a minute per address. Without `TRUST_FORWARDED_FOR` the header changes nothing: the
/// address is the connection's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_are_limited_per_connection_address() {
    let stack = TestStack::builder()
        .apis(1)
        .configure_apis(|config| config.signups_per_ip_per_minute = 3)
        .start()
        .await;
    let api = stack.api();
    for i in 0..3 {
        api.post("/v1/users")
            .header("x-forwarded-for", &format!("10.0.0.{i}"))
            .json(&sign_up_body(i))
            .send()
            .await
            .expect(201);
    }
    let refused = api
        .post("/v1/users")
        .header("x-forwarded-for", "10.0.0.99")
        .json(&sign_up_body(3))
        .send()
        .await;
    refused.expect_problem(429, "RATE_LIMITED");
    // A minute's allowance of three: the next one is due in about 20 s.
    assert!(
        (1..=21).contains(&retry_after(&refused)),
        "{:?}",
        refused.headers
    );
    assert_eq!(
        count(stack.db(), "SELECT count(*) FROM users", None).await,
        3,
        "the refused sign-up created no user"
    );
    // Invalid sign-ups are refused for what they are, and do not use the allowance up further.
    api.post("/v1/users")
        .json(&json!({ "name": "" }))
        .send()
        .await
        .expect_problem(400, "VALIDATION_FAILED");
}

/// With `TRUST_FORWARDED_FOR=1` the address is the last one of `X-Forwarded-For` (the one the trusted proxy
/// appended), so clients behind one proxy are told apart and a client cannot dodge by prepending addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_follow_x_forwarded_for_only_when_trusted() {
    let stack = TestStack::builder()
        .apis(1)
        .configure_apis(|config| {
            config.signups_per_ip_per_minute = 3;
            config.trust_forwarded_for = true;
        })
        .start()
        .await;
    let api = stack.api();
    let sign_up = |forwarded: &'static str, i: usize| {
        api.post("/v1/users")
            .header("x-forwarded-for", forwarded)
            .json(&sign_up_body(i))
            .send()
    };
    for i in 0..3 {
        sign_up("203.0.113.7", i).await.expect(201);
    }
    sign_up("203.0.113.7", 3)
        .await
        .expect_problem(429, "RATE_LIMITED");
    sign_up("198.51.100.1, 203.0.113.7", 4)
        .await
        .expect_problem(429, "RATE_LIMITED");
    // Another client behind the same proxy.
    sign_up("203.0.113.8", 5).await.expect(201);
    // No usable header: the connection's address (127.0.0.1), which has its own allowance.
    sign_up("not an address", 6).await.expect(201);
}
