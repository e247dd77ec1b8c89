//! What every configuration section is built from: values that say what they expect when
//! they do not parse, secrets that never serialize, and problems that name their key.
//!
//! A leaf module: it knows no section, so a section's `config.rs` can use it without an
//! import cycle through [`crate::config`], which assembles the sections.

use std::fmt;

use secrecy::SecretString;
use serde::Serializer;

/// What a secret serializes as. The configuration is serialized to learn its shape (the
/// keys and their types), never to read secrets back.
pub const REDACTED: &str = "[redacted]";

/// One setting that is not acceptable, with its key (`http.max_connections`, or an
/// environment variable's name) and a sentence that says what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    key: String,
    text: String,
}

impl Problem {
    /// `key` followed by what is wrong with it: `http.max_connections must be at least 1`.
    pub fn new(key: impl Into<String>, what: impl fmt::Display) -> Self {
        let key = key.into();
        Self { text: format!("{key} {what}"), key }
    }

    /// `key`, a colon, then the detail: `CTP_PUBLIC_ADDR: expected HOST:PORT …`.
    pub fn at(key: impl Into<String>, detail: impl fmt::Display) -> Self {
        let key = key.into();
        Self { text: format!("{key}: {detail}"), key }
    }

    /// The key or variable the problem is about.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Problem {}

/// Every problem found in one pass, so that an operator fixes them all in one go rather
/// than one restart at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    /// Records `key what` unless `ok`.
    pub fn require(&mut self, ok: bool, key: &str, what: impl fmt::Display) {
        if !ok {
            self.push(Problem::new(key, what));
        }
    }

    /// Takes in the problems of another check.
    pub fn merge(&mut self, checked: Result<(), Problems>) {
        if let Err(more) = checked {
            self.0.extend(more.0);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// `Ok` when nothing was found.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Self {
        Self(vec![problem])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems:", all.len())?;
                for problem in all {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Problems {}

/// Serializes a secret as [`REDACTED`].
pub fn redacted<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(REDACTED)
}

/// Serializes an optional secret as [`REDACTED`] or none.
pub fn redacted_option<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_some(REDACTED),
        None => serializer.serialize_none(),
    }
}

/// A duration written the human way (`90s`, `5m`, `1h 30m`, `250ms`), for
/// `#[serde(with = "crate::setting::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use humantime_serde::re::humantime;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses `text`, or says what a duration looks like.
    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim()).map_err(|_| format!("expected a duration such as 90s, 5m or 1h, got {text:?}"))
    }
}

/// A listening address, `IP:PORT`, for `#[serde(with = "crate::setting::socket_addr")]`.
pub mod socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses `text`, or says what an address looks like.
    pub fn parse(text: &str) -> Result<SocketAddr, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("expected HOST:PORT such as 127.0.0.1:8080 or [::]:8080 (HOST an IP address, not a name), got {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn problems_read_as_one_sentence_or_a_list() {
        let mut problems = Problems::new();
        problems.require(false, "http.max_connections", "must be at least 1");
        assert_eq!(problems.to_string(), "http.max_connections must be at least 1");
        problems.push(Problem::at("CTP_PUBLIC_ADDR", "expected HOST:PORT"));
        assert_eq!(
            problems.to_string(),
            "2 problems:\n  - http.max_connections must be at least 1\n  - CTP_PUBLIC_ADDR: expected HOST:PORT"
        );
        assert_eq!(problems.iter().map(Problem::key).collect::<Vec<_>>(), ["http.max_connections", "CTP_PUBLIC_ADDR"]);
    }

    #[test]
    fn durations_and_addresses_say_what_they_expect() {
        assert_eq!(duration::parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration::parse("forever").unwrap_err(), "expected a duration such as 90s, 5m or 1h, got \"forever\"");
        assert_eq!(socket_addr::parse("127.0.0.1:80").unwrap().port(), 80);
        assert!(socket_addr::parse("garbage").unwrap_err().starts_with("expected HOST:PORT such as 127.0.0.1:8080"));
    }
}
