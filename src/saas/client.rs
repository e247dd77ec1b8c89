//! The client of the Click to Pay SaaS layer: the six operations, `/status` and `/getData`
//! (`docs/saas.md`), over HTTPS with rustls (plain HTTP only to a loopback host).
//!
//! # Retries, and why they cannot double an operation
//!
//! Timeouts, connection errors, 5xx and 429 are retried with jittered exponential backoff
//! (`Retry-After` honoured). For the two GETs that is plainly safe. For the six operations
//! it is safe because every attempt carries the same body, and so the same `requestId`,
//! which the SaaS deduplicates: a repeat of a `requestId` is answered with the first
//! request's `requestTraceId` and starts nothing (see [`super::wire`]). A timed-out attempt
//! that the SaaS did process is thus answered, on the retry, with the trace of the one
//! operation that runs. Callers keep that guarantee by reusing a request's `requestId` for
//! as long as they retry it, across restarts too (it is stored with the request trace).
//!
//! 4xx answers other than 429 are not retried: they are [`SaasError::Rejected`], the
//! caller's to handle.
//!
//! # What is never logged
//!
//! Request bodies (they hold card numbers and personal data), the API key, and answer
//! bodies. Messages that come from the SaaS are passed through [`super::scrub`] before they
//! reach an error.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::config::SaasConfig;
pub use super::config::{check_base_url, check_callback_url};
use super::scrub;
use super::wire::{self, Accepted, ErrorBody, Profile, RequestStatus, SaasRequest};
use crate::ctp::CtpEvent;

/// Largest answer read. Ours are a few KiB; a bigger one is a broken or hostile server.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Longest `requestTraceId` accepted (VICA's are 36-character UUIDs).
const MAX_TRACE_ID_LEN: usize = 64;

/// Why a SaaS call did not give an answer we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaasError {
    /// A 4xx answer (not 429): the SaaS refused the request. Not retried. `error_code` is
    /// the body's `errorCode` (`VIDC-1001`…), or `HTTP_<status>` without one.
    #[error("SaaS refused the request: HTTP {status} {error_code}: {message}")]
    Rejected { status: u16, error_code: String, message: String },
    /// Every attempt failed with a timeout, a connection error, a 5xx or a 429.
    #[error("SaaS unavailable: {0}")]
    Unavailable(String),
    /// An answer we cannot read: not the JSON of the contract, or inconsistent with the
    /// request. Not retried.
    #[error("SaaS answer not understood: {0}")]
    Protocol(String),
    /// The request could not be sent as given (a tenant or correlation id that is not a
    /// valid header value). Nothing was sent.
    #[error("SaaS request cannot be sent: {0}")]
    InvalidRequest(String),
}

impl SaasError {
    /// The `errorCode` of a rejection.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Rejected { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// A short stable name, for metrics labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Unavailable(_) => "unavailable",
            Self::Protocol(_) => "protocol",
            Self::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// The client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("SaaS client: {0}")]
pub struct ClientBuildError(String);

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    max_retries: u32,
    base: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// "Equal jitter": half the exponential delay, plus a random part of the other half,
    /// so that clients that failed together do not retry together.
    fn delay(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(retry.min(16))).min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// The client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct SaasClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<SecretString>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for SaasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaasClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("retry", &self.retry)
            .finish()
    }
}

