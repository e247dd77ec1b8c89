//! The internal API (internal listener): the issuer's services enroll and remove
//! consumers and cards, keep their data in sync and read where everything stands.
//!
//! Every request passes the same gate ([`gate`]), in this order: route → bearer JWT →
//! tenant header (the token must allow it, and the tenant must be declared) → correlation
//! id → body limit → Idempotency-Key claim. The handlers in [`registry`] and [`m2p`] then
//! translate between JSON and domain calls, nothing else. Answers use M2P's envelope
//! ([`envelope`]). Another tenant's entity is "not found".

pub mod envelope;
pub mod gate;
pub mod m2p;
pub mod registry;
pub mod widget;

use std::sync::LazyLock;

use bytes::Bytes;
use http::Method;
use serde::de::DeserializeOwned;

use crate::ctp::CtpEvent;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::ids::{CorrelationId, IdError, TenantId};
use crate::state::Services;
use envelope::{ApiError, ErrorCode};

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
    DetailsUrl,
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
            Self::DetailsUrl => "details_url",
        }
    }

    /// Whether an `Idempotency-Key` may replay this route's answers. Not a card-details
    /// link's: replaying one would mean keeping the link (a bearer capability for a card
    /// number) in the database; every call makes a new one-time link instead.
    fn replays(self) -> bool {
        self != Self::DetailsUrl
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
        ("/registry/v1/entities/{entityId}/kits/{kitNo}/detailsUrl", Route::DetailsUrl),
    ])
});

/// What a handler knows of its request once it passed the gate.
pub struct Call<'a> {
    pub services: &'a Services,
    pub tenant: TenantId,
    pub correlation_id: Option<CorrelationId>,
    pub method: Method,
    pub params: Vec<(String, String)>,
    pub body: Bytes,
}

impl Call<'_> {
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// A path parameter parsed as an identifier of its kind.
    pub fn id<T>(&self, name: &str, parse: fn(&str) -> Result<T, IdError>) -> Result<T, ApiError> {
        parse(self.param(name)).map_err(invalid)
    }

    /// The body as `T`; a shape error names the field, never its value.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        json_body(&self.body)
    }
}

/// A request body as `T`, the way every handler reads one: a syntax error says so, a
/// shape error names the field, never its value.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "body is not valid JSON".to_owned(),
            _ => describe_shape_error(&e),
        };
        ApiError::with(ErrorCode::InvalidRequest, what)
    })
}

/// An identifier that is not one: Y100, naming the field and its rule.
pub fn invalid(e: IdError) -> ApiError {
    ApiError::with(ErrorCode::InvalidRequest, e.to_string())
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
/// letters, digits, `_`, `-` and `.`, fewer than 8 of them digits (a card number, bare or
/// in groups, is no field name), or nothing.
fn echoable_field_name(name: &str) -> Option<&str> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && name.bytes().filter(u8::is_ascii_digit).count() < 8;
    fits.then_some(name)
}

/// Entry point from the internal listener. Returns the response and the route name.
pub async fn handle(services: &Services, request: Request) -> (Response, &'static str) {
    let Some(routed) = ROUTES.at(request.uri().path()) else {
        return (ApiError::new(ErrorCode::NoSuchRoute).response(), "unmatched");
    };
    let route = *routed.route;
    let params = routed.params.clone();
    if !route.methods().contains(request.method()) {
        return (ApiError::new(ErrorCode::MethodNotAllowed).response(), route.name());
    }
    let response = match gate::pass(services, route, params, request).await {
        Ok(response) => response,
        Err(error) => error.response(),
    };
    (response, route.name())
}

/// Runs the route's handler.
async fn run(route: Route, call: &Call<'_>) -> Result<Response, ApiError> {
    match route {
        Route::RegisterEntityAndKit => m2p::operation(call, CtpEvent::RegisterEntityAndKit).await,
        Route::AddKit => m2p::operation(call, CtpEvent::AddKit).await,
        Route::RemoveKit => m2p::operation(call, CtpEvent::RemoveKit).await,
        Route::RemoveEntity => m2p::operation(call, CtpEvent::RemoveEntity).await,
        Route::UpdateEntity => m2p::operation(call, CtpEvent::UpdateEntity).await,
        Route::UpdateKit => m2p::operation(call, CtpEvent::UpdateKit).await,
        Route::FetchRequestStatus => m2p::request_status(call).await,
        Route::FetchEntityDetails => m2p::entity_details(call).await,
        Route::Entity if call.method == Method::PUT => registry::put_entity(call).await,
        Route::Entity => registry::get_entity(call).await,
        Route::Kit if call.method == Method::PUT => registry::put_kit(call).await,
        Route::Kit => registry::get_kit(call).await,
        Route::DetailsUrl => widget::details_url(call).await,
    }
}

/// Logs an internal failure and answers Y500.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal API failure");
    ApiError::new(ErrorCode::Internal)
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
        assert_eq!(shape_error(r#"{"entity_id":"e","addressLine1":"k"}"#), "unknown field addressLine1");
        let card = "4111111111111111";
        let hostile = [
            format!("{card} "),
            card.into(),
            "4111-1111-1111-1111".into(),
            "pan_4111_1111_1111_1111".into(),
            "<script>".into(),
            "x".repeat(65),
            "a\u{202e}b".into(),
        ];
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
