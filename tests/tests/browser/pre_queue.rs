//! A fair start in the browser (issue 20): before the opening the fan sees a countdown (`queue-opens-at`, the
//! time left) and no position; at the opening the page shows the drawn place by itself. A room asking for a
//! proof of work is joined through the page, which solves it in a Web Worker.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use concert_tests::{wait_until, Deadline};
use serde_json::json;

use crate::{hook, join, sign_up, Rig, PHONE};

fn policy(opens_in: chrono::Duration) -> serde_json::Value {
    let opens_at = (Utc::now() + opens_in).to_rfc3339_opts(SecondsFormat::Millis, true);
    json!({ "admit_per_interval": 1, "interval_seconds": 3600, "active_seconds": 600,
            "hold_seconds": 120, "opens_at": opens_at })
}

/// "m:ss".
fn is_time_left(text: &str) -> bool {
    text.split_once(':').is_some_and(|(m, s)| {
        !m.is_empty()
            && m.chars().all(|c| c.is_ascii_digit())
            && s.len() == 2
            && s.chars().all(|c| c.is_ascii_digit())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_turns_into_a_drawn_position_without_a_reload() {
    let rig = Rig::start().await;
    let api = rig.api();
    let concert = api.create_concert(1, 1_000).await;
    let id = concert.concert_id;
    api.set_policy(id, &policy(chrono::Duration::hours(1)))
        .await;
    // Three fans ahead of the page in the pre-queue (the draw decides who is first).
    for name in ["a", "b", "c"] {
        let user = api.sign_up(name).await;
        api.join(&user, id).await;
    }

    let fan = rig.fan(PHONE).await;
    sign_up(&fan, "Grace").await;
    join(&fan, id).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "WAITING")
        .await;
    let (_, left) = fan
        .wait_for_text(&hook("queue-opens-at"), |t| {
            t.starts_with("59:") || t.starts_with("60:")
        })
        .await;
    assert!(is_time_left(&left), "{left}");

    // The opening is brought forward to a few seconds from now: the page follows without a reload.
    api.set_policy(id, &policy(chrono::Duration::seconds(4)))
        .await;
    fan.wait_for_text(&hook("queue-opens-at"), |t| {
        is_time_left(t) && t.starts_with("0:0")
    })
    .await;
    // At the opening: a drawn position or the first turn, and the countdown is gone. Status and position
    // are read together: a pre-queued place is WAITING too, with no position, until the page learns of the
    // draw.
    let drawn = wait_until(
        "a drawn position (or the first turn) on the page",
        Deadline::secs(20),
        Duration::from_millis(200),
        || async {
            let texts = fan
                .script(
                    r#"const text = (h) => (document.querySelector(`[data-test="${h}"]`)?.textContent ?? "").trim();
                       return [text("queue-status"), text("queue-position")];"#,
                )
                .await;
            let status = texts[0].as_str()?.to_owned();
            let position = texts[1].as_str()?.to_owned();
            let drawn = position.parse::<i64>().is_ok_and(|p| (1..=3).contains(&p));
            (status == "ACTIVE" || (status == "WAITING" && drawn)).then_some((status, position))
        },
    )
    .await;
    println!("after the opening the page shows {drawn:?}");
    let shown = fan
        .script(r#"return !document.getElementById("opens-row").hidden"#)
        .await;
    assert_eq!(
        shown,
        json!(false),
        "the countdown is gone after the opening"
    );
    fan.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_solves_the_rooms_proof_of_work_to_join() {
    let rig = Rig::start().await;
    let api = rig.api();
    let concert = api.create_concert(1, 1_000).await;
    api.set_policy(
        concert.concert_id,
        &json!({ "max_active_users": 10, "active_seconds": 600, "hold_seconds": 120, "join_proof_bits": 12 }),
    )
    .await;
    let fan = rig.fan(PHONE).await;
    sign_up(&fan, "Ada").await;
    join(&fan, concert.concert_id).await;
    fan.wait_for_text(&hook("queue-status"), |t| t == "ACTIVE")
        .await;
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM queue_proofs_used WHERE concert_id = $1")
            .bind(concert.concert_id)
            .fetch_one(rig.stack.db())
            .await
            .unwrap();
    assert_eq!(used, 1, "the join came with a solved challenge");
    assert!(fan.error_codes().await.is_empty());
    fan.close().await;
}
