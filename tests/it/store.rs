//! The store suite: the same behaviour asked of SQLite and PostgreSQL, and the CSV import
//! that feeds it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ctp_issuer::pan::PanKeys;
use ctp_issuer::registry::import::import_kits;
use ctp_issuer::registry::{CardRegistry, sealing_context};
use ctp_issuer::store::attempts::AttemptWrite;
use ctp_issuer::store::{AttemptOutcome, KitUpsert, Store};
use ctp_issuer::tenants::Tenants;
use ctp_issuer::visa::VerifiedNotification;

use crate::db_test;
use crate::support::TestDb;
use crate::support::cards::{STRANGER, attempt_write, dev_pan_keys as keys, kit_record as kit, verified};

fn tenant(id: &str) -> ctp_issuer::ids::TenantId {
    ctp_issuer::ids::TenantId::parse(id).unwrap()
}

/// A single-issuer registry on `store` with the development keys.
fn registry(store: &Store) -> CardRegistry {
    CardRegistry::new(store.clone(), Arc::new(keys()), Arc::new(Tenants::default()))
}

fn now() -> i64 {
    ctp_issuer::store::epoch_millis(SystemTime::now())
}

/// The write of a verified notification, looked up under every key version.
fn write(keys: &PanKeys, n: &VerifiedNotification) -> AttemptWrite {
    attempt_write(n, keys.lookup_fingerprints(&n.attempt().pan))
}

db_test!(kit_upsert_is_idempotent_and_guards_card_ownership, |db: TestDb| async move {
    let store: Store = db.store().await;
    let keys = keys();
    let k = kit(&keys, "T1", "K1", "4111111111111111");
    assert_eq!(store.upsert_kit(&k, false, now()).await.unwrap(), KitUpsert::Inserted);
    // Same data, freshly sealed (new nonce): nothing changes.
    let again = kit(&keys, "T1", "K1", "4111111111111111");
    assert_eq!(store.upsert_kit(&again, false, now()).await.unwrap(), KitUpsert::Unchanged);
    // A changed expiry or name is an update.
    let mut changed = again.clone();
    changed.expiry = Some("2031-02".into());
    assert_eq!(store.upsert_kit(&changed, false, now()).await.unwrap(), KitUpsert::Updated);
    let mut renamed = changed.clone();
    renamed.contact.last_name = Some("Lima".into());
    assert_eq!(store.upsert_kit(&renamed, false, now()).await.unwrap(), KitUpsert::Updated);
    // The same card under another kit, in this tenant or another, is refused.
    assert_eq!(store.upsert_kit(&kit(&keys, "T1", "K2", "4111111111111111"), false, now()).await.unwrap(), KitUpsert::CardTaken);
    assert_eq!(store.upsert_kit(&kit(&keys, "T2", "K1", "4111111111111111"), false, now()).await.unwrap(), KitUpsert::CardTaken);
    // A kit reissued with a new card number is an update.
    assert_eq!(store.upsert_kit(&kit(&keys, "T1", "K1", "4242424242424242"), false, now()).await.unwrap(), KitUpsert::Updated);
    store.close().await;
});

db_test!(attempt_is_recorded_once_with_its_outbox_event, |db: TestDb| async move {
    let store = db.store().await;
    let keys = keys();
    store.upsert_kit(&kit(&keys, "T1", "K1", "4111111111111111"), false, now()).await.unwrap();
    let n = verified("4111111111111111");

    assert!(!store.attempt_seen(n.envelope_hash()).await.unwrap());
    let AttemptOutcome::Recorded { attempt_id, kit } = store.record_attempt(write(&keys, &n)).await.unwrap() else {
        panic!("not recorded")
    };
    assert_eq!((kit.tenant.as_str(), kit.kit_no.as_str(), kit.entity_id.as_str()), ("T1", "K1", "E-K1"));
    assert!(store.attempt_seen(n.envelope_hash()).await.unwrap());
    assert_eq!(store.record_attempt(write(&keys, &n)).await.unwrap(), AttemptOutcome::Duplicate);

    let rows = store.recent_attempts(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, attempt_id);
    assert_eq!(rows[0].pan_last4, "1111");
    assert_eq!(rows[0].last_name.as_deref(), Some("Lima"));
    let events = store.pending_outbox(10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tenant, "T1");
    assert_eq!(events[0].event_type, "CTP_ENROLLMENT_ATTEMPT");

    let stranger = verified(STRANGER);
    assert_eq!(store.record_attempt(write(&keys, &stranger)).await.unwrap(), AttemptOutcome::UnknownCard);
    assert_eq!(store.pending_outbox(10).await.unwrap().len(), 1, "an unknown card wrote an event");
    store.close().await;
});

