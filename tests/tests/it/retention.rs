//! Retention over HTTP: a place pruned by the retention reads `{"status": "EXPIRED"}` (no reason) in its
//! status, at the booking gate and after an api restart (which reads no pruned place); a pruned request is
//! 404 REQUEST_NOT_FOUND. Rows are made a day old in SQL, then the workers' retention round runs.

use std::collections::HashMap;
use std::time::Duration;

use concert_core::commands::{Command, CommandEnvelope, CommandKind};
use concert_tests::{kafka, wait_until, Api, Deadline, TestStack};
use concert_workers::{prune_once, Retention, Roles};
use serde_json::{json, Value};

use crate::support::max_active;

fn retention() -> Retention {
    Retention {
        keep: Duration::from_secs(24 * 3600),
        interval: Duration::from_secs(1),
        batch: 5_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_place_reads_expired_and_its_pruned_request_is_not_found_even_after_a_restart() {
    let mut stack = TestStack::processes(1, &["consumer,ticker"]).await;
    let api = stack.api().clone();
    let db = stack.db().clone();
    let ids = stack.env.request_ids();
    let concert = api.create_concert(1, 1_000).await;
    let c = concert.concert_id;
    api.set_policy(c, &max_active(1, 600, 300)).await;
    let (ada, bob) = (api.sign_up("ada").await, api.sign_up("bob").await);

    // Ada's join carries an id issued 25 hours ago, as if she had joined yesterday (the api issues fresh
    // ids; the workers apply whatever the log holds).
    let yesterday = chrono::Utc::now().timestamp() - 25 * 3600;
    let old_request = ids.fresh_at(ada.user_id, CommandKind::Join, yesterday);
    let envelope = CommandEnvelope::new(old_request, ada.user_id, Command::Join { concert_id: c });
    kafka::produce(
        &stack.env.settings.kafka_brokers,
        &stack.env.topics.joins,
        &c.to_string(),
        &serde_json::to_vec(&envelope).expect("json"),
    )
    .await;
    // An id that old with no outcome yet reads as forgotten (404), so wait for the worker's outcome.
    let decided = wait_until(
        "the old join's outcome",
        Deadline::after(Duration::from_secs(10)),
        Duration::from_millis(100),
        || async {
            let resp = api.request_raw(&ada, &old_request.to_string(), None).await;
            (resp.status == 200).then_some(resp.json)
        },
    )
    .await;
    assert_eq!(
        decided["status"],
        json!("SUCCEEDED"),
        "a decided request is found whatever its id's age"
    );
    // Her repeated join over HTTP finds that live place.
    let ada_token = api.enter(&ada, c).await;
    assert_eq!(stack.env.queue_seq(&ada_token), 1);
    let bob_token = api.join(&bob, c).await.queue_token;
    assert_eq!(stack.env.queue_seq(&bob_token), 2);

    // Her window closed 25 hours ago, and her request was decided then.
    sqlx::query(
        "UPDATE admissions SET admitted_at = now() - interval '26 hours',
             claim_until = now() - interval '26 hours', active_until = now() - interval '25 hours'
         WHERE concert_id = $1 AND upto_seq = 1",
    )
    .bind(c)
    .execute(&db)
    .await
    .expect("backdate the step");
    sqlx::query(
        "UPDATE requests SET created_at = now() - interval '25 hours' WHERE request_id = $1",
    )
    .bind(old_request)
    .execute(&db)
    .await
    .expect("backdate the request");
    // Her slot is free again: Bob is admitted.
    api.wait_for_status(
        &bob_token,
        "ACTIVE",
        Deadline::after(Duration::from_secs(10)),
    )
    .await;

    let pruned = prune_once(&db, &retention())
        .await
        .expect("retention round");
    assert_eq!(
        (pruned.queue_entries, pruned.admissions),
        (1, 1),
        "{pruned:?}"
    );
    assert!(pruned.requests >= 1, "{pruned:?}");
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM queue_entries WHERE concert_id = $1 ORDER BY seq")
            .bind(c)
            .fetch_all(&db)
            .await
            .expect("places");
    assert_eq!(left, [2], "only Bob's place is left");

    // The status says EXPIRED and nothing else, once the api has read the room's watermark.
    let expired = json!({ "status": "EXPIRED" });
    let status_is = |token: String, wanted: Value| {
        let api = api.clone();
        async move {
            wait_until(
                "the pruned place's status",
                Deadline::after(Duration::from_secs(5)),
                Duration::from_millis(100),
                || async {
                    // A restarted api may answer 503 until its first refresh.
                    let resp = api.queue_status(&token).await;
                    (resp.status == 200 && resp.json == wanted).then_some(())
                },
            )
            .await
        }
    };
    status_is(ada_token.clone(), expired.clone()).await;
    let hold = api.hold_raw(&ada, &ada_token, concert.date(), 1).await;
    hold.expect_problem(401, "QUEUE_TOKEN_EXPIRED");
    assert_eq!(
        stream_events(&api, &ada_token).await,
        std::slice::from_ref(&expired),
        "the event stream says it once and ends"
    );

    // A restarted api reads no pruned place, and still answers it EXPIRED from the watermark.
    stack.restart("api-0").await;
    status_is(ada_token.clone(), expired).await;
    assert_eq!(
        api.queue_status(&bob_token).await.expect(200)["status"],
        json!("ACTIVE")
    );
    // The pruned request: 404 (its reply is no longer in the restarted api's memory, its row is gone).
    api.request_raw(&ada, &old_request.to_string(), None)
        .await
        .expect_problem(404, "REQUEST_NOT_FOUND");
    api.request_raw(&ada, &old_request.to_string(), Some(1))
        .await
        .expect_problem(404, "REQUEST_NOT_FOUND");
    // A recent request with no outcome yet is still PENDING, not forgotten.
    let recent = ids.fresh(ada.user_id, CommandKind::Hold);
    let pending = api.request_raw(&ada, &recent.to_string(), None).await;
    assert_eq!(pending.expect(200)["status"], json!("PENDING"));

    // Ada joins anew: a new place behind Bob.
    let again = api.join(&ada, c).await;
    assert_eq!(stack.env.queue_seq(&again.queue_token), 3);
    assert_eq!(again.status, "WAITING");
}

/// The `status` events of a place's event stream until the stream ends (within 5 s).
async fn stream_events(api: &Api, token: &str) -> Vec<Value> {
    let url = format!("{}/v1/queue/events?queue_token={token}", api.base);
    let mut response = reqwest::get(url).await.expect("opening the event stream");
    assert_eq!(response.status().as_u16(), 200);
    let mut text = String::new();
    let read_all = async {
        while let Some(chunk) = response.chunk().await.expect("reading the stream") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("the stream ends");
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l.trim() == "event: status"))
        .map(|block| {
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data).expect("status JSON")
        })
        .collect()
}

