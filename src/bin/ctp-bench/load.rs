//! The load generator shared by `bench notify` and `bench enroll`: a closed loop at a fixed
//! concurrency or an open loop at a fixed rate, one persistent HTTP/1.1 connection per
//! worker, all workers on the caller's (current-thread) runtime; and what it measures:
//! latency percentiles, statuses, and the CPU and peak RSS of the processes involved, read
//! from `/proc`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Linux reports `/proc/<pid>/stat` CPU times in USER_HZ ticks, 100 per second on every
/// architecture Rust targets (it is part of the user-space ABI, independent of CONFIG_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// Accepts `http://host:port`, `host:port`; the host must be a loopback address literal
/// or `localhost`. Anything else is refused: this tool never sends load off the machine.
pub fn loopback_target(target: &str) -> anyhow::Result<SocketAddr> {
    let rest = match target.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => bail!("only http:// targets are supported, not {scheme}://"),
        None => target,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = match authority.strip_prefix("localhost:") {
        Some(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.parse().context("bad port")?),
        None => {
            authority.parse::<SocketAddr>().with_context(|| format!("`{target}` is not an IP:port (a loopback address is required)"))?
        }
    };
    if !addr.ip().is_loopback() {
        bail!("refusing to send load to {addr}: only loopback targets (127.0.0.0/8, ::1) are allowed");
    }
    Ok(addr)
}

/// The limits every load mode shares, checked before anything is built.
pub(super) fn check_load_args(concurrency: usize, rate: Option<f64>, count: usize) -> anyhow::Result<()> {
    if concurrency == 0 || concurrency > 4096 {
        bail!("--concurrency must be 1 to 4096");
    }
    if rate.is_some_and(|r| !(r > 0.0 && r <= 1_000_000.0)) {
        bail!("--rate must be above 0 and at most 1000000 per second");
    }
    if count == 0 {
        bail!("--count must be at least 1");
    }
    Ok(())
}

/// Makes the `i`-th request of a run. It is called inside the timed loop, so it only
/// clones what was built before the clock started (ref-counted bodies, header values, URIs).
pub(super) type MakeRequest = Arc<dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync>;

/// Headers every request to `addr` carries: `Host` and a JSON content type.
pub(super) fn base_headers(addr: SocketAddr) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    Ok(vec![
        (header::HOST, HeaderValue::from_str(&addr.to_string())?),
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
    ])
}

/// A request from parts that were all validated when they were built, so that making it
/// cannot fail inside the timed loop.
pub(super) fn request(method: Method, uri: Uri, headers: &[(HeaderName, HeaderValue)], body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    for (name, value) in headers {
        map.insert(name.clone(), value.clone());
    }
    request
}

/// The load shape `notify` and `enroll` share on the command line: connections, rate,
/// time, whose CPU to read, and how to print. Each command adds its own target, count and
/// warm-up.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Connections, one request in flight on each (closed loop).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Requests per second, spread over the connections (open loop: latency counts from
    /// when a request was due, so a stalled server is not hidden).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this long (at most 10 minutes).
    #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub duration: Duration,
    /// The server's process id, for its CPU time and peak RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also count the CPU of every process with this name (e.g. `postgres`).
    #[arg(long)]
    pub db_process: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::Format,
}

