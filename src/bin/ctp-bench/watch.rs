//! What a long run needs besides latencies: the server's CPU and resident memory sampled
//! through the run, and the outbox's backlog (`ctp_outbox_waiting_events` on the admin
//! listener), so that growth shows, and how long the relay takes to empty the outbox once
//! the load stops.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

use super::load::{proc_cpu, proc_status_kib};

/// One reading.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    pub cpu: Option<Duration>,
    pub rss_kib: Option<u64>,
    /// Events waiting in the outbox, as the relay last counted them.
    pub backlog: Option<u64>,
}

/// What the watcher saw.
#[derive(Debug, Default)]
pub struct Watched {
    pub samples: Vec<Sample>,
    /// From the load's end until the outbox was empty (`None`: it did not empty in time).
    pub drained_after: Option<Duration>,
}

/// The admin listener's metrics page.
async fn metrics_page(admin: SocketAddr) -> Option<String> {
    let (status, body) = ctp_issuer::sim::client::send(&admin.to_string(), None, Method::GET, "/metrics", Bytes::new()).await.ok()?;
    (status == StatusCode::OK).then(|| String::from_utf8_lossy(&body).into_owned())
}

/// The sum of a metric's series (every label set) on a metrics page.
fn sum_of(page: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.rsplit_once('}')?.1,
                None => rest,
            };
            value.trim().parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The backlog the relay last counted (`ctp_outbox_waiting_events`, refreshed every
/// `outbox.poll_interval`): what an operator's dashboard shows.
async fn backlog(admin: SocketAddr) -> Option<u64> {
    sum_of(&metrics_page(admin).await?, "ctp_outbox_waiting_events").map(|v| v.max(0.0) as u64)
}

/// Events the relay has published so far (`ctp_outbox_published_total`, counted as each
/// batch is confirmed).
pub async fn published(admin: SocketAddr) -> Option<u64> {
    Some(sum_of(&metrics_page(admin).await?, "ctp_outbox_published_total").unwrap_or(0.0) as u64)
}

/// Samples every `every` until `stop` is cancelled.
pub async fn sample(
    pid: Option<u32>,
    admin: Option<SocketAddr>,
    every: Duration,
    started: Instant,
    stop: CancellationToken,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let backlog = match admin {
            Some(a) => backlog(a).await,
            None => None,
        };
        samples.push(Sample {
            at: started.elapsed(),
            cpu: pid.and_then(proc_cpu),
            rss_kib: pid.and_then(|p| proc_status_kib(p, "VmRSS")),
            backlog,
        });
    }
    samples
}

/// Polls until the relay has published `target` events in all, for at most `timeout`:
/// exact to the poll (100 ms), where the backlog gauge is as old as the relay's last count.
pub async fn drain(admin: SocketAddr, target: u64, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if published(admin).await.is_some_and(|n| n >= target) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

impl Watched {
    pub fn max_backlog(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.backlog).max()
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.rss_kib).max()
    }

    /// RSS one minute in, and at the end: "flat after the first minute" means the two
    /// stay close.
    pub fn rss_at_one_minute_and_end_kib(&self) -> (Option<u64>, Option<u64>) {
        let at_one_minute = self.samples.iter().find(|s| s.at >= Duration::from_secs(60)).and_then(|s| s.rss_kib);
        (at_one_minute, self.samples.iter().rev().find_map(|s| s.rss_kib))
    }

    /// Server CPU per request in the first and the last `window` of the run, given the
    /// request rate: flat means the two are close.
    pub fn cpu_per_request_us(&self, window: Duration, rate: f64) -> (Option<f64>, Option<f64>) {
        let with_cpu: Vec<&Sample> = self.samples.iter().filter(|s| s.cpu.is_some()).collect();
        let per = |a: &Sample, b: &Sample| {
            let cpu = b.cpu?.checked_sub(a.cpu?)?;
            let secs = (b.at - a.at).as_secs_f64();
            (secs > 0.0).then(|| cpu.as_secs_f64() * 1e6 / (secs * rate))
        };
        let (Some(first), Some(last)) = (with_cpu.first(), with_cpu.last()) else { return (None, None) };
        let early = with_cpu.iter().find(|s| s.at >= first.at + window).and_then(|b| per(first, b));
        let late = with_cpu.iter().rev().find(|s| s.at + window <= last.at).and_then(|a| per(a, last));
        (early, late)
    }

    /// `key=value` pairs for a results line.
    pub fn kv(&self, window: Duration, rate: Option<f64>) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let (early, late) = rate.map_or((None, None), |r| self.cpu_per_request_us(window, r));
        let kib = |v: Option<u64>| v.map_or("-".to_owned(), |k| k.to_string());
        let (one_minute, end) = self.rss_at_one_minute_and_end_kib();
        format!(
            "max_backlog={} drain_s={} sampled_peak_rss_kib={} rss_1m_kib={} rss_end_kib={} cpu_first_window_us={} cpu_last_window_us={}",
            self.max_backlog().map_or("-".to_owned(), |b| b.to_string()),
            self.drained_after.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64())),
            kib(self.peak_rss_kib()),
            kib(one_minute),
            kib(end),
            opt(early),
            opt(late),
        )
    }
}
