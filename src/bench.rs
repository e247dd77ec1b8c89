//! `ctp-issuer bench …`: reproducible load on the notification path (issue 5).
//!
//! | command | what it does |
//! | --- | --- |
//! | `bench prepare --dir D` | fresh keys (a Visa RSA pair, an issuer RSA pair, a shared secret, card-number keys) in `D/keys`, fresh Luhn-valid cards in `D/kits.csv`, and optionally pre-built notifications |
//! | `bench notify --dir D …` | drives a running server over loopback with pre-built, distinct notifications, at a fixed concurrency or a fixed rate, for a bounded time and count; prints throughput, latency percentiles and the server's CPU and peak RSS from `/proc` |
//! | `bench ready --admin A` | polls `/readyz` until it answers 200 and prints the time since a given start instant and the idle RSS |
//!
//! The server under test is an ordinary `ctp-issuer serve` with `CTP_KEYS_DIR=D/keys`
//! whose database has had `ctp-issuer kits import D/kits.csv` (see `bench/run.sh`).
//!
//! Every notification is sent once: the server answers a redelivered envelope from its
//! deduplication index without any cryptography, so reusing bodies would measure nothing.
//! Bodies are built before the clock starts (in RSA mode that is one RSA private-key
//! operation each, the same price the server pays) and kept in `D/bodies-<mode>.jsonl`, so
//! that several runs against fresh databases can share them. Their `iat` is the time they
//! were built: the server under test needs a `visa.replay_window` longer than the bodies'
//! age (`bench/run.sh` sets one hour).
//!
//! The load generator keeps its own cost small: one persistent HTTP/1.1 connection per
//! worker, all workers on one current-thread runtime (so it never takes more than one
//! core), bodies shared by reference. Its own CPU time is reported next to the server's.
//!
//! Only loopback targets are accepted, and every loop is bounded by a count and a time.
//! Card numbers live only in `D/kits.csv` and inside the encrypted bodies; nothing here
//! prints one.

use clap::ValueEnum;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::pan::Pan;
use crate::sim::visa::{NotificationBuilder, enrollment_payload, notification_path};

/// Upper bound on one load run, whatever `--duration` says.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Upper bound on the pre-built notifications of one mode.
pub const MAX_NOTIFICATIONS: usize = 2_000_000;
/// Upper bound on the cards of one prepared directory.
pub const MAX_CARDS: usize = 1_000_000;
/// Linux reports `/proc/<pid>/stat` CPU times in USER_HZ ticks, 100 per second on every
/// architecture Rust targets (it is part of the user-space ABI, independent of CONFIG_HZ).
const TICKS_PER_SECOND: f64 = 100.0;
/// The tenant of the generated kits.
pub const TENANT: &str = "BENCH";
/// The token requestor the bodies are posted for.
pub const TOKEN_REQUESTOR_ID: &str = "40010030273";

