//! One fan's journey through the service, as [`super::load`] starts them: charge, join the newest concert,
//! poll the place's status until ACTIVE, hold one or two seats of one date, then pay them in one checkout,
//! release them or let them lapse; some paid reservations are cancelled a few seconds later. Every call is
//! recorded in the load's minute [`super::load::Window`] and looked at by the verifier's ledger.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

use crate::client::{Api, Caller, Outcome};
use crate::setup::Concert;
use crate::user::User;
use crate::verify::{expected_codes, Kind};

use super::load::Load;

/// `Prefer: wait` on every command.
const WAIT: u64 = 10;
/// Shares of fans with holds who pay them, and who release them; the others let them lapse.
const PAY: f64 = 0.6;
const RELEASE: f64 = 0.15;
/// Share of checkouts of which one reservation is cancelled a few seconds later.
const CANCEL: f64 = 0.3;
/// A fan not admitted within this long gives up.
const ADMIT_DEADLINE: Duration = Duration::from_secs(90);
/// Further attempts on another seat after SEAT_UNAVAILABLE.
const RETRIES: u32 = 3;

/// Codes a soak's hold or checkout may fail with without anything being wrong: the race for seats, and a
/// place whose window ended while the fan was still at it.
const HOLD_CODES: &[&str] = &[
    "SEAT_UNAVAILABLE",
    "HOLD_LIMIT_REACHED",
    "QUEUE_TOKEN_EXPIRED",
];
const PAY_CODES: &[&str] = &[
    "INSUFFICIENT_BALANCE",
    "HOLD_EXPIRED",
    "HOLD_NOT_FOUND",
    "ALREADY_PAID",
    "QUEUE_TOKEN_EXPIRED",
];

impl Load {
    /// The journey of `user` on `concert`.
    pub(super) async fn journey(
        &self,
        api: &Api,
        price: i64,
        user: &User,
        concert: &Concert,
        rng: &mut StdRng,
    ) {
        let (ledger, idx) = (&self.ledger, user.idx);
        let me = Caller {
            token: &user.token,
            queue: None,
        };
        // Enough for two seats, every journey; charges and checkouts carry keys, so the retention has
        // charge and idempotency keys to prune too.
        let key = || uuid::Uuid::now_v7().simple().to_string();
        let (out, t) = api.charge_keyed(me, price.max(1) * 2, &key()).await;
        self.window.record("charge", t, out.code());
        ledger.observe("soak/charge", idx, None, &out, &[]);

        let (out, t) = api.join(me, &concert.concert_id, WAIT).await;
        self.window.record("join", t, out.code());
        ledger.observe(
            "soak/join",
            idx,
            Some(Kind::Join),
            &out,
            expected_codes(Kind::Join),
        );
        let Some(queue) = text(&out, "queue_token") else {
            return;
        };
        if !self.admitted(api, &queue).await {
            self.note_gave_up();
            return;
        }
        let caller = Caller {
            token: &user.token,
            queue: Some(&queue),
        };

        let date = &concert.dates[rng.gen_range(0..concert.dates.len())];
        let mut holds = Vec::new();
        for _ in 0..rng.gen_range(1..=2) {
            for _ in 0..=RETRIES {
                let seat = rng.gen_range(1..=concert.seats.max(1));
                let (out, t) = api.hold(caller, date, seat, WAIT).await;
                self.window.record("hold", t, out.code());
                ledger.observe("soak/hold", idx, Some(Kind::Hold), &out, HOLD_CODES);
                match (&out, out.code()) {
                    (Outcome::Done(_), _) => holds.extend(text(&out, "hold_id")),
                    (_, Some("SEAT_UNAVAILABLE")) => continue,
                    _ => {}
                }
                break;
            }
        }
        if holds.is_empty() {
            return;
        }

        let choice: f64 = rng.gen();
        if choice < PAY {
            let (out, t) = api.checkout(caller, &holds, &key(), WAIT).await;
            self.window.record("pay", t, out.code());
            ledger.observe("soak/pay", idx, Some(Kind::Pay), &out, PAY_CODES);
            let Outcome::Done(result) = &out else { return };
            ledger.paid("soak/pay", idx, result);
            let first = result
                .get("reservations")
                .and_then(Value::as_array)
                .and_then(|r| r.first())
                .and_then(|r| r.get("reservation_id"))
                .or_else(|| result.get("reservation_id"))
                .and_then(Value::as_str);
            if let (Some(reservation), true) = (first, rng.gen_bool(CANCEL)) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(1_000..10_000))).await;
                let (out, t) = api.cancel_reservation(me, reservation, WAIT).await;
                self.window.record("cancel", t, out.code());
                ledger.observe(
                    "soak/cancel",
                    idx,
                    Some(Kind::Cancel),
                    &out,
                    expected_codes(Kind::Cancel),
                );
            }
        } else if choice < PAY + RELEASE {
            for hold in &holds {
                let (out, t) = api.release(caller, hold, WAIT).await;
                self.window.record("release", t, out.code());
                ledger.observe(
                    "soak/release",
                    idx,
                    Some(Kind::Release),
                    &out,
                    expected_codes(Kind::Release),
                );
            }
        } else {
            self.note_lapsed();
        }
    }

    /// Polls the place's status, as `Retry-After` says (at most a second apart), until it is ACTIVE; false
    /// if it ended first or the deadline passed.
    async fn admitted(&self, api: &Api, queue: &str) -> bool {
        let deadline = Instant::now() + ADMIT_DEADLINE;
        while Instant::now() < deadline {
            let (out, retry, t) = api.queue_status(queue).await;
            self.window.record("status", t, out.code());
            match out
                .done()
                .and_then(|v| v.get("status"))
                .and_then(Value::as_str)
            {
                Some("ACTIVE") => return true,
                Some("WAITING") => {}
                Some(_) => return false,
                None => {
                    self.ledger.observe("soak/status", 0, None, &out, &[]);
                    // A refusal will not change; a call without an answer is tried again.
                    if !matches!(out, Outcome::Transport(_)) {
                        return false;
                    }
                }
            }
            let pause = retry.unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(pause.clamp(Duration::from_millis(50), Duration::from_secs(1)))
                .await;
        }
        false
    }
}

/// A string field of a successful outcome.
fn text(out: &Outcome, field: &str) -> Option<String> {
    Some(out.done()?.get(field)?.as_str()?.to_owned())
}