/// The api's first read of a room (at start-up) skips the places at or below the room's `pruned_upto`,
/// even before the retention deleted their rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_read_skips_places_below_the_watermark() {
    // No retention role here: the rows below the watermark must still be there when the read runs.
    let stack = TestStack::builder()
        .apis(1)
        .worker_with(Roles {
            retention: false,
            ..Roles::all()
        })
        .start()
        .await;
    let api = stack.api();
    let db = stack.db();
    let concert = api.create_concert(1, 1_000).await;
    let c = concert.concert_id;
    api.set_policy(c, &max_active(5, 600, 300)).await;
    let mut tokens = Vec::new();
    for name in ["p1", "p2", "p3"] {
        let user = api.sign_up(name).await;
        tokens.push(api.enter(&user, c).await);
    }
    // All three ended; the first two are below the watermark (their rows not deleted yet).
    sqlx::query("UPDATE queue_entries SET ended_at = now() WHERE concert_id = $1")
        .bind(c)
        .execute(db)
        .await
        .expect("end the places");
    sqlx::query("UPDATE waiting_rooms SET pruned_upto = 2 WHERE concert_id = $1")
        .bind(c)
        .execute(db)
        .await
        .expect("move the watermark");

    let first = concert_api::db::rooms::read_changes(db, &Default::default(), &HashMap::new())
        .await
        .expect("first read");
    let seqs: Vec<i64> = first
        .places
        .iter()
        .filter(|p| p.concert_id == c)
        .map(|p| p.seq)
        .collect();
    assert_eq!(seqs, [3], "only the place above the watermark is read");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_entries WHERE concert_id = $1")
        .bind(c)
        .fetch_one(db)
        .await
        .expect("count");
    assert_eq!(kept, 3, "the rows below the watermark were still there");
    let room = first
        .rooms
        .iter()
        .find(|r| r.concert_id == c)
        .expect("the room");
    assert_eq!(room.pruned_upto, 2);

    // The running api forgets them too: 1 and 2 read EXPIRED with no reason, 3 with its own.
    wait_until(
        "the watermark read",
        Deadline::after(Duration::from_secs(5)),
        Duration::from_millis(100),
        || async {
            let first = api.queue_status(&tokens[0]).await;
            (first.expect(200) == &json!({ "status": "EXPIRED" })).then_some(())
        },
    )
    .await;
    assert_eq!(
        api.queue_status(&tokens[1]).await.expect(200),
        &json!({ "status": "EXPIRED" })
    );
    assert_eq!(
        api.queue_status(&tokens[2]).await.expect(200)["reason"],
        json!("NOT_CLAIMED")
    );
}
