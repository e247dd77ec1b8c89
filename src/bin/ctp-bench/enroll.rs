//! `bench enroll`: load on the enrollment API, as the issuer's own services use it.
//!
//! The measured request is `POST /click-to-pay/v1/registerEntityAndKit` on the internal
//! listener, with a bearer token minted the way `ctp-issuer token` mints one and the
//! `TENANT` header the API gate requires. Its synchronous answer is what the issuer's
//! services wait for: the registration recorded IN_PROGRESS, the SaaS layer called, its
//! trace id recorded.
//!
//! Every registration is for a customer of its own, so that none is refused as "already
//! registered" (Y110) or "in progress" (Y113), nor replayed from an idempotency key. Before
//! the clock starts, one run builds, for each request, a customer id and card id unique to
//! the run, a complete profile (names, email, phone, locale, country, consent, billing
//! address: what registration requires) and a fresh Luhn-valid Visa-range card, and creates
//! them through the registry API (`PUT …/entities/{id}`, `PUT …/kits/{kitNo}`); the
//! registration bodies, `{entityId, kitNo}`, are built then too.
//!
//! The asynchronous side, with `--admin`: the service counts every finished request in
//! `ctp_operations_finished_total{event, status}` on its admin listener. After the load
//! window, that counter is polled (every 10 ms, for at most `--drain-timeout`) until it has
//! grown by the number of accepted registrations; the report says how many finished, how
//! many of those failed, and how long after the load ended the last one did. Warm-up
//! registrations are drained before the measured window starts, so that their callbacks
//! are not counted in it. The server's CPU is reported twice: over the load window (as
//! `notify` does), and from the window's start to the end of the drain, which includes the
//! callbacks and, with the embedded SaaS simulator, the simulator's own work.
//!
//! Card numbers go into the registry requests only; the bodies that hold them are dropped
//! once the cards are created, and nothing here prints one.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use serde_json::json;

use super::load::{LoadArgs, LoadPlan, LoadReport, MakeRequest, base_headers, drive, on_one_thread, request};
use super::load::{loopback_target, proc_cpu, proc_status_kib};
use super::{Format, MAX_DURATION};
use ctp_issuer::sim::fixtures::TENANT;
use ctp_issuer::sim::fixtures::{TestCard, fresh_cards, random_hex};

/// Upper bound on the customers of one run (each is a profile and a card in the server's
/// database, and a consumer in the SaaS simulator's memory).
pub const MAX_ENROLLMENTS: usize = 200_000;
/// Connections used to create the customers and cards (not measured).
const SETUP_CONCURRENCY: usize = 16;
const REGISTER_PATH: &str = "/click-to-pay/v1/registerEntityAndKit";
/// The event whose finished requests are counted.
const REGISTER_EVENT: &str = "CTP_REGISTER_ENTITY_AND_KIT";
const FINISHED_METRIC: &str = "ctp_operations_finished_total";
/// How often the admin listener's counters are read while waiting for results.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The server's internal listener; loopback only (127.0.0.0/8 or ::1).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    target: String,
    /// The server's admin listener, for the asynchronous results (`/metrics`); loopback
    /// only. Without it only the synchronous answers are measured.
    #[arg(long)]
    admin: Option<String>,
    /// Tenant of the customers (the token is minted for it).
    #[arg(long, default_value = TENANT)]
    tenant: String,
    #[command(flatten)]
    load: LoadArgs,
    /// Stop after this many registrations; this many customers (plus `--warmup`) are
    /// created first, whether the time allows them all or not.
    #[arg(long, default_value_t = 5_000)]
    count: usize,
    /// Registrations sent (and drained) before measuring, each a fresh customer too.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Longest wait, after the load, for the accepted registrations to finish (at most 10
    /// minutes).
    #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
    drain_timeout: Duration,
}

