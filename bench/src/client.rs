//! A thin HTTP client for the service: every call answers an [`Outcome`], never an `Err`, so the load phases can
//! count failures by `code` instead of stopping at the first one.
//!
//! Commands (join, hold, pay, release) follow the submit-then-poll contract: the submit carries `Prefer: wait=N`;
//! a 202 is followed by one `GET /v1/requests/{id}` with the same wait, and whatever is still undecided after that
//! comes back as [`Outcome::Pending`] for the verifier to chase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// What one call (or one command, submit plus follow-up) came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx with a final answer: a command's `result`, or the body of a plain call.
    Done(Value),
    /// A problem document (or a final `FAILED` request): the HTTP status and the problem's `code`.
    Failed { status: u16, code: String },
    /// Accepted but still undecided after the wait: the request to poll later.
    Pending(Uuid),
    /// No HTTP answer at all (connection refused or reset, timeout, unreadable body).
    Transport(String),
}

/// An outcome and when its request went out (after any wait for an in-flight permit).
pub type Timed = (Outcome, Instant);

/// The pseudo-code under which an undecided command is counted.
pub const PENDING: &str = "PENDING";
/// The pseudo-code under which a call without an HTTP answer is counted.
pub const TRANSPORT: &str = "TRANSPORT";

impl Outcome {
    /// The error code to count this outcome under; `None` for success.
    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Done(_) => None,
            Outcome::Failed { code, .. } => Some(code),
            Outcome::Pending(_) => Some(PENDING),
            Outcome::Transport(_) => Some(TRANSPORT),
        }
    }

    /// The value of a successful outcome.
    pub fn done(&self) -> Option<&Value> {
        match self {
            Outcome::Done(v) => Some(v),
            _ => None,
        }
    }
}

/// Who is calling: the user's access token and, where needed, a queue token.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// `Authorization: Bearer` value.
    pub token: &'a str,
    /// `X-Queue-Token` value.
    pub queue: Option<&'a str>,
}

/// The service's HTTP API, optionally bounding how many requests are in flight at once.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Arc<str>,
    admin: Arc<str>,
    gate: Option<Arc<Semaphore>>,
}

