//! Layered configuration: documented defaults, then an optional TOML file, then `CTP_*`
//! environment variables. Validated once, at start, so that a running service never
//! discovers a bad setting halfway through a request.
//!
//! Every field below is documented in the README's configuration reference; keep the two
//! in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The whole configuration of one process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub listen: ListenConfig,
    /// TLS on the public listener (the one Visa calls). Absent: plain HTTP, for loopback
    /// and for deployments that terminate TLS in front of us.
    pub tls: Option<TlsConfig>,
    /// Root of the key layout described in `keys/README.md`.
    pub keys_dir: PathBuf,
    pub visa: VisaConfig,
    pub pan: PanConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`. A secret: it may hold a password.
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails (and Visa gets a 500).
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Visa's notifications and the SaaS callbacks. The only port exposed to the outside.
    pub public: SocketAddr,
    /// The issuer's own services.
    pub internal: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CAs whose client certificates are required (mutual TLS, as Visa uses).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisaConfig {
    /// How far a notification's `iat` may be from our clock, either way. No public maximum
    /// is known, so this is a setting; out-of-window messages are rejected with 401.
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
    /// Whether a JWE without `iat` is refused (401). On by default: without `iat` a captured
    /// message could be replayed forever.
    pub require_iat: bool,
    /// Signature algorithms accepted on the outer JWS. PS256 is what Visa uses; HS256 is
    /// the shared-secret channel. Others (RS256, PS384, PS512) only when listed here.
    pub jws_algorithms: Vec<String>,
    /// Bytes read from a notification body before it is refused, checked before any parsing.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanConfig {
    /// Version of the HMAC key new fingerprints are made with (`keys/pan/fingerprint-<v>.key`).
    /// Older versions present in the directory are still used for lookups.
    pub fingerprint_version: String,
    /// Version of the AES-256-GCM key new sealed copies are made with
    /// (`keys/pan/encryption-<v>.key`).
    pub encryption_version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A client that has not sent its headers by then is disconnected (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request still running after this is answered 503 and abandoned.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// On SIGTERM, how long open connections may finish before they are cut.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `ctp_issuer=debug,sqlx=warn`.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::default(),
            listen: ListenConfig::default(),
            tls: None,
            keys_dir: PathBuf::from("keys"),
            visa: VisaConfig::default(),
            pan: PanConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/ctp-issuer.db"),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            public: SocketAddr::from(([127, 0, 0, 1], 8080)),
            internal: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

impl Default for VisaConfig {
    fn default() -> Self {
        Self {
            replay_window: Duration::from_secs(300),
            require_iat: true,
            jws_algorithms: vec!["PS256".into(), "HS256".into()],
            max_body_bytes: 16 * 1024,
        }
    }
}

impl Default for PanConfig {
    fn default() -> Self {
        Self { fingerprint_version: "v1".into(), encryption_version: "v1".into() }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info".into() }
    }
}

/// The JWS algorithms this build knows how to verify; `visa.jws_algorithms` must be a subset.
pub const SUPPORTED_JWS_ALGORITHMS: &[&str] = &["PS256", "PS384", "PS512", "RS256", "HS256"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file` if given, then the process environment; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// Applies the `CTP_*` variables. `lookup` is the environment (a parameter so that tests
    /// need not mutate the process's own).
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env { name, message: e.to_string() })
        }
        fn duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
            humantime_serde::re::humantime::parse_duration(value)
                .map_err(|e| ConfigError::Env { name, message: e.to_string() })
        }

        if let Some(v) = lookup("CTP_DATABASE_URL") {
            self.database.url = SecretString::from(v);
        }
        if let Some(v) = lookup("CTP_DATABASE_MAX_CONNECTIONS") {
            self.database.max_connections = parse("CTP_DATABASE_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = lookup("CTP_KEYS_DIR") {
            self.keys_dir = PathBuf::from(v);
        }
        if let Some(v) = lookup("CTP_PUBLIC_ADDR") {
            self.listen.public = parse("CTP_PUBLIC_ADDR", &v)?;
        }
        if let Some(v) = lookup("CTP_INTERNAL_ADDR") {
            self.listen.internal = parse("CTP_INTERNAL_ADDR", &v)?;
        }
        if let Some(v) = lookup("CTP_ADMIN_ADDR") {
            self.listen.admin = parse("CTP_ADMIN_ADDR", &v)?;
        }
        let tls_cert = lookup("CTP_TLS_CERT");
        let tls_key = lookup("CTP_TLS_KEY");
        if tls_cert.is_some() || tls_key.is_some() {
            let current = self.tls.take();
            let cert = tls_cert.map(PathBuf::from).or(current.as_ref().map(|t| t.cert.clone()));
            let key = tls_key.map(PathBuf::from).or(current.as_ref().map(|t| t.key.clone()));
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    self.tls = Some(TlsConfig {
                        cert,
                        key,
                        client_ca: current.and_then(|t| t.client_ca),
                    })
                }
                _ => {
                    return Err(ConfigError::Env {
                        name: "CTP_TLS_CERT",
                        message: "CTP_TLS_CERT and CTP_TLS_KEY must be set together".into(),
                    });
                }
            }
        }
        if let Some(v) = lookup("CTP_TLS_CLIENT_CA") {
            match self.tls.as_mut() {
                Some(tls) => tls.client_ca = Some(PathBuf::from(v)),
                None => {
                    return Err(ConfigError::Env {
                        name: "CTP_TLS_CLIENT_CA",
                        message: "needs CTP_TLS_CERT and CTP_TLS_KEY".into(),
                    });
                }
            }
        }
        if let Some(v) = lookup("CTP_VISA_REPLAY_WINDOW") {
            self.visa.replay_window = duration("CTP_VISA_REPLAY_WINDOW", &v)?;
        }
        if let Some(v) = lookup("CTP_VISA_JWS_ALGORITHMS") {
            self.visa.jws_algorithms =
                v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        if let Some(v) = lookup("CTP_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: "CTP_LOG_FORMAT",
                        message: format!("expected `text` or `json`, got `{v}`"),
                    });
                }
            };
        }
        if let Some(v) = lookup("CTP_LOG") {
            self.log.filter = v;
        }
        Ok(())
    }

    /// Checks what serde cannot: cross-field rules and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return invalid("database.url must start with sqlite: or postgres:".into());
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1".into());
        }
        let l = &self.listen;
        if l.public == l.internal || l.public == l.admin || (l.internal == l.admin && l.admin.port() != 0) {
            return invalid("listen.public, listen.internal and listen.admin must differ".into());
        }
        if self.visa.replay_window.is_zero() {
            return invalid("visa.replay_window must be positive".into());
        }
        if self.visa.jws_algorithms.is_empty() {
            return invalid("visa.jws_algorithms must name at least one algorithm".into());
        }
        for alg in &self.visa.jws_algorithms {
            if !SUPPORTED_JWS_ALGORITHMS.contains(&alg.as_str()) {
                return invalid(format!(
                    "visa.jws_algorithms: `{alg}` is not one of {SUPPORTED_JWS_ALGORITHMS:?}"
                ));
            }
        }
        if self.visa.max_body_bytes < 8 * 1024 {
            return invalid("visa.max_body_bytes must be at least 8192 (encryptedData alone may be 7000)".into());
        }
        for (name, v) in [("pan.fingerprint_version", &self.pan.fingerprint_version), ("pan.encryption_version", &self.pan.encryption_version)] {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                return invalid(format!("{name} must be a short alphanumeric version such as v1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_overrides_defaults() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("CTP_DATABASE_URL", "postgres://u@h/db"),
            ("CTP_PUBLIC_ADDR", "0.0.0.0:443"),
            ("CTP_KEYS_DIR", "/etc/ctp/keys"),
            ("CTP_VISA_REPLAY_WINDOW", "90s"),
        ]))
        .unwrap();
        assert_eq!(c.database.url.expose_secret(), "postgres://u@h/db");
        assert_eq!(c.listen.public.port(), 443);
        assert_eq!(c.keys_dir, PathBuf::from("/etc/ctp/keys"));
        assert_eq!(c.visa.replay_window, Duration::from_secs(90));
        c.validate().unwrap();
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let mut c = Config::default();
        let err = c.apply_env(env(&[("CTP_ADMIN_ADDR", "not-an-address")])).unwrap_err();
        assert!(err.to_string().contains("CTP_ADMIN_ADDR"), "{err}");
    }

    #[test]
    fn file_layer_rejects_unknown_keys() {
        let err = toml::from_str::<Config>("[visa]\nreplay_windw = \"5m\"\n").unwrap_err();
        assert!(err.to_string().contains("replay_windw"), "{err}");
    }

    #[test]
    fn file_layer_keeps_defaults_for_missing_keys() {
        let c: Config = toml::from_str("[visa]\nreplay_window = \"2m\"\n").unwrap();
        assert_eq!(c.visa.replay_window, Duration::from_secs(120));
        assert_eq!(c.visa.jws_algorithms, vec!["PS256", "HS256"]);
    }

    #[test]
    fn validation_refuses_unknown_algorithm_and_shared_ports() {
        let mut c = Config::default();
        c.visa.jws_algorithms = vec!["none".into()];
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.listen.internal = c.listen.public;
        assert!(c.validate().is_err());
    }

    #[test]
    fn database_url_is_not_printed_by_debug() {
        let mut c = Config::default();
        c.database.url = SecretString::from("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
