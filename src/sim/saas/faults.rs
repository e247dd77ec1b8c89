//! Fault injection: what the simulator can be told to get wrong, through
//! [`super::SimulatorHandle::set_faults`] or `POST /_sim/faults`.
//!
//! ```json
//! POST /_sim/faults
//! {"failNext": 2, "failWith": "500"}                      // the next 2 submits answer 500 VIDC-5000
//! {"failNext": 1, "failWith": "429", "retryAfterSeconds": 1}
//! {"failNext": 1, "failWith": "timeout", "timeoutHoldMs": 5000}            // hold, never process
//! {"failNext": 1, "failWith": "timeoutAfterAccept", "timeoutHoldMs": 5000} // process, then hold the answer
//! {"extraCallbackDelayMs": 2000}
//! {"duplicateCallbacks": 1}          // every callback sent twice, same webhook-id
//! {"reorderCallbacks": true}         // hold each callback and send it after the next one
//! {"dropCallbacks": true}            // send no callbacks: only /status tells
//! ```
//!
//! Fields left out keep their value; `DELETE /_sim/faults` resets everything; `GET` shows
//! the current set. Only the six operations are failed by `failNext`, never `/status` or
//! `/getData`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a failed submit fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FailMode {
    /// `500 {"errorCode": "VIDC-5000"}`, nothing processed.
    #[default]
    #[serde(rename = "500")]
    ServerError,
    /// `429` with `Retry-After: retryAfterSeconds`, nothing processed.
    #[serde(rename = "429")]
    TooManyRequests,
    /// The connection is held for `timeoutHoldMs` before a 500; nothing processed.
    #[serde(rename = "timeout")]
    Timeout,
    /// The request is accepted (the operation runs) but the 202 is held for
    /// `timeoutHoldMs`: a lost answer, which the client's retry must not turn into a second
    /// operation.
    #[serde(rename = "timeoutAfterAccept")]
    TimeoutAfterAccept,
}

/// The current faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Submits still to fail.
    pub fail_next: u32,
    pub fail_with: FailMode,
    pub retry_after_seconds: u64,
    #[serde(rename = "timeoutHoldMs", with = "millis")]
    pub timeout_hold: Duration,
    #[serde(rename = "extraCallbackDelayMs", with = "millis")]
    pub extra_callback_delay: Duration,
    /// Extra copies of every callback (same `webhook-id`).
    pub duplicate_callbacks: u32,
    pub reorder_callbacks: bool,
    pub drop_callbacks: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_next: 0,
            fail_with: FailMode::ServerError,
            retry_after_seconds: 1,
            timeout_hold: Duration::from_secs(30),
            extra_callback_delay: Duration::ZERO,
            duplicate_callbacks: 0,
            reorder_callbacks: false,
            drop_callbacks: false,
        }
    }
}

/// A partial update of [`Faults`], the body of `POST /_sim/faults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsPatch {
    pub fail_next: Option<u32>,
    pub fail_with: Option<FailMode>,
    pub retry_after_seconds: Option<u64>,
    pub timeout_hold_ms: Option<u64>,
    pub extra_callback_delay_ms: Option<u64>,
    pub duplicate_callbacks: Option<u32>,
    pub reorder_callbacks: Option<bool>,
    pub drop_callbacks: Option<bool>,
}

impl Faults {
    pub fn apply(&mut self, patch: FaultsPatch) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { self.$f = v; } )* };
        }
        set!(fail_next, fail_with, retry_after_seconds, duplicate_callbacks, reorder_callbacks, drop_callbacks);
        if let Some(ms) = patch.timeout_hold_ms {
            self.timeout_hold = Duration::from_millis(ms);
        }
        if let Some(ms) = patch.extra_callback_delay_ms {
            self.extra_callback_delay = Duration::from_millis(ms);
        }
    }

    /// Takes one pending submit failure, if any.
    pub fn take_failure(&mut self) -> Option<FailMode> {
        (self.fail_next > 0).then(|| {
            self.fail_next -= 1;
            self.fail_with
        })
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_changes_only_what_it_names() {
        let mut f = Faults::default();
        let patch: FaultsPatch = serde_json::from_str(r#"{"failNext": 2, "failWith": "429", "extraCallbackDelayMs": 1500}"#).unwrap();
        f.apply(patch);
        assert_eq!((f.fail_next, f.fail_with, f.extra_callback_delay), (2, FailMode::TooManyRequests, Duration::from_millis(1500)));
        assert_eq!(f.timeout_hold, Duration::from_secs(30));
        assert_eq!(f.take_failure(), Some(FailMode::TooManyRequests));
        assert_eq!(f.take_failure(), Some(FailMode::TooManyRequests));
        assert_eq!(f.take_failure(), None);
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["extraCallbackDelayMs"], 1500);
        assert_eq!(json["failWith"], "429");
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"failNxt": 1}"#).is_err());
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"failWith": "418"}"#).is_err());
    }
}
