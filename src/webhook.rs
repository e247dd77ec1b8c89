//! Signed webhooks the way [Standard Webhooks](https://www.standardwebhooks.com) does them:
//! the sender puts three headers on every delivery,
//!
//! | header | value |
//! | --- | --- |
//! | `webhook-id` | the message id: the same on every retry and duplicate of one message, so a receiver dedups on it |
//! | `webhook-timestamp` | the attempt time, in whole seconds since the Unix epoch |
//! | `webhook-signature` | space-separated `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>` entries |
//!
//! Several `v1` entries may be present: during a key rotation the sender signs with both
//! the old and the new secret, and a receiver that knows either accepts the message.
//! Entries of other versions (`v1a`, asymmetric) are ignored.
//!
//! Secrets are written `whsec_<base64 of the key>`; a secret without that prefix is taken
//! as the raw key bytes (some senders hand out plain strings). Either way the key must be
//! at least [`MIN_KEY_BYTES`] long.
//!
//! The only way to get at a callback's body is through [`WebhookVerifier::verify`], which
//! returns a [`VerifiedWebhook`]: a handler cannot act on bytes whose signature was not
//! checked, because it never holds them.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroizing;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The prefix of a secret in the Standard Webhooks format.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a message's timestamp may be from our clock, either way, unless configured
/// otherwise. Long enough for a slow retry, short enough that a captured message cannot be
/// replayed for long.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Shortest key accepted: below 128 bits an HMAC key can be guessed.
pub const MIN_KEY_BYTES: usize = 16;

/// Longest `webhook-id` accepted. Ids are stored for deduplication; an unbounded one would
/// let a caller fill a column (and the signature only proves it came from the key holder).
pub const MAX_ID_LEN: usize = 256;

/// Most `webhook-signature` entries looked at. Two or three during a rotation is normal;
/// hundreds would only make us spend HMACs.
const MAX_SIGNATURES: usize = 16;

/// One signing key. Wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// Why a secret could not be read. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("webhook secret is empty")]
    Empty,
    #[error("webhook secret after `whsec_` is not valid base64")]
    Base64,
    #[error("webhook secret is {0} bytes; at least 16 are required")]
    TooShort(usize),
}

impl WebhookSecret {
    /// Reads a secret: `whsec_<base64>` (the key is the decoded part), or otherwise the raw
    /// bytes of `text`. Surrounding whitespace (a trailing newline in a file) is ignored.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => Zeroizing::new(B64.decode(encoded).map_err(|_| SecretError::Base64)?),
            None => Zeroizing::new(text.as_bytes().to_vec()),
        };
        Self::from_bytes(&key)
    }

    /// A secret from raw key bytes.
    pub fn from_bytes(key: &[u8]) -> Result<Self, SecretError> {
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Self(SecretSlice::from(key.to_vec())))
    }

    /// A fresh random 32-byte secret and its `whsec_` form (for `ctp-issuer` tooling and
    /// tests; the text is a secret too).
    pub fn generate() -> (Self, secrecy::SecretString) {
        let mut key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(key.as_mut()).expect("system random source");
        let text = format!("{SECRET_PREFIX}{}", B64.encode(key.as_ref()));
        (Self(SecretSlice::from(key.to_vec())), secrecy::SecretString::from(text))
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_secret())
    }
}

/// Why a key directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Format { path: String, source: SecretError },
    #[error("no webhook-*.secret file in {0}")]
    None(String),
}

/// Every `webhook-*.secret` file in `dir`, sorted by file name, as `(name, secret)` where
/// name is the file stem (`webhook-dev-1`). Other files are ignored.
pub fn load_secrets_dir(dir: &Path) -> Result<Vec<(String, WebhookSecret)>, SecretFileError> {
    let read_err = |source| SecretFileError::Read { path: dir.display().to_string(), source };
    let mut paths: Vec<_> =
        std::fs::read_dir(dir).map_err(read_err)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(read_err)?;
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_suffix(".secret") else { continue };
        if !stem.starts_with("webhook-") {
            continue;
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(&path).map_err(|source| SecretFileError::Read { path: path.display().to_string(), source })?,
        );
        let secret = WebhookSecret::parse(&text).map_err(|source| SecretFileError::Format { path: path.display().to_string(), source })?;
        out.push((stem.to_owned(), secret));
    }
    if out.is_empty() {
        return Err(SecretFileError::None(dir.display().to_string()));
    }
    Ok(out)
}

/// The `v1,<base64>` signature of one message with one secret.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&secret.hmac_key(), &signed_content(id, timestamp, body));
    format!("v1,{}", B64.encode(tag.as_ref()))
}

