//! The notification envelope: `{"encryptedData": JWS(JWE(payload))}` (`docs/protocol.md`, section 1).
//!
//! Two types, two stages. A [`RawNotification`] is what came over the wire, shape-checked
//! but trusted for nothing. [`RawNotification::open`] is the only way to get a
//! [`VerifiedNotification`]: signature verified by a configured Visa key, payload decrypted
//! by a configured issuer key, `iat` inside the replay window, plaintext parsed. The store
//! accepts only the verified type, so an unverified notification cannot be recorded.
//!
//! Header checks are done here, before josekit is called, so that each failure gets its own
//! rejection (unknown kid, disallowed alg, bad signature …) and so that anything josekit
//! would accept but we must not (JWE compression, `dir`, `RSA1_5`) never reaches it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, Value};

use super::error::{Rejected, Rejection};
use super::keys::{JWE_ALGORITHMS, JWE_ENCRYPTIONS, VisaKeyRing};
use super::payload::EnrollmentAttempt;
use crate::pan::PanKeys;

/// Visa's notification documentation: `encryptedData` is at most 7000 characters.
pub const MAX_ENCRYPTED_DATA_CHARS: usize = 7000;

/// Characters of the JWS payload decoded to find the inner JWE's header: 3072 bytes,
/// far more than any real header (~150 bytes). Longer headers count as needing the
/// private key, which only moves their (rejected or valid) opening to the blocking pool.
const JWE_HEADER_PREFIX_CHARS: usize = 4096;

/// The only event type documented for this endpoint.
pub const ENROLLMENT_ATTEMPT: &str = "CTP_ENROLLMENT_ATTEMPT";

/// What the replay check needs: the window and whether `iat` is mandatory.
#[derive(Debug, Clone, Copy)]
pub struct ReplayPolicy {
    pub window: Duration,
    pub require_iat: bool,
}

/// A notification as received: path, query and body checked for shape, nothing verified.
#[derive(Debug, Clone)]
pub struct RawNotification {
    token_requestor_id: String,
    encrypted_data: String,
    envelope_hash: String,
}

/// A notification whose signature, encryption and freshness have been checked.
/// Constructed only by [`RawNotification::open`].
#[derive(Debug, Clone)]
pub struct VerifiedNotification {
    token_requestor_id: String,
    envelope_hash: String,
    jws_kid: String,
    jwe_kid: String,
    /// Epoch seconds, whichever of the three wire forms it came in.
    iat: Option<i64>,
    attempt: EnrollmentAttempt,
}

impl VerifiedNotification {
    pub fn token_requestor_id(&self) -> &str {
        &self.token_requestor_id
    }
    /// The keyed digest of `encryptedData`: the deduplication key.
    pub fn envelope_hash(&self) -> &str {
        &self.envelope_hash
    }
    pub fn jws_kid(&self) -> &str {
        &self.jws_kid
    }
    pub fn jwe_kid(&self) -> &str {
        &self.jwe_kid
    }
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }
    pub fn attempt(&self) -> &EnrollmentAttempt {
        &self.attempt
    }
}

