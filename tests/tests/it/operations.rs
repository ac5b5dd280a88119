//! Operations endpoints, the worker's one-shot subcommands, and bad input that must never give a 5xx.

use concert_core::token::{AccessClaims, QueueClaims};
use concert_tests::{procs, TestEnv, TestStack};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::buyer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_docs() {
    let stack = TestStack::start().await;
    let api = stack.api();
    api.get("/healthz").send().await.expect(200);
    api.get("/readyz").send().await.expect(200);
    api.sign_up("ada").await;
    api.get("/v1/concerts").send().await.expect(200);

    let metrics = api.get("/metrics").send().await;
    metrics.expect(200);
    assert!(
        metrics.content_type().starts_with("text/plain"),
        "Prometheus text: {}",
        metrics.content_type()
    );
    let counters: Vec<&str> = metrics
        .text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|name| name.contains("request") && name.ends_with("_total"))
        })
        .collect();
    assert!(
        !counters.is_empty(),
        "a request counter (`*request*_total`) is exported:\n{}",
        metrics.text
    );

    let openapi = api.get("/openapi.json").send().await;
    let doc = openapi.expect(200);
    assert!(
        doc["openapi"].is_string(),
        "an OpenAPI document: {}",
        openapi.text
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/users",
        "/v1/me/balance",
        "/v1/me/balance/charges",
        "/v1/me/balance/history",
        "/v1/me/reservations",
        "/v1/concerts",
        "/v1/queue/status",
        "/v1/holds",
        "/v1/payments",
        "/v1/admin/concerts",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} is documented; have {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }

    let docs = api.get("/docs").send().await;
    docs.expect(200);
    assert!(
        docs.content_type().starts_with("text/html"),
        "HTML: {}",
        docs.content_type()
    );
    assert!(docs.text.to_lowercase().contains("swagger"), "Swagger UI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_migrate_and_topics_subcommands() {
    let env = TestEnv::new().await;
    // A second, empty database on the same server for `migrate`, and fresh topic names for `topics`.
    let name = format!("concert_migrate_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&env.db)
        .await
        .expect("create database");
    let url = concert_tests::env::with_database(&env.settings.database_url, &name);
    let prefix = format!("t-{}.", Uuid::new_v4().simple());

    let migrated = procs::run_worker_command(&env, "migrate", &[("DATABASE_URL", &url)]).await;
    assert!(migrated.success(), "concert-worker migrate: {migrated}");
    let again = procs::run_worker_command(&env, "migrate", &[("DATABASE_URL", &url)]).await;
    assert!(again.success(), "migrate is idempotent: {again}");
    let pool = concert_core::db::pool(&url, 1).expect("pool");
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('users', 'outbox', 'admissions')")
        .fetch_one(&pool)
        .await
        .expect("tables");
    assert_eq!(tables, 3);
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&env.db)
        .await
        .expect("drop database");

    let topics =
        procs::run_worker_command(&env, "topics", &[("KAFKA_TOPIC_PREFIX", &prefix)]).await;
    assert!(topics.success(), "concert-worker topics: {topics}");
    let wanted = concert_core::topics::Topics::new(&prefix);
    let brokers = env.settings.kafka_brokers.clone();
    let names: Vec<String> = wanted
        .with_partitions()
        .iter()
        .map(|(t, _)| (*t).to_owned())
        .collect();
    let metadata_names = names.clone();
    let found = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = concert_core::kafka::client_config(&brokers)
            .create()
            .expect("client");
        let metadata = consumer
            .fetch_metadata(None, std::time::Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .filter(|t| metadata_names.contains(&t.name().to_owned()))
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect::<Vec<_>>()
    })
    .await
    .expect("metadata thread");
    for (topic, partitions) in wanted.with_partitions() {
        assert!(
            found.contains(&(topic.to_owned(), partitions)),
            "{topic} with {partitions} partitions: {found:?}"
        );
    }
    let _ = concert_tests::kafka::delete_topics(&env.settings.kafka_brokers, &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_are_problem_documents() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let user = api.sign_up("ada").await;
    api.get("/v1/no-such-thing")
        .send()
        .await
        .expect_problem(404, "NOT_FOUND");
    api.delete("/v1/users")
        .send()
        .await
        .expect_problem(405, "METHOD_NOT_ALLOWED");
    api.put("/v1/me/balance")
        .auth(&user)
        .send()
        .await
        .expect_problem(405, "METHOD_NOT_ALLOWED");
    let big = api.post_oversized("/v1/users", 4 * 1024 * 1024).await;
    big.expect_problem(413, "PAYLOAD_TOO_LARGE");
    let resp = api
        .post("/v1/users")
        .raw("text/plain", r#"{"name": "ada"}"#)
        .send()
        .await;
    resp.expect_problem(415, "UNSUPPORTED_MEDIA_TYPE");
    let resp = api
        .post("/v1/me/balance/charges")
        .auth(&user)
        .raw("application/xml", "<amount>5</amount>")
        .send()
        .await;
    resp.expect_problem(415, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(api.balance(&user).await, 0);
}

type Headers = Vec<(&'static str, String)>;

/// One row of the bad-input table.
struct Case {
    method: Method,
    path: String,
    headers: Headers,
    body: Option<(&'static str, String)>,
}

fn case(method: Method, path: impl Into<String>) -> Case {
    Case {
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn json(self, body: &str) -> Self {
        self.raw("application/json", body)
    }

    fn raw(mut self, content_type: &'static str, body: impl Into<String>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_gives_a_server_error() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1000).await;
    let (user, token) = buyer(api, "ada", &concert, 10_000).await;
    let hold = api.hold_ok(&user, &token, concert.date(), 1).await;
    let hold_id = hold["hold_id"].as_str().expect("hold_id").to_owned();
    let bearer = format!("Bearer {}", user.access_token);
    let admin = format!("Bearer {}", api.admin_token);
    let (cid, did) = (concert.concert_id, concert.date());
    let ghost = stack.env.signer().sign_access(&AccessClaims {
        uid: Uuid::new_v4(),
        exp: i64::MAX / 2,
    });
    let ghost_queue = stack.env.signer().sign_queue(&QueueClaims {
        cid,
        uid: user.user_id,
        seq: 999_999,
    });
    let huge_seq = stack.env.signer().sign_queue(&QueueClaims {
        cid,
        uid: user.user_id,
        seq: u64::MAX,
    });
    let long_key = "k".repeat(201);
    let json_junk = [
        "",
        "{",
        "null",
        "[]",
        "\"text\"",
        "{\"a\":",
        "{}",
        "123",
        "{\"x\": NaN}",
        "\u{0}",
    ];

    let mut cases = vec![
        case(Method::GET, "/v1/me/balance").header("authorization", format!("Bearer {ghost}")),
        case(Method::POST, "/v1/me/balance/charges").header("authorization", bearer.clone()).json(r#"{"amount": null}"#),
        case(Method::POST, "/v1/me/balance/charges").header("authorization", bearer.clone()).json(r#"{"amount": true}"#),
        case(Method::POST, "/v1/me/balance/charges").header("authorization", bearer.clone()).json(r#"{"amount": 1e400}"#),
        case(Method::POST, "/v1/me/balance/charges").header("authorization", bearer.clone()).json(r#"{"amount": -9223372036854775809}"#),
        case(Method::GET, "/v1/me/balance/history?cursor=garbage").header("authorization", bearer.clone()),
        case(Method::GET, "/v1/me/balance/history?cursor=%00%ff").header("authorization", bearer.clone()),
        case(Method::GET, "/v1/me/balance/history?limit=99999999999999999999").header("authorization", bearer.clone()),
        case(Method::GET, "/v1/concerts/not-a-uuid/dates").header("authorization", bearer.clone()).header("x-queue-token", token.clone()),
        case(Method::GET, format!("/v1/concerts/{cid}/dates/not-a-uuid/seats")).header("authorization", bearer.clone()).header("x-queue-token", token.clone()),
        case(Method::GET, format!("/v1/concerts/{cid}/dates")).header("authorization", bearer.clone()).header("x-queue-token", ghost_queue.clone()),
        case(Method::GET, format!("/v1/concerts/{cid}/dates")).header("authorization", bearer.clone()).header("x-queue-token", huge_seq.clone()),
        case(Method::GET, "/v1/queue/status").header("x-queue-token", ghost_queue.clone()),
        case(Method::GET, "/v1/queue/status").header("x-queue-token", huge_seq.clone()),
        case(Method::GET, "/v1/queue/status").header("x-queue-token", "a.b.c"),
        case(Method::POST, "/v1/concerts/not-a-uuid/queue").header("authorization", bearer.clone()),
        case(Method::POST, format!("/v1/concerts/{cid}/queue")).header("authorization", bearer.clone()).header("prefer", "wait=abc"),
        case(Method::POST, format!("/v1/concerts/{cid}/queue")).header("authorization", bearer.clone()).header("prefer", "wait=-1"),
        case(Method::POST, format!("/v1/concerts/{cid}/queue")).header("authorization", bearer.clone()).header("prefer", "wait=99999999999999999999"),
        case(Method::POST, format!("/v1/concerts/{cid}/queue")).header("authorization", bearer.clone()).header("idempotency-key", long_key.clone()),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(&format!(r#"{{"date_id": "{did}", "seat_no": 0}}"#)),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(&format!(r#"{{"date_id": "{did}", "seat_no": -1}}"#)),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(&format!(r#"{{"date_id": "{did}", "seat_no": 99999999999}}"#)),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(&format!(r#"{{"date_id": "{did}", "seat_no": "1"}}"#)),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(r#"{"date_id": "nope", "seat_no": 1}"#),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).header("idempotency-key", "").json(&format!(r#"{{"date_id": "{did}", "seat_no": 2}}"#)),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).header("idempotency-key", long_key.clone()).json(&format!(r#"{{"date_id": "{did}", "seat_no": 2}}"#)),
        case(Method::POST, "/v1/holds").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).header("prefer", "respond-async, wait=").json(&format!(r#"{{"date_id": "{did}", "seat_no": 51}}"#)),
        case(Method::DELETE, "/v1/holds/not-a-uuid").header("authorization", bearer.clone()).header("x-queue-token", token.clone()),
        case(Method::POST, "/v1/payments").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(r#"{"hold_id": "nope"}"#),
        case(Method::POST, "/v1/payments").header("authorization", bearer.clone()).header("x-queue-token", token.clone()).json(r#"{"hold_id": 5}"#),
        case(Method::GET, "/v1/requests/not-a-uuid").header("authorization", bearer.clone()),
        case(Method::GET, format!("/v1/requests/{hold_id}")).header("authorization", bearer.clone()),
        case(Method::GET, "/v1/admin/concerts/not-a-uuid/waiting-room").header("authorization", admin.clone()),
        case(Method::PUT, format!("/v1/admin/concerts/{cid}/waiting-room")).header("authorization", admin.clone()).json(r#"{"max_active_users": 99999999999, "active_seconds": 1, "hold_seconds": 1}"#),
        case(Method::PUT, format!("/v1/admin/concerts/{cid}/waiting-room")).header("authorization", admin.clone()).json(r#"{"max_active_users": 5, "active_seconds": 999999999, "hold_seconds": 1}"#),
        case(Method::POST, "/v1/admin/concerts").header("authorization", admin.clone()).json(r#"{"title": "", "venue": "", "dates": []}"#),
        case(Method::POST, "/v1/admin/concerts").header("authorization", admin.clone()).json(r#"{"title": "t", "venue": "v", "dates": [{"starts_at": "2030-01-01T00:00:00Z", "price": 99999999999999999999}]}"#),
        case(Method::GET, "/v1/%ff%fe").header("authorization", bearer.clone()),
    ];
    let json_endpoints: Vec<(Method, String, Headers)> = vec![
        (Method::POST, "/v1/users".into(), vec![]),
        (
            Method::POST,
            "/v1/me/balance/charges".into(),
            vec![("authorization", bearer.clone())],
        ),
        (
            Method::POST,
            "/v1/holds".into(),
            vec![
                ("authorization", bearer.clone()),
                ("x-queue-token", token.clone()),
            ],
        ),
        (
            Method::POST,
            "/v1/payments".into(),
            vec![
                ("authorization", bearer.clone()),
                ("x-queue-token", token.clone()),
            ],
        ),
        (
            Method::POST,
            "/v1/admin/concerts".into(),
            vec![("authorization", admin.clone())],
        ),
        (
            Method::PUT,
            format!("/v1/admin/concerts/{cid}/waiting-room"),
            vec![("authorization", admin.clone())],
        ),
    ];
    for (method, path, headers) in &json_endpoints {
        for junk in json_junk {
            let mut c = case(method.clone(), path.clone()).json(junk);
            c.headers.clone_from(headers);
            cases.push(c);
        }
        let mut c =
            case(method.clone(), path.clone()).raw("application/json; charset=utf-8", "\u{feff}{}");
        c.headers.clone_from(headers);
        cases.push(c);
    }

    let mut accepted = Vec::new();
    for c in cases {
        let mut call = api.call(c.method.clone(), &c.path);
        for (name, value) in &c.headers {
            call = call.header(name, value);
        }
        if let Some((content_type, body)) = &c.body {
            call = call.raw(content_type, body.clone());
        }
        let resp = call.send().await;
        let what = format!(
            "{} {} {:?} {:?}",
            c.method,
            c.path,
            c.headers.iter().map(|h| h.0).collect::<Vec<_>>(),
            c.body
        );
        assert!(
            resp.status < 500,
            "{what} gave {}: {}",
            resp.status,
            resp.text
        );
        if resp.status < 400 {
            accepted.push(format!("{what} -> {}", resp.status));
        } else {
            let problem: &Value = resp.expect_client_error();
            assert!(
                !problem["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase()
                    .contains("sqlx"),
                "{what}: leaks internals: {problem}"
            );
        }
    }

    // Nothing the table sent was applied.
    assert_eq!(api.balance(&user).await, 10_000);
    let seats: Vec<i32> = sqlx::query_scalar("SELECT seat_no FROM holds ORDER BY seat_no")
        .fetch_all(stack.db())
        .await
        .expect("holds");
    assert_eq!(
        seats,
        vec![1],
        "only the setup's hold (seat 1) exists; accepted: {accepted:#?}"
    );
    let room = api.room(cid).await;
    assert_eq!(
        room["max_active_users"],
        json!(100),
        "refused policies changed nothing: {room}"
    );
}

/// Made-up methods, on known and unknown paths, add no series to `/metrics`: they are counted as `OTHER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_add_no_metric_series() {
    let stack = TestStack::start().await;
    let api = stack.api();
    for i in 0..50 {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).expect("a method token");
        let path = if i % 2 == 0 {
            "/v1/concerts"
        } else {
            "/no/such/path"
        };
        let resp = api.call(method, path).send().await;
        assert!(
            resp.status < 500,
            "a made-up method is a client error: {}",
            resp.status
        );
    }
    let metrics = api.get("/metrics").send().await;
    metrics.expect(200);
    assert!(
        !metrics.text.contains("MADEUP"),
        "no series names a made-up method"
    );
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("http_requests_total{") && l.contains("method=\"OTHER\"")),
        "made-up methods are counted as OTHER:\n{}",
        metrics.text
    );
}
