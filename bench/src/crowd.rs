//! The flash crowd: every user joins the waiting room at once, then polls its place until admitted.

use std::sync::Arc;
use std::time::Duration;

use crate::client::{Api, Caller, Outcome};
use crate::stats::Recorder;
use crate::user::User;
use crate::verify::{expected_codes, Kind, Ledger};
use crate::workers::for_each;

/// How the crowd behaves.
#[derive(Debug, Clone)]
pub struct CrowdPlan {
    /// Prefix of the operation names recorded (`crowd`, `tp-setup`).
    pub phase: String,
    pub concert_id: String,
    /// `Prefer: wait` on the join.
    pub wait: u64,
    /// Longest pause between status polls, whatever `Retry-After` says.
    pub retry_cap: Duration,
    /// Give up on a user not admitted by then.
    pub admit_deadline: Duration,
}

/// Joins every user (requests bounded by the client) and returns each one's queue token once ACTIVE.
pub async fn run(
    api: &Api,
    rec: &Arc<Recorder>,
    ledger: &Arc<Ledger>,
    users: &Arc<Vec<User>>,
    plan: &CrowdPlan,
    bar: &indicatif::ProgressBar,
) -> Vec<Option<String>> {
    let (api, rec, ledger, users, plan, bar) = (
        api.clone(),
        rec.clone(),
        ledger.clone(),
        users.clone(),
        Arc::new(plan.clone()),
        bar.clone(),
    );
    // One task per user: the client's in-flight bound, not the task count, is what limits the load.
    for_each(users.len(), users.len(), move |i| {
        let (api, rec, ledger, users, plan, bar) = (
            api.clone(),
            rec.clone(),
            ledger.clone(),
            users.clone(),
            plan.clone(),
            bar.clone(),
        );
        async move {
            let token = admit(&api, &rec, &ledger, &users[i], &plan).await;
            bar.inc(1);
            token
        }
    })
    .await
}

async fn admit(
    api: &Api,
    rec: &Recorder,
    ledger: &Ledger,
    user: &User,
    plan: &CrowdPlan,
) -> Option<String> {
    let (join_op, status_op, admit_op) = (
        format!("{}/join", plan.phase),
        format!("{}/status", plan.phase),
        format!("{}/admitted", plan.phase),
    );
    let (out, t0) = api
        .join(
            Caller {
                token: &user.token,
                queue: None,
            },
            &plan.concert_id,
            plan.wait,
        )
        .await;
    rec.record(&join_op, t0, out.code());
    ledger.observe(
        &join_op,
        user.idx,
        Some(Kind::Join),
        &out,
        expected_codes(Kind::Join),
    );
    let place = out.done()?;
    let Some(token) = place["queue_token"].as_str().map(str::to_owned) else {
        ledger.anomaly(format!("{join_op}: success without queue_token"));
        return None;
    };
    let mut status = place["status"].as_str().unwrap_or("WAITING").to_owned();
    let mut pause = Duration::ZERO;
    while status != "ACTIVE" {
        if status == "EXPIRED" || status == "COMPLETED" {
            ledger.anomaly(format!(
                "{status_op}: a fresh place turned {status} before it was ACTIVE"
            ));
            return None;
        }
        if t0.elapsed() > plan.admit_deadline {
            rec.record(&admit_op, t0, Some("NOT_ADMITTED_IN_TIME"));
            return None;
        }
        tokio::time::sleep(pause).await;
        let (out, retry_after, t) = api.queue_status(&token).await;
        rec.record(&status_op, t, out.code());
        ledger.observe(&status_op, user.idx, None, &out, &[]);
        pause = retry_after
            .unwrap_or(Duration::from_secs(1))
            .min(plan.retry_cap);
        match out {
            Outcome::Done(body) => status = body["status"].as_str().unwrap_or("WAITING").to_owned(),
            // Back off a little on failures so a struggling service is not hammered by the crowd.
            _ => pause = pause.max(Duration::from_millis(200)),
        }
    }
    rec.record(&admit_op, t0, None);
    Some(token)
}
