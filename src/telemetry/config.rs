//! The `[log]` section: what the service logs, and in which form.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::setting::{Problem, Problems};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for a log pipeline.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`, to stderr. Default: `text`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `ctp_issuer=debug,sqlx=warn`. Checked at start:
    /// a filter that does not parse is refused rather than replaced. Default: `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info".into() }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), Problems> {
        match EnvFilter::try_new(&self.filter) {
            Ok(_) => Ok(()),
            Err(e) => Err(Problem::new("log.filter", format_args!("{:?} is not a tracing filter: {e}", self.filter)).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_does_not_parse_is_refused_with_its_own_error() {
        assert!(LogConfig { filter: "ctp_issuer=debug,sqlx=warn".into(), ..LogConfig::default() }.validate().is_ok());
        let err = LogConfig { filter: "[[bad".into(), ..LogConfig::default() }.validate().unwrap_err().to_string();
        assert!(err.starts_with("log.filter \"[[bad\" is not a tracing filter: "), "{err}");
    }
}