/// The two Visa key modes (and the shared-secret variant signed by Visa's RSA key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// JWS PS256 by Visa's key, JWE RSA-OAEP-256 to the issuer's key.
    Rsa,
    /// JWS PS256 by Visa's key, JWE A256GCMKW with the shared secret.
    Shared,
    /// JWS HS256 and JWE A256GCMKW, both with the shared secret (no RSA at all).
    SharedHs256,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Shared => "shared",
            Self::SharedHs256 => "shared-hs256",
        }
    }

    /// A builder for this mode from a directory laid out by [`FreshKeys::write`].
    pub fn builder(self, keys_dir: &Path) -> anyhow::Result<NotificationBuilder> {
        match self {
            Self::Rsa => NotificationBuilder::rsa_from_dir(keys_dir),
            Self::Shared => NotificationBuilder::shared_from_dir(keys_dir, false),
            Self::SharedHs256 => NotificationBuilder::shared_from_dir(keys_dir, true),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One line of `key=value` pairs, for scripts.
    Kv,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Write fresh keys and cards for a server under test (and optionally pre-build
    /// notifications). Replaces whatever the directory held before.
    Prepare {
        /// Directory to fill: keys/, kits.csv, bodies-<mode>.jsonl.
        #[arg(long)]
        dir: PathBuf,
        /// Distinct Luhn-valid cards to generate (one kit each).
        #[arg(long, default_value_t = 1000)]
        cards: usize,
        /// Modes to pre-build notifications for.
        #[arg(long = "mode", value_enum)]
        modes: Vec<Mode>,
        /// Notifications to pre-build per mode.
        #[arg(long, default_value_t = 0)]
        notifications: usize,
    },
    /// Pre-build notifications for one mode in a prepared directory, appending to what
    /// it holds until it holds `--count`.
    Bodies {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long)]
        count: usize,
    },
    /// Drive a running server over loopback with distinct, valid notifications.
    Notify {
        /// A directory made by `bench prepare`.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "rsa")]
        mode: Mode,
        /// The server's public listener; loopback only (127.0.0.0/8 or ::1).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        /// Connections, one request in flight on each (closed loop).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Requests per second, spread over the connections (open loop: latency counts
        /// from when a request was due, so a stalled server is not hidden).
        #[arg(long)]
        rate: Option<f64>,
        /// Stop after this long (at most 10 minutes).
        #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
        duration: Duration,
        /// Stop after this many requests; bodies are built first if the directory holds fewer.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Requests sent before measuring (each a distinct notification too).
        #[arg(long, default_value_t = 0)]
        warmup: usize,
        /// The server's process id, for its CPU time and peak RSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also count the CPU of every process with this name (e.g. `postgres`).
        #[arg(long)]
        db_process: Option<String>,
        #[arg(long, default_value = TOKEN_REQUESTOR_ID)]
        token_requestor_id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Wait until the admin listener's /readyz answers 200; print how long since `--since-ns`.
    Ready {
        /// The admin listener, e.g. 127.0.0.1:9090; loopback only.
        #[arg(long)]
        admin: String,
        /// Start instant, nanoseconds since the Unix epoch (`date +%s%N`), default now.
        #[arg(long)]
        since_ns: Option<u128>,
        /// The server's process id, for its resident memory once ready.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
        timeout: Duration,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// Runs a `bench` subcommand.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Prepare { dir, cards, modes, notifications } => {
            let prepared = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let keys = FreshKeys::write(&dir.join("keys"))?;
                let n = write_kits_csv(&dir.join("kits.csv"), cards)?;
                for mode in Mode::value_variants() {
                    let _ = std::fs::remove_file(bodies_path(&dir, *mode));
                }
                let mut built = Vec::new();
                for mode in modes {
                    let started = Instant::now();
                    ensure_bodies(&dir, mode, notifications)?;
                    built.push((mode, started.elapsed()));
                }
                Ok((dir, keys, n, built))
            })
            .await??;
            let (dir, keys, n, built) = prepared;
            println!("keys:  {} (visa kid {}, issuer kid {}, shared kid {})", dir.join("keys").display(), keys.visa_kid, keys.issuer_kid, keys.shared_kid);
            println!("kits:  {} ({n} cards, tenant {TENANT})", dir.join("kits.csv").display());
            for (mode, took) in built {
                println!("bodies: {} ({notifications} built in {:.1} s)", bodies_path(&dir, mode).display(), took.as_secs_f64());
            }
            println!("next:  CTP_KEYS_DIR={} ctp-issuer kits import {}", dir.join("keys").display(), dir.join("kits.csv").display());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Bodies { dir, mode, count } => {
            let started = Instant::now();
            let path = bodies_path(&dir, mode);
            tokio::task::spawn_blocking(move || ensure_bodies(&dir, mode, count)).await??;
            println!("{}: {count} bodies ({:.1} s)", path.display(), started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Notify {
            dir,
            mode,
            target,
            concurrency,
            rate,
            duration,
            count,
            warmup,
            server_pid,
            db_process,
            token_requestor_id,
            format,
        } => {
            let addr = loopback_target(&target)?;
            if concurrency == 0 || concurrency > 4096 {
                bail!("--concurrency must be 1 to 4096");
            }
            if rate.is_some_and(|r| !(r > 0.0 && r <= 1_000_000.0)) {
                bail!("--rate must be above 0 and at most 1000000 per second");
            }
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let duration = duration.min(MAX_DURATION);
            let needed = count.checked_add(warmup).filter(|n| *n <= MAX_NOTIFICATIONS).context("--count + --warmup is too large")?;
            let (bodies, oldest) = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    ensure_bodies(&dir, mode, needed)?;
                    load_bodies(&dir, mode, needed)
                })
                .await??
            };
            if oldest.is_some_and(|age| age > Duration::from_secs(240)) {
                eprintln!(
                    "warning: the oldest body was built {} s ago; the server's visa.replay_window must exceed that",
                    oldest.unwrap_or_default().as_secs()
                );
            }
            let bodies: Arc<[Bytes]> = bodies.into();
            let plan = LoadPlan {
                addr,
                path: notification_path(&token_requestor_id),
                concurrency,
                rate,
                duration,
                server_pid,
                db_process,
            };
            // The generator runs on a runtime of its own with one thread, so it never takes
            // more than one of the cores it shares with the server.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let generator = std::thread::spawn(move || {
                runtime.block_on(async {
                    if warmup > 0 {
                        let mut warm = plan.clone();
                        warm.server_pid = None;
                        warm.db_process = None;
                        drive(&warm, bodies.clone(), 0..warmup).await?;
                    }
                    drive(&plan, bodies.clone(), warmup..warmup + count).await
                })
            });
            let report = tokio::task::spawn_blocking(move || generator.join())
                .await?
                .map_err(|_| anyhow::anyhow!("load generator thread panicked"))??;
            match format {
                Format::Text => report.print_text(mode, concurrency, rate),
                Format::Kv => report.print_kv(mode, concurrency, rate),
            }
            Ok(if report.transport_errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        BenchCommand::Ready { admin, since_ns, pid, timeout, format } => {
            let addr = loopback_target(&admin)?;
            let since = match since_ns {
                Some(ns) => UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).context("--since-ns is too large")?),
                None => SystemTime::now(),
            };
            let timeout = timeout.min(MAX_DURATION);
            let deadline = Instant::now() + timeout;
            let authority = addr.to_string();
            loop {
                let answered = crate::sim::client::send(&authority, None, http::Method::GET, "/readyz", Bytes::new()).await;
                if matches!(answered, Ok((StatusCode::OK, _))) {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("{authority}/readyz did not answer 200 within {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let ready_ms = SystemTime::now().duration_since(since).unwrap_or_default().as_secs_f64() * 1000.0;
            let rss = pid.and_then(|p| proc_status_kib(p, "VmRSS"));
            // Most of an idle process's RSS is its mapped code (file-backed, shared); the
            // anonymous part is what it allocated.
            let anon = pid.and_then(|p| proc_status_kib(p, "RssAnon"));
            let kv = |v: Option<u64>| v.map_or("-".to_owned(), |k| k.to_string());
            match format {
                Format::Text => {
                    println!("ready after {ready_ms:.1} ms");
                    if let (Some(kib), Some(anon)) = (rss, anon) {
                        println!("idle RSS {:.1} MiB ({:.1} MiB anonymous)", kib as f64 / 1024.0, anon as f64 / 1024.0);
                    }
                }
                Format::Kv => println!("ready_ms={ready_ms:.1} idle_rss_kib={} idle_anon_kib={}", kv(rss), kv(anon)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

// --- Fresh keys, cards and bodies -------------------------------------------------------

/// The kids of a freshly written key directory.
#[derive(Debug, Clone)]
pub struct FreshKeys {
    pub visa_kid: String,
    pub issuer_kid: String,
    pub shared_kid: String,
}

impl FreshKeys {
    /// Writes a complete key directory in the layout of `keys/README.md`, every key new:
    /// Visa's RSA-2048 pair (public half under `visa/`, private half under `sim/visa/` for
    /// the sender), the issuer's RSA-2048 private key, a shared secret and the two
    /// card-number keys (version v1), and a SaaS callback secret (the service requires one).
    /// Anything in `dir` from before is removed first.
    pub fn write(dir: &Path) -> anyhow::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        for sub in ["visa", "issuer", "shared", "pan", "sim/visa", "saas"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let keys = Self {
            visa_kid: random_hex(4).to_uppercase(),
            issuer_kid: format!("bench-issuer-{}", random_hex(4)),
            shared_kid: format!("bench-shared-{}", random_hex(4)),
        };
        let visa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
        write_private(&dir.join(format!("sim/visa/{}.pem", keys.visa_kid)), &visa.private_key_to_pem_pkcs8()?)?;
        std::fs::write(dir.join(format!("visa/{}.pem", keys.visa_kid)), visa.public_key_to_pem()?)?;
        let issuer = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
        write_private(&dir.join(format!("issuer/{}.pem", keys.issuer_kid)), &issuer.private_key_to_pem_pkcs8()?)?;
        write_private(&dir.join(format!("shared/{}.secret", keys.shared_kid)), random_hex(32).as_bytes())?;
        write_private(&dir.join("pan/fingerprint-v1.key"), random_hex(32).as_bytes())?;
        write_private(&dir.join("pan/encryption-v1.key"), random_hex(32).as_bytes())?;
        // The service will not start without a Click to Pay SaaS callback secret.
        let mut webhook = [0u8; 32];
        aws_lc_rs::rand::fill(&mut webhook).expect("system random source");
        let webhook = format!("whsec_{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, webhook));
        write_private(&dir.join("saas/webhook-bench.secret"), webhook.as_bytes())?;
        Ok(keys)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("system random source");
    hex::encode(buf)
}

/// A generated test card number. Like [`Pan`] it prints masked; unlike it, it hands its
/// digits out, because writing them into the kits CSV and the payloads is its purpose.
#[derive(Clone)]
pub struct TestCard(zeroize::Zeroizing<String>);

impl TestCard {
    /// Checks `digits` the way the service does.
    pub fn parse(digits: &str) -> Result<Self, crate::pan::PanError> {
        Pan::parse(digits).map(|_| Self(zeroize::Zeroizing::new(digits.to_owned())))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TestCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestCard(****{})", &self.0[self.0.len() - 4..])
    }
}

/// `n` distinct, random, Luhn-valid 16-digit Visa-range card numbers.
pub fn fresh_cards(n: usize) -> Vec<TestCard> {
    let mut seen = HashSet::with_capacity(n);
    let mut cards = Vec::with_capacity(n);
    let mut random = [0u8; 14];
    while cards.len() < n {
        aws_lc_rs::rand::fill(&mut random).expect("system random source");
        let mut digits = String::with_capacity(16);
        digits.push('4');
        digits.extend(random.iter().map(|b| char::from(b'0' + b % 10)));
        digits.push(char::from(b'0' + luhn_check_digit(digits.as_bytes())));
        let card = TestCard::parse(&digits).expect("a generated number passes its own Luhn check");
        if seen.insert(digits) {
            cards.push(card);
        }
    }
    cards
}

/// The digit that makes `payload` followed by it pass the Luhn check.
fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Writes `cards` fresh kits (tenant [`TENANT`]) as a CSV `kits import` reads.
pub fn write_kits_csv(path: &Path, cards: usize) -> anyhow::Result<usize> {
    if cards == 0 || cards > MAX_CARDS {
        bail!("--cards must be 1 to {MAX_CARDS}");
    }
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "tenant,entity_id,kit_no,pan,first_name,last_name,email,phone")?;
    for (i, pan) in fresh_cards(cards).iter().enumerate() {
        writeln!(out, "{TENANT},bench-entity-{i},{},{},Bench,Consumer,bench{i}@example.com,+1 415 555 0100", 100_000_000 + i, pan.digits())?;
    }
    out.flush()?;
    Ok(cards)
}

/// The card numbers of a kits CSV written by [`write_kits_csv`].
pub fn read_cards(path: &Path) -> anyhow::Result<Vec<TestCard>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let column = reader
        .headers()?
        .iter()
        .position(|h| h == "pan")
        .with_context(|| format!("{}: no pan column", path.display()))?;
    let mut cards = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|_| anyhow::anyhow!("{}: malformed CSV", path.display()))?;
        let card = TestCard::parse(record.get(column).unwrap_or("")).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cards.push(card);
    }
    if cards.is_empty() {
        bail!("{}: no cards", path.display());
    }
    Ok(cards)
}

pub fn bodies_path(dir: &Path, mode: Mode) -> PathBuf {
    dir.join(format!("bodies-{}.jsonl", mode.name()))
}

/// Builds `count` distinct notification bodies for `mode`, card `i % cards.len()` in the
/// `i`-th, spread over every core. The JWE's random key and IV make each one unique even
/// for the same card; uniqueness is still checked.
pub fn build_bodies(keys_dir: &Path, mode: Mode, cards: &[TestCard], first: usize, count: usize) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count.max(1));
    let per = count.div_ceil(threads.max(1));
    let chunks: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * per).min(count)..((t + 1) * per).min(count);
                s.spawn(move || -> anyhow::Result<Vec<String>> {
                    let builder = mode.builder(keys_dir)?;
                    let mut out = Vec::with_capacity(range.len());
                    for i in range {
                        let n = first + i;
                        let card = &cards[n % cards.len()];
                        let payload = enrollment_payload(card.digits(), "Bench", "Consumer", &format!("n{n}@example.com"), "+1 415 555 0100");
                        out.push(builder.body(&payload, SystemTime::now())?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("builder thread panicked")))).collect()
    });
    let mut bodies = Vec::with_capacity(count);
    for chunk in chunks {
        bodies.extend(chunk?);
    }
    Ok(bodies)
}

