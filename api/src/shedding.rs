//! Load shedding: the api answers `503 UNAVAILABLE` with `Retry-After` rather than queueing without bound.
//!
//! - At most [`LoadLimits::max_in_flight`] requests are handled at once; one more is refused at once,
//!   before anything is published. The operational endpoints (`/healthz`, `/readyz`, `/metrics`) are not
//!   counted: an overloaded instance is alive, and says so.
//! - A request that takes longer than [`LoadLimits::request_timeout`] is answered 503. That bound is above
//!   what a submit can take once its command is published (the longest `Prefer: wait`, plus a bounded
//!   outcome lookup), so it never cuts an accepted command's answer: those end 202 with their request id.
//! - A client has [`LoadLimits::header_read_timeout`] to send a request's headers (slow-loris).
//! - The command producer gives up on a delivery after [`LoadLimits::publish_timeout`]: with the broker
//!   down a submit is answered 503 within that time, and the command was not accepted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use concert_core::{ErrorCode, Problem};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::LoadLimits;
use crate::error::{problem_response, with_retry_after};

/// How long a stopping api waits for open connections (event streams stay open) before it exits.
const DRAIN: Duration = Duration::from_secs(10);

/// `router` behind the concurrency limit and the request timeout (a tower layer, as middleware).
pub fn limit(router: Router, limits: &LoadLimits) -> Router {
    let gate = Arc::new(Gate {
        in_flight: Semaphore::new(limits.max_in_flight),
        timeout: limits.request_timeout,
    });
    router.layer(axum::middleware::from_fn_with_state(gate, shed))
}

struct Gate {
    in_flight: Semaphore,
    timeout: Duration,
}

tokio::task_local! {
    /// When the request being handled runs out of time.
    static DEADLINE: tokio::time::Instant;
}

/// How long the request being handled may still take, less `reserve`; `None` outside a limited request.
/// A submit shortens its wait for the outcome by this, so the request timeout never cuts the answer of a
/// command that is already on the log.
pub fn time_left(reserve: Duration) -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| {
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .saturating_sub(reserve)
        })
        .ok()
}

/// The operational endpoints, answered whatever the load.
pub fn operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Refuses a request when [`LoadLimits::max_in_flight`] are in progress, and answers 503 when one takes
/// longer than [`LoadLimits::request_timeout`]. The slot is held until the response's head is ready (a
/// streamed body, such as an event stream, does not hold it).
async fn shed(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if operational(request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_slot) = gate.in_flight.try_acquire() else {
        metrics::counter!("http_requests_shed_total", "reason" => "overloaded").increment(1);
        return unavailable("the service is busy, try again shortly");
    };
    let deadline = tokio::time::Instant::now() + gate.timeout;
    let handled = DEADLINE.scope(
        deadline,
        tokio::time::timeout_at(deadline, next.run(request)),
    );
    match handled.await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("http_requests_shed_total", "reason" => "timeout").increment(1);
            tracing::warn!("a request ran out of time");
            unavailable("the request took too long, try again shortly")
        }
    }
}

/// `503 UNAVAILABLE` with `Retry-After: 1`.
pub fn unavailable(detail: &str) -> Response {
    with_retry_after(problem_response(&Problem::new(
        ErrorCode::Unavailable,
        detail,
    )))
}

/// Serves `router` on `listener` until `shutdown` turns true, with a header-read timeout (which
/// `axum::serve` does not offer) and the peer address as `ConnectInfo<SocketAddr>`. On shutdown it stops
/// accepting and gives open connections [`DRAIN`] to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    // The guard `wait_for` returns is dropped inside: it is not `Send`, and this future is spawned.
    let mut shutdown = shutdown;
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    Ok::<_, Infallible>(
                        router.oneshot(request).await.unwrap_or_else(|e| match e {}),
                    )
                }
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the drain period; closing them");
    }
    Ok(())
}