/// Runs `bench enroll`, signing its token with the HS256 secret at `secret_file`.
pub async fn run(args: EnrollArgs, secret_file: &Path) -> anyhow::Result<ExitCode> {
    let addr = loopback_target(&args.target)?;
    let admin = args.admin.as_deref().map(loopback_target).transpose()?;
    let plan = args.load.plan(addr, args.count)?;
    ctp_issuer::ids::TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let total = args.count.checked_add(args.warmup).filter(|n| *n <= MAX_ENROLLMENTS).context("--count + --warmup is too large")?;
    let drain_timeout = args.drain_timeout.min(MAX_DURATION);

    // Valid through setup, load and drain, whatever they take.
    let ttl = Duration::from_secs(3600) + plan.duration + drain_timeout;
    let token = ctp_issuer::auth::mint_token(secret_file, std::slice::from_ref(&args.tenant), "bench", ttl)
        .with_context(|| format!("minting a token with {}", secret_file.display()))?;
    let headers = api_headers(addr, &token, &args.tenant)?;
    let run_id = random_hex(4);
    let customers = tokio::task::spawn_blocking(move || Customers::build(&run_id, total)).await??;

    let (warmup, count) = (args.warmup, args.count);
    let outcome = on_one_thread(move || measure(plan, admin, headers, customers, warmup, count, drain_timeout)).await?;
    match args.load.format {
        Format::Text => outcome.print_text(args.load.concurrency, args.load.rate),
        Format::Kv => println!("{}", outcome.kv_line(args.load.concurrency, args.load.rate)),
    }
    let complete = outcome.report.transport_errors == 0 && outcome.drain.as_ref().is_none_or(|d| d.pending == 0);
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `Host`, JSON, the bearer token and the tenant: what every internal API call carries.
fn api_headers(addr: std::net::SocketAddr, token: &str, tenant: &str) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = base_headers(addr)?;
    let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).context("the minted token is not a header value")?;
    bearer.set_sensitive(true);
    headers.push((header::AUTHORIZATION, bearer));
    headers.push((HeaderName::from_static("tenant"), HeaderValue::from_str(tenant)?));
    Ok(headers)
}

// --- The customers ------------------------------------------------------------------------

/// For each request of a run: the registry calls that create its customer and card, and
/// the registration itself. Holds card numbers (in `kits`), so it has no `Debug`.
pub(super) struct Customers {
    entity_uris: Vec<Uri>,
    profiles: Vec<Bytes>,
    kit_uris: Vec<Uri>,
    /// `{"pan": …}` bodies: card numbers in clear, dropped after setup.
    kits: Vec<Bytes>,
    registrations: Vec<Bytes>,
}

impl Customers {
    /// `n` customers whose ids start with `run_id` (so that several runs against one
    /// database do not collide), each with a fresh card.
    pub fn build(run_id: &str, n: usize) -> anyhow::Result<Self> {
        let cards = fresh_cards(n);
        let mut built = Self {
            entity_uris: Vec::with_capacity(n),
            profiles: Vec::with_capacity(n),
            kit_uris: Vec::with_capacity(n),
            kits: Vec::with_capacity(n),
            registrations: Vec::with_capacity(n),
        };
        for (i, card) in cards.iter().enumerate() {
            let (entity_id, kit_no) = (format!("e{run_id}-{i}"), format!("k{run_id}-{i}"));
            built.entity_uris.push(format!("/registry/v1/entities/{entity_id}").parse()?);
            built.profiles.push(Bytes::from(serde_json::to_vec(&profile(run_id, i))?));
            built.kit_uris.push(format!("/registry/v1/entities/{entity_id}/kits/{kit_no}").parse()?);
            built.kits.push(kit_body(card)?);
            built.registrations.push(Bytes::from(serde_json::to_vec(&json!({"entityId": entity_id, "kitNo": kit_no}))?));
        }
        Ok(built)
    }

    pub fn len(&self) -> usize {
        self.registrations.len()
    }
}

