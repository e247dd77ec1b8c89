//! The whole notification path without the network: `public::visa_notification::accept` (parse,
//! duplicate check, verify + decrypt on the blocking pool, fingerprint, record attempt and
//! outbox event) against a real SQLite store in a temporary directory.
//!
//! Every iteration sends a notification never sent before: the store answers a repeated
//! envelope from its deduplication index without any cryptography, so reusing bodies
//! would measure that shortcut instead. Bodies are built outside the timed region
//! (`iter_custom`), then sent either one after another or from 64 tasks at once (what the
//! server sees from Visa under load, and where write batching shows).
//!
//! `cargo bench --bench handler`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ctp_issuer::public::visa_notification::{Accepted, accept};
use ctp_issuer::registry::import::import_kits;
use ctp_issuer::sim::fixtures::{FreshKeys, Mode, TOKEN_REQUESTOR_ID, TestCard, build_bodies, read_cards, write_kits_csv};
use ctp_issuer::{App, Config};

struct Fixture {
    _dir: tempfile::TempDir,
    keys_dir: std::path::PathBuf,
    cards: Vec<TestCard>,
    app: App,
}

fn fixture(runtime: &tokio::runtime::Runtime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    FreshKeys::write(&keys_dir).unwrap();
    let kits = dir.path().join("kits.csv");
    write_kits_csv(&kits, 500).unwrap();
    let cards = read_cards(&kits).unwrap();
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", dir.path().join("bench.db").display()).parse().unwrap();
    config.keys_dir = keys_dir.clone();
    config.visa.replay_window = Duration::from_secs(3600);
    let app = runtime.block_on(async {
        let app = App::build(config).await.unwrap();
        let file = std::fs::File::open(&kits).unwrap();
        let report = import_kits(file, None, &app.services().registry, |_| {}).await.unwrap();
        assert_eq!(report.inserted, 500);
        app
    });
    Fixture { _dir: dir, keys_dir, cards, app }
}

/// Sends `bodies` through `accept` from `tasks` tasks at once; returns the elapsed time.
async fn send_all(app: &App, bodies: Vec<String>, tasks: usize) -> Duration {
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (app, bodies, next) = (app.clone(), bodies.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let outcome = accept(app.services(), TOKEN_REQUESTOR_ID, Some("CTP_ENROLLMENT_ATTEMPT"), body.as_bytes()).await;
                assert!(matches!(outcome, Ok(Accepted::Recorded { .. })), "{outcome:?}");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

fn handler(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = fixture(&runtime);
    let mut group = c.benchmark_group("handler_sqlite");
    for (mode, tasks) in [(Mode::Rsa, 1), (Mode::SharedHs256, 1), (Mode::SharedHs256, 64), (Mode::Rsa, 64)] {
        let name = format!("{}/tasks-{tasks}", mode.name());
        let mut first = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let bodies = build_bodies(&f.keys_dir, mode, &f.cards, first, iters as usize).unwrap();
                first += iters as usize;
                runtime.block_on(send_all(&f.app, bodies, tasks))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = handler
}
criterion_main!(benches);
