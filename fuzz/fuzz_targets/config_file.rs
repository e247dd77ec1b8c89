//! The configuration loader, `Config::from_layers`, with an arbitrary TOML file and
//! arbitrary `CTP_*` variables (a `ConfigCase`). Never a panic; and no error, warning or
//! printed configuration shows a secret: the marker `S3CR3T` is looked for in what comes
//! out whenever every place it was put in is a secret one (database.url unless SQLite,
//! outbox.amqp_url, saas.api_key, in the file or in their variables).

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use ctp_issuer::Config;
use ctp_issuer_fuzz::ConfigCase;
use libfuzzer_sys::fuzz_target;

const MARKER: &str = "S3CR3T";

/// The secret keys, as `(table, key)`.
const SECRET_KEYS: &[(&str, &str)] = &[("database", "url"), ("outbox", "amqp_url"), ("saas", "api_key")];
/// Their variables.
const SECRET_VARS: &[&str] = &["CTP_DATABASE_URL", "CTP_AMQP_URL", "CTP_OUTBOX_AMQP_URL", "CTP_SAAS_API_KEY"];

fn count(text: &str) -> usize {
    text.matches(MARKER).count()
}

/// A SQLite URL is a file path, shown on purpose; any other database URL may hold a password.
fn is_secret_value(table: &str, value: &str) -> bool {
    table != "database" || !value.trim().starts_with("sqlite:")
}

/// Markers in the file that are in secret values, and whether those are all its markers.
fn file_secrets(text: &str) -> (usize, bool) {
    let raw = count(text);
    if raw == 0 {
        return (0, true);
    }
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => {
            let mut secret = 0;
            for (section, key) in SECRET_KEYS {
                if let Some(toml::Value::String(value)) = table.get(*section).and_then(|t| t.get(key))
                    && is_secret_value(section, value)
                {
                    secret += count(value);
                }
            }
            // Comments, keys and other values hold none (escapes may make more, not fewer).
            (secret, all_markers(&toml::Value::Table(table)) == secret && raw <= secret)
        }
        // A file that does not parse: a marker counts as secret on a line that assigns a
        // secret key (under its table, or dotted), in the value.
        Err(_) => {
            let mut table = String::new();
            let mut secret = 0;
            for line in text.lines() {
                let trimmed = line.trim();
                if trimmed.starts_with('[') {
                    table = trimmed.trim_matches(['[', ']', ' ']).to_owned();
                }
                let Some((key, value)) = line.split_once('=') else { continue };
                let key = key.trim().trim_matches('"');
                let secret_line = SECRET_KEYS.iter().any(|(t, k)| {
                    ((table == *t && key == *k) || (table.is_empty() && key == format!("{t}.{k}")))
                        && is_secret_value(t, value.trim().trim_start_matches(['"', '\'']))
                });
                if secret_line && count(key) == 0 {
                    secret += count(value);
                }
            }
            (secret, secret == raw)
        }
    }
}

fn all_markers(value: &toml::Value) -> usize {
    match value {
        toml::Value::String(s) => count(s),
        toml::Value::Array(items) => items.iter().map(all_markers).sum(),
        toml::Value::Table(table) => table.iter().map(|(k, v)| count(k) + all_markers(v)).sum(),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let case = ConfigCase::parse(data);
    let text = String::from_utf8_lossy(case.file);
    let env: Vec<(OsString, OsString)> =
        case.env.iter().map(|(name, value)| (OsString::from_vec(name.to_vec()), OsString::from_vec(value.to_vec()))).collect();

    // Is every marker in a secret place?
    let (in_file, file_only_secrets) = file_secrets(&text);
    let mut env_secret = 0;
    let mut env_all = 0;
    for (name, value) in &case.env {
        let (name, value) = (String::from_utf8_lossy(name), String::from_utf8_lossy(value));
        env_all += count(&name) + count(&value);
        if SECRET_VARS.contains(&name.as_ref()) && is_secret_value(if name == "CTP_DATABASE_URL" { "database" } else { "" }, &value) {
            env_secret += count(&value);
        }
    }
    let check = file_only_secrets && env_all == env_secret && in_file + env_secret > 0;

    let file = (!case.file.is_empty()).then(|| (Path::new("ctp-issuer.toml"), text.as_ref()));
    match Config::from_layers(file, env) {
        Ok(loaded) => {
            let _ = loaded.config.saas_choice();
            let _ = loaded.config.is_embedded_shape();
            if check {
                for (what, out) in [
                    ("the configuration's Debug", format!("{:?}", loaded.config)),
                    ("the configuration serialized", serde_json::to_string(&loaded.config).expect("a configuration serializes")),
                    ("a warning", loaded.warnings.join("\n")),
                ] {
                    assert!(!out.contains(MARKER), "{what} shows a secret: {out}");
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            if check {
                assert!(!text.contains(MARKER), "a configuration error shows a secret: {text}");
            }
        }
    }
});
