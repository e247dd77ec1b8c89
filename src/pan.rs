//! The card number (PAN) and the only three things this service ever does with one:
//! fingerprint it for lookup, seal it for later sending to the network, and show its last
//! four digits. Also the keyed digest of outside bytes that may hold one (a request body,
//! a Visa envelope), made from the same keys: [`PanKeys::digest`].
//!
//! A [`Pan`] cannot be printed: `Debug` and `Display` show `****1234`, errors about a PAN
//! never carry its digits, and its memory is wiped on drop. Nothing else in the crate holds
//! a card number as a `String`.

pub mod config;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::{Zeroize, Zeroizing};

/// A syntactically valid card number: 12 to 19 ASCII digits passing the Luhn check.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(Zeroizing<String>);

/// Why a string is not a card number. Deliberately carries no digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    #[error("card number is empty")]
    Empty,
    #[error("card number must contain only digits")]
    NotDigits,
    #[error("card number must have 12 to 19 digits, it has {0}")]
    Length(usize),
    #[error("card number fails the Luhn check")]
    Luhn,
}

impl Pan {
    /// Parses a card number. Spaces are not tolerated: outside systems send bare digits.
    pub fn parse(input: &str) -> Result<Self, PanError> {
        if input.is_empty() {
            return Err(PanError::Empty);
        }
        if !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PanError::NotDigits);
        }
        if !(12..=19).contains(&input.len()) {
            return Err(PanError::Length(input.len()));
        }
        if !luhn_valid(input.as_bytes()) {
            return Err(PanError::Luhn);
        }
        Ok(Self(Zeroizing::new(input.to_owned())))
    }

    /// The last four digits, which PCI DSS allows to be shown and stored.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// Whether the card number begins with `prefix` (a BIN range), without showing it.
    pub fn starts_with(&self, prefix: &str) -> bool {
        !prefix.is_empty() && self.0.starts_with(prefix)
    }

    /// The digits themselves, for the keyed hash and the sealed copy only.
    fn digits(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The card number in clear, for exactly one use: the body of a request to the
    /// Click to Pay network (the SaaS layer), which must carry it. Never log the result,
    /// never put it in an error, never store it.
    pub fn expose_for_network(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan(****{})", self.last4())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "****{}", self.last4())
    }
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The keys that make fingerprints and sealed copies. Loaded once from
/// `KEYS_DIR/pan/fingerprint-<version>.key` and `KEYS_DIR/pan/encryption-<version>.key`
/// (64 hex characters each); every version present is usable for reading, the configured
/// one is used for writing.
pub struct PanKeys {
    fingerprint: BTreeMap<String, hmac::Key>,
    fingerprint_current: String,
    /// Per fingerprint key version, the key of [`PanKeys::digest`], derived from it.
    digest: BTreeMap<String, hmac::Key>,
    sealing: BTreeMap<String, LessSafeKey>,
    sealing_current: String,
}

impl fmt::Debug for PanKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanKeys")
            .field("fingerprint_versions", &self.fingerprint.keys().collect::<Vec<_>>())
            .field("sealing_versions", &self.sealing.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PanKeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: a key file must hold exactly 64 hex characters (32 bytes)")]
    Format { path: String },
    #[error("no {kind} key for the configured version `{version}` in {dir}")]
    MissingCurrent { kind: &'static str, version: String, dir: String },
}

/// A sealed card number could not be opened: wrong key, wrong row, or tampered.
#[derive(Debug, thiserror::Error)]
#[error("sealed card number cannot be opened (unknown key version or tampered)")]
pub struct UnsealError;

impl PanKeys {
    pub fn load(keys_dir: &Path, fingerprint_version: &str, encryption_version: &str) -> Result<Self, PanKeyError> {
        let dir = keys_dir.join("pan");
        let mut fingerprint = BTreeMap::new();
        let mut digest = BTreeMap::new();
        let mut sealing = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| PanKeyError::Read { path: dir.display().to_string(), source })?;
        for entry in entries {
            let path = entry.map_err(|source| PanKeyError::Read { path: dir.display().to_string(), source })?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = name.strip_suffix(".key") else { continue };
            if let Some(version) = stem.strip_prefix("fingerprint-") {
                let bytes = read_key_file(&path)?;
                let key = hmac::Key::new(hmac::HMAC_SHA256, bytes.expose_secret());
                digest.insert(version.to_owned(), derive_digest_key(&key));
                fingerprint.insert(version.to_owned(), key);
            } else if let Some(version) = stem.strip_prefix("encryption-") {
                let bytes = read_key_file(&path)?;
                let key = UnboundKey::new(&AES_256_GCM, bytes.expose_secret())
                    .map_err(|_| PanKeyError::Format { path: path.display().to_string() })?;
                sealing.insert(version.to_owned(), LessSafeKey::new(key));
            }
        }
        let missing =
            |kind, version: &str| PanKeyError::MissingCurrent { kind, version: version.to_owned(), dir: dir.display().to_string() };
        if !fingerprint.contains_key(fingerprint_version) {
            return Err(missing("fingerprint", fingerprint_version));
        }
        if !sealing.contains_key(encryption_version) {
            return Err(missing("encryption", encryption_version));
        }
        Ok(Self {
            fingerprint,
            fingerprint_current: fingerprint_version.to_owned(),
            digest,
            sealing,
            sealing_current: encryption_version.to_owned(),
        })
    }

    /// The fingerprint stored with a new kit: `<version>:<hex HMAC-SHA-256>`.
    pub fn fingerprint(&self, pan: &Pan) -> String {
        let key = &self.fingerprint[&self.fingerprint_current];
        fingerprint_with(&self.fingerprint_current, key, pan)
    }

    /// Every fingerprint this card could be stored under, one per key version, current
    /// first. A lookup matches any of them, so keys can be rotated without a re-import.
    pub fn lookup_fingerprints(&self, pan: &Pan) -> Vec<String> {
        let mut all = vec![self.fingerprint(pan)];
        all.extend(self.fingerprint.iter().filter(|(v, _)| **v != self.fingerprint_current).map(|(v, k)| fingerprint_with(v, k, pan)));
        all
    }

    /// A keyed digest of outside bytes that may hold a card number: `<version>:<hex>`.
    ///
    /// Why keyed: an unkeyed hash of a body holding a card number is the card number to
    /// anyone who can guess it, and card numbers are guessable (a BIN, the last four digits
    /// and the Luhn check leave tens of thousands of candidates). The key is derived from
    /// the current fingerprint key, so it rotates with it: a digest made before a rotation
    /// no longer matches (an idempotency key or a redelivery then counts as new).
    pub fn digest(&self, bytes: &[u8]) -> String {
        let key = &self.digest[&self.fingerprint_current];
        format!("{}:{}", self.fingerprint_current, hex::encode(hmac::sign(key, bytes).as_ref()))
    }

    /// A [`PanKeys::digest`] of several parts, each length-prefixed so that no two lists
    /// of parts digest alike.
    pub fn digest_parts(&self, parts: &[&[u8]]) -> String {
        let mut bytes = Vec::new();
        for part in parts {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        let digest = self.digest(&bytes);
        bytes.zeroize();
        digest
    }

    /// Encrypts the card number for storage: `<version>:<base64(nonce || ciphertext)>`.
    /// `context` (tenant and kit) is bound as associated data, so a sealed value copied to
    /// another row will not open.
    pub fn seal(&self, pan: &Pan, context: &str) -> String {
        let key = &self.sealing[&self.sealing_current];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system random source");
        let mut buf = pan.digits().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buf)
            .expect("AES-GCM sealing of a short buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{}:{}", self.sealing_current, B64.encode(out))
    }

    /// Opens a value made by [`PanKeys::seal`] with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Pan, UnsealError> {
        let (version, body) = sealed.split_once(':').ok_or(UnsealError)?;
        let key = self.sealing.get(version).ok_or(UnsealError)?;
        let raw = B64.decode(body).map_err(|_| UnsealError)?;
        if raw.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| UnsealError)?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain = key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf).map_err(|_| UnsealError)?;
        let text = std::str::from_utf8(plain).map_err(|_| UnsealError)?;
        Pan::parse(text).map_err(|_| UnsealError)
    }
}

