//! A small HTTP client written against `docs/API.md`: raw calls for asserting the contract, and helpers for
//! the common steps (sign up, charge, create a concert, get admitted, hold, pay, release).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::wait::{wait_until, Deadline};

/// How long helpers wait for a command's outcome or an admission before failing the test.
pub const OUTCOME_DEADLINE: Duration = Duration::from_secs(60);

/// A signed-up user.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: Uuid,
    pub access_token: String,
    pub name: String,
}

/// A concert made through the admin api.
#[derive(Debug, Clone)]
pub struct Concert {
    pub concert_id: Uuid,
    pub dates: Vec<ConcertDate>,
}

#[derive(Debug, Clone)]
pub struct ConcertDate {
    pub date_id: Uuid,
    pub price: i64,
    pub total_seats: i64,
}

impl Concert {
    pub fn date(&self) -> Uuid {
        self.dates[0].date_id
    }

    pub fn price(&self) -> i64 {
        self.dates[0].price
    }
}

/// A place in a waiting room, as the join answered it.
#[derive(Debug, Clone)]
pub struct Joined {
    /// 201 when the join was placed within the wait, 202 when it had to be polled.
    pub http_status: u16,
    pub queue_token: String,
    pub status: String,
    pub position: Option<i64>,
    pub request_id: Option<String>,
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON, `Null` when it is not JSON.
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {}: {}",
            self.status, self.text
        );
        &self.json
    }

    /// Asserts a problem document (RFC 9457) with this status and `code`, and returns it.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            (self.status, self.json["code"].as_str().unwrap_or("<none>")),
            (status, code),
            "expected {status} {code}, got: {}",
            self.text
        );
        assert_problem_shape(self.content_type(), &self.json, status);
        &self.json
    }

    /// Asserts a 4xx problem document, whatever the code. Used by the bad-input table.
    #[track_caller]
    pub fn expect_client_error(&self) -> &Value {
        assert!(
            (400..500).contains(&self.status),
            "expected a 4xx, got {}: {}",
            self.status,
            self.text
        );
        assert_problem_shape(self.content_type(), &self.json, self.status);
        &self.json
    }
}

#[track_caller]
fn assert_problem_shape(content_type: &str, problem: &Value, status: u16) {
    assert!(
        content_type.starts_with("application/problem+json"),
        "problem content type, got {content_type:?}: {problem}"
    );
    for field in ["type", "title", "detail", "code"] {
        assert!(
            problem[field].is_string(),
            "problem field {field} is a string: {problem}"
        );
    }
    assert_eq!(
        problem["status"],
        json!(status),
        "problem status matches HTTP status: {problem}"
    );
    let code = problem["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
        "UPPER_SNAKE_CASE code: {code}"
    );
}

/// How a command ended, however it was answered (directly with `Prefer: wait`, or by polling).
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded {
        request_id: Option<String>,
        result: Value,
    },
    Failed {
        request_id: Option<String>,
        status: u16,
        problem: Value,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded { .. })
    }

    /// The failure's `code`, `None` on success.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Succeeded { .. } => None,
            Self::Failed { problem, .. } => problem["code"].as_str(),
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Succeeded { request_id, .. } | Self::Failed { request_id, .. } => {
                request_id.as_deref()
            }
        }
    }

    #[track_caller]
    pub fn expect_success(self) -> Value {
        match self {
            Self::Succeeded { result, .. } => result,
            Self::Failed {
                status, problem, ..
            } => panic!("expected success, got {status}: {problem}"),
        }
    }

    #[track_caller]
    pub fn expect_failure(&self, status: u16, code: &str) -> &Value {
        match self {
            Self::Succeeded { result, .. } => {
                panic!("expected {status} {code}, got success: {result}")
            }
            Self::Failed {
                status: got,
                problem,
                ..
            } => {
                assert_eq!(
                    (*got, problem["code"].as_str().unwrap_or("<none>")),
                    (status, code),
                    "problem: {problem}"
                );
                problem
            }
        }
    }
}

/// One request being built.
pub struct Call {
    builder: reqwest::RequestBuilder,
}

