//! The seat race: every admitted user goes for a seat (a few hot ones everyone wants, or one at random), retries
//! on `SEAT_UNAVAILABLE`, then pays, releases, or lets the hold lapse.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{Api, Caller, Outcome};
use crate::setup::Concert;
use crate::stats::Recorder;
use crate::user::User;
use crate::verify::{expected_codes, Kind, Ledger};
use crate::workers::for_each;

/// How the racing users behave.
#[derive(Debug, Clone)]
pub struct RacePlan {
    pub concert: Concert,
    /// Seats 1..=hot_seats of the first date are the hot ones.
    pub hot_seats: i32,
    /// Share of first attempts that go for a hot seat.
    pub hot_fraction: f64,
    /// Further attempts after `SEAT_UNAVAILABLE`.
    pub retries: u32,
    /// Share of successful holds left to lapse.
    pub lapse: f64,
    /// Share of successful holds released.
    pub release: f64,
    /// Share of the lapsed holds that try to pay after the deadline (expecting `HOLD_EXPIRED`).
    pub late_pay: f64,
    /// `Prefer: wait` on every command.
    pub wait: u64,
    pub seed: u64,
}

/// Races every user that has an ACTIVE queue token.
pub async fn run(
    api: &Api,
    rec: &Arc<Recorder>,
    ledger: &Arc<Ledger>,
    users: &Arc<Vec<User>>,
    tokens: &[Option<String>],
    plan: &RacePlan,
    bar: &indicatif::ProgressBar,
) {
    let racers: Arc<Vec<(User, String)>> = Arc::new(
        users
            .iter()
            .zip(tokens)
            .filter_map(|(u, t)| t.as_ref().map(|t| (u.clone(), t.clone())))
            .collect(),
    );
    bar.set_length(racers.len() as u64);
    let (api, rec, ledger, plan, bar) = (
        api.clone(),
        rec.clone(),
        ledger.clone(),
        Arc::new(plan.clone()),
        bar.clone(),
    );
    for_each(racers.len(), racers.len(), move |i| {
        let (api, rec, ledger, plan, bar, racers) = (
            api.clone(),
            rec.clone(),
            ledger.clone(),
            plan.clone(),
            bar.clone(),
            racers.clone(),
        );
        async move {
            let (user, qt) = &racers[i];
            race_one(&api, &rec, &ledger, user, qt, &plan).await;
            bar.inc(1);
        }
    })
    .await;
}

/// A seat to try: a hot one on the first attempt (sometimes), otherwise anywhere.
fn pick_seat(rng: &mut StdRng, plan: &RacePlan, attempt: u32) -> (usize, i32) {
    let seats = plan.concert.seats.max(1);
    if attempt == 0 && rng.gen_bool(plan.hot_fraction.clamp(0.0, 1.0)) {
        (0, rng.gen_range(1..=plan.hot_seats.clamp(1, seats)))
    } else {
        (
            rng.gen_range(0..plan.concert.dates.len()),
            rng.gen_range(1..=seats),
        )
    }
}

async fn race_one(
    api: &Api,
    rec: &Recorder,
    ledger: &Ledger,
    user: &User,
    qt: &str,
    plan: &RacePlan,
) {
    let mut rng =
        StdRng::seed_from_u64(plan.seed ^ (user.idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let caller = Caller {
        token: &user.token,
        queue: Some(qt),
    };
    let mut held = None;
    for attempt in 0..=plan.retries {
        let (d, seat) = pick_seat(&mut rng, plan, attempt);
        let (out, t) = api
            .hold(caller, &plan.concert.dates[d], seat, plan.wait)
            .await;
        rec.record("race/hold", t, out.code());
        ledger.observe(
            "race/hold",
            user.idx,
            Some(Kind::Hold),
            &out,
            expected_codes(Kind::Hold),
        );
        match out {
            Outcome::Done(result) => {
                held = Some(result);
                break;
            }
            Outcome::Failed { ref code, .. } if code == "SEAT_UNAVAILABLE" => continue,
            _ => break,
        }
    }
    let Some(hold) = held else { return };
    let Some(hold_id) = hold["hold_id"].as_str() else {
        ledger.anomaly("race/hold: success without hold_id".into());
        return;
    };

    let roll: f64 = rng.gen();
    if roll < plan.lapse {
        if rng.gen_bool(plan.late_pay.clamp(0.0, 1.0)) {
            pay_after_deadline(api, rec, ledger, user, caller, &hold, plan.wait).await;
        }
    } else if roll < plan.lapse + plan.release {
        let (out, t) = api.release(caller, hold_id, plan.wait).await;
        rec.record("race/release", t, out.code());
        ledger.observe(
            "race/release",
            user.idx,
            Some(Kind::Release),
            &out,
            expected_codes(Kind::Release),
        );
    } else {
        let (out, t) = api.pay(caller, hold_id, plan.wait).await;
        rec.record("race/pay", t, out.code());
        // Only the underfunded may be refused for their balance.
        let expected: &[&str] = if user.funded {
            &[]
        } else {
            &["INSUFFICIENT_BALANCE"]
        };
        ledger.observe("race/pay", user.idx, Some(Kind::Pay), &out, expected);
        if let Outcome::Done(result) = &out {
            ledger.paid("race/pay", user.idx, result);
        }
    }
}

/// Lets the hold lapse, then tries to pay it: the contract says 410 `HOLD_EXPIRED`.
async fn pay_after_deadline(
    api: &Api,
    rec: &Recorder,
    ledger: &Ledger,
    user: &User,
    caller: Caller<'_>,
    hold: &serde_json::Value,
    wait: u64,
) {
    let hold_id = hold["hold_id"].as_str().unwrap_or_default();
    let expires = hold["expires_at"]
        .as_str()
        .and_then(|s| s.parse::<DateTime<Utc>>().ok());
    let Some(expires) = expires else {
        ledger.anomaly("race/hold: success without a readable expires_at".into());
        return;
    };
    let left = (expires - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tokio::time::sleep(left + Duration::from_secs(1)).await;
    let (out, t) = api.pay(caller, hold_id, wait).await;
    rec.record("race/pay_lapsed", t, out.code());
    ledger.observe(
        "race/pay_lapsed",
        user.idx,
        Some(Kind::Pay),
        &out,
        &["HOLD_EXPIRED"],
    );
    if let Outcome::Done(result) = &out {
        ledger.anomaly("race/pay_lapsed: payment SUCCEEDED on a hold past its expires_at (expected 410 HOLD_EXPIRED)".into());
        ledger.paid("race/pay_lapsed", user.idx, result);
    }
}
