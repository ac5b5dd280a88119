//! Holding and releasing seats.

use concert_tests::TestStack;
use serde_json::json;
use uuid::Uuid;

use crate::support::{buyer, count, time, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_then_release() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 33_000).await;
    let (ada, ada_token) = buyer(api, "ada", &concert, 0).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 0).await;

    let before = chrono::Utc::now();
    let resp = api.hold_raw(&ada, &ada_token, concert.date(), 7).await;
    let doc = resp.expect(200).clone();
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("HOLD"), Some("SUCCEEDED")),
        "{doc}"
    );
    assert!(doc["request_id"].is_string());
    let hold = &doc["result"];
    let hold_id = uuid(&hold["hold_id"]);
    assert_eq!(uuid(&hold["date_id"]), concert.date());
    assert_eq!(
        (hold["seat_no"].as_i64(), hold["price"].as_i64()),
        (Some(7), Some(33_000))
    );
    let expires = time(&hold["expires_at"]);
    let hold_seconds = chrono::Duration::seconds(300);
    assert!(
        expires > before + hold_seconds - chrono::Duration::seconds(5),
        "held for hold_seconds (300 by default): {hold}"
    );
    assert!(
        expires <= chrono::Utc::now() + hold_seconds + chrono::Duration::seconds(1),
        "{hold}"
    );

    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, concert.date(), 7)
            .await,
        "HELD"
    );
    api.hold(&bob, &bob_token, concert.date(), 7)
        .await
        .expect_failure(409, "SEAT_UNAVAILABLE");
    api.release(&bob, &bob_token, &hold_id.to_string())
        .await
        .expect_failure(404, "HOLD_NOT_FOUND");

    let resp = api
        .release_raw(&ada, &ada_token, &hold_id.to_string())
        .await;
    let doc = resp.expect(200).clone();
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("RELEASE"), Some("SUCCEEDED")),
        "{doc}"
    );
    let released = &doc["result"];
    assert_eq!(uuid(&released["hold_id"]), hold_id);
    assert_eq!(uuid(&released["date_id"]), concert.date());
    assert_eq!(released["seat_no"], json!(7));
    time(&released["released_at"]);
    assert_eq!(
        api.seat_status(&bob, &bob_token, concert.concert_id, concert.date(), 7)
            .await,
        "AVAILABLE"
    );

    api.release(&ada, &ada_token, &hold_id.to_string())
        .await
        .expect_failure(404, "HOLD_NOT_FOUND");
    api.pay(&ada, &ada_token, &hold_id.to_string())
        .await
        .expect_failure(404, "HOLD_NOT_FOUND");
    let taken = api.hold_ok(&bob, &bob_token, concert.date(), 7).await;
    assert_ne!(uuid(&taken["hold_id"]), hold_id, "a new hold, a new id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_seats_dates_and_holds_are_not_found() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let other = api.create_concert(1, 1000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;

    api.hold(&ada, &token, concert.date(), 51)
        .await
        .expect_failure(404, "SEAT_NOT_FOUND");
    api.hold(&ada, &token, concert.date(), 1_000_000)
        .await
        .expect_failure(404, "SEAT_NOT_FOUND");
    api.hold(&ada, &token, other.date(), 1)
        .await
        .expect_failure(404, "DATE_NOT_FOUND");
    api.hold(&ada, &token, Uuid::new_v4(), 1)
        .await
        .expect_failure(404, "DATE_NOT_FOUND");
    let unknown = Uuid::new_v4().to_string();
    api.release_raw(&ada, &token, &unknown)
        .await
        .expect_problem(404, "HOLD_NOT_FOUND");
    api.pay_raw(&ada, &token, &unknown)
        .await
        .expect_problem(404, "HOLD_NOT_FOUND");
    assert_eq!(
        count(stack.db(), "SELECT count(*) FROM holds", None).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_live_holds_per_user_and_date() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(2, 1000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;
    let mut holds = Vec::new();
    for seat in 1..=4 {
        holds.push(api.hold_ok(&ada, &token, concert.date(), seat).await);
    }
    api.hold(&ada, &token, concert.date(), 5)
        .await
        .expect_failure(409, "HOLD_LIMIT_REACHED");
    api.hold_ok(&ada, &token, concert.dates[1].date_id, 5).await;

    let first = holds[0]["hold_id"].as_str().expect("hold_id");
    api.release(&ada, &token, first).await.expect_success();
    api.hold_ok(&ada, &token, concert.date(), 5).await;
    api.hold(&ada, &token, concert.date(), 6)
        .await
        .expect_failure(409, "HOLD_LIMIT_REACHED");
    let live = count(
        stack.db(),
        "SELECT count(*) FROM holds WHERE user_id = $1 AND state = 'HELD'",
        Some(ada.user_id),
    )
    .await;
    assert_eq!(live, 5, "four on the first date, one on the second");
}
