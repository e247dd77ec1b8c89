//! Every way a Visa notification can fail, and the one place each maps to an HTTP status.
//!
//! The status codes are those of Visa's enrollment-attempt notification documentation:
//! 400 "do not repeat unchanged", 401 "credentials missing or wrong", 404 "nothing
//! matches", 500 "retry". Responses carry no body (the protocol says so); the [`Rejection`] reason goes to the log and to the
//! `ctp_visa_notification_rejections_total{reason}` metric. No variant holds outside bytes,
//! so nothing here can echo a card number.

use http::StatusCode;

/// Why a notification was not recorded. The `&'static str` code is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    // 400: the request itself is malformed.
    #[error("body exceeds the size limit")]
    BodyTooLarge,
    #[error("body is not a JSON object")]
    BodyNotJson,
    #[error("encryptedData is missing or not a string")]
    MissingEncryptedData,
    #[error("encryptedData exceeds 7000 characters")]
    EncryptedDataTooLong,
    #[error("encryptedData is not a compact JWS")]
    NotCompactJws,
    #[error("JWS payload is not a compact JWE")]
    NotCompactJwe,
    #[error("eventType is not one this endpoint handles")]
    UnknownEventType,
    #[error("tokenRequestorID is not 1 to 64 letters or digits")]
    BadTokenRequestorId,
    #[error("decrypted payload is not a JSON object")]
    PayloadNotJson,
    #[error("decrypted payload lacks a required field")]
    PayloadMissingField,
    #[error("decrypted payload has a field outside Visa's format")]
    PayloadInvalidField,
    #[error("a JOSE header marks critical an extension we do not understand")]
    UnsupportedCriticalHeader,
    // 401: credentials missing or wrong.
    #[error("JWS alg is not allowed")]
    JwsAlgorithmNotAllowed,
    #[error("JWS kid names no configured key")]
    UnknownJwsKey,
    #[error("JWS signature does not verify")]
    BadSignature,
    #[error("JWE alg or enc is not allowed")]
    JweAlgorithmNotAllowed,
    #[error("JWE kid names no configured key")]
    UnknownJweKey,
    #[error("JWE does not decrypt")]
    DecryptionFailed,
    #[error("JWE has no iat")]
    IatMissing,
    #[error("iat is outside the replay window")]
    IatOutsideWindow,
    // 404.
    #[error("card number matches no kit")]
    UnknownCard,
}

impl Rejection {
    pub fn status(self) -> StatusCode {
        use Rejection::*;
        match self {
            BodyTooLarge
            | BodyNotJson
            | MissingEncryptedData
            | EncryptedDataTooLong
            | NotCompactJws
            | NotCompactJwe
            | UnknownEventType
            | BadTokenRequestorId
            | PayloadNotJson
            | PayloadMissingField
            | PayloadInvalidField
            | UnsupportedCriticalHeader => StatusCode::BAD_REQUEST,
            JwsAlgorithmNotAllowed
            | UnknownJwsKey
            | BadSignature
            | JweAlgorithmNotAllowed
            | UnknownJweKey
            | DecryptionFailed
            | IatMissing
            | IatOutsideWindow => StatusCode::UNAUTHORIZED,
            UnknownCard => StatusCode::NOT_FOUND,
        }
    }

    /// Stable snake_case code, used as a metric label and in logs.
    pub fn code(self) -> &'static str {
        use Rejection::*;
        match self {
            BodyTooLarge => "body_too_large",
            BodyNotJson => "body_not_json",
            MissingEncryptedData => "missing_encrypted_data",
            EncryptedDataTooLong => "encrypted_data_too_long",
            NotCompactJws => "not_compact_jws",
            NotCompactJwe => "not_compact_jwe",
            UnknownEventType => "unknown_event_type",
            BadTokenRequestorId => "bad_token_requestor_id",
            PayloadNotJson => "payload_not_json",
            PayloadMissingField => "payload_missing_field",
            PayloadInvalidField => "payload_invalid_field",
            UnsupportedCriticalHeader => "unsupported_critical_header",
            JwsAlgorithmNotAllowed => "jws_alg_not_allowed",
            UnknownJwsKey => "unknown_jws_kid",
            BadSignature => "bad_signature",
            JweAlgorithmNotAllowed => "jwe_alg_not_allowed",
            UnknownJweKey => "unknown_jwe_kid",
            DecryptionFailed => "decryption_failed",
            IatMissing => "iat_missing",
            IatOutsideWindow => "iat_outside_window",
            UnknownCard => "unknown_card",
        }
    }
}

/// A rejection with an optional detail (a field name, never a field value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Rejection,
    pub detail: Option<&'static str>,
}

impl From<Rejection> for Rejected {
    fn from(reason: Rejection) -> Self {
        Self { reason, detail: None }
    }
}

impl Rejection {
    /// The same rejection, naming the field or header it is about.
    pub fn at(self, detail: &'static str) -> Rejected {
        Rejected { reason: self, detail: Some(detail) }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.detail {
            Some(d) => write!(f, "{} ({d})", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}
