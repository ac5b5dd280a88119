//! Joining the waiting room, the queue status, and admission by capacity, by interval and by window.

use std::time::Duration;

use concert_tests::{Deadline, TestStack};
use serde_json::json;
use uuid::Uuid;

use crate::support::{buyer, max_active, time};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_answers_201_with_a_token_and_rejoining_returns_the_same_place() {
    let stack = TestStack::start_with(2, 1).await;
    let (api, other_api) = (&stack.apis()[0], &stack.apis()[1]);
    let concert = api.create_concert(1, 1000).await;
    let user = api.sign_up("ada").await;

    let resp = api.join_raw(&user, concert.concert_id).await;
    let body = resp.expect(201).clone();
    let token = body["queue_token"]
        .as_str()
        .expect("queue_token")
        .to_owned();
    assert!(
        ["WAITING", "ACTIVE"].contains(&body["status"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert!(
        body["request_id"].is_string(),
        "the join names its request: {body}"
    );
    assert_eq!(stack.env.queue_seq(&token), 1);

    let again = api.join_raw(&user, concert.concert_id).await;
    assert_eq!(
        again.expect(201)["queue_token"],
        json!(token),
        "joining again while live returns the same place"
    );
    let elsewhere = other_api.join_raw(&user, concert.concert_id).await;
    assert_eq!(
        elsewhere.expect(201)["queue_token"],
        json!(token),
        "whichever api instance answers"
    );

    let request = api
        .request_raw(
            &user,
            body["request_id"].as_str().expect("request_id"),
            Some(10),
        )
        .await;
    let doc = request.expect(200);
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("JOIN"), Some("SUCCEEDED")),
        "{doc}"
    );
    assert_eq!(doc["result"]["queue_token"], json!(token));
    assert_eq!(
        doc["result"]["concert_id"],
        json!(concert.concert_id.to_string())
    );
    assert!(doc["result"]["status"].is_string(), "{doc}");

    let entries = crate::support::count(
        stack.db(),
        "SELECT count(*) FROM queue_entries WHERE concert_id = $1",
        Some(concert.concert_id),
    )
    .await;
    assert_eq!(entries, 1, "one place, however often joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_an_unknown_concert_is_not_found() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    let resp = api.join_raw(&user, Uuid::new_v4()).await;
    resp.expect_problem(404, "CONCERT_NOT_FOUND");
    let resp = api
        .post(&format!("/v1/concerts/{}/queue", Uuid::new_v4()))
        .send()
        .await;
    resp.expect_problem(401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_status_shows_position_and_retry_after() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(1, 600, 300))
        .await;
    let (_, first_token) = buyer(api, "first", &concert, 0).await;
    let users = api.sign_up_many("fan", 2).await;
    let second = api.join(&users[0], concert.concert_id).await;
    let third = api.join(&users[1], concert.concert_id).await;
    assert_eq!(second.status, "WAITING");

    let active = api.queue_status(&first_token).await;
    let body = active.expect(200);
    assert_eq!(body["status"], "ACTIVE");
    assert!(
        time(&body["active_until"]) > chrono::Utc::now(),
        "an ACTIVE place says until when: {body}"
    );
    assert!(
        active.header("retry-after").is_some(),
        "Retry-After on ACTIVE"
    );

    for (joined, position) in [(&second, 1), (&third, 2)] {
        let resp = api.queue_status(&joined.queue_token).await;
        let body = resp.expect(200);
        assert_eq!(
            (body["status"].as_str(), body["position"].as_i64()),
            (Some("WAITING"), Some(position)),
            "{body}"
        );
        let retry = resp.header("retry-after").expect("Retry-After on WAITING");
        assert!(
            retry.parse::<u64>().is_ok_and(|s| s >= 1),
            "Retry-After is delay-seconds: {retry}"
        );
        if let Some(eta) = body.get("eta_seconds").filter(|e| !e.is_null()) {
            assert!(eta.as_i64().is_some_and(|e| e >= 0), "{body}");
        }
    }
    assert_eq!(
        second.position,
        Some(1),
        "the join's answer carries the position"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_by_max_active_users_fills_freed_slots_in_order() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 10_000).await;
    api.set_policy(concert.concert_id, &max_active(2, 600, 300))
        .await;
    let users = api.sign_up_many("fan", 4).await;
    api.charge(&users[0], 10_000).await;
    let mut tokens = Vec::new();
    for user in &users {
        tokens.push(api.join(user, concert.concert_id).await.queue_token);
    }
    api.wait_until_active(&tokens[0], Deadline::secs(30)).await;
    api.wait_until_active(&tokens[1], Deadline::secs(30)).await;
    for (token, position) in [(&tokens[2], 1), (&tokens[3], 2)] {
        let body = api.queue_status(token).await.expect(200).clone();
        assert_eq!(
            (body["status"].as_str(), body["position"].as_i64()),
            (Some("WAITING"), Some(position)),
            "{body}"
        );
    }

    // Paying ends the first place (COMPLETED) and frees its slot for the next in line.
    let hold = api.hold_ok(&users[0], &tokens[0], concert.date(), 1).await;
    api.pay(
        &users[0],
        &tokens[0],
        hold["hold_id"].as_str().expect("hold_id"),
    )
    .await
    .expect_success();
    let status = api.queue_status(&tokens[0]).await;
    assert_eq!(
        status.expect(200)["status"],
        "COMPLETED",
        "the place is COMPLETED once the payment answered 200"
    );
    api.wait_until_active(&tokens[2], Deadline::secs(30)).await;
    let body = api.queue_status(&tokens[3]).await.expect(200).clone();
    assert_eq!(
        (body["status"].as_str(), body["position"].as_i64()),
        (Some("WAITING"), Some(1)),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_by_interval_admits_at_most_n_per_beat() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let policy = json!({ "admit_per_interval": 2, "interval_seconds": 2, "active_seconds": 600, "hold_seconds": 300 });
    api.set_policy(concert.concert_id, &policy).await;
    let users = api.sign_up_many("fan", 5).await;
    let joins =
        futures::future::join_all(users.iter().map(|u| api.join(u, concert.concert_id))).await;
    for joined in &joins {
        api.wait_until_active(&joined.queue_token, Deadline::secs(40))
            .await;
    }

    let rows: Vec<(i64, i64, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT from_seq, upto_seq, admitted_at FROM admissions WHERE concert_id = $1 ORDER BY from_seq")
            .bind(concert.concert_id)
            .fetch_all(stack.db())
            .await
            .expect("admissions");
    assert!(
        rows.len() >= 3,
        "five people two at a time take at least three steps: {rows:?}"
    );
    let mut next = 1;
    for (from, upto, _) in &rows {
        assert_eq!(*from, next, "steps are contiguous: {rows:?}");
        assert!(upto - from < 2, "at most two per step: {rows:?}");
        next = upto + 1;
    }
    assert_eq!(next, 6);
    for pair in rows.windows(2) {
        let gap = pair[1].2 - pair[0].2;
        assert!(
            gap >= chrono::Duration::milliseconds(1950),
            "steps are an interval apart: {rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_window_expires_the_place_frees_the_slot_and_rejoining_goes_to_the_back() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &max_active(1, 2, 300))
        .await;
    let users = api.sign_up_many("fan", 2).await;
    let first = api.join(&users[0], concert.concert_id).await;
    api.wait_until_active(&first.queue_token, Deadline::secs(30))
        .await;
    let second = api.join(&users[1], concert.concert_id).await;

    let expired = api
        .wait_for_status(&first.queue_token, "EXPIRED", Deadline::secs(30))
        .await;
    assert_eq!(expired["status"], "EXPIRED");
    api.wait_until_active(&second.queue_token, Deadline::secs(30))
        .await;
    let dates = api
        .dates_raw(&users[0], Some(&first.queue_token), concert.concert_id)
        .await;
    dates.expect_problem(401, "QUEUE_TOKEN_EXPIRED");

    let again = api.join(&users[0], concert.concert_id).await;
    assert_ne!(
        again.queue_token, first.queue_token,
        "an EXPIRED place is not reused"
    );
    let seq = |t: &str| stack.env.queue_seq(t);
    assert!(
        seq(&again.queue_token) > seq(&second.queue_token),
        "the new place is at the back"
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        api.wait_until_active(&again.queue_token, Deadline::secs(30)),
    )
    .await
    .expect("the new place is admitted once the window before it closes");
}
