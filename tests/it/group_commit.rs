//! Notification writes are batched (SQLite's one writer, PostgreSQL's group commit): many concurrent
//! notifications share one transaction, and each still gets exactly the outcome it would
//! have had alone — recorded, duplicate, unknown card, or its own database error.
//! Asked of SQLite and PostgreSQL alike.

use std::time::{Duration, SystemTime};

use ctp_issuer::pan::PanKeys;
use ctp_issuer::sim::fixtures::{FreshKeys, Mode, TOKEN_REQUESTOR_ID, TestCard, build_bodies, fresh_cards};
use ctp_issuer::store::attempts::AttemptWrite;
use ctp_issuer::store::{AttemptOutcome, Store};
use ctp_issuer::visa::{RawNotification, ReplayPolicy, VerifiedNotification, VisaKeyRing};
use futures_util::future::join_all;
use sqlx::Connection;

use crate::db_test;
use crate::support::cards::{attempt_write, kit_record, pan_keys};
use crate::support::{Blocker, TestDb, until};

struct Setup {
    _dir: tempfile::TempDir,
    pan_keys: PanKeys,
    ring: VisaKeyRing,
    keys_dir: std::path::PathBuf,
}

/// Fresh keys (a new Visa pair, shared secret and card-number keys) in a directory of
/// their own.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    FreshKeys::write(&keys_dir).unwrap();
    Setup { pan_keys: pan_keys(&keys_dir), ring: VisaKeyRing::load(&keys_dir, &["HS256".into()]).unwrap(), keys_dir, _dir: dir }
}

impl Setup {
    async fn kit(&self, store: &Store, kit_no: &str, digits: &str) {
        let record = kit_record(&self.pan_keys, "T", kit_no, digits);
        store.upsert_kit(&record, false, ctp_issuer::store::epoch_millis(SystemTime::now())).await.unwrap();
    }

    /// `per_card` distinct verified notifications for each card, from `token_requestor_id`.
    fn notifications(&self, cards: &[&str], per_card: usize, token_requestor_id: &str) -> Vec<VerifiedNotification> {
        let cards: Vec<_> = cards.iter().map(|d| TestCard::parse(d).unwrap()).collect();
        let policy = ReplayPolicy { window: Duration::from_secs(300), require_iat: true };
        build_bodies(&self.keys_dir, Mode::SharedHs256, &cards, 0, cards.len() * per_card)
            .unwrap()
            .iter()
            .map(|b| {
                RawNotification::parse(token_requestor_id, None, b.as_bytes(), &self.pan_keys)
                    .unwrap()
                    .open(&self.ring, policy, SystemTime::now())
                    .unwrap()
            })
            .collect()
    }

    fn fingerprints(&self, n: &VerifiedNotification) -> Vec<String> {
        self.pan_keys.lookup_fingerprints(&n.attempt().pan)
    }
}

/// The write of `n`, looked up under `fingerprints`.
fn write(n: &VerifiedNotification, fingerprints: &[String]) -> AttemptWrite {
    attempt_write(n, fingerprints.to_vec())
}

/// Holds the database's write path until the notifications sent meanwhile have queued up,
/// so that they are written together once it is released. On PostgreSQL that moment is
/// observable (a write waits for the table lock; those behind it queue in the group
/// commit); on SQLite the writer waits inside SQLite's busy handler, where nothing shows,
/// so the hold is a fixed 300 ms there. Either way the outcomes asserted hold however the
/// writes happen to be grouped.
async fn with_writes_held<F: std::future::Future>(db: &TestDb, work: F) -> F::Output {
    let mut blocker = Blocker::hold(db).await;
    let release = async {
        write_waits_for_lock(db).await;
        blocker.release().await;
    };
    let (out, ()) = tokio::join!(work, release);
    out
}

