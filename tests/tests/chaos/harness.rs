//! What every fault run shares: a stack of processes with a crowd on it, and the ending (stop the crowd,
//! let everything settle, check every invariant, print the figures, fail with every violation found).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use concert_tests::procs::free_port;
use concert_tests::stack::StackBuilder;
use concert_tests::{Deadline, TestStack};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::checks;
use crate::faults::{AbortedBatch, Conductor};
use crate::load::{self, Crowd, Log};

/// `workers` worker processes with `roles`, each with a metrics port (the conductor finds partition owners
/// through it), added to `builder`.
pub fn with_workers(
    mut builder: StackBuilder,
    workers: usize,
    roles: &str,
) -> (StackBuilder, BTreeMap<String, u16>) {
    // The crowd's clients step every 20-120 ms and retry through faults: faster than the per-user limit
    // allows a real client. The limiter stays on (its code path runs), just out of their way.
    builder = builder.rate_limit_per_user(1000);
    let mut metrics_ports = BTreeMap::new();
    for index in 0..workers {
        let port = free_port();
        metrics_ports.insert(format!("worker-{index}"), port);
        builder =
            builder.process_worker_with_env(roles, &[("WORKER_METRICS_PORT", &port.to_string())]);
    }
    (builder, metrics_ports)
}

/// A crowd running on a stack, and the conductor that injects faults into it.
pub struct Run {
    pub stack: TestStack,
    pub crowd: Arc<Crowd>,
    pub conductor: Conductor,
    clients: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Run {
    /// Two concerts of three dates (120 seats each, holds lapsing after 3 s so lapsed seats are taken
    /// again), everyone admitted at once, and `clients` clients spread over the api instances.
    pub async fn start(
        stack: TestStack,
        metrics_ports: BTreeMap<String, u16>,
        clients: usize,
        name: &str,
    ) -> Self {
        let started = Instant::now();
        stack.warm_up().await;
        let api = stack.api().clone();
        let mut concerts = Vec::new();
        for title in ["Aurora", "Borealis"] {
            let dates: Vec<_> = (0..3)
                .map(|i| json!({ "starts_at": concert_tests::client::future_date(i), "seats": 120, "price": 1000 }))
                .collect();
            let concert = api
                .create_concert_with(
                    &json!({ "title": title, "venue": "Chaos hall", "dates": dates }),
                )
                .await;
            api.set_policy(
                concert.concert_id,
                &json!({ "max_active_users": 1000, "active_seconds": 600, "hold_seconds": 3 }),
            )
            .await;
            concerts.push(concert);
        }
        let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        println!(
            "{name}: seed {seed}, processes {:?}, logs in {}/concert-tests/{}*.log",
            stack.process_names(),
            std::env::temp_dir().display(),
            stack.env.settings.topic_prefix
        );
        let crowd = Crowd::new(
            stack.apis().to_vec(),
            concerts,
            stack.env.request_ids(),
            seed,
        );
        let load_started = Utc::now();
        let clients = (0..clients)
            .map(|i| tokio::spawn(load::run_client(crowd.clone(), i)))
            .collect();
        let conductor = Conductor {
            crowd: crowd.clone(),
            load_started,
            faults: Vec::new(),
            violations: Vec::new(),
            metrics_ports,
            aborted: AbortedBatch::default(),
        };
        Self {
            stack,
            crowd,
            conductor,
            clients,
            started,
        }
    }

    /// Stops the crowd (each client finishes its command in flight), checks every invariant and fails the
    /// test with all violations found. `extra` adds the run's own checks on what the clients saw.
    pub async fn finish(mut self, name: &str, extra: impl FnOnce(&Log) -> Vec<String>) {
        if !self.conductor.violations.is_empty() {
            self.crowd.abandon.store(true, Ordering::Relaxed);
        }
        self.crowd.stop.store(true, Ordering::Relaxed);
        let load_secs =
            (Utc::now() - self.conductor.load_started).num_milliseconds() as f64 / 1000.0;
        let stopping = Deadline::secs(120);
        for client in std::mem::take(&mut self.clients) {
            tokio::time::timeout(stopping.remaining(), client)
                .await
                .expect("the clients finish their last command within 120 s")
                .expect("a client panicked");
        }
        self.stack.assert_processes_alive();
        for api in self.stack.apis() {
            let ready = api.get("/readyz").try_send().await.map(|r| r.status);
            if !matches!(ready, Ok(200)) {
                self.conductor
                    .violations
                    .push(format!("{} not ready after the run: {ready:?}", api.base));
            }
        }
        checks::settle(&self.stack).await;
        let log = std::mem::take(&mut *self.crowd.log.lock().expect("log lock"));
        let mut violations = self.conductor.violations.clone();
        violations.extend(extra(&log));
        let verdict = checks::verify(
            &self.stack,
            &log,
            &self.conductor.faults,
            &self.conductor.aborted,
            violations,
            load_secs,
        )
        .await;
        println!(
            "{name} figures ({:.0} s in all):\n{}",
            self.started.elapsed().as_secs_f64(),
            verdict.figures
        );
        assert!(
            verdict.violations.is_empty(),
            "{} invariant violations:\n- {}\n\nfigures:\n{}",
            verdict.violations.len(),
            verdict.violations.join("\n- "),
            verdict.figures
        );
    }

    /// Lets the crowd run undisturbed for `pause`.
    pub async fn settle_for(&self, pause: Duration) {
        tokio::time::sleep(pause).await;
    }
}