db_test!(import_reports_bad_rows_by_line_and_writes_the_good_ones, |db: TestDb| async move {
    let store = db.store().await;
    let csv = "\
kit_no,entity_id,pan,expiry,email,phone
K1,E1,4111111111111111,2030-01,a@example.com,+1 555 0100
K2,E1,4111111111111112,2030-01,,
K3,E2,4012888888881881,2030-13,,
K4,E2,40128888,2030-01,,
K5,,4242424242424242,,,
K6,E3,4000056655665556,,not-an-email,
K7,E3,4000056655665556,,,
K8,E3,4111111111111111,,,
";
    let report = import_kits(csv.as_bytes(), Some(&tenant("DEMO")), &registry(&store), |_| {}).await.unwrap();
    assert_eq!((report.inserted, report.updated, report.unchanged), (2, 0, 0), "{report:?}");
    let lines: Vec<(u64, &str)> = report.rejected.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(
        lines,
        vec![
            (3, "pan: card number fails the Luhn check"),
            (4, "expiry must be YYYY-MM, month 01 to 12"),
            (5, "pan: card number must have 12 to 19 digits, it has 8"),
            (6, "entity_id is empty"),
            (7, "email is not an email address"),
            (9, "pan: card number is already registered to another kit"),
        ]
    );
    for e in &report.rejected {
        assert!(!e.message.contains("4111") && !e.message.contains("4012"), "a row error quoted a card: {e}");
    }
    // The same file again changes nothing and reports the same rejections.
    let again = import_kits(csv.as_bytes(), Some(&tenant("DEMO")), &registry(&store), |_| {}).await.unwrap();
    assert_eq!((again.inserted, again.updated, again.unchanged, again.rejected.len()), (0, 0, 2, 6));
    store.close().await;
});

#[tokio::test]
async fn import_needs_the_required_columns_and_a_tenant() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let registry = registry(&store);
    let err = import_kits("kit_no,pan\nK1,4111111111111111\n".as_bytes(), Some(&tenant("T")), &registry, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("entity_id"), "{err}");
    let err = import_kits("kit_no,entity_id,pan\nK1,E1,4111111111111111\n".as_bytes(), None, &registry, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("--tenant"), "{err}");
    // A tenant column beats --tenant; an empty cell falls back to it.
    let csv = "tenant,kit_no,entity_id,pan\nA,K1,E1,4111111111111111\n,K2,E2,4242424242424242\n";
    let report = import_kits(csv.as_bytes(), Some(&tenant("B")), &registry, |_| {}).await.unwrap();
    assert_eq!(report.inserted, 2);
}