/// One answer, before it is interpreted.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl SaasClient {
    /// A client for the SaaS at `base_url` (checked by [`check_base_url`]; the embedded
    /// simulator's address when `config.base_url` is absent), with the timeouts, retries,
    /// API key and trust roots of `config`.
    pub fn new(base_url: &str, config: &SaasConfig) -> Result<Self, ClientBuildError> {
        let url = check_base_url(base_url).map_err(|e| ClientBuildError(format!("base URL: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirect could send a body holding a card number to another host.
            .redirect(reqwest::redirect::Policy::none())
            // Deterministic routing: no proxy taken from the environment.
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("ctp-issuer/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| ClientBuildError(format!("saas.ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientBuildError(format!("saas.ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ClientBuildError(format!("saas.ca_file {}: no certificate", path.display())));
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| ClientBuildError(describe(&e)))?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone(),
            retry: RetryPolicy { max_retries: config.max_retries, base: config.backoff_base, max: config.backoff_max },
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends one of the six operations: `event`'s endpoint and method, `request` as body.
    /// Returns the SaaS's `requestTraceId`. Retried as the module documentation says; a
    /// retry is safe because it carries the same `requestId`.
    pub async fn submit(
        &self,
        tenant: &str,
        correlation_id: Option<&str>,
        event: CtpEvent,
        request: &SaasRequest,
    ) -> Result<Accepted, SaasError> {
        let (method, path) = wire::endpoint(event);
        let url = self.url(path, None)?;
        // Serialized once: every attempt sends the very same bytes.
        let body =
            Bytes::from(serde_json::to_vec(request).map_err(|e| SaasError::InvalidRequest(format!("body: {}", scrub(&e.to_string()))))?);
        let headers = self.headers(tenant, correlation_id)?;
        let answer = self.call(event.as_str(), method, url, headers, Some(body)).await?;
        if !answer.status.is_success() {
            return Err(rejected(&answer));
        }
        let accepted: Accepted = parse(&answer.body)?;
        let id = &accepted.request_trace_id;
        if id.is_empty() || id.len() > MAX_TRACE_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SaasError::Protocol("requestTraceId is empty, too long or not printable".into()));
        }
        tracing::debug!(tenant, event = event.as_str(), request_trace_id = %id, "SaaS accepted the request");
        Ok(accepted)
    }

    /// `GET /status`: where the request stands. `None` when the SaaS does not know the
    /// trace (404 with an error body).
    pub async fn status(&self, tenant: &str, request_trace_id: &str) -> Result<Option<RequestStatus>, SaasError> {
        let url = self.url("/status", Some(("requestTraceId", request_trace_id)))?;
        let headers = self.headers(tenant, None)?;
        let answer = self.call("status", Method::GET, url, headers, None).await?;
        if answer.status == StatusCode::NOT_FOUND && parse::<ErrorBody>(&answer.body).is_ok() {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(rejected(&answer));
        }
        let status: RequestStatus = parse(&answer.body)?;
        if status.request_trace_id != request_trace_id {
            return Err(SaasError::Protocol("answer is about another requestTraceId".into()));
        }
        if status.status == wire::RequestState::Completed && status.outcome.is_none() {
            return Err(SaasError::Protocol("COMPLETED without an outcome".into()));
        }
        Ok(Some(status))
    }

    /// `GET /getData`: the consumer's profile at the network. `None` when the consumer was
    /// never enrolled (404 `VIDC-2001`).
    pub async fn get_data(&self, tenant: &str, external_consumer_id: &str) -> Result<Option<Profile>, SaasError> {
        self.get_data_correlated(tenant, None, external_consumer_id).await
    }

    /// [`Self::get_data`] passing our caller's correlation id through.
    pub async fn get_data_correlated(
        &self,
        tenant: &str,
        correlation_id: Option<&str>,
        external_consumer_id: &str,
    ) -> Result<Option<Profile>, SaasError> {
        let url = self.url("/getData", Some(("externalConsumerID", external_consumer_id)))?;
        let headers = self.headers(tenant, correlation_id)?;
        let answer = self.call("getData", Method::GET, url, headers, None).await?;
        if answer.status == StatusCode::NOT_FOUND
            && parse::<ErrorBody>(&answer.body).is_ok_and(|e| e.error_code == wire::code::CONSUMER_NOT_ENROLLED)
        {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(rejected(&answer));
        }
        let profile: Profile = parse(&answer.body)?;
        if profile.external_consumer_id != external_consumer_id {
            return Err(SaasError::Protocol("answer is about another externalConsumerID".into()));
        }
        Ok(Some(profile))
    }

    fn url(&self, path: &str, query: Option<(&str, &str)>) -> Result<Url, SaasError> {
        let mut url = Url::parse(&format!("{}{path}", self.base)).map_err(|e| SaasError::InvalidRequest(format!("URL: {e}")))?;
        if let Some((name, value)) = query {
            if value.is_empty() {
                return Err(SaasError::InvalidRequest(format!("{name} is empty")));
            }
            url.query_pairs_mut().append_pair(name, value);
        }
        Ok(url)
    }

    fn headers(&self, tenant: &str, correlation_id: Option<&str>) -> Result<HeaderMap, SaasError> {
        let mut headers = HeaderMap::new();
        if tenant.is_empty() {
            return Err(SaasError::InvalidRequest("tenant is empty".into()));
        }
        let tenant = HeaderValue::from_str(tenant).map_err(|_| SaasError::InvalidRequest("tenant is not a valid header value".into()))?;
        headers.insert(wire::TENANT_HEADER, tenant);
        if let Some(id) = correlation_id {
            let id =
                HeaderValue::from_str(id).map_err(|_| SaasError::InvalidRequest("correlation id is not a valid header value".into()))?;
            headers.insert(wire::CORRELATION_HEADER, id);
        }
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| SaasError::InvalidRequest("saas.api_key is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        Ok(headers)
    }

    /// Sends with retries; returns the first answer that is not a reason to retry.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Answer, SaasError> {
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 0..=self.retry.max_retries {
            let mut request = self.http.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(body) = &body {
                request = request.header(header::CONTENT_TYPE, "application/json").body(body.clone());
            }
            let (reason, retry_after) = match self.once(request).await {
                Ok((answer, retry_after)) => {
                    let status = answer.status;
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        let code = parse::<ErrorBody>(&answer.body).map(|e| format!(" {}", scrub(&e.error_code))).unwrap_or_default();
                        (format!("HTTP {}{code}", status.as_u16()), retry_after)
                    } else {
                        observe(operation, if status.is_success() { "ok" } else { "rejected" }, started);
                        return Ok(answer);
                    }
                }
                Err(e) => (e, None),
            };
            last = reason;
            if attempt == self.retry.max_retries {
                break;
            }
            let delay = match retry_after {
                Some(wait) if wait > self.retry.max => {
                    observe(operation, "unavailable", started);
                    return Err(SaasError::Unavailable(format!(
                        "{operation}: {last}, Retry-After {} s is longer than saas.backoff_max",
                        wait.as_secs()
                    )));
                }
                Some(wait) => wait,
                None => self.retry.delay(attempt),
            };
            metrics::counter!("ctp_saas_retries_total", "operation" => operation).increment(1);
            tracing::warn!(operation, attempt = attempt + 1, reason = %last, delay_ms = delay.as_millis() as u64, "SaaS call failed; retrying");
            tokio::time::sleep(delay).await;
        }
        observe(operation, "unavailable", started);
        Err(SaasError::Unavailable(format!("{operation}: {} attempts, last: {last}", self.retry.max_retries + 1)))
    }

    /// One attempt: the answer and its `Retry-After`, or why there is none (a reason to retry).
    async fn once(&self, request: reqwest::RequestBuilder) -> Result<(Answer, Option<Duration>), String> {
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                // Treated as an unusable answer, retried like a broken connection.
                return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Answer { status, body: body.freeze() }, retry_after))
    }
}