/// Returns once a write to `enrollment_attempt` waits behind the [`Blocker`]'s lock
/// (PostgreSQL), or after 300 ms (SQLite, where that cannot be seen).
async fn write_waits_for_lock(db: &TestDb) {
    let Some(schema) = db.schema() else {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return;
    };
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let table = format!("{schema}.enrollment_attempt");
    until("a write waiting for the enrollment_attempt lock", Duration::from_secs(20), || async {
        let (waiting,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass")
            .bind(&table)
            .fetch_one(&pool)
            .await
            .unwrap();
        (waiting > 0).then_some(())
    })
    .await;
    pool.close().await;
}

db_test!(concurrent_notifications_each_get_their_own_outcome, |db: TestDb| async move {
    let store = db.store().await;
    let s = setup();
    let cards: Vec<String> = fresh_cards(12).iter().map(|c| c.digits().to_owned()).collect();
    for (i, card) in cards[..10].iter().enumerate() {
        s.kit(&store, &format!("K{i}"), card).await;
    }
    let known: Vec<&str> = cards[..10].iter().map(String::as_str).collect();
    let strangers: Vec<&str> = cards[10..].iter().map(String::as_str).collect();
    let mut ns = s.notifications(&known, 3, TOKEN_REQUESTOR_ID);
    let unknown = s.notifications(&strangers, 1, TOKEN_REQUESTOR_ID);
    let first_copy = ns[0].clone();
    ns.push(first_copy);
    ns.extend(unknown);
    let fps: Vec<Vec<String>> = ns.iter().map(|n| s.fingerprints(n)).collect();

    let outcomes = with_writes_held(&db, join_all(ns.iter().zip(&fps).map(|(n, f)| store.record_attempt(write(n, f))))).await;
    let outcomes: Vec<AttemptOutcome> = outcomes.into_iter().map(Result::unwrap).collect();

    // 30 distinct envelopes for known cards: each recorded against its own card's kit.
    for (i, outcome) in outcomes[..30].iter().enumerate() {
        match outcome {
            AttemptOutcome::Recorded { kit, .. } => {
                assert_eq!(kit.kit_no, format!("K{}", i % 10), "notification {i} matched the wrong kit");
                assert_eq!(kit.entity_id, format!("E-K{}", i % 10));
            }
            AttemptOutcome::Duplicate if i == 0 => {}
            other => panic!("notification {i}: {other:?}"),
        }
    }
    // The second copy of envelope 0: exactly one of the two copies is recorded.
    let copies = [&outcomes[0], &outcomes[30]];
    assert_eq!(copies.iter().filter(|o| matches!(o, AttemptOutcome::Recorded { .. })).count(), 1, "{copies:?}");
    assert_eq!(copies.iter().filter(|o| matches!(o, AttemptOutcome::Duplicate)).count(), 1, "{copies:?}");
    assert_eq!(outcomes[31..], [AttemptOutcome::UnknownCard, AttemptOutcome::UnknownCard]);

    // Exactly one attempt row and one outbox event per recorded notification.
    let attempts = store.recent_attempts(1000).await.unwrap();
    assert_eq!(attempts.len(), 30);
    let ids: std::collections::HashSet<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            AttemptOutcome::Recorded { attempt_id, .. } => Some(attempt_id.clone()),
            _ => None,
        })
        .collect();
    assert!(attempts.iter().all(|a| ids.contains(&a.id)));
    assert_eq!(store.pending_outbox(1000).await.unwrap().len(), 30);

    // Duplicate checks, concurrent too, answer per envelope.
    let seen = join_all(ns.iter().map(|n| store.attempt_seen(n.envelope_hash()))).await;
    let seen: Vec<bool> = seen.into_iter().map(Result::unwrap).collect();
    assert!(seen[..31].iter().all(|s| *s));
    assert_eq!(seen[31..], [false, false]);
    // And a redelivery of any of them is a duplicate.
    assert_eq!(store.record_attempt(write(&ns[5], &fps[5])).await.unwrap(), AttemptOutcome::Duplicate);
    store.close().await;
});

