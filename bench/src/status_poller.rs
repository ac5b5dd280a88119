//! Status polls on a connection of their own, straight on hyper. The poll phase sends tens of thousands of
//! `GET /v1/queue/status` a second from the two cores the stack runs on, and through reqwest (the URL parsed
//! per request, a connection pool shared by every poller, each answer's headers copied and its body parsed
//! as JSON) the load generator spent more CPU per poll than the api answering it (45-55 µs against 32-41,
//! docs/PERFORMANCE.md). Each poller keeps one keep-alive connection and parses a body only when the answer
//! is not a success (a success's body is only drained, so the connection can be used again).

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::client::{failed, Outcome};

/// The path every poll asks for.
const STATUS_PATH: &str = "/v1/queue/status";

/// One connection's worth of status polls against the api at `base` (`http://host:port`).
pub struct StatusPoller {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header of every request.
    host: HeaderValue,
    /// The open connection, if any: opened on the first poll and again after one failed.
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl StatusPoller {
    /// A poller for the api at `base`; it connects on its first poll.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let addr = base
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("the status poller speaks plain http, not {base}"))?
            .trim_end_matches('/')
            .to_owned();
        anyhow::ensure!(
            !addr.is_empty() && !addr.contains('/'),
            "expected http://host:port, not {base}"
        );
        Ok(StatusPoller {
            host: HeaderValue::from_str(&addr)?,
            addr,
            sender: None,
        })
    }

    /// `GET /v1/queue/status` with `queue_token`: the outcome (a success's body is not parsed into it) and when
    /// the request went out. A failed connection is reported as [`Outcome::Transport`] and replaced next time.
    pub async fn poll(&mut self, queue_token: &str) -> (Outcome, Instant) {
        let sent = Instant::now();
        match self.try_poll(queue_token).await {
            Ok(outcome) => (outcome, sent),
            Err(e) => {
                self.sender = None;
                (Outcome::Transport(e), sent)
            }
        }
    }

    async fn try_poll(&mut self, queue_token: &str) -> Result<Outcome, String> {
        let sender = match self.sender.take() {
            Some(s) if !s.is_closed() => self.sender.insert(s),
            _ => self.sender.insert(self.connect().await?),
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::get(STATUS_PATH)
            .header(HOST, self.host.clone())
            .header("x-queue-token", queue_token)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            return Ok(Outcome::Done(Value::Null));
        }
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(failed(status, &body))
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        // Drives the connection until either side closes it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_host_and_port_from_the_base_url() {
        let p = StatusPoller::new("http://127.0.0.1:8080").expect("plain http");
        assert_eq!(p.addr, "127.0.0.1:8080");
        assert_eq!(p.host, "127.0.0.1:8080");
        assert!(StatusPoller::new("http://127.0.0.1:8080/").is_ok());
        assert!(StatusPoller::new("https://example.org").is_err());
        assert!(StatusPoller::new("http://host/path").is_err());
        assert!(StatusPoller::new("http://").is_err());
    }
}
