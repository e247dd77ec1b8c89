//! The `[widget]` section: the secure card-details page, its links and its listener's
//! TLS. The listener's address is `listen.widget`; branding is per tenant
//! (`tenants.<id>.display_name`, `tenants.<id>.accent_color`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::csrf::CookieScheme;
use super::page::{Branding, FormAction, FrameAncestors};
use super::{DEFAULT_LINK_TTL, MAX_LINK_TTL, WidgetSettings};
use crate::http::config::TlsConfig;
use crate::pan::config::KeyVersion;
use crate::saas::config::check_base_url;
use crate::setting::{Problem, Problems};
use crate::tenants::Tenants;

/// The path the widget listener serves the page on.
pub const PAGE_PATH: &str = "/card-details";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WidgetConfig {
    /// Serve the page (the `listen.widget` listener) and issue its links. Off: no widget
    /// listener, no widget or CVK key read, and `detailsUrl` answers Y404. Default: true.
    pub enabled: bool,
    /// How long an issued link may be used, 1s to 1h. Default: 5m.
    #[serde(with = "crate::setting::duration")]
    pub link_ttl: Duration,
    /// Links carry the customer's date of birth (from the profile's `dateOfBirth`), and the
    /// page asks for it before it shows anything; a link is then refused for a customer
    /// without one. Default: false.
    pub require_dob: bool,
    /// Who may show the page in a frame (CSP `frame-ancestors`): `'none'`, or `'self'`
    /// and `https://` origins. Default: `'none'`.
    pub frame_ancestors: Vec<String>,
    /// Offer a "Copy card number" button on the details page (it needs JavaScript; the
    /// page works without). Default: true.
    pub copy_button: bool,
    /// The page's address as cardholders' browsers reach it (through a load balancer, say),
    /// `https://…`; `http://` only to a loopback host. The form posts to its path. Default:
    /// none, `http://<listen.widget>/card-details` (`https://` with `widget.tls_cert`).
    pub public_url: Option<String>,
    /// The kid of the link key new links are sealed with (`keys/widget/link-<kid>.key` and
    /// `linkhash-<kid>.key`); the other kids present still open links. Default: `v1`.
    pub link_key_version: KeyVersion,
    /// PEM certificate chain for TLS on the widget listener; with `tls_key`. Default: none.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`. Default: none.
    pub tls_key: Option<PathBuf>,
}

impl Default for WidgetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            link_ttl: DEFAULT_LINK_TTL,
            require_dob: false,
            frame_ancestors: vec!["'none'".into()],
            copy_button: true,
            public_url: None,
            link_key_version: "v1".parse().expect("a key version"),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl WidgetConfig {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        problems.require(
            !self.link_ttl.is_zero() && self.link_ttl <= MAX_LINK_TTL,
            "widget.link_ttl",
            format_args!("must be between 1s and {}s", MAX_LINK_TTL.as_secs()),
        );
        if let Err(e) = FrameAncestors::parse(&self.frame_ancestors) {
            problems.push(Problem::at("widget.frame_ancestors", e));
        }
        if let Some(url) = &self.public_url
            && let Err(e) = form_action_of(url)
        {
            problems.push(Problem::at("widget.public_url", e));
        }
        problems.require(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "widget.tls_cert and widget.tls_key",
            "go together: set both or neither",
        );
        problems.into_result()
    }

    /// TLS on the widget listener, when configured.
    pub fn tls(&self) -> Option<TlsConfig> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert: cert.clone(), key: key.clone(), client_ca: None }),
            _ => None,
        }
    }

    /// Whether cardholders reach the page over HTTPS: TLS here, or a `public_url` that
    /// says so (TLS ending in front of us).
    pub fn over_https(&self) -> bool {
        self.tls().is_some() || self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }

    /// The page's address for links: `public_url`, or the widget listener's own, `bound`.
    pub fn page_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("{}://{bound}{PAGE_PATH}", if self.tls().is_some() { "https" } else { "http" }),
        }
    }

    /// What the page logic takes from this section, with each tenant's branding.
    pub fn settings(&self, tenants: &Tenants) -> Result<WidgetSettings, String> {
        let mut branding = BTreeMap::new();
        for tenant in tenants.declared() {
            if tenant.display_name.is_some() || tenant.accent_color.is_some() {
                let b = Branding::new(tenant.display_name.as_deref(), tenant.accent_color.as_deref())
                    .map_err(|e| format!("tenants.{}: {e}", tenant.id))?;
                branding.insert(tenant.id.clone(), b);
            }
        }
        let form_action = match &self.public_url {
            Some(url) => form_action_of(url).map_err(|e| format!("widget.public_url: {e}"))?,
            None => FormAction::parse(PAGE_PATH).expect("a path"),
        };
        let settings = WidgetSettings {
            link_ttl: self.link_ttl,
            require_dob: self.require_dob,
            frame_ancestors: FrameAncestors::parse(&self.frame_ancestors).map_err(|e| format!("widget.frame_ancestors: {e}"))?,
            form_action,
            copy_button: self.copy_button,
            cookie: if self.over_https() { CookieScheme::Https } else { CookieScheme::Http },
            branding,
        };
        settings.check().map_err(|e| e.to_string())?;
        Ok(settings)
    }
}

