//! The `[saas]` section: where the Click to Pay SaaS is (or that the built-in simulator
//! stands in for it), how we call it, and how its callbacks are checked. The URL rules
//! live here, below both the configuration and the client that use them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::setting::{Problem, Problems};

/// The Click to Pay SaaS layer (see `docs/saas.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaasConfig {
    /// Base URL of the SaaS, e.g. `https://saas.example.com/ctp/v1`. `https://`, or
    /// `http://` for a loopback host only. Default: none (see `simulator`).
    pub base_url: Option<String>,
    /// Run the built-in Click to Pay SaaS simulator in process instead of calling a real
    /// SaaS. Default: chosen for you only in the embedded shape (SQLite, every listener on
    /// loopback) when no `base_url` is set; any other shape without a `base_url` is refused
    /// unless this is `true`. Setting it together with `base_url` is an error.
    pub simulator: Option<bool>,
    /// Sent as `Authorization: Bearer <api_key>` when set. A secret. Default: none.
    #[serde(serialize_with = "crate::setting::redacted_option")]
    pub api_key: Option<SecretString>,
    /// PEM bundle of the only CAs trusted for the SaaS (one behind a private CA). Default:
    /// none, the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for a TCP (and TLS) connection. Default: 3s.
    #[serde(with = "crate::setting::duration")]
    pub connect_timeout: Duration,
    /// Longest wait for one whole request, answer included. A timed-out submit is retried
    /// with the same `requestId`, which the SaaS deduplicates. Default: 10s.
    #[serde(with = "crate::setting::duration")]
    pub request_timeout: Duration,
    /// Retries after the first attempt, on timeouts, connection errors, 5xx and 429; at
    /// most 10. Default: 3.
    pub max_retries: u32,
    /// Delay before the first retry; it doubles with every retry, jittered, up to
    /// `backoff_max`. A longer `Retry-After` than `backoff_max` ends the retries.
    /// Default: 200ms.
    #[serde(with = "crate::setting::duration")]
    pub backoff_base: Duration,
    /// Longest delay between two retries. Default: 5s.
    #[serde(with = "crate::setting::duration")]
    pub backoff_max: Duration,
    /// Directory of the callback signing secrets, `webhook-*.secret` (`whsec_…`).
    /// Default: `KEYS_DIR/saas`.
    pub webhook_secrets_dir: Option<PathBuf>,
    /// How far a callback's `webhook-timestamp` may be from our clock, either way; 1s to
    /// 1h. Default: 5m.
    #[serde(with = "crate::setting::duration")]
    pub webhook_tolerance: Duration,
    /// Where the SaaS posts its callbacks (given to the simulator). Default: our public
    /// listener's address and callback path.
    pub callback_url: Option<String>,
    /// Simulator: time from accepting a request to completing it and calling back; at most
    /// 10m. Default: 500ms.
    #[serde(with = "crate::setting::duration")]
    pub callback_delay: Duration,
}

impl Default for SaasConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            simulator: None,
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

/// Which Click to Pay SaaS `serve` talks to, once the rule of `saas.simulator` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaasChoice<'a> {
    /// The SaaS at this base URL.
    Remote { base_url: &'a str },
    /// The built-in simulator, in process. `explicit`: `saas.simulator = true` asked for
    /// it, rather than the embedded shape choosing it.
    Simulator { explicit: bool },
}

impl SaasChoice<'_> {
    pub fn is_simulator(&self) -> bool {
        matches!(self, Self::Simulator { .. })
    }
}

impl SaasConfig {
    /// Where the callback signing secrets are read from.
    pub fn webhook_secrets_dir(&self, keys_dir: &Path) -> PathBuf {
        self.webhook_secrets_dir.clone().unwrap_or_else(|| keys_dir.join("saas"))
    }

