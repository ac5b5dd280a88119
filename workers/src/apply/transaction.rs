//! One transaction over a run of commands: record them (the dedupe), decide each in log order, store
//! every outcome. Either all of it commits or none of it does.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::commands::{Command, Outcome, Reply};
use sqlx::PgConnection;
use tracing::instrument;
use uuid::Uuid;

use super::decision::{self, outcome};
use super::hold::{hold_run, HoldRequest};
use super::join::join;
use super::pay::{pay, PayRequest};
use super::release::release;
use super::{ApplyContext, LogCommand};
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
    let new = requests::insert_pending(conn, commands).await?;
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
        } else if matches!(first.envelope.command, Command::Hold { .. }) {
            // The run of holds starting here, decided together. Replays inside it change nothing, so they
            // do not end it.
            let run_len = rest
                .iter()
                .take_while(|c| !is_new(c) || matches!(c.envelope.command, Command::Hold { .. }))
                .count();
            let (run, after) = rest.split_at(run_len);
            let holds: Vec<&LogCommand> = run.iter().copied().filter(|c| is_new(c)).collect();
            let mut outcomes = apply_holds(conn, ctx, now, &holds).await?.into_iter();
            for command in run {
                decided.push(if is_new(command) {
                    let outcome = outcomes.next().context("a hold without its outcome")?;
                    Decided {
                        reply: decision::reply(&command.envelope, outcome),
                        fresh: true,
                    }
                } else {
                    replayed(&mut stored, command)?
                });
            }
            rest = after;
        } else {
            let outcome = apply_command(conn, ctx, now, first).await?;
            decided.push(Decided {
                reply: decision::reply(&first.envelope, outcome),
                fresh: true,
            });
            rest = &rest[1..];
        }
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

/// Decides a run of HOLD commands together (see `hold::hold_run`), one outcome per command.
async fn apply_holds(
    conn: &mut PgConnection,
    ctx: &ApplyContext,
    now: DateTime<Utc>,
    commands: &[&LogCommand],
) -> anyhow::Result<Vec<Outcome>> {
    let requests: Vec<HoldRequest> = commands
        .iter()
        .map(|c| match c.envelope.command {
            Command::Hold {
                concert_id,
                date_id,
                seat_no,
                queue_seq: _,
            } => Ok(HoldRequest {
                user_id: c.envelope.user_id,
                concert_id,
                date_id,
                seat_no,
            }),
            _ => Err(anyhow::anyhow!("not a hold: {}", c.envelope.request_id)),
        })
        .collect::<anyhow::Result<_>>()?;
    let decisions = hold_run(conn, now, ctx.max_holds_per_user, &requests)
        .await
        .context("holding")?;
    commands
        .iter()
        .zip(decisions)
        .map(|(c, d)| outcome(&c.envelope, d))
        .collect()
}

/// Decides one command. Refusals are outcomes; an `Err` is a failed statement or a broken invariant.
#[instrument(skip_all, fields(partition = command.partition, offset = command.offset,
    request_id = %command.envelope.request_id, kind = command.envelope.command.kind().as_str()))]
async fn apply_command(
    conn: &mut PgConnection,
    ctx: &ApplyContext,
    now: DateTime<Utc>,
    command: &LogCommand,
) -> anyhow::Result<Outcome> {
    let env = &command.envelope;
    let user_id = env.user_id;
    let outcome = match env.command {
        Command::Join { concert_id } => outcome(
            env,
            join(conn, user_id, concert_id).await.context("joining")?,
        )?,
        Command::Hold { .. } => apply_holds(conn, ctx, now, &[command])
            .await?
            .pop()
            .context("a hold without its outcome")?,
        Command::Release {
            concert_id: _,
            date_id,
            hold_id,
        } => outcome(
            env,
            release(conn, now, user_id, date_id, hold_id)
                .await
                .context("releasing")?,
        )?,
        Command::Pay {
            concert_id: _,
            date_id,
            hold_id,
            queue_seq,
        } => {
            let request = PayRequest {
                user_id,
                date_id,
                hold_id,
                queue_seq,
            };
            outcome(env, pay(conn, now, request).await.context("paying")?)?
        }
    };
    match &outcome {
        Outcome::Succeeded { .. } => tracing::debug!("succeeded"),
        Outcome::Failed { error } => tracing::debug!(code = %error.code.as_str(), "refused"),
    }
    Ok(outcome)
}