/// A profile that meets every rule registration checks, distinct by its email.
fn profile(run_id: &str, i: usize) -> serde_json::Value {
    json!({
        "firstName": "Bench", "lastName": "Consumer",
        "emails": [format!("bench.{run_id}.{i}@example.com")], "phones": ["+14155550100"],
        "locale": "en_US", "countryCode": "USA",
        "consent": {"timeOfConsent": "2024-05-05T12:12:12.000Z", "version": "1.0", "presenter": "Bench"},
        "billingAddress": {"addressLine1": "1000 Market Street", "city": "San Francisco", "state": "CA", "postalCode": "94105", "country": "USA"}
    })
}

/// A card far from expiry (the simulator refuses expired cards).
fn kit_body(card: &TestCard) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(&json!({"pan": card.digits(), "expiry": "2035-12", "nameOnCard": "BENCH CONSUMER"}))?))
}

// --- The run ------------------------------------------------------------------------------

/// What `bench enroll` measured.
struct Outcome {
    report: LoadReport,
    customers: usize,
    setup: Duration,
    /// `None` without `--admin`.
    drain: Option<Drain>,
    /// Server CPU from the start of the load window to the end of the drain.
    total_cpu: Option<Duration>,
}

/// How the accepted registrations ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Drain {
    succeeded: u64,
    failed: u64,
    /// Accepted but not finished when the wait ended.
    pending: u64,
    /// From the end of the load to when the last one was seen finished (`None`: some were
    /// still pending at the timeout).
    after: Option<Duration>,
}

/// Setup, warm-up, the measured window and the drain, on the generator's runtime.
async fn measure(
    plan: LoadPlan,
    admin: Option<std::net::SocketAddr>,
    headers: Vec<(HeaderName, HeaderValue)>,
    customers: Customers,
    warmup: usize,
    count: usize,
    drain_timeout: Duration,
) -> anyhow::Result<Outcome> {
    let headers: Arc<[(HeaderName, HeaderValue)]> = headers.into();
    let n = customers.len();
    let setup_started = Instant::now();
    let setup_plan = LoadPlan { concurrency: SETUP_CONCURRENCY, rate: None, duration: MAX_DURATION, ..plan.unmeasured() };
    let Customers { entity_uris, profiles, kit_uris, kits, registrations } = customers;
    setup_phase(&setup_plan, "creating customers", puts(entity_uris, profiles, &headers), n).await?;
    // The card bodies are dropped with their closure once this phase is over.
    setup_phase(&setup_plan, "creating cards", puts(kit_uris, kits, &headers), n).await?;
    let setup = setup_started.elapsed();

    let registrations: Arc<[Bytes]> = registrations.into();
    let uri = Uri::from_static(REGISTER_PATH);
    let make: MakeRequest = {
        let headers = headers.clone();
        Arc::new(move |i| request(Method::POST, uri.clone(), &headers, registrations.get(i).cloned().unwrap_or_default()))
    };
    if warmup > 0 {
        let base = match admin {
            Some(a) => Some(finished_now(a).await?),
            None => None,
        };
        let warm = drive(&plan.unmeasured(), make.clone(), 0..warmup).await?;
        if let (Some(a), Some(base)) = (admin, base) {
            let drained = wait_finished(a, base, warm.ok(), drain_timeout, Instant::now()).await;
            if drained.pending > 0 {
                eprintln!(
                    "warning: {} warm-up registrations were still pending; their results may be counted as the measured ones'",
                    drained.pending
                );
            }
        }
    }
    let base = match admin {
        Some(a) => Some(finished_now(a).await.context("reading the admin listener's /metrics")?),
        None => None,
    };
    let cpu_before = plan.server_pid.and_then(proc_cpu);
    let mut report = drive(&plan, make, warmup..warmup + count).await?;
    let ended = Instant::now();
    let drain = match (admin, base) {
        (Some(a), Some(base)) => Some(wait_finished(a, base, report.ok(), drain_timeout, ended).await),
        _ => None,
    };
    let total_cpu = match (cpu_before, plan.server_pid.and_then(proc_cpu)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    // The peak may come after the window, while results are applied.
    if let Some(kib) = plan.server_pid.and_then(|p| proc_status_kib(p, "VmHWM")) {
        report.server_peak_rss_kib = Some(report.server_peak_rss_kib.unwrap_or(0).max(kib));
    }
    Ok(Outcome { report, customers: n, setup, drain, total_cpu })
}

/// `PUT uris[i]` with `bodies[i]`.
fn puts(uris: Vec<Uri>, bodies: Vec<Bytes>, headers: &Arc<[(HeaderName, HeaderValue)]>) -> MakeRequest {
    let headers = headers.clone();
    Arc::new(move |i| match (uris.get(i), bodies.get(i)) {
        (Some(uri), Some(body)) => request(Method::PUT, uri.clone(), &headers, body.clone()),
        _ => request(Method::PUT, Uri::from_static("/"), &headers, Bytes::new()),
    })
}

/// Sends requests `0..n` and insists that every one was answered 2xx: a customer that
/// could not be created would make its registration fail for the wrong reason.
async fn setup_phase(plan: &LoadPlan, what: &str, make: MakeRequest, n: usize) -> anyhow::Result<()> {
    let report = drive(plan, make, 0..n).await?;
    let created: u64 =
        report.statuses.iter().filter(|(s, _)| StatusCode::from_u16(**s).is_ok_and(|s| s.is_success())).map(|(_, n)| n).sum();
    if created != n as u64 {
        bail!(
            "{what}: {created} of {n} created (statuses {:?}, error codes [{}], transport errors {})",
            report.statuses,
            report.error_codes_text(", "),
            report.transport_errors
        );
    }
    Ok(())
}

// --- The asynchronous side ----------------------------------------------------------------

/// Registrations finished so far, as the server counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Finished {
    succeeded: u64,
    failed: u64,
}

