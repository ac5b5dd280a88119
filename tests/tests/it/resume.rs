//! A consumer that takes over a partition resumes at its group's committed offset, which may lie inside a
//! record batch. Every command from that offset on must be applied, whatever the broker does with a fetch
//! that starts inside a batch (tansu 0.6's memory storage returned only the batches after it, and the
//! rest of the batch was lost: the root cause of the commands lost around a frozen worker).

use std::time::Duration;

use concert_core::commands::{Command, CommandEnvelope, CommandKind};
use concert_tests::{wait_until, Deadline, TestStack};
use concert_workers::{Roles, WorkerConfig};
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use uuid::Uuid;

/// Commands produced in one batch (then as many in a second one); the committed offset is put in the
/// middle of the first.
const BATCH: usize = 10;
const COMMITTED_AT: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_resumed_inside_a_batch_applies_every_command_from_the_committed_offset() {
    // An api to set things up, no worker yet.
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let env = &stack.env;
    let concert = api.create_concert(1, 1_000).await;
    let users = api.sign_up_many("resume", BATCH).await;
    let ids = env.request_ids();

    // Ten joins in one producer batch (a long linger), on one partition (one concert).
    let producer = concert_core::kafka::producer_with(
        &env.settings.kafka_brokers,
        300,
        Duration::from_secs(15),
    )
    .expect("producer");
    let envelopes: Vec<CommandEnvelope> = users
        .iter()
        .map(|user| {
            CommandEnvelope::new(
                ids.fresh(user.user_id, CommandKind::Join),
                user.user_id,
                Command::Join {
                    concert_id: concert.concert_id,
                },
            )
        })
        .collect();
    let payloads: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|e| serde_json::to_vec(e).expect("json"))
        .collect();
    let key = concert.concert_id.to_string();
    let sends = payloads.iter().map(|payload| {
        producer.send(
            FutureRecord::to(&env.topics.joins)
                .key(&key)
                .payload(payload),
            Duration::from_secs(10),
        )
    });
    let delivered: Vec<(i32, i64)> = join_all(sends)
        .await
        .into_iter()
        .map(|d| d.map(|d| (d.partition, d.offset)).expect("delivered"))
        .collect();
    let partition = delivered[0].0;
    let base = delivered[0].1;
    assert!(
        delivered
            .iter()
            .enumerate()
            .all(|(i, (p, o))| *p == partition && *o == base + i as i64),
        "one partition, consecutive offsets in send order: {delivered:?}"
    );

    // A second batch after it: the first is then not the newest batch of the partition.
    let later: Vec<CommandEnvelope> = users
        .iter()
        .map(|user| {
            CommandEnvelope::new(
                ids.fresh(user.user_id, CommandKind::Join),
                user.user_id,
                Command::Join {
                    concert_id: concert.concert_id,
                },
            )
        })
        .collect();
    let later_payloads: Vec<Vec<u8>> = later
        .iter()
        .map(|e| serde_json::to_vec(e).expect("json"))
        .collect();
    join_all(later_payloads.iter().map(|payload| {
        producer.send(
            FutureRecord::to(&env.topics.joins)
                .key(&key)
                .payload(payload),
            Duration::from_secs(10),
        )
    }))
    .await
    .into_iter()
    .for_each(|d| {
        d.expect("delivered");
    });

    // The group committed the middle of the first batch, as a previous owner that stopped there would have.
    let committed = base + COMMITTED_AT as i64;
    {
        let consumer: BaseConsumer =
            concert_core::kafka::client_config(&env.settings.kafka_brokers)
                .set("group.id", &env.group_id)
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&env.topics.joins, partition, Offset::Offset(committed))
            .expect("offset");
        tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync))
            .expect("committing the middle of the batch");
        // Diagnostic: tansu 0.6 reports the base offset of the newest batch + 1 as the high watermark.
        let watermarks = tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(&env.topics.joins, partition, Duration::from_secs(5))
        });
        println!("resume: offsets {base}..={} produced, committed {committed}, watermarks {watermarks:?}", base + BATCH as i64 - 1);
    }

    // A worker of that group takes the partition.
    let config = WorkerConfig {
        group_id: env.group_id.clone(),
        roles: Roles {
            consumer: true,
            ticker: false,
            sweeper: false,
            relay: false,
            retention: false,
        },
        ..WorkerConfig::for_tests(env.settings.clone())
    };
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(concert_workers::run(config, stopped));

    let after: Vec<Uuid> = envelopes[COMMITTED_AT..]
        .iter()
        .chain(&later)
        .map(|e| e.request_id)
        .collect();
    let before: Vec<Uuid> = envelopes[..COMMITTED_AT]
        .iter()
        .map(|e| e.request_id)
        .collect();
    let db = stack.db();
    wait_until(
        "every join from the committed offset on to be decided",
        Deadline::secs(60),
        Duration::from_millis(200),
        || async {
            let decided: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM requests WHERE request_id = ANY($1) AND status <> 'PENDING'",
            )
            .bind(&after)
            .fetch_one(db)
            .await
            .expect("requests");
            (decided == after.len() as i64).then_some(())
        },
    )
    .await;
    // The records below the committed offset were read again (the rewind) but not applied: the previous
    // owner had applied them.
    let applied_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM requests WHERE request_id = ANY($1)")
            .bind(&before)
            .fetch_one(db)
            .await
            .expect("requests");
    assert_eq!(
        applied_before, 0,
        "records below the committed offset are skipped"
    );
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
}
