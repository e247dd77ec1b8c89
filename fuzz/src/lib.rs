//! What the fuzz targets share: the development keys under `keys/`, a fixed clock, the
//! input formats of the targets that take more than one value, and the checks that more
//! than one target makes (no card number echoed, scrubbed text, stable rejection codes).
//!
//! Nothing here links libFuzzer, so `examples/seed_corpora.rs` (which writes the committed
//! seed corpora) uses the same formats and constants as the targets.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctp_issuer::pan::PanKeys;
use ctp_issuer::visa::{ReplayPolicy, VisaKeyRing};

/// The fuzzers' clock: 2026-03-03T09:00:00Z, between the committed notification fixtures'
/// `iat` values (2 to 4 March 2026), so that they are fresh under [`replay_policy`].
pub const NOW_SECS: u64 = 1_772_528_400;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

/// Two days either way: every fixture's `iat` is inside, and a mutated one soon is not.
pub fn replay_policy() -> ReplayPolicy {
    ReplayPolicy { window: Duration::from_secs(2 * 24 * 3600), require_iat: true }
}

/// The token requestor of the fixtures.
pub const TOKEN_REQUESTOR_ID: &str = "40010030273";

/// The repository root (the fuzz crate is `fuzz/` in it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/ is inside the repository").to_owned()
}

/// The development keys.
pub fn keys_dir() -> PathBuf {
    repo().join("keys")
}

/// The development card-number keys, which make the envelope's keyed digest.
pub fn pan_keys() -> &'static PanKeys {
    static KEYS: OnceLock<PanKeys> = OnceLock::new();
    KEYS.get_or_init(|| PanKeys::load(&keys_dir(), "v1", "v1").expect("keys/pan"))
}

/// A Visa key ring of only the `subdirs` of `keys/` (`visa`, `issuer`, `shared`), with the
/// service's default JWS algorithms (PS256, HS256). The key ring reads a directory, so the
/// chosen parts are copied to a temporary one, read, and removed.
pub fn visa_ring(subdirs: &[&str]) -> VisaKeyRing {
    let dir = std::env::temp_dir().join(format!("ctp-fuzz-keys-{}-{}", std::process::id(), subdirs.join("-")));
    for sub in subdirs {
        std::fs::create_dir_all(dir.join(sub)).expect("temporary key directory");
        for entry in std::fs::read_dir(keys_dir().join(sub)).expect("keys/<sub>") {
            let path = entry.expect("key file").path();
            std::fs::copy(&path, dir.join(sub).join(path.file_name().expect("a file"))).expect("copy a key");
        }
    }
    let ring = VisaKeyRing::load(&dir, &["PS256".to_owned(), "HS256".to_owned()]);
    let _ = std::fs::remove_dir_all(&dir);
    ring.expect("the development Visa keys load")
}

/// The shared secret of `keys/shared/shared-dev-1.secret` (HS256 key and, hashed, the
/// A256GCMKW key) and its kid.
pub fn shared_secret() -> (String, String) {
    let text = std::fs::read_to_string(keys_dir().join("shared/shared-dev-1.secret")).expect("keys/shared");
    (text.trim_end_matches(['\r', '\n']).to_owned(), "shared-dev-1".to_owned())
}

/// A card number as [`ctp_issuer::pan::Pan`] promises one: 12 to 19 ASCII digits passing
/// the Luhn check. Written out again here so that the targets check it independently.
pub fn is_card_number(digits: &str) -> bool {
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Runs of digits in `text`, where a single space, `-` or `_` between two digits does not
/// end the run (`4111 1111-1111_1111` is one run of 16), as digit strings.
pub fn digit_runs(text: &[u8]) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_digit() {
            current.push(b as char);
        } else if !current.is_empty() && b" -_".contains(&b) && text.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // A separator inside a run.
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
        i += 1;
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Digits in a row that make a card number's worth: Visa's are 13 to 19, the shortest
/// [`ctp_issuer::pan::Pan`] accepts is 12.
pub const CARD_DIGITS: usize = 12;

/// The first run of 12 digits in `text` that was also in `input` (see [`digit_runs`] for
/// what a run is): a card number from the input, echoed. `None` when there is none.
pub fn echoed_card_number(text: &str, input: &[u8]) -> Option<String> {
    let ours: Vec<String> = digit_runs(text.as_bytes()).into_iter().filter(|r| r.len() >= CARD_DIGITS).collect();
    if ours.is_empty() {
        return None;
    }
    let theirs: Vec<String> = digit_runs(input).into_iter().filter(|r| r.len() >= CARD_DIGITS).collect();
    for run in &ours {
        for window in run.as_bytes().windows(CARD_DIGITS) {
            let window = std::str::from_utf8(window).expect("digits");
            if theirs.iter().any(|t| t.contains(window)) {
                return Some(window.to_owned());
            }
        }
    }
    None
}

/// Panics when `text` echoes a card number from `input`; `what` says which text.
pub fn assert_no_card_echo(what: &str, text: &str, input: &[u8]) {
    if let Some(run) = echoed_card_number(text, input) {
        panic!("{what} echoes the digits {run} from the input: {text:?}");
    }
}

/// What [`ctp_issuer::saas::scrub`] promises of its output: no run of 8 or more digits,
/// with spaces and dashes inside a run counting as part of it.
pub fn assert_scrubbed(what: &str, text: &str) {
    let mut digits = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits += 1;
            assert!(digits < 8, "{what} holds a run of 8 or more digits after scrubbing: {text:?}");
        } else if c != ' ' && c != '-' {
            digits = 0;
        }
    }
}

