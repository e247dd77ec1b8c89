//! The `[auth]` section: which bearer tokens the internal API accepts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::setting::Problems;

/// Bearer JWTs on the internal API. Tokens name the tenants they may act for in a
/// `tenants` (array) or `tenant` (string) claim; `"*"` is every tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret file. Default: `KEYS_DIR/jwt/dev-hs256.secret` when it exists.
    pub hs256_secret_file: Option<PathBuf>,
    /// Directory of RS256/ES256 public keys (`<kid>.pem`, SPKI or certificate). Default: none.
    pub public_keys_dir: Option<PathBuf>,
    /// A JWKS file of RS256/ES256 public keys. Default: none.
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`. Default: none, any issuer.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`. Default: none, any audience.
    pub audience: Option<String>,
}

impl AuthConfig {
    /// Nothing to check before the key files are read.
    pub fn validate(&self) -> Result<(), Problems> {
        Ok(())
    }
}
