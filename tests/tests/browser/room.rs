//! The waiting-room view moves by itself: a fan in line sees the place, then turns ACTIVE without touching
//! the page when the person ahead finishes.

use serde_json::json;

use concert_tests::Deadline;

use crate::{hook, join, screenshot_path, sign_up, Rig, PHONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_page_turns_active_by_itself() {
    let rig = Rig::start().await;
    let api = rig.api();
    let concert = api.create_concert(1, 1_000).await;
    api.set_policy(
        concert.concert_id,
        &json!({ "max_active_users": 1, "active_seconds": 600, "hold_seconds": 120 }),
    )
    .await;
    // Someone ahead takes the only active slot.
    let ahead = api.sign_up("ahead").await;
    api.charge(&ahead, 1_000).await;
    let ahead_token = api.enter(&ahead, concert.concert_id).await;

    let fan = rig.fan(PHONE).await;
    sign_up(&fan, "Grace").await;
    join(&fan, concert.concert_id).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "WAITING")
        .await;
    fan.wait_for_text(&hook("queue-position"), |t| t == "1")
        .await;
    let (_, eta) = fan
        .wait_for_text(&hook("queue-eta"), |t| !t.is_empty())
        .await;
    assert!(!eta.is_empty());
    fan.screenshot(&screenshot_path("3-waiting-room"), false)
        .await;

    // The person ahead buys and leaves; nobody touches the fan's page from here on.
    let hold = api
        .hold_ok(&ahead, &ahead_token, concert.dates[0].date_id, 1)
        .await;
    api.pay(
        &ahead,
        &ahead_token,
        hold["hold_id"].as_str().expect("hold_id"),
    )
    .await
    .expect_success();
    api.wait_for_status(&ahead_token, "COMPLETED", Deadline::secs(30))
        .await;

    fan.wait_for_text(&hook("queue-status"), |t| t == "ACTIVE")
        .await;
    // Admitted, the page goes on to the dates by itself.
    fan.wait_for(&hook("date-option")).await;
    fan.close().await;
}
