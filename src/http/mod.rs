//! hyper 1 server plumbing, shared by the three listeners: the accept loop with TLS and
//! graceful shutdown ([`server`]), TLS configuration ([`tls`]), routing by name
//! ([`router`]), and the small vocabulary of bodies and responses below.

pub mod config;
pub mod connection;
pub mod fd_limit;
pub mod router;
pub mod server;
pub mod tls;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

/// Every response body is a complete buffer: nothing we send is streamed.
pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;
pub type Request = http::Request<Incoming>;

/// A response with a status and no body.
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// An `application/json` response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("request body could not be read: {0}")]
    Io(String),
}

/// Reads the whole body, refusing more than `limit` bytes: by `Content-Length` before
/// reading anything, and by counting while reading for chunked bodies.
pub async fn read_body(request: Request, limit: usize) -> Result<(http::request::Parts, Bytes), BodyError> {
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Io(e.to_string())),
    }
}
