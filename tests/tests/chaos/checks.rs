//! The invariants, checked from Postgres and the topics once the load stopped and everything settled, and
//! the figures of the run. Every check runs and adds what it found to a list, so one failing run reports
//! all that broke, next to the figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_core::commands::CommandKind;
use concert_tests::{kafka, wait_until, Deadline, TestStack};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::faults::{AbortedBatch, Fault};
use crate::load::{Log, Seen, HOT_SEATS};

/// What the checks found, and the figures to print.
pub struct Verdict {
    pub figures: String,
    pub violations: Vec<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct RequestRow {
    request_id: Uuid,
    user_id: Uuid,
    kind: String,
    status: String,
    code: Option<String>,
    result: Option<Value>,
}

#[derive(Debug, sqlx::FromRow)]
struct HoldRow {
    hold_id: Uuid,
    date_id: Uuid,
    seat_no: i32,
    state: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

async fn scalar(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// Waits for the relays to publish every outbox row (a deadline, not a sleep).
pub async fn settle(stack: &TestStack) {
    wait_until(
        "every outbox row to be published",
        Deadline::secs(60),
        Duration::from_millis(100),
        || async {
            (scalar(
                stack.db(),
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            )
            .await
                == 0)
                .then_some(())
        },
    )
    .await;
}

pub async fn verify(
    stack: &TestStack,
    log: &Log,
    faults: &[Fault],
    aborted: &AbortedBatch,
    mut violations: Vec<String>,
    load_secs: f64,
) -> Verdict {
    let db = stack.db();
    let mut fig = String::new();
    let v = &mut violations;

    // ---- every accepted request: exactly one final outcome, the one its client saw ----
    let rows: Vec<RequestRow> = sqlx::query_as(
        "SELECT request_id, user_id, kind, status, error->>'code' AS code, result FROM requests",
    )
    .fetch_all(db)
    .await
    .expect("requests");
    let stored: HashMap<Uuid, &RequestRow> = rows.iter().map(|r| (r.request_id, r)).collect();
    let mut seen_ids: HashMap<Uuid, &Seen> = HashMap::new();
    for seen in &log.seen {
        if seen_ids.insert(seen.request_id, seen).is_some() {
            v.push(format!(
                "request {} was reported to its client twice",
                seen.request_id
            ));
        }
    }
    let mut mismatches = Vec::new();
    for seen in &log.seen {
        let Some(row) = stored.get(&seen.request_id) else {
            mismatches.push(format!(
                "{} {} seen {} by its client but not stored",
                seen.kind.as_str(),
                seen.request_id,
                seen.status
            ));
            continue;
        };
        if row.user_id != seen.user {
            mismatches.push(format!(
                "{} {}: stored for user {}, submitted by {}",
                seen.kind.as_str(),
                seen.request_id,
                row.user_id,
                seen.user
            ));
            continue;
        }
        if row.kind != seen.kind.as_str() || row.status != seen.status || row.code != seen.code {
            mismatches.push(format!(
                "{} {}: stored {} {} {:?}, client saw {} {:?}",
                seen.kind.as_str(),
                seen.request_id,
                row.kind,
                row.status,
                row.code,
                seen.status,
                seen.code
            ));
            continue;
        }
        if seen.status == "SUCCEEDED" {
            let result = row.result.clone().unwrap_or(Value::Null);
            let same = match seen.kind {
                CommandKind::Join => {
                    seen.result["queue_token"]
                        .as_str()
                        .map(|t| stack.env.queue_seq(t))
                        == result["seq"].as_i64()
                }
                CommandKind::Hold => seen.result["hold_id"] == result["hold_id"],
                CommandKind::Pay => seen.result["payment_id"] == result["payment_id"],
                CommandKind::Release => seen.result["hold_id"] == result["hold_id"],
                CommandKind::Cancel => seen.result["refund_id"] == result["refund_id"],
                CommandKind::CancelDate => seen.result == result,
            };
            if !same {
                mismatches.push(format!(
                    "{} {}: stored result {result}, client saw {}",
                    seen.kind.as_str(),
                    seen.request_id,
                    seen.result
                ));
            }
        }
    }
    if !mismatches.is_empty() {
        v.push(format!(
            "{} outcomes differ between the client and the store: {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(10)]
        ));
    }
    let pending: Vec<_> = rows
        .iter()
        // REFUSED: answered 503 after a publish the broker did not confirm; its client retries (which
        // lifts the refusal) or gave up, and the 5xx check below looks at what became of it.
        .filter(|r| !["SUCCEEDED", "FAILED", "REFUSED"].contains(&r.status.as_str()))
        .map(|r| r.request_id)
        .collect();
    if !pending.is_empty() {
        v.push(format!(
            "{} requests are not final in the store: {:?}",
            pending.len(),
            &pending[..pending.len().min(10)]
        ));
    }
    if !log.undecided.is_empty() {
        let some: Vec<String> = log
            .undecided
            .iter()
            .take(10)
            .map(|u| {
                format!(
                    "{} {} ({}; last answer: {})",
                    u.kind.as_str(),
                    u.request_id,
                    if u.accepted {
                        "accepted"
                    } else {
                        "never accepted"
                    },
                    u.last_answer
                )
            })
            .collect();
        v.push(format!(
            "{} commands got no outcome their client could see: {some:?}",
            log.undecided.len()
        ));
    }
    let clients: HashSet<Uuid> = log.users.iter().copied().collect();
    let given_up: HashSet<Uuid> = log.undecided.iter().map(|u| u.request_id).collect();
    // Commands the workers put on the log themselves (a checkout's releases of the payer's holds on other
    // dates, through the outbox) have no client to answer.
    let from_workers: HashSet<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM outbox WHERE topic = 'commands.bookings'")
            .fetch_all(db)
            .await
            .expect("commands in the outbox")
            .into_iter()
            .collect();
    let unknown: Vec<String> = rows
        .iter()
        .filter(|r| clients.contains(&r.user_id) && !from_workers.contains(&r.request_id))
        .filter(|r| !seen_ids.contains_key(&r.request_id) && !given_up.contains(&r.request_id))
        .map(|r| format!("{} {} {} {:?}", r.kind, r.request_id, r.status, r.code))
        .collect();
    if !unknown.is_empty() {
        v.push(format!(
            "{} stored requests of the crowd were never answered to a client (a retried submit refused at the edge, see \"refused at the edge\"?): {:?}",
            unknown.len(),
            &unknown[..unknown.len().min(10)]
        ));
    }

    // ---- seats: sold once; holds: never two live at once on a seat ----
    let sold = scalar(db, "SELECT count(*) FROM reservations").await;
    let oversold = scalar(
        db,
        "SELECT count(*) FROM (SELECT 1 FROM reservations GROUP BY date_id, seat_no HAVING count(*) > 1) t",
    )
    .await;
    if oversold > 0 {
        v.push(format!("{oversold} seats were sold more than once"));
    }
    let seat_mismatch = scalar(
        db,
        "SELECT count(*) FROM seats s FULL JOIN reservations r ON r.reservation_id = s.reservation_id \
         WHERE (s.reservation_id IS NULL) <> (r.reservation_id IS NULL) \
            OR s.date_id <> r.date_id OR s.seat_no <> r.seat_no",
    )
    .await;
    if seat_mismatch > 0 {
        v.push(format!(
            "{seat_mismatch} seats and reservations disagree on who bought what"
        ));
    }
    let sold_and_held = scalar(
        db,
        "SELECT count(*) FROM seats WHERE reservation_id IS NOT NULL AND hold_id IS NOT NULL",
    )
    .await;
    if sold_and_held > 0 {
        v.push(format!("{sold_and_held} seats are both sold and held"));
    }
    let hot_sold = scalar(
        db,
        &format!("SELECT count(*) FROM reservations WHERE seat_no <= {HOT_SEATS}"),
    )
    .await;
    let holds: Vec<HoldRow> = sqlx::query_as(
        "SELECT hold_id, date_id, seat_no, state, created_at, expires_at, ended_at FROM holds \
         ORDER BY date_id, seat_no, created_at, hold_id",
    )
    .fetch_all(db)
    .await
    .expect("holds");
    let mut overlaps = Vec::new();
    let mut by_seat: BTreeMap<(Uuid, i32), Vec<&HoldRow>> = BTreeMap::new();
    for hold in &holds {
        by_seat
            .entry((hold.date_id, hold.seat_no))
            .or_default()
            .push(hold);
    }
    for ((date, seat), list) in &by_seat {
        // Each hold is live over [created_at, min(expires_at, ended_at)); sorted by start, each must
        // start no earlier than every earlier one ended.
        let mut live_until: Option<(DateTime<Utc>, Uuid)> = None;
        for hold in list {
            let end = hold
                .ended_at
                .map_or(hold.expires_at, |e| e.min(hold.expires_at));
            if let Some((until, other)) = live_until {
                if hold.created_at < until {
                    overlaps.push(format!(
                        "seat {seat} of {date}: hold {} from {} while {other} was live until {until}",
                        hold.hold_id, hold.created_at
                    ));
                }
            }
            if live_until.is_none_or(|(u, _)| end > u) {
                live_until = Some((end, hold.hold_id));
            }
        }
    }
    if !overlaps.is_empty() {
        v.push(format!(
            "{} holds overlap a live hold on the same seat: {:?}",
            overlaps.len(),
            &overlaps[..overlaps.len().min(10)]
        ));
    }
    let mut holds_by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for hold in &holds {
        *holds_by_state.entry(hold.state.as_str()).or_default() += 1;
    }
    let hold_ids: HashSet<Uuid> = holds.iter().map(|h| h.hold_id).collect();
    let won_holds: Vec<&Seen> = log
        .seen
        .iter()
        .filter(|s| s.kind == CommandKind::Hold && s.status == "SUCCEEDED")
        .collect();
    let missing_holds = won_holds
        .iter()
        .filter(|s| {
            s.result["hold_id"]
                .as_str()
                .and_then(|h| h.parse().ok())
                .is_none_or(|h: Uuid| !hold_ids.contains(&h))
        })
        .count();
    if missing_holds > 0 || won_holds.len() != holds.len() {
        v.push(format!(
            "{} SUCCEEDED holds seen by clients, {} hold rows, {missing_holds} seen holds without a row",
            won_holds.len(),
            holds.len()
        ));
    }

    // ---- money ----
    let charges = scalar(
        db,
        "SELECT coalesce(sum(amount), 0)::bigint FROM balance_ledger WHERE kind = 'CHARGE'",
    )
    .await;
    let ledger_payments = scalar(
        db,
        "SELECT coalesce(sum(amount), 0)::bigint FROM balance_ledger WHERE kind = 'PAYMENT'",
    )
    .await;
    let refunds = scalar(
        db,
        "SELECT coalesce(sum(amount), 0)::bigint FROM balance_ledger WHERE kind = 'REFUND'",
    )
    .await;
    let balances = scalar(db, "SELECT coalesce(sum(balance), 0)::bigint FROM users").await;
    let payments_sum = scalar(db, "SELECT coalesce(sum(amount), 0)::bigint FROM payments").await;
    let payments = scalar(db, "SELECT count(*) FROM payments").await;
    if charges + refunds != balances + payments_sum {
        v.push(format!(
            "money not conserved: charges {charges} + refunds {refunds} != balances {balances} + payments {payments_sum}"
        ));
    }
    if ledger_payments != payments_sum {
        v.push(format!(
            "ledger PAYMENT sum {ledger_payments} != payments sum {payments_sum}"
        ));
    }
    let users_off = scalar(
        db,
        "SELECT count(*) FROM users u WHERE u.balance <> coalesce((SELECT sum(CASE WHEN kind = 'PAYMENT' THEN -amount ELSE amount END) FROM balance_ledger l WHERE l.user_id = u.user_id), 0)",
    )
    .await;
    if users_off > 0 {
        v.push(format!(
            "{users_off} users' balances differ from the sum of their ledger"
        ));
    }
    if charges < log.charged_acked || charges > log.charged_acked + log.charged_unknown {
        v.push(format!(
            "charges in the ledger {charges} are outside what clients were told: {} acknowledged + up to {} unanswered",
            log.charged_acked, log.charged_unknown
        ));
    }
    let won_pays: Vec<&Seen> = log
        .seen
        .iter()
        .filter(|s| s.kind == CommandKind::Pay && s.status == "SUCCEEDED")
        .collect();
    if won_pays.len() as i64 != payments {
        v.push(format!(
            "{} SUCCEEDED payments seen by clients, {payments} payment rows",
            won_pays.len()
        ));
    }

    // ---- payments = distinct payment events ----
    let outbox: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT event_id, (payload->>'payment_id')::uuid FROM outbox WHERE topic = 'events.payments' ORDER BY id")
            .fetch_all(db)
            .await
            .expect("outbox");
    let payment_ids: HashSet<Uuid> = sqlx::query_scalar("SELECT payment_id FROM payments")
        .fetch_all(db)
        .await
        .expect("payments")
        .into_iter()
        .collect();
    let env = &stack.env;
    let topic = &env.topics.payment_events;
    let records = kafka::read_all(
        &env.settings.kafka_brokers,
        topic,
        env.partitions(topic),
        outbox.len() + aborted.event_ids.len(),
    )
    .await;
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    let mut event_payments: HashSet<Uuid> = HashSet::new();
    for record in &records {
        let event = record.json();
        if let Some(id) = event["event_id"].as_str().and_then(|s| s.parse().ok()) {
            *copies.entry(id).or_default() += 1;
        }
        if let Some(id) = event["payment_id"].as_str().and_then(|s| s.parse().ok()) {
            event_payments.insert(id);
        }
    }
    let outbox_ids: HashSet<Uuid> = outbox.iter().map(|(e, _)| *e).collect();
    let topic_ids: HashSet<Uuid> = copies.keys().copied().collect();
    if topic_ids != outbox_ids {
        v.push(format!(
            "event ids on {topic}: {} distinct, outbox rows: {}; missing from the topic: {}, not in the outbox: {}",
            topic_ids.len(),
            outbox_ids.len(),
            outbox_ids.difference(&topic_ids).count(),
            topic_ids.difference(&outbox_ids).count()
        ));
    }
    if outbox.len() as i64 != payments {
        v.push(format!(
            "{} outbox rows for {payments} payments",
            outbox.len()
        ));
    }
    if event_payments != payment_ids {
        v.push(format!(
            "payment ids in events ({}) differ from payments ({}): {} payments without an event",
            event_payments.len(),
            payment_ids.len(),
            payment_ids.difference(&event_payments).count()
        ));
    }
    let resent = aborted
        .event_ids
        .iter()
        .filter(|id| copies.get(id).copied().unwrap_or(0) >= 2)
        .count();
    if resent != aborted.event_ids.len() {
        v.push(format!(
            "of the {} events the aborted relay produced without marking, only {resent} were published again",
            aborted.event_ids.len()
        ));
    }

    // ---- FIFO admission ----
    let fifo = check_fifo(stack, &rows).await;
    v.extend(fifo.1);

    // ---- answers: an outage is 503 UNAVAILABLE, never another 5xx ----
    if log.anomaly_count > 0 {
        v.push(format!(
            "{} answers no client of the contract expects (first ones: {:?})",
            log.anomaly_count, log.anomalies
        ));
    }

    // ---- figures ----
    let _ = writeln!(
        fig,
        "load: {load_secs:.1} s, {} clients over {} api instances",
        log.users.len(),
        stack.apis().len()
    );
    let _ = writeln!(
        fig,
        "requests accepted (client view) / decided SUCCEEDED / FAILED, by kind:"
    );
    for kind in CommandKind::ALL {
        let of_kind: Vec<&Seen> = log.seen.iter().filter(|s| s.kind == kind).collect();
        let ok = of_kind.iter().filter(|s| s.status == "SUCCEEDED").count();
        let undecided = log.undecided.iter().filter(|u| u.kind == kind).count();
        let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &of_kind {
            if let Some(code) = &s.code {
                *codes.entry(code.as_str()).or_default() += 1;
            }
        }
        let stored_kind = rows.iter().filter(|r| r.kind == kind.as_str()).count();
        let _ = writeln!(
            fig,
            "  {:<7} accepted {:>5}  succeeded {:>5}  failed {:>5} {codes:?}  undecided {undecided}  (stored {stored_kind})",
            kind.as_str(),
            of_kind.len() + undecided,
            ok,
            of_kind.len() - ok
        );
    }
    let cross = log
        .seen
        .iter()
        .filter(|s| s.accepted_on != s.decided_on)
        .count();
    let _ = writeln!(
        fig,
        "outcomes read on another instance than the one that accepted: {cross}"
    );
    let _ = writeln!(
        fig,
        "refused at the edge (no request id): {:?}",
        log.refused_at_edge
    );
    let _ = writeln!(
        fig,
        "transport errors and 5xx seen by clients: {:?}",
        log.errors
    );
    let _ = writeln!(
        fig,
        "unexpected answers: {} {:?}",
        log.anomaly_count, log.anomalies
    );
    let _ = writeln!(
        fig,
        "seats sold: {sold} (hot seats {hot_sold}), oversold: {oversold}"
    );
    let _ = writeln!(
        fig,
        "holds: {} {holds_by_state:?}, overlapping: {}",
        holds.len(),
        overlaps.len()
    );
    let _ = writeln!(
        fig,
        "payments: {payments}, events on the topic: {} distinct / {} total, aborted batch {} re-sent {resent}",
        topic_ids.len(),
        records.len(),
        aborted.event_ids.len()
    );
    let _ = writeln!(
        fig,
        "charges sum: {charges} (clients acknowledged {} in {} charges, {} unanswered), balances sum: {balances}, payments sum: {payments_sum}, ledger PAYMENT sum: {ledger_payments}",
        log.charged_acked, log.charges_acked, log.charged_unknown
    );
    let _ = write!(fig, "{}", fifo.0);
    let _ = writeln!(fig, "faults:");
    for fault in faults {
        let _ = writeln!(fig, "  +{:.1}s {}", fault.at_load_s, fault.what);
        for note in &fault.notes {
            let _ = writeln!(fig, "      {note}");
        }
    }
    for fault in faults {
        let Some(index) = fault
            .what
            .strip_prefix("kill -9 api-")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let pending: Vec<&Seen> = log
            .seen
            .iter()
            .filter(|s| {
                s.accepted_on == index && s.submitted_at <= fault.at && s.decided_at > fault.at
            })
            .collect();
        let elsewhere = pending.iter().filter(|s| s.decided_on != index).count();
        let _ = writeln!(
            fig,
            "accepted by api-{index} before its kill and decided after it: {}, outcome read on another instance: {elsewhere}",
            pending.len()
        );
        if elsewhere == 0 {
            v.push(format!(
                "the api kill exercised nothing: no request accepted by api-{index} had its outcome read elsewhere"
            ));
        }
    }
    let per_fault = latency_around_faults(log, faults);
    let _ = write!(fig, "{per_fault}");

    // ---- a 5xx means not accepted: a command it answered never takes effect before it is sent again ----
    let FailuresAfterPublish {
        published,
        on_log,
        offending: after_publish,
        not_on_log,
    } = failures_after_publish(stack, log).await;
    // Where a lost command went: an accepted command missing from the log was lost by the broker or the
    // producer; one on the log but never decided was skipped by the consumers.
    let _ = writeln!(
        fig,
        "accepted commands missing from the command topics: {}",
        not_on_log.len()
    );
    if !not_on_log.is_empty() {
        v.push(format!(
            "{} accepted commands are not on the command topics (lost between the api and the broker): {:?}",
            not_on_log.len(),
            &not_on_log[..not_on_log.len().min(10)]
        ));
    }
    let _ = writeln!(
        fig,
        "submits answered 5xx: {}, of them with the command on the log all the same: {on_log} (refused by the api), \
         applied before the client sent it again: {} (of {published} commands on the log)",
        log.submit_failures.len(),
        after_publish.len()
    );
    if !after_publish.is_empty() {
        v.push(format!(
            "{} submits were answered 5xx after their command was published, and it took effect before the client sent it again (must be 202 with its request id, or never applied): {:?}",
            after_publish.len(),
            &after_publish[..after_publish.len().min(10)]
        ));
    }
    let poll_failures: u64 = log
        .errors
        .iter()
        .filter(|(what, _)| what.starts_with("poll 5"))
        .map(|(_, n)| n)
        .sum();
    if poll_failures > 0 {
        v.push(format!(
            "{poll_failures} polls of accepted requests were answered 5xx (must be PENDING when the outcome cannot be read)"
        ));
    }

    Verdict {
        figures: fig,
        violations,
    }
}

/// The submits answered 5xx whose command was published by that same submit (an envelope with the request
/// id, created between the submit's sending and its answer), and which of them took effect too early.
async fn failures_after_publish(stack: &TestStack, log: &Log) -> FailuresAfterPublish {
    let env = &stack.env;
    let mut created: HashMap<Uuid, Vec<DateTime<Utc>>> = HashMap::new();
    let mut published = 0;
    for topic in [&env.topics.joins, &env.topics.bookings] {
        let records =
            kafka::read_all(&env.settings.kafka_brokers, topic, env.partitions(topic), 1).await;
        published += records.len();
        for record in records {
            let envelope = record.json();
            let id = envelope["request_id"].as_str().and_then(|s| s.parse().ok());
            let at = envelope["submitted_at"]
                .as_str()
                .and_then(|s| s.parse::<DateTime<Utc>>().ok());
            if let (Some(id), Some(at)) = (id, at) {
                created.entry(id).or_default().push(at);
            }
        }
    }
    // A failed submit may have put its command on the log (the broker persisted it but did not confirm in
    // time); the api then refuses the request in the store, so that copy is never applied. The command may
    // take effect only after its client sent it again (the retry lifts the refusal).
    let applied: HashMap<Uuid, DateTime<Utc>> = sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(
        "SELECT request_id, completed_at FROM requests \
         WHERE status IN ('SUCCEEDED', 'FAILED') AND completed_at IS NOT NULL",
    )
    .fetch_all(stack.db())
    .await
    .expect("applied requests")
    .into_iter()
    .collect();
    let published_by = |(id, sent, answered): &&(Uuid, DateTime<Utc>, DateTime<Utc>)| {
        created
            .get(id)
            .is_some_and(|ats| ats.iter().any(|at| sent <= at && at <= answered))
    };
    let on_log = log.submit_failures.iter().filter(published_by).count();
    let offending = log
        .submit_failures
        .iter()
        .filter(published_by)
        .filter(|(id, _, answered)| {
            let sent_again = log
                .attempts
                .get(id)
                .and_then(|ats| ats.iter().filter(|at| *at > answered).min());
            applied
                .get(id)
                .is_some_and(|done| sent_again.is_none_or(|again| done < again))
        })
        .map(|(id, _, _)| *id)
        .collect();
    // Joins are left out of the decided ones: a join while a place is live may be answered without
    // publishing anything (the v2 contract).
    let not_on_log = log
        .seen
        .iter()
        .filter(|s| s.kind != CommandKind::Join)
        .map(|s| s.request_id)
        .chain(
            log.undecided
                .iter()
                .filter(|u| u.accepted)
                .map(|u| u.request_id),
        )
        .filter(|id| !created.contains_key(id))
        .collect();
    FailuresAfterPublish {
        published,
        on_log,
        offending,
        not_on_log,
    }
}

/// What [`failures_after_publish`] found.
struct FailuresAfterPublish {
    /// Commands on the command topics.
    published: usize,
    /// Submits answered 5xx whose command that submit put on the log.
    on_log: usize,
    /// Of those, the ones applied before their client sent them again.
    offending: Vec<Uuid>,
    /// Accepted requests (decided or not) that are not on the log at all.
    not_on_log: Vec<Uuid>,
}

/// Longest submit-to-outcome a client saw for commands in flight at each fault.
fn latency_around_faults(log: &Log, faults: &[Fault]) -> String {
    let mut out = String::new();
    let mut all: Vec<i64> = log
        .seen
        .iter()
        .map(|s| (s.decided_at - s.submitted_at).num_milliseconds())
        .collect();
    all.sort_unstable();
    let pct = |p: f64| -> i64 {
        if all.is_empty() {
            0
        } else {
            all[((all.len() - 1) as f64 * p) as usize]
        }
    };
    let _ = writeln!(
        out,
        "submit-to-outcome as clients saw it: p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    // Commands submitted from 1 s before a fault to 10 s after it: how long the slowest waited.
    for fault in faults {
        let window = |s: &&Seen| {
            s.submitted_at >= fault.at - chrono::TimeDelta::seconds(1)
                && s.submitted_at <= fault.at + chrono::TimeDelta::seconds(10)
        };
        let worst = log
            .seen
            .iter()
            .filter(window)
            .map(|s| (s.decided_at - s.submitted_at).num_milliseconds())
            .max();
        if let Some(worst) = worst {
            let _ = writeln!(
                out,
                "  submitted from 1 s before to 10 s after \"{}\": slowest outcome {:.1} s",
                fault.what,
                worst as f64 / 1000.0
            );
        }
    }
    out
}

/// Admission steps contiguous and non-overlapping per concert, seqs dense, and the order of new places
/// the order of the joins on the log. Returns (figures, violations).
async fn check_fifo(stack: &TestStack, requests: &[RequestRow]) -> (String, Vec<String>) {
    let db = stack.db();
    let mut fig = String::new();
    let mut v = Vec::new();
    let rooms: Vec<(Uuid, i64, i64)> =
        sqlx::query_as("SELECT concert_id, last_seq, admitted_upto FROM waiting_rooms")
            .fetch_all(db)
            .await
            .expect("waiting rooms");
    let steps: Vec<(Uuid, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT concert_id, from_seq, upto_seq, admitted_at FROM admissions ORDER BY concert_id, from_seq",
    )
    .fetch_all(db)
    .await
    .expect("admissions");
    let seqs: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT concert_id, seq FROM queue_entries ORDER BY concert_id, seq")
            .fetch_all(db)
            .await
            .expect("queue entries");

    let joins_stored: HashMap<Uuid, (i64, Option<i32>, Option<i64>)> = requests
        .iter()
        .filter(|r| r.kind == "JOIN" && r.status == "SUCCEEDED")
        .filter_map(|r| {
            let result = r.result.as_ref()?;
            Some((r.request_id, (result["seq"].as_i64()?, None, None)))
        })
        .collect();
    let sources: HashMap<Uuid, (Option<i32>, Option<i64>)> =
        sqlx::query_as::<_, (Uuid, Option<i32>, Option<i64>)>(
            "SELECT request_id, source_partition, source_offset FROM requests WHERE kind = 'JOIN'",
        )
        .fetch_all(db)
        .await
        .expect("join sources")
        .into_iter()
        .map(|(id, p, o)| (id, (p, o)))
        .collect();
    let env = &stack.env;
    let topic = &env.topics.joins;
    let records = kafka::read_all(
        &env.settings.kafka_brokers,
        topic,
        env.partitions(topic),
        sources.len(),
    )
    .await;

    for (concert, last_seq, admitted_upto) in &rooms {
        let mine: Vec<&(Uuid, i64, i64, DateTime<Utc>)> =
            steps.iter().filter(|s| s.0 == *concert).collect();
        let mut next = 1;
        for step in &mine {
            if step.1 != next || step.2 < step.1 {
                v.push(format!(
                    "concert {concert}: admission step {}..={} does not follow {}",
                    step.1,
                    step.2,
                    next - 1
                ));
            }
            next = step.2 + 1;
        }
        if next - 1 != *admitted_upto || admitted_upto > last_seq {
            v.push(format!(
                "concert {concert}: steps cover 1..={} but admitted_upto is {admitted_upto} (last_seq {last_seq})",
                next - 1
            ));
        }
        // Not an invariant of the contract, but worth seeing: admitted_at is the ticker transaction's
        // start, so a step that waited for the room's row lock behind another ticker's can carry an
        // earlier time than the step before it.
        let inversions: Vec<i64> = mine
            .windows(2)
            .filter(|w| w[0].3 > w[1].3)
            .map(|w| (w[0].3 - w[1].3).num_milliseconds())
            .collect();
        let entries: Vec<i64> = seqs
            .iter()
            .filter(|s| s.0 == *concert)
            .map(|s| s.1)
            .collect();
        if entries != (1..=*last_seq).collect::<Vec<_>>() {
            v.push(format!(
                "concert {concert}: queue seqs are not dense 1..={last_seq} ({} entries)",
                entries.len()
            ));
        }

        // Log order: the first copy of each join request, in offset order, gets the next new seq.
        let ours: Vec<&kafka::Record> = records
            .iter()
            .filter(|r| {
                let j = r.json();
                j["command"]["kind"] == "JOIN"
                    && j["command"]["concert_id"].as_str() == Some(&concert.to_string())
            })
            .collect();
        let partitions: HashSet<i32> = ours.iter().map(|r| r.partition).collect();
        if partitions.len() > 1 {
            v.push(format!(
                "concert {concert}: joins on {} partitions",
                partitions.len()
            ));
        }
        let mut first_copy = HashSet::new();
        let mut seen_seqs = HashSet::new();
        let mut last_new = 0;
        let mut out_of_order = Vec::new();
        let mut duplicates = 0;
        for record in &ours {
            let Some(id) = record.json()["request_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                continue;
            };
            if !first_copy.insert(id) {
                duplicates += 1;
                continue;
            }
            if let Some((partition, offset)) = sources.get(&id) {
                if (*partition, *offset) != (Some(record.partition), Some(record.offset)) {
                    out_of_order.push(format!(
                        "{id} stored from {partition:?}@{offset:?}, first on the log at {}@{}",
                        record.partition, record.offset
                    ));
                }
            }
            let Some((seq, _, _)) = joins_stored.get(&id) else {
                continue;
            };
            if seen_seqs.insert(*seq) {
                if *seq != last_new + 1 {
                    out_of_order.push(format!(
                        "{id} at offset {} got new seq {seq} after {last_new}",
                        record.offset
                    ));
                }
                last_new = *seq;
            }
        }
        if last_new != *last_seq {
            v.push(format!(
                "concert {concert}: the joins on the log account for seqs up to {last_new}, last_seq is {last_seq}"
            ));
        }
        if !out_of_order.is_empty() {
            v.push(format!(
                "concert {concert}: seq order is not log order: {:?}",
                &out_of_order[..out_of_order.len().min(10)]
            ));
        }
        let _ = writeln!(
            fig,
            "concert {concert}: {last_seq} places, {admitted_upto} admitted in {} steps, {} join records on the log ({} repeats of a request); steps with an admitted_at earlier than the step before: {} (by up to {} ms)",
            mine.len(),
            ours.len(),
            duplicates,
            inversions.len(),
            inversions.iter().max().copied().unwrap_or(0)
        );
    }
    (fig, v)
}
