//! A fair start (issue 20): joins before `opens_at` wait without a position, at the opening they get
//! positions in the order of one recorded draw (the same through every api instance), later joins follow
//! in join order, and nobody is admitted before the opening, with several tickers racing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use concert_core::admission::Draw;
use concert_tests::{Api, TestStack, User};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::time;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One admission per hour: at the opening line 1 is admitted and every other place has a position.
fn one_per_hour(opens_at: Option<DateTime<Utc>>) -> Value {
    let mut policy = json!({
        "admit_per_interval": 1, "interval_seconds": 3600, "active_seconds": 600, "hold_seconds": 300
    });
    if let Some(at) = opens_at {
        policy["opens_at"] = json!(rfc3339(at));
    }
    policy
}

async fn seq_of(db: &PgPool, concert: Uuid, user: &User) -> i64 {
    sqlx::query_scalar("SELECT seq FROM queue_entries WHERE concert_id = $1 AND user_id = $2")
        .bind(concert)
        .bind(user.user_id)
        .fetch_one(db)
        .await
        .unwrap()
}

async fn recorded_draw(db: &PgPool, concert: Uuid) -> Option<Draw> {
    let (seed, places): (Option<Vec<u8>>, Option<i64>) =
        sqlx::query_as("SELECT draw_seed, draw_places FROM waiting_rooms WHERE concert_id = $1")
            .bind(concert)
            .fetch_one(db)
            .await
            .unwrap();
    Draw::from_parts(&seed?, places?)
}

