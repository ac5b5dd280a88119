//! The refusal the api records before it answers 503 after a publish the broker did not confirm
//! (`concert_api::db::requests::refuse`), raced against a worker that holds the same request.
//! The end-to-end case, a broker frozen while a hold is published, is the chaos suite's `broker_stall`.

use std::time::Duration;

use concert_api::db::requests::{outcome, refuse, withdraw_refusal};
use concert_core::commands::{Command, CommandEnvelope};
use concert_tests::TestEnv;
use uuid::Uuid;

fn join(user: Uuid) -> CommandEnvelope {
    CommandEnvelope::new(
        Uuid::new_v4(),
        user,
        Command::Join {
            concert_id: Uuid::new_v4(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_waits_for_a_worker_holding_the_request_and_gives_way_to_it() {
    let env = TestEnv::new().await;
    let pool = env.db.clone();
    let user = Uuid::new_v4();
    let taken = join(user);

    // A worker's batch has recorded the request as PENDING and not committed yet.
    let mut worker = pool.begin().await.expect("worker transaction");
    sqlx::query(
        "INSERT INTO requests (request_id, user_id, kind, fingerprint, status) VALUES ($1, $2, 'JOIN', $3, 'PENDING')",
    )
    .bind(taken.request_id)
    .bind(user)
    .bind(&taken.fingerprint)
    .execute(&mut *worker)
    .await
    .expect("the worker's pending row");
    let refusing = tokio::spawn({
        let (pool, taken) = (pool.clone(), taken.clone());
        async move { refuse(&pool, &taken).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !refusing.is_finished(),
        "the refusal must wait for the worker's transaction, not decide around it"
    );
    sqlx::query("UPDATE requests SET status = 'SUCCEEDED', result = '{}', completed_at = now() WHERE request_id = $1")
        .bind(taken.request_id)
        .execute(&mut *worker)
        .await
        .expect("the worker's outcome");
    worker.commit().await.expect("the worker commits");
    let refused = refusing.await.expect("refusal task").expect("refusal");
    assert!(
        !refused,
        "the worker took the command first: it was accepted after all"
    );
    assert!(outcome(&pool, taken.request_id)
        .await
        .expect("lookup")
        .is_some());

    // Nobody took this one: it is refused, a concurrent attempt of the same keyed request agrees, and the
    // refusal is not an outcome anybody is shown.
    let lost = join(user);
    assert!(refuse(&pool, &lost).await.expect("refusal"));
    assert!(
        refuse(&pool, &lost).await.expect("second refusal"),
        "a second attempt that meets the refusal refuses too"
    );
    assert!(outcome(&pool, lost.request_id)
        .await
        .expect("lookup")
        .is_none());

    // A retry with the key lifts it; only a refusal is lifted, never an outcome.
    withdraw_refusal(&pool, lost.request_id)
        .await
        .expect("withdraw");
    withdraw_refusal(&pool, taken.request_id)
        .await
        .expect("withdraw");
    let left: Vec<(Uuid, String)> = sqlx::query_as("SELECT request_id, status FROM requests")
        .fetch_all(&pool)
        .await
        .expect("rows");
    assert_eq!(left, vec![(taken.request_id, "SUCCEEDED".to_owned())]);
}
