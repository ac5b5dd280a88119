//! Load shedding and honest answers: 503 `UNAVAILABLE` with `Retry-After` before a command is accepted (the
//! broker down, too many requests in progress), a header-read timeout, and never 5xx once a command is on
//! the log (the database gone while its outcome is awaited).

use std::time::{Duration, Instant};

use concert_api::{ApiConfig, Application};
use concert_core::commands::CommandKind;
use concert_tests::procs::free_port;
use concert_tests::{Api, TestEnv, TestStack, ADMIN_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::support::count;

/// An in-process api on `env` with its configuration changed by `change`; stops when the sender drops.
async fn start_api(
    env: &TestEnv,
    change: impl FnOnce(&mut ApiConfig),
) -> (Api, watch::Sender<bool>) {
    let mut config = ApiConfig::for_tests(env.settings.clone());
    change(&mut config);
    let app = Application::build(config).await.expect("building the api");
    let api = Api::new(format!("http://{}", app.addr()), ADMIN_TOKEN);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(app.run_until_stopped(stopped));
    (api, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_a_submit_is_refused_quickly_before_it_is_accepted() {
    let env = TestEnv::new().await;
    let (api, _stop) = start_api(&env, |config| {
        // Nothing listens there: every publish fails after the publish timeout.
        config.settings.kafka_brokers = format!("127.0.0.1:{}", free_port());
        config.limits.publish_timeout = Duration::from_secs(1);
    })
    .await;
    let concert = api.create_concert(1, 1_000).await;
    let user = api.sign_up("ada").await;

    let started = Instant::now();
    let resp = api
        .post(&format!("/v1/concerts/{}/queue", concert.concert_id))
        .auth(&user)
        .idempotency_key("join-1")
        .wait(5)
        .send()
        .await;
    let took = started.elapsed();
    resp.expect_problem(503, "UNAVAILABLE");
    assert_eq!(resp.header("retry-after"), Some("1"), "{:?}", resp.text);
    assert!(
        resp.json.get("request_id").is_none(),
        "a refused command names no request: {}",
        resp.text
    );
    // Twice the publish timeout at most (room in the producer's queue, then the delivery), plus slack.
    assert!(took < Duration::from_secs(4), "the refusal took {took:?}");
    println!("broker down: submit refused with 503 after {took:?}");
    assert_eq!(
        count(
            &env.db,
            "SELECT count(*) FROM requests WHERE status <> 'REFUSED'",
            None
        )
        .await,
        0,
        "nothing was accepted"
    );
    // The refusal is recorded, so a copy of the command that reaches the log after all is not applied.
    assert_eq!(
        count(
            &env.db,
            "SELECT count(*) FROM requests WHERE status = 'REFUSED'",
            None
        )
        .await,
        1,
        "the refused command is recorded as REFUSED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_limit_in_progress_are_shed_but_health_still_answers() {
    let env = TestEnv::new().await;
    let (api, _stop) = start_api(&env, |config| config.limits.max_in_flight = 1).await;
    let user = api.sign_up("bo").await;
    // A request id of this user that was never submitted: polling it with a wait holds the one slot.
    let pending = env.request_ids().fresh(user.user_id, CommandKind::Hold);
    let holder = {
        let api = api.clone();
        let user = user.clone();
        tokio::spawn(async move {
            api.get(&format!("/v1/requests/{pending}"))
                .auth(&user)
                .wait(3)
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shed = api.get("/v1/concerts").send().await;
    shed.expect_problem(503, "UNAVAILABLE");
    assert_eq!(shed.header("retry-after"), Some("1"));
    // Liveness and readiness are not counted against the limit.
    assert_eq!(api.get("/healthz").send().await.status, 200);

    let held = holder.await.expect("the holder");
    assert_eq!(held.status, 202, "{}", held.text);
    assert_eq!(api.get("/v1/concerts").send().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let env = TestEnv::new().await;
    let (api, _stop) = start_api(&env, |config| {
        config.limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection was still open 10 s after the headers stalled"
    );
    println!(
        "slow headers: disconnected after {:?} ({})",
        started.elapsed(),
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("no answer")
    );
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_published_a_submit_is_accepted_even_when_the_database_is_gone() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let user = api.sign_up("cy").await;
    // The api's waiting-room cache knows the concert by now, so the join does not look it up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Keep every connection of the test database dropped while the join is published and awaited: the
    // join needs no database before it is published (no key, so no lookup of an earlier outcome).
    let env = &stack.env;
    let until = Instant::now() + Duration::from_secs(4);
    let killer = async {
        while Instant::now() < until {
            env.terminate_backends().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let submit = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        api.post(&format!("/v1/concerts/{}/queue", concert.concert_id))
            .auth(&user)
            .wait(2)
            .send()
            .await
    };
    let ((), resp) = tokio::join!(killer, submit);
    assert!(
        matches!(resp.status, 201 | 202),
        "a published command is answered with its outcome or 202, never 5xx: {} {}",
        resp.status,
        resp.text
    );
    let request_id = resp.json["request_id"]
        .as_str()
        .expect("the answer names the request")
        .to_owned();
    if resp.status == 202 {
        assert_eq!(
            resp.header("location"),
            Some(format!("/v1/requests/{request_id}").as_str())
        );
    }
    // It takes effect once the database is back, and the poll finds it.
    let outcome = api.await_request(&user, &request_id).await;
    println!(
        "published during a database outage: answered {}, then {outcome:?}",
        resp.status
    );
}
