//! The crowd: concurrent clients spread over every api instance, each a user who charges, joins a waiting
//! room, holds hot and spread seats, pays, releases, and joins again after paying.
//!
//! Clients behave as the contract asks a careful client to: every command carries an `Idempotency-Key`, a
//! submit that failed without an answer (connection refused or reset, 503) is sent again with the same key
//! (to either instance), and an accepted request is polled with `Prefer: wait` on a random instance until it
//! is decided. Everything a client saw is logged for the checks: each accepted request with the outcome the
//! client got, edge refusals, errors by kind, and money charged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_core::commands::CommandKind;
use concert_core::request_id::RequestIds;
use concert_tests::client::Concert;
use concert_tests::{Api, Deadline, Resp, User};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Seats 1..=HOT_SEATS of each concert's first date are the hot seats everybody wants.
pub const HOT_SEATS: i64 = 3;
/// How long a client keeps trying to get one command accepted, and then decided. Longer than a consumer
/// group's recovery from a killed member (about 20 s on tansu), with room to spare.
const COMMAND_DEADLINE: Duration = Duration::from_secs(90);
/// `Prefer: wait` on submits and polls.
const WAIT_SECS: u32 = 5;

/// One accepted command and the outcome its client saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_id: Uuid,
    pub kind: CommandKind,
    pub user: Uuid,
    /// The api instance that accepted it.
    pub accepted_on: usize,
    /// The instance the outcome was read from.
    pub decided_on: usize,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    /// SUCCEEDED or FAILED.
    pub status: &'static str,
    /// The problem's `code` when FAILED.
    pub code: Option<String>,
    /// `result` when SUCCEEDED (for a join answered 201: the join body).
    pub result: Value,
}

/// A command whose outcome its client never saw before giving up.
#[derive(Debug, Clone)]
pub struct Undecided {
    pub request_id: Uuid,
    pub kind: CommandKind,
    pub accepted: bool,
    pub last_answer: String,
}

/// What all clients saw.
#[derive(Debug, Default)]
pub struct Log {
    pub seen: Vec<Seen>,
    pub undecided: Vec<Undecided>,
    /// Answers that refused a command before it reached the log (no request id), by "STATUS CODE".
    pub refused_at_edge: BTreeMap<String, u64>,
    /// Transport errors and 5xx answers, by where they happened ("submit 503 UNAVAILABLE", ...).
    pub errors: BTreeMap<String, u64>,
    /// Submits answered 5xx: (the request id the idempotency key names, when the submit was sent, when the
    /// answer came). If one did put its command on the log, that copy must not take effect before the
    /// client sends it again (the api refuses it).
    pub submit_failures: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)>,
    /// When each request id was submitted, every attempt: a 5xx'd command may take effect only once its
    /// client has sent it again (the retry lifts the api's refusal of it).
    pub attempts: HashMap<Uuid, Vec<DateTime<Utc>>>,
    /// Answers no client of the contract expects (e.g. a 500 INTERNAL), with context; the first few.
    pub anomalies: Vec<String>,
    pub anomaly_count: u64,
    /// Won charged with a 200 answer.
    pub charged_acked: i64,
    pub charges_acked: u64,
    /// Won of charges whose answer never came (connection lost, 5xx): they may or may not have happened.
    pub charged_unknown: i64,
    pub users: Vec<Uuid>,
}

impl Log {
    fn error(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }

    fn anomaly(&mut self, what: String) {
        self.anomaly_count += 1;
        if self.anomalies.len() < 20 {
            self.anomalies.push(what);
        }
    }
}

/// What the clients share with the conductor of the run.
pub struct Crowd {
    pub apis: Vec<Api>,
    pub concerts: Vec<Concert>,
    pub ids: RequestIds,
    pub stop: AtomicBool,
    /// Set when the run already failed (a recovery deadline passed): clients drop their command at once
    /// instead of waiting out their own deadline, so a failing run ends soon.
    pub abandon: AtomicBool,
    pub log: Mutex<Log>,
    /// Commands between submit and seen outcome: a number per command -> when it was first submitted.
    inflight: Mutex<HashMap<u64, DateTime<Utc>>>,
    /// Commands whose client gave up without an outcome.
    given_up: Mutex<HashSet<u64>>,
    next_command: AtomicU64,
    /// Per api instance: `true` while the conductor knows it is down (clients then skip it at once).
    pub down: Vec<AtomicBool>,
    pub seed: u64,
}