impl RawNotification {
    /// Checks the request's shape: event type, token requestor id, JSON body with an
    /// `encryptedData` string of at most 7000 characters.
    /// `keys` make the envelope's keyed digest (the deduplication key): an unkeyed hash of
    /// outside bytes that hold a card number, even encrypted, is not kept anywhere.
    pub fn parse(token_requestor_id: &str, event_type: Option<&str>, body: &[u8], keys: &PanKeys) -> Result<Self, Rejected> {
        // A missing eventType is read as the one documented type; any other is refused.
        if event_type.is_some_and(|t| t != ENROLLMENT_ATTEMPT) {
            return Err(Rejection::UnknownEventType.into());
        }
        if token_requestor_id.is_empty() || token_requestor_id.len() > 64 || !token_requestor_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Rejection::BadTokenRequestorId.into());
        }
        let value: Value = serde_json::from_slice(body).map_err(|_| Rejection::BodyNotJson)?;
        let object = value.as_object().ok_or(Rejection::BodyNotJson)?;
        let encrypted_data = match object.get("encryptedData") {
            Some(Value::String(s)) => s,
            _ => return Err(Rejection::MissingEncryptedData.into()),
        };
        if encrypted_data.chars().count() > MAX_ENCRYPTED_DATA_CHARS {
            return Err(Rejection::EncryptedDataTooLong.into());
        }
        Ok(Self {
            token_requestor_id: token_requestor_id.to_owned(),
            envelope_hash: keys.digest(encrypted_data.as_bytes()),
            encrypted_data: encrypted_data.clone(),
        })
    }

    /// The deduplication key, available before any cryptography so that a redelivery can
    /// be answered without repeating it.
    pub fn envelope_hash(&self) -> &str {
        &self.envelope_hash
    }

    /// Whether opening this notification takes a private-key operation (an RSA-OAEP key
    /// unwrap, ~0.3 ms of CPU), read from the inner JWE's header without trusting or
    /// verifying anything. The handler uses it to keep that work off the async threads;
    /// anything it cannot read counts as yes, and `open` will reject it there.
    pub fn needs_private_key(&self) -> bool {
        let Some(payload) = self.encrypted_data.split('.').nth(1) else { return true };
        // The JWE header is at the start of the JWS payload: decode only enough of it
        // (whole 4-character groups) to reach the header's end.
        // Bytes, not `str`: the envelope is any UTF-8, and a cut inside a character must
        // fail the decode, not panic.
        let prefix = &payload.as_bytes()[..payload.len().min(JWE_HEADER_PREFIX_CHARS)];
        let prefix = &prefix[..prefix.len() - prefix.len() % 4];
        let Ok(jwe) = B64URL.decode(prefix) else { return true };
        let Some(end) = jwe.iter().position(|b| *b == b'.') else { return true };
        let header = &jwe[..end];
        let Some(header) = std::str::from_utf8(header).ok().and_then(decode_header) else { return true };
        header_str(&header, "alg") != Some("A256GCMKW")
    }

    /// Verifies, decrypts, checks freshness and parses. CPU-bound: with an RSA-OAEP key
    /// unwrap (see [`RawNotification::needs_private_key`]) call it off the async threads.
    pub fn open(self, keys: &VisaKeyRing, replay: ReplayPolicy, now: SystemTime) -> Result<VerifiedNotification, Rejected> {
        // 1. The outer JWS.
        let jws = CompactParts::split(&self.encrypted_data, 3).ok_or(Rejection::NotCompactJws)?;
        let jws_header = decode_header(jws.parts[0]).ok_or(Rejection::NotCompactJws)?;
        if B64URL.decode(jws.parts[1]).is_err() || B64URL.decode(jws.parts[2]).is_err() {
            return Err(Rejection::NotCompactJws.into());
        }
        let jws_alg = header_str(&jws_header, "alg").ok_or(Rejection::NotCompactJws.at("alg"))?;
        let jws_kid = header_str(&jws_header, "kid").ok_or(Rejection::UnknownJwsKey.at("kid"))?;
        check_critical(&jws_header)?;
        let verifier = match keys.verifier(jws_kid, jws_alg) {
            Some(v) => v,
            None if keys.knows_jws_kid(jws_kid) => return Err(Rejection::JwsAlgorithmNotAllowed.into()),
            None if jws_alg == "none" => return Err(Rejection::JwsAlgorithmNotAllowed.into()),
            None => return Err(Rejection::UnknownJwsKey.into()),
        };
        let (jwe_bytes, _) =
            jws_context().deserialize_compact(self.encrypted_data.as_bytes(), verifier).map_err(|_| Rejection::BadSignature)?;
        let jws_kid = jws_kid.to_owned();

        // 2. The inner JWE.
        let jwe_text = std::str::from_utf8(&jwe_bytes).map_err(|_| Rejection::NotCompactJwe)?;
        let jwe = CompactParts::split(jwe_text, 5).ok_or(Rejection::NotCompactJwe)?;
        let jwe_header = decode_header(jwe.parts[0]).ok_or(Rejection::NotCompactJwe)?;
        if jwe.parts[1..].iter().any(|p| B64URL.decode(p).is_err()) {
            return Err(Rejection::NotCompactJwe.into());
        }
        let jwe_alg = header_str(&jwe_header, "alg").ok_or(Rejection::NotCompactJwe.at("alg"))?;
        let jwe_enc = header_str(&jwe_header, "enc").ok_or(Rejection::NotCompactJwe.at("enc"))?;
        if !JWE_ALGORITHMS.contains(&jwe_alg) {
            return Err(Rejection::JweAlgorithmNotAllowed.at("alg"));
        }
        if !JWE_ENCRYPTIONS.contains(&jwe_enc) {
            return Err(Rejection::JweAlgorithmNotAllowed.at("enc"));
        }
        // Compression inside an authenticated envelope is a decompression bomb waiting to
        // happen, and Visa does not use it.
        if jwe_header.contains_key("zip") {
            return Err(Rejection::JweAlgorithmNotAllowed.at("zip"));
        }
        // josekit checks a JWS's `crit` but not a JWE's: both are checked here, alike.
        check_critical(&jwe_header)?;
        let jwe_kid = header_str(&jwe_header, "kid").ok_or(Rejection::UnknownJweKey.at("kid"))?;
        let decrypter = keys.decrypter(jwe_kid, jwe_alg).ok_or(Rejection::UnknownJweKey)?;

        // 3. Freshness, before the expensive decryption.
        let iat = match jwe_header.get("iat").or_else(|| jws_header.get("iat")) {
            None | Some(Value::Null) if replay.require_iat => return Err(Rejection::IatMissing.into()),
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_iat(v).ok_or(Rejection::IatOutsideWindow.at("iat"))?),
        };
        if let Some(iat) = iat {
            let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            if now.abs_diff(iat) > replay.window.as_secs() {
                return Err(Rejection::IatOutsideWindow.into());
            }
        }

        let (plaintext, _) = josekit::jwe::deserialize_compact(jwe_text, decrypter).map_err(|_| Rejection::DecryptionFailed)?;
        let plaintext = zeroize::Zeroizing::new(plaintext);
        let jwe_kid = jwe_kid.to_owned();

        // 4. The payload.
        let attempt = EnrollmentAttempt::from_json(&plaintext)?;
        Ok(VerifiedNotification {
            token_requestor_id: self.token_requestor_id,
            envelope_hash: self.envelope_hash,
            jws_kid,
            jwe_kid,
            iat,
            attempt,
        })
    }
}