/// The rejections a notification can meet, each with its stable code and its status; the
/// metric label and the log field are the code, so neither may change unnoticed.
pub const REJECTION_CODES: &[(&str, u16)] = &[
    ("body_too_large", 400),
    ("body_not_json", 400),
    ("missing_encrypted_data", 400),
    ("encrypted_data_too_long", 400),
    ("not_compact_jws", 400),
    ("not_compact_jwe", 400),
    ("unknown_event_type", 400),
    ("bad_token_requestor_id", 400),
    ("payload_not_json", 400),
    ("payload_missing_field", 400),
    ("payload_invalid_field", 400),
    ("unsupported_critical_header", 400),
    ("jws_alg_not_allowed", 401),
    ("unknown_jws_kid", 401),
    ("bad_signature", 401),
    ("jwe_alg_not_allowed", 401),
    ("unknown_jwe_kid", 401),
    ("decryption_failed", 401),
    ("iat_missing", 401),
    ("iat_outside_window", 401),
    ("unknown_card", 404),
];

/// A rejection has one of the stable codes, the status that goes with it, a detail that
/// names a field (never a value), and no card number from `input` in any of its forms.
pub fn check_rejection(rejected: &ctp_issuer::visa::Rejected, input: &[u8]) {
    let code = rejected.reason.code();
    let status = rejected.reason.status().as_u16();
    assert!(REJECTION_CODES.contains(&(code, status)), "rejection {code:?} with status {status} is not a stable code");
    if let Some(detail) = rejected.detail {
        assert!(
            !detail.is_empty() && detail.bytes().all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b)),
            "rejection detail {detail:?} is not a field name"
        );
    }
    assert_no_card_echo("rejection", &format!("{rejected} {rejected:?}"), input);
}

/// One notification body through the handler's two steps, with every check the envelope
/// targets share: never a panic (libFuzzer catches those), a rejection with a stable
/// code, a verified card number that is one, and the private-key hint never wrong in the
/// direction that would run RSA on the async threads.
pub fn check_notification(body: &[u8], ring: &VisaKeyRing) {
    use ctp_issuer::visa::{ENROLLMENT_ATTEMPT, RawNotification};
    let raw = match RawNotification::parse(TOKEN_REQUESTOR_ID, Some(ENROLLMENT_ATTEMPT), body, pan_keys()) {
        Ok(raw) => raw,
        Err(rejected) => return check_rejection(&rejected, body),
    };
    assert!(raw.envelope_hash().starts_with("v1:"), "the envelope digest is versioned");
    let needs_private_key = raw.needs_private_key();
    match raw.open(ring, replay_policy(), now()) {
        Ok(verified) => {
            let attempt = verified.attempt();
            let pan = attempt.pan.expose_for_network();
            assert!(is_card_number(pan), "a verified notification carries a card number that is not one");
            // The card number shows only where the sender also wrote it into free text.
            let shown = format!("{verified:?}").matches(pan).count();
            let written = format!("{:?} {:?} {}", attempt.client, attempt.tsp, verified.envelope_hash()).matches(pan).count();
            assert!(shown <= written, "a verified notification's Debug shows the card number: {verified:?}");
            let kid = verified.jwe_kid();
            if ring.decrypter(kid, "RSA-OAEP-256").is_some() && ring.decrypter(kid, "A256GCMKW").is_none() {
                assert!(needs_private_key, "an RSA-OAEP notification was judged not to need the private key");
            }
            let iat = verified.iat().expect("iat is required by the policy");
            assert!(iat.abs_diff(NOW_SECS as i64) <= replay_policy().window.as_secs(), "iat {iat} outside the window was accepted");
        }
        Err(rejected) => check_rejection(&rejected, body),
    }
}

/// The `webhook_verify` target's input: a flags byte, then the `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` values and the body, the first three each
/// ended by a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCase<'a> {
    pub flags: u8,
    pub id: &'a [u8],
    pub timestamp: &'a [u8],
    pub signature: &'a [u8],
    pub body: &'a [u8],
}

