//! Balance, charges and the balance history.

use concert_tests::TestStack;
use serde_json::json;

use crate::support::time;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_add_up_and_the_balance_reads_back() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    assert_eq!(api.balance(&user).await, 0);

    let resp = api
        .post("/v1/me/balance/charges")
        .auth(&user)
        .json(&json!({ "amount": 1000 }))
        .send()
        .await;
    assert_eq!(resp.expect(200), &json!({ "balance": 1000 }));
    assert_eq!(api.charge(&user, 500).await, 1500);
    assert_eq!(api.balance(&user).await, 1500);

    let other = api.sign_up("bob").await;
    assert_eq!(api.balance(&other).await, 0, "balances are per user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_amounts_are_refused_and_change_nothing() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    api.charge(&user, 10).await;

    let bad = [
        json!(0),
        json!(-1),
        json!(-1000),
        json!(1.5),
        json!("100"),
        json!(10_000_001),
    ];
    for amount in bad {
        let resp = api
            .post("/v1/me/balance/charges")
            .auth(&user)
            .json(&json!({ "amount": amount }))
            .send()
            .await;
        resp.expect_problem(422, "INVALID_AMOUNT");
    }
    // A positive integer far beyond the maximum (and beyond i64) is an invalid amount, not a crash.
    let huge = api
        .post("/v1/me/balance/charges")
        .auth(&user)
        .raw("application/json", r#"{"amount": 100000000000000000000}"#)
        .send()
        .await;
    huge.expect_problem(422, "INVALID_AMOUNT");
    assert_eq!(api.balance(&user).await, 10);

    assert_eq!(
        api.charge(&user, 10_000_000).await,
        10_000_010,
        "exactly MAX_CHARGE is allowed"
    );
    let entries = api.history(&user, 100).await;
    assert_eq!(entries.len(), 2, "refused charges leave no ledger row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_may_not_exceed_one_billion() {
    use futures::StreamExt;
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("rich").await;
    let balances: Vec<i64> = futures::stream::iter(0..100)
        .map(|_| api.charge(&user, 10_000_000))
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(balances.iter().max(), Some(&1_000_000_000));
    assert_eq!(
        api.balance(&user).await,
        1_000_000_000,
        "a balance of exactly 1,000,000,000 is allowed"
    );

    let resp = api
        .post("/v1/me/balance/charges")
        .auth(&user)
        .json(&json!({ "amount": 1 }))
        .send()
        .await;
    resp.expect_problem(422, "INVALID_AMOUNT");
    assert_eq!(api.balance(&user).await, 1_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_newest_first_and_pages() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    let other = api.sign_up("bob").await;

    let empty = api.get("/v1/me/balance/history").auth(&user).send().await;
    let body = empty.expect(200);
    assert_eq!(body["entries"], json!([]));
    assert!(
        body.get("next_cursor").is_none_or(|c| c.is_null()),
        "no next page of an empty history: {body}"
    );

    for amount in 1..=7 {
        api.charge(&user, amount).await;
    }
    api.charge(&other, 99).await;

    let first = api
        .get("/v1/me/balance/history?limit=3")
        .auth(&user)
        .send()
        .await;
    let first = first.expect(200);
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(3));
    assert!(
        first["next_cursor"].is_string(),
        "a full first page has a next_cursor: {first}"
    );

    let paged = api.history(&user, 3).await;
    let amounts: Vec<i64> = paged
        .iter()
        .map(|e| e["amount"].as_i64().expect("amount"))
        .collect();
    assert_eq!(
        amounts,
        vec![7, 6, 5, 4, 3, 2, 1],
        "newest first, nothing repeated or lost across pages"
    );
    let after: Vec<i64> = paged
        .iter()
        .map(|e| e["balance_after"].as_i64().expect("balance_after"))
        .collect();
    assert_eq!(after, vec![28, 21, 15, 10, 6, 3, 1]);
    assert!(paged.iter().all(|e| e["kind"] == "CHARGE"));
    let times: Vec<_> = paged.iter().map(|e| time(&e["at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "`at` does not increase down the list"
    );

    let whole = api.get("/v1/me/balance/history").auth(&user).send().await;
    let whole = whole.expect(200);
    assert_eq!(
        whole["entries"].as_array().map(Vec::len),
        Some(7),
        "the default limit (50) takes all seven"
    );
    assert!(
        whole.get("next_cursor").is_none_or(|c| c.is_null()),
        "no next page: {whole}"
    );
    assert_eq!(
        api.history(&user, 100).await,
        paged,
        "one page of 100 equals the pages of 3"
    );

    for limit in ["0", "101", "abc", "-1"] {
        let resp = api
            .get(&format!("/v1/me/balance/history?limit={limit}"))
            .auth(&user)
            .send()
            .await;
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
}

/// A top-up retried with its Idempotency-Key (after a timeout, say) is credited once: every copy, sent one
/// after another or all at once through two api instances, answers the balance right after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_top_up_repeated_with_its_idempotency_key_is_credited_once() {
    let stack = TestStack::start_with(2, 1).await;
    let apis = stack.apis();
    let user = apis[0].sign_up("ada").await;
    apis[0].charge(&user, 100).await;

    let keyed = |api: &concert_tests::Api, key: &str, amount: i64| {
        api.post("/v1/me/balance/charges")
            .auth(&user)
            .idempotency_key(key)
            .json(&json!({ "amount": amount }))
    };
    let first = keyed(&apis[0], "top-up-1", 1000).send().await;
    assert_eq!(first.expect(200), &json!({ "balance": 1100 }));
    let again = keyed(&apis[1], "top-up-1", 1000).send().await;
    assert_eq!(
        again.expect(200),
        &json!({ "balance": 1100 }),
        "the first outcome"
    );
    assert_eq!(apis[0].balance(&user).await, 1100, "credited once");

    // Another amount under the same key is a mistake of the client's, not a new top-up.
    let reused = keyed(&apis[1], "top-up-1", 5000).send().await;
    reused.expect_problem(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(apis[0].balance(&user).await, 1100);

    // 40 copies of a new key at once, half through each instance: one credit, one answer.
    let copies = (0..40).map(|i| {
        let request = keyed(&apis[i % 2], "top-up-2", 700);
        async move { request.send().await }
    });
    let answers = futures::future::join_all(copies).await;
    for answer in &answers {
        assert_eq!(answer.expect(200), &json!({ "balance": 1800 }));
    }
    assert_eq!(
        apis[0].balance(&user).await,
        1800,
        "40 racing copies credited once"
    );
    let charges = apis[0]
        .history(&user, 100)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "CHARGE")
        .count();
    assert_eq!(charges, 3, "one ledger row per credited top-up");

    // The key is the user's own: another user's same key is another top-up.
    let other = apis[0].sign_up("bob").await;
    let theirs = apis[0]
        .post("/v1/me/balance/charges")
        .auth(&other)
        .idempotency_key("top-up-1")
        .json(&json!({ "amount": 1000 }))
        .send()
        .await;
    assert_eq!(theirs.expect(200), &json!({ "balance": 1000 }));
}
