//! The secure card-details page: the one place this service shows a card number.
//!
//! M2P's Click to Pay module documentation describes a "Get secure card details widget
//! URL" operation: the issuer's app asks for a URL, opens it in a web view, and the
//! cardholder sees the card number, expiry date and security code without the app ever
//! handling them. The URL carries an encrypted token naming the card (kit number), the
//! customer (entity id) and, when configured, the date of birth; it expires after a few
//! minutes and works once.
//!
//! The building blocks, each with one job:
//!
//! | module | one job |
//! | --- | --- |
//! | [`cvv`] | Visa's CVV algorithm (CVV2), behind a trait an HSM can implement |
//! | [`link`] | the link token: sealed, expiring, carrying no card number; the keyed hash the database keeps |
//! | [`csrf`] | the double-submit value that binds the reveal to a page we rendered |
//! | [`page`] | server-rendered HTML and the headers every widget response needs |
//! | [`flow`] | the page logic over two small traits (the link ledger, the card source) |
//! | [`sources`] | those traits on the service's parts: the store's `widget_link` table, the registry |
//! | [`config`] | the `[widget]` section, and the settings and page address made from it |
//!
//! ## The flow
//!
//! 1. `GET <path>?t=<token>` ([`flow::Widget::show`]) opens the token (tag, expiry) and
//!    asks the ledger, read-only, whether the link is still usable. It answers a page
//!    with one button, or the date-of-birth form. It changes nothing, so a messaging
//!    app's link preview cannot use the link up.
//! 2. `POST <path>` ([`flow::Widget::reveal`]) checks the token again, the CSRF value,
//!    the date of birth when the link carries one, fetches the card and computes the
//!    CVV2, and only then consumes the link in the database, atomically: of two
//!    concurrent reveals exactly one shows the details.
//! 3. A used, expired, burned or tampered link gets one and the same 410 response, byte
//!    for byte, so the page never tells which.
//!
//! ## Rules
//!
//! - Card numbers and CVVs are never logged, never put in an error or a metric label.
//!   Every type holding one redacts it in `Debug`; none implements `Display`.
//! - The token never holds a card number, and the database never holds the token's
//!   random link id, only its keyed hash.

pub mod config;
pub mod csrf;
pub mod cvv;
pub mod flow;
pub mod link;
pub mod page;
pub mod sources;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pan::Pan;

pub use config::WidgetConfig;
pub use csrf::CookieScheme;
pub use cvv::{Cvv2, CvvGenerator, SoftwareCvv};
pub use flow::{CardForDisplay, CardSource, IssueLinkError, KitLookup, LinkLedger, Widget};
pub use link::{IssuedLink, LinkClaims, LinkHash, LinkKeys};
pub use page::{Branding, FormAction, FrameAncestors, PageResponse};
pub use sources::{RegistryCards, StoreLedger};

/// How long a link lives unless configured otherwise: M2P's documented default.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(5 * 60);

/// Longest link lifetime accepted. A link is a bearer capability for a card number; an
/// hour is already generous for "open it now in the app".
pub const MAX_LINK_TTL: Duration = Duration::from_secs(60 * 60);

/// Wrong dates of birth a link survives: the third wrong one burns it.
pub const MAX_DOB_TRIES: u8 = 3;

/// What the page logic needs from configuration: made from the `[widget]` section and
/// the tenants' branding by [`WidgetConfig::settings`]; [`WidgetSettings::check`] refuses
/// values that would make the page unsafe.
#[derive(Debug, Clone)]
pub struct WidgetSettings {
    /// How long an issued link may be used (`widget.link_ttl`).
    pub link_ttl: Duration,
    /// Whether every link must carry the date of birth and ask for it (`widget.require_dob`).
    /// A link issued with a date of birth asks for it whatever this says.
    pub require_dob: bool,
    /// Who may frame the page (`widget.frame_ancestors`); none by default.
    pub frame_ancestors: FrameAncestors,
    /// The path the page's forms post to: the route of [`flow::Widget::reveal`].
    pub form_action: FormAction,
    /// Whether the details page offers a "Copy card number" button (`widget.copy_button`).
    /// The page works the same without it, and without JavaScript.
    pub copy_button: bool,
    /// The CSRF cookie's form: by whether the cardholder reaches the page over HTTPS.
    pub cookie: CookieScheme,
    /// Per-tenant display name and accent colour; tenants not listed get the default.
    pub branding: BTreeMap<String, Branding>,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        Self {
            link_ttl: DEFAULT_LINK_TTL,
            require_dob: false,
            frame_ancestors: FrameAncestors::none(),
            form_action: FormAction::default(),
            copy_button: true,
            cookie: CookieScheme::Https,
            branding: BTreeMap::new(),
        }
    }
}

/// A setting the page cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("widget.link_ttl must be between 1 s and {} s", MAX_LINK_TTL.as_secs())]
    LinkTtl,
}

impl WidgetSettings {
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.link_ttl.is_zero() || self.link_ttl > MAX_LINK_TTL {
            return Err(SettingsError::LinkTtl);
        }
        Ok(())
    }

    /// The tenant's branding, or the default one.
    pub fn branding_for(&self, tenant: &str) -> &Branding {
        static DEFAULT: std::sync::OnceLock<Branding> = std::sync::OnceLock::new();
        self.branding.get(tenant).unwrap_or_else(|| DEFAULT.get_or_init(Branding::default))
    }
}

/// The card number's digits, for the two widget uses: the CVV computation and the
/// details page shown to the cardholder. `Pan` offers its digits only through
/// `expose_for_network`, whose contract names the network request; this page is the
/// other place the product is meant to show them, so the exception lives in this one
/// function and nowhere else in the module.
pub(crate) fn pan_digits(pan: &Pan) -> &str {
    pan.expose_for_network()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_unsafe_lifetimes() {
        let mut s = WidgetSettings::default();
        assert_eq!(s.check(), Ok(()));
        s.link_ttl = Duration::ZERO;
        assert_eq!(s.check(), Err(SettingsError::LinkTtl));
        s.link_ttl = MAX_LINK_TTL + Duration::from_secs(1);
        assert_eq!(s.check(), Err(SettingsError::LinkTtl));
    }
}
