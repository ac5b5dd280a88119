//! The faults, injected one after another while the crowd keeps going, each followed by a wait (with a
//! deadline) until the service has visibly recovered, so that no fault lands in the middle of the previous
//! one's recovery (a consumer group rebalancing after a kill is the fragile moment on tansu).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_tests::{kafka, Deadline, TestStack};
use uuid::Uuid;

use crate::load::Crowd;

/// One injected fault and what was seen of the recovery.
#[derive(Debug, Clone)]
pub struct Fault {
    pub what: String,
    pub at: DateTime<Utc>,
    /// Seconds since the load started.
    pub at_load_s: f64,
    /// Recovery figures, e.g. "commands in flight decided after 14.2 s".
    pub notes: Vec<String>,
}

/// (topic, partition) of a command topic.
pub type Partition = (String, i32);

/// The events the aborted relay had produced but not marked: they must show up again.
#[derive(Debug, Clone, Default)]
pub struct AbortedBatch {
    pub event_ids: HashSet<Uuid>,
}

pub struct Conductor {
    pub crowd: Arc<Crowd>,
    pub load_started: DateTime<Utc>,
    pub faults: Vec<Fault>,
    /// Failures of the recovery waits (a deadline passed); reported with the other violations.
    pub violations: Vec<String>,
    /// worker name -> its `/metrics` port.
    pub metrics_ports: BTreeMap<String, u16>,
    pub aborted: AbortedBatch,
}

pub(crate) fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

impl Conductor {
    pub(crate) fn record(&mut self, what: &str, at: DateTime<Utc>) -> usize {
        let at_load_s = secs(at - self.load_started);
        println!("chaos: +{at_load_s:.1}s {what}");
        self.faults.push(Fault {
            what: what.to_owned(),
            at,
            at_load_s,
            notes: Vec::new(),
        });
        self.faults.len() - 1
    }

    pub(crate) fn note(&mut self, fault: usize, note: String) {
        println!("chaos:   {}: {note}", self.faults[fault].what);
        self.faults[fault].notes.push(note);
    }

