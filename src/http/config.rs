//! The `[listen]`, `[http]` and `[tls]` sections: where the listeners are, how long a
//! connection may take, and the public listener's certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Visa's notifications and the SaaS callbacks. The only port exposed to the outside.
    /// Default: `127.0.0.1:8080`.
    #[serde(with = "crate::setting::socket_addr")]
    pub public: SocketAddr,
    /// The issuer's own services. Default: `127.0.0.1:8081`.
    #[serde(with = "crate::setting::socket_addr")]
    pub internal: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`. Default: `127.0.0.1:9090`.
    #[serde(with = "crate::setting::socket_addr")]
    pub admin: SocketAddr,
    /// The cardholder-facing card-details page (when `widget.enabled`). Default:
    /// `127.0.0.1:8082`.
    #[serde(with = "crate::setting::socket_addr")]
    pub widget: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            public: SocketAddr::from(([127, 0, 0, 1], 8080)),
            internal: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
            widget: SocketAddr::from(([127, 0, 0, 1], 8082)),
        }
    }
}

impl ListenConfig {
    /// One address per listener (port 0, "any free port", may repeat: each binds a port of
    /// its own, as tests do).
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        let clash = |a: SocketAddr, b: SocketAddr| a == b && a.port() != 0;
        let all = self.all();
        let distinct = all.iter().enumerate().all(|(i, a)| all[i + 1..].iter().all(|b| !clash(*a, *b)));
        problems.require(distinct, "listen.public, listen.internal, listen.admin and listen.widget", "must differ");
        problems.into_result()
    }

    /// Whether every listener is on a loopback address: nothing outside this machine can
    /// reach the service.
    pub fn all_loopback(&self) -> bool {
        self.all().iter().all(|a| a.ip().is_loopback())
    }

    fn all(&self) -> [SocketAddr; 4] {
        [self.public, self.internal, self.admin, self.widget]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A connection that has not sent a whole request head this long after it was
    /// accepted is closed, whether it sent a byte or not (silent and slowloris clients).
    /// Default: 10s.
    #[serde(with = "crate::setting::duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive or HTTP/2 connection with no request in flight this long is closed.
    /// Default: 60s.
    #[serde(with = "crate::setting::duration")]
    pub idle_timeout: Duration,
    /// Open connections per listener; past it a new one is closed at once (and counted).
    /// Default: 1024.
    pub max_connections: usize,
    /// A request still running after this is abandoned and answered 500 on the public
    /// listener (the status Visa retries), 503 on the others. Default: 30s.
    #[serde(with = "crate::setting::duration")]
    pub request_timeout: Duration,
    /// On SIGTERM, how long open connections may finish before they are cut. Default: 10s.
    #[serde(with = "crate::setting::duration")]
    pub drain_timeout: Duration,
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

impl HttpConfig {
    /// A zero timeout would close every connection at once; zero connections, refuse all.
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        for (key, timeout) in [
            ("http.header_read_timeout", self.header_read_timeout),
            ("http.idle_timeout", self.idle_timeout),
            ("http.request_timeout", self.request_timeout),
        ] {
            problems.require(!timeout.is_zero(), key, "must be positive");
        }
        problems.require(self.max_connections >= 1, "http.max_connections", "must be at least 1");
        problems.into_result()
    }
}

/// TLS on the public listener. Both files are read, and checked, at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Required with `tls.key`.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Required with `tls.cert`.
    pub key: PathBuf,
    /// PEM bundle of CAs whose client certificates are required (mutual TLS, as Visa
    /// uses). Default: none, no client certificate asked for.
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Nothing to check before the files are read.
    pub fn validate(&self) -> Result<(), Problems> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_problem_is_named() {
        let http =
            HttpConfig { header_read_timeout: Duration::ZERO, idle_timeout: Duration::ZERO, max_connections: 0, ..HttpConfig::default() };
        let text = http.validate().unwrap_err().to_string();
        for key in
            ["http.header_read_timeout must be positive", "http.idle_timeout must be positive", "http.max_connections must be at least 1"]
        {
            assert!(text.contains(key), "{text}");
        }
    }

    #[test]
    fn listeners_must_differ_and_loopback_is_told() {
        let mut listen = ListenConfig::default();
        assert!(listen.validate().is_ok() && listen.all_loopback());
        listen.admin = listen.public;
        assert!(listen.validate().unwrap_err().to_string().contains("must differ"));
        let mut listen = ListenConfig::default();
        listen.widget = listen.internal;
        assert!(listen.validate().unwrap_err().to_string().contains("must differ"));
        let mut listen = ListenConfig::default();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let ephemeral = ListenConfig { public: any, internal: any, admin: any, widget: any };
        assert!(ephemeral.validate().is_ok(), "port 0 binds a free port for each");
        listen.admin = "0.0.0.0:9090".parse().unwrap();
        assert!(!listen.all_loopback());
    }
}
