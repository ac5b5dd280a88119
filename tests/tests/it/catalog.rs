//! Admin endpoints, the public concert list, and the gated dates and seats.

use concert_tests::client::future_date;
use concert_tests::TestStack;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{buyer, max_active, time, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_a_concert_and_it_is_listed() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let (day1, day2) = (future_date(0), future_date(1));
    let body = json!({
        "title": "Moonlight Sonata",
        "venue": "Seoul Arts Center",
        "dates": [{ "starts_at": day1, "price": 55_000 }, { "starts_at": day2, "seats": 10, "price": 77_000 }],
    });
    let resp = api
        .admin(Method::POST, "/v1/admin/concerts")
        .json(&body)
        .send()
        .await;
    let created = resp.expect(201).clone();
    let concert_id = uuid(&created["concert_id"]);
    let dates = created["dates"].as_array().expect("dates");
    assert_eq!(dates.len(), 2);
    assert_eq!(time(&dates[0]["starts_at"]), time(&json!(day1)));
    assert_eq!(
        (dates[0]["total_seats"].as_i64(), dates[0]["price"].as_i64()),
        (Some(50), Some(55_000)),
        "seats default to 50"
    );
    assert_eq!(
        (dates[1]["total_seats"].as_i64(), dates[1]["price"].as_i64()),
        (Some(10), Some(77_000))
    );
    let date2 = uuid(&dates[1]["date_id"]);

    // Public: no authorization at all.
    let list = api.get("/v1/concerts").send().await;
    let concerts = list.expect(200)["concerts"]
        .as_array()
        .expect("concerts")
        .clone();
    let listed = concerts
        .iter()
        .find(|c| c["concert_id"] == json!(concert_id.to_string()))
        .expect("the new concert is listed");
    assert_eq!(
        (listed["title"].as_str(), listed["venue"].as_str()),
        (Some("Moonlight Sonata"), Some("Seoul Arts Center"))
    );

    // The second date has exactly ten seats.
    let concert = concert_tests::Concert {
        concert_id,
        dates: vec![],
    };
    let (user, token) = buyer(api, "ada", &concert, 0).await;
    let seats = api.seats(&user, &token, concert_id, date2).await;
    let numbers: Vec<i64> = seats
        .iter()
        .map(|s| s["seat_no"].as_i64().expect("seat_no"))
        .collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
    assert!(seats
        .iter()
        .all(|s| s["price"] == json!(77_000) && s["status"] == "AVAILABLE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_admin_token() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let user = api.sign_up("ada").await;
    let body = json!({ "title": "t", "venue": "v", "dates": [{ "starts_at": future_date(0), "price": 1 }] });
    let room = format!("/v1/admin/concerts/{}/waiting-room", concert.concert_id);
    let policy = max_active(5, 60, 60);
    for bearer in [
        None,
        Some("wrong-admin-token"),
        Some(user.access_token.as_str()),
    ] {
        let calls = [
            (Method::POST, "/v1/admin/concerts", Some(&body)),
            (Method::PUT, room.as_str(), Some(&policy)),
            (Method::GET, room.as_str(), None),
        ];
        for (method, path, body) in calls {
            let mut call = api.call(method.clone(), path);
            if let Some(b) = bearer {
                call = call.bearer(b);
            }
            if let Some(b) = body {
                call = call.json(b);
            }
            let resp = call.send().await;
            assert_eq!(
                resp.status, 401,
                "{method} {path} with {bearer:?}: {}",
                resp.text
            );
            resp.expect_problem(401, "UNAUTHORIZED");
        }
    }
    let room = api.room(concert.concert_id).await;
    assert_eq!(
        room["max_active_users"],
        json!(100),
        "refused PUTs changed nothing: {room}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_validation() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let day = future_date(0);
    let date = |extra: Value| {
        let mut d = json!({ "starts_at": day, "price": 1000 });
        d.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        d
    };
    let bad = [
        json!({ "venue": "v", "dates": [date(json!({}))] }),
        json!({ "title": "t", "dates": [date(json!({}))] }),
        json!({ "title": "t", "venue": "v" }),
        json!({ "title": "t", "venue": "v", "dates": [date(json!({ "price": -1 }))] }),
        json!({ "title": "t", "venue": "v", "dates": [date(json!({ "price": 1.5 }))] }),
        json!({ "title": "t", "venue": "v", "dates": [date(json!({ "seats": 0 }))] }),
        json!({ "title": "t", "venue": "v", "dates": [date(json!({ "seats": 10_001 }))] }),
        json!({ "title": "t", "venue": "v", "dates": [date(json!({ "starts_at": "tomorrow evening" }))] }),
        json!({ "title": "t", "venue": "v", "dates": [{ "starts_at": day }] }),
        json!({ "title": 5, "venue": "v", "dates": [date(json!({}))] }),
    ];
    for body in bad {
        let resp = api
            .admin(Method::POST, "/v1/admin/concerts")
            .json(&body)
            .send()
            .await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
    let list = api.get("/v1/concerts").send().await;
    assert_eq!(
        list.expect(200)["concerts"],
        json!([]),
        "no refused concert was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_policy_reads_back_with_live_figures() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;

    let room = api.room(concert.concert_id).await;
    assert_eq!(
        room["max_active_users"],
        json!(100),
        "default policy: {room}"
    );
    assert_eq!(room["active_seconds"], json!(600));
    assert_eq!(room["hold_seconds"], json!(300));
    for figure in ["waiting", "active", "admitted_total", "joined_total"] {
        assert_eq!(room[figure], json!(0), "{figure} of a new room: {room}");
    }

    api.set_policy(concert.concert_id, &max_active(1, 600, 120))
        .await;
    let room = api.room(concert.concert_id).await;
    assert_eq!(
        (
            room["max_active_users"].as_i64(),
            room["active_seconds"].as_i64(),
            room["hold_seconds"].as_i64()
        ),
        (Some(1), Some(600), Some(120))
    );

    let users = api.sign_up_many("fan", 3).await;
    let first = api.enter(&users[0], concert.concert_id).await;
    api.join(&users[1], concert.concert_id).await;
    api.join(&users[2], concert.concert_id).await;
    api.queue_status(&first).await.expect(200);
    let room = api.room(concert.concert_id).await;
    assert_eq!(
        (
            room["waiting"].as_i64(),
            room["active"].as_i64(),
            room["admitted_total"].as_i64(),
            room["joined_total"].as_i64()
        ),
        (Some(2), Some(1), Some(1), Some(3)),
        "live figures: {room}"
    );

    let per_interval = json!({ "admit_per_interval": 5, "interval_seconds": 10, "active_seconds": 60, "hold_seconds": 60 });
    api.set_policy(concert.concert_id, &per_interval).await;
    let room = api.room(concert.concert_id).await;
    assert_eq!(
        (
            room["admit_per_interval"].as_i64(),
            room["interval_seconds"].as_i64()
        ),
        (Some(5), Some(10)),
        "{room}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_policy_validation() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let bad = [
        json!({}),
        json!({ "active_seconds": 60, "hold_seconds": 60 }),
        json!({ "admit_per_interval": 5, "active_seconds": 60, "hold_seconds": 60 }),
        json!({ "interval_seconds": 5, "max_active_users": 5, "active_seconds": 60, "hold_seconds": 60 }),
        json!({ "max_active_users": 0, "active_seconds": 60, "hold_seconds": 60 }),
        json!({ "max_active_users": 5, "active_seconds": 0, "hold_seconds": 60 }),
        json!({ "max_active_users": 5, "active_seconds": 60, "hold_seconds": 0 }),
        json!({ "max_active_users": 5, "active_seconds": 60 }),
        json!({ "max_active_users": "5", "active_seconds": 60, "hold_seconds": 60 }),
    ];
    for body in bad {
        let resp = api.put_policy(concert.concert_id, &body).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
    let unknown = Uuid::new_v4();
    api.put_policy(unknown, &max_active(5, 60, 60))
        .await
        .expect_problem(404, "CONCERT_NOT_FOUND");
    let resp = api
        .admin(
            Method::GET,
            &format!("/v1/admin/concerts/{unknown}/waiting-room"),
        )
        .send()
        .await;
    resp.expect_problem(404, "CONCERT_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_token_sees_dates_and_fifty_priced_seats() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(2, 42_000).await;
    let (user, token) = buyer(api, "ada", &concert, 0).await;

    let resp = api.dates_raw(&user, Some(&token), concert.concert_id).await;
    let dates = resp.expect(200)["dates"].as_array().expect("dates").clone();
    assert_eq!(dates.len(), 2);
    for made in &concert.dates {
        let date = dates
            .iter()
            .find(|d| d["date_id"] == json!(made.date_id.to_string()))
            .expect("every date is listed");
        time(&date["starts_at"]);
        assert_eq!(
            (
                date["available_seats"].as_i64(),
                date["total_seats"].as_i64()
            ),
            (Some(50), Some(50))
        );
    }

    let seats = api
        .seats(&user, &token, concert.concert_id, concert.date())
        .await;
    let numbers: Vec<i64> = seats
        .iter()
        .map(|s| s["seat_no"].as_i64().expect("seat_no"))
        .collect();
    assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
    assert!(
        seats
            .iter()
            .all(|s| s["price"] == json!(42_000) && s["status"] == "AVAILABLE"),
        "{seats:?}"
    );

    let unknown = api
        .seats_raw(&user, Some(&token), concert.concert_id, Uuid::new_v4())
        .await;
    unknown.expect_problem(404, "DATE_NOT_FOUND");
}
