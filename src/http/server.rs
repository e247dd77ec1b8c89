//! The accept loop of one listener: a bound on open connections, TCP, optional TLS,
//! HTTP/1.1 or HTTP/2 (hyper-util's auto builder), a request timeout, a panic guard, and
//! graceful shutdown with a bounded drain. What happens on one connection once accepted
//! (its deadlines above all) is [`super::connection`].
//!
//! Every listener has its own bound (`http.max_connections`): past it a new connection is
//! closed at once and counted in `ctp_http_connections_shed_total{listener}`, so a flood
//! on the public listener never takes the admin listener's `/healthz` and `/metrics` with
//! it. Accept errors (out of file descriptors, above all) back off instead of spinning,
//! and are logged at most once a second, with how many there were.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::HttpConfig;
use super::connection::{Activity, Connection};
use super::{Request, Response};

/// How a listener answers a request that outlives `http.request_timeout`. Visa retries
/// only a 500, so the public listener answers that; the others say 503.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    /// The listener's name, a metric label.
    pub name: &'static str,
    pub timeout_status: StatusCode,
}

/// Serves `listener` until `shutdown` is cancelled, then lets open connections finish for
/// at most `config.drain_timeout`.
pub async fn serve<H, F>(
    spec: ListenerSpec,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    config: HttpConfig,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let name = spec.name;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_HTTP2_STREAMS)
        // Pings find a peer that vanished without closing; the idle deadline closes one
        // that is there and silent.
        .keep_alive_interval(Some(HTTP2_PING_INTERVAL))
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    // Registered at zero, so that dashboards and alerts see the series before the first event.
    for counter in ["ctp_http_connections_shed_total", "ctp_tls_handshake_failures_total", "ctp_handler_panics_total"] {
        metrics::counter!(counter, "listener" => name).increment(0);
    }
    let open = metrics::gauge!("ctp_http_connections_open", "listener" => name);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();

    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                accept_errors.succeeded();
                pair
            }
            Err(e) => {
                let pause = accept_errors.failed(name, &e);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("ctp_http_connections_shed_total", "listener" => name).increment(1);
            drop(stream);
            continue;
        };
        let accepted_at = Instant::now();
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let service = service_fn({
            let handler = handler.clone();
            let activity = activity.clone();
            let request_timeout = config.request_timeout;
            move |request: Request| {
                let handler = handler.clone();
                let activity = activity.clone();
                async move {
                    let _in_flight = activity.request_started();
                    Ok::<_, Infallible>(guarded(spec, request_timeout, handler(request)).await)
                }
            }
        });
        let connection = Connection {
            listener: name,
            peer,
            accepted_at,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            activity,
            shutdown: shutdown.clone(),
        };
        let (builder, tls, open) = (builder.clone(), tls.clone(), open.clone());
        open.increment(1.0);
        connections.spawn(async move {
            connection.serve(stream, tls, builder, service).await;
            open.decrement(1.0);
            drop(slot);
        });
    }

    drop(listener);
    connections.close();
    tracing::info!(listener = name, open = connections.len(), "draining connections");
    if tokio::time::timeout(config.drain_timeout, connections.wait()).await.is_err() {
        tracing::warn!(listener = name, "drain timed out; remaining connections cut");
    }
}

/// Streams one HTTP/2 connection may have open at once.
const MAX_HTTP2_STREAMS: u32 = 128;
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The accept loop's failures: how long to pause after each (doubling from 10 ms to 1 s,
/// back to the start after a success), and a log line at most once a second.
#[derive(Debug, Default)]
struct AcceptErrors {
    pause: Option<Duration>,
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl AcceptErrors {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    const MAX_PAUSE: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(1);

    fn succeeded(&mut self) {
        self.pause = None;
    }

    /// Records a failure and says how long to wait before accepting again.
    fn failed(&mut self, listener: &'static str, error: &std::io::Error) -> Duration {
        metrics::counter!("ctp_http_accept_errors_total", "listener" => listener).increment(1);
        self.unlogged += 1;
        if self.last_logged.is_none_or(|t| t.elapsed() >= Self::LOG_EVERY) {
            tracing::warn!(listener, error = %error, failures = self.unlogged, "accept failed; backing off");
            self.unlogged = 0;
            self.last_logged = Some(Instant::now());
        }
        let pause = self.pause.map_or(Self::FIRST_PAUSE, |p| (p * 2).min(Self::MAX_PAUSE));
        self.pause = Some(pause);
        pause
    }
}

/// Runs a handler with a deadline, and turns a panic into a 500 instead of a dropped
/// connection. Handlers are written not to panic; this is the belt to those braces.
async fn guarded(spec: ListenerSpec, timeout: Duration, handler: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(timeout, AssertUnwindSafe(handler).catch_unwind()).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            tracing::error!(listener = spec.name, "request handler panicked");
            metrics::counter!("ctp_handler_panics_total", "listener" => spec.name).increment(1);
            super::empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => {
            tracing::warn!(listener = spec.name, "request timed out");
            super::empty(spec.timeout_status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_reset() {
        let mut errors = AcceptErrors::default();
        let e = std::io::Error::other("too many open files");
        let pauses: Vec<Duration> = (0..10).map(|_| errors.failed("test", &e)).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(*pauses.last().unwrap(), Duration::from_secs(1));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        errors.succeeded();
        assert_eq!(errors.failed("test", &e), Duration::from_millis(10));
    }

    #[test]
    fn accept_errors_are_logged_at_most_once_a_second() {
        let mut errors = AcceptErrors::default();
        let e = std::io::Error::other("too many open files");
        errors.failed("test", &e);
        let first = errors.last_logged;
        for _ in 0..100 {
            errors.failed("test", &e);
        }
        assert_eq!(errors.last_logged, first, "logged again within the second");
        assert_eq!(errors.unlogged, 100, "the failures since are counted for the next line");
    }
}
