//! Envelope verify + decrypt (`RawNotification::parse(..)?.open(..)`) in each key mode, on
//! fresh keys. No store is involved, so one body per mode is reused: `open` is a pure
//! function of its input.
//!
//! `cargo bench --bench envelope`

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use ctp_issuer::pan::PanKeys;
use ctp_issuer::sim::fixtures::{FreshKeys, Mode, TOKEN_REQUESTOR_ID, build_bodies, read_cards, write_kits_csv};
use ctp_issuer::visa::{RawNotification, ReplayPolicy, VisaKeyRing};

fn envelope(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    FreshKeys::write(&keys_dir).unwrap();
    write_kits_csv(&dir.path().join("kits.csv"), 4).unwrap();
    let cards = read_cards(&dir.path().join("kits.csv")).unwrap();
    let ring = VisaKeyRing::load(&keys_dir, &["PS256".into(), "HS256".into()]).unwrap();
    let policy = ReplayPolicy { window: Duration::from_secs(3600), require_iat: true };
    let pan_keys = PanKeys::load(&keys_dir, "v1", "v1").unwrap();

    let mut group = c.benchmark_group("envelope_open");
    for mode in [Mode::Rsa, Mode::SharedHs256, Mode::Shared] {
        let body = build_bodies(&keys_dir, mode, &cards, 0, 1).unwrap().remove(0);
        group.bench_function(mode.name(), |b| {
            b.iter(|| {
                let raw = RawNotification::parse(TOKEN_REQUESTOR_ID, Some("CTP_ENROLLMENT_ATTEMPT"), body.as_bytes(), &pan_keys).unwrap();
                raw.open(&ring, policy, SystemTime::now()).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = envelope
}
criterion_main!(benches);
