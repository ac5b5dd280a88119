//! Applying commands from the log to Postgres: the deterministic core of the consumer, free of Kafka.
//!
//! A partition's batch is applied in one transaction. A transient failure retries the whole batch with
//! capped backoff, forever: a command is never skipped. Any other failure re-applies the batch one command
//! per transaction, so one bad command gets a FAILED outcome and the others still go through.

mod cancel;
mod cancel_date;
mod context;
mod decision;
mod errors;
mod hold;
mod join;
mod pay;
mod release;
mod transaction;

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use concert_core::commands::{Outcome, Reply};
use tracing::instrument;
use uuid::Uuid;

pub use context::{ApplyContext, LogCommand};
pub use errors::ShuttingDown;

use crate::backoff::Backoff;
use crate::metrics;
use crate::store::requests;
use transaction::{apply_in_transaction, Decided};

/// Applies one partition's commands, in log order, and returns one reply per command (same order).
///
/// Exactly-once effect: a request id applied before (an earlier delivery) changes nothing and gets its
/// stored outcome again; a repeat inside `batch` gets the first copy's reply. Returns an error only when
/// shutdown interrupted a retry ([`ShuttingDown`]); the batch must then be read again, by this process or
/// the next owner of the partition.
#[instrument(skip_all, fields(partition = batch.first().map(|c| c.partition), size = batch.len()))]
pub async fn apply_batch(ctx: &ApplyContext, batch: &[LogCommand]) -> anyhow::Result<Vec<Reply>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let (unique, copy_of) = first_copies(batch);
    let decided = apply_unique(ctx, &unique).await?;
    metrics::batch_applied(batch.len(), started.elapsed());
    for d in &decided {
        metrics::command_applied(d.reply.kind, outcome_label(d));
    }
    Ok(copy_of
        .into_iter()
        .map(|i| decided[i].reply.clone())
        .collect())
}

fn outcome_label(decided: &Decided) -> &'static str {
    match (&decided.reply.outcome, decided.fresh) {
        (_, false) => "replayed",
        (Outcome::Succeeded { .. }, true) => "succeeded",
        (Outcome::Failed { .. }, true) => "failed",
    }
}

/// The first copy of each request id, in log order, and for every command the index of its first copy.
fn first_copies(batch: &[LogCommand]) -> (Vec<&LogCommand>, Vec<usize>) {
    let mut index: HashMap<Uuid, usize> = HashMap::with_capacity(batch.len());
    let mut unique = Vec::with_capacity(batch.len());
    let copy_of = batch
        .iter()
        .map(|command| {
            *index.entry(command.envelope.request_id).or_insert_with(|| {
                unique.push(command);
                unique.len() - 1
            })
        })
        .collect();
    (unique, copy_of)
}

async fn apply_unique(
    ctx: &ApplyContext,
    commands: &[&LogCommand],
) -> anyhow::Result<Vec<Decided>> {
    let mut backoff = Backoff::new();
    loop {
        match in_own_transaction(ctx, commands).await {
            Ok(decided) => return Ok(decided),
            Err(err) if errors::is_transient(&err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = format!("{err:#}"),
                    ?delay,
                    "batch hit a transient error; retrying it"
                );
                ctx.pause(delay).await?;
            }
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "batch failed; applying its commands one per transaction"
                );
                return one_by_one(ctx, commands).await;
            }
        }
    }
}

async fn in_own_transaction(
    ctx: &ApplyContext,
    commands: &[&LogCommand],
) -> anyhow::Result<Vec<Decided>> {
    let mut tx = ctx.pool.begin().await.context("starting a transaction")?;
    let decided = apply_in_transaction(&mut tx, ctx, commands).await?;
    tx.commit().await.context("committing")?;
    Ok(decided)
}

async fn one_by_one(ctx: &ApplyContext, commands: &[&LogCommand]) -> anyhow::Result<Vec<Decided>> {
    let mut decided = Vec::with_capacity(commands.len());
    for command in commands {
        decided.push(apply_alone(ctx, command).await?);
    }
    Ok(decided)
}

/// One command in its own transaction. If that fails for good, the command is recorded FAILED in a fresh
/// transaction; if even that cannot be stored, it is retried: the offset never moves past an unrecorded
/// command.
#[instrument(skip_all, fields(partition = command.partition, request_id = %command.envelope.request_id))]
async fn apply_alone(ctx: &ApplyContext, command: &LogCommand) -> anyhow::Result<Decided> {
    let mut backoff = Backoff::new();
    loop {
        let err = match in_own_transaction(ctx, &[command]).await {
            Ok(mut decided) => return decided.pop().context("one command, one reply"),
            Err(err) => err,
        };
        if errors::is_transient(&err) {
            tracing::warn!(
                error = format!("{err:#}"),
                "command hit a transient error; retrying it"
            );
        } else {
            let problem = errors::problem_for_failure(&err, command.envelope.request_id);
            tracing::error!(error = format!("{err:#}"), code = %problem.code.as_str(), "command failed");
            match record_failure(ctx, command, Outcome::Failed { error: problem }).await {
                Ok(decided) => return Ok(decided),
                Err(err) => tracing::warn!(
                    error = format!("{err:#}"),
                    "could not record the failed command"
                ),
            }
        }
        ctx.pause(backoff.next_delay()).await?;
    }
}

async fn record_failure(
    ctx: &ApplyContext,
    command: &LogCommand,
    outcome: Outcome,
) -> anyhow::Result<Decided> {
    let mut tx = ctx.pool.begin().await.context("starting a transaction")?;
    let decided = if requests::insert_completed(&mut tx, &command.request_row(), &outcome).await? {
        Decided {
            reply: decision::reply(&command.envelope, outcome),
            fresh: true,
        }
    } else {
        // Another delivery recorded it meanwhile: its outcome stands.
        let row = requests::load(&mut tx, &[command.envelope.request_id])
            .await?
            .pop()
            .context("stored request vanished")?;
        Decided {
            reply: decision::with_place_hint(row.into_reply()?, &command.envelope),
            fresh: false,
        }
    };
    tx.commit().await.context("committing the failed outcome")?;
    Ok(decided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use concert_core::commands::{Command, CommandEnvelope};

    fn command(offset: i64, request_id: Uuid) -> LogCommand {
        let join = Command::Join {
            concert_id: Uuid::nil(),
        };
        LogCommand {
            partition: 0,
            offset,
            envelope: CommandEnvelope::new(request_id, Uuid::nil(), join),
        }
    }

    #[test]
    fn repeats_in_a_batch_point_at_their_first_copy() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let batch = [
            command(1, a),
            command(2, b),
            command(3, a),
            command(4, b),
            command(5, a),
        ];
        let (unique, copy_of) = first_copies(&batch);
        assert_eq!(unique.iter().map(|c| c.offset).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(copy_of, [0, 1, 0, 1, 0]);
    }
}
