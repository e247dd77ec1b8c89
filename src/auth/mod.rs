//! Who is calling the internal API: a bearer JWT (HS256 with a configured secret, or
//! RS256/ES256 against configured public keys or a JWKS file), verified with josekit, and
//! the tenants it may act for.

pub mod config;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use josekit::jws::JwsVerifier;
use josekit::jwt::{JwtPayload, JwtPayloadValidator};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use self::config::AuthConfig;

/// The tenants a token may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    All,
    Only(Vec<String>),
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: Option<String>,
    pub tenants: TenantScope,
}

impl Caller {
    pub fn may_act_for(&self, tenant: &str) -> bool {
        match &self.tenants {
            TenantScope::All => true,
            TenantScope::Only(list) => list.iter().any(|t| t == tenant),
        }
    }
}

/// Why a token was refused. Shown to the caller only as "unauthorized".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm or key id is not accepted")]
    UnknownKey,
    #[error("token signature or claims are invalid")]
    Invalid,
    #[error("token names no tenant")]
    NoTenant,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    #[error("{path}: {message}")]
    Key { path: String, message: String },
}

/// The configured verification keys.
pub struct ApiAuth {
    hs256: Option<Box<dyn JwsVerifier>>,
    /// `(kid, alg)` → verifier for asymmetric keys.
    keyed: HashMap<(String, String), Box<dyn JwsVerifier>>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth").field("hs256", &self.hs256.is_some()).field("keys", &self.keyed.keys().collect::<Vec<_>>()).finish()
    }
}

/// The latest instant a token's `exp`, `nbf` or `iat` may name: 9999-12-31T23:59:59Z. A
/// signed token with a later one (`"exp": 1e300`) is invalid.
const LATEST_CLAIM_SECS: f64 = 253_402_300_799.0;

/// Default location of the development HS256 secret.
pub fn dev_secret_path(keys_dir: &Path) -> std::path::PathBuf {
    keys_dir.join("jwt/dev-hs256.secret")
}