/// The path of a page URL, as the form's action; the URL must be one a cardholder may be
/// sent to (`https://`, or `http://` to a loopback host) with a plain path.
pub fn form_action_of(url: &str) -> Result<FormAction, String> {
    let parsed = check_base_url(url)?;
    FormAction::parse(parsed.path()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_every_problem_is_named() {
        assert!(WidgetConfig::default().validate().is_ok());
        let bad = WidgetConfig {
            link_ttl: Duration::from_secs(7200),
            frame_ancestors: vec!["*".into()],
            public_url: Some("http://cards.bank.example/card-details".into()),
            tls_cert: Some("cert.pem".into()),
            ..WidgetConfig::default()
        };
        let text = bad.validate().unwrap_err().to_string();
        for part in ["widget.link_ttl", "widget.frame_ancestors", "widget.public_url", "plain http", "widget.tls_cert and widget.tls_key"] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn the_cookie_is_secure_whenever_the_page_is_https() {
        let tenants = Tenants::default();
        let http = WidgetConfig::default();
        assert_eq!(http.settings(&tenants).unwrap().cookie, CookieScheme::Http);
        assert_eq!(http.page_url("127.0.0.1:8082".parse().unwrap()), "http://127.0.0.1:8082/card-details");
        let tls = WidgetConfig { tls_cert: Some("c.pem".into()), tls_key: Some("k.pem".into()), ..WidgetConfig::default() };
        assert_eq!(tls.settings(&tenants).unwrap().cookie, CookieScheme::Https);
        assert_eq!(tls.page_url("127.0.0.1:8082".parse().unwrap()), "https://127.0.0.1:8082/card-details");
        let behind = WidgetConfig { public_url: Some("https://cards.bank.example/c/card-details".into()), ..WidgetConfig::default() };
        let settings = behind.settings(&tenants).unwrap();
        assert_eq!((settings.cookie, settings.form_action.as_str()), (CookieScheme::Https, "/c/card-details"));
        assert_eq!(behind.page_url("0.0.0.0:8082".parse().unwrap()), "https://cards.bank.example/c/card-details");
    }

    #[test]
    fn the_public_url_gives_the_form_its_path() {
        assert_eq!(form_action_of("https://cards.bank.example/ctp/card-details").unwrap().as_str(), "/ctp/card-details");
        assert_eq!(form_action_of("http://127.0.0.1:8082/card-details").unwrap().as_str(), "/card-details");
        assert!(form_action_of("https://cards.bank.example/card-details?x=1").is_err());
        assert!(form_action_of("https://cards.bank.example/a b").is_err());
    }
}
