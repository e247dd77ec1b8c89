//! Card-number fingerprinting (`PanKeys::fingerprint`: HMAC-SHA-256, hex, versioned) and
//! the lookup set a notification is matched with (`PanKeys::lookup_fingerprints`).
//!
//! `cargo bench --bench fingerprint`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ctp_issuer::pan::{Pan, PanKeys};
use ctp_issuer::sim::fixtures::{FreshKeys, fresh_cards};

fn fingerprint(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    FreshKeys::write(&dir.path().join("keys")).unwrap();
    let keys = PanKeys::load(&dir.path().join("keys"), "v1", "v1").unwrap();
    let cards: Vec<Pan> = fresh_cards(256).iter().map(|c| Pan::parse(c.digits()).unwrap()).collect();

    let mut group = c.benchmark_group("pan");
    let mut i = 0;
    group.bench_function("fingerprint", |b| {
        b.iter(|| {
            i = (i + 1) % cards.len();
            keys.fingerprint(&cards[i])
        })
    });
    group.bench_function("lookup_fingerprints", |b| {
        b.iter(|| {
            i = (i + 1) % cards.len();
            keys.lookup_fingerprints(&cards[i])
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = fingerprint
}
criterion_main!(benches);
