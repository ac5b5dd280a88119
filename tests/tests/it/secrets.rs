//! Secure by default (v2): the binaries refuse to start on a missing or short secret unless
//! `CONCERT_ENV=dev`, naming the variable; the admin token is compared whatever its length.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use concert_tests::procs::{binary, free_port};
use concert_tests::{Deadline, TestStack};

const GOOD_SECRET: &str = "0123456789abcdef0123456789abcdef"; // 32 bytes
const GOOD_ADMIN: &str = "0123456789abcdef01234567"; // 24 bytes

/// Runs `name args` with only `env` (plus PATH) to completion, within 30 s.
fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary(name));
    command.args(args).env_clear().stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    // Nothing reachable: a binary that got past its configuration would hang or fail on connections instead.
    command
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .env("API_PORT", free_port().to_string());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let deadline = Deadline::secs(30);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if deadline.passed() {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{name} {args:?} still runs after 30 s; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_refused(name: &str, args: &[&str], env: &[(&str, &str)], variable: &str) {
    let output = run(name, args, env);
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !output.status.success(),
        "{name} {args:?} with {env:?} started: {}",
        output.status
    );
    assert!(
        stderr.contains(variable),
        "{name} {args:?} with {env:?}: the message names {variable}; stderr: {stderr}"
    );
}

/// A binary, its arguments, its environment, and the variable its refusal must name.
type RefusalCase<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_refuse_to_start_without_real_secrets() {
    let short_secret = &GOOD_SECRET[..31];
    let short_admin = &GOOD_ADMIN[..23];
    let cases: Vec<RefusalCase> = vec![
        (
            "concert-api",
            vec![],
            vec![("ADMIN_TOKEN", GOOD_ADMIN)],
            "TOKEN_SECRET",
        ),
        (
            "concert-api",
            vec![],
            vec![("TOKEN_SECRET", ""), ("ADMIN_TOKEN", GOOD_ADMIN)],
            "TOKEN_SECRET",
        ),
        (
            "concert-api",
            vec![],
            vec![("TOKEN_SECRET", short_secret), ("ADMIN_TOKEN", GOOD_ADMIN)],
            "TOKEN_SECRET",
        ),
        (
            "concert-api",
            vec![],
            vec![("TOKEN_SECRET", GOOD_SECRET)],
            "ADMIN_TOKEN",
        ),
        (
            "concert-api",
            vec![],
            vec![("TOKEN_SECRET", GOOD_SECRET), ("ADMIN_TOKEN", short_admin)],
            "ADMIN_TOKEN",
        ),
        // Any CONCERT_ENV other than dev is production.
        (
            "concert-api",
            vec![],
            vec![("CONCERT_ENV", "production"), ("TOKEN_SECRET", GOOD_SECRET)],
            "ADMIN_TOKEN",
        ),
        ("concert-worker", vec!["run"], vec![], "TOKEN_SECRET"),
        (
            "concert-worker",
            vec!["run"],
            vec![("TOKEN_SECRET", short_secret)],
            "TOKEN_SECRET",
        ),
        ("concert-worker", vec!["migrate"], vec![], "TOKEN_SECRET"),
    ];
    tokio::task::spawn_blocking(move || {
        for (name, args, env, variable) in &cases {
            assert_refused(name, args, env, variable);
        }
    })
    .await
    .expect("the checks ran");
}

/// With `CONCERT_ENV=dev` and no secrets at all, the api starts (with a warning) and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_defaults_apply_only_under_concert_env_dev() {
    let port = free_port();
    let mut command = tokio::process::Command::new(binary("concert-api"));
    command
        .env_clear()
        .env("CONCERT_ENV", "dev")
        .env("API_PORT", port.to_string())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawning concert-api");
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Deadline::secs(30);
    loop {
        if let Ok(resp) = http.get(&url).send().await {
            assert_eq!(resp.status(), 200);
            break;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "concert-api exited under CONCERT_ENV=dev"
        );
        assert!(!deadline.passed(), "{url} did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.expect("kill");
    let output = child.wait_with_output().await.expect("output");
    // The log goes to stdout, a startup error to stderr: look at both.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("TOKEN_SECRET") && said.contains("ADMIN_TOKEN"),
        "both development defaults are warned about: {said}"
    );
}

/// Wrong admin tokens of every length, including prefixes and extensions of the right one, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_refused_whatever_its_length() {
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let right = concert_tests::ADMIN_TOKEN;
    let wrong = [
        String::new(),
        "x".to_owned(),
        right[..right.len() - 1].to_owned(),
        format!("{right}x"),
        format!("{}X", &right[..right.len() - 1]),
        "y".repeat(4096),
    ];
    for token in &wrong {
        api.get("/v1/admin/concerts/00000000-0000-0000-0000-000000000000/waiting-room")
            .bearer(token)
            .send()
            .await
            .expect_problem(401, "UNAUTHORIZED");
    }
    let resp = api
        .get("/v1/admin/concerts/00000000-0000-0000-0000-000000000000/waiting-room")
        .bearer(right)
        .send()
        .await;
    assert_ne!(resp.status, 401, "the right token passes: {}", resp.text);
}