/// The digest key of a fingerprint key: HMAC of a fixed label, so that the two keys never
/// make the same value for the same bytes.
fn derive_digest_key(fingerprint: &hmac::Key) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(fingerprint, b"ctp-issuer: digest of outside bytes").as_ref())
}

fn fingerprint_with(version: &str, key: &hmac::Key, pan: &Pan) -> String {
    let tag = hmac::sign(key, pan.digits());
    format!("{version}:{}", hex::encode(tag.as_ref()))
}

fn read_key_file(path: &Path) -> Result<SecretBox<[u8]>, PanKeyError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|source| PanKeyError::Read { path: path.display().to_string(), source })?);
    let bytes = hex::decode(text.trim()).map_err(|_| PanKeyError::Format { path: path.display().to_string() })?;
    if bytes.len() != 32 {
        return Err(PanKeyError::Format { path: path.display().to_string() });
    }
    Ok(SecretBox::new(bytes.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VISA_TEST: &str = "4111111111111111";

    fn keys_in(dir: &Path, versions: &[&str]) {
        std::fs::create_dir_all(dir.join("pan")).unwrap();
        for v in versions {
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).unwrap();
            std::fs::write(dir.join(format!("pan/fingerprint-{v}.key")), hex::encode(k)).unwrap();
            aws_lc_rs::rand::fill(&mut k).unwrap();
            std::fs::write(dir.join(format!("pan/encryption-{v}.key")), hex::encode(k)).unwrap();
        }
    }

    #[test]
    fn parse_checks_digits_length_and_luhn() {
        assert!(Pan::parse(VISA_TEST).is_ok());
        assert_eq!(Pan::parse(""), Err(PanError::Empty));
        assert_eq!(Pan::parse("4111 1111 1111 1111"), Err(PanError::NotDigits));
        assert_eq!(Pan::parse("41111111111"), Err(PanError::Length(11)));
        assert_eq!(Pan::parse("4111111111111112"), Err(PanError::Luhn));
    }

    #[test]
    fn printing_shows_only_last_four() {
        let pan = Pan::parse(VISA_TEST).unwrap();
        assert_eq!(format!("{pan}"), "****1111");
        assert_eq!(format!("{pan:?}"), "Pan(****1111)");
        assert_eq!(pan.last4(), "1111");
    }

    #[test]
    fn fingerprint_is_keyed_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        keys_in(dir.path(), &["v1", "v2"]);
        let pan = Pan::parse(VISA_TEST).unwrap();
        let k1 = PanKeys::load(dir.path(), "v1", "v1").unwrap();
        let k2 = PanKeys::load(dir.path(), "v2", "v1").unwrap();
        let f1 = k1.fingerprint(&pan);
        assert!(f1.starts_with("v1:") && f1.len() == 3 + 64);
        assert!(!f1.contains(VISA_TEST));
        assert_ne!(f1, k2.fingerprint(&pan));
        // A v2-current ring still finds cards stored under v1.
        assert!(k2.lookup_fingerprints(&pan).contains(&f1));
    }

    #[test]
    fn sealed_copy_opens_only_in_its_own_context() {
        let dir = tempfile::tempdir().unwrap();
        keys_in(dir.path(), &["v1"]);
        let keys = PanKeys::load(dir.path(), "v1", "v1").unwrap();
        let pan = Pan::parse(VISA_TEST).unwrap();
        let sealed = keys.seal(&pan, "T/kit-1");
        assert!(!sealed.contains(VISA_TEST));
        assert_eq!(keys.open(&sealed, "T/kit-1").unwrap(), pan);
        assert!(keys.open(&sealed, "T/kit-2").is_err());
        assert!(keys.open("v1:AAAA", "T/kit-1").is_err());
        assert!(keys.open("v9:AAAA", "T/kit-1").is_err());
    }

    #[test]
    fn missing_current_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        keys_in(dir.path(), &["v1"]);
        let err = PanKeys::load(dir.path(), "v7", "v1").unwrap_err();
        assert!(err.to_string().contains("v7"), "{err}");
    }

    proptest! {
        /// Any input either parses to a Luhn-valid PAN or yields an error without digits.
        #[test]
        fn parse_never_panics_and_errors_carry_no_digits(s in "\\PC{0,40}") {
            match Pan::parse(&s) {
                Ok(p) => prop_assert!(luhn_valid(p.digits())),
                Err(e) => prop_assert!(!e.to_string().contains(&s) || s.len() < 3),
            }
        }
    }
}