impl Api {
    /// The api's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A client for `base` (no trailing slash needed) with the admin bearer token.
    pub fn new(base: &str, admin: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').into(),
            admin: admin.into(),
            gate: None,
        })
    }

    /// The same client with at most `n` requests in flight across all its clones.
    pub fn bounded(&self, n: usize) -> Self {
        Self {
            gate: Some(Arc::new(Semaphore::new(n.max(1)))),
            ..self.clone()
        }
    }

    /// The same client without an in-flight bound (the phase bounds itself with its worker count).
    pub fn unbounded(&self) -> Self {
        Self {
            gate: None,
            ..self.clone()
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        caller: Option<Caller<'_>>,
        wait: Option<u64>,
    ) -> RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(c) = caller {
            rb = rb.bearer_auth(c.token);
            if let Some(q) = c.queue {
                rb = rb.header("X-Queue-Token", q);
            }
        }
        if let Some(w) = wait.filter(|w| *w > 0) {
            rb = rb.header("Prefer", format!("wait={w}"));
        }
        rb
    }

    /// Sends and reads the whole answer, holding an in-flight permit meanwhile if bounded. Sets `sent` to when
    /// the request went out (after any wait for a permit), so latencies leave out the client's own queueing.
    async fn send(
        &self,
        rb: RequestBuilder,
        sent: &mut Instant,
    ) -> Result<(StatusCode, HeaderMap, Value), String> {
        let _permit = match &self.gate {
            Some(g) => Some(g.acquire().await.map_err(|e| e.to_string())?),
            None => None,
        };
        *sent = Instant::now();
        let resp = rb.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, headers, body))
    }

    /// A plain (non-command) call: 2xx is `Done(body)`, anything else `Failed`.
    async fn plain(&self, rb: RequestBuilder) -> (Outcome, HeaderMap, Instant) {
        let mut sent = Instant::now();
        match self.send(rb, &mut sent).await {
            Ok((status, headers, body)) if status.is_success() => {
                (Outcome::Done(body), headers, sent)
            }
            Ok((status, headers, body)) => (failed(status, &body), headers, sent),
            Err(e) => (Outcome::Transport(e), HeaderMap::new(), sent),
        }
    }

    /// A command: the submit, then one follow-up poll with the same wait if it came back 202; timed from
    /// when the submit went out.
    async fn command(&self, rb: RequestBuilder, caller: Caller<'_>, wait: u64) -> Timed {
        let mut sent = Instant::now();
        let first = match self.send(rb, &mut sent).await {
            Ok((status, _, body)) => decided(status, &body),
            Err(e) => return (Outcome::Transport(e), sent),
        };
        match first {
            Outcome::Pending(id) => (self.poll_request(caller, id, wait).await, sent),
            other => (other, sent),
        }
    }

    /// `POST /v1/admin/concerts`.
    pub async fn create_concert(&self, body: &Value) -> Outcome {
        let rb = self
            .http
            .post(format!("{}/v1/admin/concerts", self.base))
            .bearer_auth(&*self.admin)
            .json(body);
        self.plain(rb).await.0
    }

    /// `PUT /v1/admin/concerts/{id}/waiting-room`.
    pub async fn set_policy(&self, concert_id: &str, policy: &Value) -> Outcome {
        let url = format!("{}/v1/admin/concerts/{concert_id}/waiting-room", self.base);
        self.plain(self.http.put(url).bearer_auth(&*self.admin).json(policy))
            .await
            .0
    }

    /// `GET /v1/admin/concerts/{id}/waiting-room`: the policy and live figures.
    pub async fn waiting_room(&self, concert_id: &str) -> Outcome {
        let url = format!("{}/v1/admin/concerts/{concert_id}/waiting-room", self.base);
        self.plain(self.http.get(url).bearer_auth(&*self.admin))
            .await
            .0
    }

    /// `GET /readyz`.
    pub async fn ready(&self) -> Outcome {
        self.plain(self.http.get(format!("{}/readyz", self.base)))
            .await
            .0
    }

    /// `POST /v1/users`.
    pub async fn sign_up(&self, name: &str) -> Timed {
        let rb = self
            .request(Method::POST, "/v1/users", None, None)
            .json(&json!({ "name": name }));
        let (outcome, _, sent) = self.plain(rb).await;
        (outcome, sent)
    }

    /// `POST /v1/me/balance/charges`.
    pub async fn charge(&self, caller: Caller<'_>, amount: i64) -> Timed {
        let rb = self
            .request(Method::POST, "/v1/me/balance/charges", Some(caller), None)
            .json(&json!({ "amount": amount }));
        let (outcome, _, sent) = self.plain(rb).await;
        (outcome, sent)
    }

    /// `POST /v1/me/balance/charges` under `Idempotency-Key: key` (v3: the same key credits once).
    pub async fn charge_keyed(&self, caller: Caller<'_>, amount: i64, key: &str) -> Timed {
        let rb = self
            .request(Method::POST, "/v1/me/balance/charges", Some(caller), None)
            .header("Idempotency-Key", key)
            .json(&json!({ "amount": amount }));
        let (outcome, _, sent) = self.plain(rb).await;
        (outcome, sent)
    }

    /// `POST /v1/concerts/{id}/queue`: `Done` carries the place (`queue_token`, `status`).
    pub async fn join(&self, caller: Caller<'_>, concert_id: &str, wait: u64) -> Timed {
        let rb = self.request(
            Method::POST,
            &format!("/v1/concerts/{concert_id}/queue"),
            Some(caller),
            Some(wait),
        );
        self.command(rb, caller, wait).await
    }

    /// `GET /v1/queue/status`, with the `Retry-After` it advised (if any) and when it went out.
    pub async fn queue_status(&self, queue_token: &str) -> (Outcome, Option<Duration>, Instant) {
        let rb = self
            .request(Method::GET, "/v1/queue/status", None, None)
            .header("X-Queue-Token", queue_token);
        let (outcome, headers, sent) = self.plain(rb).await;
        let retry = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        (outcome, retry, sent)
    }

    /// `POST /v1/holds`.
    pub async fn hold(&self, caller: Caller<'_>, date_id: &str, seat_no: i32, wait: u64) -> Timed {
        let rb = self
            .request(Method::POST, "/v1/holds", Some(caller), Some(wait))
            .json(&json!({ "date_id": date_id, "seat_no": seat_no }));
        self.command(rb, caller, wait).await
    }

    /// `POST /v1/payments`.
    pub async fn pay(&self, caller: Caller<'_>, hold_id: &str, wait: u64) -> Timed {
        let rb = self
            .request(Method::POST, "/v1/payments", Some(caller), Some(wait))
            .json(&json!({ "hold_id": hold_id }));
        self.command(rb, caller, wait).await
    }

    /// `POST /v1/payments` with `hold_ids`: one checkout of several holds on one date (v3), under
    /// `Idempotency-Key: key`.
    pub async fn checkout(
        &self,
        caller: Caller<'_>,
        hold_ids: &[String],
        key: &str,
        wait: u64,
    ) -> Timed {
        let rb = self
            .request(Method::POST, "/v1/payments", Some(caller), Some(wait))
            .header("Idempotency-Key", key)
            .json(&json!({ "hold_ids": hold_ids }));
        self.command(rb, caller, wait).await
    }

    /// `DELETE /v1/reservations/{id}`: a cancellation and refund (v3).
    pub async fn cancel_reservation(
        &self,
        caller: Caller<'_>,
        reservation_id: &str,
        wait: u64,
    ) -> Timed {
        let rb = self.request(
            Method::DELETE,
            &format!("/v1/reservations/{reservation_id}"),
            Some(caller),
            Some(wait),
        );
        self.command(rb, caller, wait).await
    }

    /// `GET /v1/admin/concerts/{id}/sales`: the box office figures per date (v3).
    pub async fn sales(&self, concert_id: &str) -> Outcome {
        let url = format!("{}/v1/admin/concerts/{concert_id}/sales", self.base);
        self.plain(self.http.get(url).bearer_auth(&*self.admin))
            .await
            .0
    }

    /// `DELETE /v1/holds/{id}`.
    pub async fn release(&self, caller: Caller<'_>, hold_id: &str, wait: u64) -> Timed {
        let rb = self.request(
            Method::DELETE,
            &format!("/v1/holds/{hold_id}"),
            Some(caller),
            Some(wait),
        );
        self.command(rb, caller, wait).await
    }

    /// `GET /v1/requests/{id}` with `Prefer: wait`.
    pub async fn poll_request(&self, caller: Caller<'_>, request_id: Uuid, wait: u64) -> Outcome {
        let rb = self.request(
            Method::GET,
            &format!("/v1/requests/{request_id}"),
            Some(caller),
            Some(wait),
        );
        match self.send(rb, &mut Instant::now()).await {
            Ok((status, _, body)) => match decided(status, &body) {
                // A poll answer without an id in it still names the request we asked about.
                Outcome::Pending(id) if id.is_nil() => Outcome::Pending(request_id),
                other => other,
            },
            Err(e) => Outcome::Transport(e),
        }
    }

    /// `GET /v1/me/reservations`.
    pub async fn reservations(&self, caller: Caller<'_>) -> Outcome {
        self.plain(self.request(Method::GET, "/v1/me/reservations", Some(caller), None))
            .await
            .0
    }
}

