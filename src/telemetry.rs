//! Logs (tracing, to stderr, text or JSON) and metrics (a Prometheus recorder rendered by
//! the admin listener).
//!
//! What is never logged: card numbers (a [`crate::pan::Pan`] prints as `****1234`),
//! decrypted payloads, key material, request bodies. Notification rejections are logged
//! by reason code.

pub mod config;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

use self::config::{LogConfig, LogFormat};

/// Histogram buckets, in seconds, for request and processing times. Explicit so that
/// dashboards can compute quantiles: RSA-mode notifications sit around 1–5 ms, database
/// trouble shows from 100 ms up.
pub const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the global log subscriber. Safe to call more than once (later calls do nothing).
/// A filter that does not parse is an error, never quietly replaced: the loaded
/// configuration has refused it already (`log.filter`).
pub fn init_logging(config: &LogConfig) -> Result<(), ParseError> {
    let filter = EnvFilter::try_new(&config.filter)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// The process's metrics recorder, installed on first use. One per process: tests that
/// run several servers in one process share it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Err: a recorder is installed already (another library's test harness); ours
        // then still renders what it was given.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
