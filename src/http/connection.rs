//! One accepted connection, from the TLS handshake to its close, and the two deadlines that
//! keep a connection from holding a slot of the listener for nothing:
//!
//! - **the first request**: a connection that has not started a request within
//!   `http.header_read_timeout` of being accepted is closed, whether it sent nothing, half
//!   a TLS handshake, an HTTP/2 preface, or a few bytes of a head (hyper's own header
//!   timeout only starts at the first byte of a head);
//! - **idleness**: a keep-alive or HTTP/2 connection with no request in flight for
//!   `http.idle_timeout` is shut down gracefully (HTTP/2: GOAWAY).
//!
//! Either way the close is counted in `ctp_http_connections_closed_total{listener, reason}`.
//! A connection being shut down (idle, or the server draining) that does not finish within
//! one more `header_read_timeout` is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What a connection's requests tell its deadlines: whether one ever started, how many run
/// now, and when the last one ended.
#[derive(Debug, Default)]
pub struct Activity {
    started: AtomicBool,
    in_flight: AtomicUsize,
    last_ended: Mutex<Option<Instant>>,
}

/// Held while a request runs; its drop marks the end.
#[must_use]
pub struct InFlight<'a>(&'a Activity);

impl Activity {
    pub fn request_started(&self) -> InFlight<'_> {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// `None` before the first request; `Some(None)` while one runs; `Some(Some(t))` idle
    /// since `t`.
    fn idle_since(&self) -> Option<Option<Instant>> {
        if !self.started.load(Ordering::Relaxed) {
            return None;
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(None);
        }
        Some(*self.last_ended.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        *self.0.last_ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One accepted connection and what bounds its life.
pub struct Connection {
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub accepted_at: Instant,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub activity: Arc<Activity>,
    pub shutdown: CancellationToken,
}

impl Connection {
    /// Runs the connection to its end: TLS first if configured, then HTTP under the two
    /// deadlines.
    pub async fn serve<S>(self, stream: TcpStream, tls: Option<TlsAcceptor>, builder: auto::Builder<TokioExecutor>, service: S)
    where
        S: Service<Request<Incoming>, Response = super::Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let first_request_by = self.accepted_at + self.header_read_timeout;
        match tls {
            None => self.http(TokioIo::new(stream), builder, service).await,
            Some(acceptor) => match tokio::time::timeout_at(first_request_by, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => self.http(TokioIo::new(stream), builder, service).await,
                Ok(Err(e)) => {
                    tracing::debug!(listener = self.listener, peer = %self.peer, error = %e, "TLS handshake failed");
                    metrics::counter!("ctp_tls_handshake_failures_total", "listener" => self.listener).increment(1);
                }
                Err(_) => self.closed("no_request"),
            },
        }
    }

    async fn http<I, S>(&self, io: I, builder: auto::Builder<TokioExecutor>, service: S)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = super::Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let conn = builder.serve_connection(io, service).into_owned();
        tokio::pin!(conn);
        let mut deadline = self.accepted_at + self.header_read_timeout;
        let mut closing = false;
        loop {
            tokio::select! {
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(listener = self.listener, peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    deadline = Instant::now() + self.header_read_timeout;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if closing {
                        return self.closed("shutdown_overrun");
                    }
                    match self.activity.idle_since() {
                        None => return self.closed("no_request"),
                        Some(None) => deadline = Instant::now() + self.idle_timeout,
                        Some(idle) => {
                            let since = idle.unwrap_or(self.accepted_at);
                            if since.elapsed() >= self.idle_timeout {
                                self.closed("idle");
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                                deadline = Instant::now() + self.header_read_timeout;
                            } else {
                                deadline = since + self.idle_timeout;
                            }
                        }
                    }
                }
            }
        }
    }

    fn closed(&self, reason: &'static str) {
        tracing::debug!(listener = self.listener, peer = %self.peer, reason, "connection closed by its deadline");
        metrics::counter!("ctp_http_connections_closed_total", "listener" => self.listener, "reason" => reason).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_says_when_idle_began() {
        let activity = Activity::default();
        assert_eq!(activity.idle_since(), None, "no request yet");
        let guard = activity.request_started();
        assert_eq!(activity.idle_since(), Some(None), "a request is in flight");
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(guard);
        let ended = activity.idle_since().unwrap().unwrap();
        assert_eq!(ended, Instant::now());
        let (a, b) = (activity.request_started(), activity.request_started());
        drop(a);
        assert_eq!(activity.idle_since(), Some(None), "one of two still runs");
        drop(b);
    }
}