impl ApiAuth {
    pub fn load(config: &AuthConfig, keys_dir: &Path) -> Result<Self, AuthLoadError> {
        let key_err =
            |path: &Path, e: &dyn std::fmt::Display| AuthLoadError::Key { path: path.display().to_string(), message: e.to_string() };
        let hs256_path = config.hs256_secret_file.clone().or_else(|| Some(dev_secret_path(keys_dir)).filter(|p| p.exists()));
        let hs256: Option<Box<dyn JwsVerifier>> = match hs256_path {
            None => None,
            Some(path) => {
                let secret = read_secret(&path).map_err(|e| key_err(&path, &e))?;
                Some(Box::new(josekit::jws::HS256.verifier_from_bytes(secret.expose_secret().as_bytes()).map_err(|e| key_err(&path, &e))?))
            }
        };
        let mut keyed: HashMap<(String, String), Box<dyn JwsVerifier>> = HashMap::new();
        if let Some(dir) = &config.public_keys_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| key_err(dir, &e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                    continue;
                }
                let kid = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
                let pem = std::fs::read(&path).map_err(|e| key_err(&path, &e))?;
                let (alg, verifier) = verifier_from_pem(&pem).map_err(|e| key_err(&path, &e))?;
                keyed.insert((kid, alg.into()), verifier);
            }
        }
        if let Some(path) = &config.jwks_file {
            let bytes = std::fs::read(path).map_err(|e| key_err(path, &e))?;
            let set = josekit::jwk::JwkSet::from_bytes(&bytes).map_err(|e| key_err(path, &e))?;
            for jwk in set.keys() {
                let kid = jwk.key_id().unwrap_or_default().to_owned();
                let (alg, verifier): (&str, Box<dyn JwsVerifier>) = match jwk.key_type() {
                    "RSA" => ("RS256", Box::new(josekit::jws::RS256.verifier_from_jwk(jwk).map_err(|e| key_err(path, &e))?)),
                    "EC" => ("ES256", Box::new(josekit::jws::ES256.verifier_from_jwk(jwk).map_err(|e| key_err(path, &e))?)),
                    other => return Err(key_err(path, &format!("unsupported key type {other}"))),
                };
                keyed.insert((kid, alg.into()), verifier);
            }
        }
        Ok(Self { hs256, keyed, issuer: config.issuer.clone(), audience: config.audience.clone() })
    }

    /// Verifies `Authorization: Bearer <jwt>` and reads the tenant scope.
    pub fn verify(&self, authorization: Option<&str>, now: SystemTime) -> Result<Caller, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let header = josekit::jwt::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let alg = header.claim("alg").and_then(Value::as_str).ok_or(AuthError::Malformed)?.to_owned();
        let kid = header.claim("kid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let verifier: &dyn JwsVerifier = match alg.as_str() {
            "HS256" => self.hs256.as_deref().ok_or(AuthError::UnknownKey)?,
            "RS256" | "ES256" => self.keyed.get(&(kid, alg.clone())).map(|b| b.as_ref()).ok_or(AuthError::UnknownKey)?,
            _ => return Err(AuthError::UnknownKey),
        };
        let (payload, _) = josekit::jwt::decode_with_verifier(token, verifier).map_err(|_| AuthError::Invalid)?;
        self.check_claims(&payload, now)?;
        let tenants = match (payload.claim("tenants"), payload.claim("tenant")) {
            (Some(Value::Array(list)), _) => list.iter().filter_map(Value::as_str).map(String::from).collect::<Vec<_>>(),
            (_, Some(Value::String(t))) => vec![t.clone()],
            _ => Vec::new(),
        };
        let tenants = if tenants.iter().any(|t| t == "*") {
            TenantScope::All
        } else if tenants.is_empty() {
            return Err(AuthError::NoTenant);
        } else {
            TenantScope::Only(tenants)
        };
        Ok(Caller { subject: payload.subject().map(String::from), tenants })
    }

    fn check_claims(&self, payload: &JwtPayload, now: SystemTime) -> Result<(), AuthError> {
        // Before josekit reads them: it makes each a `SystemTime` by adding it to the
        // epoch, which panics past what one holds.
        let in_range = |name: &str| match payload.claim(name) {
            Some(Value::Number(n)) => n.as_f64().is_some_and(|secs| (0.0..=LATEST_CLAIM_SECS).contains(&secs)),
            _ => true,
        };
        if !["exp", "nbf", "iat"].into_iter().all(in_range) {
            return Err(AuthError::Invalid);
        }
        if payload.expires_at().is_none() {
            return Err(AuthError::Invalid);
        }
        // josekit's validator checks `aud` only when the token has one: a token without
        // an audience would pass for any. When one is configured, the token must name it.
        if self.audience.is_some() && payload.audience().is_none() {
            return Err(AuthError::Invalid);
        }
        let mut validator = JwtPayloadValidator::new();
        validator.set_base_time(now);
        if let Some(iss) = &self.issuer {
            validator.set_issuer(iss);
        }
        if let Some(aud) = &self.audience {
            validator.set_audience(aud);
        }
        validator.validate(payload).map_err(|_| AuthError::Invalid)
    }
}

/// A development token for `tenants`, signed with the HS256 secret at `secret_file`.
pub fn mint_token(secret_file: &Path, tenants: &[String], subject: &str, ttl: Duration) -> anyhow::Result<String> {
    let secret = read_secret(secret_file)?;
    let mut payload = JwtPayload::new();
    payload.set_subject(subject);
    payload.set_issued_at(&SystemTime::now());
    payload.set_expires_at(&(SystemTime::now() + ttl));
    payload.set_claim("tenants", Some(Value::from(tenants.to_vec())))?;
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("JWT");
    let signer = josekit::jws::HS256.signer_from_bytes(secret.expose_secret().as_bytes())?;
    Ok(josekit::jwt::encode_with_signer(&payload, &header, &signer)?)
}

fn read_secret(path: &Path) -> std::io::Result<SecretString> {
    let text = std::fs::read_to_string(path)?;
    Ok(SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()))
}

