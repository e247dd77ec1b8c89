//! The listeners' routing tables and the translation from a matched route to a handler.
//! Every request is counted here by listener, route name and status.

use std::sync::LazyLock;
use std::time::Instant;

use http::{Method, StatusCode, header};

use std::sync::Arc;

use crate::http::router::Router;
use crate::http::{Request, Response, empty};
use crate::state::Services;
use crate::{admin, api, cardholder, public};

#[derive(Debug, Clone, Copy)]
enum PublicRoute {
    VisaNotification,
    SaasCallback,
}

/// Where the Click to Pay SaaS layer posts its signed results.
pub const SAAS_CALLBACK_PATH: &str = "/ctp/v1/saas/callback";

#[derive(Debug, Clone, Copy)]
enum AdminRoute {
    Metrics,
    Healthz,
    Readyz,
}

static PUBLIC: LazyLock<Router<PublicRoute>> = LazyLock::new(|| {
    Router::new([
        ("/vtis/v1/tokenRequestors/{tokenRequestorID}/cardEnrollment/notification", PublicRoute::VisaNotification),
        (SAAS_CALLBACK_PATH, PublicRoute::SaasCallback),
    ])
});

static ADMIN: LazyLock<Router<AdminRoute>> =
    LazyLock::new(|| Router::new([("/metrics", AdminRoute::Metrics), ("/healthz", AdminRoute::Healthz), ("/readyz", AdminRoute::Readyz)]));

/// The listener Visa and the SaaS layer call.
pub async fn public(services: Arc<Services>, request: Request) -> Response {
    let started = Instant::now();
    let Some(routed) = PUBLIC.at(request.uri().path()) else {
        return observed("public", "unmatched", started, empty(StatusCode::NOT_FOUND));
    };
    let name = match *routed.route {
        PublicRoute::VisaNotification => "visa_notification",
        PublicRoute::SaasCallback => "saas_callback",
    };
    if request.method() != Method::POST {
        return observed("public", name, started, not_allowed("POST"));
    }
    let response = match *routed.route {
        PublicRoute::VisaNotification => {
            let tr = routed.param("tokenRequestorID").unwrap_or_default().to_owned();
            public::visa_notification::handle(&services, &tr, request).await
        }
        PublicRoute::SaasCallback => public::saas_callback::handle(&services, request).await,
    };
    observed("public", name, started, response)
}

/// The issuer's own services: the enrollment API and the registry.
pub async fn internal(services: Arc<Services>, request: Request) -> Response {
    let started = Instant::now();
    let (response, route) = api::handle(&services, request).await;
    observed("internal", route, started, response)
}

/// The cardholder-facing card-details page. Served only when `widget.enabled` is on.
pub async fn widget(services: Arc<Services>, request: Request) -> Response {
    let started = Instant::now();
    let Some(page) = services.widget.as_ref() else {
        return observed("widget", "unmatched", started, empty(StatusCode::NOT_FOUND));
    };
    let (response, route) = cardholder::handle(page, request).await;
    observed("widget", route, started, response)
}

/// Prometheus and the load balancers.
pub async fn admin(services: Arc<Services>, request: Request) -> Response {
    let started = Instant::now();
    let Some(routed) = ADMIN.at(request.uri().path()) else {
        return observed("admin", "unmatched", started, empty(StatusCode::NOT_FOUND));
    };
    let route = *routed.route;
    let name = match route {
        AdminRoute::Metrics => "metrics",
        AdminRoute::Healthz => "healthz",
        AdminRoute::Readyz => "readyz",
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return observed("admin", name, started, not_allowed("GET, HEAD"));
    }
    let response = match route {
        AdminRoute::Metrics => admin::metrics(),
        AdminRoute::Healthz => admin::healthz(),
        AdminRoute::Readyz => admin::readyz(&services).await,
    };
    observed("admin", name, started, response)
}

fn not_allowed(allow: &'static str) -> Response {
    let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// Counts a finished request by route name (never the raw path) and status.
fn observed(listener: &'static str, route: &'static str, started: Instant, response: Response) -> Response {
    let status = response.status().as_u16().to_string();
    metrics::counter!("ctp_http_requests_total", "listener" => listener, "route" => route, "status" => status).increment(1);
    metrics::histogram!("ctp_http_request_duration_seconds", "listener" => listener, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
