//! The two key tables a notification is checked against, loaded from files so that keys
//! rotate by adding and removing files (then SIGHUP, or a restart):
//!
//! | file | what | used for |
//! | --- | --- | --- |
//! | `KEYS_DIR/visa/<kid>.pem` | Visa's public key (SPKI) or X.509 certificate | verifying the outer JWS (PS256 …) |
//! | `KEYS_DIR/issuer/<kid>.pem` | the issuer's RSA private key, PKCS#8 | decrypting RSA-OAEP-256 JWEs |
//! | `KEYS_DIR/shared/<kid>.secret` | a shared secret, UTF-8 | A256GCMKW JWEs (key = SHA-256 of the secret) and HS256 JWSs (key = the secret) |
//!
//! The kid is the file's stem. JWS and JWE kids are looked up in separate tables: Visa's
//! signing kid and the issuer's encryption kid are different names for different keys.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use josekit::jwe::JweDecrypter;
use josekit::jws::JwsVerifier;
use secrecy::{ExposeSecret, SecretString};

use super::rsa_decrypter::RsaOaepDecrypter;
use super::rsa_verifier::RsaJwsVerifier;

/// Verifiers and decrypters by kid, built once at load time so that the hot path only
/// looks them up.
#[derive(Default)]
pub struct VisaKeyRing {
    /// `(kid, alg)` → verifier, for every allowed JWS alg the key type supports.
    verifiers: HashMap<(String, &'static str), Box<dyn JwsVerifier>>,
    /// `(kid, alg)` → decrypter: RSA-OAEP-256 for issuer keys, A256GCMKW for shared secrets.
    decrypters: HashMap<(String, &'static str), Box<dyn JweDecrypter>>,
}

impl fmt::Debug for VisaKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut jws: Vec<_> = self.verifiers.keys().map(|(k, a)| format!("{k}/{a}")).collect();
        let mut jwe: Vec<_> = self.decrypters.keys().map(|(k, a)| format!("{k}/{a}")).collect();
        jws.sort();
        jwe.sort();
        f.debug_struct("VisaKeyRing").field("jws", &jws).field("jwe", &jwe).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(
        "no Visa notification keys in {0}: need at least one visa/<kid>.pem or shared/<kid>.secret, and one issuer/<kid>.pem or shared/<kid>.secret"
    )]
    Empty(PathBuf),
}

/// JWE key-management algorithms we accept. `dir`, `RSA1_5` and the rest are refused.
pub const JWE_ALGORITHMS: &[&str] = &["RSA-OAEP-256", "A256GCMKW"];
/// JWE content encryptions we accept.
pub const JWE_ENCRYPTIONS: &[&str] = &["A256GCM", "A128GCM"];

impl VisaKeyRing {
    /// Loads every key under `keys_dir`, building verifiers only for `jws_algorithms`.
    pub fn load(keys_dir: &Path, jws_algorithms: &[String]) -> Result<Self, KeyLoadError> {
        let mut ring = Self::default();
        let allowed = |alg: &str| jws_algorithms.iter().any(|a| a == alg);

        for (kid, path) in key_files(&keys_dir.join("visa"), "pem")? {
            let pem = read(&path)?;
            for alg in ["PS256", "PS384", "PS512", "RS256"] {
                if allowed(alg) {
                    let verifier = RsaJwsVerifier::from_pem(alg, pem.as_bytes())
                        .map_err(|message| KeyLoadError::Key { path: path.clone(), message })?;
                    ring.verifiers.insert((kid.clone(), alg), Box::new(verifier));
                }
            }
        }

        for (kid, path) in key_files(&keys_dir.join("issuer"), "pem")? {
            let pem = read(&path)?;
            let decrypter =
                RsaOaepDecrypter::from_pem(pem.as_bytes()).map_err(|message| KeyLoadError::Key { path: path.clone(), message })?;
            ring.decrypters.insert((kid, "RSA-OAEP-256"), Box::new(decrypter));
        }

        for (kid, path) in key_files(&keys_dir.join("shared"), "secret")? {
            let secret = read_secret(&path)?;
            let kek = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.expose_secret().as_bytes());
            let decrypter = josekit::jwe::A256GCMKW.decrypter_from_bytes(kek.as_ref()).map_err(key_err(&path))?;
            ring.decrypters.insert((kid.clone(), "A256GCMKW"), Box::new(decrypter));
            if allowed("HS256") {
                let verifier = josekit::jws::HS256.verifier_from_bytes(secret.expose_secret().as_bytes()).map_err(key_err(&path))?;
                ring.verifiers.insert((kid, "HS256"), Box::new(verifier));
            }
        }

        if ring.verifiers.is_empty() || ring.decrypters.is_empty() {
            return Err(KeyLoadError::Empty(keys_dir.to_owned()));
        }
        Ok(ring)
    }

    pub fn verifier(&self, kid: &str, alg: &str) -> Option<&dyn JwsVerifier> {
        self.verifiers.get(&(kid.to_owned(), static_alg(alg)?)).map(|b| b.as_ref())
    }

    pub fn decrypter(&self, kid: &str, alg: &str) -> Option<&dyn JweDecrypter> {
        self.decrypters.get(&(kid.to_owned(), static_alg(alg)?)).map(|b| b.as_ref())
    }

    /// Whether any key of any algorithm carries this JWS kid (to tell "unknown kid" from
    /// "known kid, wrong algorithm").
    pub fn knows_jws_kid(&self, kid: &str) -> bool {
        self.verifiers.keys().any(|(k, _)| k == kid)
    }
}

/// Interns an algorithm name so that map keys can be `&'static str`.
fn static_alg(alg: &str) -> Option<&'static str> {
    ["PS256", "PS384", "PS512", "RS256", "HS256", "RSA-OAEP-256", "A256GCMKW"].into_iter().find(|a| *a == alg)
}

fn key_err(path: &Path) -> impl Fn(josekit::JoseError) -> KeyLoadError + '_ {
    move |e| KeyLoadError::Key { path: path.to_owned(), message: e.to_string() }
}

fn read(path: &Path) -> Result<String, KeyLoadError> {
    std::fs::read_to_string(path).map_err(|source| KeyLoadError::Read { path: path.to_owned(), source })
}

/// A shared secret file, with one trailing newline forgiven (files written by `echo`).
fn read_secret(path: &Path) -> Result<SecretString, KeyLoadError> {
    let mut text = read(path)?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    if text.is_empty() {
        return Err(KeyLoadError::Key { path: path.to_owned(), message: "shared secret is empty".into() });
    }
    Ok(SecretString::from(text))
}

/// `(kid, path)` for each `*.ext` file in `dir`, sorted. A missing directory is empty.
fn key_files(dir: &Path, ext: &str) -> Result<Vec<(String, PathBuf)>, KeyLoadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyLoadError::Read { path: dir.to_owned(), source }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| KeyLoadError::Read { path: dir.to_owned(), source })?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext)
            && let Some(kid) = path.file_stem().and_then(|s| s.to_str())
        {
            out.push((kid.to_owned(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}