impl Call {
    /// `Authorization: Bearer <user's access token>`.
    pub fn auth(self, user: &User) -> Self {
        self.bearer(&user.access_token)
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header(AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// `X-Queue-Token`.
    pub fn queue(self, token: &str) -> Self {
        self.header("x-queue-token", token)
    }

    /// `Prefer: wait=N`.
    pub fn wait(self, secs: u32) -> Self {
        self.header("prefer", &format!("wait={secs}"))
    }

    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("idempotency-key", key)
    }

    /// Any header; values that are not valid header values are sent as raw bytes.
    pub fn header(self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = HeaderValue::from_bytes(value.as_bytes()).expect("header value");
        Self {
            builder: self.builder.header(name, value),
        }
    }

    pub fn json(self, body: &Value) -> Self {
        Self {
            builder: self.builder.json(body),
        }
    }

    /// A body sent as is, with this content type.
    pub fn raw(self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        Self {
            builder: self.builder.header(CONTENT_TYPE, content_type).body(body),
        }
    }

    pub async fn send(self) -> Resp {
        self.try_send().await.expect("the api answers")
    }

    /// Sends it; a connection refused or reset, or a timeout, is an `Err` rather than a failed test (for
    /// tests that kill an instance while clients talk to it).
    pub async fn try_send(self) -> Result<Resp, reqwest::Error> {
        let response = self.builder.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            headers,
            text,
            json,
        })
    }
}

/// A client of one api instance.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub admin_token: String,
}

