//! The one way tests wait for something to happen, instead of sleeping and hoping: poll a
//! probe until it answers, with a deadline far above what the event takes on a loaded
//! machine (the wait ends as soon as the event is there, so a generous deadline costs
//! nothing when things work).

use std::future::Future;
use std::time::Duration;

/// How often a probe is asked.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it answers `Some`, or until `within` has passed (then `None`).
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`], failing the test with `what` if the event does not come.
pub async fn until<T, F, Fut>(what: &str, within: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match eventually(within, probe).await {
        Some(value) => value,
        None => panic!("timed out after {within:?} waiting for {what}"),
    }
}