fn verifier_from_pem(pem: &[u8]) -> Result<(&'static str, Box<dyn JwsVerifier>), String> {
    let key = if pem.windows(17).any(|w| w == b"BEGIN CERTIFICATE") {
        openssl::x509::X509::from_pem(pem).and_then(|c| c.public_key()).map_err(|e| e.to_string())?
    } else {
        openssl::pkey::PKey::public_key_from_pem(pem).map_err(|e| e.to_string())?
    };
    let der = key.public_key_to_der().map_err(|e| e.to_string())?;
    match key.id() {
        openssl::pkey::Id::RSA => Ok(("RS256", Box::new(josekit::jws::RS256.verifier_from_der(&der).map_err(|e| e.to_string())?))),
        openssl::pkey::Id::EC => Ok(("ES256", Box::new(josekit::jws::ES256.verifier_from_der(&der).map_err(|e| e.to_string())?))),
        other => Err(format!("unsupported key type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, ApiAuth) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("jwt")).unwrap();
        std::fs::write(dev_secret_path(dir.path()), "test-secret-0123456789abcdef0123456789").unwrap();
        let auth = ApiAuth::load(&AuthConfig::default(), dir.path()).unwrap();
        (dir, auth)
    }

    #[test]
    fn minted_token_grants_its_tenants_only() {
        let (dir, auth) = setup();
        let token = mint_token(&dev_secret_path(dir.path()), &["BANK1".into()], "ops", Duration::from_secs(60)).unwrap();
        let caller = auth.verify(Some(&format!("Bearer {token}")), SystemTime::now()).unwrap();
        assert!(caller.may_act_for("BANK1"));
        assert!(!caller.may_act_for("BANK2"));
        assert_eq!(caller.subject.as_deref(), Some("ops"));
    }

    #[test]
    fn wildcard_grants_every_tenant() {
        let (dir, auth) = setup();
        let token = mint_token(&dev_secret_path(dir.path()), &["*".into()], "ops", Duration::from_secs(60)).unwrap();
        assert!(auth.verify(Some(&format!("Bearer {token}")), SystemTime::now()).unwrap().may_act_for("ANY"));
    }

    proptest::proptest! {
        /// Any Authorization header: a refusal or a caller, never a panic.
        #[test]
        fn arbitrary_headers_never_panic(header in "\\PC{0,200}", token in "[A-Za-z0-9_.-]{0,200}") {
            let (_dir, auth) = setup();
            let _ = auth.verify(Some(&header), SystemTime::now());
            let _ = auth.verify(Some(&format!("Bearer {token}")), SystemTime::now());
        }
    }

    /// A signed token whose times are past what a `SystemTime` holds is refused, not a panic.
    #[test]
    fn times_beyond_the_year_9999_are_invalid() {
        let (dir, auth) = setup();
        let secret = read_secret(&dev_secret_path(dir.path())).unwrap();
        let signer = josekit::jws::HS256.signer_from_bytes(secret.expose_secret().as_bytes()).unwrap();
        let far = SystemTime::now() + Duration::from_secs(3600);
        for (claim, value) in [
            ("exp", serde_json::json!(1e300)),
            ("exp", serde_json::json!(u64::MAX)),
            ("nbf", serde_json::json!(1.9e19)),
            ("iat", serde_json::json!(1e20)),
        ] {
            let mut payload = JwtPayload::new();
            payload.set_expires_at(&far);
            payload.set_claim("tenants", Some(Value::from(vec!["B"]))).unwrap();
            payload.set_claim(claim, Some(value)).unwrap();
            let token = josekit::jwt::encode_with_signer(&payload, &josekit::jws::JwsHeader::new(), &signer).unwrap();
            assert_eq!(auth.verify(Some(&format!("Bearer {token}")), SystemTime::now()), Err(AuthError::Invalid), "{claim}");
        }
    }

    #[test]
    fn bad_tokens_are_refused_for_the_right_reason() {
        let (dir, auth) = setup();
        let token = mint_token(&dev_secret_path(dir.path()), &["B".into()], "ops", Duration::from_secs(60)).unwrap();
        assert_eq!(auth.verify(None, SystemTime::now()), Err(AuthError::Missing));
        assert_eq!(auth.verify(Some("Basic abc"), SystemTime::now()), Err(AuthError::Missing));
        assert_eq!(auth.verify(Some("Bearer not.a.jwt"), SystemTime::now()), Err(AuthError::Malformed));
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(auth.verify(Some(&format!("Bearer {tampered}")), SystemTime::now()), Err(AuthError::Invalid));
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(auth.verify(Some(&format!("Bearer {token}")), later), Err(AuthError::Invalid), "expired");
        // Another secret's token.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("s"), "another-secret-0123456789abcdef01234567").unwrap();
        let forged = mint_token(&other.path().join("s"), &["B".into()], "x", Duration::from_secs(60)).unwrap();
        assert_eq!(auth.verify(Some(&format!("Bearer {forged}")), SystemTime::now()), Err(AuthError::Invalid));
    }
}