impl Api {
    pub fn new(base: String, admin_token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(45))
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        Self {
            http,
            base,
            admin_token: admin_token.to_owned(),
        }
    }

    pub fn call(&self, method: Method, path: &str) -> Call {
        Call {
            builder: self.http.request(method, format!("{}{path}", self.base)),
        }
    }

    pub fn get(&self, path: &str) -> Call {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call {
        self.call(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Call {
        self.call(Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> Call {
        self.call(Method::DELETE, path)
    }

    /// A call with the admin bearer token.
    pub fn admin(&self, method: Method, path: &str) -> Call {
        self.call(method, path).bearer(&self.admin_token)
    }

    /// POSTs a JSON body of `size` bytes over a raw connection, reading the answer while still writing: a
    /// server may refuse an oversized body early and close, which breaks an ordinary client's pipe.
    pub async fn post_oversized(&self, path: &str, size: usize) -> Resp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self.base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connecting to the api");
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
        );
        let writing = tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                writer.write_all(&chunk[..n]).await?;
                left -= n;
            }
            std::io::Result::Ok(())
        });
        let mut raw = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut raw)).await;
        writing.abort();
        read.expect("the api answers an oversized body within 30 s")
            .expect("reading the answer");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let mut headers = HeaderMap::new();
        for line in head.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.trim().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                ) {
                    headers.append(n, v);
                }
            }
        }
        Resp {
            status,
            headers,
            text: body.to_owned(),
            json: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    // ---- users and balance ----

    pub async fn sign_up(&self, name: &str) -> User {
        let resp = self
            .post("/v1/users")
            .json(&json!({ "name": name }))
            .send()
            .await;
        let body = resp.expect(201);
        User {
            user_id: body["user_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("user_id is a UUID"),
            access_token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            name: name.to_owned(),
        }
    }

    /// `n` users, signed up a few at a time.
    pub async fn sign_up_many(&self, prefix: &str, n: usize) -> Vec<User> {
        use futures::StreamExt;
        futures::stream::iter(0..n)
            .map(|i| async move { self.sign_up(&format!("{prefix}-{i}")).await })
            .buffered(16)
            .collect()
            .await
    }

    pub async fn balance(&self, user: &User) -> i64 {
        let resp = self.get("/v1/me/balance").auth(user).send().await;
        resp.expect(200)["balance"]
            .as_i64()
            .expect("balance is an integer")
    }

    /// Charges `amount` and returns the new balance.
    pub async fn charge(&self, user: &User, amount: i64) -> i64 {
        let resp = self
            .post("/v1/me/balance/charges")
            .auth(user)
            .json(&json!({ "amount": amount }))
            .send()
            .await;
        resp.expect(200)["balance"]
            .as_i64()
            .expect("balance is an integer")
    }

    /// Every history entry, newest first, following `next_cursor` with pages of `limit`.
    pub async fn history(&self, user: &User, limit: u32) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let path = match &cursor {
                None => format!("/v1/me/balance/history?limit={limit}"),
                Some(c) => format!("/v1/me/balance/history?limit={limit}&cursor={c}"),
            };
            let resp = self.get(&path).auth(user).send().await;
            let body = resp.expect(200);
            let page = body["entries"].as_array().expect("entries").clone();
            assert!(
                page.len() <= limit as usize,
                "a page holds at most `limit` entries"
            );
            entries.extend(page);
            match body.get("next_cursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => return entries,
            }
        }
        panic!("history paging does not end");
    }

    pub async fn reservations(&self, user: &User) -> Vec<Value> {
        let resp = self.get("/v1/me/reservations").auth(user).send().await;
        resp.expect(200)["reservations"]
            .as_array()
            .expect("reservations")
            .clone()
    }

    // ---- admin ----

    /// A concert with `dates` dates of 50 seats, each seat at `price`, starting in the future.
    pub async fn create_concert(&self, dates: usize, price: i64) -> Concert {
        let dates: Vec<Value> = (0..dates)
            .map(|i| json!({ "starts_at": future_date(i), "price": price }))
            .collect();
        self.create_concert_with(
            &json!({ "title": "Test concert", "venue": "Test hall", "dates": dates }),
        )
        .await
    }

    pub async fn create_concert_with(&self, body: &Value) -> Concert {
        let resp = self
            .admin(Method::POST, "/v1/admin/concerts")
            .json(body)
            .send()
            .await;
        let body = resp.expect(201);
        let concert_id = body["concert_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("concert_id");
        let dates = body["dates"]
            .as_array()
            .expect("dates")
            .iter()
            .map(|d| ConcertDate {
                date_id: d["date_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("date_id"),
                price: d["price"].as_i64().expect("price"),
                total_seats: d["total_seats"].as_i64().expect("total_seats"),
            })
            .collect();
        Concert { concert_id, dates }
    }

    /// `PUT .../waiting-room`, expecting success.
    pub async fn set_policy(&self, concert_id: Uuid, policy: &Value) {
        let resp = self.put_policy(concert_id, policy).await;
        assert!(
            resp.status == 200 || resp.status == 204,
            "setting the policy: {} {}",
            resp.status,
            resp.text
        );
    }

    pub async fn put_policy(&self, concert_id: Uuid, policy: &Value) -> Resp {
        self.admin(
            Method::PUT,
            &format!("/v1/admin/concerts/{concert_id}/waiting-room"),
        )
        .json(policy)
        .send()
        .await
    }

    pub async fn room(&self, concert_id: Uuid) -> Value {
        let resp = self
            .admin(
                Method::GET,
                &format!("/v1/admin/concerts/{concert_id}/waiting-room"),
            )
            .send()
            .await;
        resp.expect(200).clone()
    }

    // ---- waiting room ----

    /// `POST /v1/concerts/{id}/queue`, raw.
    pub async fn join_raw(&self, user: &User, concert_id: Uuid) -> Resp {
        self.post(&format!("/v1/concerts/{concert_id}/queue"))
            .auth(user)
            .send()
            .await
    }

    /// Joins and returns the place, polling the request if the join answered 202.
    pub async fn join(&self, user: &User, concert_id: Uuid) -> Joined {
        let resp = self.join_raw(user, concert_id).await;
        match resp.status {
            201 => Joined {
                http_status: 201,
                queue_token: resp.json["queue_token"]
                    .as_str()
                    .expect("queue_token")
                    .to_owned(),
                status: resp.json["status"].as_str().expect("status").to_owned(),
                position: resp.json["position"].as_i64(),
                request_id: resp.json["request_id"].as_str().map(str::to_owned),
            },
            202 => {
                let request_id = resp.json["request_id"]
                    .as_str()
                    .expect("request_id")
                    .to_owned();
                let result = self.await_request(user, &request_id).await.expect_success();
                Joined {
                    http_status: 202,
                    queue_token: result["queue_token"]
                        .as_str()
                        .expect("queue_token in JOIN result")
                        .to_owned(),
                    status: result["status"].as_str().unwrap_or_default().to_owned(),
                    position: result["position"].as_i64(),
                    request_id: Some(request_id),
                }
            }
            _ => panic!("joining: {} {}", resp.status, resp.text),
        }
    }

    pub async fn queue_status(&self, queue_token: &str) -> Resp {
        self.get("/v1/queue/status").queue(queue_token).send().await
    }

    /// Polls the status until ACTIVE; panics on EXPIRED or COMPLETED or at the deadline.
    pub async fn wait_until_active(&self, queue_token: &str, deadline: Deadline) -> Value {
        self.wait_for_status(queue_token, "ACTIVE", deadline).await
    }

    /// Polls the status until it is `wanted`.
    pub async fn wait_for_status(
        &self,
        queue_token: &str,
        wanted: &str,
        deadline: Deadline,
    ) -> Value {
        wait_until(
            &format!("queue status {wanted}"),
            deadline,
            Duration::from_millis(100),
            || async {
                let resp = self.queue_status(queue_token).await;
                let body = resp.expect(200);
                let status = body["status"].as_str().unwrap_or_default();
                if status == wanted {
                    return Some(body.clone());
                }
                let terminal = ["EXPIRED", "COMPLETED"];
                assert!(
                    !terminal.contains(&status) || wanted == "EXPIRED",
                    "place ended as {status} while waiting for {wanted}"
                );
                None
            },
        )
        .await
    }

    /// Joins and waits to be admitted; returns the ACTIVE queue token.
    pub async fn enter(&self, user: &User, concert_id: Uuid) -> String {
        let joined = self.join(user, concert_id).await;
        self.wait_until_active(&joined.queue_token, Deadline::after(OUTCOME_DEADLINE))
            .await;
        joined.queue_token
    }

    // ---- catalog ----

    pub async fn dates_raw(
        &self,
        user: &User,
        queue_token: Option<&str>,
        concert_id: Uuid,
    ) -> Resp {
        let call = self
            .get(&format!("/v1/concerts/{concert_id}/dates"))
            .auth(user);
        match queue_token {
            Some(t) => call.queue(t),
            None => call,
        }
        .send()
        .await
    }

    pub async fn seats_raw(
        &self,
        user: &User,
        queue_token: Option<&str>,
        concert_id: Uuid,
        date_id: Uuid,
    ) -> Resp {
        let call = self
            .get(&format!("/v1/concerts/{concert_id}/dates/{date_id}/seats"))
            .auth(user);
        match queue_token {
            Some(t) => call.queue(t),
            None => call,
        }
        .send()
        .await
    }

    /// The seats of a date, in the order the api gives them.
    pub async fn seats(
        &self,
        user: &User,
        queue_token: &str,
        concert_id: Uuid,
        date_id: Uuid,
    ) -> Vec<Value> {
        let resp = self
            .seats_raw(user, Some(queue_token), concert_id, date_id)
            .await;
        resp.expect(200)["seats"].as_array().expect("seats").clone()
    }

    /// The status of one seat: AVAILABLE, HELD or SOLD.
    pub async fn seat_status(
        &self,
        user: &User,
        queue_token: &str,
        concert_id: Uuid,
        date_id: Uuid,
        seat_no: i64,
    ) -> String {
        let seats = self.seats(user, queue_token, concert_id, date_id).await;
        let seat = seats
            .iter()
            .find(|s| s["seat_no"] == json!(seat_no))
            .expect("seat is listed");
        seat["status"].as_str().expect("status").to_owned()
    }

    // ---- commands ----

    /// `POST /v1/holds` with `Prefer: wait=10`, raw.
    pub async fn hold_raw(
        &self,
        user: &User,
        queue_token: &str,
        date_id: Uuid,
        seat_no: i64,
    ) -> Resp {
        self.post("/v1/holds")
            .auth(user)
            .queue(queue_token)
            .wait(10)
            .json(&json!({ "date_id": date_id, "seat_no": seat_no }))
            .send()
            .await
    }

    pub async fn hold(
        &self,
        user: &User,
        queue_token: &str,
        date_id: Uuid,
        seat_no: i64,
    ) -> Outcome {
        let resp = self.hold_raw(user, queue_token, date_id, seat_no).await;
        self.settle(user, resp).await
    }

    /// Holds a seat and returns the hold's `result`, failing the test otherwise.
    pub async fn hold_ok(
        &self,
        user: &User,
        queue_token: &str,
        date_id: Uuid,
        seat_no: i64,
    ) -> Value {
        self.hold(user, queue_token, date_id, seat_no)
            .await
            .expect_success()
    }

    pub async fn pay_raw(&self, user: &User, queue_token: &str, hold_id: &str) -> Resp {
        self.post("/v1/payments")
            .auth(user)
            .queue(queue_token)
            .wait(10)
            .json(&json!({ "hold_id": hold_id }))
            .send()
            .await
    }

    pub async fn pay(&self, user: &User, queue_token: &str, hold_id: &str) -> Outcome {
        let resp = self.pay_raw(user, queue_token, hold_id).await;
        self.settle(user, resp).await
    }

    /// `POST /v1/payments` with any body (a checkout of `{"hold_ids": [...]}`, or a malformed one).
    pub async fn checkout_raw(&self, user: &User, queue_token: &str, body: &Value) -> Resp {
        self.post("/v1/payments")
            .auth(user)
            .queue(queue_token)
            .wait(10)
            .json(body)
            .send()
            .await
    }

    /// A checkout of these holds, all paid or none.
    pub async fn checkout(&self, user: &User, queue_token: &str, hold_ids: &[&str]) -> Outcome {
        let resp = self
            .checkout_raw(user, queue_token, &json!({ "hold_ids": hold_ids }))
            .await;
        self.settle(user, resp).await
    }

    pub async fn release_raw(&self, user: &User, queue_token: &str, hold_id: &str) -> Resp {
        self.delete(&format!("/v1/holds/{hold_id}"))
            .auth(user)
            .queue(queue_token)
            .wait(10)
            .send()
            .await
    }

    pub async fn release(&self, user: &User, queue_token: &str, hold_id: &str) -> Outcome {
        let resp = self.release_raw(user, queue_token, hold_id).await;
        self.settle(user, resp).await
    }

    // ---- cancellations ----

    /// `DELETE /v1/reservations/{id}` with `Prefer: wait=10`, raw.
    pub async fn cancel_raw(&self, user: &User, reservation_id: &str) -> Resp {
        self.delete(&format!("/v1/reservations/{reservation_id}"))
            .auth(user)
            .wait(10)
            .send()
            .await
    }

    /// Cancels a reservation, however the answer comes (directly, or by polling).
    pub async fn cancel(&self, user: &User, reservation_id: &str) -> Outcome {
        let resp = self.cancel_raw(user, reservation_id).await;
        self.settle(user, resp).await
    }

    /// `POST /v1/admin/dates/{id}/cancel` with the admin token (and the call's default wait), raw.
    pub async fn cancel_date_raw(&self, date_id: Uuid) -> Resp {
        self.admin(Method::POST, &format!("/v1/admin/dates/{date_id}/cancel"))
            .send()
            .await
    }

    /// `GET /v1/admin/concerts/{id}/sales`, expecting 200.
    pub async fn sales(&self, concert_id: Uuid) -> Value {
        let resp = self
            .admin(
                Method::GET,
                &format!("/v1/admin/concerts/{concert_id}/sales"),
            )
            .send()
            .await;
        resp.expect(200).clone()
    }

    /// `GET /v1/requests/{id}`, raw, optionally with `Prefer: wait=N`.
    pub async fn request_raw(&self, user: &User, request_id: &str, wait: Option<u32>) -> Resp {
        let call = self.get(&format!("/v1/requests/{request_id}")).auth(user);
        match wait {
            Some(secs) => call.wait(secs),
            None => call,
        }
        .send()
        .await
    }

    /// Polls a request until it is final.
    pub async fn await_request(&self, user: &User, request_id: &str) -> Outcome {
        let deadline = Deadline::after(OUTCOME_DEADLINE);
        loop {
            let resp = self.request_raw(user, request_id, Some(5)).await;
            if let Some(outcome) = final_outcome(&resp) {
                return outcome;
            }
            assert!(
                !deadline.passed(),
                "request {request_id} still pending: {}",
                resp.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Turns a submit's answer into the command's outcome, polling when it is still pending.
    pub async fn settle(&self, user: &User, resp: Resp) -> Outcome {
        if let Some(outcome) = final_outcome(&resp) {
            return outcome;
        }
        assert_eq!(
            resp.status, 202,
            "a submit answers an outcome or 202: {}",
            resp.text
        );
        let request_id = resp.json["request_id"]
            .as_str()
            .expect("request_id on 202")
            .to_owned();
        self.await_request(user, &request_id).await
    }
}

/// The outcome a response carries, `None` while it is pending. Accepts every shape the contract allows: a
/// 200 request document (SUCCEEDED, or FAILED with `error`) and a problem document with its own status.
pub fn final_outcome(resp: &Resp) -> Option<Outcome> {
    let body = &resp.json;
    let request_id = body["request_id"].as_str().map(str::to_owned);
    match resp.status {
        202 => None,
        200 | 201 => match body["status"].as_str() {
            Some("SUCCEEDED") => Some(Outcome::Succeeded {
                request_id,
                result: body["result"].clone(),
            }),
            Some("FAILED") => {
                let problem = body["error"].clone();
                let status = problem["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0);
                Some(Outcome::Failed {
                    request_id,
                    status,
                    problem,
                })
            }
            Some("PENDING") => None,
            _ => panic!(
                "a request document has a status: {} {}",
                resp.status, resp.text
            ),
        },
        status if status >= 400 => {
            assert!(
                body["code"].is_string(),
                "a failure is a problem document: {status} {}",
                resp.text
            );
            Some(Outcome::Failed {
                request_id,
                status,
                problem: body.clone(),
            })
        }
        status => panic!("unexpected answer {status}: {}", resp.text),
    }
}

/// An RFC 3339 time `days + 30` days from now, at 19:00 UTC.
pub fn future_date(days: usize) -> String {
    let day = chrono::Utc::now().date_naive() + chrono::Days::new(30 + days as u64);
    format!("{day}T19:00:00Z")
}
