//! "Your tickets" (v3): each ticket shows its state, and one that can still be cancelled has a Cancel button
//! that asks once more before it cancels; the refund shows in the wallet. A ticket past its cutoff has none.

use serde_json::json;

use crate::{
    date_option, hook, join, page_user, screenshot_path, seat, sign_up, top_up, Rig, LAPTOP,
};

fn ticket(reservation_id: &str) -> String {
    format!(
        r#"{}[data-reservation-id="{reservation_id}"]"#,
        hook("reservation")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_cancels_a_ticket_and_gets_the_money_back() {
    let rig = Rig::start().await;
    let api = rig.api();
    let price = 20_000;
    let concert = api.create_concert(1, price).await;
    // Another concert whose tickets can no longer be cancelled: its date is 30 days away, the cutoff 32.
    let too_late = api.create_concert(1, price).await;
    api.set_policy(
        too_late.concert_id,
        &json!({ "max_active_users": 100, "active_seconds": 600, "hold_seconds": 300, "cancel_cutoff_hours": 32 * 24 }),
    )
    .await;
    let fan = rig.fan(LAPTOP).await;
    sign_up(&fan, "Ada").await;
    top_up(&fan, 2 * price, 2 * price).await;
    let user = page_user(&fan).await;
    let token = api.enter(&user, too_late.concert_id).await;
    let hold = api.hold_ok(&user, &token, too_late.date(), 1).await;
    let kept = api
        .pay(&user, &token, hold["hold_id"].as_str().expect("hold_id"))
        .await
        .expect_success();

    // Buys seat 7 of the other concert by clicking.
    join(&fan, concert.concert_id).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "ACTIVE")
        .await;
    fan.click(&date_option(concert.date())).await;
    fan.wait_for_attr(&seat(7), "data-status", |s| s == "AVAILABLE")
        .await;
    fan.click(&seat(7)).await;
    fan.click(&hook("hold-button")).await;
    fan.wait_for_attr(&seat(7), "data-status", |s| s == "MINE")
        .await;
    fan.click(&hook("pay-button")).await;
    fan.wait_for_text(&hook("balance"), |t| t == "0").await;
    let reservations = api.reservations(&user).await;
    let bought = reservations
        .iter()
        .find(|r| r["concert_id"] == json!(concert.concert_id))
        .expect("the ticket bought by clicking");
    let bought = bought["reservation_id"].as_str().expect("reservation_id");
    let kept = kept["reservation_id"].as_str().expect("reservation_id");

    fan.wait_for_attr(&ticket(bought), "data-status", |s| s == "CONFIRMED")
        .await;
    fan.wait_for_attr(&ticket(kept), "data-status", |s| s == "CONFIRMED")
        .await;
    assert!(
        fan.find_all(&format!("{} {}", ticket(kept), hook("cancel-button")))
            .await
            .is_empty(),
        "past its cutoff a ticket has no cancel button"
    );

    fan.click(&format!("{} {}", ticket(bought), hook("cancel-button")))
        .await;
    fan.click(&format!("{} {}", ticket(bought), hook("confirm-button")))
        .await;
    fan.wait_for_attr(&ticket(bought), "data-status", |s| s == "CANCELED")
        .await;
    let refunded = price.to_string();
    fan.wait_for_text(&hook("balance"), |t| t == refunded).await;
    fan.wait_for_attr(&seat(7), "data-status", |s| s == "AVAILABLE")
        .await;
    assert!(
        fan.find_all(&format!("{} {}", ticket(bought), hook("cancel-button")))
            .await
            .is_empty(),
        "a cancelled ticket has no cancel button"
    );
    fan.screenshot(&screenshot_path("10-ticket-cancelled"), true)
        .await;
    assert_eq!(api.balance(&user).await, price);
    fan.close().await;
}