/// The three headers of one delivery, signed with every secret in `secrets` (the whole
/// set during a rotation). The sender's side: the simulator and the tests.
pub fn signature_headers(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets.iter().map(|s| sign(s, id, timestamp, body)).collect();
    [(HEADER_ID, id.to_owned()), (HEADER_TIMESTAMP, timestamp.to_string()), (HEADER_SIGNATURE, signatures.join(" "))]
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + 24 + body.len());
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Why a delivery was refused; none carries the body or a secret. [`WebhookError::is_malformed`]
/// tells a malformed delivery (the callback handler answers 400) from one that fails
/// authentication (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{0} header is malformed")]
    BadHeader(&'static str),
    #[error("webhook-timestamp is not a whole number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s in the past, beyond the tolerance")]
    TooOld(u64),
    #[error("webhook-timestamp is {0} s in the future, beyond the tolerance")]
    TooNew(u64),
    #[error("no webhook-signature entry matches any of our secrets")]
    NoMatchingSignature,
}

impl WebhookError {
    /// A short stable name, for metrics labels and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::BadHeader(_) => "bad_header",
            Self::BadTimestamp => "bad_timestamp",
            Self::TooOld(_) => "too_old",
            Self::TooNew(_) => "too_new",
            Self::NoMatchingSignature => "bad_signature",
        }
    }

    /// A header missing or not in its format: the delivery is malformed, not forged.
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::MissingHeader(_) | Self::BadHeader(_) | Self::BadTimestamp)
    }
}

/// A delivery whose signature and timestamp were checked. The body is reachable only
/// through this type.
#[derive(Clone)]
pub struct VerifiedWebhook {
    id: String,
    timestamp: i64,
    body: Bytes,
}

impl fmt::Debug for VerifiedWebhook {
    // The body may hold personal data: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("id", &self.id)
            .field("timestamp", &self.timestamp)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl VerifiedWebhook {
    /// `webhook-id`: the key to deduplicate on.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `webhook-timestamp`, seconds since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Checks deliveries against a set of secrets (the current one and, during a rotation, the
/// previous ones).
#[derive(Clone)]
pub struct WebhookVerifier {
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier").field("secrets", &self.secrets.len()).field("tolerance", &self.tolerance).finish()
    }
}

impl WebhookVerifier {
    /// A verifier for `secrets`. With none, every delivery is refused: say so at start
    /// rather than discover it on the first callback, by checking [`Self::is_empty`].
    pub fn new(secrets: Vec<WebhookSecret>, tolerance: Duration) -> Self {
        Self { secrets, tolerance }
    }

