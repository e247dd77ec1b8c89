//! The `[enrollment]` section: the enrollment loop's background work, reconciling
//! requests left IN_PROGRESS.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// A request IN_PROGRESS this long without a callback is polled through `/status`.
    /// Default: 30s.
    #[serde(with = "crate::setting::duration")]
    pub reconcile_after: Duration,
    /// How often the reconciler looks for such requests. Default: 5s.
    #[serde(with = "crate::setting::duration")]
    pub reconcile_interval: Duration,
    /// Requests polled at once, per replica. Default: 4.
    pub reconcile_concurrency: usize,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self { reconcile_after: Duration::from_secs(30), reconcile_interval: Duration::from_secs(5), reconcile_concurrency: 4 }
    }
}

impl EnrollmentConfig {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        problems.require(self.reconcile_concurrency >= 1, "enrollment.reconcile_concurrency", "must be at least 1");
        problems.require(!self.reconcile_interval.is_zero(), "enrollment.reconcile_interval", "must be positive");
        problems.into_result()
    }
}
