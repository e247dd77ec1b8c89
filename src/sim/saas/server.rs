//! The simulator's HTTP side: the six operations, `/status`, `/getData`, and the
//! `/_sim/*` admin paths (faults, stats).

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use secrecy::ExposeSecret;
use serde_json::json;
use zeroize::Zeroizing;

use super::faults::{FailMode, Faults, FaultsPatch};
use super::state::Accept;
use super::validate::{Refusal, classify_parse_error, validate};
use super::{Counters, Due, Shared, lock};
use crate::ctp::CtpEvent;
use crate::http::{Request, Response, empty, json, read_body};
use crate::saas::wire::{Accepted, SaasRequest, TENANT_HEADER, code};

/// Largest request body read.
const MAX_BODY: usize = 256 * 1024;

pub(super) async fn handle(shared: Arc<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/_sim/faults" => return faults(&shared, request).await,
        "/_sim/stats" => return json(StatusCode::OK, &json!(shared.counters.snapshot())),
        _ => {}
    }
    if !authorized(&shared, &request) {
        return error(StatusCode::UNAUTHORIZED, code::UNAUTHORIZED, "missing or wrong API key");
    }
    match path.as_str() {
        "/status" => status(&shared, &request),
        "/getData" => get_data(&shared, &request),
        p => match CtpEvent::ALL.into_iter().find(|e| crate::saas::wire::endpoint(*e).1 == p) {
            Some(event) => submit(&shared, event, request).await,
            None => error(StatusCode::NOT_FOUND, code::NOT_FOUND, "no such endpoint"),
        },
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, &json!({"errorCode": code, "message": message}))
}

fn refuse(shared: &Shared, refusal: Refusal) -> Response {
    Counters::bump(&shared.counters.refused);
    error(refusal.status, refusal.code, &refusal.message)
}

fn not_allowed(allow: &'static str) -> Response {
    let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// With an API key configured, `Authorization: Bearer <key>`, compared in constant time.
fn authorized(shared: &Shared, request: &Request) -> bool {
    let Some(key) = &shared.config.api_key else { return true };
    let given =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), key.expose_secret().as_bytes()).is_ok()
}

fn tenant(request: &Request) -> Result<String, Refusal> {
    request
        .headers()
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Refusal::bad_request(code::MISSING_FIELD, "X-TENANT-ID header is required"))
}

fn query_param(request: &Request, name: &str) -> Result<String, Refusal> {
    request
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name))
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Refusal::bad_request(code::MISSING_FIELD, format!("query parameter {name} is required")))
}

fn status(shared: &Shared, request: &Request) -> Response {
    if request.method() != Method::GET {
        return not_allowed("GET");
    }
    let (tenant, trace) = match tenant(request).and_then(|t| Ok((t, query_param(request, "requestTraceId")?))) {
        Ok(pair) => pair,
        Err(refusal) => return refuse(shared, refusal),
    };
    match lock(&shared.state).status(&tenant, &trace) {
        Some(s) => json(StatusCode::OK, &json!(s)),
        None => error(StatusCode::NOT_FOUND, code::NOT_FOUND, "unknown requestTraceId"),
    }
}

fn get_data(shared: &Shared, request: &Request) -> Response {
    if request.method() != Method::GET {
        return not_allowed("GET");
    }
    let (tenant, consumer) = match tenant(request).and_then(|t| Ok((t, query_param(request, "externalConsumerID")?))) {
        Ok(pair) => pair,
        Err(refusal) => return refuse(shared, refusal),
    };
    match lock(&shared.state).profile(&tenant, &consumer) {
        Some(p) => json(StatusCode::OK, &json!(p)),
        None => error(StatusCode::NOT_FOUND, code::CONSUMER_NOT_ENROLLED, "consumer not enrolled"),
    }
}

