//! Sending callbacks: signed per [`crate::webhook`], retried while our endpoint is down,
//! and mishandled on demand (dropped, delayed, duplicated, reordered) per the faults in
//! force when the callback is dispatched.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::{Counters, Shared, lock};
use crate::saas::wire::Callback;

/// Longest pause between two tries of one callback.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Takes completed requests' callbacks in order and sends each in its own task (so a slow
/// endpoint does not hold up the others), applying drop and reorder here, where the order
/// is known.
pub(super) async fn dispatch_loop(
    shared: Arc<Shared>,
    mut callbacks: mpsc::UnboundedReceiver<Callback>,
    client: reqwest::Client,
    tracker: TaskTracker,
) {
    let mut held: Option<Callback> = None;
    loop {
        let next = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            next = callbacks.recv() => next,
            // A held callback with no successor in sight goes out after all.
            _ = tokio::time::sleep(shared.config.reorder_max_hold), if held.is_some() => {
                if let Some(h) = held.take() {
                    send(&shared, &client, &tracker, vec![h]);
                }
                continue;
            }
        };
        let Some(callback) = next else { return };
        let faults = lock(&shared.faults).clone();
        if faults.drop_callbacks {
            Counters::bump(&shared.counters.callbacks_dropped);
            tracing::debug!(trace = %callback.request_trace_id, "callback dropped (fault)");
            continue;
        }
        match held.take() {
            // This one first, then the one held back.
            Some(h) => send(&shared, &client, &tracker, vec![callback, h]),
            None if faults.reorder_callbacks => held = Some(callback),
            None => send(&shared, &client, &tracker, vec![callback]),
        }
    }
}

/// Delivers `batch` in order, in one task, with the current extra delay and duplicates.
fn send(shared: &Arc<Shared>, client: &reqwest::Client, tracker: &TaskTracker, batch: Vec<Callback>) {
    let faults = lock(&shared.faults).clone();
    let (shared, client) = (shared.clone(), client.clone());
    tracker.spawn(async move {
        if !faults.extra_callback_delay.is_zero() && !pause(&shared, faults.extra_callback_delay).await {
            return;
        }
        for callback in batch {
            deliver(&shared, &client, &callback, faults.duplicate_callbacks).await;
        }
    });
}

/// Sleeps unless the simulator stops first; false if it did.
async fn pause(shared: &Shared, delay: Duration) -> bool {
    tokio::select! {
        _ = shared.shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// One callback, `1 + copies` times, all with the same `webhook-id`.
async fn deliver(shared: &Shared, client: &reqwest::Client, callback: &Callback, copies: u32) {
    let Some(url) = lock(&shared.callback_url).clone() else {
        Counters::bump(&shared.counters.callbacks_dropped);
        tracing::debug!(trace = %callback.request_trace_id, "no callback URL; callback not sent");
        return;
    };
    let body = match serde_json::to_vec(callback) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            tracing::error!(error = %e, "callback cannot be serialized");
            return;
        }
    };
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    for _ in 0..=copies {
        if !post_with_retries(shared, client, &url, &id, &body).await {
            return;
        }
    }
}

/// Posts until a 2xx or the attempts run out. False only if the simulator is stopping.
async fn post_with_retries(shared: &Shared, client: &reqwest::Client, url: &str, id: &str, body: &Bytes) -> bool {
    let attempts = shared.config.callback_attempts.max(1);
    for attempt in 0..attempts {
        // A fresh timestamp per attempt, as Standard Webhooks senders do.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let timestamp = i64::try_from(now).unwrap_or(i64::MAX);
        let mut request = client.post(url).header(http::header::CONTENT_TYPE, "application/json").body(body.clone());
        for (name, value) in crate::webhook::signature_headers(&shared.config.webhook_secrets, id, timestamp, body) {
            request = request.header(name, value);
        }
        Counters::bump(&shared.counters.callback_attempts);
        let outcome = tokio::select! {
            _ = shared.shutdown.cancelled() => return false,
            r = request.send() => r,
        };
        match outcome {
            Ok(response) if response.status().is_success() => {
                Counters::bump(&shared.counters.callbacks_delivered);
                return true;
            }
            Ok(response) => tracing::debug!(webhook_id = id, status = %response.status(), attempt, "callback refused"),
            Err(e) => tracing::debug!(webhook_id = id, error = %e.without_url(), attempt, "callback not delivered"),
        }
        if attempt + 1 < attempts {
            let delay = shared.config.callback_backoff.saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF);
            if !pause(shared, delay).await {
                return false;
            }
        }
    }
    Counters::bump(&shared.counters.callbacks_failed);
    tracing::warn!(webhook_id = id, attempts, "callback given up");
    true
}
