//! Live updates: `GET /v1/queue/events` (server-sent events) over real HTTP.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use concert_tests::{Api, TestStack};
use serde_json::{json, Value};

use crate::support::buyer;

/// A server-sent event stream read over HTTP, event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(
        api: &Api,
        query_token: Option<&str>,
        header_token: Option<&str>,
    ) -> reqwest::Response {
        let mut url = format!("{}/v1/queue/events", api.base);
        if let Some(token) = query_token {
            url = format!("{url}?queue_token={token}");
        }
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = header_token {
            request = request.header("X-Queue-Token", token);
        }
        request.send().await.expect("opening the event stream")
    }

    async fn start(api: &Api, query_token: Option<&str>, header_token: Option<&str>) -> Self {
        let response = Self::open(api, query_token, header_token).await;
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next `status` event's JSON, `None` when the stream ended; panics after `within`.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.as_deref() == Some("status") {
                    return Some(serde_json::from_str(&data).expect("status JSON"));
                }
                continue; // a comment or another event
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("reading the stream");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// Events until one with `status`; panics if the stream ends first.
    async fn until(&mut self, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let event = self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await
                .unwrap_or_else(|| panic!("the stream ended before {status}"));
            if event["status"] == status {
                return event;
            }
        }
    }
}

fn policy(max: i64, active_seconds: i64) -> Value {
    json!({ "max_active_users": max, "active_seconds": active_seconds, "hold_seconds": 60 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_the_status_at_once_pushes_admission_and_ends_after_completed() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 4)).await;
    let (_, first_token) = buyer(api, "first", &concert, 0).await;
    let user = api.sign_up("ada").await;
    api.charge(&user, 10_000).await;
    let joined = api.join(&user, concert.concert_id).await;

    // Token in the query, as a browser's EventSource sends it.
    let opened = Instant::now();
    let mut stream = EventStream::start(api, Some(&joined.queue_token), None).await;
    let first = stream.next(Duration::from_secs(2)).await.expect("an event");
    assert!(
        opened.elapsed() < Duration::from_secs(2),
        "the status comes at once"
    );
    assert_eq!(
        (first["status"].as_str(), first["position"].as_i64()),
        (Some("WAITING"), Some(1)),
        "{first}"
    );
    assert_eq!(
        first,
        api.queue_status(&joined.queue_token)
            .await
            .expect(200)
            .clone()
            .tap_eta(&first)
    );

    // The first place's window ends after 4 s: the admission is pushed.
    let active = stream.until("ACTIVE", Duration::from_secs(20)).await;
    let received = Utc::now();
    let seq = stack.env.queue_seq(&joined.queue_token);
    let admitted: DateTime<Utc> = sqlx::query_scalar(
        "SELECT admitted_at FROM admissions WHERE concert_id = $1 AND $2 BETWEEN from_seq AND upto_seq",
    )
    .bind(concert.concert_id)
    .bind(seq)
    .fetch_one(stack.db())
    .await
    .expect("the admission step");
    let push = (received - admitted).num_milliseconds();
    assert!(
        push < 1_500,
        "admission pushed {push} ms after the step (the contract: within 1 s, plus test slack)"
    );
    assert!(active["active_until"].is_string(), "{active}");

    // The stream claimed the place: it outlives claim_seconds? (covered in claims); here, pay and see
    // COMPLETED, after which the stream ends.
    let hold = api
        .hold_ok(&user, &joined.queue_token, concert.date(), 1)
        .await;
    api.pay(
        &user,
        &joined.queue_token,
        hold["hold_id"].as_str().unwrap(),
    )
    .await
    .expect_success();
    let completed = stream.until("COMPLETED", Duration::from_secs(5)).await;
    assert_eq!(completed["status"], "COMPLETED");
    assert!(
        stream.next(Duration::from_secs(5)).await.is_none(),
        "the stream ends after COMPLETED"
    );

    // The first place's stream (token in the header) shows the window's end and ends.
    let mut ended = EventStream::start(api, None, Some(&first_token)).await;
    let event = ended.next(Duration::from_secs(2)).await.expect("an event");
    assert_eq!(
        (event["status"].as_str(), event["reason"].as_str()),
        (Some("EXPIRED"), Some("WINDOW_ENDED")),
        "{event}"
    );
    assert!(
        ended.next(Duration::from_secs(5)).await.is_none(),
        "ends after EXPIRED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_stream_claims_the_place() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let body = json!({ "max_active_users": 1, "active_seconds": 600, "hold_seconds": 60, "claim_seconds": 5 });
    api.set_policy(concert.concert_id, &body).await;
    let users = api.sign_up_many("fan", 2).await;
    let joined = api.join(&users[0], concert.concert_id).await;
    let next = api.join(&users[1], concert.concert_id).await;
    let mut stream = EventStream::start(api, None, Some(&joined.queue_token)).await;
    stream.until("ACTIVE", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let status = api
        .queue_status(&joined.queue_token)
        .await
        .expect(200)
        .clone();
    assert_eq!(
        status["status"], "ACTIVE",
        "the stream claimed the place, so it outlives claim_seconds: {status}"
    );
    let waiting = api
        .queue_status(&next.queue_token)
        .await
        .expect(200)
        .clone();
    assert_eq!(waiting["status"], "WAITING", "{waiting}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_good_token_is_refused() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let resp = api.get("/v1/queue/events").send().await;
    resp.expect_problem(401, "QUEUE_TOKEN_INVALID");
    let resp = api
        .get("/v1/queue/events?queue_token=forged.token")
        .send()
        .await;
    resp.expect_problem(401, "QUEUE_TOKEN_INVALID");
}

/// The stream's first event and a poll agree apart from the estimate, which moves with time.
trait TapEta {
    fn tap_eta(self, like: &Value) -> Value;
}

impl TapEta for Value {
    fn tap_eta(mut self, like: &Value) -> Value {
        if let (Some(obj), Some(eta)) = (self.as_object_mut(), like.get("eta_seconds")) {
            obj.insert("eta_seconds".into(), eta.clone());
        }
        self
    }
}

/// One queue token holds at most 3 streams: a fourth closes the oldest, the others stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_stream_of_one_token_closes_the_oldest() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 600)).await;
    let (first_user, user) = (api.sign_up("first").await, api.sign_up("ada").await);
    // Someone ahead keeps the room full, so the streams below sit WAITING and only time moves them.
    api.join(&first_user, concert.concert_id).await;
    let joined = api.join(&user, concert.concert_id).await;
    let token = joined.queue_token.as_str();

    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = EventStream::start(api, Some(token), None).await;
        stream
            .next(Duration::from_secs(5))
            .await
            .expect("the first event");
        streams.push(stream);
    }
    let mut fourth = EventStream::start(api, None, Some(token)).await;
    fourth
        .next(Duration::from_secs(5))
        .await
        .expect("the first event");
    // It may have had one more status on its way (the place moves in line); then it ends.
    let mut ended = false;
    for _ in 0..3 {
        if streams[0].next(Duration::from_secs(5)).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the oldest stream was closed");
    for stream in streams.iter_mut().skip(1) {
        // Open: no end of stream within half a second (an event, or nothing, is fine).
        let ended = tokio::time::timeout(
            Duration::from_millis(500),
            stream.next(Duration::from_secs(30)),
        )
        .await
        .is_ok_and(|event| event.is_none());
        assert!(!ended, "the newer streams stay open");
    }
}

/// An instance holds at most `API_MAX_STREAMS` streams: beyond, 503 `UNAVAILABLE` with `Retry-After`, and
/// a slot is free again once a stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_refuses_streams_beyond_its_limit() {
    let stack = TestStack::builder()
        .apis(1)
        .workers(1)
        .configure_apis(|config| config.limits.max_streams = 2)
        .start()
        .await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let users = api.sign_up_many("fan", 3).await;
    let mut tokens = Vec::new();
    for user in &users {
        tokens.push(api.join(user, concert.concert_id).await.queue_token);
    }
    let first = EventStream::start(api, Some(&tokens[0]), None).await;
    let _second = EventStream::start(api, Some(&tokens[1]), None).await;
    let refused = EventStream::open(api, Some(&tokens[2]), None).await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(
        refused.headers().contains_key("retry-after"),
        "a 503 says when to try again"
    );
    let body: Value = refused.json().await.expect("a problem document");
    assert_eq!(body["code"], "UNAVAILABLE");

    // The server notices a closed stream when it next writes to it, at the latest with the 10 s resend.
    drop(first);
    let mut reopened = None;
    for _ in 0..150 {
        let response = EventStream::open(api, Some(&tokens[2]), None).await;
        if response.status().as_u16() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a slot is free once a stream ended");
}