/// Holds the connection open (a timeout, as the client sees it) unless the simulator stops.
async fn hold(shared: &Shared, how_long: Duration) {
    tokio::select! {
        _ = shared.shutdown.cancelled() => {}
        _ = tokio::time::sleep(how_long) => {}
    }
}

async fn submit(shared: &Shared, event: CtpEvent, request: Request) -> Response {
    let method = crate::saas::wire::endpoint(event).0;
    if request.method() != method {
        return not_allowed(if method == Method::PUT { "PUT" } else { "POST" });
    }
    Counters::bump(&shared.counters.submits_received);
    let tenant = match tenant(&request) {
        Ok(t) => t,
        Err(refusal) => return refuse(shared, refusal),
    };
    let body = match read_body(request, MAX_BODY).await {
        Ok((_, body)) => body,
        Err(e) => return refuse(shared, Refusal::bad_request(code::INVALID_REQUEST, e.to_string())),
    };
    let failure = lock(&shared.faults).take_failure();
    if let Some(mode) = failure {
        Counters::bump(&shared.counters.faults_injected);
        let faults = lock(&shared.faults).clone();
        match mode {
            FailMode::ServerError => return error(StatusCode::INTERNAL_SERVER_ERROR, code::SERVICE_ERROR, "injected fault"),
            FailMode::TooManyRequests => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "injected fault");
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(faults.retry_after_seconds));
                return response;
            }
            FailMode::Timeout => {
                hold(shared, faults.timeout_hold).await;
                return error(StatusCode::SERVICE_UNAVAILABLE, code::SERVICE_ERROR, "injected timeout");
            }
            FailMode::TimeoutAfterAccept => {}
        }
    }
    let response = accept(shared, &tenant, event, &body);
    if failure == Some(FailMode::TimeoutAfterAccept) {
        let hold_for = lock(&shared.faults).timeout_hold;
        hold(shared, hold_for).await;
    }
    response
}

fn accept(shared: &Shared, tenant: &str, event: CtpEvent, body: &Bytes) -> Response {
    let request: SaasRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return refuse(shared, classify_parse_error(&e)),
    };
    if let Err(refusal) = validate(event, &request) {
        return refuse(shared, refusal);
    }
    // The request as we understood it, in our field order: a repeat with other spacing or
    // key order is still the same request.
    let canonical = match serde_json::to_vec(&request) {
        Ok(v) => Zeroizing::new(v),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, code::SERVICE_ERROR, "cannot serialize"),
    };
    let digest = digest::digest(&digest::SHA256, &canonical);
    let accepted = lock(&shared.state).accept(tenant, event, &request, digest);
    match accepted {
        Err(refusal) => refuse(shared, refusal),
        Ok(outcome) => {
            match &outcome {
                Accept::New(trace) => {
                    Counters::bump(&shared.counters.requests_accepted);
                    let due = Due {
                        at: tokio::time::Instant::now() + shared.config.callback_delay,
                        tenant: tenant.to_owned(),
                        trace: trace.clone(),
                    };
                    let _ = shared.completions.send(due);
                }
                Accept::Replay(_) => Counters::bump(&shared.counters.replays),
            }
            let body = Accepted { request_trace_id: outcome.trace().to_owned() };
            json(StatusCode::ACCEPTED, &json!(body))
        }
    }
}

async fn faults(shared: &Shared, request: Request) -> Response {
    match *request.method() {
        Method::GET => {}
        Method::DELETE => *lock(&shared.faults) = Faults::default(),
        Method::POST => {
            let body = match read_body(request, 16 * 1024).await {
                Ok((_, body)) => body,
                Err(e) => return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, &e.to_string()),
            };
            match serde_json::from_slice::<FaultsPatch>(&body) {
                Ok(patch) => lock(&shared.faults).apply(patch),
                Err(e) => return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, &e.to_string()),
            }
        }
        _ => return not_allowed("GET, POST, DELETE"),
    }
    json(StatusCode::OK, &json!(*lock(&shared.faults)))
}
