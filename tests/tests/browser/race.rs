//! Two people in two browsers click "hold" on the same seat at once: one gets it, the other is told so with
//! the problem's code, and the database agrees.

use concert_tests::browser::Browser;

use crate::{date_option, hook, join, screenshot_path, seat, sign_up, top_up, Rig, LAPTOP};

const SEAT: i64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_race_for_one_seat() {
    let rig = Rig::start().await;
    let api = rig.api();
    let concert = api.create_concert(1, 20_000).await;
    let date_id = concert.dates[0].date_id;
    let ana = rig.fan(LAPTOP).await;
    let ben = rig.fan(LAPTOP).await;
    for (browser, name) in [(&ana, "Ana"), (&ben, "Ben")] {
        sign_up(browser, name).await;
        top_up(browser, 50_000, 50_000).await;
        join(browser, concert.concert_id).await;
        browser
            .wait_for_text(&hook("queue-status"), |t| t == "ACTIVE")
            .await;
        browser.click(&date_option(date_id)).await;
        browser
            .wait_for_attr(&seat(SEAT), "data-status", |s| s == "AVAILABLE")
            .await;
        browser.click(&seat(SEAT)).await;
    }

    let hold_button = hook("hold-button");
    tokio::join!(ana.click(&hold_button), ben.click(&hold_button));
    let (ana_won, ben_won) = tokio::join!(outcome(&ana), outcome(&ben));
    assert!(
        ana_won != ben_won,
        "exactly one of the two holds the seat (ana {ana_won}, ben {ben_won})"
    );
    let (winner, loser) = if ana_won { (&ana, &ben) } else { (&ben, &ana) };
    winner
        .wait_for_text(&hook("hold-countdown"), |t| t != "0:00")
        .await;
    loser
        .wait_for_attr(&seat(SEAT), "data-status", |s| s == "HELD")
        .await;
    loser
        .screenshot(&screenshot_path("7-race-lost"), true)
        .await;

    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM holds WHERE date_id = $1 AND seat_no = $2 AND state = 'HELD'",
    )
    .bind(date_id)
    .bind(SEAT as i32)
    .fetch_one(rig.stack.db())
    .await
    .expect("counting holds");
    assert_eq!(held, 1, "the database holds the seat once");
    ana.close().await;
    ben.close().await;
}

/// Waits until the page shows either the hold (true) or the SEAT_UNAVAILABLE problem (false).
async fn outcome(browser: &Browser) -> bool {
    let deadline = concert_tests::Deadline::secs(30);
    loop {
        let mine = browser
            .find_all(&format!(r#"{}[data-status="MINE"]"#, seat(SEAT)))
            .await;
        if !mine.is_empty() {
            return true;
        }
        let codes = browser.error_codes().await;
        if !codes.is_empty() {
            assert_eq!(
                codes,
                ["SEAT_UNAVAILABLE"],
                "the loser is told why, with the code"
            );
            return false;
        }
        assert!(!deadline.passed(), "neither a hold nor a problem shown");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