/// The dot-separated segments of a compact JOSE serialization.
struct CompactParts<'a> {
    parts: Vec<&'a str>,
}

impl<'a> CompactParts<'a> {
    /// Splits on `.`; the segments' alphabet is checked by decoding them, which every
    /// caller does (a separate pass over a 5 KB envelope cost ~2 % of a shared-secret
    /// notification's CPU).
    fn split(input: &'a str, expected: usize) -> Option<Self> {
        let parts: Vec<&str> = input.splitn(expected + 1, '.').collect();
        let header_ok = parts.first().is_some_and(|h| !h.is_empty());
        (parts.len() == expected && header_ok).then_some(Self { parts })
    }
}

fn decode_header(segment: &str) -> Option<Map<String, Value>> {
    let bytes = B64URL.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Header parameters we understand when a sender marks them critical: only `iat`, which
/// the replay window checks.
const UNDERSTOOD_CRITICAL: &[&str] = &["iat"];

/// Names RFC 7515 and RFC 7516 register, which `crit` must not list.
const REGISTERED_HEADERS: &[&str] = &[
    "alg", "enc", "zip", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "epk", "apu", "apv", "iv", "tag",
    "p2s", "p2c",
];

/// RFC 7515 §4.1.11 and RFC 7516 §4.1.13: a `crit` header lists extensions the receiver
/// must understand and process, or refuse the message. It must be a non-empty list of
/// names present in the header, none of them registered by the JOSE specifications.
fn check_critical(header: &Map<String, Value>) -> Result<(), Rejected> {
    let Some(crit) = header.get("crit") else { return Ok(()) };
    let refused = || Rejection::UnsupportedCriticalHeader.at("crit");
    let names = crit.as_array().filter(|names| !names.is_empty()).ok_or_else(refused)?;
    for name in names {
        let name = name.as_str().ok_or_else(refused)?;
        if REGISTERED_HEADERS.contains(&name) || !header.contains_key(name) || !UNDERSTOOD_CRITICAL.contains(&name) {
            return Err(refused());
        }
    }
    Ok(())
}

/// josekit's JWS reader, told that a critical `iat` is understood (by [`check_critical`]'s
/// rule), so that the two never disagree.
fn jws_context() -> &'static josekit::jws::JwsContext {
    static CONTEXT: std::sync::OnceLock<josekit::jws::JwsContext> = std::sync::OnceLock::new();
    CONTEXT.get_or_init(|| {
        let mut context = josekit::jws::JwsContext::new();
        for name in UNDERSTOOD_CRITICAL {
            context.add_acceptable_critical(name);
        }
        context
    })
}

