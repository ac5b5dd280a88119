//! Queue tokens on the gated endpoints: dates, seats and holds.

use concert_core::token::{QueueClaims, TokenSigner};
use concert_tests::{Api, Resp, TestStack, User};
use serde_json::json;
use uuid::Uuid;

use crate::support::{buyer, max_active};

/// The three gated calls a token is tried on: dates, seats, and a hold.
async fn gated(
    api: &Api,
    user: &User,
    token: Option<&str>,
    concert_id: Uuid,
    date_id: Uuid,
) -> Vec<(&'static str, Resp)> {
    let dates = api.dates_raw(user, token, concert_id).await;
    let seats = api.seats_raw(user, token, concert_id, date_id).await;
    let mut hold = api
        .post("/v1/holds")
        .auth(user)
        .wait(10)
        .json(&json!({ "date_id": date_id, "seat_no": 1 }));
    if let Some(t) = token {
        hold = hold.queue(t);
    }
    vec![
        ("dates", dates),
        ("seats", seats),
        ("hold", hold.send().await),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_and_misused_tokens_are_invalid() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let other_concert = api.create_concert(1, 1000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 0).await;
    let (bob, _) = buyer(api, "bob", &concert, 0).await;
    let ada_other_concert = api.enter(&ada, other_concert.concert_id).await;

    let claims = stack
        .env
        .signer()
        .verify_queue(&ada_token)
        .expect("a valid token");
    let forged = TokenSigner::new(b"not-the-server-secret-at-all!!".to_vec()).sign_queue(&claims);
    let (body, sig) = ada_token.split_once('.').expect("two parts");
    let mut sig_bytes = sig.as_bytes().to_vec();
    sig_bytes[3] = if sig_bytes[3] == b'A' { b'B' } else { b'A' };
    let tampered_sig = format!("{body}.{}", String::from_utf8(sig_bytes).expect("ascii"));
    let swapped_claims = stack.env.signer().sign_queue(&QueueClaims {
        uid: bob.user_id,
        ..claims.clone()
    });
    let (swapped_body, _) = swapped_claims.split_once('.').expect("two parts");
    let tampered_body = format!("{swapped_body}.{sig}");

    let cases: Vec<(&str, &User, Option<String>, Uuid)> = vec![
        ("no token", &ada, None, concert.concert_id),
        ("garbage", &ada, Some("garbage".into()), concert.concert_id),
        (
            "forged with another secret",
            &ada,
            Some(forged),
            concert.concert_id,
        ),
        (
            "tampered signature",
            &ada,
            Some(tampered_sig),
            concert.concert_id,
        ),
        (
            "tampered claims",
            &ada,
            Some(tampered_body),
            concert.concert_id,
        ),
        (
            "an access token",
            &ada,
            Some(ada.access_token.clone()),
            concert.concert_id,
        ),
        (
            "another user's token",
            &bob,
            Some(ada_token.clone()),
            concert.concert_id,
        ),
        (
            "another concert's token",
            &ada,
            Some(ada_other_concert.clone()),
            concert.concert_id,
        ),
    ];
    for (what, user, token, concert_id) in cases {
        for (call, resp) in gated(api, user, token.as_deref(), concert_id, concert.date()).await {
            if what == "another concert's token" && call == "hold" {
                // A hold names no concert: the token says which, and this date is not one of its dates.
                resp.expect_problem(404, "DATE_NOT_FOUND");
                continue;
            }
            assert_eq!(resp.status, 401, "{what} on {call}: {}", resp.text);
            resp.expect_problem(401, "QUEUE_TOKEN_INVALID");
        }
    }
    let status = api.get("/v1/queue/status").send().await;
    status.expect_problem(401, "QUEUE_TOKEN_INVALID");
    api.queue_status("garbage")
        .await
        .expect_problem(401, "QUEUE_TOKEN_INVALID");

    // The real owner on the right concert still gets in, and nothing was held by the refused holds.
    let seats = api
        .seats(&ada, &ada_token, concert.concert_id, concert.date())
        .await;
    assert!(seats.iter().all(|s| s["status"] == "AVAILABLE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_token_is_not_admitted_and_says_where_it_stands() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(1, 600, 300))
        .await;
    let (_, _) = buyer(api, "first", &concert, 0).await;
    let second = api.sign_up("second").await;
    let third = api.sign_up("third").await;
    api.join(&second, concert.concert_id).await;
    let joined = api.join(&third, concert.concert_id).await;

    for (call, resp) in gated(
        api,
        &third,
        Some(&joined.queue_token),
        concert.concert_id,
        concert.date(),
    )
    .await
    {
        assert_eq!(resp.status, 403, "{call}: {}", resp.text);
        let problem = resp.expect_problem(403, "QUEUE_NOT_ADMITTED");
        assert_eq!(
            problem["position"],
            json!(2),
            "{call}: the third in line is second in the queue: {problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_window_makes_the_token_expired() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(5, 1, 300))
        .await;
    let user = api.sign_up("ada").await;
    let joined = api.join(&user, concert.concert_id).await;
    let deadline = concert_tests::Deadline::secs(30);
    let status = api
        .wait_for_status(&joined.queue_token, "EXPIRED", deadline)
        .await;
    assert_eq!(status["status"], "EXPIRED");
    for (call, resp) in gated(
        api,
        &user,
        Some(&joined.queue_token),
        concert.concert_id,
        concert.date(),
    )
    .await
    {
        assert_eq!(resp.status, 401, "{call}: {}", resp.text);
        resp.expect_problem(401, "QUEUE_TOKEN_EXPIRED");
    }
}
