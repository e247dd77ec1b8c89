//! Tenants are issuers, and an issuer owns its BIN ranges: the card numbers it issues
//! begin with one of its prefixes. That is the real world's rule, and the one that keeps
//! tenants apart here:
//!
//! - a tenant may hold only cards in its own ranges, so no tenant can register (and so
//!   block, or learn about) a card another issuer issued;
//! - a Visa notification is routed by its card's BIN to the one tenant that owns it, and
//!   matched only among that tenant's cards;
//! - a tenant that is not declared is refused.
//!
//! With no tenant declared, the service runs for a single issuer, as it did before tenants
//! were declared: every tenant name is accepted and every card is the issuer's.
//!
//! [`config`] reads and checks the declarations (no two tenants' ranges overlap).

pub mod config;

pub use config::{BinPrefix, TenantConfig, TenantsConfig};

use crate::pan::Pan;

/// One declared tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    /// BIN prefixes, 1 to 11 digits each.
    pub bins: Vec<String>,
    /// Its issuer id in Thales D1's API, when it has one.
    pub d1_issuer_id: Option<String>,
    /// How the cardholder-facing page names the issuer.
    pub display_name: Option<String>,
    /// The page's accent colour, `#rrggbb`.
    pub accent_color: Option<String>,
}

/// Where a card belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// No tenant is declared: the one issuer's, whichever tenant name it is filed under.
    SingleIssuer,
    Tenant(&'a str),
    /// Tenants are declared and none owns the card's BIN.
    Nobody,
}

/// The declared tenants (none: single-issuer mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenants {
    declared: Vec<Tenant>,
}

impl Tenants {
    /// `declared` must have been validated (ids, prefixes, no overlap): the configuration
    /// does that at start.
    pub fn new(declared: Vec<Tenant>) -> Self {
        Self { declared }
    }

    /// The tenants a configuration declares.
    pub fn from_config(config: &TenantsConfig) -> Self {
        Self::new(
            config
                .0
                .iter()
                .map(|t| Tenant {
                    id: t.id.clone(),
                    bins: t.bins.iter().map(|b| b.as_str().to_owned()).collect(),
                    d1_issuer_id: t.d1_issuer_id.clone(),
                    display_name: t.display_name.clone(),
                    accent_color: t.accent_color.clone(),
                })
                .collect(),
        )
    }

    pub fn single_issuer(&self) -> bool {
        self.declared.is_empty()
    }

    pub fn declared(&self) -> &[Tenant] {
        &self.declared
    }

    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.declared.iter().find(|t| t.id == id)
    }

    /// Whether requests may act for `tenant`.
    pub fn accepts(&self, tenant: &str) -> bool {
        self.single_issuer() || self.get(tenant).is_some()
    }

    /// The tenant whose BIN ranges hold `pan`: the longest matching prefix decides (ranges
    /// do not overlap, so at most one matches anyway).
    pub fn owner_of(&self, pan: &Pan) -> Owner<'_> {
        if self.single_issuer() {
            return Owner::SingleIssuer;
        }
        self.declared
            .iter()
            .flat_map(|t| t.bins.iter().map(move |bin| (t.id.as_str(), bin)))
            .filter(|(_, bin)| pan.starts_with(bin))
            .max_by_key(|(_, bin)| bin.len())
            .map_or(Owner::Nobody, |(id, _)| Owner::Tenant(id))
    }

    /// Whether `tenant` may hold `pan`.
    pub fn may_hold(&self, tenant: &str, pan: &Pan) -> bool {
        match self.owner_of(pan) {
            Owner::SingleIssuer => true,
            Owner::Tenant(owner) => owner == tenant,
            Owner::Nobody => false,
        }
    }

    /// The tenant Thales D1 names by `issuer_id`: the one configured with it as its
    /// `d1_issuer_id`, or else the one whose id it is.
    pub fn by_d1_issuer_id(&self, issuer_id: &str) -> Option<&str> {
        self.declared.iter().find(|t| t.d1_issuer_id.as_deref() == Some(issuer_id)).or_else(|| self.get(issuer_id)).map(|t| t.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, bins: &[&str]) -> Tenant {
        Tenant {
            id: id.into(),
            bins: bins.iter().map(|b| b.to_string()).collect(),
            d1_issuer_id: None,
            display_name: None,
            accent_color: None,
        }
    }

    fn pan(digits: &str) -> Pan {
        Pan::parse(digits).unwrap()
    }

    #[test]
    fn without_tenants_every_card_and_name_is_the_one_issuers() {
        let tenants = Tenants::default();
        assert!(tenants.single_issuer());
        assert!(tenants.accepts("ANYBANK"));
        assert_eq!(tenants.owner_of(&pan("4111111111111111")), Owner::SingleIssuer);
        assert!(tenants.may_hold("ANYBANK", &pan("4111111111111111")));
    }

    #[test]
    fn a_card_belongs_to_the_tenant_whose_range_holds_it() {
        let tenants = Tenants::new(vec![tenant("BANK_A", &["411111", "4012"]), tenant("BANK_B", &["42"])]);
        assert!(tenants.accepts("BANK_A") && !tenants.accepts("BANK_C"));
        assert_eq!(tenants.owner_of(&pan("4111111111111111")), Owner::Tenant("BANK_A"));
        assert_eq!(tenants.owner_of(&pan("4012888888881881")), Owner::Tenant("BANK_A"));
        assert_eq!(tenants.owner_of(&pan("4242424242424242")), Owner::Tenant("BANK_B"));
        assert_eq!(tenants.owner_of(&pan("4000056655665556")), Owner::Nobody);
        assert!(tenants.may_hold("BANK_A", &pan("4111111111111111")));
        assert!(!tenants.may_hold("BANK_B", &pan("4111111111111111")));
        assert!(!tenants.may_hold("BANK_A", &pan("4000056655665556")), "nobody's card is nobody's to hold");
    }

    #[test]
    fn d1_issuer_ids_name_tenants() {
        let mut a = tenant("BANK_A", &["4"]);
        a.d1_issuer_id = Some("D1ISSUER01".into());
        let tenants = Tenants::new(vec![a, tenant("BANK_B", &["5"])]);
        assert_eq!(tenants.by_d1_issuer_id("D1ISSUER01"), Some("BANK_A"));
        assert_eq!(tenants.by_d1_issuer_id("BANK_B"), Some("BANK_B"));
        assert_eq!(tenants.by_d1_issuer_id("UNKNOWN000"), None);
    }
}
