//! A command the workers cannot read: parked on the dead-letter topic, its request ended FAILED with
//! `INTERNAL` (so its poller stops), and the partition goes on with the commands after it.

use concert_core::commands::CommandKind;
use concert_tests::{kafka, TestStack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_command_is_parked_and_its_request_fails_with_internal() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let env = &stack.env;
    let concert = api.create_concert(1, 1_000).await;
    let user = api.sign_up("dee").await;
    let token = api.enter(&user, concert.concert_id).await;

    // What an api of another version could send: the envelope is there, the command is not readable.
    let request_id = env.request_ids().fresh(user.user_id, CommandKind::Hold);
    let payload = json!({
        "request_id": request_id,
        "user_id": user.user_id,
        "submitted_at": chrono::Utc::now(),
        "fingerprint": "from-a-newer-api",
        "command": { "kind": "HOLD", "date_id": concert.date(), "seat_no": "seven" }
    });
    let brokers = &env.settings.kafka_brokers;
    kafka::produce(
        brokers,
        &env.topics.bookings,
        &concert.date().to_string(),
        payload.to_string().as_bytes(),
    )
    .await;

    // Its poller gets an outcome: FAILED with INTERNAL, naming the request.
    let resp = api
        .request_raw(&user, &request_id.to_string(), Some(10))
        .await;
    let problem = resp.expect_problem(500, "INTERNAL");
    assert_eq!(problem["request_id"], json!(request_id), "{}", resp.text);
    let doc = api.request_raw(&user, &request_id.to_string(), None).await;
    let doc = doc.expect(200);
    assert_eq!(
        (
            doc["status"].as_str(),
            doc["kind"].as_str(),
            doc["error"]["code"].as_str()
        ),
        (Some("FAILED"), Some("HOLD"), Some("INTERNAL")),
        "{doc}"
    );

    // It is parked, whole, with the reason.
    let parked = kafka::read_all(
        brokers,
        &env.topics.dead_letters,
        env.partitions(&env.topics.dead_letters),
        1,
    )
    .await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].json(), payload);

    // The partition goes on: a hold after it on the same date is applied.
    let hold = api.hold_ok(&user, &token, concert.date(), 1).await;
    assert!(hold.get("hold_id").is_some(), "{hold}");
}