impl Crowd {
    pub fn new(apis: Vec<Api>, concerts: Vec<Concert>, ids: RequestIds, seed: u64) -> Arc<Self> {
        let down = apis.iter().map(|_| AtomicBool::new(false)).collect();
        Arc::new(Self {
            apis,
            concerts,
            ids,
            stop: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            log: Mutex::new(Log::default()),
            inflight: Mutex::new(HashMap::new()),
            given_up: Mutex::new(HashSet::new()),
            next_command: AtomicU64::new(0),
            down,
            seed,
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("log lock")
    }

    /// Commands in flight now, with when each was submitted.
    pub fn inflight(&self) -> Vec<(u64, DateTime<Utc>)> {
        self.inflight
            .lock()
            .expect("inflight lock")
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Which of `commands` are still in flight.
    pub fn still_inflight(&self, commands: &[u64]) -> usize {
        let inflight = self.inflight.lock().expect("inflight lock");
        commands.iter().filter(|c| inflight.contains_key(c)).count()
    }

    /// Which of `commands` ended without an outcome (their client gave up).
    pub fn given_up(&self, commands: &[u64]) -> usize {
        let given_up = self.given_up.lock().expect("given-up lock");
        commands.iter().filter(|c| given_up.contains(c)).count()
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// An instance to talk to: `preferred` unless it is known to be down, else another.
    fn pick(&self, preferred: usize) -> usize {
        let n = self.apis.len();
        (0..n)
            .map(|step| (preferred + step) % n)
            .find(|&i| !self.down[i].load(Ordering::Relaxed))
            .unwrap_or(preferred)
    }
}

/// How a command ended for its client.
enum Done {
    /// Accepted and decided: (SUCCEEDED|FAILED, code, result).
    Decided(Seen),
    /// Refused before the log (no request id): status and code.
    Refused(u16, String),
    /// A join while the user's place is live: answered 201 with that place and the request that gave it,
    /// nothing published (contract v2), so there is no new request to account for. The body.
    LivePlace(Value),
    /// Stopped trying (already logged as undecided).
    GaveUp,
}

/// One virtual user.
struct Client {
    crowd: Arc<Crowd>,
    index: usize,
    rng: StdRng,
    home: usize,
    user: User,
    concert: Concert,
    token: Option<String>,
    /// Live holds as this client believes: (hold_id, expires_at).
    holds: Vec<(String, DateTime<Utc>)>,
    commands: u64,
}

/// Runs client `index` until the crowd is told to stop; the command in flight then still finishes.
pub async fn run_client(crowd: Arc<Crowd>, index: usize) {
    let mut rng = StdRng::seed_from_u64(crowd.seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
    let home = index % crowd.apis.len();
    let Some(user) = sign_up(&crowd, home, index).await else {
        return;
    };
    crowd.log().users.push(user.user_id);
    let concert = crowd.concerts[index % crowd.concerts.len()].clone();
    let first_charge = rng.gen_range(1..=4) * concert.price();
    let mut client = Client {
        crowd,
        index,
        rng,
        home,
        user,
        concert,
        token: None,
        holds: Vec::new(),
        commands: 0,
    };
    client.charge(first_charge).await;
    while !client.crowd.stopping() {
        if client.token.is_none() {
            client.enter().await;
            continue;
        }
        client.step().await;
        let pause = client.rng.gen_range(20..120);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn sign_up(crowd: &Crowd, home: usize, index: usize) -> Option<User> {
    let deadline = Deadline::after(COMMAND_DEADLINE);
    let mut at = home;
    while !deadline.passed() {
        at = crowd.pick(at);
        let sent = crowd.apis[at]
            .post("/v1/users")
            .json(&json!({ "name": format!("fan-{index}") }))
            .try_send()
            .await;
        match sent {
            Ok(resp) if resp.status == 201 => {
                return Some(User {
                    user_id: resp.json["user_id"].as_str()?.parse().ok()?,
                    access_token: resp.json["access_token"].as_str()?.to_owned(),
                    name: format!("fan-{index}"),
                });
            }
            Ok(resp) => crowd
                .log()
                .error(format!("sign-up {} {}", resp.status, code_of(&resp))),
            Err(_) => crowd.log().error("sign-up: no answer".into()),
        }
        at += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    crowd
        .log()
        .anomaly(format!("client {index} could not sign up in time"));
    None
}

fn code_of(resp: &Resp) -> String {
    resp.json["code"].as_str().unwrap_or("-").to_owned()
}

impl Client {
    fn api(&self, at: usize) -> &Api {
        &self.crowd.apis[at]
    }

    /// Charges once; a charge is not idempotent, so an unanswered one is not retried but counted as unknown.
    async fn charge(&mut self, amount: i64) {
        let at = self.crowd.pick(self.home);
        let sent = self
            .api(at)
            .post("/v1/me/balance/charges")
            .auth(&self.user)
            .json(&json!({ "amount": amount }))
            .try_send()
            .await;
        let mut log = self.crowd.log();
        match sent {
            Ok(resp) if resp.status == 200 => {
                log.charged_acked += amount;
                log.charges_acked += 1;
            }
            Ok(resp) if resp.status >= 500 => {
                log.charged_unknown += amount;
                log.error(format!("charge {} {}", resp.status, code_of(&resp)));
            }
            Ok(resp) => log.anomaly(format!(
                "charge of {amount} refused: {} {}",
                resp.status, resp.text
            )),
            Err(_) => {
                log.charged_unknown += amount;
                log.error("charge: no answer".into());
            }
        }
    }

    /// Joins the waiting room and waits until ACTIVE; leaves `token` unset if that did not work out.
    async fn enter(&mut self) {
        let path = format!("/v1/concerts/{}/queue", self.concert.concert_id);
        let (place, fresh) = match self
            .command(CommandKind::Join, Method::POST, &path, None, false)
            .await
        {
            Done::Decided(seen) => (seen.result, true),
            Done::LivePlace(body) => (body, false),
            Done::Refused(..) | Done::GaveUp => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        };
        let Some(token) = place["queue_token"].as_str().map(str::to_owned) else {
            self.crowd
                .log()
                .anomaly(format!("JOIN decided without a queue token: {place}"));
            return;
        };
        let deadline = Deadline::after(COMMAND_DEADLINE);
        let mut at = self.home;
        while !deadline.passed() {
            at = self.crowd.pick(at);
            let sent = self
                .api(at)
                .get("/v1/queue/status")
                .queue(&token)
                .try_send()
                .await;
            match sent {
                Ok(resp) if resp.status == 200 => match resp.json["status"].as_str() {
                    Some("ACTIVE") => {
                        self.token = Some(token);
                        return;
                    }
                    Some("WAITING") => {}
                    // A place answered from an instance's memory can have ended a moment before on
                    // another instance (a payment whose reply this instance had not read yet): the
                    // client joins again. A place the log just gave out must not end unseen.
                    Some("COMPLETED" | "EXPIRED") if !fresh => return,
                    other => {
                        self.crowd.log().anomaly(format!(
                            "a fresh place became {other:?} before it was ACTIVE"
                        ));
                        return;
                    }
                },
                Ok(resp) => self.crowd.log().error(format!(
                    "queue status {} {}",
                    resp.status,
                    code_of(&resp)
                )),
                Err(_) => {
                    self.crowd.log().error("queue status: no answer".into());
                    at += 1;
                }
            }
            if self.crowd.stopping() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.crowd
            .log()
            .anomaly(format!("client {} was never admitted", self.index));
    }

    /// One action with an ACTIVE token.
    async fn step(&mut self) {
        let now = Utc::now();
        self.holds.retain(|(_, expires)| *expires > now);
        let roll: f64 = self.rng.gen();
        let can_hold = self.holds.len() < 4;
        if roll < 0.30 && can_hold {
            let seat = self.rng.gen_range(1..=HOT_SEATS);
            let date = self.concert.dates[0].date_id;
            self.hold(date, seat).await;
        } else if roll < 0.80 && !self.holds.is_empty() {
            let pick = self.rng.gen_range(0..self.holds.len());
            if roll < 0.62 {
                self.pay(pick).await;
            } else {
                self.release(pick).await;
            }
        } else if roll < 0.97 && can_hold {
            let date = &self.concert.dates[self.rng.gen_range(0..self.concert.dates.len())];
            let seat = self.rng.gen_range(HOT_SEATS + 1..=date.total_seats);
            let date_id = date.date_id;
            self.hold(date_id, seat).await;
        } else if !self.holds.is_empty() {
            let pick = self.rng.gen_range(0..self.holds.len());
            self.release(pick).await;
        } else {
            let amount = self.rng.gen_range(1..=self.concert.price());
            self.charge(amount).await;
        }
    }

    async fn hold(&mut self, date_id: Uuid, seat_no: i64) {
        let body = json!({ "date_id": date_id, "seat_no": seat_no });
        if let Done::Decided(seen) = self
            .command(
                CommandKind::Hold,
                Method::POST,
                "/v1/holds",
                Some(body),
                true,
            )
            .await
        {
            if seen.status == "SUCCEEDED" {
                let hold_id = seen.result["hold_id"].as_str().unwrap_or_default();
                let expires = seen.result["expires_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(Utc::now);
                self.holds.push((hold_id.to_owned(), expires));
            }
        }
    }

    async fn pay(&mut self, pick: usize) {
        let (hold_id, _) = self.holds.remove(pick);
        let body = json!({ "hold_id": hold_id });
        if let Done::Decided(seen) = self
            .command(
                CommandKind::Pay,
                Method::POST,
                "/v1/payments",
                Some(body),
                true,
            )
            .await
        {
            if seen.status == "SUCCEEDED" {
                // Paying completes the place: join again for the next seat.
                self.token = None;
            } else if seen.code.as_deref() == Some("INSUFFICIENT_BALANCE") && self.rng.gen_bool(0.7)
            {
                let top_up = self.rng.gen_range(1..=3) * self.concert.price();
                self.charge(top_up).await;
            }
        }
    }

    async fn release(&mut self, pick: usize) {
        let (hold_id, _) = self.holds.remove(pick);
        let path = format!("/v1/holds/{hold_id}");
        self.command(CommandKind::Release, Method::DELETE, &path, None, true)
            .await;
    }

    /// Submits a command until it is accepted, then polls until it is decided.
    async fn command(
        &mut self,
        kind: CommandKind,
        method: Method,
        path: &str,
        body: Option<Value>,
        with_token: bool,
    ) -> Done {
        self.commands += 1;
        let key = format!("c{}-{}", self.index, self.commands);
        let request_id = self
            .crowd
            .ids
            .for_idempotency_key(self.user.user_id, kind, &key);
        let number = self.crowd.next_command.fetch_add(1, Ordering::Relaxed);
        let submitted_at = Utc::now();
        self.crowd
            .inflight
            .lock()
            .expect("inflight lock")
            .insert(number, submitted_at);
        let done = self
            .submit_and_poll(kind, method, path, body, with_token, &key, request_id)
            .await;
        if matches!(done, Done::GaveUp) {
            self.crowd
                .given_up
                .lock()
                .expect("given-up lock")
                .insert(number);
        }
        self.crowd
            .inflight
            .lock()
            .expect("inflight lock")
            .remove(&number);
        let mut done = done;
        if let Done::Decided(seen) = &mut done {
            seen.submitted_at = submitted_at;
            self.crowd.log().seen.push(seen.clone());
            if seen.status == "FAILED" {
                self.forget_on_failure(seen.code.as_deref());
            }
        }
        if let Done::Refused(status, code) = &done {
            let code = code.clone();
            *self
                .crowd
                .log()
                .refused_at_edge
                .entry(format!("{} {status} {code}", kind.as_str()))
                .or_default() += 1;
            self.forget_on_failure(Some(&code));
        }
        done
    }

    fn forget_on_failure(&mut self, code: Option<&str>) {
        if matches!(
            code,
            Some("QUEUE_TOKEN_EXPIRED" | "QUEUE_TOKEN_INVALID" | "QUEUE_NOT_ADMITTED")
        ) {
            self.token = None;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn submit_and_poll(
        &mut self,
        kind: CommandKind,
        method: Method,
        path: &str,
        body: Option<Value>,
        with_token: bool,
        key: &str,
        expected_id: Uuid,
    ) -> Done {
        let deadline = Deadline::after(COMMAND_DEADLINE);
        let mut at = self.home;
        let mut last = String::from("nothing yet");
        // Half the submits wait for the outcome; the others take the 202 and poll a moment later, as a
        // plain polling client does, so there are always accepted requests waiting to be polled.
        let wait_on_submit = self.rng.gen_bool(0.5);
        // Submit (again, with the same key) until an instance accepts or decides it.
        let accepted_on = loop {
            if deadline.passed() || self.crowd.abandon.load(Ordering::Relaxed) {
                return self.give_up(expected_id, kind, false, last);
            }
            at = self.crowd.pick(at);
            let mut call = self
                .api(at)
                .call(method.clone(), path)
                .auth(&self.user)
                .idempotency_key(key);
            if wait_on_submit {
                call = call.wait(WAIT_SECS);
            }
            if with_token {
                call = call.queue(self.token.as_deref().unwrap_or_default());
            }
            if let Some(body) = &body {
                call = call.json(body);
            }
            let sent_at = Utc::now();
            self.crowd
                .log()
                .attempts
                .entry(expected_id)
                .or_default()
                .push(sent_at);
            let resp = match call.try_send().await {
                Ok(resp) => resp,
                Err(err) => {
                    last = format!("api-{at}: {err}");
                    self.crowd.log().error("submit: no answer".into());
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            last = format!("api-{at}: {} {}", resp.status, resp.text);
            match resp.status {
                202 => {
                    self.check_id(&resp, expected_id);
                    if !wait_on_submit {
                        let pause = self.rng.gen_range(200..500);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    break at;
                }
                201 if kind == CommandKind::Join
                    && resp.json["request_id"].as_str() != Some(&expected_id.to_string()) =>
                {
                    return Done::LivePlace(resp.json.clone());
                }
                200 | 201 | 400..=499 => {
                    if let Some(seen) = self.decided(&resp, kind, at, at, expected_id) {
                        return Done::Decided(seen);
                    }
                    return Done::Refused(resp.status, code_of(&resp));
                }
                status => {
                    let code = code_of(&resp);
                    {
                        let mut log = self.crowd.log();
                        log.error(format!("submit {status} {code} ({})", kind.as_str()));
                        log.submit_failures.push((expected_id, sent_at, Utc::now()));
                    }
                    if code != "UNAVAILABLE" {
                        self.crowd.log().anomaly(format!(
                            "{} submit on api-{at} answered {status} {code} (expected 503 UNAVAILABLE for an outage): {}",
                            kind.as_str(),
                            resp.text
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        // Poll on either instance, at random, until decided.
        loop {
            if deadline.passed() || self.crowd.abandon.load(Ordering::Relaxed) {
                return self.give_up(expected_id, kind, true, last);
            }
            let preferred = self.rng.gen_range(0..self.crowd.apis.len());
            let at = self.crowd.pick(preferred);
            let sent = self
                .api(at)
                .get(&format!("/v1/requests/{expected_id}"))
                .auth(&self.user)
                .wait(WAIT_SECS)
                .try_send()
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(err) => {
                    last = format!("api-{at}: {err}");
                    self.crowd.log().error("poll: no answer".into());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            last = format!("api-{at}: {} {}", resp.status, resp.text);
            match resp.status {
                202 => {}
                200 if resp.json["status"] == "PENDING" => {}
                200 | 400..=499 => {
                    if let Some(seen) = self.decided(&resp, kind, accepted_on, at, expected_id) {
                        return Done::Decided(seen);
                    }
                    self.crowd.log().anomaly(format!(
                        "poll of {} {expected_id} on api-{at}: {} {}",
                        kind.as_str(),
                        resp.status,
                        resp.text
                    ));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                status => {
                    let code = code_of(&resp);
                    self.crowd.log().error(format!("poll {status} {code}"));
                    if code != "UNAVAILABLE" {
                        self.crowd.log().anomaly(format!(
                            "poll of {expected_id} on api-{at} answered {status} {code} (expected 503 UNAVAILABLE for an outage): {}",
                            resp.text
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn check_id(&self, resp: &Resp, expected: Uuid) {
        let got = resp.json["request_id"].as_str().unwrap_or_default();
        if got != expected.to_string() {
            self.crowd.log().anomaly(format!(
                "the request id of Idempotency-Key is {expected}, the api answered {got}"
            ));
        }
    }

    /// The outcome an answer carries, if it carries one of `expected_id`.
    fn decided(
        &self,
        resp: &Resp,
        kind: CommandKind,
        accepted_on: usize,
        decided_on: usize,
        expected_id: Uuid,
    ) -> Option<Seen> {
        let body = &resp.json;
        body["request_id"].as_str()?;
        self.check_id(resp, expected_id);
        let (status, code, result) = match (resp.status, body["status"].as_str()) {
            // A join placed within the wait: its body is the place.
            (201, _) => ("SUCCEEDED", None, body.clone()),
            (200, Some("SUCCEEDED")) => ("SUCCEEDED", None, body["result"].clone()),
            (200, Some("FAILED")) => (
                "FAILED",
                body["error"]["code"].as_str().map(str::to_owned),
                Value::Null,
            ),
            (400..=499, _) => (
                "FAILED",
                body["code"].as_str().map(str::to_owned),
                Value::Null,
            ),
            _ => return None,
        };
        Some(Seen {
            request_id: expected_id,
            kind,
            user: self.user.user_id,
            accepted_on,
            decided_on,
            submitted_at: Utc::now(),
            decided_at: Utc::now(),
            status,
            code,
            result,
        })
    }

    fn give_up(&self, request_id: Uuid, kind: CommandKind, accepted: bool, last: String) -> Done {
        self.crowd.log().undecided.push(Undecided {
            request_id,
            kind,
            accepted,
            last_answer: last,
        });
        Done::GaveUp
    }
}
