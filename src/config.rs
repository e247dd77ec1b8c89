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
    /// The outbox relay and the broker it publishes to.
    pub outbox: OutboxConfig,
    /// The Click to Pay SaaS layer: where it is, how we call it, how its callbacks are signed.
    pub saas: SaasConfig,
    /// Who may call the internal API.
    pub auth: AuthConfig,
    /// The enrollment loop's background work: reconciling requests left IN_PROGRESS.
    pub enrollment: EnrollmentConfig,
    /// The issuers served, each with the BIN ranges it owns. None: a single issuer.
    pub tenants: std::collections::BTreeMap<String, TenantSection>,
}

/// One issuer and the BIN prefixes (1 to 11 digits) of the cards it issues.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSection {
    pub bins: Vec<String>,
    pub d1_issuer_id: Option<String>,
    pub display_name: Option<String>,
    pub accent_color: Option<String>,
}

/// Bearer JWTs on the internal API. Tokens name the tenants they may act for in a
/// `tenants` (array) or `tenant` (string) claim; `"*"` is every tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret file. Default: `KEYS_DIR/jwt/dev-hs256.secret` when it exists.
    pub hs256_secret_file: Option<PathBuf>,
    /// Directory of RS256/ES256 public keys (`<kid>.pem`, SPKI or certificate).
    pub public_keys_dir: Option<PathBuf>,
    /// A JWKS file of RS256/ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// A request IN_PROGRESS this long without a callback is polled through `/status`.
    #[serde(with = "humantime_serde")]
    pub reconcile_after: Duration,
    /// How often the reconciler looks for such requests.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Requests polled at once, per replica.
    pub reconcile_concurrency: usize,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self { reconcile_after: Duration::from_secs(30), reconcile_interval: Duration::from_secs(5), reconcile_concurrency: 4 }
    }
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
    /// A connection that has not sent a whole request head this long after it was
    /// accepted is closed, whether it sent a byte or not (silent and slowloris clients).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive or HTTP/2 connection with no request in flight this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections per listener; past it a new one is closed at once (and counted).
    pub max_connections: usize,
    /// A request still running after this is abandoned and answered 500 on the public
    /// listener (the status Visa retries), 503 on the others.
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

/// Which publisher the outbox relay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherKind {
    /// One JSON line per event: the embedded default, no broker needed.
    Log,
    /// RabbitMQ (AMQP 0-9-1) with publisher confirms.
    Rabbitmq,
}

/// Where the log publisher writes its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Standard output, apart from the service's own logs (which go to stderr).
    Stdout,
    /// The service's log, at INFO, target `ctp_issuer::outbox`. Events carry consumers'
    /// names and contact details: only where the log is guarded like the queue would be.
    Tracing,
}

/// What the log publisher shows of an event's personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogPayloads {
    /// Names, email addresses, phone numbers and addresses masked: what a log pipeline may hold.
    Masked,
    /// Everything, as the queue's consumers get it: for development only.
    Full,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Whether this process runs the relay. Every replica may; with it off, events wait
    /// in the outbox for a process that runs it.
    pub enabled: bool,
    pub publisher: PublisherKind,
    /// With the `log` publisher.
    pub log_target: LogTarget,
    /// With the `log` publisher: personal data masked (the default) or shown in full.
    pub log_payloads: LogPayloads,
    /// `amqp://user:password@host:5672/vhost` or `amqps://…`. A secret: it holds a password.
    pub amqp_url: SecretString,
    /// The durable queue events go to, declared if missing, when no exchange is set; the
    /// default routing key when one is.
    pub queue: String,
    /// Publish to this exchange instead of straight to `queue`. It must exist, and its
    /// bindings are the operator's: an event no binding routes is a failed publish.
    pub exchange: Option<String>,
    /// Routing key with `exchange`; `queue` when absent.
    pub routing_key: Option<String>,
    /// Events claimed and published per round.
    pub batch_size: u32,
    /// Pause between rounds that found less than a full batch.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Tries before an event is dead (see `ctp-issuer outbox list --dead` and `redrive`).
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with every try, jittered, up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Longest wait on the broker: to connect, and for one batch's confirmations.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// How long a claimed event is left to its relay before another may take it (after a
    /// crash, the delay before it is published again). At least twice `publish_timeout`,
    /// so that a live relay never loses a claim mid-publish.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

