//! Abandoned places (`claim_seconds`), honest waits for a full room, and repeated joins answered without
//! publishing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_tests::{kafka, wait_until, Api, Deadline, TestStack};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::buyer;

fn policy(max: i64, active_seconds: i64, claim_seconds: i64) -> Value {
    json!({ "max_active_users": max, "active_seconds": active_seconds, "hold_seconds": 60,
            "claim_seconds": claim_seconds })
}

/// When the place `seq` was admitted (its step's `admitted_at`), once it was.
async fn admitted_at(db: &PgPool, concert_id: Uuid, seq: i64) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT admitted_at FROM admissions WHERE concert_id = $1 AND $2 BETWEEN from_seq AND upto_seq",
    )
    .bind(concert_id)
    .bind(seq)
    .fetch_optional(db)
    .await
    .expect("admissions")
}

/// The place's (claimed_at, ended_at) as stored.
async fn place_row(
    db: &PgPool,
    concert_id: Uuid,
    seq: i64,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "SELECT claimed_at, ended_at FROM queue_entries WHERE concert_id = $1 AND seq = $2",
    )
    .bind(concert_id)
    .bind(seq)
    .fetch_one(db)
    .await
    .expect("queue entry")
}

async fn status_of(api: &Api, token: &str) -> Value {
    api.queue_status(token).await.expect(200).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghost_admitted_place_frees_its_slot_after_claim_seconds() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 600, 5)).await;
    let users = api.sign_up_many("fan", 2).await;
    // The ghost joins and never comes back: a join is not a request with the queue token.
    let ghost = api.join(&users[0], concert.concert_id).await;
    let next = api.join(&users[1], concert.concert_id).await;
    let ghost_seq = stack.env.queue_seq(&ghost.queue_token);
    let next_seq = stack.env.queue_seq(&next.queue_token);
    wait_until(
        "the ghost admitted",
        Deadline::secs(20),
        Duration::from_millis(100),
        || async { admitted_at(stack.db(), concert.concert_id, ghost_seq).await },
    )
    .await;

    // The next user polls (polls while WAITING claim nothing) and gets in once the ghost's claim
    // deadline passed: not after the ghost's 600 s window.
    let active = api
        .wait_until_active(&next.queue_token, Deadline::secs(30))
        .await;
    assert_eq!(active["status"], "ACTIVE");
    let ghost_admitted = admitted_at(stack.db(), concert.concert_id, ghost_seq)
        .await
        .expect("ghost admitted");
    let next_admitted = admitted_at(stack.db(), concert.concert_id, next_seq)
        .await
        .expect("next admitted");
    let gap = (next_admitted - ghost_admitted).num_milliseconds();
    assert!(
        (5_000..15_000).contains(&gap),
        "the slot went to the next in line right after claim_seconds (5 s): {gap} ms"
    );

    let ghost_status = status_of(api, &ghost.queue_token).await;
    assert_eq!(
        (
            ghost_status["status"].as_str(),
            ghost_status["reason"].as_str()
        ),
        (Some("EXPIRED"), Some("NOT_CLAIMED")),
        "{ghost_status}"
    );
    assert!(ghost_status.get("position").is_none() && ghost_status.get("active_until").is_none());
    let (claimed, ended) = place_row(stack.db(), concert.concert_id, ghost_seq).await;
    assert!(claimed.is_none() && ended.is_some(), "ended, never claimed");
    // Claims are written in batches a few times a second.
    wait_until(
        "the poller's claim written",
        Deadline::secs(5),
        Duration::from_millis(100),
        || async {
            let (claimed, ended) = place_row(stack.db(), concert.concert_id, next_seq).await;
            assert!(ended.is_none(), "the poller's place was not ended");
            claimed.map(|_| ())
        },
    )
    .await;

    // The ghost's token no longer opens anything, and the admin sees the abandoned place.
    let dates = api
        .dates_raw(&users[0], Some(&ghost.queue_token), concert.concert_id)
        .await;
    dates.expect_problem(401, "QUEUE_TOKEN_EXPIRED");
    let room = api.room(concert.concert_id).await;
    assert_eq!(room["abandoned_total"], 1, "{room}");
    assert_eq!(room["claim_seconds"], 5, "{room}");
    assert_eq!(room["active"], 1, "{room}");

    // Joining again gives a new place at the back.
    let again = api.join(&users[0], concert.concert_id).await;
    assert_ne!(again.queue_token, ghost.queue_token);
    assert_eq!(again.status, "WAITING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_call_claims_and_the_window_end_has_its_reason() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 9, 5)).await;
    let users = api.sign_up_many("fan", 2).await;
    let first = api.join(&users[0], concert.concert_id).await;
    let second = api.join(&users[1], concert.concert_id).await;
    // The first user claims with a gated call (the dates), never with a status poll.
    wait_until(
        "the dates open to the first user",
        Deadline::secs(20),
        Duration::from_millis(200),
        || async {
            let resp = api
                .dates_raw(&users[0], Some(&first.queue_token), concert.concert_id)
                .await;
            (resp.status == 200).then_some(())
        },
    )
    .await;
    let admitted = admitted_at(
        stack.db(),
        concert.concert_id,
        stack.env.queue_seq(&first.queue_token),
    )
    .await
    .expect("admitted");
    let wait_for = (admitted + chrono::Duration::seconds(7)) - Utc::now();
    tokio::time::sleep(wait_for.to_std().unwrap_or_default()).await;

    let status = status_of(api, &first.queue_token).await;
    assert_eq!(
        status["status"], "ACTIVE",
        "claimed in time: the place keeps its slot past claim_seconds: {status}"
    );
    let waiting = status_of(api, &second.queue_token).await;
    assert_eq!(
        (waiting["status"].as_str(), waiting["position"].as_i64()),
        (Some("WAITING"), Some(1)),
        "{waiting}"
    );
    assert!(
        waiting["eta_seconds"]
            .as_i64()
            .is_some_and(|eta| (1..=3).contains(&eta)),
        "the wait is the rest of the claimed place's window: {waiting}"
    );

    api.wait_until_active(&second.queue_token, Deadline::secs(20))
        .await;
    let ended = status_of(api, &first.queue_token).await;
    assert_eq!(
        (ended["status"].as_str(), ended["reason"].as_str()),
        (Some("EXPIRED"), Some("WINDOW_ENDED")),
        "{ended}"
    );
    assert_eq!(api.room(concert.concert_id).await["abandoned_total"], 0);
}

