//! The `[tenants.<ID>]` tables: the issuers this service acts for and the BIN ranges each
//! owns. None configured is valid: one issuer, no routing by BIN.
//!
//! ```toml
//! [tenants.bank-a]
//! bins = ["411111", "401288"]
//! display_name = "Bank A"
//! accent_color = "#0a5cff"
//! d1_issuer_id = "BANKA00001"
//! ```
//!
//! From the environment, `CTP_TENANTS="bank-a=411111,401288;bank-b=522222"` sets the BINs
//! of the tenants it names (see [`parse_bin_assignments`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::setting::{Problem, Problems};

/// Every tenant, ordered by id. Default: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantsConfig(pub Vec<TenantConfig>);

/// One tenant: an issuer, and the card numbers that are its by their first digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// 1 to 64 letters, digits, `-` or `_`: the `[tenants.<ID>]` table's name.
    pub id: String,
    /// The BIN prefixes the tenant owns, at least one. No prefix of one tenant may start
    /// another tenant's (or equal it): a card number belongs to one tenant at most.
    pub bins: Vec<BinPrefix>,
    /// A name to show people, 1 to 64 characters. Default: none.
    pub display_name: Option<String>,
    /// `#rrggbb`, for screens that show the tenant. Default: none.
    pub accent_color: Option<String>,
    /// The tenant's issuer id at Thales D1: exactly 10 of letters, digits, `-` and `_`,
    /// never shared by two tenants. Default: none.
    pub d1_issuer_id: Option<String>,
}

/// A tenant's table as written, without its id (the table's name).
#[derive(Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct TenantTable {
    bins: Vec<BinPrefix>,
    display_name: Option<String>,
    accent_color: Option<String>,
    d1_issuer_id: Option<String>,
}

impl Deref for TenantsConfig {
    type Target = [TenantConfig];

    fn deref(&self) -> &[TenantConfig] {
        &self.0
    }
}

impl TenantsConfig {
    pub fn get(&self, id: &str) -> Option<&TenantConfig> {
        self.0.iter().find(|t| t.id == id)
    }

    /// Ids, the optional fields' forms, overlapping BIN ranges and shared D1 issuer ids;
    /// every problem, not the first.
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        for tenant in &self.0 {
            let key = tenant_key(&tenant.id);
            problems.require(is_tenant_id(&tenant.id), &key, "is not a tenant id: use 1 to 64 letters, digits, - or _");
            problems.require(!tenant.bins.is_empty(), &format!("{key}.bins"), "must name at least one BIN prefix");
            if let Some(name) = &tenant.display_name {
                let fits = (1..=64).contains(&name.chars().count()) && !name.chars().any(char::is_control);
                problems.require(fits, &format!("{key}.display_name"), "must be 1 to 64 characters, none of them control characters");
            }
            if let Some(color) = &tenant.accent_color {
                let fits = color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
                problems.require(fits, &format!("{key}.accent_color"), format_args!("must be #rrggbb such as #0a5cff, got {color:?}"));
            }
            if let Some(d1) = &tenant.d1_issuer_id {
                let fits = d1.len() == 10 && d1.bytes().all(is_id_byte);
                problems.require(
                    fits,
                    &format!("{key}.d1_issuer_id"),
                    format_args!("must be exactly 10 letters, digits, - or _, got {d1:?}"),
                );
            }
        }
        self.check_overlaps(&mut problems);
        self.check_shared_d1_ids(&mut problems);
        problems.into_result()
    }

    /// Sorted, a prefix comes right before every prefix it starts; so each prefix is
    /// compared with the run that follows it only, not with every other.
    fn check_overlaps(&self, problems: &mut Problems) {
        let mut all: Vec<(&str, &str)> = self.0.iter().flat_map(|t| t.bins.iter().map(move |b| (b.as_str(), t.id.as_str()))).collect();
        all.sort();
        for (i, &(prefix, owner)) in all.iter().enumerate() {
            for &(longer, other) in all[i + 1..].iter().take_while(|(longer, _)| longer.starts_with(prefix)) {
                if other != owner {
                    problems.push(Problem::new(
                        format!("{}.bins", tenant_key(owner)),
                        format_args!(
                            "BIN {prefix} overlaps {}.bins BIN {longer}: one starts the other, so a card number would belong to both",
                            tenant_key(other)
                        ),
                    ));
                }
            }
        }
    }

    fn check_shared_d1_ids(&self, problems: &mut Problems) {
        let mut first: HashMap<&str, &str> = HashMap::new();
        for tenant in &self.0 {
            let Some(d1) = tenant.d1_issuer_id.as_deref() else { continue };
            if let Some(owner) = first.insert(d1, &tenant.id) {
                problems.push(Problem::new(
                    format!("{}.d1_issuer_id", tenant_key(&tenant.id)),
                    format_args!("{d1:?} is also {}'s: a D1 issuer id names one tenant", tenant_key(owner)),
                ));
            }
        }
    }
}

