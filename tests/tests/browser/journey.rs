//! A whole purchase through the fans' app on a phone-sized screen: sign up, a refused top-up, top up, join,
//! admitted, pick a date and a seat, hold it, a payment refused for want of money, top up, pay, the ticket.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::{
    date_option, hook, join, page_user, screenshot_path, seat, sign_up, top_up, Rig, PHONE,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_buys_a_seat_by_clicking() {
    let rig = Rig::start().await;
    let api = rig.api();
    let price = 30_000;
    let concert = api
        .create_concert_with(&json!({
            "title": "Seoul Philharmonic: New Year Gala",
            "venue": "Lotte Concert Hall",
            "dates": [
                { "starts_at": Utc::now() + Duration::days(30), "price": price },
                { "starts_at": Utc::now() + Duration::days(31), "price": price },
            ],
        }))
        .await;
    let date_id = concert.dates[1].date_id;
    let fan = rig.fan(PHONE).await;
    fan.screenshot(&screenshot_path("1-sign-up"), false).await;

    sign_up(&fan, "Ada").await;
    // A top-up of nothing is refused, in plain words with the problem's code.
    fan.type_into(&hook("charge-amount"), "0").await;
    fan.click(&hook("charge-button")).await;
    fan.wait_for_attr(&hook("error"), "data-code", |c| c == "INVALID_AMOUNT")
        .await;
    top_up(&fan, 10_000, 10_000).await;
    fan.wait_for(&format!(
        r#"{}[data-concert-id="{}"]"#,
        hook("concert-card"),
        concert.concert_id
    ))
    .await;
    fan.screenshot(&screenshot_path("2-concerts"), true).await;

    join(&fan, concert.concert_id).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "ACTIVE")
        .await;
    fan.click(&date_option(date_id)).await;
    fan.wait_for_attr(&seat(7), "data-status", |s| s == "AVAILABLE")
        .await;
    assert_eq!(
        fan.find_all(&hook("seat")).await.len(),
        concert.dates[1].total_seats as usize,
        "one seat element per seat of the date"
    );
    fan.click(&seat(7)).await;
    fan.click(&hook("hold-button")).await;
    fan.wait_for_attr(&seat(7), "data-status", |s| s == "MINE")
        .await;
    let (_, left) = fan
        .wait_for_text(&hook("hold-countdown"), |t| t.contains(':') && t != "0:00")
        .await;
    assert!(
        left.starts_with('4') || left.starts_with('5'),
        "a fresh hold of 300 s shows {left}"
    );
    fan.screenshot(&screenshot_path("4-seat-map-and-hold"), true)
        .await;

    // Not enough money: the payment is refused and the hold stays.
    fan.click(&hook("pay-button")).await;
    fan.wait_for_attr(&hook("error"), "data-code", |c| c == "INSUFFICIENT_BALANCE")
        .await;
    fan.screenshot(&screenshot_path("5-problem-shown"), false)
        .await;
    top_up(&fan, 50_000, 60_000).await;
    fan.click(&hook("pay-button")).await;
    fan.wait_for(&format!(r#"{}[data-seat-no="7"]"#, hook("reservation")))
        .await;
    fan.wait_for_text(&hook("balance"), |t| t == (60_000 - price).to_string())
        .await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "COMPLETED")
        .await;
    fan.screenshot(&screenshot_path("6-ticket"), true).await;

    // What the page showed is what the service recorded.
    let user = page_user(&fan).await;
    let reservations = api.reservations(&user).await;
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0]["seat_no"], 7);
    assert_eq!(reservations[0]["date_id"], date_id.to_string());
    assert_eq!(api.balance(&user).await, 60_000 - price);
    fan.close().await;
}