/// A step whose every place was claimed is settled all the same once its claim deadline passed: left
/// unsettled, the retention never prunes it and the ticker visits its room on every tick forever (found by
/// the soak: `admissions` grew by a row per step of every on-sale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_places_were_all_claimed_is_settled_after_its_claim_deadline() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 600, 5)).await;
    let user = &api.sign_up_many("fan", 1).await[0];
    let place = api.join(user, concert.concert_id).await;
    wait_until(
        "the dates open to the fan (a gated call claims the place)",
        Deadline::secs(20),
        Duration::from_millis(200),
        || async {
            let resp = api
                .dates_raw(user, Some(&place.queue_token), concert.concert_id)
                .await;
            (resp.status == 200).then_some(())
        },
    )
    .await;
    // claim_seconds 5, the grace 1 s, a tick or two: settled within 10 s of the admission.
    wait_until(
        "the claimed step to be settled",
        Deadline::secs(15),
        Duration::from_millis(250),
        || async {
            let unsettled: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM admissions WHERE concert_id = $1 AND NOT claims_settled",
            )
            .bind(concert.concert_id)
            .fetch_one(stack.db())
            .await
            .expect("admissions");
            (unsettled == 0).then_some(())
        },
    )
    .await;
    let status = status_of(api, &place.queue_token).await;
    assert_eq!(
        status["status"], "ACTIVE",
        "settling ends no claimed place: {status}"
    );
    assert_eq!(api.room(concert.concert_id).await["abandoned_total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_seconds_is_validated_and_shown() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let room = api.room(concert.concert_id).await;
    assert_eq!(
        (
            room["claim_seconds"].as_i64(),
            room["abandoned_total"].as_i64()
        ),
        (Some(60), Some(0)),
        "the default policy: {room}"
    );
    for bad in [
        json!(4),
        json!(3601),
        json!(0),
        json!(-1),
        json!("60"),
        json!(1.5),
    ] {
        let mut body = policy(10, 600, 60);
        body["claim_seconds"] = bad.clone();
        let resp = api.put_policy(concert.concert_id, &body).await;
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
    for good in [5, 3600] {
        let resp = api
            .put_policy(concert.concert_id, &policy(10, 600, good))
            .await;
        assert_eq!(resp.expect(200)["claim_seconds"], good);
    }
    let omitted = json!({ "max_active_users": 10, "active_seconds": 600, "hold_seconds": 60 });
    let resp = api.put_policy(concert.concert_id, &omitted).await;
    assert_eq!(resp.expect(200)["claim_seconds"], 60, "omitted means 60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_gives_an_honest_eta_and_a_slow_retry_after() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(2, 600, 60))
        .await;
    // Two claimed places fill the room for 600 s.
    buyer(api, "first", &concert, 0).await;
    buyer(api, "second", &concert, 0).await;
    let users = api.sign_up_many("fan", 3).await;
    let mut waiting = Vec::new();
    for user in &users {
        waiting.push(api.join(user, concert.concert_id).await.queue_token);
    }
    // The buyers' claims reach every instance's cache through the database, batched (about 0.5 s):
    // until then their places count as unclaimed, ending at their claim deadline.
    let deadline = concert_tests::Deadline::after(std::time::Duration::from_secs(10));
    loop {
        let body = api.queue_status(&waiting[0]).await.expect(200).clone();
        if body["eta_seconds"].as_i64().unwrap_or_default() >= 570 || deadline.passed() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (i, token) in waiting.iter().enumerate() {
        let resp = api.queue_status(token).await;
        let body = resp.expect(200).clone();
        assert_eq!(body["position"].as_i64(), Some(i as i64 + 1), "{body}");
        let eta = body["eta_seconds"].as_i64().expect("eta_seconds");
        let expected = if i < 2 { 600 } else { 1200 };
        assert!(
            (expected - 30..=expected).contains(&eta),
            "position {} waits for the active windows to end (~{expected} s), not 0: {body}",
            i + 1
        );
        let retry: u64 = resp
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("delay-seconds");
        assert_eq!(
            retry, 30,
            "far from admission, poll every 30 s, not every second"
        );
    }

    // A room held by a ghost frees at its claim deadline: the estimate says so.
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 600, 20))
        .await;
    let ghost_user = api.sign_up("ghost").await;
    let ghost = api.join(&ghost_user, concert.concert_id).await;
    let waiter = api.join(&users[0], concert.concert_id).await;
    wait_until(
        "the ghost admitted",
        Deadline::secs(20),
        Duration::from_millis(100),
        || async {
            admitted_at(
                stack.db(),
                concert.concert_id,
                stack.env.queue_seq(&ghost.queue_token),
            )
            .await
        },
    )
    .await;
    // Give the cache a refresh to see the step.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let resp = api.queue_status(&waiter.queue_token).await;
    let body = resp.expect(200).clone();
    let eta = body["eta_seconds"].as_i64().expect("eta_seconds");
    assert!(
        (15..=22).contains(&eta),
        "the ghost's slot is expected back at its claim deadline (20 s): {body}"
    );
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (3..=10).contains(&retry),
        "Retry-After follows the estimate and stays under half of claim_seconds: {retry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_join_while_live_publishes_nothing() {
    let stack = TestStack::start_with(2, 1).await;
    let (api, other) = (&stack.apis()[0], &stack.apis()[1]);
    let concert = api.create_concert(1, 1000).await;
    api.set_policy(concert.concert_id, &policy(1, 600, 60))
        .await;
    let (_, _active_token) = buyer(api, "first", &concert, 0).await;
    let user = api.sign_up("ada").await;
    let first = api.join_raw(&user, concert.concert_id).await;
    let first = first.expect(201).clone();
    let joins_topic = stack.env.topics.joins.clone();
    let partitions = stack.env.partitions(&joins_topic);
    let brokers = stack.env.settings.kafka_brokers.clone();
    let before = kafka::read_all(&brokers, &joins_topic, partitions, 2)
        .await
        .len();
    assert_eq!(before, 2, "two joins so far");

    // Give the other instance a moment to read the JOIN reply.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for instance in [api, other, api, other] {
        let again = instance.join_raw(&user, concert.concert_id).await;
        let body = again.expect(201);
        assert_eq!(body["queue_token"], first["queue_token"], "{body}");
        assert_eq!(body["request_id"], first["request_id"], "{body}");
        assert_eq!(body["status"], "WAITING");
        assert_eq!(body["position"], 1);
    }
    let after = kafka::read_all(&brokers, &joins_topic, partitions, before).await;
    assert_eq!(
        after.len(),
        before,
        "nothing was published for the repeated joins: {:?}",
        after.iter().map(|r| r.json()).collect::<Vec<_>>()
    );
    let request = api
        .request_raw(&user, first["request_id"].as_str().unwrap(), None)
        .await;
    assert_eq!(request.expect(200)["status"], "SUCCEEDED");
}