/// A reqwest error as one line: its kind and the chain of causes (which say "connection
/// refused", "operation timed out"…), without the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    scrub(&text)
}

/// `Retry-After`, in either of its forms (RFC 9110 §10.2.3): delay seconds, or an
/// HTTP-date (a date already past means at once).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => httpdate_in(value),
    }
}

/// The delay until an HTTP-date, zero if it is past; `None` if it is not one.
fn httpdate_in(value: &str) -> Option<Duration> {
    let when = humantime_serde::re::humantime::parse_rfc3339_weak(value).ok().or_else(|| parse_imf_fixdate(value))?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`, the one HTTP-date form senders must use.
fn parse_imf_fixdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split([' ', ':']).collect();
    let [_, day, month, year, h, m, s, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].iter().position(|x| x == month)? + 1;
    let text = format!("{year}-{month:02}-{day}T{h}:{m}:{s}Z");
    humantime_serde::re::humantime::parse_rfc3339(&text).ok()
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SaasError> {
    serde_json::from_slice(body).map_err(|e| SaasError::Protocol(scrub(&e.to_string())))
}

fn rejected(answer: &Answer) -> SaasError {
    let status = answer.status.as_u16();
    match serde_json::from_slice::<ErrorBody>(&answer.body) {
        Ok(e) => SaasError::Rejected { status, error_code: scrub(&e.error_code), message: scrub(&e.message) },
        Err(_) => SaasError::Rejected {
            status,
            error_code: format!("HTTP_{status}"),
            message: answer.status.canonical_reason().unwrap_or("").to_owned(),
        },
    }
}

fn observe(operation: &'static str, outcome: &'static str, started: Instant) {
    metrics::counter!("ctp_saas_calls_total", "operation" => operation, "outcome" => outcome).increment(1);
    metrics::histogram!("ctp_saas_call_duration_seconds", "operation" => operation).record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        for _ in 0..100 {
            let d0 = p.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100), "{d0:?}");
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800), "{d3:?}");
            assert!(p.delay(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        assert!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
    }

    #[test]
    fn rejections_carry_the_code_and_a_scrubbed_message() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::from_static(br#"{"errorCode":"VIDC-1003","message":"bad card 4111111111111111"}"#),
        };
        let err = rejected(&answer);
        assert_eq!(err.error_code(), Some("VIDC-1003"));
        assert!(!err.to_string().contains("4111111111111111"), "{err}");
        let bare = rejected(&Answer { status: StatusCode::FORBIDDEN, body: Bytes::from_static(b"<html>") });
        assert_eq!(bare.error_code(), Some("HTTP_403"));
    }

    #[test]
    fn client_debug_hides_the_api_key() {
        let config = SaasConfig { api_key: Some(SecretString::from("k-hunter2")), ..SaasConfig::default() };
        let client = SaasClient::new("http://127.0.0.1:1", &config).unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
        assert!(SaasClient::new("http://saas.example.com", &config).is_err());
    }
}
