//! The admin page: a wrong token is refused, a concert is created, its waiting-room policy is changed, and
//! the live figures follow the room.

use concert_tests::browser::Browser;
use concert_tests::Deadline;

use crate::{hook, screenshot_path, Rig, LAPTOP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_creates_a_concert_and_changes_its_policy() {
    let rig = Rig::start().await;
    let api = rig.api();
    let admin = rig.driver.browser(LAPTOP.0, LAPTOP.1).await;
    admin.goto(&rig.url("/admin/")).await;

    admin
        .type_into(&hook("admin-token"), "not-the-admin-token")
        .await;
    admin.click(&hook("admin-token-button")).await;
    admin
        .type_into(&hook("concert-title"), "Busan Rock Festival")
        .await;
    admin.type_into(&hook("concert-venue"), "Samnak Park").await;
    admin.click(&hook("create-concert-button")).await;
    admin
        .wait_for_attr(&hook("error"), "data-code", |c| c == "UNAUTHORIZED")
        .await;

    admin
        .type_into(&hook("admin-token"), concert_tests::ADMIN_TOKEN)
        .await;
    admin.click(&hook("admin-token-button")).await;
    admin.type_into(&hook("concert-seats"), "20").await;
    admin.click(&hook("create-concert-button")).await;
    let created = admin.wait_for(&hook("created-concert")).await;
    let concert_id: uuid::Uuid = admin
        .attr(&created, "data-concert-id")
        .await
        .and_then(|id| id.parse().ok())
        .expect("the page names the new concert");
    // The new concert is chosen, and its policy (the default) is shown.
    admin
        .wait_for_attr(&hook("policy-active-seconds"), "value", |v| v == "600")
        .await;

    for (field, value) in [
        ("policy-max-active", "3"),
        ("policy-admit-per-interval", "2"),
        ("policy-interval-seconds", "5"),
        ("policy-active-seconds", "300"),
        ("policy-hold-seconds", "120"),
    ] {
        admin.type_into(&hook(field), value).await;
    }
    admin.click(&hook("policy-save")).await;
    admin.wait_for(&hook("policy-saved")).await;
    let room = api.room(concert_id).await;
    assert_eq!(room["max_active_users"], 3);
    assert_eq!(room["admit_per_interval"], 2);
    assert_eq!(room["interval_seconds"], 5);
    assert_eq!(room["active_seconds"], 300);
    assert_eq!(room["hold_seconds"], 120);

    // Fans join: the figures on the page follow by themselves.
    let fans = api.sign_up_many("fan", 4).await;
    for fan in &fans {
        api.join(fan, concert_id).await;
    }
    let deadline = Deadline::secs(30);
    loop {
        let (waiting, active) = figures(&admin).await;
        if waiting + active == 4 && active >= 2 {
            assert!(active <= 3, "never more active than the policy allows");
            break;
        }
        assert!(
            !deadline.passed(),
            "figures did not reach the room's state: {waiting} waiting, {active} active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let points = admin
        .script(r#"return document.getElementById("line-waiting").getAttribute("points").split(" ").length"#)
        .await;
    assert!(
        points.as_u64().unwrap_or(0) >= 2,
        "the chart draws the readings"
    );
    admin.screenshot(&screenshot_path("8-admin"), true).await;
    admin.close().await;
}

/// The waiting and active figures the page shows now.
async fn figures(admin: &Browser) -> (i64, i64) {
    let waiting = admin.wait_for(&hook("figure-waiting")).await;
    let active = admin.wait_for(&hook("figure-active")).await;
    let waiting = admin.text(&waiting).await.parse().unwrap_or(0);
    let active = admin.text(&active).await.parse().unwrap_or(0);
    (waiting, active)
}
