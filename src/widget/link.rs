//! The link token: what the card-details URL carries, and the keyed hash of its one-time
//! id that the database keeps.
//!
//! A token is `<kid>.<base64url(nonce ‖ AES-256-GCM(claims) ‖ tag)>`. The claims are the
//! tenant, the entity id (customer), the kit number (card id), the date of birth when the
//! link asks for it, a random 128-bit link id and the expiry. They are encrypted, not only
//! signed, because the date of birth is a secret the page checks and because the URL
//! passes through the issuer's app and web view. A token never holds a card number: the
//! page fetches the card only after the link is checked.
//!
//! The kid travels in clear so the right key is found. Every `link-<kid>.key` in
//! `KEYS_DIR/widget` opens tokens; the configured kid seals new ones (rotation as for card
//! numbers: add the new key, make it current, remove the old one once its links have
//! expired, which takes minutes).
//!
//! [`LinkKeys::open`] checks the tag and then the expiry, and answers every failure with
//! the same [`LinkInvalid`]: the page must not tell a tampered link from an expired one.
//! (The error keeps which it was for the refusal metric only.)
//!
//! The database keeps `<kid>:<hex HMAC-SHA-256(linkhash key, link id)>`, never the link
//! id: with a copy of the database alone one cannot even confirm a guessed id. The hash
//! key is `linkhash-<kid>.key`, paired with the sealing key of the same kid, so a token's
//! kid names both keys and a rotation cannot leave a live link hashed under a key that is
//! no longer used.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ids::{DateOfBirth, EntityId, KitNo, TenantId};

/// Random bytes in a link id: 128 bits, beyond guessing.
pub const LINK_ID_BYTES: usize = 16;

/// Longest token looked at. A real one is about 250 characters; anything longer is
/// refused before it is decoded.
pub const MAX_TOKEN_CHARS: usize = 1024;

/// Longest kid accepted in a key file name or a token.
const MAX_KID_CHARS: usize = 32;

/// Bound into every token as associated data with the kid: a value sealed by this key for
/// any other purpose does not open as a link.
const AAD_LABEL: &[u8] = b"ctp-issuer widget link v1 ";

/// The CSRF key of a kid is derived from its link-hash key with this label, so that the
/// two uses of one key can never produce each other's values.
const CSRF_KEY_LABEL: &[u8] = b"ctp-issuer widget csrf key v1";

/// The one-time random id of a link. Only its keyed hash leaves this module.
#[derive(Clone, PartialEq, Eq)]
struct LinkId([u8; LINK_ID_BYTES]);

/// What the database keeps for a link: `<kid>:<64 hex>`. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkHash(String);

impl LinkHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LinkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token, as put in the URL. A bearer capability for a card number until it is used:
/// `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The widget URL: `base` with `t=<token>` added to its query. The token is
    /// base64url and a kid of letters, digits, `-` and `_`, joined by `.`: nothing to
    /// escape in a URL.
    pub fn url(&self, base: &str) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}t={}", self.0)
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken([REDACTED])")
    }
}

/// A newly issued link: the token for the URL, and what the database must record before
/// the URL is handed out (the hash and the expiry).
#[derive(Debug, Clone)]
pub struct IssuedLink {
    pub token: LinkToken,
    pub link_hash: LinkHash,
    /// Epoch seconds.
    pub expires_at: i64,
}

/// An opened, authentic, unexpired link.
#[derive(Clone)]
pub struct LinkClaims {
    /// The token it was opened from, for the page's hidden field. Not in `Debug`.
    token: String,
    kid: String,
    tenant: TenantId,
    entity_id: EntityId,
    kit_no: KitNo,
    dob: Option<DateOfBirth>,
    expires_at: i64,
    link_hash: LinkHash,
}

impl fmt::Debug for LinkClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkClaims")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("entity_id", &self.entity_id)
            .field("kit_no", &self.kit_no)
            .field("dob", &self.dob)
            .field("expires_at", &self.expires_at)
            .field("link_hash", &self.link_hash)
            .finish()
    }
}

impl LinkClaims {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    pub fn entity_id(&self) -> &EntityId {
        &self.entity_id
    }
    pub fn kit_no(&self) -> &KitNo {
        &self.kit_no
    }
    /// The date of birth the page must ask for, when the link was issued with one.
    pub fn dob(&self) -> Option<&DateOfBirth> {
        self.dob.as_ref()
    }
    /// Epoch seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// The link's key in the database.
    pub fn link_hash(&self) -> &LinkHash {
        &self.link_hash
    }
    pub(super) fn kid(&self) -> &str {
        &self.kid
    }
    pub(super) fn token(&self) -> &str {
        &self.token
    }
}