/// A failed answer's outcome: the problem document's `code`, or `HTTP_<status>` when the body carries none.
pub fn failed(status: StatusCode, body: &Value) -> Outcome {
    let code = body
        .get("code")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP_{}", status.as_u16()), str::to_owned);
    Outcome::Failed {
        status: status.as_u16(),
        code,
    }
}

/// Reads a command's answer (submit or poll) per the contract.
pub fn decided(status: StatusCode, body: &Value) -> Outcome {
    let request_id = || {
        body.get("request_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or_default()
    };
    if status == StatusCode::ACCEPTED {
        return Outcome::Pending(request_id());
    }
    if !status.is_success() {
        return failed(status, body);
    }
    match body.get("status").and_then(Value::as_str) {
        Some("PENDING") => Outcome::Pending(request_id()),
        Some("FAILED") => {
            let error = body.get("error").cloned().unwrap_or(Value::Null);
            let problem_status = error.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
            let code = error
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("FAILED")
                .to_owned();
            Outcome::Failed {
                status: problem_status,
                code,
            }
        }
        Some("SUCCEEDED") => Outcome::Done(body.get("result").cloned().unwrap_or(Value::Null)),
        _ => Outcome::Done(body.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_command_answers() {
        let id = Uuid::now_v7();
        let pending = decided(
            StatusCode::ACCEPTED,
            &json!({ "request_id": id.to_string(), "status": "PENDING" }),
        );
        assert!(matches!(pending, Outcome::Pending(p) if p == id));
        let ok = decided(
            StatusCode::OK,
            &json!({ "status": "SUCCEEDED", "result": { "hold_id": "h" } }),
        );
        assert_eq!(ok.done().and_then(|v| v["hold_id"].as_str()), Some("h"));
        let conflict = decided(
            StatusCode::CONFLICT,
            &json!({ "code": "SEAT_UNAVAILABLE", "status": 409 }),
        );
        assert_eq!(conflict.code(), Some("SEAT_UNAVAILABLE"));
        let polled = decided(
            StatusCode::OK,
            &json!({ "status": "FAILED", "error": { "code": "HOLD_EXPIRED", "status": 410 } }),
        );
        assert!(
            matches!(polled, Outcome::Failed { status: 410, ref code } if code == "HOLD_EXPIRED")
        );
        let bare = decided(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(bare.code(), Some("HTTP_502"));
        let joined = decided(
            StatusCode::CREATED,
            &json!({ "queue_token": "q", "status": "WAITING" }),
        );
        assert_eq!(
            joined.done().and_then(|v| v["queue_token"].as_str()),
            Some("q")
        );
    }
}
