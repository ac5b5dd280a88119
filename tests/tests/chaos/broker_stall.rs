//! A command the broker confirms too late. The broker is frozen (SIGSTOP) while a hold is submitted: the api
//! writes it to the still-open connection, the producer's message timeout passes without an
//! acknowledgement, and the client is answered 503. When the broker resumes it handles the produce request
//! it had been sent, so the command lands on the log all the same. The promise of a 503 is that the
//! command was not accepted: that copy must not take effect, and the client's retry with the same
//! `Idempotency-Key` must apply it once. (The broker-restart test met this by chance: nisshi takes about 5 s
//! to exit on SIGTERM, as long as the default publish timeout.)
//!
//! Runs its own nisshi, one api and one worker in process (`cargo test -p concert-tests --test chaos
//! stall -- --nocapture`). Needs nisshi installed (`./dev test` installs it).

use std::time::{Duration, Instant};

use concert_core::commands::CommandKind;
use concert_tests::broker::PrivateBroker;
use concert_tests::{kafka, wait_until, Deadline, TestStack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_broker_confirms_too_late_is_refused_and_applied_only_when_sent_again() {
    // Declared first, so it is dropped last: the stack deletes its topics on it when dropped.
    let broker = PrivateBroker::start();
    let stack = TestStack::builder()
        .kafka_brokers(&broker.address())
        .apis(1)
        .workers(1)
        .configure_apis(|config| config.limits.publish_timeout = Duration::from_secs(1))
        .start()
        .await;
    stack.warm_up().await;
    let api = stack.api().clone();
    let concert = api.create_concert(1, 1000).await;
    let date = concert.date();
    let (ada, bo) = (api.sign_up("ada").await, api.sign_up("bo").await);
    let ada_token = api.enter(&ada, concert.concert_id).await;
    let bo_token = api.enter(&bo, concert.concert_id).await;
    let hold = |key: &'static str| {
        api.post("/v1/holds")
            .auth(&ada)
            .queue(&ada_token)
            .idempotency_key(key)
            .wait(5)
            .json(&json!({ "date_id": date, "seat_no": 1 }))
    };
    let request_id =
        stack
            .env
            .request_ids()
            .for_idempotency_key(ada.user_id, CommandKind::Hold, "seat-1");

    broker.freeze();
    let started = Instant::now();
    let refused = hold("seat-1").send().await;
    let took = started.elapsed();
    // Long enough for the producer to have written the request to the frozen broker's socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.thaw();
    refused.expect_problem(503, "UNAVAILABLE");
    assert!(
        refused.json.get("request_id").is_none(),
        "a refused command names no request: {}",
        refused.text
    );
    println!("broker frozen: hold refused with 503 after {took:?}");

    // The frozen broker got the command all the same: it is on the log once the broker resumes.
    let topic = &stack.env.topics.bookings;
    let partitions = stack.env.partitions(topic);
    let brokers = stack.env.settings.kafka_brokers.clone();
    let on_log = kafka::read_all(&brokers, topic, partitions, 1)
        .await
        .iter()
        .any(|record| record.json()["request_id"] == json!(request_id));
    assert!(
        on_log,
        "the refused hold never reached the log, so this run proves nothing (was the broker frozen before the producer sent it?)"
    );
    // Another hold on the same date goes to the same partition, after that copy: once it is decided, the
    // worker has passed the refused copy.
    api.hold_ok(&bo, &bo_token, date, 2).await;
    let status: String = sqlx::query_scalar("SELECT status FROM requests WHERE request_id = $1")
        .bind(request_id)
        .fetch_one(stack.db())
        .await
        .expect("the refused request's row");
    assert_eq!(
        status, "REFUSED",
        "the copy of a command answered 503 was applied"
    );
    assert_eq!(
        api.seat_status(&ada, &ada_token, concert.concert_id, date, 1)
            .await,
        "AVAILABLE",
        "a hold answered 503 took the seat"
    );

    // The client does what a 503 asks: sends it again with the same key. It is applied once.
    let retried = api.settle(&ada, hold("seat-1").send().await).await;
    let result = retried.expect_success();
    assert_eq!(result["seat_no"], json!(1), "{result}");
    wait_until(
        "the retried hold",
        Deadline::secs(10),
        Duration::from_millis(100),
        || async {
            let holds: i64 =
                sqlx::query_scalar("SELECT count(*) FROM holds WHERE user_id = $1 AND seat_no = 1")
                    .bind(ada.user_id)
                    .fetch_one(stack.db())
                    .await
                    .expect("counting holds");
            (holds == 1).then_some(())
        },
    )
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM requests WHERE request_id = $1")
        .bind(request_id)
        .fetch_one(stack.db())
        .await
        .expect("the retried request's row");
    assert_eq!(status, "SUCCEEDED");
}