impl Finished {
    fn total(self) -> u64 {
        self.succeeded + self.failed
    }

    fn since(self, base: Self) -> Self {
        Self { succeeded: self.succeeded.saturating_sub(base.succeeded), failed: self.failed.saturating_sub(base.failed) }
    }
}

/// Reads the registration counters from Prometheus text: lines such as
/// `ctp_operations_finished_total{event="CTP_REGISTER_ENTITY_AND_KIT",status="SUCCESS"} 42`.
/// A counter not yet incremented is absent, i.e. zero.
fn parse_finished(metrics: &str) -> Finished {
    let mut finished = Finished::default();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(FINISHED_METRIC).and_then(|r| r.strip_prefix('{')) else { continue };
        let Some((labels, value)) = rest.rsplit_once('}') else { continue };
        let label = |name: &str| labels.split(',').find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'));
        if label("event") != Some(REGISTER_EVENT) {
            continue;
        }
        let Some(n) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let n = if n.is_finite() && n > 0.0 { n as u64 } else { 0 };
        match label("status") {
            Some("SUCCESS") => finished.succeeded += n,
            Some("FAILED") => finished.failed += n,
            _ => {}
        }
    }
    finished
}

async fn finished_now(admin: std::net::SocketAddr) -> anyhow::Result<Finished> {
    let (status, body) = ctp_issuer::sim::client::send(&admin.to_string(), None, Method::GET, "/metrics", Bytes::new()).await?;
    if status != StatusCode::OK {
        bail!("{admin}/metrics answered {status}");
    }
    Ok(parse_finished(&String::from_utf8_lossy(&body)))
}