/// A token that cannot be used: malformed, unknown kid, tampered, or expired. One error
/// for all, with one message, so that nothing downstream can tell the cardholder (or
/// whoever holds the URL) which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("link is invalid or has expired")]
pub struct LinkInvalid {
    expired: bool,
}

impl LinkInvalid {
    const INVALID: Self = Self { expired: false };

    /// The refusal metric's label: `expired` for an authentic token past its expiry,
    /// `invalid_token` for everything else. For operators only; never for the page.
    pub fn metric_reason(&self) -> &'static str {
        if self.expired { "expired" } else { "invalid_token" }
    }
}

/// Why a link could not be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("link lifetime must be between 1 s and one hour")]
    Lifetime,
}

/// Why the link keys could not be loaded. Names files, never their content.
#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: a key file must hold exactly 64 hex characters (32 bytes)")]
    Format { path: String },
    #[error("{path}: the kid in the file name must be 1 to 32 letters, digits, - or _")]
    Kid { path: String },
    #[error("kid `{kid}` has {present} but no {missing} in {dir}: each kid needs both keys")]
    Unpaired { kid: String, present: &'static str, missing: &'static str, dir: String },
    #[error("no link key for the configured kid `{kid}` in {dir}")]
    MissingCurrent { kid: String, dir: String },
}

/// The claims as sealed. Short names keep the URL short.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    /// Tenant.
    t: String,
    /// Entity id.
    e: String,
    /// Kit number.
    k: String,
    /// Date of birth, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
    /// Link id, base64url.
    l: String,
    /// Expiry, epoch seconds.
    x: i64,
}

impl Drop for Sealed {
    /// The date of birth is wiped with the buffer it was decrypted into.
    fn drop(&mut self) {
        if let Some(d) = &mut self.d {
            zeroize::Zeroize::zeroize(d);
        }
    }
}

struct KidKeys {
    seal: LessSafeKey,
    hash: hmac::Key,
    csrf: hmac::Key,
}

/// Every kid's sealing, hashing and CSRF keys, loaded once from `KEYS_DIR/widget`.
pub struct LinkKeys {
    kids: BTreeMap<String, KidKeys>,
    current: String,
}