#[tokio::test]
async fn sealed_card_number_opens_only_for_its_own_kit() {
    // (What the sealed value is, byte for byte, is checked against an independent
    // implementation in known_answers.)
    let keys = keys();
    let k = kit(&keys, "T1", "K1", "4111111111111111");
    let again = kit(&keys, "T1", "K1", "4111111111111111");
    assert_ne!(k.pan_sealed, again.pan_sealed, "a fresh nonce each time: equal cards do not seal alike");
    assert_eq!(keys.open(&k.pan_sealed, &sealing_context("T1", "K1")).unwrap().last4(), "1111");
    assert!(keys.open(&k.pan_sealed, &sealing_context("T1", "K2")).is_err());
    assert!(keys.open(&k.pan_sealed, &sealing_context("T2", "K1")).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Whatever bytes a CSV file holds, the import reports rows or a header/CSV error; it
    /// never panics, and no error message repeats a card number it was given.
    #[test]
    fn import_of_arbitrary_bytes_never_panics(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        header in proptest::prelude::any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let db = TestDb::sqlite();
            let store = db.store().await;
            let mut input = if header { b"tenant,entity_id,kit_no,pan\nT,E1,K1,4111111111111111\n".to_vec() } else { Vec::new() };
            input.extend_from_slice(&noise);
            match import_kits(input.as_slice(), Some(&tenant("T")), &registry(&store), |_| {}).await {
                Ok(report) => {
                    for e in report.rejected {
                        assert!(!e.message.contains("4111111111111111"));
                    }
                }
                Err(e) => assert!(!e.to_string().contains("4111111111111111")),
            }
            store.close().await;
        });
    }
}

/// sqlx 0.9.0 leaves Nagle's algorithm on for PostgreSQL (vendor/README.md): every socket
/// the store opens to PostgreSQL must have TCP_NODELAY, or a query written in two segments
/// waits ~40 ms for the server's delayed ACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sockets_disable_nagle() {
    let Some(db) = TestDb::postgres().await else { return };
    let store = db.store().await;
    store.ping().await.unwrap();
    let port = url_port(&db.url);
    let nodelay = tcp_sockets_to(port);
    assert!(!nodelay.is_empty(), "no open socket to PostgreSQL's port {port} found");
    assert!(nodelay.iter().all(|on| *on), "a PostgreSQL socket has Nagle's algorithm on: {nodelay:?}");
    store.close().await;
}

fn url_port(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap().split(['/', '?']).next().unwrap();
    authority.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(5432)
}

/// TCP_NODELAY of every socket of this process connected to `port`.
fn tcp_sockets_to(port: u16) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // SAFETY: only used for getsockopt/getpeername during this call; if another thread
        // closed the descriptor meanwhile, those fail with EBADF and it is skipped.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else { continue };
        if peer.port() == port
            && let Ok(on) = socket.tcp_nodelay()
        {
            found.push(on);
        }
    }
    found
}

/// A customer's kits (the entity view) are found through the entity index, in kit order,
/// not by scanning every kit of the tenant, which SQLite's planner preferred while the
/// index lacked `kit_no` (found by `bench enroll`: ~680 µs per read at 3000 kits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_kits_are_read_through_the_entity_index() {
    let db = TestDb::sqlite();
    db.store().await.close().await;
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN
         SELECT k.kit_no, p.ctp_kit_status FROM kit k LEFT JOIN ctp_payment p ON p.tenant = k.tenant AND p.kit_no = k.kit_no
         WHERE k.tenant = ? AND k.entity_id = ? ORDER BY k.kit_no",
    )
    .bind("T")
    .bind("E")
    .fetch_all(&pool)
    .await
    .unwrap();
    let steps: Vec<&str> = plan.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
    assert!(steps.iter().any(|s| s.contains("idx_kit_entity (tenant=? AND entity_id=?)")), "{steps:?}");
    assert!(!steps.iter().any(|s| s.contains("TEMP B-TREE")), "sorted separately: {steps:?}");
}

