//! `POST /v1/users` and bearer authentication.

use concert_core::token::{AccessClaims, TokenSigner};
use concert_tests::TestStack;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::{max_active, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_returns_an_id_and_a_token_that_works() {
    let stack = TestStack::start().await;
    let api = stack.api();

    let resp = api
        .post("/v1/users")
        .json(&json!({ "name": "ada" }))
        .send()
        .await;
    let body = resp.expect(201).clone();
    let user_id = uuid(&body["user_id"]);
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();

    let balance = api.get("/v1/me/balance").bearer(&token).send().await;
    assert_eq!(balance.expect(200)["balance"], json!(0));

    let again = api.sign_up("ada").await;
    assert_ne!(
        again.user_id, user_id,
        "names are not unique; every sign-up is a new user"
    );

    let longest = "n".repeat(100);
    api.post("/v1/users")
        .json(&json!({ "name": longest }))
        .send()
        .await
        .expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_validation() {
    let stack = TestStack::start().await;
    let api = stack.api();
    // The contract allows 200 characters (v2 additions).
    let long = "n".repeat(201);
    let json_bodies = [
        json!({}),
        json!({ "name": "" }),
        json!({ "name": long }),
        json!({ "name": 5 }),
        json!({ "name": null }),
        json!([]),
    ];
    for body in json_bodies {
        let resp = api.post("/v1/users").json(&body).send().await;
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
    for raw in ["{\"name\":", "not json", ""] {
        let resp = api
            .post("/v1/users")
            .raw("application/json", raw)
            .send()
            .await;
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_forged_bearer_is_unauthorized() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(10, 600, 300))
        .await;
    let queue_token = api.enter(&user, concert.concert_id).await;

    let far = chrono::Utc::now().timestamp() + 3600;
    let other_secret = TokenSigner::new(b"some-other-secret-of-32-bytes!!!".to_vec());
    let forged = other_secret.sign_access(&AccessClaims {
        uid: user.user_id,
        exp: far,
    });
    let expired = stack.env.signer().sign_access(&AccessClaims {
        uid: user.user_id,
        exp: chrono::Utc::now().timestamp() - 10,
    });
    let (body, sig) = user
        .access_token
        .split_once('.')
        .expect("token has two parts");
    let tampered = format!("{}x.{sig}", body);
    let bad_headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer garbage".into()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {queue_token}")),
        Some(format!("Basic {}", user.access_token)),
        Some(user.access_token.clone()),
    ];
    let hold_id = Uuid::new_v4();
    let request_id = Uuid::new_v4();
    let calls: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, "/v1/me/balance".into(), None),
        (
            Method::POST,
            "/v1/me/balance/charges".into(),
            Some(json!({ "amount": 100 })),
        ),
        (Method::GET, "/v1/me/balance/history".into(), None),
        (Method::GET, "/v1/me/reservations".into(), None),
        (
            Method::POST,
            format!("/v1/concerts/{}/queue", concert.concert_id),
            None,
        ),
        (
            Method::POST,
            "/v1/holds".into(),
            Some(json!({ "date_id": concert.date(), "seat_no": 1 })),
        ),
        (Method::DELETE, format!("/v1/holds/{hold_id}"), None),
        (
            Method::POST,
            "/v1/payments".into(),
            Some(json!({ "hold_id": hold_id })),
        ),
        (Method::GET, format!("/v1/requests/{request_id}"), None),
    ];
    for (method, path, body) in &calls {
        for header in &bad_headers {
            let mut call = api.call(method.clone(), path).queue(&queue_token);
            if let Some(h) = header {
                call = call.header("authorization", h);
            }
            if let Some(b) = body {
                call = call.json(b);
            }
            let resp = call.send().await;
            assert_eq!(
                resp.status, 401,
                "{method} {path} with {header:?}: {}",
                resp.text
            );
            resp.expect_problem(401, "UNAUTHORIZED");
        }
    }
    assert_eq!(
        api.balance(&user).await,
        0,
        "nothing was charged by the refused calls"
    );
}