/// Makes sure `dir` holds at least `needed` bodies for `mode`, building and appending the
/// shortfall.
pub fn ensure_bodies(dir: &Path, mode: Mode, needed: usize) -> anyhow::Result<()> {
    if needed > MAX_NOTIFICATIONS {
        bail!("at most {MAX_NOTIFICATIONS} notifications per mode");
    }
    let path = bodies_path(dir, mode);
    let have = match std::fs::File::open(&path) {
        Ok(f) => std::io::BufReader::new(f).lines().map_while(Result::ok).filter(|l| !l.starts_with('#')).count(),
        Err(_) => 0,
    };
    if have >= needed {
        return Ok(());
    }
    let cards = read_cards(&dir.join("kits.csv"))?;
    let started = Instant::now();
    let bodies = build_bodies(&dir.join("keys"), mode, &cards, have, needed - have)?;
    let mut out = BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(&path)?);
    let built = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    writeln!(out, "#ctp-issuer bench bodies mode={} built={built}", mode.name())?;
    for body in &bodies {
        writeln!(out, "{body}")?;
    }
    out.flush()?;
    tracing::info!(mode = mode.name(), built = bodies.len(), seconds = started.elapsed().as_secs_f64(), "notification bodies built");
    Ok(())
}

/// The first `needed` bodies, checked distinct, and the age of the oldest.
pub fn load_bodies(dir: &Path, mode: Mode, needed: usize) -> anyhow::Result<(Vec<Bytes>, Option<Duration>)> {
    let path = bodies_path(dir, mode);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut bodies = Vec::with_capacity(needed);
    let mut oldest = None;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if let Some(meta) = line.strip_prefix('#') {
            let built = meta.split_whitespace().find_map(|kv| kv.strip_prefix("built=")).and_then(|v| v.parse::<u64>().ok());
            if let (None, Some(secs)) = (oldest, built) {
                oldest = SystemTime::now().duration_since(UNIX_EPOCH + Duration::from_secs(secs)).ok();
            }
            continue;
        }
        if bodies.len() == needed {
            break;
        }
        bodies.push(Bytes::from(line));
    }
    if bodies.len() < needed {
        bail!("{} holds {} bodies, {needed} needed", path.display(), bodies.len());
    }
    let distinct: HashSet<&[u8]> = bodies.iter().map(|b| b.as_ref()).collect();
    if distinct.len() != bodies.len() {
        bail!("{} holds repeated bodies: a load must send each notification once", path.display());
    }
    Ok((bodies, oldest))
}

