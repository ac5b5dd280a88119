//! Seat maps answer an `ETag`: a repeat with `If-None-Match` of an unchanged map is 304 with no body, and a
//! change shows in the map and its tag within a second (each instance re-reads a map at most every half
//! second).

use std::time::{Duration, Instant};

use concert_tests::TestStack;

use crate::support::buyer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_seat_map_is_304_and_a_hold_changes_its_tag_within_a_second() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let (fan, token) = buyer(api, "etag-fan", &concert, 10_000).await;
    let date = concert.date();
    let path = format!("/v1/concerts/{}/dates/{date}/seats", concert.concert_id);

    let first = api.get(&path).auth(&fan).queue(&token).send().await;
    first.expect(200);
    let tag = first
        .header("etag")
        .expect("a seat map has an ETag")
        .to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );

    let again = api
        .get(&path)
        .auth(&fan)
        .queue(&token)
        .header("if-none-match", &tag)
        .send()
        .await;
    assert_eq!(again.status, 304, "unchanged: {:?}", again.json);
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    assert!(again.text.is_empty(), "304 has no body");

    let other = api
        .get(&path)
        .auth(&fan)
        .queue(&token)
        .header("if-none-match", "\"not-this-one\"")
        .send()
        .await;
    assert_eq!(other.status, 200, "another tag gets the map");

    // A hold changes the map: within a second the same If-None-Match gets the new map and a new tag.
    api.hold_ok(&fan, &token, date, 7).await;
    let held_at = Instant::now();
    let changed = loop {
        let resp = api
            .get(&path)
            .auth(&fan)
            .queue(&token)
            .header("if-none-match", &tag)
            .send()
            .await;
        if resp.status == 200 {
            break resp;
        }
        assert_eq!(resp.status, 304);
        assert!(
            held_at.elapsed() < Duration::from_secs(1),
            "the hold did not show in the map within a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seat = changed.json["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .find(|s| s["seat_no"] == 7)
        .expect("seat 7")
        .clone();
    assert_eq!(seat["status"], "HELD");
    assert_ne!(
        changed.header("etag"),
        Some(tag.as_str()),
        "a new map, a new tag"
    );

    // Gates still apply before any cached map: no queue token, no map.
    api.get(&path)
        .auth(&fan)
        .send()
        .await
        .expect_problem(401, "QUEUE_TOKEN_INVALID");
}