impl fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkKeys").field("kids", &self.kids.keys().collect::<Vec<_>>()).field("current", &self.current).finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_CHARS && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl LinkKeys {
    /// Every `link-<kid>.key` (AES-256-GCM) and `linkhash-<kid>.key` (HMAC-SHA-256) in
    /// `KEYS_DIR/widget`, 64 hex characters each; every kid must have both. `current_kid`
    /// (`widget.link_key_version`) seals new links.
    pub fn load(keys_dir: &Path, current_kid: &str) -> Result<Self, LinkKeyError> {
        let dir = keys_dir.join("widget");
        let read_err = |source| LinkKeyError::Read { path: dir.display().to_string(), source };
        let mut sealing = BTreeMap::new();
        let mut hashing = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = name.strip_suffix(".key") else { continue };
            let (map, kid) = if let Some(kid) = stem.strip_prefix("link-") {
                (&mut sealing, kid)
            } else if let Some(kid) = stem.strip_prefix("linkhash-") {
                (&mut hashing, kid)
            } else {
                continue;
            };
            if !valid_kid(kid) {
                return Err(LinkKeyError::Kid { path: path.display().to_string() });
            }
            map.insert(kid.to_owned(), read_key_file(&path)?);
        }
        let unpaired =
            |kid: &str, present, missing| LinkKeyError::Unpaired { kid: kid.to_owned(), present, missing, dir: dir.display().to_string() };
        if let Some(kid) = hashing.keys().find(|k| !sealing.contains_key(*k)) {
            return Err(unpaired(kid, "linkhash-<kid>.key", "link-<kid>.key"));
        }
        let mut kids = BTreeMap::new();
        for (kid, seal_bytes) in sealing {
            let hash_bytes = hashing.remove(&kid).ok_or_else(|| unpaired(&kid, "link-<kid>.key", "linkhash-<kid>.key"))?;
            let seal = UnboundKey::new(&AES_256_GCM, seal_bytes.expose_secret())
                .map_err(|_| LinkKeyError::Format { path: dir.join(format!("link-{kid}.key")).display().to_string() })?;
            let hash = hmac::Key::new(hmac::HMAC_SHA256, hash_bytes.expose_secret());
            let csrf = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&hash, CSRF_KEY_LABEL).as_ref());
            kids.insert(kid, KidKeys { seal: LessSafeKey::new(seal), hash, csrf });
        }
        if !kids.contains_key(current_kid) {
            return Err(LinkKeyError::MissingCurrent { kid: current_kid.to_owned(), dir: dir.display().to_string() });
        }
        Ok(Self { kids, current: current_kid.to_owned() })
    }

    /// The kid new links are sealed with.
    pub fn current_kid(&self) -> &str {
        &self.current
    }

    /// A new link for one card, valid for `ttl` from `now` (epoch seconds). The caller
    /// records [`IssuedLink::link_hash`] and [`IssuedLink::expires_at`] in the database
    /// before handing out the URL: a link the database does not know is refused.
    pub fn issue(
        &self,
        tenant: &TenantId,
        entity_id: &EntityId,
        kit_no: &KitNo,
        dob: Option<DateOfBirth>,
        now: i64,
        ttl: Duration,
    ) -> Result<IssuedLink, IssueError> {
        if ttl.is_zero() || ttl > super::MAX_LINK_TTL {
            return Err(IssueError::Lifetime);
        }
        let mut id = LinkId([0u8; LINK_ID_BYTES]);
        aws_lc_rs::rand::fill(&mut id.0).expect("system random source");
        let expires_at = now.saturating_add(ttl.as_secs() as i64);
        let sealed = Sealed {
            t: tenant.to_string(),
            e: entity_id.to_string(),
            k: kit_no.to_string(),
            d: dob.map(|d| d.iso()),
            l: B64URL.encode(id.0),
            x: expires_at,
        };
        let keys = &self.kids[&self.current];
        let mut buf = Zeroizing::new(serde_json::to_vec(&sealed).expect("plain strings and numbers serialise"));
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system random source");
        keys.seal
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(&self.current)), &mut *buf)
            .expect("AES-GCM sealing of a short buffer cannot fail");
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&buf);
        Ok(IssuedLink {
            token: LinkToken(format!("{}.{}", self.current, B64URL.encode(raw))),
            link_hash: hash_with(&self.current, &keys.hash, &id),
            expires_at,
        })
    }

    /// Opens a token at time `now`: authentic (tag), well-formed, and not expired.
    pub fn open(&self, token: &str, now: i64) -> Result<LinkClaims, LinkInvalid> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(LinkInvalid::INVALID);
        }
        let (kid, body) = token.split_once('.').ok_or(LinkInvalid::INVALID)?;
        let keys = self.kids.get(kid).ok_or(LinkInvalid::INVALID)?;
        let raw = B64URL.decode(body).map_err(|_| LinkInvalid::INVALID)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(LinkInvalid::INVALID);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| LinkInvalid::INVALID)?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain = keys.seal.open_in_place(nonce, Aad::from(aad(kid)), &mut buf).map_err(|_| LinkInvalid::INVALID)?;
        let sealed: Sealed = serde_json::from_slice(plain).map_err(|_| LinkInvalid::INVALID)?;
        // Our own sealing made these; checking them again costs nothing and keeps a
        // mistake elsewhere from reaching the page.
        let tenant = TenantId::parse(&sealed.t).map_err(|_| LinkInvalid::INVALID)?;
        let entity_id = EntityId::parse(&sealed.e).map_err(|_| LinkInvalid::INVALID)?;
        let kit_no = KitNo::parse(&sealed.k).map_err(|_| LinkInvalid::INVALID)?;
        let dob = match &sealed.d {
            Some(d) => Some(DateOfBirth::parse(d).map_err(|_| LinkInvalid::INVALID)?),
            None => None,
        };
        let mut id = LinkId([0u8; LINK_ID_BYTES]);
        match B64URL.decode(&sealed.l) {
            Ok(bytes) if bytes.len() == LINK_ID_BYTES => id.0.copy_from_slice(&bytes),
            _ => return Err(LinkInvalid::INVALID),
        }
        if now >= sealed.x {
            return Err(LinkInvalid { expired: true });
        }
        Ok(LinkClaims {
            token: token.to_owned(),
            kid: kid.to_owned(),
            link_hash: hash_with(kid, &keys.hash, &id),
            tenant,
            entity_id,
            kit_no,
            dob,
            expires_at: sealed.x,
        })
    }

    /// The CSRF key of the kid that sealed `claims`.
    pub(super) fn csrf_key(&self, claims: &LinkClaims) -> &hmac::Key {
        &self.kids[claims.kid()].csrf
    }
}

fn aad(kid: &str) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    aad.extend_from_slice(kid.as_bytes());
    aad
}

fn hash_with(kid: &str, key: &hmac::Key, id: &LinkId) -> LinkHash {
    LinkHash(format!("{kid}:{}", hex::encode(hmac::sign(key, &id.0).as_ref())))
}