impl WebhookCase<'_> {
    /// Put a correct `v1` signature by the development secret first in `webhook-signature`.
    pub const SIGN: u8 = 1;
    /// Send the fuzzers' clock as `webhook-timestamp` instead of the given text.
    pub const NOW: u8 = 2;
    /// Leave out `webhook-id`.
    pub const NO_ID: u8 = 4;
    /// Leave out `webhook-timestamp`.
    pub const NO_TIMESTAMP: u8 = 8;
    /// Leave out `webhook-signature`.
    pub const NO_SIGNATURE: u8 = 16;
    /// Also sign with the second (rotation) secret.
    pub const SIGN_OLD: u8 = 32;
}

impl<'a> WebhookCase<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let mut parts = rest.splitn(4, |b| *b == b'\n');
        let id = parts.next()?;
        let timestamp = parts.next().unwrap_or_default();
        let signature = parts.next().unwrap_or_default();
        let body = parts.next().unwrap_or_default();
        Some(Self { flags, id, timestamp, signature, body })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.flags];
        for part in [self.id, self.timestamp, self.signature] {
            out.extend_from_slice(part);
            out.push(b'\n');
        }
        out.extend_from_slice(self.body);
        out
    }
}

/// The `config_file` target's input: the TOML file's text, then (after a NUL byte, when
/// there are any) the environment, one `NAME=VALUE` a line. An empty file part means no
/// file.
pub struct ConfigCase<'a> {
    pub file: &'a [u8],
    pub env: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> ConfigCase<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let (file, env) = match data.iter().position(|b| *b == 0) {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (data, &[][..]),
        };
        let env = env
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| match line.iter().position(|b| *b == b'=') {
                Some(at) => (&line[..at], &line[at + 1..]),
                None => (line, &[][..]),
            })
            .collect();
        Self { file, env }
    }

    pub fn encode(file: &str, env: &[(&str, &str)]) -> Vec<u8> {
        let mut out = file.as_bytes().to_vec();
        if !env.is_empty() {
            out.push(0);
            for (name, value) in env {
                out.extend_from_slice(format!("{name}={value}\n").as_bytes());
            }
        }
        out
    }
}

/// The `api_auth` target's input: a flags byte, then either the whole `Authorization`
/// header, or (with [`AuthCase::SIGN`]) a JOSE header and a payload separated by a NUL
/// byte, which the target signs with the development HS256 secret.
pub struct AuthCase;

impl AuthCase {
    pub const SIGN: u8 = 1;
    /// `bearer ` in lower case, which is accepted too.
    pub const LOWER_CASE: u8 = 2;

    pub fn signed(header: &str, payload: &str) -> Vec<u8> {
        let mut out = vec![Self::SIGN];
        out.extend_from_slice(header.as_bytes());
        out.push(0);
        out.extend_from_slice(payload.as_bytes());
        out
    }

    pub fn raw(authorization: &str) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(authorization.as_bytes());
        out
    }
}

/// The development HS256 secret of the internal API's bearer tokens.
pub fn jwt_secret() -> String {
    let text = std::fs::read_to_string(keys_dir().join("jwt/dev-hs256.secret")).expect("keys/jwt");
    text.trim_end_matches(['\r', '\n']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_join_across_single_separators() {
        assert_eq!(digit_runs(b"card 4111 1111-1111_1111 x"), ["4111111111111111"]);
        assert_eq!(digit_runs(b"12  34 a5"), ["12", "34", "5"]);
        assert_eq!(echoed_card_number("pan 4111-1111-1111-1111", b"{\"pan\":\"4111111111111111\"}"), Some("411111111111".into()));
        assert_eq!(echoed_card_number("line 1 column 123456789012", b"nothing"), None);
    }

    #[test]
    fn luhn() {
        assert!(is_card_number("4111111111111111"));
        assert!(!is_card_number("4111111111111112"));
        assert!(!is_card_number("41111111111"));
    }

    #[test]
    fn formats_round_trip() {
        let case = WebhookCase { flags: 3, id: b"msg_1", timestamp: b"17", signature: b"v1,x", body: b"{\n}" };
        assert_eq!(WebhookCase::parse(&case.encode()), Some(case));
        let data = ConfigCase::encode("[visa]\n", &[("CTP_LOG", "info"), ("CTP_X", "a=b")]);
        let parsed = ConfigCase::parse(&data);
        assert_eq!(parsed.file, b"[visa]\n");
        assert_eq!(parsed.env, [(&b"CTP_LOG"[..], &b"info"[..]), (&b"CTP_X"[..], &b"a=b"[..])]);
    }
}