    /// The SaaS to use. `embedded_shape`: the database is SQLite and every listener is on
    /// loopback, the one shape where a missing `base_url` silently means the simulator
    /// (a fresh checkout works with no outside service; nothing outside can reach it).
    pub fn choice(&self, embedded_shape: bool) -> Result<SaasChoice<'_>, Problem> {
        match (self.base_url.as_deref(), self.simulator) {
            (Some(_), Some(true)) => Err(Problem::new(
                "saas.simulator",
                "is true and saas.base_url is set: choose one (unset CTP_SAAS_URL to use the simulator, or drop saas.simulator)",
            )),
            (Some(base_url), _) => Ok(SaasChoice::Remote { base_url }),
            (None, Some(true)) => Ok(SaasChoice::Simulator { explicit: true }),
            (None, Some(false)) => Err(Problem::new("saas.base_url", "must be set when saas.simulator is false (CTP_SAAS_URL)")),
            (None, None) if embedded_shape => Ok(SaasChoice::Simulator { explicit: false }),
            (None, None) => Err(Problem::new(
                "saas.base_url",
                "is not set, and the built-in SaaS simulator is chosen for you only with SQLite and every listener on loopback: \
                 set saas.base_url (CTP_SAAS_URL) to the Click to Pay SaaS, or saas.simulator = true (CTP_SAAS_SIMULATOR=true) \
                 to run the simulator on purpose",
            )),
        }
    }

    /// URLs, ranges, the order of the timeouts, and the choices between a URL and the
    /// simulator that are wrong whatever the shape. Whether the shape allows the simulator
    /// to be chosen for you is `serve`'s question alone: see [`SaasConfig::choice`].
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        if let Err(problem) = self.choice(true) {
            problems.push(problem);
        }
        if let Some(url) = &self.base_url
            && let Err(e) = check_base_url(url)
        {
            problems.push(Problem::at("saas.base_url", e));
        }
        if let Some(url) = &self.callback_url
            && let Err(e) = check_callback_url(url)
        {
            problems.push(Problem::at("saas.callback_url", e));
        }
        problems.require(!self.connect_timeout.is_zero(), "saas.connect_timeout", "must be positive");
        problems.require(!self.request_timeout.is_zero(), "saas.request_timeout", "must be positive");
        problems.require(self.connect_timeout <= self.request_timeout, "saas.connect_timeout", "must not exceed saas.request_timeout");
        problems.require(self.max_retries <= 10, "saas.max_retries", "must be at most 10");
        problems.require(
            !self.backoff_base.is_zero() && self.backoff_base <= self.backoff_max,
            "saas.backoff_base",
            "must be positive and at most saas.backoff_max",
        );
        problems.require(
            (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.webhook_tolerance),
            "saas.webhook_tolerance",
            "must be between 1s and 1h",
        );
        problems.require(self.callback_delay <= Duration::from_secs(600), "saas.callback_delay", "must be at most 10m");
        problems.into_result()
    }
}

/// Checks the SaaS base URL: absolute `https://`, or `http://` to a loopback host (the
/// embedded simulator, a local test double). No query, fragment or credentials (the API
/// key has its own setting). Errors do not repeat the URL, which could hold a password.
pub fn check_base_url(text: &str) -> Result<Url, String> {
    let url = check_http_url(text)?;
    match url.scheme() {
        "https" => Ok(url),
        _ if is_loopback(&url) => Ok(url),
        _ => Err("plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https".into()),
    }
}

/// Checks a callback URL: absolute `http://` or `https://` with a host and no credentials.
pub fn check_callback_url(text: &str) -> Result<Url, String> {
    check_http_url(text)
}

fn check_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not an absolute URL ({e})"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("must start with https:// or http://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        for ok in [
            "https://saas.example.com",
            "https://saas.example.com/ctp/v1/",
            "http://127.0.0.1:8090",
            "http://localhost:1",
            "http://[::1]:80",
            "http://127.8.9.10",
        ] {
            assert!(check_base_url(ok).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("http://saas.example.com", "loopback"),
            ("http://10.0.0.1", "loopback"),
            ("ftp://127.0.0.1", "https://"),
            ("saas.example.com", "absolute"),
            ("https://u:hunter2@saas.example.com", "credentials"),
            ("https://saas.example.com/?x=1", "query"),
        ] {
            let err = check_base_url(bad).unwrap_err();
            assert!(err.contains(needle) && !err.contains("hunter2"), "{bad}: {err}");
        }
        assert!(check_callback_url("http://issuer.example.com/cb").is_ok());
    }

    #[test]
    fn the_simulator_is_chosen_only_in_the_embedded_shape_or_on_request() {
        let none = SaasConfig::default();
        assert_eq!(none.choice(true), Ok(SaasChoice::Simulator { explicit: false }));
        let refused = none.choice(false).unwrap_err().to_string();
        assert!(refused.contains("saas.simulator = true") && refused.contains("CTP_SAAS_URL"), "{refused}");

        let asked = SaasConfig { simulator: Some(true), ..SaasConfig::default() };
        assert_eq!(asked.choice(false), Ok(SaasChoice::Simulator { explicit: true }));

        let remote = SaasConfig { base_url: Some("https://saas.example.com".into()), ..SaasConfig::default() };
        assert_eq!(remote.choice(false), Ok(SaasChoice::Remote { base_url: "https://saas.example.com" }));
        let both = SaasConfig { simulator: Some(true), ..remote.clone() };
        assert!(both.choice(true).unwrap_err().to_string().contains("choose one"));
        let neither = SaasConfig { simulator: Some(false), ..SaasConfig::default() };
        assert_eq!(neither.choice(true).unwrap_err().key(), "saas.base_url");
    }
}