db_test!(a_notification_whose_write_fails_fails_alone, |db: TestDb| async move {
    let store = db.store().await;
    let s = setup();
    let cards: Vec<String> = fresh_cards(3).iter().map(|c| c.digits().to_owned()).collect();
    for (i, card) in cards.iter().enumerate() {
        s.kit(&store, &format!("K{i}"), card).await;
    }
    // Any attempt from this token requestor makes the database refuse the insert.
    let poison = "99999999999";
    if db.kind == "sqlite" {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON enrollment_attempt WHEN NEW.token_requestor_id = '99999999999'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .execute(&mut c)
        .await
        .unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.token_requestor_id = '99999999999' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON enrollment_attempt FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
    let all: Vec<&str> = cards.iter().map(String::as_str).collect();
    let mut ns = s.notifications(&all, 2, TOKEN_REQUESTOR_ID);
    let bad = s.notifications(&all[..1], 1, poison);
    ns.insert(3, bad[0].clone());
    let fps: Vec<Vec<String>> = ns.iter().map(|n| s.fingerprints(n)).collect();

    let outcomes = with_writes_held(&db, join_all(ns.iter().zip(&fps).map(|(n, f)| store.record_attempt(write(n, f))))).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 3 {
            assert!(outcome.is_err(), "the refused notification must fail (a 500 for Visa): {outcome:?}");
        } else {
            assert!(matches!(outcome, Ok(AttemptOutcome::Recorded { .. })), "notification {i}: {outcome:?}");
        }
    }
    assert_eq!(store.recent_attempts(100).await.unwrap().len(), 6);
    assert_eq!(store.pending_outbox(100).await.unwrap().len(), 6, "an event without its attempt, or the reverse");
    assert!(!store.attempt_seen(ns[3].envelope_hash()).await.unwrap());
    store.close().await;
});

db_test!(cards_looked_up_under_several_key_versions_batch_too, |db: TestDb| async move {
    let store = db.store().await;
    let s = setup();
    let cards: Vec<String> = fresh_cards(5).iter().map(|c| c.digits().to_owned()).collect();
    for (i, card) in cards[..4].iter().enumerate() {
        s.kit(&store, &format!("K{i}"), card).await;
    }
    let all: Vec<&str> = cards.iter().map(String::as_str).collect();
    let ns = s.notifications(&all, 2, TOKEN_REQUESTOR_ID);
    // As after a key rotation: the current fingerprint and an older version's, first match
    // wins; here the older one matches nothing.
    let fps: Vec<Vec<String>> = ns.iter().map(|n| vec![s.fingerprints(n)[0].clone(), "v0:stale".into()]).collect();
    let outcomes = with_writes_held(&db, join_all(ns.iter().zip(&fps).map(|(n, f)| store.record_attempt(write(n, f))))).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome.unwrap() {
            AttemptOutcome::Recorded { kit, .. } => assert_eq!(kit.kit_no, format!("K{}", i % 5)),
            AttemptOutcome::UnknownCard => assert_eq!(i % 5, 4, "notification {i}"),
            other => panic!("notification {i}: {other:?}"),
        }
    }
    assert_eq!(store.recent_attempts(100).await.unwrap().len(), 8);
    assert_eq!(store.pending_outbox(100).await.unwrap().len(), 8);
    store.close().await;
});

db_test!(a_duplicate_check_does_not_wait_behind_a_blocked_write, |db: TestDb| async move {
    // The SQLite writer waits for the write lock on its own thread, inside SQLite's busy
    // handler; the duplicate checks have a thread of their own, so a Visa redelivery is
    // still answered while someone else (an import, say) holds the lock.
    let store = db.store().await;
    let s = setup();
    let card = fresh_cards(1)[0].digits().to_owned();
    s.kit(&store, "K0", &card).await;
    let ns = s.notifications(&[card.as_str()], 2, TOKEN_REQUESTOR_ID);
    let fps = s.fingerprints(&ns[0]);
    assert!(matches!(store.record_attempt(write(&ns[0], &fps)).await.unwrap(), AttemptOutcome::Recorded { .. }));

    let mut blocker = Blocker::hold(&db).await;
    let write = tokio::spawn({
        let (store, n, fps) = (store.clone(), ns[1].clone(), fps.clone());
        async move { store.record_attempt(write(&n, &fps)).await }
    });
    // Once the write waits for the lock, ask: the answer must come while the write is
    // still waiting (the lock stays held until after the check, and the write's 5 s busy
    // timeout outlasts the check's 2 s).
    write_waits_for_lock(&db).await;
    let seen = tokio::time::timeout(Duration::from_secs(2), store.attempt_seen(ns[0].envelope_hash())).await;
    assert!(!write.is_finished(), "the write went through although the lock was held");
    assert!(seen.expect("the duplicate check waited behind the blocked write").unwrap());

    blocker.release().await;
    assert!(matches!(write.await.unwrap().unwrap(), AttemptOutcome::Recorded { .. }));
    store.close().await;
});