/// The status of each token through one api instance: (status, position).
async fn statuses(api: &Api, tokens: &[String]) -> Vec<(String, Option<i64>)> {
    let mut out = Vec::new();
    for token in tokens {
        let resp = api.queue_status(token).await;
        let body = resp.expect(200);
        out.push((
            body["status"].as_str().unwrap_or_default().to_owned(),
            body["position"].as_i64(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_queue_is_drawn_at_the_opening_the_same_through_every_instance() {
    const EARLY: usize = 24;
    let stack = TestStack::builder().apis(2).workers(2).start().await;
    let apis = stack.apis();
    let db = stack.db();
    let concert = apis[0].create_concert(1, 1000).await;
    let id = concert.concert_id;
    let opens_at = Utc::now() + chrono::Duration::seconds(6);
    apis[0].set_policy(id, &one_per_hour(Some(opens_at))).await;
    let room = apis[1].room(id).await;
    assert_eq!(time(&room["opens_at"]), opens_at.trunc_subsecs_ms());
    assert!(room.get("draw").is_none(), "{room}");

    let users = apis[0].sign_up_many("early", EARLY).await;
    let joins = futures::future::join_all(
        users
            .iter()
            .enumerate()
            .map(|(i, u)| apis[i % 2].join_raw(u, id)),
    )
    .await;
    let mut tokens = Vec::new();
    for resp in &joins {
        let body = resp.expect(201);
        assert_eq!(body["status"], "WAITING", "{body}");
        assert!(
            body.get("position").is_none(),
            "no position before the opening: {body}"
        );
        assert_eq!(
            time(&body["opens_at"]),
            opens_at.trunc_subsecs_ms(),
            "{body}"
        );
        tokens.push(body["queue_token"].as_str().unwrap().to_owned());
    }
    // Through either instance: WAITING with opens_at, no position, and a Retry-After never past opens_at + 1 s.
    for (i, token) in tokens.iter().enumerate() {
        let resp = apis[i % 2].queue_status(token).await;
        let body = resp.expect(200).clone();
        assert_eq!(body["status"], "WAITING", "{body}");
        assert!(body.get("position").is_none(), "{body}");
        assert_eq!(
            time(&body["opens_at"]),
            opens_at.trunc_subsecs_ms(),
            "{body}"
        );
        let retry: i64 = resp.header("retry-after").unwrap().parse().unwrap();
        let latest = opens_at + chrono::Duration::seconds(1);
        assert!(
            Utc::now() + chrono::Duration::seconds(retry)
                <= latest + chrono::Duration::milliseconds(50),
            "Retry-After {retry} points past the opening"
        );
    }
    let room = apis[0].room(id).await;
    assert_eq!(room["pre_queued"], EARLY, "{room}");

    // A repeated join before the opening keeps its place and needs nothing more.
    let again = apis[1].join_raw(&users[0], id).await;
    assert_eq!(again.expect(201)["queue_token"], json!(tokens[0]));

    // Nobody is admitted and nothing drawn before the opening.
    while Utc::now() < opens_at - chrono::Duration::milliseconds(300) {
        let admitted: i64 =
            sqlx::query_scalar("SELECT admitted_upto FROM waiting_rooms WHERE concert_id = $1")
                .bind(id)
                .fetch_one(db)
                .await
                .unwrap();
        assert_eq!(admitted, 0, "admitted before the opening");
        assert!(
            recorded_draw(db, id).await.is_none(),
            "drawn before the opening"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // At the opening every place has a position (or is the one admitted), the same through both instances.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (first, second) = loop {
        let first = statuses(&apis[0], &tokens).await;
        let second = statuses(&apis[1], &tokens).await;
        let all_placed =
            |s: &[(String, Option<i64>)]| s.iter().all(|(st, p)| st == "ACTIVE" || p.is_some());
        if all_placed(&first) && all_placed(&second) {
            break (first, second);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no positions after the opening: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first, second, "both instances tell the same order");
    let active: Vec<usize> = (0..EARLY).filter(|&i| first[i].0 == "ACTIVE").collect();
    assert_eq!(active.len(), 1, "one admitted at the opening: {first:?}");
    let positions: HashSet<i64> = first.iter().filter_map(|(_, p)| *p).collect();
    assert_eq!(
        positions,
        (1..EARLY as i64).collect::<HashSet<_>>(),
        "distinct positions 1..N-1 behind the admitted one"
    );

    // The positions are the recorded draw's order, which is not the join order.
    let draw = recorded_draw(db, id).await.expect("a recorded draw");
    assert_eq!(draw.places, EARLY as i64);
    let order = draw.order();
    let mut by_line = HashMap::new();
    for (i, user) in users.iter().enumerate() {
        let seq = seq_of(db, id, user).await;
        let line = order.line(seq);
        let expected = if line == 1 {
            ("ACTIVE".to_owned(), None)
        } else {
            ("WAITING".to_owned(), Some(line - 1))
        };
        assert_eq!(first[i], expected, "seq {seq}");
        by_line.insert(line, seq);
    }
    assert_ne!(
        (1..=EARLY as i64).map(|l| by_line[&l]).collect::<Vec<_>>(),
        (1..=EARLY as i64).collect::<Vec<_>>(),
        "shuffled"
    );
    let admitted_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT min(admitted_at) FROM admissions WHERE concert_id = $1")
            .bind(id)
            .fetch_one(db)
            .await
            .unwrap();
    assert!(
        admitted_at >= opens_at.trunc_subsecs_ms(),
        "admitted at {admitted_at}, opens at {opens_at}"
    );

    let room = apis[1].room(id).await;
    assert_eq!(room["pre_queued"], 0, "{room}");
    assert_eq!(room["draw"]["places"], EARLY, "{room}");
    assert!(time(&room["draw"]["drawn_at"]) >= opens_at.trunc_subsecs_ms());
    assert!(
        room["draw"]["method"]
            .as_str()
            .unwrap_or_default()
            .contains("sha256"),
        "{room}"
    );

    // Later joins follow in join order.
    let late = apis[0].sign_up_many("late", 3).await;
    for (k, user) in late.iter().enumerate() {
        let joined = apis[k % 2].join(user, id).await;
        let status = apis[(k + 1) % 2].queue_status(&joined.queue_token).await;
        assert_eq!(
            status.expect(200)["position"],
            json!(EARLY + k),
            "the {k}th late joiner queues behind the draw"
        );
    }
    // And the order never changes.
    assert_eq!(statuses(&apis[1], &tokens).await, first);

    // opens_at cannot move once the room opened; the same value, or none, is fine.
    let moved = apis[0]
        .put_policy(
            id,
            &one_per_hour(Some(opens_at + chrono::Duration::hours(1))),
        )
        .await;
    moved.expect_problem(422, "VALIDATION_FAILED");
    let removed = apis[0]
        .put_policy(
            id,
            &json!({"admit_per_interval": 1, "interval_seconds": 3600,
            "active_seconds": 600, "hold_seconds": 300, "opens_at": null}),
        )
        .await;
    removed.expect_problem(422, "VALIDATION_FAILED");
    apis[0].set_policy(id, &one_per_hour(Some(opens_at))).await;
    apis[0].set_policy(id, &one_per_hour(None)).await;
    assert_eq!(
        time(&apis[0].room(id).await["opens_at"]),
        opens_at.trunc_subsecs_ms()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_at_can_be_moved_or_removed_before_the_opening_and_the_stream_pushes_the_position() {
    let stack = TestStack::start_with(1, 1).await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let id = concert.concert_id;
    let far = Utc::now() + chrono::Duration::hours(2);
    api.set_policy(id, &one_per_hour(Some(far))).await;
    let later = far + chrono::Duration::hours(1);
    api.set_policy(id, &one_per_hour(Some(later))).await;
    assert_eq!(
        time(&api.room(id).await["opens_at"]),
        later.trunc_subsecs_ms()
    );
    // Omitted keeps it.
    api.set_policy(id, &one_per_hour(None)).await;
    assert_eq!(
        time(&api.room(id).await["opens_at"]),
        later.trunc_subsecs_ms()
    );
    // Bad values are refused.
    api.put_policy(
        id,
        &json!({"max_active_users": 1, "active_seconds": 60, "hold_seconds": 60,
            "opens_at": "tomorrow"}),
    )
    .await
    .expect_problem(400, "VALIDATION_FAILED");

    let users = api.sign_up_many("fan", 3).await;
    let mut tokens = Vec::new();
    for user in &users {
        tokens.push(api.join(user, id).await.queue_token);
    }
    // The event stream shows the countdown, then pushes the position at the opening.
    let url = format!("{}/v1/queue/events?queue_token={}", api.base, tokens[2]);
    let mut body = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(body.status().as_u16(), 200);
    let mut seen = String::new();
    let first_event = read_event(&mut body, &mut seen).await;
    assert!(first_event.get("position").is_none(), "{first_event}");
    assert_eq!(time(&first_event["opens_at"]), later.trunc_subsecs_ms());

    // Removing opens_at opens the room now: the three are drawn.
    api.set_policy(
        id,
        &json!({"admit_per_interval": 1, "interval_seconds": 3600, "active_seconds": 600,
            "hold_seconds": 300, "opens_at": null}),
    )
    .await;
    let pushed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = read_event(&mut body, &mut seen).await;
            if event.get("position").is_some() || event["status"] == "ACTIVE" {
                return event;
            }
        }
    })
    .await
    .expect("the stream pushes a position after the draw");
    assert!(pushed.get("opens_at").is_none(), "{pushed}");
    let draw = recorded_draw(stack.db(), id).await.expect("drawn");
    assert_eq!(draw.places, 3);
    // Once drawn, opens_at cannot be set again.
    api.put_policy(id, &one_per_hour(Some(far)))
        .await
        .expect_problem(422, "VALIDATION_FAILED");
}

/// The next `status` event's JSON from a server-sent event stream.
async fn read_event(body: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                return serde_json::from_str(data.trim()).expect("event JSON");
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(15), body.chunk())
            .await
            .expect("an event within 15 s")
            .expect("reading the stream")
            .expect("the stream is open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// With several tickers (three workers) racing at the opening, the draw is made once and each line
/// admitted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tickers_open_a_room_once() {
    let stack = TestStack::builder().apis(1).workers(3).start().await;
    let api = stack.api();
    let db = stack.db();
    let concert = api.create_concert(1, 1000).await;
    let id = concert.concert_id;
    let opens_at = Utc::now() + chrono::Duration::seconds(3);
    api.set_policy(
        id,
        &json!({"max_active_users": 5, "active_seconds": 600, "hold_seconds": 300,
            "opens_at": rfc3339(opens_at)}),
    )
    .await;
    let users = api.sign_up_many("racer", 12).await;
    for user in &users {
        api.join(user, id).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let admitted: i64 =
            sqlx::query_scalar("SELECT admitted_upto FROM waiting_rooms WHERE concert_id = $1")
                .bind(id)
                .fetch_one(db)
                .await
                .unwrap();
        if Utc::now() < opens_at {
            assert_eq!(admitted, 0, "admitted before the opening");
        } else if admitted == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not admitted after the opening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steps: Vec<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT from_seq, upto_seq, admitted_at FROM admissions WHERE concert_id = $1 ORDER BY from_seq",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .unwrap();
    let covered: Vec<i64> = steps.iter().flat_map(|(f, u, _)| *f..=*u).collect();
    assert_eq!(
        covered,
        (1..=5).collect::<Vec<_>>(),
        "each line once: {steps:?}"
    );
    assert!(steps.iter().all(|s| s.2 >= opens_at.trunc_subsecs_ms()));
    let order = recorded_draw(db, id).await.expect("drawn once").order();
    let numbered: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT seq, line_no FROM queue_entries WHERE concert_id = $1 AND line_no IS NOT NULL ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(numbered.len(), 5);
    for (seq, line) in numbered {
        assert_eq!(order.line(seq), line);
    }
}

trait TruncMs {
    fn trunc_subsecs_ms(self) -> Self;
}

impl TruncMs for DateTime<Utc> {
    fn trunc_subsecs_ms(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 3)
    }
}