fn header_str<'a>(header: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    header.get(key)?.as_str()
}

/// `iat` as seen in Visa's samples: a string of epoch seconds, an integer of epoch seconds,
/// or an integer of epoch milliseconds (any value above 10^12 is milliseconds).
pub fn parse_iat(value: &Value) -> Option<i64> {
    let raw = match value {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    if raw < 0 {
        return None;
    }
    Some(if raw > 1_000_000_000_000 { raw / 1000 } else { raw })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The development card-number keys, for the envelope's digest.
    fn keys() -> &'static PanKeys {
        static KEYS: std::sync::OnceLock<PanKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| PanKeys::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys"), "v1", "v1").unwrap())
    }
    use serde_json::json;

    #[test]
    fn iat_in_all_three_forms() {
        assert_eq!(parse_iat(&json!("1700000000")), Some(1_700_000_000));
        assert_eq!(parse_iat(&json!(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(parse_iat(&json!(1_700_000_000_123i64)), Some(1_700_000_000));
        assert_eq!(parse_iat(&json!("soon")), None);
        assert_eq!(parse_iat(&json!(-5)), None);
        assert_eq!(parse_iat(&json!(1.5)), None);
    }

    #[test]
    fn parse_checks_shape_in_protocol_order() {
        let ok = br#"{"encryptedData":"a.b.c"}"#;
        assert!(RawNotification::parse("40010030273", Some(ENROLLMENT_ATTEMPT), ok, keys()).is_ok());
        assert!(RawNotification::parse("40010030273", None, ok, keys()).is_ok());
        let reason = |tr: &str, ev: Option<&str>, body: &[u8]| RawNotification::parse(tr, ev, body, keys()).unwrap_err().reason;
        assert_eq!(reason("400", Some("CTP_SOMETHING_ELSE"), ok), Rejection::UnknownEventType);
        assert_eq!(reason("4001/x", None, ok), Rejection::BadTokenRequestorId);
        assert_eq!(reason("400", None, b"not json"), Rejection::BodyNotJson);
        assert_eq!(reason("400", None, b"[1,2]"), Rejection::BodyNotJson);
        assert_eq!(reason("400", None, br#"{"encryptedData":7}"#), Rejection::MissingEncryptedData);
        let long = format!(r#"{{"encryptedData":"{}"}}"#, "a".repeat(7001));
        assert_eq!(reason("400", None, long.as_bytes()), Rejection::EncryptedDataTooLong);
    }

    #[test]
    fn same_envelope_same_hash() {
        let a = RawNotification::parse("1", None, br#"{"encryptedData":"x.y.z"}"#, keys()).unwrap();
        let b = RawNotification::parse("2", None, br#"{"encryptedData":"x.y.z","extra":1}"#, keys()).unwrap();
        assert_eq!(a.envelope_hash(), b.envelope_hash());
    }

    fn empty_ring_open(data: &str) -> Rejection {
        let body = json!({ "encryptedData": data }).to_string();
        let raw = RawNotification::parse("1", None, body.as_bytes(), keys()).unwrap();
        let policy = ReplayPolicy { window: Duration::from_secs(300), require_iat: true };
        raw.open(&VisaKeyRing::default(), policy, SystemTime::now()).unwrap_err().reason
    }

    #[test]
    fn structural_garbage_is_a_bad_request_not_a_crash() {
        assert_eq!(empty_ring_open("only-one-part"), Rejection::NotCompactJws);
        assert_eq!(empty_ring_open("a.b.c.d"), Rejection::NotCompactJws);
        assert_eq!(empty_ring_open("!!!.b.c"), Rejection::NotCompactJws);
        // Outside base64url in any segment: malformed, whoever the kid is.
        let known_shape = B64URL.encode(br#"{"alg":"PS256","kid":"nobody"}"#);
        assert_eq!(empty_ring_open(&format!("{known_shape}.e3+0.c2ln")), Rejection::NotCompactJws);
        assert_eq!(empty_ring_open(&format!("{known_shape}.e30.c2l=")), Rejection::NotCompactJws);
        assert_eq!(empty_ring_open(&format!("{known_shape}.e30.c2ln.")), Rejection::NotCompactJws);
        let header = B64URL.encode(br#"{"alg":"PS256","kid":"nobody"}"#);
        assert_eq!(empty_ring_open(&format!("{header}.e30.c2ln")), Rejection::UnknownJwsKey);
        let none = B64URL.encode(br#"{"alg":"none","kid":"nobody"}"#);
        assert_eq!(empty_ring_open(&format!("{none}.e30.")), Rejection::JwsAlgorithmNotAllowed);
    }

    #[test]
    fn critical_headers_follow_rfc_7515_and_7516() {
        let check = |header: Value| check_critical(header.as_object().unwrap()).map_err(|r| r.reason);
        assert_eq!(check(json!({"alg": "RSA-OAEP-256"})), Ok(()), "no crit");
        assert_eq!(check(json!({"alg": "x", "iat": 1, "crit": ["iat"]})), Ok(()), "iat is understood");
        let refused = Err(Rejection::UnsupportedCriticalHeader);
        assert_eq!(check(json!({"alg": "x", "ext": 1, "crit": ["ext"]})), refused, "an extension nobody understands");
        assert_eq!(check(json!({"alg": "x", "crit": ["iat"]})), refused, "a critical name that is not in the header");
        assert_eq!(check(json!({"alg": "x", "crit": ["alg"]})), refused, "a registered name");
        assert_eq!(check(json!({"alg": "x", "crit": []})), refused, "an empty list");
        assert_eq!(check(json!({"alg": "x", "crit": "iat"})), refused, "not a list");
        assert_eq!(check(json!({"alg": "x", "iat": 1, "crit": ["iat", 7]})), refused, "not a name");
    }

    proptest! {
        /// No body makes the shape check panic.
        #[test]
        fn parse_never_panics(tr in "\\PC{0,80}", ev in proptest::option::of("\\PC{0,30}"), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = RawNotification::parse(&tr, ev.as_deref(), &body, keys());
        }

        /// Reading the inner JWE's header out of any envelope never panics, whatever its
        /// characters and wherever the prefix cut falls (multi-byte UTF-8 included).
        #[test]
        fn needs_private_key_never_panics(head in "[A-Za-z0-9_-]{0,8}", payload in "\\PC{4000,4200}") {
            let body = json!({ "encryptedData": format!("{head}.{payload}.sig") }).to_string();
            if let Ok(raw) = RawNotification::parse("1", None, body.as_bytes(), keys()) {
                prop_assert!(raw.needs_private_key(), "garbage counts as needing the private key");
            }
        }

        /// No encryptedData makes verification panic, including dotted base64url-looking
        /// strings that get past the shape check.
        #[test]
        fn open_never_panics(segments in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 0..7)) {
            let _ = empty_ring_open(&segments.join("."));
        }
    }
}
