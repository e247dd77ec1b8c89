//! The `[database]` section: which database, and how the pool waits for it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::setting::{Problems, REDACTED};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user:password@host/db`. Default:
    /// `sqlite://data/ctp-issuer.db`, the embedded single-process shape.
    pub url: DatabaseUrl,
    /// Pool size. Default: 8.
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails (and Visa gets a 500).
    /// Default: 5s.
    #[serde(with = "crate::setting::duration")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: DatabaseUrl::Sqlite("sqlite://data/ctp-issuer.db".into()), max_connections: 8, acquire_timeout: Duration::from_secs(5) }
    }
}

impl DatabaseConfig {
    /// Ranges serde cannot check (the URL's form is its type's).
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        problems.require(self.max_connections >= 1, "database.max_connections", "must be at least 1");
        problems.into_result()
    }
}

/// The database URL, its dialect known once it is read. A PostgreSQL URL may hold a
/// password, so it stays a secret: `Debug`, `Serialize` and errors never show it. A SQLite
/// URL is a file path and is shown.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// `sqlite:…`, the whole URL.
    Sqlite(String),
    /// `postgres:…` or `postgresql:…`, the whole URL.
    Postgres(SecretString),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// Why a string is not a database URL. Carries nothing of the string: it may hold a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DB (the value is not shown: it may hold a password)")]
pub struct DatabaseUrlError;

impl DatabaseUrl {
    pub fn kind(&self) -> DatabaseKind {
        match self {
            Self::Sqlite(_) => DatabaseKind::Sqlite,
            Self::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.kind() == DatabaseKind::Sqlite
    }
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(text: &str) -> Result<Self, DatabaseUrlError> {
        let text = text.trim();
        let has_rest = |scheme: &str| text.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty());
        if has_rest("sqlite:") {
            Ok(Self::Sqlite(text.to_owned()))
        } else if has_rest("postgres:") || has_rest("postgresql:") {
            Ok(Self::Postgres(SecretString::from(text)))
        } else {
            Err(DatabaseUrlError)
        }
    }
}

/// The whole URL, for the store's connect call: `config.url.expose_secret()` reads the
/// same as when the field was a plain secret string.
impl ExposeSecret<str> for DatabaseUrl {
    fn expose_secret(&self) -> &str {
        match self {
            Self::Sqlite(url) => url,
            Self::Postgres(url) => url.expose_secret(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(url) => f.debug_tuple("Sqlite").field(url).finish(),
            Self::Postgres(_) => f.debug_tuple("Postgres").field(&REDACTED).finish(),
        }
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sqlite(url) => serializer.serialize_str(url),
            Self::Postgres(_) => serializer.serialize_str(REDACTED),
        }
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read into a secret at once, so that the text is wiped whatever happens next.
        let text = SecretString::deserialize(deserializer)?;
        text.expose_secret().parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_sorted_by_dialect_and_a_password_never_shows() {
        let pg: DatabaseUrl = "postgres://u:hunter2@db/ctp".parse().unwrap();
        assert_eq!(pg.kind(), DatabaseKind::Postgres);
        assert_eq!(pg.expose_secret(), "postgres://u:hunter2@db/ctp");
        assert!(!format!("{pg:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&pg).unwrap().contains("hunter2"));
        assert_eq!("postgresql://db/ctp".parse::<DatabaseUrl>().unwrap().kind(), DatabaseKind::Postgres);

        let lite: DatabaseUrl = "sqlite://data/x.db".parse().unwrap();
        assert!(lite.is_sqlite());
        assert_eq!(format!("{lite:?}"), "Sqlite(\"sqlite://data/x.db\")");

        for bad in ["mysql://u:hunter2@db/x", "", "postgres:", "hunter2"] {
            let err = bad.parse::<DatabaseUrl>().unwrap_err().to_string();
            assert!(err.contains("sqlite://") && !err.contains("hunter2"), "{err}");
        }
    }
}
