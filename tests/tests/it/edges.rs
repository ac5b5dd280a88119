//! Edges (v2, issue 8 item 6): control characters and over-long text, an Idempotency-Key reused with another
//! body while the first is still pending, and cursor pagination of the concert and reservation lists.

use std::collections::HashSet;

use concert_tests::{Api, TestStack, User};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{buyer, count, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_with_control_characters_or_over_200_characters_is_refused() {
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let bad = [
        "nul\u{0}inside".to_owned(),
        "\u{0}".to_owned(),
        "line\nbreak".to_owned(),
        "tab\there".to_owned(),
        "escape\u{1b}[31m".to_owned(),
        "del\u{7f}".to_owned(),
        "c1\u{85}".to_owned(),
        "n".repeat(201),
    ];
    for name in &bad {
        let resp = api
            .post("/v1/users")
            .json(&json!({ "name": name }))
            .send()
            .await;
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
    // 200 characters is the limit, counted in characters, not bytes (600 bytes here).
    let longest = "가".repeat(200);
    api.post("/v1/users")
        .json(&json!({ "name": longest }))
        .send()
        .await
        .expect(201);

    let date = json!([{ "starts_at": concert_tests::client::future_date(10), "price": 1000 }]);
    for (title, venue) in [
        ("nul\u{0}title", "Seoul"),
        ("Title", "venue\u{0}"),
        ("Title\r\n", "Seoul"),
        (&*"t".repeat(201), "Seoul"),
        ("Title", &*"v".repeat(201)),
    ] {
        let resp = api
            .admin(reqwest::Method::POST, "/v1/admin/concerts")
            .json(&json!({ "title": title, "venue": venue, "dates": date }))
            .send()
            .await;
        resp.expect_problem(400, "VALIDATION_FAILED");
    }
    assert_eq!(
        count(stack.db(), "SELECT count(*) FROM concerts", None).await,
        0
    );
    let resp = api
        .admin(reqwest::Method::POST, "/v1/admin/concerts")
        .json(&json!({ "title": "가".repeat(200), "venue": "나".repeat(200), "dates": date }))
        .send()
        .await;
    resp.expect(201);
    assert_eq!(
        count(stack.db(), "SELECT count(*) FROM users", None).await,
        1,
        "only the valid user was created"
    );
}

/// Without workers nothing is decided: the first use of a key stays pending, and a second use with another
/// body must be refused anyway (not answered 202 and later with the first body's outcome).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_key_with_another_body_while_pending_is_refused() {
    let stack = TestStack::builder().apis(2).start().await;
    let (api, other) = (&stack.apis()[0], &stack.apis()[1]);
    let first_concert = api.create_concert(1, 1_000).await;
    let second_concert = api.create_concert(1, 1_000).await;
    let ada = api.sign_up("ada").await;
    let join = |api: &Api, concert: Uuid, key: &str| {
        api.post(&format!("/v1/concerts/{concert}/queue"))
            .auth(&ada)
            .header("prefer", "wait=0")
            .idempotency_key(key)
            .send()
    };

    let first = join(api, first_concert.concert_id, "k-1").await;
    let first_id = first.expect(202)["request_id"].clone();
    let retry = join(other, first_concert.concert_id, "k-1").await;
    assert_eq!(
        retry.expect(202)["request_id"],
        first_id,
        "same key and body: the same request"
    );
    for api in [api, other] {
        join(api, second_concert.concert_id, "k-1")
            .await
            .expect_problem(422, "IDEMPOTENCY_KEY_REUSED");
    }
    assert_eq!(
        count(
            stack.db(),
            "SELECT count(*) FROM idempotency_keys WHERE user_id = $1",
            Some(ada.user_id)
        )
        .await,
        1,
        "one key, one recorded body"
    );
}

/// Two instances racing with one key and two bodies: exactly one body wins, everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reuses_of_one_key_agree_on_one_body() {
    let stack = TestStack::builder()
        .apis(2)
        .rate_limit_per_user(1000)
        .start()
        .await;
    let apis = stack.apis();
    let concerts = [
        apis[0].create_concert(1, 1_000).await.concert_id,
        apis[0].create_concert(1, 1_000).await.concert_id,
    ];
    let ada = apis[0].sign_up("ada").await;
    let answers = futures::future::join_all((0..20).map(|i| {
        let concert = concerts[i % 2];
        apis[(i / 2) % 2]
            .post(&format!("/v1/concerts/{concert}/queue"))
            .auth(&ada)
            .header("prefer", "wait=0")
            .idempotency_key("race")
            .send()
    }))
    .await;
    let winners: HashSet<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == 202)
        .map(|(i, _)| i % 2)
        .collect();
    assert_eq!(winners.len(), 1, "one body wins: {:?}", statuses(&answers));
    let winner = *winners.iter().next().expect("a winner");
    for (i, resp) in answers.iter().enumerate() {
        if i % 2 == winner {
            resp.expect(202);
        } else {
            resp.expect_problem(422, "IDEMPOTENCY_KEY_REUSED");
        }
    }
}

