//! One transaction over a run of commands: record them (the dedupe), decide each in log order, store
//! every outcome. Either all of it commits or none of it does.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::commands::{CommandEnvelope, CommandKind, Outcome, Reply};
use sqlx::PgConnection;
use tracing::instrument;
use uuid::Uuid;

use super::cancel::{cancel_run, CancelRequest};
use super::cancel_date::{cancel_date_run, CancelDateRequest};
use super::context::{ApplyContext, LogCommand};
use super::decision::{self, outcome, Decision};
use super::hold::{hold_run, HoldRequest};
use super::join::{join_run, JoinRequest};
use super::pay::{pay_run, PayRequest};
use super::release::{release_run, ReleaseRequest};
use crate::store::{self, requests};

/// A reply and whether it was decided now (`fresh`) or re-sent from an earlier delivery.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub reply: Reply,
    pub fresh: bool,
}

/// Applies `commands` (distinct request ids, in log order) inside the caller's transaction.
///
/// Commands recorded before (an earlier delivery committed them) are not applied again: their stored
/// outcome is re-sent unchanged.
pub(crate) async fn apply_in_transaction(
    conn: &mut PgConnection,
    ctx: &ApplyContext,
    commands: &[&LogCommand],
) -> anyhow::Result<Vec<Decided>> {
    let now = store::transaction_time(conn).await?;
    let rows: Vec<_> = commands.iter().map(|c| c.request_row()).collect();
    let new = requests::insert_pending(conn, &rows).await?;
    let seen_before: Vec<Uuid> = commands
        .iter()
        .map(|c| c.envelope.request_id)
        .filter(|id| !new.contains(id))
        .collect();
    let mut stored = load_replies(conn, &seen_before).await?;

    let mut decided = Vec::with_capacity(commands.len());
    let mut rest = commands;
    while let Some(&first) = rest.first() {
        let is_new = |c: &LogCommand| new.contains(&c.envelope.request_id);
        if !is_new(first) {
            decided.push(replayed(&mut stored, first)?);
            rest = &rest[1..];
            continue;
        }
        // The run of commands of this kind starting here, decided together. Replays inside it change
        // nothing, so they do not end it.
        let kind = first.envelope.command.kind();
        let run_len = rest
            .iter()
            .take_while(|c| !is_new(c) || c.envelope.command.kind() == kind)
            .count();
        let (run, after) = rest.split_at(run_len);
        let fresh: Vec<&LogCommand> = run.iter().copied().filter(|c| is_new(c)).collect();
        let mut outcomes = apply_run(conn, ctx, now, kind, &fresh).await?.into_iter();
        for command in run {
            decided.push(if is_new(command) {
                let outcome = outcomes.next().context("a command without its outcome")?;
                Decided {
                    reply: decision::reply(&command.envelope, outcome),
                    fresh: true,
                }
            } else {
                replayed(&mut stored, command)?
            });
        }
        rest = after;
    }

    let outcomes: Vec<(Uuid, &Outcome)> = decided
        .iter()
        .filter(|d| d.fresh)
        .map(|d| (d.reply.request_id, &d.reply.outcome))
        .collect();
    requests::complete(conn, &outcomes).await?;
    Ok(decided)
}

async fn load_replies(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, Reply>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = requests::load(conn, ids).await?;
    let found: HashSet<Uuid> = rows.iter().map(|r| r.request_id).collect();
    anyhow::ensure!(
        found.len() == ids.len(),
        "some requests seen before have no stored row"
    );
    rows.into_iter()
        .map(|row| Ok((row.request_id, row.into_reply()?)))
        .collect()
}

/// The stored reply of a command applied by an earlier delivery.
fn replayed(stored: &mut HashMap<Uuid, Reply>, command: &LogCommand) -> anyhow::Result<Decided> {
    let id = command.envelope.request_id;
    let reply = stored
        .remove(&id)
        .with_context(|| format!("request {id} is neither new nor stored"))?;
    Ok(Decided {
        reply: decision::with_place_hint(reply, &command.envelope),
        fresh: false,
    })
}

/// Decides a run of commands of one kind together, in log order: one outcome per command. Refusals are
/// outcomes; an `Err` is a failed statement or a broken invariant.
#[instrument(skip_all, fields(kind = kind.as_str(), size = commands.len()))]
async fn apply_run(
    conn: &mut PgConnection,
    ctx: &ApplyContext,
    now: DateTime<Utc>,
    kind: CommandKind,
    commands: &[&LogCommand],
) -> anyhow::Result<Vec<Outcome>> {
    let envelopes: Vec<&CommandEnvelope> = commands.iter().map(|c| &c.envelope).collect();
    let decisions: Vec<anyhow::Result<Outcome>> = match kind {
        CommandKind::Join => {
            let asks = requests_of(&envelopes, JoinRequest::from_envelope)?;
            let decided = join_run(conn, now, &asks).await.context("joining")?;
            outcomes(&envelopes, decided)
        }
        CommandKind::Hold => {
            let asks = requests_of(&envelopes, HoldRequest::from_envelope)?;
            let decided = hold_run(conn, now, ctx.max_holds_per_user, &asks)
                .await
                .context("holding")?;
            outcomes(&envelopes, decided)
        }
        CommandKind::Release => {
            let asks = requests_of(&envelopes, ReleaseRequest::from_envelope)?;
            let decided = release_run(conn, now, &asks).await.context("releasing")?;
            outcomes(&envelopes, decided)
        }
        CommandKind::Pay => {
            let asks = requests_of(&envelopes, PayRequest::from_envelope)?;
            let decided = pay_run(conn, now, &asks).await.context("paying")?;
            outcomes(&envelopes, decided)
        }
        CommandKind::Cancel => {
            let asks = requests_of(&envelopes, CancelRequest::from_envelope)?;
            let decided = cancel_run(conn, now, &asks).await.context("cancelling")?;
            outcomes(&envelopes, decided)
        }
        CommandKind::CancelDate => {
            let asks = requests_of(&envelopes, CancelDateRequest::from_envelope)?;
            let decided = cancel_date_run(conn, now, &asks)
                .await
                .context("cancelling dates")?;
            outcomes(&envelopes, decided)
        }
    };
    decisions.into_iter().collect()
}

/// The typed request of each command of a run; a command of another kind in it is a bug.
fn requests_of<T>(
    envelopes: &[&CommandEnvelope],
    parse: fn(&CommandEnvelope) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    envelopes
        .iter()
        .map(|e| parse(e).with_context(|| format!("{} does not belong in this run", e.request_id)))
        .collect()
}

fn outcomes<T: serde::Serialize>(
    envelopes: &[&CommandEnvelope],
    decisions: Vec<Decision<T>>,
) -> Vec<anyhow::Result<Outcome>> {
    envelopes
        .iter()
        .zip(decisions)
        .map(|(e, d)| {
            let outcome = outcome(e, d);
            if let Ok(Outcome::Failed { error }) = &outcome {
                tracing::debug!(request_id = %e.request_id, code = %error.code.as_str(), "refused");
            }
            outcome
        })
        .collect()
}