/// The Click to Pay SaaS layer (see `docs/saas.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaasConfig {
    /// Base URL of the SaaS, e.g. `https://saas.example.com/ctp/v1`. `https://`, or
    /// `http://` for a loopback host only. Absent: `serve` runs the embedded simulator in
    /// process, so that a fresh checkout has a working loop with no outside service.
    pub base_url: Option<String>,
    /// Sent as `Authorization: Bearer <api_key>` when set. A secret.
    pub api_key: Option<SecretString>,
    /// PEM bundle of the only CAs trusted for the SaaS (one behind a private CA). Absent:
    /// the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for a TCP (and TLS) connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for one whole request, answer included. A timed-out submit is retried
    /// with the same `requestId`, which the SaaS deduplicates.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries after the first attempt, on timeouts, connection errors, 5xx and 429.
    pub max_retries: u32,
    /// Delay before the first retry; it doubles with every retry, jittered, up to
    /// `backoff_max`. A longer `Retry-After` than `backoff_max` ends the retries.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Directory of the callback signing secrets, `webhook-*.secret` (`whsec_…`).
    /// Absent: `KEYS_DIR/saas`.
    pub webhook_secrets_dir: Option<PathBuf>,
    /// How far a callback's `webhook-timestamp` may be from our clock, either way.
    #[serde(with = "humantime_serde")]
    pub webhook_tolerance: Duration,
    /// Where the SaaS posts its callbacks (given to the embedded simulator). Absent: our
    /// public listener's address and callback path.
    pub callback_url: Option<String>,
    /// Embedded simulator: time from accepting a request to completing it and calling back.
    #[serde(with = "humantime_serde")]
    pub callback_delay: Duration,
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
            outbox: OutboxConfig::default(),
            saas: SaasConfig::default(),
            auth: AuthConfig::default(),
            enrollment: EnrollmentConfig::default(),
            tenants: Default::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: SecretString::from("sqlite://data/ctp-issuer.db"), max_connections: 8, acquire_timeout: Duration::from_secs(5) }
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
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            publisher: PublisherKind::Log,
            log_target: LogTarget::Stdout,
            log_payloads: LogPayloads::Masked,
            amqp_url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            queue: "ctp.notification.all".into(),
            exchange: None,
            routing_key: None,
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            max_attempts: 12,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            publish_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
        }
    }
}

impl Default for SaasConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            webhook_secrets_dir: None,
            webhook_tolerance: crate::webhook::DEFAULT_TOLERANCE,
            callback_url: None,
            callback_delay: Duration::from_millis(500),
        }
    }
}

impl SaasConfig {
    /// Where the callback signing secrets are read from.
    pub fn webhook_secrets_dir(&self, keys_dir: &Path) -> PathBuf {
        self.webhook_secrets_dir.clone().unwrap_or_else(|| keys_dir.join("saas"))
    }

    /// URLs, ranges and the order of the timeouts.
    fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.base_url {
            crate::saas::client::check_base_url(url).map_err(|e| format!("saas.base_url: {e}"))?;
        }
        if let Some(url) = &self.callback_url {
            crate::saas::client::check_callback_url(url).map_err(|e| format!("saas.callback_url: {e}"))?;
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err("saas.connect_timeout and saas.request_timeout must be positive".into());
        }
        if self.connect_timeout > self.request_timeout {
            return Err("saas.connect_timeout must not exceed saas.request_timeout".into());
        }
        if self.max_retries > 10 {
            return Err("saas.max_retries must be at most 10".into());
        }
        if self.backoff_base.is_zero() || self.backoff_base > self.backoff_max {
            return Err("saas.backoff_base must be positive and at most saas.backoff_max".into());
        }
        if self.webhook_tolerance < Duration::from_secs(1) || self.webhook_tolerance > Duration::from_secs(3600) {
            return Err("saas.webhook_tolerance must be between 1s and 1h".into());
        }
        if self.callback_delay > Duration::from_secs(600) {
            return Err("saas.callback_delay must be at most 10m".into());
        }
        Ok(())
    }
}

