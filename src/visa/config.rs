//! The `[visa]` section: how an inbound notification is judged before it is decrypted.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::setting::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisaConfig {
    /// How far a notification's `iat` may be from our clock, either way. No public maximum
    /// is known, so this is a setting; out-of-window messages are rejected with 401.
    /// Default: 5m.
    #[serde(with = "crate::setting::duration")]
    pub replay_window: Duration,
    /// Whether a JWE without `iat` is refused (401). On by default: without `iat` a captured
    /// message could be replayed forever.
    pub require_iat: bool,
    /// Signature algorithms accepted on the outer JWS. PS256 is what Visa uses; HS256 is
    /// the shared-secret channel. Others (RS256, PS384, PS512) only when listed here.
    /// Default: `PS256, HS256`.
    pub jws_algorithms: Vec<JwsAlgorithm>,
    /// Bytes read from a notification body before it is refused, checked before any
    /// parsing. Default: 16384; at least 8192 (`encryptedData` alone may be 7000).
    pub max_body_bytes: usize,
}

impl Default for VisaConfig {
    fn default() -> Self {
        Self {
            replay_window: Duration::from_secs(300),
            require_iat: true,
            jws_algorithms: vec![JwsAlgorithm::Ps256, JwsAlgorithm::Hs256],
            max_body_bytes: 16 * 1024,
        }
    }
}

impl VisaConfig {
    /// The JOSE names of `jws_algorithms`, as the key ring takes them.
    pub fn jws_algorithm_names(&self) -> Vec<String> {
        self.jws_algorithms.iter().map(|alg| alg.as_str().to_owned()).collect()
    }

    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        problems.require(!self.replay_window.is_zero(), "visa.replay_window", "must be positive");
        problems.require(!self.jws_algorithms.is_empty(), "visa.jws_algorithms", "must name at least one algorithm");
        problems.require(self.max_body_bytes >= 8 * 1024, "visa.max_body_bytes", "must be at least 8192 (encryptedData alone may be 7000)");
        problems.into_result()
    }
}

/// A JWS signature algorithm this build can verify on a notification. Written by its JOSE
/// name (`PS256`), in the file and in the environment alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    Ps256,
    Ps384,
    Ps512,
    Rs256,
    Hs256,
}

impl JwsAlgorithm {
    pub const ALL: [JwsAlgorithm; 5] = [Self::Ps256, Self::Ps384, Self::Ps512, Self::Rs256, Self::Hs256];

    /// The JOSE name, as in a JWS header's `alg`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Rs256 => "RS256",
            Self::Hs256 => "HS256",
        }
    }
}

/// The names of [`JwsAlgorithm::ALL`]; `visa.jws_algorithms` is a subset.
pub const SUPPORTED_JWS_ALGORITHMS: &[&str] = &["PS256", "PS384", "PS512", "RS256", "HS256"];

impl AsRef<str> for JwsAlgorithm {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for JwsAlgorithm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl FromStr for JwsAlgorithm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name.trim())
            .ok_or_else(|| format!("expected one of {}, got {name:?}", SUPPORTED_JWS_ALGORITHMS.join(", ")))
    }
}

impl Serialize for JwsAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JwsAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_are_read_by_their_jose_names_only() {
        assert_eq!("PS256".parse(), Ok(JwsAlgorithm::Ps256));
        assert_eq!(JwsAlgorithm::ALL.map(JwsAlgorithm::as_str), SUPPORTED_JWS_ALGORITHMS);
        let err = "none".parse::<JwsAlgorithm>().unwrap_err();
        assert_eq!(err, "expected one of PS256, PS384, PS512, RS256, HS256, got \"none\"");
        assert!("ps256".parse::<JwsAlgorithm>().is_err());
    }

    #[test]
    fn every_visa_problem_is_named() {
        let visa = VisaConfig { replay_window: Duration::ZERO, jws_algorithms: vec![], max_body_bytes: 100, ..VisaConfig::default() };
        let text = visa.validate().unwrap_err().to_string();
        assert!(text.starts_with("3 problems"), "{text}");
        for key in ["visa.replay_window", "visa.jws_algorithms", "visa.max_body_bytes"] {
            assert!(text.contains(key), "{text}");
        }
    }
}
