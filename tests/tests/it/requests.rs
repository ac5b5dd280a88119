//! Submit-then-poll: 202 and Location, `Prefer: wait`, `GET /v1/requests/{id}`, and `Idempotency-Key`.

use std::time::Duration;

use concert_tests::{wait_until, Api, Deadline, Resp, TestStack, User};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{buyer, count, uuid};

/// Polls `GET /v1/requests/{id}` without `Prefer` until the status is not PENDING; returns that 200 answer.
async fn poll_plain(api: &Api, user: &User, request_id: &str) -> Resp {
    wait_until(
        "the request to finish",
        Deadline::secs(60),
        Duration::from_millis(100),
        || async {
            let resp = api.request_raw(user, request_id, None).await;
            let body = resp.expect(200);
            (body["status"] != "PENDING").then_some(resp)
        },
    )
    .await
}

fn hold_body(date_id: Uuid, seat_no: i64) -> Value {
    json!({ "date_id": date_id, "seat_no": seat_no })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_without_prefer_is_accepted_then_polled() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;

    let resp = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&token)
        .json(&hold_body(concert.date(), 9))
        .send()
        .await;
    let body = resp.expect(202).clone();
    let request_id = body["request_id"].as_str().expect("request_id").to_owned();
    uuid(&body["request_id"]);
    assert_eq!(body["status"], "PENDING");
    assert_eq!(
        resp.header("location"),
        Some(format!("/v1/requests/{request_id}").as_str())
    );

    let done = poll_plain(api, &ada, &request_id).await;
    let doc = done.expect(200);
    assert_eq!(doc["request_id"], json!(request_id));
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("HOLD"), Some("SUCCEEDED")),
        "{doc}"
    );
    assert_eq!(doc["result"]["seat_no"], json!(9));
    assert!(doc.get("error").is_none_or(Value::is_null), "{doc}");

    let waited = api.request_raw(&ada, &request_id, Some(10)).await;
    assert_eq!(
        waited.expect(200),
        doc,
        "the poll with Prefer answers the same document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_on_a_fresh_poll_answers_the_outcome() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;

    let resp = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&token)
        .json(&hold_body(concert.date(), 1))
        .send()
        .await;
    let request_id = resp.expect(202)["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    let waited = api.request_raw(&ada, &request_id, Some(10)).await;
    let doc = waited.expect(200);
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("HOLD"), Some("SUCCEEDED")),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commands_answer_their_problem() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 0).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    api.hold_ok(&ada, &ada_token, concert.date(), 4).await;

    // With Prefer: the problem's own status, carrying the request id.
    let direct = api.hold_raw(&bob, &bob_token, concert.date(), 4).await;
    let problem = direct.expect_problem(409, "SEAT_UNAVAILABLE").clone();
    let request_id = problem["request_id"]
        .as_str()
        .expect("the problem names its request")
        .to_owned();
    let polled = api.request_raw(&bob, &request_id, None).await;
    let doc = polled.expect(200);
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("HOLD"), Some("FAILED")),
        "{doc}"
    );
    assert_eq!(doc["error"]["code"], "SEAT_UNAVAILABLE");
    assert_eq!(doc["error"]["status"], json!(409));

    // Without Prefer: 202, then the poll shows FAILED with the problem; a poll with Prefer answers the problem.
    let resp = api
        .post("/v1/holds")
        .auth(&bob)
        .queue(&bob_token)
        .json(&hold_body(concert.date(), 4))
        .send()
        .await;
    let request_id = resp.expect(202)["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    let done = poll_plain(api, &bob, &request_id).await;
    let doc = done.expect(200);
    assert_eq!(doc["status"], "FAILED", "{doc}");
    assert_eq!(doc["error"]["code"], "SEAT_UNAVAILABLE");
    assert!(doc.get("result").is_none_or(Value::is_null), "{doc}");
    let waited = api.request_raw(&bob, &request_id, Some(5)).await;
    let problem = waited.expect_problem(409, "SEAT_UNAVAILABLE");
    assert_eq!(problem["request_id"], json!(request_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_readable_only_by_their_submitter() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;
    let bob = api.sign_up("bob").await;
    let outcome = api.hold(&ada, &token, concert.date(), 2).await;
    let request_id = outcome.request_id().expect("request_id").to_owned();

    api.request_raw(&bob, &request_id, None)
        .await
        .expect_problem(404, "REQUEST_NOT_FOUND");
    api.request_raw(&bob, &request_id, Some(1))
        .await
        .expect_problem(404, "REQUEST_NOT_FOUND");
    api.request_raw(&ada, &Uuid::new_v4().to_string(), None)
        .await
        .expect_problem(404, "REQUEST_NOT_FOUND");
    api.request_raw(&ada, &request_id, None).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_names_one_request_applied_once() {
    let stack = TestStack::start_with(2, 1).await;
    let (api, other_api) = (&stack.apis()[0], &stack.apis()[1]);
    let concert = api.create_concert(1, 5_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;
    let submit = |api: &Api, key: &str, seat: i64| {
        api.post("/v1/holds")
            .auth(&ada)
            .queue(&token)
            .wait(10)
            .idempotency_key(key)
            .json(&hold_body(concert.date(), seat))
    };

    let first = submit(api, "key-1", 5).send().await;
    let first_doc = first.expect(200).clone();
    let second = submit(api, "key-1", 5).send().await;
    assert_eq!(
        second.expect(200),
        &first_doc,
        "same key, same body: the same request and outcome"
    );
    let third = submit(other_api, "key-1", 5).send().await;
    assert_eq!(third.expect(200), &first_doc, "on any api instance");
    let without_wait = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&token)
        .idempotency_key("key-1")
        .json(&hold_body(concert.date(), 5))
        .send()
        .await;
    assert!(
        matches!(without_wait.status, 200 | 202),
        "{}",
        without_wait.text
    );
    assert_eq!(without_wait.json["request_id"], first_doc["request_id"]);
    let holds = count(
        stack.db(),
        "SELECT count(*) FROM holds WHERE user_id = $1",
        Some(ada.user_id),
    )
    .await;
    assert_eq!(holds, 1, "applied once");

    let reused = submit(api, "key-1", 6).send().await;
    reused.expect_problem(422, "IDEMPOTENCY_KEY_REUSED");
    let original = api
        .request_raw(
            &ada,
            first_doc["request_id"].as_str().expect("request_id"),
            None,
        )
        .await;
    assert_eq!(
        original.expect(200),
        &first_doc,
        "the original request is untouched"
    );
    let seats = api
        .seats(&ada, &token, concert.concert_id, concert.date())
        .await;
    let seat6 = seats
        .iter()
        .find(|s| s["seat_no"] == json!(6))
        .expect("seat 6");
    assert_eq!(seat6["status"], "AVAILABLE", "the reused key held nothing");

    // Keys are scoped by kind: the same key on a payment is a different request.
    let hold_id = first_doc["result"]["hold_id"].as_str().expect("hold_id");
    api.charge(&ada, 5_000).await;
    let pay = api
        .post("/v1/payments")
        .auth(&ada)
        .queue(&token)
        .wait(10)
        .idempotency_key("key-1")
        .json(&json!({ "hold_id": hold_id }))
        .send()
        .await;
    let pay_doc = pay.expect(200);
    assert_eq!(pay_doc["kind"], "PAY", "{pay_doc}");
    assert_ne!(pay_doc["request_id"], first_doc["request_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_per_user() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 0).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;
    let a = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&ada_token)
        .wait(10)
        .idempotency_key("same")
        .json(&hold_body(concert.date(), 1))
        .send()
        .await;
    let b = api
        .post("/v1/holds")
        .auth(&bob)
        .queue(&bob_token)
        .wait(10)
        .idempotency_key("same")
        .json(&hold_body(concert.date(), 2))
        .send()
        .await;
    let (a, b) = (a.expect(200).clone(), b.expect(200).clone());
    assert_ne!(a["request_id"], b["request_id"]);
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("SUCCEEDED"), Some("SUCCEEDED"))
    );
}

/// docs/API.md: a `Prefer: wait` above 30 is treated as 30 and an unreadable one is ignored (RFC 7240 lets a
/// server honour a preference in part): the request itself is valid and answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_above_thirty_seconds_is_capped_not_refused() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 5_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;
    let started = std::time::Instant::now();
    let resp = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&token)
        .header("prefer", "wait=31")
        .json(&hold_body(concert.date(), 1))
        .send()
        .await;
    let body = resp.expect(200);
    assert_eq!(body["status"], "SUCCEEDED", "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "answered as soon as decided"
    );
    let request_id = body["request_id"].as_str().expect("request_id").to_owned();
    let poll = api
        .get(&format!("/v1/requests/{request_id}"))
        .auth(&ada)
        .header("prefer", "wait=31")
        .send()
        .await;
    assert_eq!(poll.expect(200)["status"], "SUCCEEDED");
    let unreadable = api
        .post("/v1/holds")
        .auth(&ada)
        .queue(&token)
        .header("prefer", "wait=soon")
        .json(&hold_body(concert.date(), 2))
        .send()
        .await;
    unreadable.expect(202);
    let holds = count(
        stack.db(),
        "SELECT count(*) FROM holds WHERE seat_no = 1",
        None,
    )
    .await;
    assert_eq!(holds, 1, "the capped submit was applied once");
}