    /// Every `webhook-*.secret` in `dir` (see [`load_secrets_dir`]).
    pub fn load_dir(dir: &Path, tolerance: Duration) -> Result<Self, SecretFileError> {
        Ok(Self::new(load_secrets_dir(dir)?.into_iter().map(|(_, s)| s).collect(), tolerance))
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Checks the three headers against `body` at time `now`: id present and sane,
    /// timestamp within the tolerance, and at least one `v1` signature made by one of our
    /// secrets (compared in constant time). Order of checks: cheap ones first, so a
    /// replayed or malformed delivery costs no HMAC.
    pub fn verify(&self, headers: &HeaderMap, body: Bytes, now: SystemTime) -> Result<VerifiedWebhook, WebhookError> {
        let id = header(headers, HEADER_ID)?;
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WebhookError::BadHeader(HEADER_ID));
        }
        let timestamp_text = header(headers, HEADER_TIMESTAMP)?;
        let timestamp = parse_timestamp(timestamp_text)?;
        let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let now_secs = i64::try_from(now_secs).unwrap_or(i64::MAX);
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        let delta = now_secs.saturating_sub(timestamp);
        if delta > tolerance {
            return Err(WebhookError::TooOld(delta.unsigned_abs()));
        }
        if delta < -tolerance {
            return Err(WebhookError::TooNew(delta.unsigned_abs()));
        }
        let signatures = header(headers, HEADER_SIGNATURE)?;
        let content = signed_content(id, timestamp, &body);
        let keys: Vec<hmac::Key> = self.secrets.iter().map(WebhookSecret::hmac_key).collect();
        let matched = signatures
            .split(' ')
            .filter(|entry| !entry.is_empty())
            .take(MAX_SIGNATURES)
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| B64.decode(encoded).ok())
            .any(|tag| keys.iter().any(|key| hmac::verify(key, &content, &tag).is_ok()));
        if !matched {
            return Err(WebhookError::NoMatchingSignature);
        }
        Ok(VerifiedWebhook { id: id.to_owned(), timestamp, body })
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WebhookError> {
    let value = headers.get(name).ok_or(WebhookError::MissingHeader(name))?;
    value.to_str().map(str::trim).map_err(|_| WebhookError::BadHeader(name))
}

/// Digits only (no sign, no fraction), at most 12 of them: seconds until the year 33658.
fn parse_timestamp(text: &str) -> Result<i64, WebhookError> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::BadTimestamp);
    }
    text.parse().map_err(|_| WebhookError::BadTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(ts: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    }

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_ID, HeaderValue::from_str(id).unwrap());
        h.insert(HEADER_TIMESTAMP, HeaderValue::from_str(ts).unwrap());
        h.insert(HEADER_SIGNATURE, HeaderValue::from_str(sig).unwrap());
        h
    }

    fn spec_verifier() -> WebhookVerifier {
        WebhookVerifier::new(vec![WebhookSecret::parse(SPEC_SECRET).unwrap()], DEFAULT_TOLERANCE)
    }

    #[test]
    fn matches_the_specification_example() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(&secret, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        let verified = spec_verifier()
            .verify(&headers(SPEC_ID, &SPEC_TS.to_string(), SPEC_SIGNATURE), Bytes::from_static(SPEC_BODY), at(SPEC_TS))
            .unwrap();
        assert_eq!(verified.id(), SPEC_ID);
        assert_eq!(verified.timestamp(), SPEC_TS);
        assert_eq!(verified.body().as_ref(), SPEC_BODY);
    }

    #[test]
    fn any_of_several_signatures_and_secrets_may_match() {
        let (old, _) = WebhookSecret::generate();
        let (new, _) = WebhookSecret::generate();
        let (other, _) = WebhookSecret::generate();
        let body = b"{}";
        // Sender signs with both during a rotation; a receiver that knows only the new one accepts.
        let [_, _, (_, both)] = signature_headers(&[old.clone(), new.clone()], "m1", 100, body);
        let only_new = WebhookVerifier::new(vec![new.clone()], DEFAULT_TOLERANCE);
        assert!(only_new.verify(&headers("m1", "100", &both), Bytes::from_static(body), at(100)).is_ok());
        // A receiver that knows the old and the new accepts a message signed with either.
        let both_keys = WebhookVerifier::new(vec![old.clone(), new.clone()], DEFAULT_TOLERANCE);
        let by_old = sign(&old, "m1", 100, body);
        assert!(both_keys.verify(&headers("m1", "100", &by_old), Bytes::from_static(body), at(100)).is_ok());
        // Other versions and garbage entries are skipped, not fatal.
        let mixed = format!("v1a,abc v1,!!! v2,{} {}", &by_old[3..], by_old);
        assert!(both_keys.verify(&headers("m1", "100", &mixed), Bytes::from_static(body), at(100)).is_ok());
        // Nobody else's signature passes.
        let by_other = sign(&other, "m1", 100, body);
        assert_eq!(
            both_keys.verify(&headers("m1", "100", &by_other), Bytes::from_static(body), at(100)).unwrap_err(),
            WebhookError::NoMatchingSignature
        );
    }

    #[test]
    fn timestamp_tolerance_both_ways() {
        let v = spec_verifier();
        let h = headers(SPEC_ID, &SPEC_TS.to_string(), SPEC_SIGNATURE);
        let body = Bytes::from_static(SPEC_BODY);
        assert!(v.verify(&h, body.clone(), at(SPEC_TS + 300)).is_ok());
        assert!(v.verify(&h, body.clone(), at(SPEC_TS - 300)).is_ok());
        assert_eq!(v.verify(&h, body.clone(), at(SPEC_TS + 301)).unwrap_err(), WebhookError::TooOld(301));
        assert_eq!(v.verify(&h, body.clone(), at(SPEC_TS - 301)).unwrap_err(), WebhookError::TooNew(301));
        let strict = WebhookVerifier::new(v.secrets.clone(), Duration::from_secs(10));
        assert!(matches!(strict.verify(&h, body, at(SPEC_TS + 11)), Err(WebhookError::TooOld(11))));
    }

    #[test]
    fn header_errors_are_named() {
        let v = spec_verifier();
        let body = Bytes::from_static(SPEC_BODY);
        let full = headers(SPEC_ID, &SPEC_TS.to_string(), SPEC_SIGNATURE);
        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut h = full.clone();
            h.remove(name);
            let err = v.verify(&h, body.clone(), at(SPEC_TS)).unwrap_err();
            assert_eq!(err, WebhookError::MissingHeader(name));
            assert!(err.to_string().contains(name));
        }
        for ts in ["-5", "1.5", "", "abc", "1614265330000000", "+1614265330"] {
            let h = headers(SPEC_ID, ts, SPEC_SIGNATURE);
            assert_eq!(v.verify(&h, body.clone(), at(SPEC_TS)).unwrap_err(), WebhookError::BadTimestamp, "{ts:?}");
        }
        let h = headers(&"x".repeat(MAX_ID_LEN + 1), &SPEC_TS.to_string(), SPEC_SIGNATURE);
        assert_eq!(v.verify(&h, body.clone(), at(SPEC_TS)).unwrap_err(), WebhookError::BadHeader(HEADER_ID));
        let mut h = full.clone();
        h.insert(HEADER_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(v.verify(&h, body, at(SPEC_TS)).unwrap_err(), WebhookError::BadHeader(HEADER_ID));
    }

    #[test]
    fn secrets_parse_both_forms_and_refuse_weak_ones() {
        assert!(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").is_ok());
        assert!(WebhookSecret::parse("a-raw-secret-of-enough-length").is_ok());
        assert_eq!(WebhookSecret::parse("  ").unwrap_err(), SecretError::Empty);
        assert_eq!(WebhookSecret::parse("whsec_***").unwrap_err(), SecretError::Base64);
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err(), SecretError::TooShort(5));
        assert_eq!(WebhookSecret::parse("short").unwrap_err(), SecretError::TooShort(5));
        let (secret, text) = WebhookSecret::generate();
        use secrecy::ExposeSecret;
        let again = WebhookSecret::parse(text.expose_secret()).unwrap();
        assert_eq!(sign(&secret, "a", 1, b"b"), sign(&again, "a", 1, b"b"));
        assert_eq!(format!("{secret:?}"), "WebhookSecret([REDACTED])");
        assert!(!format!("{:?}", spec_verifier()).contains("MfKQ"));
    }

    #[test]
    fn secrets_load_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webhook-b.secret"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        std::fs::write(dir.path().join("webhook-a.secret"), "raw-secret-raw-secret\n").unwrap();
        std::fs::write(dir.path().join("README"), "ignored").unwrap();
        let loaded = load_secrets_dir(dir.path()).unwrap();
        assert_eq!(loaded.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["webhook-a", "webhook-b"]);
        std::fs::write(dir.path().join("webhook-c.secret"), "short").unwrap();
        let err = load_secrets_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("webhook-c.secret") && !err.contains("short\n"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(load_secrets_dir(empty.path()), Err(SecretFileError::None(_))));
    }

    #[test]
    fn the_development_secret_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/saas");
        let v = WebhookVerifier::load_dir(&dir, DEFAULT_TOLERANCE).unwrap();
        assert!(!v.is_empty());
    }

    proptest! {
        /// Arbitrary header values and bodies never panic the verifier.
        #[test]
        fn random_headers_never_panic(
            id in proptest::collection::vec(any::<u8>(), 0..300),
            ts in proptest::collection::vec(any::<u8>(), 0..20),
            sig in proptest::collection::vec(any::<u8>(), 0..400),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            now in any::<u64>(),
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in [(HEADER_ID, &id), (HEADER_TIMESTAMP, &ts), (HEADER_SIGNATURE, &sig)] {
                if let Ok(v) = HeaderValue::from_bytes(value) {
                    h.insert(name, v);
                }
            }
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
            let _ = spec_verifier().verify(&h, Bytes::from(body), now);
        }

        /// A delivery verifies as signed, and a single flipped bit in the body, the id or the
        /// timestamp makes it fail.
        #[test]
        fn one_bit_changes_fail(
            id in "[A-Za-z0-9_]{1,40}",
            ts in 1_000_000_000i64..2_000_000_000,
            body in proptest::collection::vec(any::<u8>(), 1..200),
            which in 0usize..3,
            bit in any::<prop::sample::Index>(),
        ) {
            let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
            let v = spec_verifier();
            let sig = sign(&secret, &id, ts, &body);
            let now = at(ts);
            prop_assert!(v.verify(&headers(&id, &ts.to_string(), &sig), Bytes::from(body.clone()), now).is_ok());
            let (mut id2, mut ts2, mut body2) = (id.clone().into_bytes(), ts, body.clone());
            match which {
                0 => { let i = bit.index(body2.len() * 8); body2[i / 8] ^= 1 << (i % 8); }
                1 => {
                    // Flip a low bit of one character, keeping it a valid header character.
                    let i = bit.index(id2.len());
                    id2[i] ^= 1;
                    if !id2[i].is_ascii_graphic() { id2[i] ^= 3; }
                }
                _ => { ts2 ^= 1 << bit.index(3); }
            }
            let id2 = String::from_utf8(id2).unwrap();
            prop_assume!(id2.bytes().all(|b| b.is_ascii_graphic()));
            let result = v.verify(&headers(&id2, &ts2.to_string(), &sig), Bytes::from(body2), now);
            prop_assert_eq!(result.unwrap_err(), WebhookError::NoMatchingSignature);
        }
    }
}
