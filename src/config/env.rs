//! The environment layer: every key has a variable, `CTP_` and the key upper-cased with
//! dots as underscores (`http.header_read_timeout` → `CTP_HTTP_HEADER_READ_TIMEOUT`), plus
//! the older names of [`ALIASES`] and `CTP_TENANTS`. A value is read as its key's default
//! is typed: a number, `true`/`false`, a comma-separated list, else text; an empty value
//! unsets an optional key.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_json::Value;

use super::schema::{ALIASES, Kind, Leaf, env_name};
use crate::setting::{Problem, Problems};
use crate::tenants::config::parse_bin_assignments;

/// Variables that are not settings but are known: the config file's path (read by the
/// command line), and the tenants' BIN assignments.
const CONFIG_FILE: &str = "CTP_CONFIG";
const TENANTS: &str = "CTP_TENANTS";

/// Other tools' variables in the same namespace, never warned about.
const FOREIGN_PREFIXES: &[&str] = &["CTP_TEST_"];

/// One variable's value, read, and the key it sets.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Assignment {
    pub var: String,
    pub path: String,
    pub value: Value,
}

/// What the environment says: the keys it sets, the variables that could not be read,
/// and warnings about variables that look like settings but are none.
#[derive(Debug, Default)]
pub(super) struct EnvLayer {
    pub assignments: Vec<Assignment>,
    pub problems: Problems,
    pub warnings: Vec<String>,
}

/// Reads every `CTP_*` variable of `vars` against the keys `leaves`.
pub(super) fn read<K: Into<OsString>, V: Into<OsString>>(vars: impl IntoIterator<Item = (K, V)>, leaves: &[Leaf]) -> EnvLayer {
    let by_name: BTreeMap<String, &Leaf> = leaves
        .iter()
        .map(|l| (l.env_name(), l))
        .chain(ALIASES.iter().filter_map(|(alias, path)| Some(((*alias).to_owned(), leaves.iter().find(|l| l.path == *path)?))))
        .collect();
    let mut layer = EnvLayer::default();
    let mut vars: Vec<(String, OsString)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into().into_string().ok()?, v.into())))
        .filter(|(k, _)| k.starts_with("CTP_"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        if name == CONFIG_FILE {
            continue;
        }
        let known = name == TENANTS || by_name.contains_key(&name);
        if !known {
            layer.warnings.extend(unknown_warning(&name, &by_name));
            continue;
        }
        let Ok(value) = value.into_string() else {
            layer.problems.push(Problem::at(&name, "is not valid UTF-8"));
            continue;
        };
        if name == TENANTS {
            match parse_bin_assignments(&value) {
                Ok(tenants) => layer.assignments.extend(tenants.into_iter().map(|(id, bins)| Assignment {
                    var: name.clone(),
                    path: format!("tenants.{id}.bins"),
                    value: Value::Array(bins.into_iter().map(Value::String).collect()),
                })),
                Err(e) => layer.problems.push(Problem::at(&name, e)),
            }
            continue;
        }
        let leaf = by_name[&name];
        match read_value(&value, &leaf.kind, leaf.nullable) {
            Ok(value) => layer.assignments.push(Assignment { var: name, path: leaf.path.clone(), value }),
            Err(e) => layer.problems.push(Problem::at(&name, e)),
        }
    }
    refuse_disagreeing_aliases(&mut layer);
    layer
}

/// An alias and a derived name may both be set (a base image sets one, a deployment the
/// other) if they agree; if they do not, neither is taken.
fn refuse_disagreeing_aliases(layer: &mut EnvLayer) {
    let mut by_path: BTreeMap<&str, Vec<&Assignment>> = BTreeMap::new();
    for a in &layer.assignments {
        by_path.entry(&a.path).or_default().push(a);
    }
    let mut refused = Vec::new();
    for (path, set) in by_path {
        if set.iter().any(|a| a.value != set[0].value) {
            let names: Vec<&str> = set.iter().map(|a| a.var.as_str()).collect();
            // Values are not shown: either may be a secret.
            layer.problems.push(Problem::new(names.join(" and "), format_args!("set {path} to different values: keep one")));
            refused.push(path.to_owned());
        }
    }
    let mut seen = Vec::new();
    layer.assignments.retain(|a| {
        let first = !seen.contains(&a.path);
        seen.push(a.path.clone());
        first && !refused.contains(&a.path)
    });
}

/// Reads `text` as `kind`, or says what was expected.
fn read_value(text: &str, kind: &Kind, nullable: bool) -> Result<Value, String> {
    if nullable && text.trim().is_empty() {
        return Ok(Value::Null);
    }
    match kind {
        Kind::Text => Ok(Value::String(text.to_owned())),
        Kind::Bool => match text.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        Kind::Integer => {
            let t = text.trim();
            t.parse::<u64>()
                .map(Value::from)
                .or_else(|_| t.parse::<i64>().map(Value::from))
                .map_err(|_| format!("expected a whole number such as 8, got {text:?}"))
        }
        Kind::Float => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("expected a number such as 0.5, got {text:?}")),
        Kind::List(item) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| read_value(t, item, false))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
            .map_err(|e| format!("a comma-separated list, item: {e}")),
    }
}

/// A warning for a `CTP_*` variable that is no setting but looks like one: a misspelt
/// name, or one under a section's prefix. Others' variables pass in silence.
fn unknown_warning(name: &str, known: &BTreeMap<String, &Leaf>) -> Option<String> {
    if FOREIGN_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let candidates = known.keys().map(String::as_str).chain([CONFIG_FILE, TENANTS]);
    let (distance, nearest) = candidates.map(|k| (edit_distance(name, k), k)).min()?;
    if distance <= 3 {
        return Some(format!("{name} is not a setting and is ignored; did you mean {nearest}?"));
    }
    let mut sections = known.values().filter_map(|l| l.path.split_once('.')).map(|(s, _)| env_name(s) + "_").chain([format!("{TENANTS}_")]);
    let section = sections.find(|p| name.starts_with(p.as_str()))?;
    Some(format!("{name} is not a setting and is ignored: no key under {section}* has that name (see docs/configuration.md)"))
}