fn statuses(answers: &[concert_tests::Resp]) -> Vec<u16> {
    answers.iter().map(|r| r.status).collect()
}

/// Every item of a paged list, following `next_cursor` with pages of `limit`.
async fn all_pages(
    api: &Api,
    user: Option<&User>,
    path: &str,
    field: &str,
    limit: u32,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            None => format!("{path}?limit={limit}"),
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
        };
        let call = api.get(&url);
        let call = match user {
            Some(user) => call.auth(user),
            None => call,
        };
        let resp = call.send().await;
        let body = resp.expect(200);
        let page = body[field].as_array().expect(field).clone();
        assert!(page.len() <= limit as usize, "{body}");
        items.extend(page);
        match body.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("paging {path} does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concerts_page_newest_first() {
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(api.create_concert(1, 1_000).await.concert_id);
    }
    created.reverse();
    for limit in [1, 2, 5, 100] {
        let listed: Vec<Uuid> = all_pages(api, None, "/v1/concerts", "concerts", limit)
            .await
            .iter()
            .map(|c| uuid(&c["concert_id"]))
            .collect();
        assert_eq!(listed, created, "limit {limit}: each once, newest first");
    }
    let whole = api.get("/v1/concerts").send().await;
    assert!(
        whole.expect(200).get("next_cursor").is_none(),
        "one page by default"
    );
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=not-a-cursor"] {
        api.get(&format!("/v1/concerts?{bad}"))
            .send()
            .await
            .expect_problem(400, "VALIDATION_FAILED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_page_newest_first() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let (ada, _) = buyer(api, "ada", &concert, 10_000).await;
    let mut bought = Vec::new();
    for seat in 1..=3 {
        // A payment completes the queue token, so each purchase takes a fresh place.
        let token = api.enter(&ada, concert.concert_id).await;
        let hold = api.hold_ok(&ada, &token, concert.date(), seat).await;
        let paid = api
            .pay(&ada, &token, hold["hold_id"].as_str().expect("hold_id"))
            .await
            .expect_success();
        bought.push(uuid(&paid["reservation_id"]));
    }
    bought.reverse();
    for limit in [1, 2, 3] {
        let listed: Vec<Uuid> = all_pages(
            api,
            Some(&ada),
            "/v1/me/reservations",
            "reservations",
            limit,
        )
        .await
        .iter()
        .map(|r| uuid(&r["reservation_id"]))
        .collect();
        assert_eq!(listed, bought, "limit {limit}: each once, newest first");
    }
    let bob = api.sign_up("bob").await;
    assert!(api.reservations(&bob).await.is_empty());
    api.get("/v1/me/reservations?limit=0")
        .auth(&ada)
        .send()
        .await
        .expect_problem(400, "VALIDATION_FAILED");
}
