//! The admin listener's handlers: Prometheus metrics, liveness and readiness.

use http::{StatusCode, header};

use crate::http::{Response, text};
use crate::state::Services;

/// `GET /metrics`: the Prometheus text exposition.
pub fn metrics() -> Response {
    let mut response = text(StatusCode::OK, crate::telemetry::metrics().render());
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// `GET /healthz`: the process is alive and serving. Never touches the database, so that
/// a database outage does not get the process restarted.
pub fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// `GET /readyz`: the database answers. A load balancer stops sending traffic while it
/// does not. The text says so when the built-in simulator stands in for the Click to Pay
/// SaaS, so that whoever looks knows enrollments go nowhere real.
pub async fn readyz(services: &Services) -> Response {
    match tokio::time::timeout(std::time::Duration::from_secs(2), services.store.ping()).await {
        Ok(Ok(())) if services.simulator_in_use => text(StatusCode::OK, "ready (Click to Pay SaaS simulator in use)\n"),
        Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database");
            text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "database timed out\n"),
    }
}