/// `tenants.<id>`, the id quoted when it would not read as one key.
fn tenant_key(id: &str) -> String {
    if is_tenant_id(id) { format!("tenants.{id}") } else { format!("tenants.{id:?}") }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// 1 to 64 letters, digits, `-` or `_`.
pub fn is_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(is_id_byte)
}

/// Reads `CTP_TENANTS`: `ID=BIN,BIN;ID2=BIN`, spaces around parts allowed, empty parts
/// skipped. The error says what is wrong and shows the part, never the whole value.
pub fn parse_bin_assignments(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    const FORM: &str = "expected ID=BIN,BIN;ID2=BIN such as bank-a=411111,401288;bank-b=522222";
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, bins)) = part.split_once('=') else {
            return Err(format!("{FORM}; {part:?} has no `=`"));
        };
        let id = id.trim();
        if !is_tenant_id(id) {
            return Err(format!("{FORM}; {id:?} is not a tenant id (1 to 64 letters, digits, - or _)"));
        }
        if out.iter().any(|(seen, _)| seen == id) {
            return Err(format!("{FORM}; tenant {id} is named twice"));
        }
        let bins: Vec<String> = bins.split(',').map(str::trim).filter(|b| !b.is_empty()).map(String::from).collect();
        if bins.is_empty() {
            return Err(format!("{FORM}; tenant {id} has no BIN"));
        }
        out.push((id.to_owned(), bins));
    }
    Ok(out)
}

impl Serialize for TenantsConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tables: BTreeMap<&str, TenantTable> = self
            .0
            .iter()
            .map(|t| {
                let table = TenantTable {
                    bins: t.bins.clone(),
                    display_name: t.display_name.clone(),
                    accent_color: t.accent_color.clone(),
                    d1_issuer_id: t.d1_issuer_id.clone(),
                };
                (t.id.as_str(), table)
            })
            .collect();
        tables.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TenantsConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tables = BTreeMap::<String, TenantTable>::deserialize(deserializer)?;
        Ok(Self(
            tables
                .into_iter()
                .map(|(id, t)| TenantConfig {
                    id,
                    bins: t.bins,
                    display_name: t.display_name,
                    accent_color: t.accent_color,
                    d1_issuer_id: t.d1_issuer_id,
                })
                .collect(),
        ))
    }
}

/// The first 1 to 11 digits of a card number, written as a string (`"411111"`: as a
/// number a leading zero would be lost).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BinPrefix(String);

impl BinPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the card number (its digits) starts with this prefix.
    pub fn matches(&self, digits: &str) -> bool {
        digits.starts_with(&self.0)
    }
}

const BIN_FORM: &str = "expected a BIN prefix of 1 to 11 digits such as \"411111\"";

impl FromStr for BinPrefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if (1..=11).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!("{BIN_FORM}, got {text:?}"))
        }
    }
}

