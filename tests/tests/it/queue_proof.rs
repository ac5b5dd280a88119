//! Making bots pay (issue 20): with `join_proof_bits` set, a join must bring a solved challenge bound to the
//! user and the concert, used once across api instances; anything else is 400 `QUEUE_PROOF_INVALID` and
//! publishes nothing.

use concert_tests::{Api, TestStack, User};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::{count, time};

const BITS: u32 = 12;

fn leading_zero_bits(text: &str) -> u32 {
    let mut zeros = 0;
    for byte in Sha256::digest(text.as_bytes()) {
        zeros += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    zeros
}

/// A nonce solving `challenge` at `bits` (about 2^bits hashes), found independently of the server's code.
fn solve(challenge: &str, bits: u32) -> String {
    (0u64..)
        .map(|n| format!("{challenge}.{n}"))
        .find(|proof| leading_zero_bits(proof) >= bits)
        .unwrap()
}

/// A proof that does not solve the challenge.
fn unsolved(challenge: &str, bits: u32) -> String {
    (0u64..)
        .map(|n| format!("{challenge}.{n}"))
        .find(|proof| leading_zero_bits(proof) < bits)
        .unwrap()
}

async fn challenge(api: &Api, user: &User, concert: Uuid) -> Value {
    api.get(&format!("/v1/concerts/{concert}/queue/challenge"))
        .auth(user)
        .send()
        .await
        .expect(200)
        .clone()
}

async fn join_with(
    api: &Api,
    user: &User,
    concert: Uuid,
    proof: Option<&str>,
) -> concert_tests::Resp {
    let mut call = api
        .post(&format!("/v1/concerts/{concert}/queue"))
        .auth(user);
    if let Some(proof) = proof {
        call = call.header("X-Queue-Proof", proof);
    }
    call.send().await
}

async fn places(stack: &TestStack, concert: Uuid) -> i64 {
    count(
        stack.db(),
        "SELECT count(*) FROM queue_entries WHERE concert_id = $1",
        Some(concert),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_needs_a_fresh_solved_challenge_of_its_own() {
    let stack = TestStack::start_with(2, 1).await;
    let (api, other) = (&stack.apis()[0], &stack.apis()[1]);
    let concert = api.create_concert(1, 1000).await;
    let id = concert.concert_id;
    let policy = |bits: Value| json!({"max_active_users": 100, "active_seconds": 600, "hold_seconds": 300, "join_proof_bits": bits});
    api.put_policy(id, &policy(json!(25)))
        .await
        .expect_problem(400, "VALIDATION_FAILED");
    api.put_policy(id, &policy(json!(-1)))
        .await
        .expect_problem(400, "VALIDATION_FAILED");
    api.set_policy(id, &policy(json!(BITS))).await;
    assert_eq!(api.room(id).await["join_proof_bits"], BITS);
    // Omitted keeps it.
    api.set_policy(
        id,
        &json!({"max_active_users": 100, "active_seconds": 600, "hold_seconds": 300}),
    )
    .await;
    assert_eq!(other.room(id).await["join_proof_bits"], BITS);
    // Let the other instance's cache learn the room's difficulty.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;

    let (ada, bob) = (api.sign_up("ada").await, api.sign_up("bob").await);
    let ch = challenge(api, &ada, id).await;
    assert_eq!(ch["bits"], BITS);
    let text = ch["challenge"].as_str().unwrap().to_owned();
    assert!(time(&ch["expires_at"]) > chrono::Utc::now() + chrono::Duration::seconds(60));

    // Missing, wrong, someone else's, or for another concert: refused, nothing published.
    for (who, proof, why) in [
        (&ada, None, "missing"),
        (&ada, Some(unsolved(&text, BITS)), "unsolved"),
        (&ada, Some(format!("{text}.")), "empty nonce"),
        (&ada, Some("garbage".to_owned()), "garbage"),
        (
            &ada,
            Some(format!("x{}", solve(&text, BITS))),
            "tampered challenge",
        ),
        (&bob, Some(solve(&text, BITS)), "someone else's"),
    ] {
        let resp = join_with(other, who, id, proof.as_deref()).await;
        resp.expect_problem(400, "QUEUE_PROOF_INVALID");
        assert!(
            resp.json.get("request_id").is_none(),
            "{why}: nothing published"
        );
    }
    let elsewhere = api.create_concert(1, 1000).await.concert_id;
    api.set_policy(elsewhere, &policy(json!(BITS))).await;
    join_with(api, &ada, elsewhere, Some(&solve(&text, BITS)))
        .await
        .expect_problem(400, "QUEUE_PROOF_INVALID");
    assert_eq!(
        places(&stack, id).await,
        0,
        "nothing published for a refused proof"
    );

    // A rejected attempt did not use it up: the solved one is let in, once.
    let proof = solve(&text, BITS);
    let joined = join_with(other, &ada, id, Some(&proof)).await;
    let token = joined.expect(201)["queue_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A repeated join with a live place needs no proof.
    let again = join_with(other, &ada, id, None).await;
    assert_eq!(again.expect(201)["queue_token"], json!(token));
    // Bob's own challenge works for him, but Ada's used one does not, whichever instance sees it.
    let bob_ch = challenge(other, &bob, id).await;
    let bob_proof = solve(bob_ch["challenge"].as_str().unwrap(), BITS);
    assert_eq!(places(&stack, id).await, 1);
    let used = api.sign_up("dave").await;
    join_with(api, &used, id, Some(&proof))
        .await
        .expect_problem(400, "QUEUE_PROOF_INVALID");
    join_with(api, &bob, id, Some(&bob_proof)).await.expect(201);
    // Ada's place ends: her used challenge cannot let her in again.
    sqlx::query(
        "UPDATE queue_entries SET completed_at = now() WHERE concert_id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(ada.user_id)
    .execute(stack.db())
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    join_with(api, &ada, id, Some(&proof))
        .await
        .expect_problem(400, "QUEUE_PROOF_INVALID");
    assert_eq!(places(&stack, id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused_and_a_race_of_copies_lets_one_in() {
    let stack = TestStack::start_with(2, 1).await;
    let apis = stack.apis();
    let concert = apis[0].create_concert(1, 1000).await;
    let id = concert.concert_id;
    apis[0]
        .set_policy(
            id,
            &json!({"max_active_users": 100, "active_seconds": 600, "hold_seconds": 300, "join_proof_bits": 8}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let ada = apis[0].sign_up("ada").await;

    // An expired challenge, signed like ours (its expiry is inside the signature, so it is made with the
    // stack's secret through the core signer).
    let signer = stack.env.signer();
    let expired = signer.sign_challenge(&concert_core::token::ChallengeClaims {
        uid: ada.user_id,
        cid: id,
        bits: 8,
        exp: chrono::Utc::now().timestamp() - 1,
        n: "expired".into(),
    });
    join_with(&apis[1], &ada, id, Some(&solve(&expired, 8)))
        .await
        .expect_problem(400, "QUEUE_PROOF_INVALID");

    // One solved proof sent eight times at once through both instances: one place.
    let ch = challenge(&apis[0], &ada, id).await;
    let proof = solve(ch["challenge"].as_str().unwrap(), 8);
    let answers =
        futures::future::join_all((0..8).map(|i| join_with(&apis[i % 2], &ada, id, Some(&proof))))
            .await;
    let admitted = answers.iter().filter(|r| r.status == 201).count();
    let refused = answers
        .iter()
        .filter(|r| r.status == 400 && r.json["code"] == "QUEUE_PROOF_INVALID")
        .count();
    // A copy arriving after the first join's reply is answered from the live place without a proof.
    assert!(
        admitted >= 1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(admitted + refused, 8);
    assert_eq!(places(&stack, id).await, 1, "one place");
}
