//! Layered configuration: each section's documented defaults, then an optional TOML file,
//! then `CTP_*` environment variables. Validated once, at start, so that a running service
//! never discovers a bad setting halfway through a request; every problem found is
//! reported together.
//!
//! Each section is defined next to the code it configures (`crate::http::config`,
//! `crate::saas::config`, …) and re-exported here under its old name. This module only
//! assembles them: [`Config`], the layers (`schema` learns the keys, `env` reads the
//! variables, `layers` puts file and variables together) and the checks that span
//! sections. Every key is listed in `docs/configuration.md`, which a test keeps in step.

mod env;
mod layers;
mod schema;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::auth::config::AuthConfig;
pub use crate::enrollment::config::EnrollmentConfig;
pub use crate::http::config::{HttpConfig, ListenConfig, TlsConfig};
pub use crate::notify::config::{LogPayloads, LogTarget, OutboxConfig, PublisherKind};
pub use crate::pan::config::{KeyVersion, PanConfig};
pub use crate::saas::config::{SaasChoice, SaasConfig};
pub use crate::setting::{Problem, Problems};
pub use crate::store::config::{DatabaseConfig, DatabaseKind, DatabaseUrl};
pub use crate::store::retention::RetentionConfig;
pub use crate::telemetry::config::{LogConfig, LogFormat};
pub use crate::tenants::config::{BinPrefix, TenantConfig, TenantsConfig};
pub use crate::visa::config::{JwsAlgorithm, SUPPORTED_JWS_ALGORITHMS, VisaConfig};
pub use crate::widget::config::WidgetConfig;

/// The whole configuration of one process. Serializes with its secrets as `[redacted]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub listen: ListenConfig,
    /// TLS on the public listener (the one Visa calls). Absent: plain HTTP, for loopback
    /// and for deployments that terminate TLS in front of us.
    pub tls: Option<TlsConfig>,
    /// Root of the key layout described in `keys/README.md`. Default: `keys`.
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
    /// The issuers served and their BIN ranges. None: one issuer.
    pub tenants: TenantsConfig,
    /// What the store forgets, and when.
    pub retention: RetentionConfig,
    /// The secure card-details page and its one-time links.
    pub widget: WidgetConfig,
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
            tenants: TenantsConfig::default(),
            retention: RetentionConfig::default(),
            widget: WidgetConfig::default(),
        }
    }
}

/// Why the configuration was refused. Messages name the file key or the variable, and
/// never show a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(Problems),
}

