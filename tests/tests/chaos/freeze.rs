//! Fault: a worker frozen in the middle of its work (SIGSTOP, what a long GC-like pause, a VM stall or a
//! lost network looks like to everyone else) for 30 s under load, then resumed (SIGCONT).
//!
//! While it is frozen its partitions move to the other workers after the session timeout, and its open
//! transaction is ended by the server (`idle_in_transaction_session_timeout`), so the new owners are not
//! blocked on its row locks. When it resumes it finds its session gone and its partitions lost, and
//! rejoins: the partitions move once more. Every accepted command must be decided, within 45 s of its
//! submission, exactly once; nothing the frozen worker had in hand is applied twice.
//!
//! This run found commands lost for good on tansu's memory storage: a new owner resumed at a committed
//! offset inside a producer's record batch, and the broker returned only the batches after it (see
//! `workers/src/consumer/resume.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use concert_tests::{Deadline, TestStack};

use crate::faults::{
    busy_partitions, drained, secs, show, wait_partitions_decided, Conductor, Partition,
};
use crate::harness::{self, Run};
use crate::load::Log;

const CLIENTS: usize = 40;
const WORKERS: usize = 3;
/// How long the worker stays frozen: three times the consumer's session timeout.
const FREEZE: Duration = Duration::from_secs(30);
/// Every accepted command is decided within this long of its first submission.
const DECIDED_WITHIN_S: i64 = 45;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_is_decided_once_when_a_worker_freezes_and_resumes() {
    let (builder, ports) = harness::with_workers(
        TestStack::builder().process_apis(2),
        WORKERS,
        "consumer,ticker,sweeper,relay",
    );
    let stack = builder.start().await;
    let mut run = Run::start(stack, ports, CLIENTS, "freeze").await;
    run.settle_for(Duration::from_secs(4)).await;
    run.conductor.worker_freeze(&mut run.stack, FREEZE).await;
    run.settle_for(Duration::from_secs(3)).await;
    run.finish("freeze", decided_in_time).await;
}

/// Accepted commands that took longer than [`DECIDED_WITHIN_S`] from their first submission.
fn decided_in_time(log: &Log) -> Vec<String> {
    let slow: Vec<_> = log
        .seen
        .iter()
        .filter(|s| s.decided_at - s.submitted_at > TimeDelta::seconds(DECIDED_WITHIN_S))
        .collect();
    let slowest = log
        .seen
        .iter()
        .map(|s| secs(s.decided_at - s.submitted_at))
        .fold(0.0, f64::max);
    println!(
        "freeze: slowest command decided {slowest:.1} s after its submission (limit {DECIDED_WITHIN_S} s)"
    );
    if slow.is_empty() {
        return Vec::new();
    }
    let some: Vec<String> = slow
        .iter()
        .take(10)
        .map(|s| {
            format!(
                "{} {} submitted {} decided after {:.1} s",
                s.kind.as_str(),
                s.request_id,
                s.submitted_at.format("%H:%M:%S%.3f"),
                secs(s.decided_at - s.submitted_at)
            )
        })
        .collect();
    vec![format!(
        "{} commands were decided more than {DECIDED_WITHIN_S} s after their submission: {some:?}",
        slow.len()
    )]
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

impl Conductor {
    /// Freezes the worker that owns the most busy command partitions for `freeze`, follows its partitions
    /// to the other workers and the commands in flight to their outcomes, then resumes it.
    pub async fn worker_freeze(&mut self, stack: &mut TestStack, freeze: Duration) {
        let owners = self.owners().await;
        let busy = busy_partitions(stack, Utc::now() - TimeDelta::seconds(3)).await;
        let mut by_worker: BTreeMap<String, BTreeSet<Partition>> = BTreeMap::new();
        for (partition, (worker, _)) in owners.iter().filter(|(p, _)| busy.contains(*p)) {
            by_worker
                .entry(worker.clone())
                .or_default()
                .insert(partition.clone());
        }
        let Some((victim, partitions)) = by_worker
            .iter()
            .max_by_key(|(_, p)| p.len())
            .map(|(w, p)| (w.clone(), p.clone()))
        else {
            self.violations
                .push("no worker reported an applied partition before the freeze".into());
            return;
        };
        let pid = stack.process(&victim).pid();
        let frozen_at = Utc::now();
        signal(pid, "STOP");
        let fault = self.record(
            &format!("SIGSTOP {victim} for {} s", freeze.as_secs()),
            frozen_at,
        );
        self.note(
            fault,
            format!(
                "it owned {} partitions with traffic: {}",
                partitions.len(),
                show(&partitions, &stack.env.topics.joins)
            ),
        );
        let snapshot = self.inflight_after(frozen_at).await;
        // While it is frozen: its partitions move (each gets a command decided by another worker), and the
        // commands in flight are followed to their outcomes; it is resumed after `freeze` either way.
        let crowd = self.crowd.clone();
        let resume_at = tokio::time::Instant::now() + freeze - Duration::from_secs(2);
        let moved_then_resume = async {
            let moved = tokio::time::timeout_at(
                resume_at,
                wait_partitions_decided(stack, &partitions, frozen_at, Deadline::after(freeze)),
            )
            .await;
            tokio::time::sleep_until(resume_at + Duration::from_secs(2)).await;
            signal(pid, "CONT");
            (moved, Utc::now())
        };
        let ((moved, resumed_at), drain) =
            tokio::join!(moved_then_resume, drained(&crowd, frozen_at, snapshot));
        match moved {
            Ok(Ok((first, last))) => self.note(
                fault,
                format!(
                    "its partitions moved while it was frozen: first outcome on them {first:.1} s after the freeze, on every one of them after {last:.1} s"
                ),
            ),
            _ => self.note(
                fault,
                "its partitions had not all moved when it was resumed".into(),
            ),
        }
        self.note_drain(fault, "after the freeze", drain);
        let resumed = self.record(&format!("SIGCONT {victim}"), resumed_at);
        // Its return makes the group rebalance once more; the commands in flight then are followed too.
        let snapshot = self.inflight_after(resumed_at).await;
        let drain = drained(&self.crowd, resumed_at, snapshot).await;
        self.note_drain(resumed, "after it resumed", drain);
        if stack.process(&victim).exited().is_some() {
            self.violations
                .push(format!("{victim} exited after it was resumed"));
        }
        self.note(
            resumed,
            format!(
                "{:.1} s from the freeze to the end of the drain",
                secs(Utc::now() - frozen_at)
            ),
        );
    }
}