impl OutboxConfig {
    /// Ranges, lengths (AMQP names are at most 255 bytes) and the lease rule.
    fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.batch_size) {
            return Err("outbox.batch_size must be between 1 and 1000".into());
        }
        if self.max_attempts == 0 {
            return Err("outbox.max_attempts must be at least 1".into());
        }
        for (name, d) in [
            ("outbox.poll_interval", self.poll_interval),
            ("outbox.backoff_base", self.backoff_base),
            ("outbox.publish_timeout", self.publish_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.backoff_max < self.backoff_base {
            return Err("outbox.backoff_max must not be less than outbox.backoff_base".into());
        }
        if self.lease < self.publish_timeout * 2 {
            return Err("outbox.lease must be at least twice outbox.publish_timeout".into());
        }
        let names = [
            ("outbox.queue", Some(&self.queue)),
            ("outbox.exchange", self.exchange.as_ref()),
            ("outbox.routing_key", self.routing_key.as_ref()),
        ];
        for (name, value) in names {
            if let Some(v) = value
                && (v.is_empty() || v.len() > 255)
            {
                return Err(format!("{name} must be 1 to 255 bytes long"));
            }
        }
        if self.publisher == PublisherKind::Rabbitmq {
            let url = self.amqp_url.expose_secret();
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err("outbox.amqp_url must start with amqp:// or amqps://".into());
            }
        }
        Ok(())
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// Applies the `CTP_*` variables. `lookup` is the environment (a parameter so that tests
    /// need not mutate the process's own).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env { name, message: e.to_string() })
        }
        fn duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
            humantime_serde::re::humantime::parse_duration(value).map_err(|e| ConfigError::Env { name, message: e.to_string() })
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
                (Some(cert), Some(key)) => self.tls = Some(TlsConfig { cert, key, client_ca: current.and_then(|t| t.client_ca) }),
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
                    return Err(ConfigError::Env { name: "CTP_TLS_CLIENT_CA", message: "needs CTP_TLS_CERT and CTP_TLS_KEY".into() });
                }
            }
        }
        if let Some(v) = lookup("CTP_VISA_REPLAY_WINDOW") {
            self.visa.replay_window = duration("CTP_VISA_REPLAY_WINDOW", &v)?;
        }
        if let Some(v) = lookup("CTP_VISA_JWS_ALGORITHMS") {
            self.visa.jws_algorithms = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        if let Some(v) = lookup("CTP_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env { name: "CTP_LOG_FORMAT", message: format!("expected `text` or `json`, got `{v}`") });
                }
            };
        }
        if let Some(v) = lookup("CTP_LOG") {
            self.log.filter = v;
        }
        if let Some(v) = lookup("CTP_AUTH_HS256_SECRET_FILE") {
            self.auth.hs256_secret_file = Some(PathBuf::from(v));
        }
        if let Some(v) = lookup("CTP_AUTH_JWKS_FILE") {
            self.auth.jwks_file = Some(PathBuf::from(v));
        }
        if let Some(v) = lookup("CTP_RECONCILE_AFTER") {
            self.enrollment.reconcile_after = duration("CTP_RECONCILE_AFTER", &v)?;
        }
        let outbox = &mut self.outbox;
        if let Some(v) = lookup("CTP_OUTBOX_ENABLED") {
            outbox.enabled = parse("CTP_OUTBOX_ENABLED", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_PUBLISHER") {
            outbox.publisher = match v.as_str() {
                "log" => PublisherKind::Log,
                "rabbitmq" => PublisherKind::Rabbitmq,
                _ => {
                    return Err(ConfigError::Env {
                        name: "CTP_OUTBOX_PUBLISHER",
                        message: format!("expected `log` or `rabbitmq`, got `{v}`"),
                    });
                }
            };
        }
        if let Some(v) = lookup("CTP_OUTBOX_LOG_TARGET") {
            outbox.log_target = match v.as_str() {
                "stdout" => LogTarget::Stdout,
                "tracing" => LogTarget::Tracing,
                _ => {
                    return Err(ConfigError::Env {
                        name: "CTP_OUTBOX_LOG_TARGET",
                        message: format!("expected `stdout` or `tracing`, got `{v}`"),
                    });
                }
            };
        }
        if let Some(v) = lookup("CTP_OUTBOX_LOG_PAYLOADS") {
            outbox.log_payloads = match v.as_str() {
                "masked" => LogPayloads::Masked,
                "full" => LogPayloads::Full,
                _ => {
                    return Err(ConfigError::Env {
                        name: "CTP_OUTBOX_LOG_PAYLOADS",
                        message: format!("expected `masked` or `full`, got `{v}`"),
                    });
                }
            };
        }
        if let Some(v) = lookup("CTP_AMQP_URL") {
            outbox.amqp_url = SecretString::from(v);
        }
        if let Some(v) = lookup("CTP_OUTBOX_QUEUE") {
            outbox.queue = v;
        }
        // Empty means "none", so that a file's exchange can be switched off from the environment.
        if let Some(v) = lookup("CTP_OUTBOX_EXCHANGE") {
            outbox.exchange = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup("CTP_OUTBOX_ROUTING_KEY") {
            outbox.routing_key = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup("CTP_OUTBOX_BATCH_SIZE") {
            outbox.batch_size = parse("CTP_OUTBOX_BATCH_SIZE", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_POLL_INTERVAL") {
            outbox.poll_interval = duration("CTP_OUTBOX_POLL_INTERVAL", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_MAX_ATTEMPTS") {
            outbox.max_attempts = parse("CTP_OUTBOX_MAX_ATTEMPTS", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_BACKOFF_BASE") {
            outbox.backoff_base = duration("CTP_OUTBOX_BACKOFF_BASE", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_BACKOFF_MAX") {
            outbox.backoff_max = duration("CTP_OUTBOX_BACKOFF_MAX", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_PUBLISH_TIMEOUT") {
            outbox.publish_timeout = duration("CTP_OUTBOX_PUBLISH_TIMEOUT", &v)?;
        }
        if let Some(v) = lookup("CTP_OUTBOX_LEASE") {
            outbox.lease = duration("CTP_OUTBOX_LEASE", &v)?;
        }
        // Empty means "none": the embedded simulator, no API key.
        if let Some(v) = lookup("CTP_SAAS_URL") {
            self.saas.base_url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup("CTP_SAAS_API_KEY") {
            self.saas.api_key = Some(v).filter(|v| !v.is_empty()).map(SecretString::from);
        }
        if let Some(v) = lookup("CTP_SAAS_CALLBACK_URL") {
            self.saas.callback_url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup("CTP_SAAS_CALLBACK_DELAY") {
            self.saas.callback_delay = duration("CTP_SAAS_CALLBACK_DELAY", &v)?;
        }
        Ok(())
    }

    /// Checks what serde cannot: cross-field rules and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.enrollment.reconcile_concurrency == 0 || self.enrollment.reconcile_interval.is_zero() {
            return invalid("enrollment.reconcile_concurrency and reconcile_interval must be positive".into());
        }
        let h = &self.http;
        if h.header_read_timeout.is_zero() || h.idle_timeout.is_zero() || h.request_timeout.is_zero() {
            return invalid("http.header_read_timeout, http.idle_timeout and http.request_timeout must be positive".into());
        }
        if h.max_connections == 0 {
            return invalid("http.max_connections must be at least 1".into());
        }
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
                return invalid(format!("visa.jws_algorithms: `{alg}` is not one of {SUPPORTED_JWS_ALGORITHMS:?}"));
            }
        }
        if self.visa.max_body_bytes < 8 * 1024 {
            return invalid("visa.max_body_bytes must be at least 8192 (encryptedData alone may be 7000)".into());
        }
        for (name, v) in
            [("pan.fingerprint_version", &self.pan.fingerprint_version), ("pan.encryption_version", &self.pan.encryption_version)]
        {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                return invalid(format!("{name} must be a short alphanumeric version such as v1"));
            }
        }
        self.outbox.validate().map_err(ConfigError::Invalid)?;
        self.saas.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
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
    fn outbox_defaults_are_the_embedded_log_publisher() {
        let c = Config::default();
        assert!(c.outbox.enabled);
        assert_eq!(c.outbox.publisher, PublisherKind::Log);
        assert_eq!(c.outbox.queue, "ctp.notification.all");
        assert_eq!(c.outbox.exchange, None);
        c.validate().unwrap();
    }

    #[test]
    fn outbox_environment_overrides_defaults() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("CTP_OUTBOX_PUBLISHER", "rabbitmq"),
            ("CTP_AMQP_URL", "amqp://u:p@broker:5672/%2f"),
            ("CTP_OUTBOX_QUEUE", "issuer.events"),
            ("CTP_OUTBOX_EXCHANGE", "issuer"),
            ("CTP_OUTBOX_ROUTING_KEY", "ctp"),
            ("CTP_OUTBOX_BATCH_SIZE", "25"),
            ("CTP_OUTBOX_POLL_INTERVAL", "250ms"),
            ("CTP_OUTBOX_MAX_ATTEMPTS", "5"),
            ("CTP_OUTBOX_BACKOFF_BASE", "2s"),
            ("CTP_OUTBOX_BACKOFF_MAX", "1m"),
            ("CTP_OUTBOX_PUBLISH_TIMEOUT", "5s"),
            ("CTP_OUTBOX_LEASE", "30s"),
            ("CTP_OUTBOX_ENABLED", "false"),
            ("CTP_OUTBOX_LOG_TARGET", "tracing"),
        ]))
        .unwrap();
        let o = &c.outbox;
        assert_eq!(o.publisher, PublisherKind::Rabbitmq);
        assert_eq!(o.amqp_url.expose_secret(), "amqp://u:p@broker:5672/%2f");
        assert_eq!((o.queue.as_str(), o.exchange.as_deref(), o.routing_key.as_deref()), ("issuer.events", Some("issuer"), Some("ctp")));
        assert_eq!((o.batch_size, o.max_attempts), (25, 5));
        assert_eq!(o.poll_interval, Duration::from_millis(250));
        assert_eq!((o.backoff_base, o.backoff_max), (Duration::from_secs(2), Duration::from_secs(60)));
        assert_eq!((o.publish_timeout, o.lease), (Duration::from_secs(5), Duration::from_secs(30)));
        assert!(!o.enabled);
        assert_eq!(o.log_target, LogTarget::Tracing);
        c.validate().unwrap();

        // An empty exchange switches a configured one off.
        c.apply_env(env(&[("CTP_OUTBOX_EXCHANGE", "")])).unwrap();
        assert_eq!(c.outbox.exchange, None);
    }

    #[test]
    fn bad_outbox_environment_names_the_variable() {
        for (name, value) in [
            ("CTP_OUTBOX_PUBLISHER", "kafka"),
            ("CTP_OUTBOX_BATCH_SIZE", "many"),
            ("CTP_OUTBOX_POLL_INTERVAL", "soon"),
            ("CTP_OUTBOX_ENABLED", "yes please"),
            ("CTP_OUTBOX_LOG_TARGET", "syslog"),
        ] {
            let err = Config::default().apply_env(env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn outbox_file_layer() {
        let c: Config = toml::from_str("[outbox]\npublisher = \"rabbitmq\"\nexchange = \"issuer\"\nbackoff_max = \"10m\"\n").unwrap();
        assert_eq!(c.outbox.publisher, PublisherKind::Rabbitmq);
        assert_eq!(c.outbox.exchange.as_deref(), Some("issuer"));
        assert_eq!(c.outbox.backoff_max, Duration::from_secs(600));
        assert_eq!(c.outbox.batch_size, 100);
        let err = toml::from_str::<Config>("[outbox]\nqueue_name = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("queue_name"), "{err}");
    }

    #[test]
    fn outbox_validation() {
        let refused = |change: fn(&mut OutboxConfig), needle: &str| {
            let mut c = Config::default();
            change(&mut c.outbox);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        };
        refused(|o| o.batch_size = 0, "outbox.batch_size");
        refused(|o| o.max_attempts = 0, "outbox.max_attempts");
        refused(|o| o.poll_interval = Duration::ZERO, "outbox.poll_interval");
        refused(|o| o.backoff_max = Duration::from_millis(1), "outbox.backoff_max");
        refused(|o| o.lease = o.publish_timeout, "outbox.lease");
        refused(|o| o.queue = String::new(), "outbox.queue");
        refused(|o| o.exchange = Some("x".repeat(256)), "outbox.exchange");
        refused(
            |o| {
                o.publisher = PublisherKind::Rabbitmq;
                o.amqp_url = SecretString::from("http://broker");
            },
            "outbox.amqp_url",
        );
    }

    #[test]
    fn amqp_url_is_not_printed_by_debug() {
        let mut c = Config::default();
        c.outbox.amqp_url = SecretString::from("amqp://u:hunter2@broker/%2f");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn saas_defaults_run_the_embedded_simulator() {
        let c = Config::default();
        assert!(c.saas.base_url.is_none());
        assert_eq!(c.saas.webhook_secrets_dir(&c.keys_dir), PathBuf::from("keys/saas"));
        c.validate().unwrap();
    }

    #[test]
    fn saas_environment_and_validation() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("CTP_SAAS_URL", "https://saas.example.com/ctp/v1"),
            ("CTP_SAAS_API_KEY", "k-hunter2"),
            ("CTP_SAAS_CALLBACK_URL", "http://127.0.0.1:8080/saas/callback"),
            ("CTP_SAAS_CALLBACK_DELAY", "2s"),
        ]))
        .unwrap();
        assert_eq!(c.saas.base_url.as_deref(), Some("https://saas.example.com/ctp/v1"));
        assert_eq!(c.saas.api_key.as_ref().map(|k| k.expose_secret()), Some("k-hunter2"));
        assert_eq!(c.saas.callback_delay, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("hunter2"));
        c.validate().unwrap();
        c.apply_env(env(&[("CTP_SAAS_URL", ""), ("CTP_SAAS_API_KEY", "")])).unwrap();
        assert!(c.saas.base_url.is_none() && c.saas.api_key.is_none());

        let refused = |change: fn(&mut SaasConfig), needle: &str| {
            let mut c = Config::default();
            change(&mut c.saas);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        };
        refused(|s| s.base_url = Some("http://saas.example.com".into()), "saas.base_url");
        refused(|s| s.base_url = Some("ftp://127.0.0.1".into()), "saas.base_url");
        refused(|s| s.callback_url = Some("not a url".into()), "saas.callback_url");
        refused(|s| s.connect_timeout = Duration::from_secs(60), "saas.connect_timeout");
        refused(|s| s.max_retries = 11, "saas.max_retries");
        refused(|s| s.backoff_base = Duration::from_secs(60), "saas.backoff_base");
        refused(|s| s.webhook_tolerance = Duration::ZERO, "saas.webhook_tolerance");
        let file: Config = toml::from_str("[saas]\nbase_url = \"http://127.0.0.1:8090\"\nmax_retries = 5\n").unwrap();
        assert_eq!(file.saas.max_retries, 5);
        file.validate().unwrap();
    }

    #[test]
    fn database_url_is_not_printed_by_debug() {
        let mut c = Config::default();
        c.database.url = SecretString::from("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
