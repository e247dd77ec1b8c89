//! The internal API (internal listener): the issuer's services enroll and remove
//! consumers and cards, keep their data in sync and read where everything stands.
//!
//! Every request passes the same gate, in this order: route → bearer JWT → tenant header
//! (the token must allow it) → correlation id → body limit → Idempotency-Key replay. The
//! handlers in [`registry`] and [`ctp`] then translate between JSON and domain calls.
//! Answers use seed 000's envelope ([`envelope`]). Another tenant's entity is "not found".

pub mod auth;
pub mod config;
pub mod ctp;
pub mod envelope;
pub mod registry;
pub mod saas_callback;

use std::sync::LazyLock;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::App;
use crate::http::router::Router;
use crate::http::{BodyError, Request, Response, read_body};
use envelope::{ApiError, ErrorCode};

/// Largest request body the internal API reads.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    RegisterEntityAndKit,
    AddKit,
    RemoveKit,
    RemoveEntity,
    UpdateEntity,
    UpdateKit,
    FetchRequestStatus,
    FetchEntityDetails,
    Entity,
    Kit,
}

impl Route {
    /// The route's name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::RegisterEntityAndKit => "register_entity_and_kit",
            Self::AddKit => "add_kit",
            Self::RemoveKit => "remove_kit",
            Self::RemoveEntity => "remove_entity",
            Self::UpdateEntity => "update_entity",
            Self::UpdateKit => "update_kit",
            Self::FetchRequestStatus => "fetch_request_status",
            Self::FetchEntityDetails => "fetch_entity_details",
            Self::Entity => "registry_entity",
            Self::Kit => "registry_kit",
        }
    }

    fn methods(self) -> &'static [Method] {
        match self {
            Self::Entity | Self::Kit => &[Method::GET, Method::PUT],
            _ => &[Method::POST],
        }
    }
}

static ROUTES: LazyLock<Router<Route>> = LazyLock::new(|| {
    Router::new([
        ("/click-to-pay/v1/registerEntityAndKit", Route::RegisterEntityAndKit),
        ("/click-to-pay/v1/addKit", Route::AddKit),
        ("/click-to-pay/v1/removeKit", Route::RemoveKit),
        ("/click-to-pay/v1/removeEntity", Route::RemoveEntity),
        ("/click-to-pay/v1/updateEntity", Route::UpdateEntity),
        ("/click-to-pay/v1/updateKit", Route::UpdateKit),
        ("/click-to-pay/v1/fetchRequestStatus", Route::FetchRequestStatus),
        ("/click-to-pay/v1/fetchEntityDetails", Route::FetchEntityDetails),
        ("/registry/v1/entities/{entityId}", Route::Entity),
        ("/registry/v1/entities/{entityId}/kits/{kitNo}", Route::Kit),
    ])
});

/// What a handler knows of its request once it passed the gate.
pub struct Call {
    pub app: App,
    pub tenant: String,
    pub correlation_id: Option<String>,
    pub method: Method,
    pub params: Vec<(String, String)>,
    pub body: Bytes,
}

impl Call {
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// The body as `T`; a shape error names the field, never its value.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "body is not valid JSON".to_owned(),
                _ => describe_shape_error(&e),
            };
            ApiError::with(ErrorCode::InvalidRequest, what)
        })
    }
}

/// serde's data errors quote values ("invalid type: string \"4111…\""); keep only the part
/// that names what was expected or missing.
fn describe_shape_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if let Some(field) = text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        return format!("missing field {field}");
    }
    if let Some(field) = text.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        // The name is the caller's own text: echo it only if it looks like a field name.
        return match echoable_field_name(field) {
            Some(field) => format!("unknown field {field}"),
            None => "unknown field".into(),
        };
    }
    match text.rsplit_once(", expected ") {
        Some((_, expected)) => format!("wrong type: expected {}", expected.split(" at line").next().unwrap_or(expected)),
        None => "body does not match the expected shape".into(),
    }
}

/// A field name from the caller, fit to put in an answer and a log line: at most 64 of
/// letters, digits, `_`, `-` and `.`, or nothing.
fn echoable_field_name(name: &str) -> Option<&str> {
    let fits = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    fits.then_some(name)
}

/// Entry point from the internal listener. Returns the response and the route name.
pub async fn handle(app: App, request: Request) -> (Response, &'static str) {
    let Some(routed) = ROUTES.at(request.uri().path()) else {
        return (ApiError::new(ErrorCode::NoSuchRoute).response(), "unmatched");
    };
    let route = *routed.route;
    let params = routed.params.clone();
    if !route.methods().contains(request.method()) {
        return (ApiError::new(ErrorCode::MethodNotAllowed).response(), route.name());
    }
    let response = match gate_and_run(app, route, params, request).await {
        Ok(response) => response,
        Err(error) => error.response(),
    };
    (response, route.name())
}