/// Levenshtein distance, over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::schema::leaves;
    use super::*;

    fn read_pairs(pairs: &[(&str, &str)]) -> EnvLayer {
        read(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), &leaves())
    }

    fn set(layer: &EnvLayer, path: &str) -> Option<Value> {
        layer.assignments.iter().find(|a| a.path == path).map(|a| a.value.clone())
    }

    #[test]
    fn values_are_read_as_their_defaults_are_typed() {
        let layer = read_pairs(&[
            ("CTP_HTTP_MAX_CONNECTIONS", "64"),
            ("CTP_OUTBOX_ENABLED", "false"),
            ("CTP_VISA_JWS_ALGORITHMS", "PS256, RS256,"),
            ("CTP_SAAS_SIMULATOR", "true"),
            ("CTP_OUTBOX_EXCHANGE", ""),
            ("CTP_OUTBOX_QUEUE", ""),
            ("PATH", "/bin"),
        ]);
        assert!(layer.problems.is_empty(), "{}", layer.problems);
        assert_eq!(set(&layer, "http.max_connections"), Some(Value::from(64)));
        assert_eq!(set(&layer, "outbox.enabled"), Some(Value::Bool(false)));
        assert_eq!(set(&layer, "visa.jws_algorithms"), Some(serde_json::json!(["PS256", "RS256"])));
        assert_eq!(set(&layer, "saas.simulator"), Some(Value::Bool(true)));
        // Empty unsets an optional key, and is plain text for a required one.
        assert_eq!(set(&layer, "outbox.exchange"), Some(Value::Null));
        assert_eq!(set(&layer, "outbox.queue"), Some(Value::from("")));
    }

    #[test]
    fn values_that_do_not_read_name_the_variable_and_the_form() {
        let layer = read_pairs(&[("CTP_OUTBOX_BATCH_SIZE", "many"), ("CTP_OUTBOX_ENABLED", "yes please"), ("CTP_SAAS_SIMULATOR", "on")]);
        let text = layer.problems.to_string();
        assert!(text.contains("CTP_OUTBOX_BATCH_SIZE: expected a whole number such as 8, got \"many\""), "{text}");
        assert!(text.contains("CTP_OUTBOX_ENABLED: expected true or false, got \"yes please\""), "{text}");
        assert!(text.contains("CTP_SAAS_SIMULATOR: expected true or false"), "{text}");
        assert!(layer.assignments.is_empty());
    }

    #[test]
    fn an_alias_and_its_derived_name_must_agree() {
        let layer = read_pairs(&[("CTP_PUBLIC_ADDR", "0.0.0.0:80"), ("CTP_LISTEN_PUBLIC", "0.0.0.0:80")]);
        assert!(layer.problems.is_empty());
        assert_eq!(layer.assignments.len(), 1);
        let layer = read_pairs(&[("CTP_AMQP_URL", "amqp://u:hunter2@a/"), ("CTP_OUTBOX_AMQP_URL", "amqp://u:other@b/")]);
        let text = layer.problems.to_string();
        assert_eq!(text, "CTP_AMQP_URL and CTP_OUTBOX_AMQP_URL set outbox.amqp_url to different values: keep one");
        assert!(layer.assignments.is_empty());
    }

    #[test]
    fn tenants_set_the_bins_of_the_tenants_they_name() {
        let layer = read_pairs(&[("CTP_TENANTS", "bank-a=411111,401288;bank-b=5222")]);
        assert_eq!(set(&layer, "tenants.bank-a.bins"), Some(serde_json::json!(["411111", "401288"])));
        assert_eq!(set(&layer, "tenants.bank-b.bins"), Some(serde_json::json!(["5222"])));
        let layer = read_pairs(&[("CTP_TENANTS", "bank-a:411111")]);
        assert!(layer.problems.to_string().starts_with("CTP_TENANTS: expected ID=BIN,BIN;ID2=BIN"), "{}", layer.problems);
    }

    #[test]
    fn a_variable_that_looks_like_a_setting_is_warned_about_others_are_not() {
        let layer = read_pairs(&[
            ("CTP_HTTP_IDLE_TIMOUT", "5s"),
            ("CTP_SAAS_RETRIES", "5"),
            ("CTP_TEST_POSTGRES_URL", "postgres://x"),
            ("CTP_CONFIG", "/etc/x.toml"),
            ("CTP_SOMETHING_ELSE_ENTIRELY", "1"),
            ("CTP_TENANTS_BANK_A", "4111"),
        ]);
        assert_eq!(layer.warnings.len(), 3, "{:?}", layer.warnings);
        assert_eq!(layer.warnings[0], "CTP_HTTP_IDLE_TIMOUT is not a setting and is ignored; did you mean CTP_HTTP_IDLE_TIMEOUT?");
        assert!(layer.warnings[1].starts_with("CTP_SAAS_RETRIES is not a setting"), "{:?}", layer.warnings);
        assert!(layer.warnings[2].starts_with("CTP_TENANTS_BANK_A is not a setting"), "{:?}", layer.warnings);
        assert!(layer.problems.is_empty() && layer.assignments.is_empty());
    }

    #[test]
    fn edit_distance_counts_single_byte_edits() {
        assert_eq!(edit_distance("CTP_LOG", "CTP_LOG"), 0);
        assert_eq!(edit_distance("CTP_LGO", "CTP_LOG"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