impl fmt::Display for BinPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for BinPrefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BinPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Prefix;
        impl Visitor<'_> for Prefix {
            type Value = BinPrefix;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(BIN_FORM)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<BinPrefix, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<BinPrefix, E> {
                Err(E::custom(format!("{BIN_FORM}, in quotes (got the number {n})")))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<BinPrefix, E> {
                Err(E::custom(format!("{BIN_FORM}, in quotes (got the number {n})")))
            }
        }
        deserializer.deserialize_str(Prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, bins: &[&str]) -> TenantConfig {
        TenantConfig {
            id: id.into(),
            bins: bins.iter().map(|b| b.parse().unwrap()).collect(),
            display_name: None,
            accent_color: None,
            d1_issuer_id: None,
        }
    }

    #[test]
    fn tables_read_in_id_order_and_none_is_valid() {
        let parsed: TenantsConfig =
            toml::from_str("[bank-b]\nbins = [\"5222\"]\n[bank-a]\nbins = [\"411111\", \"401288\"]\ndisplay_name = \"Bank A\"\n").unwrap();
        assert_eq!(parsed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["bank-a", "bank-b"]);
        assert_eq!(parsed.get("bank-a").unwrap().display_name.as_deref(), Some("Bank A"));
        assert!(parsed.get("bank-a").unwrap().bins[0].matches("4111111111111111"));
        parsed.validate().unwrap();
        TenantsConfig::default().validate().unwrap();
    }

    #[test]
    fn a_bin_is_quoted_digits() {
        for bad in ["[x]\nbins = [\"41x\"]", "[x]\nbins = [\"411111111111\"]", "[x]\nbins = [\"\"]", "[x]\nbins = [411111]"] {
            let err = toml::from_str::<TenantsConfig>(bad).unwrap_err().to_string();
            assert!(err.contains("BIN prefix of 1 to 11 digits"), "{bad}: {err}");
        }
        let err = toml::from_str::<TenantsConfig>("[x]\nbin = [\"4\"]").unwrap_err().to_string();
        assert!(err.contains("bin"), "{err}");
    }

    #[test]
    fn overlapping_ranges_name_both_tenants_and_both_prefixes() {
        let err = TenantsConfig(vec![tenant("a", &["4111", "5"]), tenant("b", &["411111", "6"])]).validate().unwrap_err().to_string();
        assert!(err.contains("tenants.a.bins BIN 4111 overlaps tenants.b.bins BIN 411111"), "{err}");
        let err = TenantsConfig(vec![tenant("a", &["4111"]), tenant("b", &["4111"])]).validate().unwrap_err().to_string();
        assert!(err.contains("4111 overlaps tenants.b.bins BIN 4111"), "{err}");
        // Nested prefixes of one tenant are its own business; siblings do not overlap.
        TenantsConfig(vec![tenant("a", &["4", "41"]), tenant("b", &["5", "52"])]).validate().unwrap();
        TenantsConfig(vec![tenant("a", &["41"]), tenant("b", &["42", "4"])]).validate().unwrap_err();
    }

    #[test]
    fn fields_and_shared_d1_ids_are_checked() {
        let mut a = tenant("a", &["4"]);
        a.d1_issuer_id = Some("ISSUER_001".into());
        a.accent_color = Some("#0a5cff".into());
        a.display_name = Some("Bank A".into());
        let mut b = tenant("b", &["5"]);
        b.d1_issuer_id = Some("ISSUER_001".into());
        let err = TenantsConfig(vec![a.clone(), b]).validate().unwrap_err().to_string();
        assert!(err.contains("tenants.b.d1_issuer_id \"ISSUER_001\" is also tenants.a's"), "{err}");

        let mut bad = tenant("bad id", &[]);
        bad.accent_color = Some("blue".into());
        bad.d1_issuer_id = Some("SHORT".into());
        bad.display_name = Some("x".repeat(65));
        let err = TenantsConfig(vec![a, bad]).validate().unwrap_err().to_string();
        assert!(err.starts_with("5 problems"), "{err}");
        for needle in [
            "tenants.\"bad id\" is not a tenant id",
            ".bins must name",
            ".accent_color must be #rrggbb",
            ".d1_issuer_id must be exactly 10",
            ".display_name must be 1 to 64",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn bin_assignments_from_the_environment() {
        assert_eq!(
            parse_bin_assignments(" bank-a = 411111, 401288 ; bank_b=5222;").unwrap(),
            [("bank-a".to_owned(), vec!["411111".to_owned(), "401288".to_owned()]), ("bank_b".to_owned(), vec!["5222".to_owned()])]
        );
        assert_eq!(parse_bin_assignments("").unwrap(), []);
        for (bad, needle) in [
            ("garbage", "\"garbage\" has no `=`"),
            ("=4111", "\"\" is not a tenant id"),
            ("a b=4111", "\"a b\" is not a tenant id"),
            ("a=", "tenant a has no BIN"),
            ("a=1;a=2", "named twice"),
        ] {
            let err = parse_bin_assignments(bad).unwrap_err();
            assert!(err.starts_with("expected ID=BIN,BIN;ID2=BIN") && err.contains(needle), "{bad}: {err}");
        }
    }
}