async fn gate_and_run(app: App, route: Route, params: Vec<(String, String)>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = app.api_auth().verify(authorization, SystemTime::now()).map_err(|e| {
        tracing::info!(reason = %e, "internal API: unauthorized");
        ApiError::new(ErrorCode::Unauthorized)
    })?;
    let tenant = tenant_header(&headers)?;
    if !caller.may_act_for(&tenant) {
        return Err(ApiError::new(ErrorCode::TenantNotAllowed));
    }
    let correlation_id = correlation_id(&headers)?;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (_, body) = read_body(request, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge(n) => ApiError::with(ErrorCode::InvalidRequest, format!("body exceeds {n} bytes")),
        BodyError::Io(_) => ApiError::with(ErrorCode::InvalidRequest, "body could not be read"),
    })?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| ApiError::with(ErrorCode::InvalidRequest, "Idempotency-Key must be 1 to 255 printable characters"))?
                .to_owned(),
        ),
    };
    tracing::debug!(route = route.name(), %tenant, correlation_id = correlation_id.as_deref().unwrap_or(""), "internal API call");
    let call = Call { app: app.clone(), tenant: tenant.clone(), correlation_id, method: method.clone(), params, body };
    let Some(key) = idempotency_key.filter(|_| method != Method::GET) else {
        return run(route, &call).await;
    };
    let hash = request_hash(&method, &path, &call.body);
    let store = app.store();
    if let Some(saved) = store.idempotent_response(&tenant, &key).await.map_err(internal)? {
        if saved.request_hash != hash {
            return Err(ApiError::new(ErrorCode::IdempotencyConflict));
        }
        let status = StatusCode::from_u16(saved.response_status as u16).unwrap_or(StatusCode::OK);
        let body: Value = serde_json::from_str(&saved.response_body).unwrap_or(Value::Null);
        let mut response = crate::http::json(status, &body);
        response.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
        return Ok(response);
    }
    let (status, body) = match run(route, &call).await {
        Ok(response) => response_parts(response).await,
        Err(error) => (error.status(), error.body()),
    };
    // Our own failures are not remembered: a retry with the same key may succeed.
    if !status.is_server_error() {
        store.save_idempotent_response(&tenant, &key, &hash, status.as_u16(), &body.to_string()).await.map_err(internal)?;
    }
    Ok(crate::http::json(status, &body))
}

async fn run(route: Route, call: &Call) -> Result<Response, ApiError> {
    use crate::enrollment::CtpEvent;
    match route {
        Route::RegisterEntityAndKit => ctp::operation(call, CtpEvent::RegisterEntityAndKit).await,
        Route::AddKit => ctp::operation(call, CtpEvent::AddKit).await,
        Route::RemoveKit => ctp::operation(call, CtpEvent::RemoveKit).await,
        Route::RemoveEntity => ctp::operation(call, CtpEvent::RemoveEntity).await,
        Route::UpdateEntity => ctp::operation(call, CtpEvent::UpdateEntity).await,
        Route::UpdateKit => ctp::operation(call, CtpEvent::UpdateKit).await,
        Route::FetchRequestStatus => ctp::request_status(call).await,
        Route::FetchEntityDetails => ctp::entity_details(call).await,
        Route::Entity if call.method == Method::PUT => registry::put_entity(call).await,
        Route::Entity => registry::get_entity(call).await,
        Route::Kit if call.method == Method::PUT => registry::put_kit(call).await,
        Route::Kit => registry::get_kit(call).await,
    }
}

async fn response_parts(response: Response) -> (StatusCode, Value) {
    use http_body_util::BodyExt;
    let status = response.status();
    let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn request_hash(method: &Method, path: &str, body: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(method.as_str().as_bytes());
    ctx.update(b" ");
    ctx.update(path.as_bytes());
    ctx.update(b"\n");
    ctx.update(body);
    hex::encode(ctx.finish())
}

/// `TENANT` (M2P's name) or `X-TENANT-ID`.
fn tenant_header(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get("tenant").or_else(|| headers.get("x-tenant-id")).ok_or(ApiError::new(ErrorCode::MissingTenant))?;
    let tenant = value.to_str().map_err(|_| ApiError::new(ErrorCode::MissingTenant))?.trim();
    if tenant.is_empty() || tenant.len() > 64 || !tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::with(ErrorCode::InvalidRequest, "tenant must be 1 to 64 letters, digits, - or _"));
    }
    Ok(tenant.to_owned())
}

/// `x-correlation-id`: Thales D1's rule, `^[A-Za-z0-9_-]{1,64}$`, because it is logged in
/// clear and passed on.
fn correlation_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("x-correlation-id") else { return Ok(None) };
    let id = value.to_str().unwrap_or_default();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::with(ErrorCode::InvalidRequest, "x-correlation-id must match ^[A-Za-z0-9_-]{1,64}$"));
    }
    Ok(Some(id.to_owned()))
}

/// Logs an internal failure and answers Y500.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal API failure");
    ApiError::new(ErrorCode::Internal)
}

/// Entity and kit identifiers in paths and bodies: 1 to 64 of letters, digits, `-`, `_`.
pub fn check_id(name: &str, value: &str) -> Result<(), ApiError> {
    if !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(ApiError::with(ErrorCode::InvalidRequest, format!("{name} must be 1 to 64 letters, digits, - or _")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        entity_id: String,
    }

    fn shape_error(json: &str) -> String {
        describe_shape_error(&serde_json::from_str::<Body>(json).unwrap_err())
    }

    #[test]
    fn an_unknown_field_is_named_only_when_it_looks_like_a_name() {
        assert_eq!(shape_error(r#"{"entity_id":"e","kitNo":"k"}"#), "unknown field kitNo");
        let card = "4111111111111111";
        let hostile = [format!("{card} "), "<script>".into(), "x".repeat(65), "a\u{202e}b".into()];
        for name in hostile {
            let json = serde_json::json!({"entity_id": "e", name.clone(): 1}).to_string();
            assert_eq!(shape_error(&json), "unknown field", "{name}");
        }
    }

    #[test]
    fn a_wrong_type_says_what_was_expected_and_not_the_value() {
        let text = shape_error(r#"{"entity_id": 4111111111111111}"#);
        assert!(text.starts_with("wrong type: expected"), "{text}");
        assert!(!text.contains("4111"), "{text}");
        // A value that quotes serde's own phrase is not echoed either.
        let text = shape_error(r#"{"entity_id": ["4111111111111111, expected a secret"]}"#);
        assert!(!text.contains("4111") && !text.contains("secret"), "{text}");
    }
}
