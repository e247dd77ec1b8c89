//! The keys of the configuration, learned from the configuration itself: [`Config`]
//! serialized with every optional section filled in lists each key with the type of its
//! value. The environment layer derives its variable names from these keys, so a new
//! field gets its variable without anyone writing it down.

use serde_json::Value;

use super::Config;
use crate::http::config::TlsConfig;
use crate::saas::config::SaasConfig;

/// The tables whose keys are not fixed, and so have no derived variable names.
const DYNAMIC_TABLES: &[&str] = &["tenants"];

/// What an environment value is read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Integer,
    Float,
    /// Text, or anything whose own deserializer reads text (durations, addresses, URLs).
    Text,
    /// Comma-separated items of a kind.
    List(Box<Kind>),
}

/// One key: `http.header_read_timeout`, what its value is, and whether it may be unset.
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    pub path: String,
    pub kind: Kind,
    /// An optional setting (`None` by default): an empty variable unsets it.
    pub nullable: bool,
    /// The default, serialized (secrets as `[redacted]`, unset as null). Read by the test
    /// that holds `docs/configuration.md` to the code.
    #[cfg_attr(not(test), allow(dead_code))]
    pub default: Value,
}

impl Leaf {
    /// `CTP_` and the key upper-cased, dots as underscores.
    pub fn env_name(&self) -> String {
        env_name(&self.path)
    }
}

pub(super) fn env_name(path: &str) -> String {
    format!("CTP_{}", path.to_ascii_uppercase().replace('.', "_"))
}

/// Names from before the generic rule that differ from their key's derived name, kept
/// working. Setting one together with the derived name to a different value is refused.
pub(super) const ALIASES: &[(&str, &str)] = &[
    ("CTP_PUBLIC_ADDR", "listen.public"),
    ("CTP_INTERNAL_ADDR", "listen.internal"),
    ("CTP_ADMIN_ADDR", "listen.admin"),
    ("CTP_LOG", "log.filter"),
    ("CTP_SAAS_URL", "saas.base_url"),
    ("CTP_AMQP_URL", "outbox.amqp_url"),
    ("CTP_RECONCILE_AFTER", "enrollment.reconcile_after"),
    ("CTP_WIDGET_ADDR", "listen.widget"),
];

/// The default configuration with every optional section present, so that its keys
/// show. Values here are placeholders; only their types matter.
fn shape() -> Config {
    let tls = TlsConfig { cert: "cert.pem".into(), key: "key.pem".into(), client_ca: None };
    let saas = SaasConfig { simulator: Some(false), ..SaasConfig::default() };
    Config { tls: Some(tls), saas, ..Config::default() }
}

/// Every key of [`Config`] except those under [`DYNAMIC_TABLES`], sorted.
pub(super) fn leaves() -> Vec<Leaf> {
    let shape = serde_json::to_value(shape()).expect("the configuration serializes");
    let defaults = serde_json::to_value(Config::default()).expect("the configuration serializes");
    let mut out = Vec::new();
    walk(&shape, Some(&defaults), "", &mut out);
    out
}

/// `defaults` is `None` inside an optional section that is unset by default (`tls`):
/// there the shape alone says which keys are optional.
fn walk(shape: &Value, defaults: Option<&Value>, prefix: &str, out: &mut Vec<Leaf>) {
    let Value::Object(fields) = shape else { return };
    for (name, value) in fields {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if DYNAMIC_TABLES.contains(&path.as_str()) {
            continue;
        }
        let default = defaults.and_then(|d| d.get(name)).filter(|d| !d.is_null());
        match value {
            Value::Object(_) => walk(value, default, &path, out),
            _ => {
                let nullable = if defaults.is_some() { default.is_none() } else { value.is_null() };
                out.push(Leaf { path, kind: kind_of(value), nullable, default: default.cloned().unwrap_or(Value::Null) });
            }
        }
    }
}

fn kind_of(value: &Value) -> Kind {
    match value {
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_u64() || n.is_i64() => Kind::Integer,
        Value::Number(_) => Kind::Float,
        Value::Array(items) => Kind::List(Box::new(items.first().map_or(Kind::Text, kind_of))),
        Value::Null | Value::String(_) | Value::Object(_) => Kind::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_their_kinds_come_from_the_configuration() {
        let leaves = leaves();
        let find = |path: &str| leaves.iter().find(|l| l.path == path).unwrap_or_else(|| panic!("no key {path}"));
        assert_eq!(find("http.max_connections").kind, Kind::Integer);
        assert_eq!(find("outbox.enabled").kind, Kind::Bool);
        assert_eq!(find("visa.jws_algorithms").kind, Kind::List(Box::new(Kind::Text)));
        assert_eq!(find("saas.simulator").kind, Kind::Bool);
        assert!(find("saas.simulator").nullable && find("saas.base_url").nullable && find("tls.client_ca").nullable);
        assert!(!find("tls.cert").nullable && !find("outbox.queue").nullable && !find("keys_dir").nullable);
        assert_eq!(find("http.header_read_timeout").env_name(), "CTP_HTTP_HEADER_READ_TIMEOUT");
        assert_eq!(find("http.header_read_timeout").default, "10s");
        assert_eq!(find("outbox.amqp_url").default, crate::setting::REDACTED);
        assert!(!leaves.iter().any(|l| l.path.starts_with("tenants")));
    }

    #[test]
    fn derived_names_are_unique_and_aliases_name_real_keys() {
        let leaves = leaves();
        let mut names: Vec<String> = leaves.iter().map(Leaf::env_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), leaves.len(), "two keys derive one variable name");
        for (alias, path) in ALIASES {
            assert!(leaves.iter().any(|l| l.path == *path), "{alias} names no key {path}");
            assert!(!names.contains(&alias.to_string()), "{alias} is also a derived name");
        }
    }
}