// --- Load ---------------------------------------------------------------------------------

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
        None => authority.parse::<SocketAddr>().with_context(|| format!("`{target}` is not an IP:port (a loopback address is required)"))?,
    };
    if !addr.ip().is_loopback() {
        bail!("refusing to send load to {addr}: only loopback targets (127.0.0.0/8, ::1) are allowed");
    }
    Ok(addr)
}

#[derive(Debug, Clone)]
struct LoadPlan {
    addr: SocketAddr,
    path: String,
    concurrency: usize,
    rate: Option<f64>,
    duration: Duration,
    server_pid: Option<u32>,
    db_process: Option<String>,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub statuses: BTreeMap<u16, u64>,
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

/// Sends `bodies[range]`, each once, and measures.
async fn drive(plan: &LoadPlan, bodies: Arc<[Bytes]>, range: std::ops::Range<usize>) -> anyhow::Result<LoadReport> {
    // Connections first, so that the clock measures requests, not handshakes.
    let mut senders = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        senders.push(connect(plan.addr).await.with_context(|| format!("connecting to {}", plan.addr))?);
    }
    let next = Arc::new(AtomicUsize::new(range.start));
    let authority = plan.addr.to_string();

    let server_before = plan.server_pid.and_then(proc_cpu);
    let db_before = plan.db_process.as_deref().map(processes_cpu);
    let self_before = proc_cpu(std::process::id());
    let t0 = Instant::now();
    let deadline = t0 + plan.duration;

