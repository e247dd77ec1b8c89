//! M2P's response envelope, `{result, exception, pagination}`, and the catalogue of
//! stable error codes. Every internal API error is one [`ApiError`], mapped to a status
//! and an envelope here, once. Internal causes are logged by the caller, never sent.

use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{Response, json as json_response};

/// The catalogue. Codes are stable: clients match on them. Keep the README's table in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Y100: the body or a field is not what the API accepts.
    InvalidRequest,
    /// Y101: no `TENANT` (or `X-TENANT-ID`) header.
    MissingTenant,
    /// Y102: no valid bearer token.
    Unauthorized,
    /// Y103: the token does not allow this tenant.
    TenantNotAllowed,
    /// Y104: no such entity in this tenant.
    EntityNotFound,
    /// Y105: no such kit for this entity.
    KitNotFound,
    /// Y106: no such request.
    RequestNotFound,
    /// Y109 (M2P's): the entity has no ACTIVE Click to Pay registration.
    NotRegistered,
    /// Y110: the entity is already registered.
    AlreadyRegistered,
    /// Y111: the kit is already enrolled.
    KitAlreadyEnrolled,
    /// Y112: the kit is not enrolled.
    KitNotEnrolled,
    /// Y113: another request for this entity is in progress.
    RequestInProgress,
    /// Y120: the Idempotency-Key was used with another body.
    IdempotencyConflict,
    /// Y121: a request with this Idempotency-Key is still running.
    IdempotencyInFlight,
    /// Y130: the Click to Pay network (SaaS layer) is unreachable; nothing was changed.
    NetworkUnavailable,
    /// Y131: the Click to Pay network refused the request.
    NetworkRejected,
    /// Y404: no such path.
    NoSuchRoute,
    /// Y405: wrong method.
    MethodNotAllowed,
    /// Y500: our own failure.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        Self::InvalidRequest,
        Self::MissingTenant,
        Self::Unauthorized,
        Self::TenantNotAllowed,
        Self::EntityNotFound,
        Self::KitNotFound,
        Self::RequestNotFound,
        Self::NotRegistered,
        Self::AlreadyRegistered,
        Self::KitAlreadyEnrolled,
        Self::KitNotEnrolled,
        Self::RequestInProgress,
        Self::IdempotencyConflict,
        Self::IdempotencyInFlight,
        Self::NetworkUnavailable,
        Self::NetworkRejected,
        Self::NoSuchRoute,
        Self::MethodNotAllowed,
        Self::Internal,
    ];

    /// `(code, status, shortMessage)`.
    pub fn describe(self) -> (&'static str, StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidRequest => ("Y100", StatusCode::BAD_REQUEST, "Invalid request"),
            MissingTenant => ("Y101", StatusCode::BAD_REQUEST, "Tenant header is required"),
            Unauthorized => ("Y102", StatusCode::UNAUTHORIZED, "Unauthorized"),
            TenantNotAllowed => ("Y103", StatusCode::FORBIDDEN, "Token does not allow this tenant"),
            EntityNotFound => ("Y104", StatusCode::NOT_FOUND, "Entity not found"),
            KitNotFound => ("Y105", StatusCode::NOT_FOUND, "Kit not found"),
            RequestNotFound => ("Y106", StatusCode::NOT_FOUND, "Request not found"),
            NotRegistered => ("Y109", StatusCode::CONFLICT, "Not a registered Customer"),
            AlreadyRegistered => ("Y110", StatusCode::CONFLICT, "Customer already registered on Click to Pay"),
            KitAlreadyEnrolled => ("Y111", StatusCode::CONFLICT, "Kit already enrolled on Click to Pay"),
            KitNotEnrolled => ("Y112", StatusCode::CONFLICT, "Kit not enrolled on Click to Pay"),
            RequestInProgress => ("Y113", StatusCode::CONFLICT, "A Click to Pay request for this customer is in progress"),
            IdempotencyConflict => ("Y120", StatusCode::CONFLICT, "Idempotency-Key reused with a different request"),
            IdempotencyInFlight => ("Y121", StatusCode::CONFLICT, "A request with this Idempotency-Key is still running"),
            NetworkUnavailable => ("Y130", StatusCode::SERVICE_UNAVAILABLE, "Click to Pay network unavailable"),
            NetworkRejected => ("Y131", StatusCode::UNPROCESSABLE_ENTITY, "Rejected by the Click to Pay network"),
            NoSuchRoute => ("Y404", StatusCode::NOT_FOUND, "No such endpoint"),
            MethodNotAllowed => ("Y405", StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            Internal => ("Y500", StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
        }
    }
}

/// An error answer: a code and, where useful, a detail that names a field or a network
/// error code — never a value the caller sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self { code, detail: None }
    }

    pub fn with(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: Some(detail.into()) }
    }

    pub fn status(&self) -> StatusCode {
        self.code.describe().1
    }

    /// The envelope body.
    pub fn body(&self) -> Value {
        let (code, _, short) = self.code.describe();
        json!({
            "result": null,
            "exception": {
                "detailMessage": self.detail.as_deref().unwrap_or(short),
                "shortMessage": short,
                "errorCode": code,
                "languageCode": "en",
            },
            "pagination": null,
        })
    }

    pub fn response(&self) -> Response {
        json_response(self.status(), &self.body())
    }
}

impl From<crate::enrollment::Refusal> for ApiError {
    fn from(r: crate::enrollment::Refusal) -> Self {
        use crate::enrollment::Refusal::*;
        Self::new(match r {
            NotRegistered => ErrorCode::NotRegistered,
            AlreadyRegistered => ErrorCode::AlreadyRegistered,
            KitAlreadyEnrolled => ErrorCode::KitAlreadyEnrolled,
            KitNotEnrolled => ErrorCode::KitNotEnrolled,
            InProgress => ErrorCode::RequestInProgress,
        })
    }
}

/// A success answer: `{result, exception: null, pagination: null}`.
pub fn ok(status: StatusCode, result: impl Serialize) -> Response {
    json_response(status, &envelope_value(result))
}

pub fn envelope_value(result: impl Serialize) -> Value {
    json!({ "result": result, "exception": null, "pagination": null })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's error table is what client teams read: every code, with its status.
    #[test]
    fn the_readme_lists_every_code_with_its_status() {
        let readme = include_str!("../../README.md");
        for code in ErrorCode::ALL {
            let (code, status, _) = code.describe();
            let row = readme
                .lines()
                .find(|l| l.starts_with('|') && l.split('|').nth(1).is_some_and(|c| c.split(',').any(|c| c.trim() == code)))
                .unwrap_or_else(|| panic!("{code} is not in the README's error table"));
            assert!(row.contains(status.as_str()), "{code}'s row does not give {status}: {row}");
        }
    }

    #[test]
    fn codes_are_unique_and_y109_is_m2ps() {
        let mut codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.describe().0).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        let body = ApiError::new(ErrorCode::NotRegistered).body();
        assert_eq!(body["exception"]["errorCode"], "Y109");
        assert_eq!(body["exception"]["shortMessage"], "Not a registered Customer");
        assert_eq!(body["result"], Value::Null);
        assert_eq!(body["pagination"], Value::Null);
    }
}
