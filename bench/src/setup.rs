//! Setting the stage: concerts with their waiting-room policies, and users with a balance.

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{Duration as Days, Utc};
use serde_json::{json, Value};

use crate::client::{Api, Caller, Outcome};
use crate::stats::Recorder;
use crate::user::User;
use crate::verify::Ledger;
use crate::workers::for_each;

/// A concert created for the run.
#[derive(Debug, Clone)]
pub struct Concert {
    pub concert_id: String,
    /// Date ids in creation order.
    pub dates: Vec<String>,
    /// Seats per date.
    pub seats: i32,
}

/// The waiting-room policy to set on a concert.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_active_users: usize,
    pub admit_per_interval: usize,
    pub interval_seconds: u32,
    pub active_seconds: u32,
    pub hold_seconds: u32,
    /// Seconds an admitted place has to make its first request (the service's default when `None`).
    pub claim_seconds: Option<u32>,
}

/// A week: the longest interval and window a policy may have.
const WEEK_SECONDS: u32 = 7 * 24 * 3600;

impl Policy {
    /// One admission a week: a line that stays put while it is measured and read back.
    pub fn admit_nobody() -> Self {
        Policy {
            max_active_users: 1,
            admit_per_interval: 1,
            interval_seconds: WEEK_SECONDS,
            active_seconds: WEEK_SECONDS,
            hold_seconds: 300,
            claim_seconds: Some(3600),
        }
    }
}

/// Creates a concert of `dates` dates with `seats` seats at `price`, and sets its waiting-room policy.
pub async fn create_concert(
    api: &Api,
    title: &str,
    dates: usize,
    seats: i32,
    price: i64,
    policy: Policy,
) -> anyhow::Result<Concert> {
    let start = Utc::now() + Days::days(30);
    let dates_body: Vec<Value> = (0..dates)
        .map(|i| json!({ "starts_at": (start + Days::days(i as i64)).to_rfc3339(), "seats": seats, "price": price }))
        .collect();
    let body = json!({ "title": title, "venue": "Bench Arena", "dates": dates_body });
    let created = match api.create_concert(&body).await {
        Outcome::Done(v) => v,
        other => bail!("creating concert {title:?} failed: {other:?}"),
    };
    let concert_id = created["concert_id"]
        .as_str()
        .context("no concert_id in the answer")?
        .to_owned();
    let dates = created["dates"]
        .as_array()
        .context("no dates in the answer")?
        .iter()
        .map(|d| {
            d["date_id"]
                .as_str()
                .map(str::to_owned)
                .context("a date without date_id")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let clamp = |n: usize| n.clamp(1, 1_000_000);
    let mut policy_body = json!({
        "max_active_users": clamp(policy.max_active_users),
        "admit_per_interval": clamp(policy.admit_per_interval),
        "interval_seconds": policy.interval_seconds,
        "active_seconds": policy.active_seconds,
        "hold_seconds": policy.hold_seconds,
    });
    if let Some(claim) = policy.claim_seconds {
        policy_body["claim_seconds"] = json!(claim);
    }
    if let other @ (Outcome::Failed { .. } | Outcome::Pending(_) | Outcome::Transport(_)) =
        api.set_policy(&concert_id, &policy_body).await
    {
        bail!("setting the waiting-room policy of {concert_id} failed: {other:?}");
    }
    Ok(Concert {
        concert_id,
        dates,
        seats,
    })
}

/// Signs up `n` users and charges the first `charged` of them `price` for each of `seats` seats (or half of
/// one seat's price for the underfunded fraction, spread evenly); the others get no balance (they only join).
/// Users whose sign-up fails are left out; charges that fail leave the user underfunded.
#[allow(clippy::too_many_arguments)]
pub async fn users(
    api: &Api,
    rec: &Arc<Recorder>,
    ledger: &Arc<Ledger>,
    n: usize,
    charged: usize,
    underfunded: f64,
    price: i64,
    seats: u32,
    bar: &indicatif::ProgressBar,
) -> Vec<User> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let every = if underfunded > 0.0 {
        (1.0 / underfunded).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    let (api, rec, ledger, bar) = (api.clone(), rec.clone(), ledger.clone(), bar.clone());
    // One task per user: the client's in-flight bound is what limits the load.
    let made = for_each(n, n, move |i| {
        let (api, rec, ledger, bar, run) = (
            api.clone(),
            rec.clone(),
            ledger.clone(),
            bar.clone(),
            run.clone(),
        );
        async move {
            let (out, t) = api.sign_up(&format!("bench-{run}-{i}")).await;
            rec.record("setup/signup", t, out.code());
            ledger.observe("setup/signup", i, None, &out, &[]);
            let Some(token) = out
                .done()
                .and_then(|b| b["access_token"].as_str())
                .map(str::to_owned)
            else {
                bar.inc(1);
                return None;
            };
            if i >= charged {
                bar.inc(1);
                return Some((token, false));
            }
            let underfunded = every != usize::MAX && i % every == every - 1;
            let amount = if underfunded {
                (price / 2).max(1)
            } else {
                price.max(1).saturating_mul(i64::from(seats.max(1)))
            };
            let (out, t) = api
                .charge(
                    Caller {
                        token: &token,
                        queue: None,
                    },
                    amount,
                )
                .await;
            rec.record("setup/charge", t, out.code());
            ledger.observe("setup/charge", i, None, &out, &[]);
            bar.inc(1);
            let funded = !underfunded && matches!(out, Outcome::Done(_));
            Some((token, funded))
        }
    })
    .await;
    made.into_iter()
        .flatten()
        .enumerate()
        .map(|(idx, (token, funded))| User { idx, token, funded })
        .collect()
}