impl LoadArgs {
    /// The checked plan against `addr` for a run of `count` requests.
    pub(super) fn plan(&self, addr: SocketAddr, count: usize) -> anyhow::Result<LoadPlan> {
        check_load_args(self.concurrency, self.rate, count)?;
        Ok(LoadPlan {
            addr,
            concurrency: self.concurrency,
            rate: self.rate,
            duration: self.duration.min(super::MAX_DURATION),
            server_pid: self.server_pid,
            db_process: self.db_process.clone(),
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct LoadPlan {
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub server_pid: Option<u32>,
    pub db_process: Option<String>,
}

impl LoadPlan {
    /// The same plan without the `/proc` readings (for warm-up and setup phases).
    pub fn unmeasured(&self) -> Self {
        Self { server_pid: None, db_process: None, ..self.clone() }
    }
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// The `exception.errorCode` of non-2xx answers that carry one (the internal API's).
    pub error_codes: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub wall: Duration,
    /// Sorted, microseconds.
    latencies_us: Vec<u32>,
    pub server_cpu: Option<Duration>,
    pub server_peak_rss_kib: Option<u64>,
    pub generator_cpu: Option<Duration>,
    pub db_cpu: Option<Duration>,
}

#[derive(Default)]
struct WorkerStats {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    error_codes: BTreeMap<String, u64>,
    transport_errors: u64,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The internal API's error code in an error answer (`Y113`, …), if it has one. Only a
/// short code of letters and digits is taken, so nothing else of a body is ever shown.
pub(super) fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("exception")?.get("errorCode")?.as_str()?;
    (!code.is_empty() && code.len() <= 8 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| code.to_owned())
}

/// Sends requests `range` (made by `make`), each once, and measures.
pub(super) async fn drive(plan: &LoadPlan, make: MakeRequest, range: std::ops::Range<usize>) -> anyhow::Result<LoadReport> {
    // Connections first, so that the clock measures requests, not handshakes.
    let mut senders = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        senders.push(connect(plan.addr).await.with_context(|| format!("connecting to {}", plan.addr))?);
    }
    let next = Arc::new(AtomicUsize::new(range.start));

    let server_before = plan.server_pid.and_then(proc_cpu);
    let db_before = plan.db_process.as_deref().map(processes_cpu);
    let self_before = proc_cpu(std::process::id());
    let t0 = Instant::now();
    let deadline = t0 + plan.duration;

    let mut workers = Vec::with_capacity(plan.concurrency);
    for sender in senders {
        let (next, make) = (next.clone(), make.clone());
        let (rate, start, end, addr) = (plan.rate, range.start, range.end, plan.addr);
        workers.push(tokio::spawn(async move {
            let mut sender = Some(sender);
            let mut stats = WorkerStats::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let due = match rate {
                    Some(r) => t0 + Duration::from_secs_f64((i - start) as f64 / r),
                    None => Instant::now(),
                };
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let started = if rate.is_some() { due } else { Instant::now() };
                if sender.is_none() {
                    match connect(addr).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            stats.transport_errors += 1;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                let request = make(i);
                let result = async {
                    s.ready().await?;
                    let response = s.send_request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                }
                .await;
                match result {
                    Ok((status, body)) => {
                        let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        stats.latencies_us.push(us);
                        *stats.statuses.entry(status.as_u16()).or_default() += 1;
                        if !status.is_success()
                            && let Some(code) = error_code(&body)
                        {
                            *stats.error_codes.entry(code).or_default() += 1;
                        }
                    }
                    Err(_) => {
                        stats.transport_errors += 1;
                        sender = None;
                    }
                }
            }
            stats
        }));
    }
    let mut report = LoadReport::default();
    for worker in workers {
        let stats = worker.await?;
        report.latencies_us.extend(stats.latencies_us);
        for (status, n) in stats.statuses {
            *report.statuses.entry(status).or_default() += n;
        }
        for (code, n) in stats.error_codes {
            *report.error_codes.entry(code).or_default() += n;
        }
        report.transport_errors += stats.transport_errors;
    }
    report.wall = t0.elapsed();
    report.sent = report.latencies_us.len() as u64 + report.transport_errors;
    report.latencies_us.sort_unstable();
    report.server_cpu = match (server_before, plan.server_pid.and_then(proc_cpu)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    report.server_peak_rss_kib = plan.server_pid.and_then(|p| proc_status_kib(p, "VmHWM"));
    report.generator_cpu = match (self_before, proc_cpu(std::process::id())) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    report.db_cpu = match (db_before, plan.db_process.as_deref().map(processes_cpu)) {
        (Some(before), Some(after)) => {
            Some(after.iter().map(|(pid, cpu)| cpu.saturating_sub(before.get(pid).copied().unwrap_or_default())).sum())
        }
        _ => None,
    };
    Ok(report)
}

/// Runs `work` on a runtime of its own with one thread, on a thread of its own, so that
/// the generator never takes more than one of the cores it shares with the server.
pub(super) async fn on_one_thread<T, F>(work: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let generator = std::thread::spawn(move || runtime.block_on(work()));
    tokio::task::spawn_blocking(move || generator.join()).await?.map_err(|_| anyhow::anyhow!("load generator thread panicked"))?
}

impl LoadReport {
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    pub fn non_200(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| **s != 200).map(|(_, n)| n).sum()
    }

    pub fn requests_per_second(&self) -> f64 {
        let answered = self.latencies_us.len() as f64;
        answered / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `q`-quantile (0..=1) of latency, in milliseconds (nearest rank).
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize).clamp(1, self.latencies_us.len());
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }

    /// `cpu` spread over the answered requests, in microseconds.
    pub fn per_request_us(&self, cpu: Option<Duration>) -> Option<f64> {
        let answered = self.latencies_us.len();
        cpu.filter(|_| answered > 0).map(|c| c.as_secs_f64() * 1e6 / answered as f64)
    }

    fn cores(&self, cpu: Option<Duration>) -> Option<f64> {
        cpu.map(|c| c.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }

    /// `Y113×3, Y500×1`, or empty.
    pub fn error_codes_text(&self, separator: &str) -> String {
        self.error_codes.iter().map(|(code, n)| format!("{code}:{n}")).collect::<Vec<_>>().join(separator)
    }

    /// The human-readable report, under `title` (e.g. `bench notify: mode rsa`).
    pub fn print_text(&self, title: &str, concurrency: usize, rate: Option<f64>) {
        let how = match rate {
            Some(r) => format!("rate {r}/s over {concurrency} connections"),
            None => format!("concurrency {concurrency}"),
        };
        println!("{title}, {how}");
        println!(
            "  {} requests in {:.2} s: {:.0} req/s; 200: {}, non-200: {}, transport errors: {}",
            self.sent,
            self.wall.as_secs_f64(),
            self.requests_per_second(),
            self.ok(),
            self.non_200(),
            self.transport_errors
        );
        if self.non_200() > 0 {
            println!("  statuses: {:?}", self.statuses);
        }
        if !self.error_codes.is_empty() {
            println!("  error codes: {}", self.error_codes_text(", "));
        }
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.latency_ms(0.5),
            self.latency_ms(0.9),
            self.latency_ms(0.99),
            self.latency_ms(1.0)
        );
        if let (Some(cpu), Some(us), Some(cores)) = (self.server_cpu, self.per_request_us(self.server_cpu), self.cores(self.server_cpu)) {
            println!("  server: {:.2} CPU-s, {us:.0} CPU-µs per request, {cores:.2} cores busy", cpu.as_secs_f64());
        }
        if let Some(kib) = self.server_peak_rss_kib {
            println!("  server peak RSS: {:.1} MiB", kib as f64 / 1024.0);
        }
        if let (Some(us), Some(cores)) = (self.per_request_us(self.db_cpu), self.cores(self.db_cpu)) {
            println!("  database processes: {us:.0} CPU-µs per request, {cores:.2} cores busy");
        }
        if let (Some(cpu), Some(cores)) = (self.generator_cpu, self.cores(self.generator_cpu)) {
            println!("  load generator: {:.2} CPU-s, {cores:.2} cores", cpu.as_secs_f64());
        }
    }

    /// One line of `key=value` pairs for scripts; `mode` is its first value.
    pub fn kv_line(&self, mode: &str, concurrency: usize, rate: Option<f64>) -> String {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        format!(
            "mode={mode} concurrency={concurrency} rate={} sent={} ok={} non200={} errors={} wall_s={:.3} rps={:.1} \
             p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} server_cpu_us={} server_cores={} peak_rss_kib={} \
             db_cpu_us={} db_cores={} gen_cores={}",
            rate.map_or("-".to_owned(), |r| r.to_string()),
            self.sent,
            self.ok(),
            self.non_200(),
            self.transport_errors,
            self.wall.as_secs_f64(),
            self.requests_per_second(),
            self.latency_ms(0.5),
            self.latency_ms(0.9),
            self.latency_ms(0.99),
            self.latency_ms(1.0),
            opt(self.per_request_us(self.server_cpu), 1),
            opt(self.cores(self.server_cpu), 3),
            self.server_peak_rss_kib.map_or("-".to_owned(), |k| k.to_string()),
            opt(self.per_request_us(self.db_cpu), 1),
            opt(self.cores(self.db_cpu), 3),
            opt(self.cores(self.generator_cpu), 3),
        )
    }
}

// --- /proc --------------------------------------------------------------------------------

/// User + system CPU time of a process (all its threads), from `/proc/<pid>/stat`.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / TICKS_PER_SECOND))
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmHWM` (peak RSS) or `VmRSS`.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time of every process whose command name is `name`, by pid.
fn processes_cpu(name: &str) -> HashMap<u32, Duration> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == name
            && let Some(cpu) = proc_cpu(pid)
        {
            out.insert(pid, cpu);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert_eq!(loopback_target("http://127.0.0.1:8080").unwrap().port(), 8080);
        assert!(loopback_target("127.0.0.2:80").is_ok());
        assert!(loopback_target("[::1]:8080").is_ok());
        assert!(loopback_target("localhost:9090").is_ok());
        for bad in ["http://10.0.0.1:8080", "192.168.1.1:80", "0.0.0.0:8080", "http://example.com:80", "https://127.0.0.1:443", "[::]:80"] {
            assert!(loopback_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proc_readers_see_this_process() {
        let me = std::process::id();
        assert!(proc_cpu(me).is_some());
        assert!(proc_status_kib(me, "VmHWM").is_some_and(|k| k > 0));
    }

    #[test]
    fn error_codes_are_read_from_the_envelope_and_nothing_else() {
        assert_eq!(error_code(br#"{"result":null,"exception":{"errorCode":"Y113"}}"#).as_deref(), Some("Y113"));
        assert_eq!(error_code(b""), None);
        assert_eq!(error_code(br#"{"exception":{"errorCode":"4111111111111111"}}"#), None, "too long to be a code");
        assert_eq!(error_code(br#"{"exception":{"errorCode":"a b"}}"#), None);
    }

    #[test]
    fn load_limits() {
        assert!(check_load_args(16, None, 1).is_ok());
        assert!(check_load_args(0, None, 1).is_err());
        assert!(check_load_args(5000, None, 1).is_err());
        assert!(check_load_args(1, Some(0.0), 1).is_err());
        assert!(check_load_args(1, Some(f64::NAN), 1).is_err());
        assert!(check_load_args(1, None, 0).is_err());
    }
}
