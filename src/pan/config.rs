//! The `[pan]` section: which key versions new card-number fingerprints and sealed copies
//! are made with.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::setting::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanConfig {
    /// Version of the HMAC key new fingerprints are made with (`keys/pan/fingerprint-<v>.key`).
    /// Older versions present in the directory are still used for lookups. Default: `v1`.
    pub fingerprint_version: KeyVersion,
    /// Version of the AES-256-GCM key new sealed copies are made with
    /// (`keys/pan/encryption-<v>.key`). Default: `v1`.
    pub encryption_version: KeyVersion,
}

impl Default for PanConfig {
    fn default() -> Self {
        Self { fingerprint_version: KeyVersion::v1(), encryption_version: KeyVersion::v1() }
    }
}

impl PanConfig {
    /// The versions' form is their type's; which files exist is checked when the keys load.
    pub fn validate(&self) -> Result<(), Problems> {
        Ok(())
    }
}

/// A key version: letters and digits only, such as `v1`, because it becomes part of a
/// file name. Reads as a `&str` wherever one is expected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyVersion(String);

impl KeyVersion {
    fn v1() -> Self {
        Self("v1".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!("expected a short alphanumeric key version such as v1, got {text:?}"))
        }
    }
}

impl Deref for KeyVersion {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for KeyVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_fits_in_a_file_name() {
        let v: KeyVersion = "v2".parse().unwrap();
        assert_eq!(format!("fingerprint-{v}.key"), "fingerprint-v2.key");
        let as_str: &str = &v;
        assert_eq!(as_str, "v2");
        for bad in ["", "../v1", "v 1", "v1.key"] {
            assert!(bad.parse::<KeyVersion>().unwrap_err().contains("such as v1"), "{bad}");
        }
    }
}
