//! The layers put together. The file and the environment each set some keys of one tree
//! (a JSON value); serde then reads the tree into [`Config`], and every key neither set
//! takes its section's default. A key that does not read is reported under the name it
//! was set by: the variable, or the file and its line.

use std::path::Path;

use serde_json::{Map, Value};

use super::env::Assignment;
use super::schema::env_name;
use super::{Config, ConfigError};
use crate::setting::{Problem, Problems};

/// The config file: its name (for messages) and its text.
pub(super) struct FileLayer<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub tree: Value,
}

impl<'a> FileLayer<'a> {
    pub fn parse(path: &'a Path, text: &'a str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| file_error(path, text, e))?;
        Ok(Self { path, text, tree: from_toml(toml::Value::Table(table)) })
    }

    /// The file's own complaint about `key`, with its line, as the TOML reader words it.
    fn error(&self, key: &str, message: &str) -> ConfigError {
        match toml::from_str::<Config>(self.text) {
            Err(e) => file_error(self.path, self.text, e),
            Ok(_) => ConfigError::Parse { path: self.path.to_owned(), message: format!("{key}: {message}") },
        }
    }
}

/// The TOML reader's complaint with its line, column and key, but not the excerpt of the
/// file that its `Display` adds: the line quoted may be the one holding a password
/// (`url = "postgres://user:password@…"`, refused for its scheme or a stray character).
fn file_error(path: &Path, text: &str, e: toml::de::Error) -> ConfigError {
    let what = e.message().trim_end();
    let message = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let in_line = before.rsplit('\n').next().unwrap_or_default();
            let column = in_line.chars().count() + 1;
            // A value's span starts after its key, which the message does not always name.
            match in_line.split_once('=').map(|(key, _)| key.trim()).filter(|key| !key.is_empty() && key.chars().count() <= 64) {
                Some(key) => format!("line {line}, column {column}, {key}: {what}"),
                None => format!("line {line}, column {column}: {what}"),
            }
        }
        None => what.to_owned(),
    };
    ConfigError::Parse { path: path.to_owned(), message }
}

/// The file's tree with the environment's keys set over it, read into a [`Config`]. A
/// variable whose value does not read is left out (the file's value, or the default,
/// stands) and returned as a problem, so that every bad variable is reported in one go.
pub(super) fn assemble(file: Option<&FileLayer<'_>>, assignments: &[Assignment]) -> Result<(Config, Problems), ConfigError> {
    let base = file.map_or_else(|| Value::Object(Map::new()), |f| f.tree.clone());
    let mut live: Vec<&Assignment> = assignments.iter().collect();
    let mut problems = Problems::new();
    loop {
        let mut tree = base.clone();
        for a in &live {
            set(&mut tree, &a.path, a.value.clone());
        }
        let error = match serde_path_to_error::deserialize::<_, Config>(tree) {
            Ok(config) => return Ok((config, problems)),
            Err(e) => e,
        };
        let at = error.path().to_string();
        let message = error.inner().to_string();
        // The variables that set this key, or a key inside the table that failed.
        let (blamed, kept): (Vec<&Assignment>, Vec<&Assignment>) = live.iter().partition(|a| within(&at, &a.path) || within(&a.path, &at));
        if blamed.is_empty() {
            return Err(match file {
                Some(file) => file.error(&at, &message),
                None => ConfigError::Invalid(Problem::at(at, message).into()),
            });
        }
        for a in &blamed {
            problems.push(Problem::at(&a.var, explain(&at, &message)));
        }
        live = kept;
    }
}

/// Whether `path` is `table` or a key inside it (`tls.cert` is within `tls`).
fn within(path: &str, table: &str) -> bool {
    path == table || path.strip_prefix(table).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// serde's message, made to say what to do when it only says what is missing: setting
/// `CTP_TLS_CERT` alone leaves `tls.key` missing.
fn explain(at: &str, message: &str) -> String {
    match message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        Some(field) => {
            let key = if at == "." { field.to_owned() } else { format!("{at}.{field}") };
            format!("{key} must be set too ({} or the file's {key})", env_name(&key))
        }
        None => message.to_owned(),
    }
}

/// Sets `path` (dotted) in `tree`, making the tables on the way.
fn set(tree: &mut Value, path: &str, value: Value) {
    let mut node = tree;
    for part in path.split('.') {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node.as_object_mut().expect("made a table above").entry(part).or_insert(Value::Null);
    }
    *node = value;
}

/// TOML's values as JSON's; a date or time becomes its text (no key takes one).
fn from_toml(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(from_toml).collect()),
        toml::Value::Table(table) => Value::Object(table.into_iter().map(|(k, v)| (k, from_toml(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_makes_the_tables_on_the_way() {
        let mut tree = serde_json::json!({"visa": {"require_iat": false}});
        set(&mut tree, "visa.replay_window", Value::from("2m"));
        set(&mut tree, "tenants.bank-a.bins", serde_json::json!(["4"]));
        assert_eq!(
            tree,
            serde_json::json!({"visa": {"require_iat": false, "replay_window": "2m"}, "tenants": {"bank-a": {"bins": ["4"]}}})
        );
    }

    #[test]
    fn within_follows_the_key_boundaries() {
        assert!(within("tls.cert", "tls") && within("tls", "tls") && within("visa.jws_algorithms[1]", "visa.jws_algorithms"));
        assert!(!within("tls_extra", "tls") && !within("tls", "tls.cert"));
    }

    #[test]
    fn a_missing_companion_is_named_with_its_variable() {
        assert_eq!(explain("tls", "missing field `key`"), "tls.key must be set too (CTP_TLS_KEY or the file's tls.key)");
        assert_eq!(explain("visa.replay_window", "expected a duration"), "expected a duration");
    }
}
