//! Fault: PostgreSQL itself stopped (fast shutdown: every session ended) and started again 3 s later,
//! under load. The test's database lives on a private server started by the test (`initdb` + `pg_ctl` on a
//! free port), so the shared server other tests use is never touched.
//!
//! Every accepted command is decided exactly once; a submit whose command reached the log is never
//! answered 5xx (it is 202 with its request id when its outcome cannot be read); polls of accepted
//! requests are never answered 5xx. The recovery time is printed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_tests::pg_server::PrivatePostgres;
use concert_tests::{Deadline, TestStack};

use crate::faults::{secs, Conductor};
use crate::harness::{self, Run};

const CLIENTS: usize = 40;
const WORKERS: usize = 3;
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_is_decided_once_when_postgres_restarts() {
    // Declared first, so it is dropped (stopped) after every process that uses it.
    let server = PrivatePostgres::start().expect("starting a private PostgreSQL server");
    let (builder, ports) = harness::with_workers(
        TestStack::builder()
            .process_apis(2)
            .database_server(&server.url()),
        WORKERS,
        "consumer,ticker,sweeper,relay",
    );
    let stack = builder.start().await;
    let mut run = Run::start(stack, ports, CLIENTS, "pg-restart").await;
    run.settle_for(Duration::from_secs(4)).await;
    run.conductor
        .postgres_restart(&mut run.stack, &server)
        .await;
    run.settle_for(Duration::from_secs(3)).await;
    run.finish("pg-restart", |_| Vec::new()).await;
}

impl Conductor {
    /// Stops the database server, keeps it down for [`OUTAGE`], starts it again, and follows the commands
    /// in flight to their outcomes.
    pub async fn postgres_restart(&mut self, stack: &mut TestStack, server: &PrivatePostgres) {
        let stopped_at = Utc::now();
        let fault = self.record(
            &format!(
                "PostgreSQL stopped (fast shutdown), started again {} s later",
                OUTAGE.as_secs()
            ),
            stopped_at,
        );
        tokio::task::block_in_place(|| server.stop()).expect("stopping PostgreSQL");
        let snapshot = self.inflight_after(stopped_at).await;
        tokio::time::sleep(OUTAGE.saturating_sub(Duration::from_secs(2))).await;
        tokio::task::block_in_place(|| server.start_again()).expect("starting PostgreSQL again");
        let back_at = Utc::now();
        self.note(
            fault,
            format!("the server was down {:.1} s", secs(back_at - stopped_at)),
        );
        match first_outcome_after(stack, back_at, Deadline::secs(60)).await {
            Some(first) => self.note(
                fault,
                format!(
                    "recovery: first outcome decided {:.2} s after the server was back ({:.2} s after it stopped)",
                    secs(first - back_at),
                    secs(first - stopped_at)
                ),
            ),
            None => self
                .violations
                .push("no command was decided within 60 s of PostgreSQL's restart".into()),
        }
        let drain = crate::faults::drained(&self.crowd, stopped_at, snapshot).await;
        self.note_drain(fault, "after the restart", drain);
    }
}

/// When the first command was decided after `since`, looking until `deadline`.
async fn first_outcome_after(
    stack: &TestStack,
    since: DateTime<Utc>,
    deadline: Deadline,
) -> Option<DateTime<Utc>> {
    loop {
        let first: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(completed_at) FROM requests WHERE completed_at > $1")
                .bind(since)
                .fetch_one(stack.db())
                .await
                .ok()
                .flatten();
        if first.is_some() {
            return first;
        }
        if deadline.passed() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
