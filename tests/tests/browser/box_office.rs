//! The admin page's box office (v3): the figures per date and for the concert follow the sales by themselves,
//! and "Cancel this date" asks once more (a visible confirm button), cancels the date with the admin token, says
//! what it did (tickets refunded, holds released) or its problem in plain words, and the figures show the refund.

use concert_tests::browser::Browser;
use serde_json::Value;
use uuid::Uuid;

use crate::{hook, screenshot_path, Rig, LAPTOP};

const PRICE: i64 = 30_000;

/// `[data-test="sales-date"][data-date-id="id"] [data-test="name"]`, or the concert's totals row's cell.
fn cell(date_id: Option<Uuid>, name: &str) -> String {
    match date_id {
        Some(id) => format!(
            r#"{}[data-date-id="{id}"] {}"#,
            hook("sales-date"),
            hook(name)
        ),
        None => format!("{} {}", hook("sales-concert"), hook(name)),
    }
}

/// Waits until the figure `sales-{name}` of a date (or of the concert) holds `value` (its `data-value`).
async fn figure(admin: &Browser, date_id: Option<Uuid>, name: &str, value: &str) {
    admin
        .wait_for_attr(
            &cell(date_id, &format!("sales-{name}")),
            "data-value",
            |v| v == value,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_the_box_office_and_cancels_a_date() {
    let rig = Rig::start().await;
    let api = rig.api();
    let admin = rig.driver.browser(LAPTOP.0, LAPTOP.1).await;
    admin.goto(&rig.url("/admin/")).await;
    admin
        .type_into(&hook("admin-token"), concert_tests::ADMIN_TOKEN)
        .await;
    admin.click(&hook("admin-token-button")).await;

    // Two dates of ten seats at 30,000 won, created through the page (which then shows that concert).
    admin
        .type_into(&hook("concert-title"), "Gwangju Jazz Nights")
        .await;
    admin
        .type_into(&hook("concert-venue"), "Culture Hall")
        .await;
    admin.type_into(&hook("concert-dates"), "2").await;
    admin.type_into(&hook("concert-seats"), "10").await;
    admin
        .type_into(&hook("concert-price"), &PRICE.to_string())
        .await;
    admin.click(&hook("create-concert-button")).await;
    let created = admin.wait_for(&hook("created-concert")).await;
    let concert_id: Uuid = admin
        .attr(&created, "data-concert-id")
        .await
        .and_then(|id| id.parse().ok())
        .expect("the page names the new concert");
    let sales = api.sales(concert_id).await;
    let mut dates: Vec<(String, Uuid)> = sales["dates"]
        .as_array()
        .expect("dates")
        .iter()
        .map(|d| {
            (
                d["starts_at"].as_str().expect("starts_at").to_owned(),
                d["date_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("date_id"),
            )
        })
        .collect();
    dates.sort();
    let (first, second) = (dates[0].1, dates[1].1);
    figure(&admin, Some(first), "available", "10").await;
    figure(&admin, None, "sold", "0").await;

    // Ada buys two seats of the first date in one checkout, Bob holds one there, Cleo buys one of the second.
    let ada = api.sign_up("ada").await;
    api.charge(&ada, 2 * PRICE).await;
    let token = api.enter(&ada, concert_id).await;
    let h1 = api.hold_ok(&ada, &token, first, 1).await;
    let h2 = api.hold_ok(&ada, &token, first, 2).await;
    api.checkout(&ada, &token, &[hold_id(&h1), hold_id(&h2)])
        .await
        .expect_success();
    let bob = api.sign_up("bob").await;
    let bob_token = api.enter(&bob, concert_id).await;
    api.hold_ok(&bob, &bob_token, first, 3).await;
    let cleo = api.sign_up("cleo").await;
    api.charge(&cleo, PRICE).await;
    let cleo_token = api.enter(&cleo, concert_id).await;
    let h = api.hold_ok(&cleo, &cleo_token, second, 1).await;
    api.pay(&cleo, &cleo_token, hold_id(&h))
        .await
        .expect_success();

    // The figures follow without a reload.
    for (name, value) in [
        ("status", "OPEN"),
        ("sold", "2"),
        ("held", "1"),
        ("available", "7"),
        ("revenue", "60000"),
        ("refunded", "0"),
    ] {
        figure(&admin, Some(first), name, value).await;
    }
    figure(&admin, Some(second), "sold", "1").await;
    for (name, value) in [
        ("sold", "3"),
        ("held", "1"),
        ("available", "16"),
        ("revenue", "90000"),
        ("refunded", "0"),
    ] {
        figure(&admin, None, name, value).await;
    }
    admin
        .wait_for_text(&cell(Some(first), "sales-revenue"), |t| t == "60,000")
        .await;
    let cancel_first = cell(Some(first), "cancel-date-button");
    let confirm_row = format!(
        r#"{}[data-confirm-for="{first}"]"#,
        hook("cancel-date-confirm")
    );
    let confirm_first = format!("{confirm_row} {}", hook("confirm-cancel-date"));

    // Asked, then kept: nothing happens.
    admin.click(&cancel_first).await;
    admin.wait_for(&confirm_first).await;
    admin
        .click(&format!("{confirm_row} {}", hook("keep-date")))
        .await;
    admin.wait_for(&cancel_first).await;
    assert!(admin.find_all(&confirm_row).await.is_empty());
    assert_eq!(status_of(&api.sales(concert_id).await, first), "OPEN");

    // With a wrong token, the problem is said in plain words and the date stays open.
    admin
        .type_into(&hook("admin-token"), "not-the-admin-token")
        .await;
    admin.click(&hook("admin-token-button")).await;
    admin.click(&cancel_first).await;
    admin.click(&confirm_first).await;
    let (_, words) = admin
        .wait_for_text(&hook("error"), |t| t.contains("admin token was refused"))
        .await;
    assert!(words.contains("UNAUTHORIZED"), "{words}");
    assert_eq!(status_of(&api.sales(concert_id).await, first), "OPEN");

    // With the right one, the date is cancelled: two tickets refunded, one hold released.
    admin
        .type_into(&hook("admin-token"), concert_tests::ADMIN_TOKEN)
        .await;
    admin.click(&hook("admin-token-button")).await;
    admin.click(&cancel_first).await;
    admin
        .screenshot(&screenshot_path("9-admin-cancel-date"), true)
        .await;
    admin.click(&confirm_first).await;
    let result = admin
        .wait_for_attr(
            &hook("cancel-date-result"),
            "data-reservations-refunded",
            |n| n == "2",
        )
        .await;
    assert_eq!(
        admin.attr(&result, "data-holds-released").await.as_deref(),
        Some("1")
    );
    let said = admin.text(&result).await;
    assert!(
        said.contains("2 ticket(s) refunded") && said.contains("1 hold(s) released"),
        "{said}"
    );
    for (name, value) in [
        ("status", "CANCELED"),
        ("sold", "0"),
        ("held", "0"),
        ("available", "10"),
        ("revenue", "0"),
        ("refunded", "60000"),
    ] {
        figure(&admin, Some(first), name, value).await;
    }
    for (name, value) in [
        ("sold", "1"),
        ("held", "0"),
        ("revenue", "30000"),
        ("refunded", "60000"),
    ] {
        figure(&admin, None, name, value).await;
    }
    assert!(
        admin.find_all(&cancel_first).await.is_empty(),
        "a cancelled date cannot be cancelled again"
    );
    assert_eq!(
        admin
            .find_all(&cell(Some(second), "cancel-date-button"))
            .await
            .len(),
        1,
        "the other date still can"
    );
    assert!(admin.error_codes().await.is_empty());
    admin
        .screenshot(&screenshot_path("10-admin-box-office"), true)
        .await;

    // The refund is real: Ada has her money back, Cleo keeps her ticket.
    assert_eq!(api.balance(&ada).await, 2 * PRICE);
    assert_eq!(api.balance(&cleo).await, 0);
    let sales = api.sales(concert_id).await;
    assert_eq!(sales["refunded"], 2 * PRICE, "{sales}");
    assert_eq!(sales["revenue"], PRICE, "{sales}");
    admin.close().await;
}

fn hold_id(hold: &Value) -> &str {
    hold["hold_id"].as_str().expect("hold_id")
}

fn status_of(sales: &Value, date_id: Uuid) -> String {
    sales["dates"]
        .as_array()
        .expect("dates")
        .iter()
        .find(|d| d["date_id"] == serde_json::json!(date_id))
        .and_then(|d| d["status"].as_str())
        .expect("the date's status")
        .to_owned()
}
