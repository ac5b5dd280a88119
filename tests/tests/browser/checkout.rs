//! Several seats in one checkout through the fans' app (v3): a fan holds three seats of a date one by one,
//! and the pay button pays for all three at once: one payment, three tickets.

use serde_json::json;

use crate::{
    date_option, hook, join, page_user, screenshot_path, seat, sign_up, top_up, Rig, LAPTOP,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_pays_for_three_held_seats_with_one_click() {
    let rig = Rig::start().await;
    let api = rig.api();
    let price = 20_000;
    let concert = api.create_concert(1, price).await;
    let date_id = concert.date();
    let fan = rig.fan(LAPTOP).await;
    sign_up(&fan, "Ada").await;
    top_up(&fan, 100_000, 100_000).await;
    join(&fan, concert.concert_id).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "ACTIVE")
        .await;
    fan.click(&date_option(date_id)).await;
    for n in [4, 5, 6] {
        fan.wait_for_attr(&seat(n), "data-status", |s| s == "AVAILABLE")
            .await;
        fan.click(&seat(n)).await;
        fan.click(&hook("hold-button")).await;
        fan.wait_for_attr(&seat(n), "data-status", |s| s == "MINE")
            .await;
    }
    fan.wait_for_text(&hook("pay-button"), |t| t.contains('3'))
        .await;
    fan.screenshot(&screenshot_path("8-three-seats-held"), true)
        .await;

    fan.click(&hook("pay-button")).await;
    for n in [4, 5, 6] {
        fan.wait_for(&format!(r#"{}[data-seat-no="{n}"]"#, hook("reservation")))
            .await;
    }
    let left = (100_000 - 3 * price).to_string();
    fan.wait_for_text(&hook("balance"), |t| t == left).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "COMPLETED")
        .await;
    fan.screenshot(&screenshot_path("9-three-tickets"), true)
        .await;

    // One checkout: one payment of the sum, three reservations.
    let user = page_user(&fan).await;
    assert_eq!(api.reservations(&user).await.len(), 3);
    let history = api.history(&user, 10).await;
    let payments: Vec<_> = history.iter().filter(|e| e["kind"] == "PAYMENT").collect();
    assert_eq!(payments.len(), 1, "{history:?}");
    assert_eq!(payments[0]["amount"], json!(3 * price));
    fan.close().await;
}
