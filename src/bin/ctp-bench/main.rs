//! `ctp-bench`: reproducible load on a running `ctp-issuer`: its notification path and
//! its enrollment API, over loopback. A development tool, built beside the service and
//! never part of it.
//!
//! | command | what it does |
//! | --- | --- |
//! | `prepare --dir D` | fresh keys (a Visa RSA pair, an issuer RSA pair, a shared secret, card-number keys, a SaaS callback secret, an internal-API token secret) in `D/keys`, fresh Luhn-valid cards in `D/kits.csv`, and optionally pre-built notifications |
//! | `bodies --dir D --mode M --count N` | tops up `D/bodies-M.jsonl` to `N` pre-built notifications |
//! | `notify --dir D …` | drives a running server's public listener over loopback with pre-built, distinct notifications, at a fixed concurrency or a fixed rate, for a bounded time and count; prints throughput, latency percentiles and the server's CPU and peak RSS from `/proc` |
//! | `enroll …` | drives a running server's internal API over loopback with `registerEntityAndKit`, each request a fresh customer and card created beforehand through the registry API; the same measures as `notify`, then (with `--admin`) waits, bounded, for the asynchronous results and reports how many finished and when the last one did |
//! | `ready --admin A` | polls `/readyz` until it answers 200 and prints the time since a given start instant and the idle RSS |
//!
//! The server under test is an ordinary `ctp-issuer serve` with `CTP_KEYS_DIR=D/keys`
//! whose database has had `ctp-issuer kits import D/kits.csv` for `notify` (see
//! `bench/run.sh`), or nothing at all for `enroll`, which brings its own customers (see
//! `bench/enroll.sh`).
//!
//! Every notification is sent once: the server answers a redelivered envelope from its
//! deduplication index without any cryptography, so reusing bodies would measure nothing.
//! Bodies are built before the clock starts (in RSA mode that is one RSA private-key
//! operation each, the same price the server pays) and kept in `D/bodies-<mode>.jsonl`, so
//! that several runs against fresh databases can share them. Their `iat` is the time they
//! were built: the server under test needs a `visa.replay_window` longer than the bodies'
//! age (`bench/run.sh` sets one hour). Likewise every registration is for a customer of its
//! own (`enroll`), so none is answered "already registered" or from an idempotency key.
//!
//! The load generator keeps its own cost small: one persistent HTTP/1.1 connection per
//! worker, all workers on one current-thread runtime (so it never takes more than one
//! core), bodies shared by reference. Its own CPU time is reported next to the server's.
//!
//! Only loopback targets are accepted, and every loop is bounded by a count and a time.
//! Card numbers live only in `D/kits.csv`, inside the encrypted bodies and in the registry
//! requests `enroll` sends; nothing here prints one.

mod bodies;
mod enroll;
mod load;
mod queue;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use ctp_issuer::config::Config;
use ctp_issuer::sim::fixtures::{FreshKeys, Mode, TENANT, TOKEN_REQUESTOR_ID, write_kits_csv};
use ctp_issuer::sim::visa::notification_path;
use http::{Method, StatusCode, Uri};

use bodies::{MAX_NOTIFICATIONS, bodies_path, ensure_bodies, load_bodies};
use enroll::EnrollArgs;
use load::{LoadArgs, MakeRequest, base_headers, drive, loopback_target, on_one_thread, proc_status_kib, request};

/// Longest a load (or a wait) may last.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

