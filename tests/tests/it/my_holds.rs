//! Holds a user can always see and give back (v2, issue 8 item 5, api side): `GET /v1/me/holds` and
//! `DELETE /v1/holds/{hold_id}` with the access token only.

use concert_tests::{Api, Resp, TestStack, User};
use serde_json::Value;
use uuid::Uuid;

use crate::support::{buyer, uuid};

async fn my_holds(api: &Api, user: &User) -> Vec<Value> {
    api.get("/v1/me/holds").auth(user).send().await.expect(200)["holds"]
        .as_array()
        .expect("holds")
        .clone()
}

/// `DELETE /v1/holds/{id}` with `Prefer: wait=10` and no queue token.
async fn release_without_token(api: &Api, user: &User, hold_id: &str) -> Resp {
    api.delete(&format!("/v1/holds/{hold_id}"))
        .auth(user)
        .wait(10)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_holds_are_listed_and_released_without_a_queue_token() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 20_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 100_000).await;
    let bob = api.sign_up("bob").await;
    assert!(my_holds(api, &ada).await.is_empty());

    let first = api.hold_ok(&ada, &token, concert.date(), 3).await;
    let second = api.hold_ok(&ada, &token, concert.date(), 4).await;
    let listed = my_holds(api, &ada).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let entry = listed
        .iter()
        .find(|h| h["hold_id"] == first["hold_id"])
        .expect("the first hold is listed");
    assert_eq!(uuid(&entry["concert_id"]), concert.concert_id);
    assert_eq!(uuid(&entry["date_id"]), concert.date());
    assert_eq!(entry["seat_no"], 3);
    assert_eq!(entry["price"], 20_000);
    assert_eq!(entry["expires_at"], first["expires_at"]);
    assert!(my_holds(api, &bob).await.is_empty(), "only the caller's");

    // The second can be given back with the access token alone ...
    let second_id = second["hold_id"].as_str().expect("hold_id");
    bob_cannot_release(api, &bob, second_id).await;
    let doc = release_without_token(api, &ada, second_id).await;
    let doc = doc.expect(200);
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("RELEASE"), Some("SUCCEEDED")),
        "{doc}"
    );
    // ... and paying the first completes the queue token and releases the caller's other live holds (v3).
    let third = api.hold_ok(&ada, &token, concert.date(), 5).await;
    let first_id = first["hold_id"].as_str().expect("hold_id");
    api.pay(&ada, &token, first_id).await.expect_success();
    assert!(
        my_holds(api, &ada).await.is_empty(),
        "a paid hold is no longer live, and the checkout released the other"
    );
    let again = api.enter(&ada, concert.concert_id).await;
    for seat in [4, 5] {
        assert_eq!(
            api.seat_status(&ada, &again, concert.concert_id, concert.date(), seat)
                .await,
            "AVAILABLE"
        );
    }
    // Releasing them again is decided by the worker: no longer held.
    let third_id = third["hold_id"].as_str().expect("hold_id");
    for hold_id in [second_id, third_id] {
        let twice = release_without_token(api, &ada, hold_id).await;
        twice.expect_problem(404, "HOLD_NOT_FOUND");
    }
}

async fn bob_cannot_release(api: &Api, bob: &User, hold_id: &str) {
    release_without_token(api, bob, hold_id)
        .await
        .expect_problem(404, "HOLD_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_the_list_need_the_user_and_know_only_real_holds() {
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let ada = api.sign_up("ada").await;
    release_without_token(api, &ada, &Uuid::new_v4().to_string())
        .await
        .expect_problem(404, "HOLD_NOT_FOUND");
    api.get("/v1/me/holds")
        .send()
        .await
        .expect_problem(401, "UNAUTHORIZED");
    api.delete(&format!("/v1/holds/{}", Uuid::new_v4()))
        .send()
        .await
        .expect_problem(401, "UNAUTHORIZED");
}

/// A hold past its deadline keeps no seat, so it is not listed even before the sweeper tidies it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_hold_is_not_listed() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let (ada, token) = buyer(api, "ada", &concert, 0).await;
    let hold = api.hold_ok(&ada, &token, concert.date(), 1).await;
    assert_eq!(my_holds(api, &ada).await.len(), 1);
    sqlx::query("UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1")
        .bind(uuid(&hold["hold_id"]))
        .execute(stack.db())
        .await
        .expect("lapsing the hold");
    assert!(my_holds(api, &ada).await.is_empty());
}