    /// The commands in flight 2 s after `since` (sleeps until then).
    pub(crate) async fn inflight_after(&self, since: DateTime<Utc>) -> Vec<u64> {
        let settle = (since + chrono::TimeDelta::seconds(2) - Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(settle).await;
        self.crowd.inflight().into_iter().map(|(n, _)| n).collect()
    }

    /// Waits until every command of `snapshot` is done, then notes how long after `since` that was.
    async fn drain(&mut self, fault: usize, since: DateTime<Utc>, snapshot: Vec<u64>, label: &str) {
        let drained = drained(&self.crowd, since, snapshot).await;
        self.note_drain(fault, label, drained);
    }

    pub(crate) fn note_drain(&mut self, fault: usize, label: &str, drained: Drained) {
        let Drained {
            total,
            left,
            given_up,
            took,
        } = drained;
        let what = self.faults[fault].what.clone();
        if left > 0 {
            let msg = format!(
                "{what}: {left} of {total} commands in flight 2 s after it were still undecided 100 s later"
            );
            println!("chaos: VIOLATION {msg}");
            self.violations.push(msg);
            return;
        }
        if given_up > 0 {
            let msg = format!(
                "{what}: {given_up} of the {total} commands in flight 2 s after it got no outcome before their clients gave up"
            );
            println!("chaos: VIOLATION {msg}");
            self.violations.push(msg);
        }
        self.note(
            fault,
            format!("{label}: all {total} commands in flight 2 s after it were done {took:.1} s after it ({given_up} without an outcome)"),
        );
    }

    /// Fault 4: a relay that aborts after the broker confirmed a batch and before marking it. It is the only
    /// relay running, so its batch is whatever accumulated; after the abort the batch is found (on the
    /// topic, still unpublished in the outbox), and the relay is started again without the failpoint.
    pub async fn relay_abort(&mut self, stack: &mut TestStack) {
        let name = stack.spawn_worker("relay", &[("CHAOS_RELAY_ABORT_AFTER_PUBLISH", "1")]);
        let fault = self.record(
            &format!("{name}: relay with CHAOS_RELAY_ABORT_AFTER_PUBLISH=1 started"),
            Utc::now(),
        );
        let Some(status) = stack.wait_for_exit(&name, Deadline::secs(60)).await else {
            let msg = format!(
                "{name} (relay failpoint) did not abort within 60 s: no payment event to publish?"
            );
            println!("chaos: VIOLATION {msg}");
            self.violations.push(msg);
            return;
        };
        let aborted_at = Utc::now();
        {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() != Some(6) {
                self.violations.push(format!(
                    "{name} should end by SIGABRT (the failpoint), ended with {status:?}"
                ));
            }
        }
        self.note(
            fault,
            format!(
                "aborted ({status}) +{:.1}s after the load started",
                secs(aborted_at - self.load_started)
            ),
        );
        // No relay runs now: the topic holds exactly what the aborted relay produced.
        let env = &stack.env;
        let topic = &env.topics.payment_events;
        let records =
            kafka::read_all(&env.settings.kafka_brokers, topic, env.partitions(topic), 1).await;
        let on_topic: HashSet<Uuid> = records
            .iter()
            .filter_map(|r| r.json()["event_id"].as_str()?.parse().ok())
            .collect();
        let unpublished: HashSet<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM outbox WHERE published_at IS NULL")
                .fetch_all(stack.db())
                .await
                .expect("outbox")
                .into_iter()
                .collect();
        let batch: HashSet<Uuid> = on_topic.intersection(&unpublished).copied().collect();
        self.note(
            fault,
            format!(
                "batch produced but not marked: {} events ({} records on the topic, {} rows unpublished)",
                batch.len(),
                records.len(),
                unpublished.len()
            ),
        );
        if batch.is_empty() || batch.len() != on_topic.len() {
            self.violations.push(format!(
                "the aborted relay's batch: {} events on the topic, {} of them unmarked (expected all, at least one)",
                on_topic.len(),
                batch.len()
            ));
        }
        self.aborted.event_ids = batch.clone();
        stack
            .restart_with(&name, |spec| {
                spec.env
                    .retain(|(k, _)| k != "CHAOS_RELAY_ABORT_AFTER_PUBLISH")
            })
            .await;
        let restarted = Utc::now();
        self.note(fault, format!("{name} restarted without the failpoint"));
        // The restarted relay publishes the batch again and marks it.
        let ids: Vec<Uuid> = batch.into_iter().collect();
        let deadline = Deadline::secs(60);
        loop {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox WHERE event_id = ANY($1) AND published_at IS NULL",
            )
            .bind(&ids)
            .fetch_one(stack.db())
            .await
            .expect("outbox");
            if left == 0 {
                self.note(
                    fault,
                    format!(
                        "the batch was marked published {:.1} s after the restart",
                        secs(Utc::now() - restarted)
                    ),
                );
                return;
            }
            if deadline.passed() {
                self.violations.push(format!(
                    "{left} events of the aborted batch were still unpublished 60 s after the relay restarted"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Which command partitions each worker applied last: (topic, partition) -> (worker, offset), the
    /// worker with the highest last offset owning it now.
    pub(crate) async fn owners(&self) -> BTreeMap<Partition, (String, i64)> {
        let mut owners: BTreeMap<Partition, (String, i64)> = BTreeMap::new();
        for (worker, port) in &self.metrics_ports {
            for (partition, offset) in scrape_offsets(*port).await {
                let entry = owners
                    .entry(partition)
                    .or_insert_with(|| (worker.clone(), offset));
                if offset > entry.1 {
                    *entry = (worker.clone(), offset);
                }
            }
        }
        owners
    }

    /// Fault 1: `kill -9` the worker that owns the most command partitions with traffic, wait until its
    /// partitions are applied by the others, start it again and wait until it applies partitions again.
    pub async fn worker_kill(&mut self, stack: &mut TestStack) {
        let owners = self.owners().await;
        // Only partitions with traffic right now: a partition last used by the warm-up keeps the gauge of
        // whoever applied it then, and would never show a new outcome.
        let busy = busy_partitions(stack, Utc::now() - chrono::TimeDelta::seconds(3)).await;
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
                .push("no worker reported an applied partition before the kill".into());
            return;
        };
        let killed_at = Utc::now();
        let status = stack.kill9(&victim);
        let fault = self.record(&format!("kill -9 {victim} ({status})"), killed_at);
        self.note(
            fault,
            format!(
                "it owned {} partitions with traffic: {}",
                partitions.len(),
                show(&partitions, &stack.env.topics.joins)
            ),
        );

        let snapshot = self.inflight_after(killed_at).await;
        // Its partitions move: each gets a command decided after the kill, by another worker. Meanwhile
        // the commands in flight are followed to their outcome.
        let (moved, drain) = tokio::join!(
            wait_partitions_decided(stack, &partitions, killed_at, Deadline::secs(90)),
            drained(&self.crowd, killed_at, snapshot)
        );
        match moved {
            Ok((first, last)) => self.note(
                fault,
                format!(
                    "its partitions moved: first outcome on them {first:.1} s after the kill, every one of them applied again after {last:.1} s"
                ),
            ),
            Err(msg) => {
                println!("chaos: VIOLATION {msg}");
                self.violations.push(msg);
            }
        }
        let moved = self.owners().await;
        let taken: Vec<String> = partitions
            .iter()
            .filter_map(|p| moved.get(p).filter(|(w, _)| *w != victim).map(|(w, _)| w))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.note(fault, format!("taken over by {taken:?}"));
        self.note_drain(fault, "after the kill", drain);

        // Back: the restarted process is given partitions again (its own gauge), and says which of them it
        // applied commands of.
        stack.restart(&victim).await;
        let restarted_at = Utc::now();
        let fault = self.record(&format!("restart {victim} (same group)"), restarted_at);
        let snapshot = self.inflight_after(restarted_at).await;
        let port = self.metrics_ports[&victim];
        let (assigned, drain) = tokio::join!(
            wait_assigned(port, restarted_at, Deadline::secs(90)),
            drained(&self.crowd, restarted_at, snapshot)
        );
        match assigned {
            Some((count, took)) => {
                let applied: BTreeSet<Partition> = scrape_offsets(port)
                    .await
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                self.note(
                    fault,
                    format!(
                        "partitions came back: {count} assigned to it {took:.1} s after the restart; it applied commands of {}",
                        show(&applied, &stack.env.topics.joins)
                    ),
                );
            }
            None => {
                let msg = format!(
                    "restarted {victim} was assigned no partition within 90 s (see its log); the group may be wedged at the broker"
                );
                println!("chaos: VIOLATION {msg}");
                self.violations.push(msg);
            }
        }
        self.note_drain(fault, "after the restart", drain);
    }

    /// Fault 2: `kill -9` an api instance. Clients see their connections fail and go to the other one;
    /// requests they submitted to the dead one are polled there. Then it starts again on the same port.
    pub async fn api_kill(&mut self, stack: &mut TestStack, index: usize) {
        let name = format!("api-{index}");
        let killed_at = Utc::now();
        let status = stack.kill9(&name);
        let fault = self.record(&format!("kill -9 {name} ({status})"), killed_at);
        // Like a load balancer's health check, clients stop picking it a moment later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.crowd.down[index].store(true, Ordering::Relaxed);
        let snapshot = self.inflight_after(killed_at).await;
        self.drain(fault, killed_at, snapshot, "after the kill")
            .await;
        stack.restart(&name).await;
        self.crowd.down[index].store(false, Ordering::Relaxed);
        let back = Utc::now();
        self.note(
            fault,
            format!(
                "{name} restarted on its port and healthy {:.1} s after the kill",
                secs(back - killed_at)
            ),
        );
    }

    /// Fault 3: drop every connection to the test database, again and again for `outage`, as a restart
    /// would. Services must reconnect on their own.
    pub async fn database_outage(&mut self, stack: &mut TestStack, outage: Duration) {
        let started = Utc::now();
        let fault = self.record(
            &format!(
                "pg_terminate_backend on every connection of the test database, every 250 ms for {:.1} s",
                outage.as_secs_f64()
            ),
            started,
        );
        let until = Deadline::after(outage);
        let mut terminated = 0;
        let mut rounds = 0;
        while !until.passed() {
            terminated += stack.env.terminate_backends().await;
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let ended = Utc::now();
        self.note(
            fault,
            format!("{terminated} backends terminated in {rounds} rounds"),
        );
        let snapshot = self.inflight_after(ended).await;
        let deadline = Deadline::secs(60);
        loop {
            let first: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT min(completed_at) FROM requests WHERE completed_at > $1",
            )
            .bind(ended)
            .fetch_one(stack.db())
            .await
            .ok()
            .flatten();
            if let Some(first) = first {
                self.note(
                    fault,
                    format!(
                        "first outcome decided {:.2} s after the outage ended",
                        secs(first - ended)
                    ),
                );
                break;
            }
            if deadline.passed() {
                self.violations
                    .push("no command was decided within 60 s of the database outage".into());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.drain(fault, ended, snapshot, "after the outage").await;
    }
}

/// What became of the commands in flight at a moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drained {
    total: usize,
    /// Still in flight at the deadline.
    left: usize,
    /// Ended without an outcome (their client gave up).
    given_up: usize,
    /// Seconds after `since` when the last one was done.
    took: f64,
}

/// Waits (up to 100 s) until none of `snapshot` is in flight any more.
pub(crate) async fn drained(crowd: &Crowd, since: DateTime<Utc>, snapshot: Vec<u64>) -> Drained {
    let deadline = Deadline::secs(100);
    loop {
        let left = crowd.still_inflight(&snapshot);
        if left == 0 || deadline.passed() {
            return Drained {
                total: snapshot.len(),
                left,
                given_up: crowd.given_up(&snapshot),
                took: secs(Utc::now() - since),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the worker on `port` reports partitions assigned (`concert_worker_assigned_partitions`);
/// returns how many and the seconds since `since`.
async fn wait_assigned(port: u16, since: DateTime<Utc>, deadline: Deadline) -> Option<(i64, f64)> {
    loop {
        let count = scrape_gauge(port, "concert_worker_assigned_partitions").await;
        if let Some(count) = count.filter(|c| *c > 0) {
            return Some((count, secs(Utc::now() - since)));
        }
        if deadline.passed() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scrape(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    match client.get(&url).send().await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A label-less gauge of a worker, `None` when it does not answer or has not set it yet.
async fn scrape_gauge(port: u16, name: &str) -> Option<i64> {
    let text = scrape(port).await;
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as i64)
    })
}

/// `concert_worker_last_offset` of a worker: (topic, partition) -> last applied offset. Empty when the
/// worker does not answer (not started yet, killed).
pub async fn scrape_offsets(port: u16) -> Vec<(Partition, i64)> {
    let text = scrape(port).await;
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("concert_worker_last_offset{")?;
            let (labels, value) = rest.split_once("} ")?;
            let mut topic = None;
            let mut partition = None;
            for label in labels.split(',') {
                let (k, v) = label.split_once('=')?;
                let v = v.trim_matches('"');
                match k {
                    "topic" => topic = Some(v.to_owned()),
                    "partition" => partition = v.parse().ok(),
                    _ => {}
                }
            }
            Some((
                (topic?, partition?),
                value.trim().parse::<f64>().ok()? as i64,
            ))
        })
        .collect()
}

pub(crate) fn show(partitions: &BTreeSet<Partition>, joins_topic: &str) -> String {
    partitions
        .iter()
        .map(|(t, p)| {
            let short = if t == joins_topic {
                "joins"
            } else {
                "bookings"
            };
            format!("{short}[{p}]")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// When each command partition last decided an outcome: (is the joins topic, partition, time).
async fn last_decided(stack: &TestStack) -> Vec<(bool, Option<i32>, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "SELECT kind = 'JOIN', source_partition, max(completed_at) FROM requests GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(stack.db())
    .await
    .unwrap_or_default()
}

/// The command partitions with an outcome decided after `since`.
pub(crate) async fn busy_partitions(
    stack: &TestStack,
    since: DateTime<Utc>,
) -> BTreeSet<Partition> {
    let rows: Vec<(bool, Option<i32>)> = sqlx::query_as(
        "SELECT DISTINCT kind = 'JOIN', source_partition FROM requests WHERE completed_at > $1",
    )
    .bind(since)
    .fetch_all(stack.db())
    .await
    .expect("requests");
    rows.into_iter()
        .filter_map(|(is_join, p)| {
            let topic = if is_join {
                &stack.env.topics.joins
            } else {
                &stack.env.topics.bookings
            };
            Some((topic.clone(), p?))
        })
        .collect()
}

/// Waits until each partition has a command decided after `since`; returns (first, last) in seconds
/// after `since`.
pub(crate) async fn wait_partitions_decided(
    stack: &TestStack,
    partitions: &BTreeSet<Partition>,
    since: DateTime<Utc>,
    deadline: Deadline,
) -> Result<(f64, f64), String> {
    let joins = stack.env.topics.joins.clone();
    loop {
        let rows: Vec<(bool, Option<i32>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT kind = 'JOIN', source_partition, min(completed_at) FROM requests \
             WHERE completed_at > $1 GROUP BY 1, 2",
        )
        .bind(since)
        .fetch_all(stack.db())
        .await
        .unwrap_or_default();
        let firsts: Vec<(Partition, DateTime<Utc>)> = rows
            .into_iter()
            .filter_map(|(is_join, p, at)| {
                let topic = if is_join {
                    joins.clone()
                } else {
                    stack.env.topics.bookings.clone()
                };
                Some(((topic, p?), at?))
            })
            .filter(|(p, _)| partitions.contains(p))
            .collect();
        if firsts.len() == partitions.len() {
            let first = firsts.iter().map(|(_, t)| *t).min().expect("non-empty");
            let last = firsts.iter().map(|(_, t)| *t).max().expect("non-empty");
            return Ok((secs(first - since), secs(last - since)));
        }
        if deadline.passed() {
            let done: BTreeSet<&Partition> = firsts.iter().map(|(p, _)| p).collect();
            let missing: BTreeSet<Partition> = partitions
                .iter()
                .filter(|p| !done.contains(p))
                .cloned()
                .collect();
            let last = last_decided(stack).await;
            return Err(format!(
                "after the worker kill at {since}, partitions {} had no command decided within the deadline; last decided per (join?, partition): {last:?}",
                show(&missing, &joins)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