#[derive(Debug, Parser)]
#[command(name = "ctp-bench", version, about = "Reproducible load on a running ctp-issuer, over loopback")]
struct Cli {
    /// The server's TOML configuration file (for the internal API's token secret).
    #[arg(long, global = true, env = "CTP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: BenchCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ctp-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ctp_issuer::telemetry::init_logging(&config.log) {
        eprintln!("ctp-bench: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ctp-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, &config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ctp-bench: {e:#}");
            ExitCode::FAILURE
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
enum BenchCommand {
    /// Write fresh keys and cards for a server under test (and optionally pre-build
    /// notifications). Replaces whatever the directory held before.
    Prepare {
        /// Directory to fill: `keys/`, `kits.csv`, `bodies-<mode>.jsonl`.
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
        #[command(flatten)]
        load: LoadArgs,
        /// Stop after this many requests; bodies are built first if the directory holds fewer.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Requests sent before measuring (each a distinct notification too).
        #[arg(long, default_value_t = 0)]
        warmup: usize,
        #[arg(long, default_value = TOKEN_REQUESTOR_ID)]
        token_requestor_id: String,
        /// The server's admin listener, for the outbox backlog during the run and, after
        /// it, the time until the outbox is empty; loopback only.
        #[arg(long)]
        admin: Option<String>,
        /// How often the server's CPU, RSS and the backlog are read during the run.
        #[arg(long, default_value = "1s", value_parser = humantime_serde::re::humantime::parse_duration)]
        sample_every: Duration,
        /// The stretch of the run, at its start and its end, over which CPU per request is
        /// compared (flat means close).
        #[arg(long, default_value = "60s", value_parser = humantime_serde::re::humantime::parse_duration)]
        window: Duration,
        /// Longest wait, after the load, for the outbox to empty.
        #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
        drain_timeout: Duration,
    },
    /// Consume (and acknowledge) every message of a RabbitMQ queue until SIGTERM or
    /// SIGINT, then until it is quiet; print how many arrived.
    DrainQueue {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp_url: String,
        #[arg(long)]
        queue: String,
    },
    /// Drive a running server's enrollment API over loopback with distinct, valid
    /// registrations (a fresh customer and card each), then wait for their results.
    Enroll(EnrollArgs),
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

/// Runs a subcommand. `config` says where the internal API's token secret is (`enroll`
/// mints its token the way `ctp-issuer token` does).
async fn run(command: BenchCommand, config: &Config) -> anyhow::Result<ExitCode> {
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
            println!(
                "keys:  {} (visa kid {}, issuer kid {}, shared kid {})",
                dir.join("keys").display(),
                keys.visa_kid,
                keys.issuer_kid,
                keys.shared_kid
            );
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
        BenchCommand::Notify { dir, mode, target, load, count, warmup, token_requestor_id, admin, sample_every, window, drain_timeout } => {
            let plan = load.plan(loopback_target(&target)?, count)?;
            let admin = admin.as_deref().map(loopback_target).transpose()?;
            let needed = count.checked_add(warmup).filter(|n| *n <= MAX_NOTIFICATIONS).context("--count + --warmup is too large")?;
            let uri: Uri = notification_path(&token_requestor_id).parse().context("--token-requestor-id does not make a valid path")?;
            let (bodies, oldest) = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    ensure_bodies(&dir, mode, needed)?;
                    load_bodies(&dir, mode, needed)
                })
                .await??
            };
            if let Some(age) = oldest.filter(|age| *age > Duration::from_secs(240)) {
                eprintln!("warning: the oldest body was built {} s ago; the server's visa.replay_window must exceed that", age.as_secs());
            }
            let bodies: Arc<[Bytes]> = bodies.into();
            let headers = base_headers(plan.addr)?;
            let make: MakeRequest =
                Arc::new(move |i| request(Method::POST, uri.clone(), &headers, bodies.get(i).cloned().unwrap_or_default()));
            let (report, watched) = on_one_thread(move || async move {
                // Every notification answered 200 is one outbox event: the outbox is empty
                // once the relay has published as many as were answered.
                let published_before = match admin {
                    Some(admin) => watch::published(admin).await.context("the admin listener's /metrics")?,
                    None => 0,
                };
                let warmed = if warmup > 0 { drive(&plan.unmeasured(), make.clone(), 0..warmup).await?.ok() } else { 0 };
                let stop = tokio_util::sync::CancellationToken::new();
                let sampler = tokio::spawn(watch::sample(plan.server_pid, admin, sample_every, Instant::now(), stop.clone()));
                let report = drive(&plan, make, warmup..warmup + count).await?;
                stop.cancel();
                let mut watched = watch::Watched { samples: sampler.await?, drained_after: None };
                if let Some(admin) = admin {
                    let target = published_before + warmed + report.ok();
                    watched.drained_after = watch::drain(admin, target, drain_timeout).await;
                }
                Ok((report, watched))
            })
            .await?;
            match load.format {
                Format::Text => {
                    report.print_text(&format!("bench notify: mode {}", mode.name()), load.concurrency, load.rate);
                    println!("  watched: {}", watched.kv(window, load.rate));
                }
                Format::Kv => println!("{} {}", report.kv_line(mode.name(), load.concurrency, load.rate), watched.kv(window, load.rate)),
            }
            Ok(if report.transport_errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        BenchCommand::DrainQueue { amqp_url, queue } => {
            let stop = tokio_util::sync::CancellationToken::new();
            let stopper = stop.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                }
                stopper.cancel();
            });
            let received = queue::drain(&amqp_url, &queue, stop).await?;
            println!("received={received}");
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Enroll(args) => {
            // The secret `ctp-issuer token` signs with.
            let secret = config.auth.hs256_secret_file.clone().unwrap_or_else(|| ctp_issuer::auth::dev_secret_path(&config.keys_dir));
            enroll::run(args, &secret).await
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
                let answered = ctp_issuer::sim::client::send(&authority, None, http::Method::GET, "/readyz", Bytes::new()).await;
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