/// Polls until `expected` more registrations than `base` have finished, or `timeout`
/// has passed since `since`. A failed read is retried until then.
async fn wait_finished(admin: std::net::SocketAddr, base: Finished, expected: u64, timeout: Duration, since: Instant) -> Drain {
    let deadline = since + timeout;
    let mut seen = Finished::default();
    loop {
        if let Ok(now) = finished_now(admin).await {
            seen = now.since(base);
        }
        let done = seen.total() >= expected;
        if done || Instant::now() >= deadline {
            return Drain {
                succeeded: seen.succeeded,
                failed: seen.failed,
                pending: expected.saturating_sub(seen.total()),
                after: done.then(|| since.elapsed()),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

// --- Output -------------------------------------------------------------------------------

impl Outcome {
    fn total_cpu_per_registration_us(&self) -> Option<f64> {
        self.report.per_request_us(self.total_cpu)
    }

    fn print_text(&self, concurrency: usize, rate: Option<f64>) {
        println!(
            "bench enroll: {} customers and cards created through the registry API in {:.1} s (not measured)",
            self.customers,
            self.setup.as_secs_f64()
        );
        self.report.print_text("bench enroll: registerEntityAndKit", concurrency, rate);
        let Some(drain) = self.drain else {
            println!("  asynchronous results: not measured (no --admin)");
            return;
        };
        let done = drain.succeeded + drain.failed;
        match drain.after {
            Some(after) => println!(
                "  asynchronous results: {done} of {} accepted registrations finished ({} SUCCESS, {} FAILED), the last {:.2} s after the load ended",
                self.report.ok(),
                drain.succeeded,
                drain.failed,
                after.as_secs_f64()
            ),
            None => println!(
                "  asynchronous results: {done} of {} accepted registrations finished ({} SUCCESS, {} FAILED); {} still pending when the wait ended",
                self.report.ok(),
                drain.succeeded,
                drain.failed,
                drain.pending
            ),
        }
        if let Some(us) = self.total_cpu_per_registration_us() {
            println!(
                "  server CPU from the load's start to the last result (callbacks and an embedded SaaS simulator included): {us:.0} CPU-µs per registration"
            );
        }
    }

    fn kv_line(&self, concurrency: usize, rate: Option<f64>) -> String {
        let dash = || "-".to_owned();
        let codes = self.report.error_codes_text(",");
        let mut line = self.report.kv_line("enroll", concurrency, rate);
        line.push_str(&format!(
            " customers={} setup_s={:.2} async_done={} async_failed={} async_pending={} async_drain_s={} total_cpu_us={} codes={}",
            self.customers,
            self.setup.as_secs_f64(),
            self.drain.map_or_else(dash, |d| (d.succeeded + d.failed).to_string()),
            self.drain.map_or_else(dash, |d| d.failed.to_string()),
            self.drain.map_or_else(dash, |d| d.pending.to_string()),
            self.drain.and_then(|d| d.after).map_or_else(dash, |a| format!("{:.3}", a.as_secs_f64())),
            self.total_cpu_per_registration_us().map_or_else(dash, |us| format!("{us:.1}")),
            if codes.is_empty() { dash() } else { codes },
        ));
        line
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use ctp_issuer::enrollment::EntityProfile;

    fn json_of(body: &Bytes) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn every_request_is_a_distinct_valid_customer_with_a_fresh_card() {
        let n = 200;
        let c = Customers::build("0a1b2c3d", n).unwrap();
        assert_eq!((c.len(), c.entity_uris.len(), c.profiles.len(), c.kit_uris.len(), c.kits.len()), (n, n, n, n, n));
        let distinct = |v: Vec<String>| v.into_iter().collect::<HashSet<_>>().len();
        assert_eq!(distinct(c.registrations.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()), n);
        assert_eq!(distinct(c.entity_uris.iter().map(Uri::to_string).collect()), n);
        assert_eq!(distinct(c.kit_uris.iter().map(Uri::to_string).collect()), n);
        assert_eq!(distinct(c.kits.iter().map(|b| json_of(b)["pan"].as_str().unwrap().to_owned()).collect()), n);
        for i in 0..n {
            // The profile passes the registry's rules and registration's.
            let profile: EntityProfile = serde_json::from_slice(&c.profiles[i]).unwrap();
            profile.validate().unwrap();
            profile.ready_for_registration().unwrap();
            // The card is valid, and the paths and the registration name the same ids.
            let kit = json_of(&c.kits[i]);
            assert!(ctp_issuer::pan::Pan::parse(kit["pan"].as_str().unwrap()).is_ok());
            let registration = json_of(&c.registrations[i]);
            let (entity, kit_no) = (registration["entityId"].as_str().unwrap(), registration["kitNo"].as_str().unwrap());
            ctp_issuer::ids::EntityId::parse(entity).unwrap();
            ctp_issuer::ids::KitNo::parse(kit_no).unwrap();
            assert_eq!(c.entity_uris[i].path(), format!("/registry/v1/entities/{entity}"));
            assert_eq!(c.kit_uris[i].path(), format!("/registry/v1/entities/{entity}/kits/{kit_no}"));
            // Only the card body carries the number.
            let digits = kit["pan"].as_str().unwrap();
            for other in [&c.profiles[i], &c.registrations[i]] {
                assert!(!String::from_utf8_lossy(other).contains(digits));
            }
        }
    }

    #[test]
    fn two_runs_never_share_an_id() {
        let (a, b) = (Customers::build(&random_hex(4), 3).unwrap(), Customers::build(&random_hex(4), 3).unwrap());
        for (x, y) in a.registrations.iter().zip(b.registrations.iter()) {
            assert_ne!(json_of(x)["entityId"], json_of(y)["entityId"]);
        }
    }

    #[test]
    fn requests_carry_the_token_and_the_tenant() {
        let addr = "127.0.0.1:8081".parse().unwrap();
        let headers = api_headers(addr, "a.b.c", "BENCH").unwrap();
        let r = request(Method::POST, Uri::from_static(REGISTER_PATH), &headers, Bytes::from_static(b"{}"));
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer a.b.c");
        assert!(r.headers()[header::AUTHORIZATION].is_sensitive());
        assert_eq!(r.headers()["tenant"], "BENCH");
        assert_eq!(r.headers()[header::HOST], "127.0.0.1:8081");
        assert!(api_headers(addr, "a\nb", "BENCH").is_err());
    }

    #[test]
    fn finished_registrations_are_read_from_prometheus_text() {
        let text = "\
# TYPE ctp_operations_finished_total counter
ctp_operations_finished_total{event=\"CTP_REGISTER_ENTITY_AND_KIT\",status=\"SUCCESS\"} 41
ctp_operations_finished_total{event=\"CTP_REGISTER_ENTITY_AND_KIT\",status=\"FAILED\"} 2
ctp_operations_finished_total{event=\"CTP_ADD_KIT\",status=\"SUCCESS\"} 7
ctp_operations_finished_totalx{event=\"CTP_REGISTER_ENTITY_AND_KIT\",status=\"SUCCESS\"} 100
ctp_operations_started_total{event=\"CTP_REGISTER_ENTITY_AND_KIT\"} 50
";
        assert_eq!(parse_finished(text), Finished { succeeded: 41, failed: 2 });
        assert_eq!(parse_finished(""), Finished::default());
        assert_eq!(
            parse_finished("ctp_operations_finished_total{event=\"CTP_REGISTER_ENTITY_AND_KIT\",status=\"SUCCESS\"} junk"),
            Finished::default()
        );
        let base = Finished { succeeded: 40, failed: 0 };
        assert_eq!(parse_finished(text).since(base), Finished { succeeded: 1, failed: 2 });
    }

    #[test]
    fn customer_limits_are_enforced_before_anything_is_built() {
        let args = |count, warmup| EnrollArgs {
            target: "http://127.0.0.1:1".into(),
            admin: None,
            tenant: TENANT.into(),
            load: LoadArgs {
                concurrency: 1,
                rate: None,
                duration: Duration::from_secs(1),
                server_pid: None,
                db_process: None,
                format: Format::Kv,
            },
            count,
            warmup,
            drain_timeout: Duration::from_secs(1),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let secret = Path::new("/nonexistent");
        assert!(runtime.block_on(run(args(MAX_ENROLLMENTS, 1), secret)).is_err());
        assert!(runtime.block_on(run(args(0, 0), secret)).is_err());
        let mut remote = args(1, 0);
        remote.target = "http://10.0.0.1:8081".into();
        assert!(runtime.block_on(run(remote, secret)).unwrap_err().to_string().contains("loopback"));
        let mut remote_admin = args(1, 0);
        remote_admin.admin = Some("192.168.0.1:9090".into());
        assert!(runtime.block_on(run(remote_admin, secret)).unwrap_err().to_string().contains("loopback"));
    }
}