fn read_key_file(path: &Path) -> Result<SecretBox<[u8]>, LinkKeyError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|source| LinkKeyError::Read { path: path.display().to_string(), source })?);
    let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| LinkKeyError::Format { path: path.display().to_string() })?);
    if bytes.len() != 32 {
        return Err(LinkKeyError::Format { path: path.display().to_string() });
    }
    Ok(SecretBox::new(bytes.to_vec().into_boxed_slice()))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub const NOW: i64 = 1_800_000_000;
    pub const TTL: Duration = Duration::from_secs(300);

    /// A `KEYS_DIR` with fresh random keys for each kid.
    pub fn keys_dir(kids: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("widget")).unwrap();
        for kid in kids {
            for prefix in ["link", "linkhash"] {
                let mut k = [0u8; 32];
                aws_lc_rs::rand::fill(&mut k).unwrap();
                std::fs::write(dir.path().join(format!("widget/{prefix}-{kid}.key")), hex::encode(k)).unwrap();
            }
        }
        dir
    }

    pub fn tid(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    pub fn eid(id: &str) -> EntityId {
        EntityId::parse(id).unwrap()
    }

    pub fn kno(id: &str) -> KitNo {
        KitNo::parse(id).unwrap()
    }

    pub fn keys(kid: &str) -> (tempfile::TempDir, LinkKeys) {
        let dir = keys_dir(&[kid]);
        let keys = LinkKeys::load(dir.path(), kid).unwrap();
        (dir, keys)
    }

    fn dob(s: &str) -> DateOfBirth {
        DateOfBirth::parse(s).unwrap()
    }

    #[test]
    fn a_link_opens_with_what_was_sealed_until_it_expires() {
        let (_d, keys) = keys("k1");
        let link = keys.issue(&tid("bank"), &eid("cust-1"), &kno("kit-1"), Some(dob("1990-02-28")), NOW, TTL).unwrap();
        assert_eq!(link.expires_at, NOW + 300);
        assert!(link.token.as_str().starts_with("k1."));
        let claims = keys.open(link.token.as_str(), NOW).unwrap();
        assert_eq!((claims.tenant().as_str(), claims.entity_id().as_str(), claims.kit_no().as_str()), ("bank", "cust-1", "kit-1"));
        assert!(claims.dob().unwrap().matches(&dob("1990-02-28")));
        assert!(!claims.dob().unwrap().matches(&dob("1990-02-27")));
        assert_eq!(claims.link_hash(), &link.link_hash);
        assert_eq!(claims.expires_at(), NOW + 300);
        assert!(keys.open(link.token.as_str(), NOW + 299).is_ok());
        let expired = keys.open(link.token.as_str(), NOW + 300).unwrap_err();
        assert_eq!(expired.metric_reason(), "expired");
        // One message for every failure.
        assert_eq!(expired.to_string(), LinkInvalid::INVALID.to_string());
    }

    #[test]
    fn links_are_unique_and_hold_no_identifiers_in_clear() {
        let (_d, keys) = keys("k1");
        let a = keys.issue(&tid("bank"), &eid("cust-1"), &kno("kit-0000042"), None, NOW, TTL).unwrap();
        let b = keys.issue(&tid("bank"), &eid("cust-1"), &kno("kit-0000042"), None, NOW, TTL).unwrap();
        assert_ne!(a.token, b.token);
        assert_ne!(a.link_hash, b.link_hash);
        assert!(!a.token.as_str().contains("kit-0000042") && !a.token.as_str().contains("cust-1"));
        assert!(keys.open(a.token.as_str(), NOW).unwrap().dob().is_none());
        // The hash is `<kid>:<64 hex>`, and the token's Debug hides it.
        let (kid, hex) = a.link_hash.as_str().split_once(':').unwrap();
        assert_eq!(kid, "k1");
        assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(format!("{:?}", a.token), "LinkToken([REDACTED])");
        assert!(!format!("{:?}", keys.open(a.token.as_str(), NOW).unwrap()).contains(a.token.as_str()));
        // URL-safe as it is.
        assert!(a.token.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(a.token.url("https://x.example/card-details"), format!("https://x.example/card-details?t={}", a.token.as_str()));
        assert_eq!(a.token.url("https://x.example/c?lang=en"), format!("https://x.example/c?lang=en&t={}", a.token.as_str()));
    }

    #[test]
    fn rotation_keeps_old_links_working() {
        let dir = keys_dir(&["k1", "k2"]);
        let old = LinkKeys::load(dir.path(), "k1").unwrap();
        let new = LinkKeys::load(dir.path(), "k2").unwrap();
        let link = old.issue(&tid("bank"), &eid("c"), &kno("k"), None, NOW, TTL).unwrap();
        let claims = new.open(link.token.as_str(), NOW).unwrap();
        // Opened by the new ring, the hash is still the one the database recorded.
        assert_eq!(claims.link_hash(), &link.link_hash);
        assert!(new.issue(&tid("bank"), &eid("c"), &kno("k"), None, NOW, TTL).unwrap().token.as_str().starts_with("k2."));
        // Another deployment's keys open nothing of ours.
        let (_d, other) = keys("k1");
        assert!(other.open(link.token.as_str(), NOW).is_err());
    }

    #[test]
    fn issue_checks_its_inputs() {
        let (_d, keys) = keys("k1");
        assert_eq!(keys.issue(&tid("b"), &eid("c"), &kno("k"), None, NOW, Duration::ZERO).unwrap_err(), IssueError::Lifetime);
        assert_eq!(keys.issue(&tid("b"), &eid("c"), &kno("k"), None, NOW, Duration::from_secs(3601)).unwrap_err(), IssueError::Lifetime);
    }

    #[test]
    fn key_files_are_checked_and_errors_name_them() {
        let dir = keys_dir(&["k1"]);
        let err = LinkKeys::load(dir.path(), "k2").unwrap_err().to_string();
        assert!(err.contains("`k2`"), "{err}");
        std::fs::remove_file(dir.path().join("widget/linkhash-k1.key")).unwrap();
        let err = LinkKeys::load(dir.path(), "k1").unwrap_err().to_string();
        assert!(err.contains("no linkhash-<kid>.key") && err.contains("`k1`"), "{err}");
        let dir = keys_dir(&["k1"]);
        std::fs::remove_file(dir.path().join("widget/link-k1.key")).unwrap();
        assert!(matches!(LinkKeys::load(dir.path(), "k1"), Err(LinkKeyError::Unpaired { .. })));
        let dir = keys_dir(&["k1"]);
        let secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccdd";
        std::fs::write(dir.path().join("widget/link-k1.key"), secret).unwrap();
        let err = LinkKeys::load(dir.path(), "k1").unwrap_err().to_string();
        assert!(err.contains("link-k1.key") && err.contains("64 hex") && !err.contains(secret), "{err}");
        let dir = keys_dir(&["k1"]);
        std::fs::write(dir.path().join("widget/link-k.1.key"), "00").unwrap();
        assert!(matches!(LinkKeys::load(dir.path(), "k1"), Err(LinkKeyError::Kid { .. })));
    }

    #[test]
    fn the_development_keys_load() {
        let keys_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
        let keys = LinkKeys::load(&keys_dir, "v1").unwrap();
        let link = keys.issue(&tid("bank"), &eid("c"), &kno("k"), None, NOW, TTL).unwrap();
        assert!(keys.open(link.token.as_str(), NOW).is_ok());
    }

    fn shared_keys() -> &'static (tempfile::TempDir, LinkKeys) {
        static KEYS: std::sync::OnceLock<(tempfile::TempDir, LinkKeys)> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| keys("k1"))
    }

    proptest! {
        /// Whatever arrives in the URL is refused without a panic.
        #[test]
        fn any_input_is_refused_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200), text in "\\PC{0,300}") {
            let (_, keys) = shared_keys();
            prop_assert!(keys.open(&String::from_utf8_lossy(&bytes), NOW).is_err());
            prop_assert!(keys.open(&text, NOW).is_err());
            let with_kid = format!("k1.{text}");
            prop_assert!(keys.open(&with_kid, NOW).is_err());
        }

        /// Changing any one character of a valid token, to anything, gets it refused.
        #[test]
        fn any_single_character_change_is_refused(
            index in any::<prop::sample::Index>(),
            replacement in prop_oneof![
                prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/".to_vec()).prop_map(char::from),
                any::<char>(),
            ],
            dob_on_link in any::<bool>(),
        ) {
            let (_, keys) = shared_keys();
            let dob = dob_on_link.then(|| DateOfBirth::parse("1985-07-04").unwrap());
            let token = keys.issue(&tid("bank"), &eid("cust"), &kno("kit"), dob, NOW, TTL).unwrap().token.as_str().to_owned();
            prop_assert!(keys.open(&token, NOW).is_ok());
            let mut chars: Vec<char> = token.chars().collect();
            let i = index.index(chars.len());
            prop_assume!(chars[i] != replacement);
            chars[i] = replacement;
            let changed: String = chars.into_iter().collect();
            prop_assert!(keys.open(&changed, NOW).is_err());
        }
    }
}