db_test!(rows_of_one_file_take_effect_in_the_files_order, |db: TestDb| async move {
    // Rows are stored many at a time; still, the first row with a card takes it and the
    // last row of a kit is the one that stands, as if stored one by one.
    let store = db.store().await;
    let mut csv = String::from("kit_no,entity_id,pan,expiry\n");
    for i in 0..40 {
        csv.push_str(&format!("K{i},E{i},4111111111111111,2030-01\n"));
        csv.push_str(&format!("KX,EX,4012888888881881,2030-{:02}\n", i % 12 + 1));
    }
    let report = import_kits(csv.as_bytes(), Some(&tenant("DEMO")), &registry(&store), |_| {}).await.unwrap();
    assert_eq!((report.inserted, report.updated), (2, 39), "{report:?}");
    let refused: Vec<u64> = report.rejected.iter().map(|e| e.line).collect();
    assert_eq!(refused, (1..40).map(|i| 2 + 2 * i).collect::<Vec<u64>>(), "the first row with the card keeps it");
    let kit = store.entity("DEMO", "E0").await.unwrap().unwrap();
    assert_eq!(kit.kits[0].kit_no, "K0");
    let last = store.entity("DEMO", "EX").await.unwrap().unwrap();
    assert_eq!(last.kits[0].expiry.as_deref(), Some("2030-04"), "the last row of KX stands (row 40: month 4)");
    store.close().await;
});

db_test!(retention_deletes_what_has_served_and_keeps_what_waits, |db: TestDb| async move {
    use ctp_issuer::store::idempotency::Claim;
    use ctp_issuer::store::retention::{Purged, RetentionConfig};
    const DAY: i64 = 24 * 3600 * 1000;

    let store = db.store().await;
    let keys = keys();
    let t = now();
    store.upsert_kit(&kit(&keys, "T1", "K1", "4111111111111111"), false, t).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            store.record_attempt(write(&keys, &verified("4111111111111111"))).await.unwrap(),
            AttemptOutcome::Recorded { .. }
        ));
    }
    // The first event was published eight days ago, the second just now; the third waits.
    let claimed = store.claim_outbox("relay-test", now(), Duration::from_secs(60), 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store.mark_outbox_published(&[claimed[0].id], t - 8 * DAY).await.unwrap();
    store.mark_outbox_published(&[claimed[1].id], t).await.unwrap();
    // A key first used two days ago, and one used now.
    for (key, at) in [("old-key", t - 2 * DAY), ("new-key", t)] {
        let Claim::Claimed { claimed_at } = store.claim_idempotency_key("T1", key, "digest", at, at - 60_000).await.unwrap() else {
            panic!("{key} not claimed")
        };
        store.complete_idempotency_key("T1", key, claimed_at, 200, "{}", at).await.unwrap();
    }
    // Card-details links that expired two hours and ten minutes ago, and a live one.
    const MINUTE: i64 = 60_000;
    for (hash, expires_at) in [("v1:old", t - 120 * MINUTE), ("v1:recent", t - 10 * MINUTE), ("v1:live", t + 5 * MINUTE)] {
        assert!(store.insert_widget_link(hash, "T1", expires_at, 3, expires_at - 5 * MINUTE).await.unwrap());
    }

    let retention = RetentionConfig::default();
    let purged = store.purge(&retention, SystemTime::now()).await.unwrap();
    assert_eq!(purged, Purged { published_events: 1, callback_ids: 0, idempotency_keys: 1, widget_links: 1 });
    assert!(store.widget_link("v1:old").await.unwrap().is_none());
    assert!(store.widget_link("v1:recent").await.unwrap().is_some(), "kept for an hour after it expired");
    // The old key is forgotten: using it again runs the request; the new one still replays.
    assert!(matches!(store.claim_idempotency_key("T1", "old-key", "other", t, t - 60_000).await.unwrap(), Claim::Claimed { .. }));
    assert!(matches!(store.claim_idempotency_key("T1", "new-key", "digest", t, t - 60_000).await.unwrap(), Claim::Replay { .. }));

    // A month on, the second published event goes too; the waiting one is never deleted.
    let later = SystemTime::now() + Duration::from_secs(30 * 24 * 3600);
    let purged = store.purge(&retention, later).await.unwrap();
    assert_eq!((purged.published_events, purged.widget_links), (1, 2));
    let waiting = store.pending_outbox(10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].id > claimed[1].id, "the waiting event is the third");
    assert_eq!(store.outbox_stats().await.unwrap().waiting, 1);
    store.close().await;
});