    let mut workers = Vec::with_capacity(plan.concurrency);
    for sender in senders {
        let (next, bodies, authority, path) = (next.clone(), bodies.clone(), authority.clone(), plan.path.clone());
        let (rate, end, addr) = (plan.rate, range.end, plan.addr);
        workers.push(tokio::spawn(async move {
            let mut sender = Some(sender);
            let mut stats = WorkerStats::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let due = match rate {
                    Some(r) => t0 + Duration::from_secs_f64((i - range.start) as f64 / r),
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
                let request = Request::post(path.as_str())
                    .header(header::HOST, authority.as_str())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(bodies[i].clone()))
                    .expect("a static request is well-formed");
                let result = async {
                    s.ready().await?;
                    let response = s.send_request(request).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                }
                .await;
                match result {
                    Ok(status) => {
                        let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        stats.latencies_us.push(us);
                        *stats.statuses.entry(status.as_u16()).or_default() += 1;
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
        (Some(before), Some(after)) => Some(
            after.iter().map(|(pid, cpu)| cpu.saturating_sub(before.get(pid).copied().unwrap_or_default())).sum(),
        ),
        _ => None,
    };
    Ok(report)
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

    fn per_request_us(&self, cpu: Option<Duration>) -> Option<f64> {
        let answered = self.latencies_us.len();
        cpu.filter(|_| answered > 0).map(|c| c.as_secs_f64() * 1e6 / answered as f64)
    }

    fn cores(&self, cpu: Option<Duration>) -> Option<f64> {
        cpu.map(|c| c.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }

    fn print_text(&self, mode: Mode, concurrency: usize, rate: Option<f64>) {
        let how = match rate {
            Some(r) => format!("rate {r}/s over {concurrency} connections"),
            None => format!("concurrency {concurrency}"),
        };
        println!("bench notify: mode {}, {how}", mode.name());
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
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.latency_ms(0.5),
            self.latency_ms(0.9),
            self.latency_ms(0.99),
            self.latency_ms(1.0)
        );
        if let (Some(cpu), Some(us), Some(cores)) =
            (self.server_cpu, self.per_request_us(self.server_cpu), self.cores(self.server_cpu))
        {
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

    fn print_kv(&self, mode: Mode, concurrency: usize, rate: Option<f64>) {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        println!(
            "mode={} concurrency={concurrency} rate={} sent={} ok={} non200={} errors={} wall_s={:.3} rps={:.1} \
             p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} server_cpu_us={} server_cores={} peak_rss_kib={} \
             db_cpu_us={} db_cores={} gen_cores={}",
            mode.name(),
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
        );
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
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time of every process whose command name is `name`, by pid.
fn processes_cpu(name: &str) -> HashMap<u32, Duration> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == name {
            if let Some(cpu) = proc_cpu(pid) {
                out.insert(pid, cpu);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cards_are_distinct_and_valid() {
        let cards = fresh_cards(500);
        let distinct: HashSet<String> = cards.iter().map(|c| c.digits().to_owned()).collect();
        assert_eq!(distinct.len(), 500);
        assert!(cards.iter().all(|c| Pan::parse(c.digits()).is_ok()));
        assert!(!format!("{:?}", cards[0]).contains(&cards[0].digits()[..12]));
    }

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
    fn fresh_keys_and_bodies_are_accepted_by_the_key_ring() {
        let dir = tempfile::tempdir().unwrap();
        let keys = FreshKeys::write(&dir.path().join("keys")).unwrap();
        write_kits_csv(&dir.path().join("kits.csv"), 3).unwrap();
        let ring = crate::visa::VisaKeyRing::load(&dir.path().join("keys"), &["PS256".into(), "HS256".into()]).unwrap();
        assert!(ring.verifier(&keys.visa_kid, "PS256").is_some());
        crate::pan::PanKeys::load(&dir.path().join("keys"), "v1", "v1").unwrap();
        ensure_bodies(dir.path(), Mode::SharedHs256, 4).unwrap();
        let (bodies, _) = load_bodies(dir.path(), Mode::SharedHs256, 4).unwrap();
        let policy = crate::visa::ReplayPolicy { window: Duration::from_secs(300), require_iat: true };
        for body in &bodies {
            let raw = crate::visa::RawNotification::parse(TOKEN_REQUESTOR_ID, None, body).unwrap();
            raw.open(&ring, policy, SystemTime::now()).unwrap();
        }
    }
}
