//! A client that sends its body a byte every few seconds is answered 400 once the body read timeout
//! passes (10 s), instead of holding its request slot until the request timeout (45 s), and others are
//! served meanwhile.

use std::time::{Duration, Instant};

use concert_tests::TestStack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_a_byte_at_a_time_is_cut_at_the_body_read_timeout_and_others_are_served() {
    let stack = TestStack::builder().apis(1).start().await;
    let api = stack.api();
    let addr = api.base.trim_start_matches("http://").to_owned();
    let body = br#"{"name":"slow-loris-fan"}"#;

    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    // The body, a byte every 2 s (never the last byte), while another client is served.
    let drip = tokio::spawn(async move {
        for byte in body.iter().take(body.len() - 1) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let other = api.get("/v1/concerts").send().await;
        assert_eq!(other.status, 200, "another client waits on no slow body");
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(25), reader.read(&mut answer))
        .await
        .expect("an answer within 25 s")
        .expect("read");
    drip.abort();
    let answer = answer[..n].to_vec();
    let answer = String::from_utf8_lossy(&answer);
    let elapsed = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a slow body is a 400: {answer}"
    );
    assert!(answer.contains("VALIDATION_FAILED"), "{answer}");
    assert!(
        elapsed < Duration::from_secs(20),
        "answered after {elapsed:?}, not at the 10 s body timeout"
    );
}