/// A loaded configuration, and what the loader noticed without refusing it (variables
/// that look like settings but are none), to be logged once logging is set up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Defaults, then `file` if given, then the process environment; validated. Warnings
    /// go to the log (see [`Config::load_with_warnings`] to print them yourself).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Loaded { config, warnings } = Self::load_with_warnings(file)?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Ok(config)
    }

    /// Like [`Config::load`], handing back the warnings.
    pub fn load_with_warnings(file: Option<&Path>) -> Result<Loaded, ConfigError> {
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?),
            None => None,
        };
        Self::from_layers(file.zip(text.as_deref()), std::env::vars_os())
    }

    /// The layers from given inputs: `file` as its path (for messages) and TOML text, and
    /// `env` as variables (any; only `CTP_*` ones are read). Validated.
    pub fn from_layers<K: Into<OsString>, V: Into<OsString>>(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Loaded, ConfigError> {
        let file = file.map(|(path, text)| layers::FileLayer::parse(path, text)).transpose()?;
        let env = env::read(env, &schema::leaves());
        // Variables that did not read are left out of the assembled configuration, so that
        // what remains is still checked: one report lists every problem.
        let (config, unread) = layers::assemble(file.as_ref(), &env.assignments)?;
        let mut problems = env.problems;
        problems.merge(unread.into_result());
        if let Err(ConfigError::Invalid(invalid)) = config.validate() {
            problems.merge(Err(invalid));
        }
        problems.into_result().map_err(ConfigError::Invalid)?;
        Ok(Loaded { config, warnings: env.warnings })
    }

    /// Every section's own checks, then those that span sections; all problems at once.
    /// What only `serve` needs (a Click to Pay SaaS, or the simulator on purpose) is
    /// [`Config::saas_choice`], so that `migrate` or `kits import` run without one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        problems.merge(self.database.validate());
        problems.merge(self.listen.validate());
        if let Some(tls) = &self.tls {
            problems.merge(tls.validate());
        }
        problems.merge(self.visa.validate());
        problems.merge(self.pan.validate());
        problems.merge(self.http.validate());
        problems.merge(self.log.validate());
        problems.merge(self.outbox.validate());
        problems.merge(self.saas.validate());
        problems.merge(self.auth.validate());
        problems.merge(self.enrollment.validate());
        problems.merge(self.tenants.validate());
        problems.merge(self.retention.validate());
        problems.merge(self.widget.validate());
        problems.require(
            !self.widget.enabled || self.widget.public_url.is_some() || self.listen.widget.ip().is_loopback(),
            "widget.public_url",
            "must be set when listen.widget is not a loopback address: links must name the address cardholders reach",
        );
        problems.require(
            self.retention.callback_ids > self.saas.webhook_tolerance,
            "retention.callback_ids",
            "must be longer than saas.webhook_tolerance (a redelivery inside the tolerance must be found)",
        );
        problems.into_result().map_err(ConfigError::Invalid)
    }

    /// SQLite, and every listener on loopback: one process that nothing outside this
    /// machine can reach, the shape a fresh checkout runs in.
    pub fn is_embedded_shape(&self) -> bool {
        self.database.url.is_sqlite() && self.listen.all_loopback()
    }

    /// The Click to Pay SaaS `serve` talks to: `saas.base_url`, or the built-in simulator
    /// when asked for or when the shape is the embedded one (see [`SaasConfig::choice`]).
    /// An error refuses `serve` at start.
    pub fn saas_choice(&self) -> Result<SaasChoice<'_>, Problem> {
        self.saas.choice(self.is_embedded_shape())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use secrecy::{ExposeSecret, SecretString};

    use super::*;

    fn from_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        from_file_and_env("", pairs)
    }

    fn from_file_and_env(toml: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = (!toml.is_empty()).then_some((Path::new("test.toml"), toml));
        Config::from_layers(file, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map(|l| l.config)
    }

    fn refused(toml: &str, pairs: &[(&str, &str)]) -> String {
        from_file_and_env(toml, pairs).unwrap_err().to_string()
    }

    const POSTGRES: (&str, &str) = ("CTP_DATABASE_URL", "postgres://ctp:hunter2@db.internal/ctp");
    const REMOTE_SAAS: (&str, &str) = ("CTP_SAAS_URL", "https://saas.example.com/ctp/v1");

    #[test]
    fn the_defaults_are_the_embedded_shape_and_run_the_simulator() {
        let c = from_env(&[]).unwrap();
        assert!(c.is_embedded_shape());
        assert_eq!(c.saas_choice(), Ok(SaasChoice::Simulator { explicit: false }));
        assert!(c.tenants.is_empty());
        assert_eq!(c.saas.webhook_secrets_dir(&c.keys_dir), PathBuf::from("keys/saas"));
        assert_eq!(c.outbox.publisher, PublisherKind::Log);
    }

    /// Every variable name in use before the generic rule, and the key it sets.
    #[test]
    fn every_historical_variable_still_works() {
        let pairs = [
            ("CTP_DATABASE_URL", "sqlite://elsewhere.db"),
            ("CTP_DATABASE_MAX_CONNECTIONS", "3"),
            ("CTP_PUBLIC_ADDR", "127.0.0.1:1443"),
            ("CTP_INTERNAL_ADDR", "127.0.0.1:1444"),
            ("CTP_ADMIN_ADDR", "127.0.0.1:1445"),
            ("CTP_TLS_CERT", "/tls/cert.pem"),
            ("CTP_TLS_KEY", "/tls/key.pem"),
            ("CTP_TLS_CLIENT_CA", "/tls/ca.pem"),
            ("CTP_KEYS_DIR", "/etc/ctp/keys"),
            ("CTP_LOG", "debug"),
            ("CTP_LOG_FORMAT", "json"),
            ("CTP_VISA_REPLAY_WINDOW", "90s"),
            ("CTP_VISA_JWS_ALGORITHMS", "PS256,RS256"),
            ("CTP_AUTH_HS256_SECRET_FILE", "/s/hs.secret"),
            ("CTP_AUTH_JWKS_FILE", "/s/jwks.json"),
            ("CTP_RECONCILE_AFTER", "45s"),
            ("CTP_SAAS_URL", "https://saas.example.com/ctp/v1"),
            ("CTP_SAAS_API_KEY", "k-1"),
            ("CTP_SAAS_CALLBACK_URL", "http://127.0.0.1:1443/saas/callback"),
            ("CTP_SAAS_CALLBACK_DELAY", "2s"),
            ("CTP_AMQP_URL", "amqp://u:p@broker:5672/%2f"),
            ("CTP_OUTBOX_ENABLED", "false"),
            ("CTP_OUTBOX_PUBLISHER", "rabbitmq"),
            ("CTP_OUTBOX_LOG_TARGET", "tracing"),
            ("CTP_OUTBOX_LOG_PAYLOADS", "full"),
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
            ("CTP_CONFIG", "/not/read/here.toml"),
        ];
        let Loaded { config: c, warnings } = Config::from_layers(None, pairs.map(|(k, v)| (k, v))).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.database.url.expose_secret(), "sqlite://elsewhere.db");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!((c.listen.public.port(), c.listen.internal.port(), c.listen.admin.port()), (1443, 1444, 1445));
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(
            (tls.cert.to_str(), tls.key.to_str(), tls.client_ca.as_deref()),
            (Some("/tls/cert.pem"), Some("/tls/key.pem"), Some(Path::new("/tls/ca.pem")))
        );
        assert_eq!(c.keys_dir, PathBuf::from("/etc/ctp/keys"));
        assert_eq!((c.log.filter.as_str(), c.log.format), ("debug", LogFormat::Json));
        assert_eq!(c.visa.replay_window, Duration::from_secs(90));
        assert_eq!(c.visa.jws_algorithms, [JwsAlgorithm::Ps256, JwsAlgorithm::Rs256]);
        assert_eq!(c.auth.hs256_secret_file.as_deref(), Some(Path::new("/s/hs.secret")));
        assert_eq!(c.auth.jwks_file.as_deref(), Some(Path::new("/s/jwks.json")));
        assert_eq!(c.enrollment.reconcile_after, Duration::from_secs(45));
        assert_eq!(c.saas_choice(), Ok(SaasChoice::Remote { base_url: "https://saas.example.com/ctp/v1" }));
        assert_eq!(c.saas.api_key.as_ref().map(|k| k.expose_secret()), Some("k-1"));
        assert_eq!(c.saas.callback_url.as_deref(), Some("http://127.0.0.1:1443/saas/callback"));
        assert_eq!(c.saas.callback_delay, Duration::from_secs(2));
        let o = &c.outbox;
        assert_eq!(o.amqp_url.expose_secret(), "amqp://u:p@broker:5672/%2f");
        assert!(!o.enabled);
        assert_eq!((o.publisher, o.log_target, o.log_payloads), (PublisherKind::Rabbitmq, LogTarget::Tracing, LogPayloads::Full));
        assert_eq!((o.queue.as_str(), o.exchange.as_deref(), o.routing_key.as_deref()), ("issuer.events", Some("issuer"), Some("ctp")));
        assert_eq!((o.batch_size, o.max_attempts), (25, 5));
        assert_eq!(o.poll_interval, Duration::from_millis(250));
        assert_eq!((o.backoff_base, o.backoff_max), (Duration::from_secs(2), Duration::from_secs(60)));
        assert_eq!((o.publish_timeout, o.lease), (Duration::from_secs(5), Duration::from_secs(30)));
    }

    #[test]
    fn deep_keys_have_derived_names() {
        let c = from_env(&[
            ("CTP_HTTP_HEADER_READ_TIMEOUT", "3s"),
            ("CTP_HTTP_MAX_CONNECTIONS", "64"),
            ("CTP_SAAS_MAX_RETRIES", "7"),
            ("CTP_SAAS_CONNECT_TIMEOUT", "1s"),
            ("CTP_PAN_FINGERPRINT_VERSION", "v2"),
            ("CTP_AUTH_ISSUER", "https://auth.bank.example"),
            ("CTP_AUTH_AUDIENCE", "ctp-issuer"),
            ("CTP_LISTEN_PUBLIC", "127.0.0.1:18080"),
            ("CTP_LOG_FILTER", "warn"),
            ("CTP_ENROLLMENT_RECONCILE_CONCURRENCY", "2"),
            ("CTP_VISA_REQUIRE_IAT", "false"),
        ])
        .unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.http.max_connections, 64);
        assert_eq!(c.saas.max_retries, 7);
        assert_eq!(c.saas.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.pan.fingerprint_version.as_str(), "v2");
        assert_eq!((c.auth.issuer.as_deref(), c.auth.audience.as_deref()), (Some("https://auth.bank.example"), Some("ctp-issuer")));
        assert_eq!(c.listen.public.port(), 18080);
        assert_eq!(c.log.filter, "warn");
        assert_eq!(c.enrollment.reconcile_concurrency, 2);
        assert!(!c.visa.require_iat);
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_defaults() {
        let file = "keys_dir = \"/file/keys\"\n[visa]\nreplay_window = \"2m\"\nmax_body_bytes = 9000\n[outbox]\nexchange = \"issuer\"\n";
        let c = from_file_and_env(file, &[("CTP_VISA_REPLAY_WINDOW", "90s")]).unwrap();
        assert_eq!(c.visa.replay_window, Duration::from_secs(90), "environment over file");
        assert_eq!(c.visa.max_body_bytes, 9000, "file over default");
        assert_eq!(c.visa.jws_algorithms, [JwsAlgorithm::Ps256, JwsAlgorithm::Hs256], "default");
        assert_eq!(c.keys_dir, PathBuf::from("/file/keys"));
        assert_eq!(c.outbox.exchange.as_deref(), Some("issuer"));
        // An empty value unsets what the file set.
        let c = from_file_and_env(file, &[("CTP_OUTBOX_EXCHANGE", "")]).unwrap();
        assert_eq!(c.outbox.exchange, None);
        let c = from_file_and_env(
            "[saas]\nbase_url = \"https://saas.example.com\"\napi_key = \"k\"\n",
            &[("CTP_SAAS_URL", ""), ("CTP_SAAS_API_KEY", "")],
        )
        .unwrap();
        assert!(c.saas.base_url.is_none() && c.saas.api_key.is_none());
        assert_eq!(c.saas_choice(), Ok(SaasChoice::Simulator { explicit: false }));
    }

    #[test]
    fn file_errors_name_the_key_and_the_line() {
        let err = refused("[visa]\nreplay_windw = \"5m\"\n", &[]);
        assert!(err.starts_with("config file test.toml: ") && err.contains("replay_windw") && err.contains("line 2"), "{err}");
        let err = refused("[visa]\nreplay_window = \"forever\"\n", &[]);
        assert!(err.contains("expected a duration such as 90s, 5m or 1h, got \"forever\"") && err.contains("line 2"), "{err}");
        let err = refused("[listen]\npublic = \"garbage\"\n", &[]);
        assert!(err.contains("expected HOST:PORT such as 127.0.0.1:8080") && err.contains("public"), "{err}");
        let err = refused("[outbox\n", &[]);
        assert!(err.starts_with("config file test.toml: "), "{err}");
    }

    #[test]
    fn environment_errors_name_the_variable_and_what_it_expects_all_at_once() {
        let err = refused(
            "",
            &[
                ("CTP_PUBLIC_ADDR", "garbage"),
                ("CTP_VISA_REPLAY_WINDOW", "forever"),
                ("CTP_OUTBOX_PUBLISHER", "kafka"),
                ("CTP_HTTP_MAX_CONNECTIONS", "many"),
                ("CTP_VISA_JWS_ALGORITHMS", "PS256,none"),
            ],
        );
        assert!(err.starts_with("invalid configuration: 5 problems:"), "{err}");
        for line in [
            "CTP_PUBLIC_ADDR: expected HOST:PORT such as 127.0.0.1:8080",
            "got \"garbage\"",
            "CTP_VISA_REPLAY_WINDOW: expected a duration such as 90s, 5m or 1h, got \"forever\"",
            "CTP_OUTBOX_PUBLISHER: unknown variant `kafka`, expected `log` or `rabbitmq`",
            "CTP_HTTP_MAX_CONNECTIONS: expected a whole number such as 8, got \"many\"",
            "CTP_VISA_JWS_ALGORITHMS: expected one of PS256, PS384, PS512, RS256, HS256, got \"none\"",
        ] {
            assert!(err.contains(line), "{line}\n{err}");
        }
    }

    #[test]
    fn a_log_filter_that_does_not_parse_is_refused_not_replaced() {
        let err = refused("", &[("CTP_LOG", "[[bad")]);
        assert!(err.contains("log.filter \"[[bad\" is not a tracing filter: invalid filter directive"), "{err}");
        // Reported along with the variables that did not read.
        let err = refused("", &[("CTP_LOG", "[[bad"), ("CTP_PUBLIC_ADDR", "garbage")]);
        assert!(err.contains("2 problems") && err.contains("CTP_PUBLIC_ADDR: ") && err.contains("log.filter"), "{err}");
    }

    #[test]
    fn tls_halves_name_the_missing_one() {
        let err = refused("", &[("CTP_TLS_CERT", "/tls/cert.pem")]);
        assert!(err.contains("CTP_TLS_CERT: tls.key must be set too (CTP_TLS_KEY"), "{err}");
        let err = refused("", &[("CTP_TLS_CLIENT_CA", "/tls/ca.pem")]);
        assert!(err.contains("CTP_TLS_CLIENT_CA: tls.cert must be set too (CTP_TLS_CERT"), "{err}");
        // The file's half and the environment's make a whole.
        let c =
            from_file_and_env("[tls]\ncert = \"/f/cert.pem\"\nkey = \"/f/key.pem\"\n", &[("CTP_TLS_CLIENT_CA", "/tls/ca.pem")]).unwrap();
        assert_eq!(c.tls.unwrap().client_ca.as_deref(), Some(Path::new("/tls/ca.pem")));
    }

    #[test]
    fn validation_names_each_key_and_reports_all_of_them() {
        let err = refused("[http]\nmax_connections = 0\n[saas]\nmax_retries = 11\n[enrollment]\nreconcile_concurrency = 0\n", &[]);
        assert!(err.starts_with("invalid configuration: 3 problems:"), "{err}");
        for line in [
            "http.max_connections must be at least 1",
            "saas.max_retries must be at most 10",
            "enrollment.reconcile_concurrency must be at least 1",
        ] {
            assert!(err.contains(line), "{line}\n{err}");
        }
        let mut c = Config::default();
        c.listen.internal = c.listen.public;
        assert!(
            c.validate().unwrap_err().to_string().contains("listen.public, listen.internal, listen.admin and listen.widget must differ")
        );
    }

    #[test]
    fn the_card_details_page_is_configured_like_the_rest() {
        let c = from_env(&[
            ("CTP_WIDGET_ADDR", "127.0.0.1:18082"),
            ("CTP_WIDGET_LINK_TTL", "2m"),
            ("CTP_WIDGET_REQUIRE_DOB", "true"),
            ("CTP_WIDGET_FRAME_ANCESTORS", "'self',https://app.bank.example"),
            ("CTP_RETENTION_WIDGET_LINKS", "2h"),
        ])
        .unwrap();
        assert_eq!(c.listen.widget.port(), 18082);
        assert_eq!((c.widget.link_ttl, c.widget.require_dob), (Duration::from_secs(120), true));
        assert_eq!(c.widget.frame_ancestors, ["'self'", "https://app.bank.example"]);
        assert_eq!(c.retention.widget_links, Duration::from_secs(7200));
        // Off loopback, a link must name the address cardholders reach.
        let off_loopback = ("CTP_WIDGET_ADDR", "0.0.0.0:8082");
        let err = refused("", &[off_loopback]);
        assert!(err.contains("widget.public_url must be set when listen.widget is not a loopback address"), "{err}");
        assert!(from_env(&[off_loopback, ("CTP_WIDGET_PUBLIC_URL", "https://cards.bank.example/card-details")]).is_ok());
        assert!(from_env(&[off_loopback, ("CTP_WIDGET_ENABLED", "false")]).is_ok());
        let err = refused("", &[("CTP_WIDGET_LINK_TTL", "2h"), ("CTP_WIDGET_TLS_KEY", "/tls/widget.key")]);
        assert!(
            err.contains("widget.link_ttl must be between 1s and 3600s") && err.contains("widget.tls_cert and widget.tls_key"),
            "{err}"
        );
    }

    #[test]
    fn the_simulator_is_explicit_outside_the_embedded_shape() {
        // PostgreSQL, or a listener off loopback, without a URL: `serve` is refused (other
        // commands need no SaaS).
        let c = from_env(&[POSTGRES]).unwrap();
        let err = c.saas_choice().unwrap_err().to_string();
        assert!(err.contains("saas.base_url is not set") && err.contains("saas.simulator = true (CTP_SAAS_SIMULATOR=true)"), "{err}");
        let c = from_env(&[("CTP_PUBLIC_ADDR", "0.0.0.0:8080")]).unwrap();
        assert!(!c.is_embedded_shape() && c.saas_choice().is_err());

        let c = from_env(&[POSTGRES, ("CTP_SAAS_SIMULATOR", "true")]).unwrap();
        assert_eq!(c.saas_choice(), Ok(SaasChoice::Simulator { explicit: true }));
        let c = from_env(&[POSTGRES, REMOTE_SAAS]).unwrap();
        assert!(!c.saas_choice().unwrap().is_simulator());

        let err = refused("[saas]\nsimulator = true\n", &[REMOTE_SAAS]);
        assert!(err.contains("saas.simulator is true and saas.base_url is set: choose one"), "{err}");
    }

    #[test]
    fn tenants_come_from_the_file_and_their_bins_from_ctp_tenants() {
        let file = "[tenants.bank-a]\nbins = [\"411111\"]\ndisplay_name = \"Bank A\"\nd1_issuer_id = \"BANKA00001\"\n";
        let c = from_file_and_env(file, &[("CTP_TENANTS", "bank-a=401288,422222;bank-b=5222")]).unwrap();
        let a = c.tenants.get("bank-a").unwrap();
        assert_eq!(a.bins.iter().map(BinPrefix::as_str).collect::<Vec<_>>(), ["401288", "422222"]);
        assert_eq!((a.display_name.as_deref(), a.d1_issuer_id.as_deref()), (Some("Bank A"), Some("BANKA00001")));
        assert_eq!(c.tenants.get("bank-b").unwrap().bins[0].as_str(), "5222");

        let err = refused(file, &[("CTP_TENANTS", "bank-b=4111")]);
        assert!(
            err.contains("tenants.bank-a.bins BIN 411111 overlaps tenants.bank-b.bins")
                || err.contains("tenants.bank-b.bins BIN 4111 overlaps tenants.bank-a.bins BIN 411111"),
            "{err}"
        );
        for garbage in ["bank-a", "bank a=4111", "bank-a=41x1", "bank-a=4111;bank-a=5"] {
            let err = refused("", &[("CTP_TENANTS", garbage)]);
            assert!(err.contains("CTP_TENANTS: "), "{garbage}: {err}");
        }
        let err = refused(
            "[tenants.x]\nbins = [\"4\"]\n[tenants.y]\nbins = [\"5\"]\nd1_issuer_id = \"ABCDEFGHIJ\"\n[tenants.x2]\nbins = [\"6\"]\nd1_issuer_id = \"ABCDEFGHIJ\"\n",
            &[],
        );
        assert!(err.contains("tenants.y.d1_issuer_id \"ABCDEFGHIJ\" is also tenants.x2's"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_or_errors() {
        let c =
            from_env(&[POSTGRES, REMOTE_SAAS, ("CTP_SAAS_API_KEY", "k-hunter2"), ("CTP_AMQP_URL", "amqp://u:hunter2@broker/%2f")]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));

        for pairs in [
            vec![("CTP_DATABASE_URL", "mysql://u:hunter2@db/x")],
            vec![POSTGRES, ("CTP_DATABASE_URL_", "x"), ("CTP_HTTP_MAX_CONNECTIONS", "0")],
            vec![("CTP_AMQP_URL", "amqp://u:hunter2@a/"), ("CTP_OUTBOX_AMQP_URL", "amqp://u:hunter2x@b/")],
            vec![("CTP_OUTBOX_PUBLISHER", "rabbitmq"), ("CTP_AMQP_URL", "http://u:hunter2@broker")],
            vec![("CTP_SAAS_URL", "https://u:hunter2@saas.example.com")],
        ] {
            let err = from_env(&pairs).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
        // A file's error names the line, and quotes none: the line may hold the password.
        for file in [
            "[database]\nurl = \"mysql://u:hunter2@db/x\"\n",
            "[database]\nurl = \"postgres://u:hunter2@db/x\" x\n",
            "[saas]\napi_key = \"hunter2\"\napi_key = \"hunter2\"\n",
            "[outbox]\namqp_url = 5\namqp_url = \"amqp://u:hunter2@b/\"\n",
        ] {
            let err = refused(file, &[]);
            assert!(err.contains("line 2") || err.contains("line 3"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = refused("[database]\nurl = \"mysql://u:hunter2@db/x\"\n", &[]);
        assert!(err.contains("expected sqlite://PATH or postgres://"), "{err}");
    }

    #[test]
    fn an_unknown_variable_that_looks_like_a_setting_is_a_warning_not_a_refusal() {
        let loaded = Config::from_layers(None, [("CTP_HTTP_IDLE_TIMOUT", "5s"), ("CTP_TEST_AMQP_URL", "amqp://x")]).unwrap();
        assert_eq!(loaded.warnings, ["CTP_HTTP_IDLE_TIMOUT is not a setting and is ignored; did you mean CTP_HTTP_IDLE_TIMEOUT?"]);
    }

    #[test]
    fn non_utf8_values_are_refused_by_name() {
        use std::os::unix::ffi::OsStringExt;
        let err = Config::from_layers(None, [(OsString::from("CTP_LOG"), OsString::from_vec(vec![0xff, 0xfe]))]).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: CTP_LOG: is not valid UTF-8");
    }

    #[test]
    fn hand_built_configurations_validate_too() {
        let mut c = Config::default();
        c.database.url = "postgres://u:hunter2@h/db".parse().unwrap();
        c.outbox.amqp_url = SecretString::from("amqp://u:hunter2@broker/%2f");
        c.validate().unwrap();
        assert!(c.saas_choice().unwrap_err().to_string().contains("saas.base_url is not set"));
        c.saas.simulator = Some(true);
        c.saas.base_url = Some("https://saas.example.com".into());
        assert!(c.validate().unwrap_err().to_string().contains("choose one"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// The README's example file loads (with the documented variables unset).
    #[test]
    fn the_readme_example_file_is_valid() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
        let example = readme.split("Example file:").nth(1).expect("README has an example file");
        let toml = example.split("```toml\n").nth(1).and_then(|t| t.split("```").next()).expect("a toml block");
        Config::from_layers(Some((Path::new("README.md"), toml)), [("PATH", "/bin")]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every key has a row in `docs/configuration.md`, with its variable and default, and
    /// every row names a real key.
    #[test]
    fn docs_configuration_md_lists_every_key() {
        let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md")).unwrap();
        let mut rows: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        let mut in_key_table = false;
        for line in doc.lines() {
            in_key_table = (in_key_table && line.starts_with('|')) || line == "| key | environment | default | meaning |";
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if !in_key_table || cells.len() != 6 || !cells[1].starts_with('`') {
                continue;
            }
            let key = cells[1].trim_matches('`').to_owned();
            assert!(
                rows.insert(key.clone(), cells[2..cells.len() - 1].iter().map(|c| c.to_string()).collect()).is_none(),
                "{key} has two rows"
            );
        }
        let mut keys: Vec<String> = Vec::new();
        for leaf in schema::leaves() {
            let row = rows.get(&leaf.path).unwrap_or_else(|| panic!("docs/configuration.md has no row for {}", leaf.path));
            assert!(
                row[0].contains(&format!("`{}`", leaf.env_name())),
                "{}: the variable column must name `{}`",
                leaf.path,
                leaf.env_name()
            );
            let default = match &leaf.default {
                serde_json::Value::String(s) if s == crate::setting::REDACTED => None,
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(items) => {
                    Some(items.iter().map(|i| i.as_str().map_or(i.to_string(), String::from)).collect::<Vec<_>>().join(", "))
                }
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            };
            if let Some(default) = default {
                assert!(
                    row[1].contains(&format!("`{default}`")),
                    "{}: the default column must show `{default}`, it has {:?}",
                    leaf.path,
                    row[1]
                );
            }
            keys.push(leaf.path);
        }
        for (alias, path) in schema::ALIASES {
            assert!(
                rows.get(*path).is_some_and(|row| row[0].contains(&format!("`{alias}`"))),
                "{path}: the row must name its alias {alias}"
            );
        }
        for field in ["bins", "display_name", "accent_color", "d1_issuer_id"] {
            keys.push(format!("tenants.<id>.{field}"));
        }
        for key in rows.keys() {
            assert!(keys.contains(key), "docs/configuration.md has a row for {key}, which is not a key");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever the variables hold, the loader answers (a configuration or an error);
        /// it never panics.
        #[test]
        fn arbitrary_variables_never_panic_the_loader(
            vars in proptest::collection::vec((0usize..usize::MAX, "\\PC{0,24}|[0-9a-z:/.,;=_ -]{0,24}"), 0..8),
            unknown in "CTP_[A-Z_]{0,16}",
        ) {
            let names: Vec<String> = schema::leaves().iter().map(schema::Leaf::env_name)
                .chain(schema::ALIASES.iter().map(|(a, _)| a.to_string()))
                .chain(["CTP_TENANTS".to_owned(), unknown])
                .collect();
            let env: Vec<(String, String)> = vars.into_iter().map(|(i, v)| (names[i % names.len()].clone(), v)).collect();
            let _ = Config::from_layers(None, env.clone());
            let _ = Config::from_layers(Some((Path::new("f.toml"), "[tenants.a]\nbins = [\"4\"]\n[tls]\ncert = \"c\"\nkey = \"k\"\n")), env);
        }
    }
}
