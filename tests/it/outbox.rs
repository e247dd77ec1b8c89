//! The outbox relay's logic against real SQLite and PostgreSQL: claiming in order, marking
//! published, backoff, death and redrive, malformed payloads, leases, and the relay inside
//! the running server. The broker here is a stand-in that records what it was given and
//! fails when told to (the real broker is in [`crate::rabbitmq`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ctp_issuer::config::{LogTarget, OutboxConfig};
use ctp_issuer::notify::publish::{Publish, PublishError};
use ctp_issuer::notify::relay::{Relay, RelayError, Round};
use ctp_issuer::sim::visa::NotificationBuilder;
use ctp_issuer::store::epoch_millis;
use ctp_issuer::store::outbox::{OutboxEvent, Retry};
use http::StatusCode;

use crate::db_test;
use crate::support::cards::{CARD_1, TR, payload};
use crate::support::outbox::{Raw, fast, success_payload};
use crate::support::{TestDb, TestServer};

/// Stands for the broker: records what it accepted; refuses the ids in `refuse`; is
/// unreachable while `down` is set.
#[derive(Clone, Default)]
struct Recorder {
    received: Arc<Mutex<Vec<OutboxEvent>>>,
    refuse: Arc<Mutex<HashSet<i64>>>,
    down: Arc<AtomicBool>,
}

impl Recorder {
    fn ids(&self) -> Vec<i64> {
        self.received.lock().unwrap().iter().map(|e| e.id).collect()
    }
}

impl Publish for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn ready(&mut self) -> Result<(), PublishError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PublishError::Unavailable("test broker is down".into()));
        }
        Ok(())
    }

    async fn publish(&mut self, events: &[OutboxEvent]) -> Vec<Result<(), PublishError>> {
        let refuse = self.refuse.lock().unwrap().clone();
        events
            .iter()
            .map(|e| {
                if refuse.contains(&e.id) {
                    Err(PublishError::Returned { code: 312, text: "NO_ROUTE".into() })
                } else {
                    self.received.lock().unwrap().push(e.clone());
                    Ok(())
                }
            })
            .collect()
    }
}

fn config() -> OutboxConfig {
    let mut c = fast(OutboxConfig::default());
    c.max_attempts = 3;
    c
}

fn now() -> i64 {
    epoch_millis(SystemTime::now())
}

db_test!(every_event_is_published_once_in_order_of_creation, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let inserted = raw.insert_many(25).await;
    let recorder = Recorder::default();
    let mut relay = Relay::new(store.clone(), recorder.clone(), config());

    let mut rounds = Vec::new();
    loop {
        let round = relay.run_once().await.unwrap();
        if round.claimed == 0 {
            break;
        }
        rounds.push(round);
    }
    // Batches of ten, oldest first.
    assert_eq!(rounds.iter().map(|r| r.claimed).collect::<Vec<_>>(), vec![10, 10, 5]);
    assert!(rounds.iter().all(|r| r.published == r.claimed && r.failed == 0), "{rounds:?}");
    assert_eq!(recorder.ids(), inserted.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    // What was sent is what was stored, byte for byte.
    for (event, (_, payload)) in recorder.received.lock().unwrap().iter().zip(&inserted) {
        assert_eq!(&event.payload, payload);
        assert_eq!(event.event_type, "CTP_REGISTER_ENTITY_AND_KIT");
        assert_eq!(event.attempts, 1);
    }
    for row in raw.rows().await {
        assert!(row.published_at.is_some(), "{row:?}");
        assert_eq!((row.attempts, row.dead_at, row.claimed_by), (1, None, None));
    }
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.waiting, stats.oldest_waiting, stats.dead), (0, None, 0));
    raw.close().await;
});

db_test!(a_failing_event_backs_off_dies_and_is_redriven, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let ids: Vec<i64> = raw.insert_many(3).await.into_iter().map(|(id, _)| id).collect();
    let bad = ids[1];
    let recorder = Recorder::default();
    recorder.refuse.lock().unwrap().insert(bad);
    let mut c = config();
    c.backoff_base = Duration::from_secs(1);
    c.backoff_max = Duration::from_secs(1);
    let mut relay = Relay::new(store.clone(), recorder.clone(), c);

    let before = now();
    let round = relay.run_once().await.unwrap();
    assert_eq!(round, Round { claimed: 3, published: 2, failed: 1 });
    assert_eq!(recorder.ids(), vec![ids[0], ids[2]]);
    let row = raw.row(bad).await;
    assert_eq!((row.attempts, row.published_at, row.dead_at, row.claimed_by.as_deref()), (1, None, None, None));
    assert!(row.last_error.as_deref().unwrap().contains("312 NO_ROUTE"), "{row:?}");
    // First retry after half to all of backoff_base.
    assert!(row.next_attempt_at >= before + 500 && row.next_attempt_at <= now() + 1000, "{row:?}");
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.waiting, stats.dead), (1, 0));
    assert!(stats.oldest_waiting.is_some());

    // Not due yet: nothing is claimed.
    assert_eq!(relay.run_once().await.unwrap().claimed, 0);

    let mut tries = 1;
    loop {
        let row = raw.row(bad).await;
        if row.dead_at.is_some() {
            break;
        }
        let wait = u64::try_from(row.next_attempt_at - now()).unwrap_or(0) + 20;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let round = relay.run_once().await.unwrap();
        assert_eq!((round.claimed, round.failed), (1, 1));
        tries += 1;
        assert!(tries <= 3, "still not dead after {tries} tries");
    }
    let row = raw.row(bad).await;
    assert_eq!((row.attempts, row.published_at), (3, None));
    assert_eq!(tries, 3);
    // Dead events are not claimed again.
    assert_eq!(relay.run_once().await.unwrap().claimed, 0);

    let dead = store.list_outbox(true, 10).await.unwrap();
    assert_eq!(dead.iter().map(|e| e.id).collect::<Vec<_>>(), vec![bad]);
    assert!(dead[0].last_error.as_deref().unwrap().contains("NO_ROUTE"));
    assert!(store.list_outbox(false, 10).await.unwrap().is_empty());
    assert_eq!(store.outbox_stats().await.unwrap().dead, 1);

    // Redrive: only dead ids come back; unknown or published ids are ignored.
    assert_eq!(store.redrive_outbox(Some(&[ids[0], 999_999]), now()).await.unwrap(), Vec::<i64>::new());
    assert_eq!(store.redrive_outbox(Some(&[bad]), now()).await.unwrap(), vec![bad]);
    let row = raw.row(bad).await;
    assert_eq!((row.attempts, row.dead_at), (0, None));
    recorder.refuse.lock().unwrap().clear();
    assert_eq!(relay.run_once().await.unwrap(), Round { claimed: 1, published: 1, failed: 0 });
    assert!(raw.row(bad).await.published_at.is_some());
    assert_eq!(recorder.ids(), vec![ids[0], ids[2], bad]);
    raw.close().await;
});

db_test!(redrive_without_ids_brings_back_every_dead_event, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let ids: Vec<i64> = raw.insert_many(4).await.into_iter().map(|(id, _)| id).collect();
    let recorder = Recorder::default();
    recorder.refuse.lock().unwrap().extend([ids[0], ids[3]]);
    let mut c = config();
    c.max_attempts = 1;
    let mut relay = Relay::new(store.clone(), recorder.clone(), c);
    assert_eq!(relay.run_once().await.unwrap(), Round { claimed: 4, published: 2, failed: 2 });
    assert_eq!(store.outbox_stats().await.unwrap().dead, 2);
    assert_eq!(store.redrive_outbox(None, now()).await.unwrap(), vec![ids[0], ids[3]]);
    assert_eq!(store.outbox_stats().await.unwrap().dead, 0);
    raw.close().await;
});

db_test!(a_malformed_payload_is_dead_at_once_and_never_sent, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let good = raw.insert("DEMOBANK", "CTP_ENROLLMENT_ATTEMPT", &success_payload("DEMOBANK", "t-1")).await;
    let bad = raw.insert("DEMOBANK", "CTP_ENROLLMENT_ATTEMPT", "{\"business\": \"DEMOBANK\", truncated").await;
    let recorder = Recorder::default();
    let mut relay = Relay::new(store.clone(), recorder.clone(), config());
    assert_eq!(relay.run_once().await.unwrap(), Round { claimed: 2, published: 1, failed: 1 });
    assert_eq!(recorder.ids(), vec![good]);
    let row = raw.row(bad).await;
    assert!(row.dead_at.is_some() && row.published_at.is_none(), "{row:?}");
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.as_deref().unwrap().contains("payload is not JSON"), "{row:?}");
    raw.close().await;
});

db_test!(an_unreachable_broker_costs_no_attempts, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let ids: Vec<i64> = raw.insert_many(2).await.into_iter().map(|(id, _)| id).collect();
    let recorder = Recorder::default();
    recorder.down.store(true, Ordering::SeqCst);
    let mut relay = Relay::new(store.clone(), recorder.clone(), config());
    for _ in 0..5 {
        let err = relay.run_once().await.unwrap_err();
        assert!(matches!(err, RelayError::Publisher(PublishError::Unavailable(_))), "{err}");
        assert!(err.to_string().contains("test broker is down"), "{err}");
    }
    for row in raw.rows().await {
        assert_eq!((row.attempts, row.claimed_by, row.last_error), (0, None, None));
    }
    recorder.down.store(false, Ordering::SeqCst);
    assert_eq!(relay.run_once().await.unwrap().published, 2);
    assert_eq!(recorder.ids(), ids);
    raw.close().await;
});

db_test!(a_claim_holds_until_its_lease_runs_out, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let id = raw.insert_many(1).await[0].0;

    // A relay claims the event and dies.
    let claimed = store.claim_outbox("crashed-relay", now(), Duration::from_secs(1), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(raw.row(id).await.claimed_by.as_deref(), Some("crashed-relay"));
    // Until the lease runs out, nobody else takes it.
    assert!(store.claim_outbox("other", now(), Duration::from_secs(30), 10).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let recorder = Recorder::default();
    let mut relay = Relay::new(store.clone(), recorder.clone(), config());
    assert_eq!(relay.run_once().await.unwrap(), Round { claimed: 1, published: 1, failed: 0 });
    assert_eq!(recorder.received.lock().unwrap()[0].attempts, 2, "the crashed try counts");

    // The crashed relay comes back and reports a failure: too late, the row is not its own.
    let held = store.mark_outbox_failed(id, "crashed-relay", "late", Retry::At(now())).await.unwrap();
    assert!(!held);
    let row = raw.row(id).await;
    assert!(row.published_at.is_some() && row.last_error.is_none(), "{row:?}");
    raw.close().await;
});

db_test!(a_stale_relay_cannot_reschedule_an_event_another_holds, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let id = raw.insert_many(1).await[0].0;
    store.claim_outbox("slow", now(), Duration::from_millis(50), 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.claim_outbox("fast", now(), Duration::from_secs(30), 10).await.unwrap().len(), 1);
    assert!(!store.mark_outbox_failed(id, "slow", "timeout", Retry::At(now())).await.unwrap());
    assert_eq!(raw.row(id).await.claimed_by.as_deref(), Some("fast"));
    assert!(store.mark_outbox_failed(id, "fast", "returned", Retry::At(now())).await.unwrap());
    let row = raw.row(id).await;
    assert_eq!((row.claimed_by, row.last_error.as_deref()), (None, Some("returned")));
    raw.close().await;
});

db_test!(the_server_runs_the_relay_and_stops_it, |db: TestDb| async move {
    let server = TestServer::start(&db, |c| {
        c.outbox = fast(c.outbox.clone());
        c.outbox.enabled = true;
        c.outbox.log_target = LogTarget::Tracing;
    })
    .await;
    assert_eq!(server.import_fixture_kits().await.inserted, 4);
    let body = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap().body(&payload(CARD_1), SystemTime::now()).unwrap();
    assert_eq!(server.notify(TR, body).await, StatusCode::OK);

    let raw = Raw::open(&db).await;
    raw.wait_all_published(Duration::from_secs(20)).await;
    let rows = raw.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].attempts, rows[0].claimed_by.as_deref(), rows[0].last_error.as_deref()), (1, None, None), "{:?}", rows[0]);
    // The relay's metrics are asserted on a process of their own: metrics::the_relay_reports_what_it_published.
    // The relay stops on the server's shutdown signal.
    tokio::time::timeout(Duration::from_secs(10), server.stop()).await.expect("server and relay stop");
    raw.close().await;
});

db_test!(the_outbox_commands_list_and_redrive, |db: TestDb| async move {
    let store = db.store().await;
    let raw = Raw::open(&db).await;
    let ids: Vec<i64> = raw.insert_many(2).await.into_iter().map(|(id, _)| id).collect();
    let recorder = Recorder::default();
    recorder.refuse.lock().unwrap().insert(ids[0]);
    let mut c = config();
    c.max_attempts = 1;
    c.backoff_base = Duration::from_secs(60);
    c.backoff_max = Duration::from_secs(60);
    let mut relay = Relay::new(store.clone(), recorder.clone(), c);
    // ids[0] dies; ids[1] is published.
    assert_eq!(relay.run_once().await.unwrap(), Round { claimed: 2, published: 1, failed: 1 });
    let waiting = raw.insert_many(1).await[0].0;

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctp-issuer"))
            .args(args)
            .env("CTP_DATABASE_URL", &db.url)
            .env("CTP_LOG", "warn")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, _) = cli(&["outbox", "list", "--dead"]);
    assert_eq!(code, Some(0));
    let line = out.lines().find(|l| l.starts_with(&format!("{}  ", ids[0]))).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("CTP_REGISTER_ENTITY_AND_KIT") && line.contains("dead since") && line.contains("NO_ROUTE"), "{line}");
    assert!(line.contains("attempts=1") && line.contains("tenant=ENBDTABBY"), "{line}");
    assert!(!out.contains("serverNotifyData"), "payloads are not printed: {out}");

    let (code, out, _) = cli(&["outbox", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with(&format!("{waiting}  ")) && out.contains("next try"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let (code, out, err) = cli(&["outbox", "redrive", &ids[0].to_string(), "999999"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains(&format!("redriven: 1 event(s): {}", ids[0])), "{out}");
    assert!(err.contains("999999"), "{err}");

    let (code, out, _) = cli(&["outbox", "list", "--dead"]);
    assert_eq!((code, out.trim()), (Some(0), "no dead events"));
    let (code, out, _) = cli(&["outbox", "redrive"]);
    assert_eq!((code, out.trim()), (Some(0), "redriven: 0 event(s)"));
    assert_eq!(raw.row(ids[0]).await.attempts, 0);
    raw.close().await;
});

db_test!(the_relay_wakes_for_an_event_of_its_own_process_before_its_poll, |db: TestDb| async move {
    let server = TestServer::start(&db, |c| {
        c.outbox = fast(c.outbox.clone());
        c.outbox.enabled = true;
        c.outbox.log_target = LogTarget::Tracing;
        // Only the wake-up can publish within the test's patience.
        c.outbox.poll_interval = Duration::from_secs(3600);
        c.outbox.lease = Duration::from_secs(7200);
    })
    .await;
    assert_eq!(server.import_fixture_kits().await.inserted, 4);
    let raw = Raw::open(&db).await;
    // Let the relay's first round (at start) find nothing and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap().body(&payload(CARD_1), SystemTime::now()).unwrap();
    assert_eq!(server.notify(TR, body).await, StatusCode::OK);
    raw.wait_all_published(Duration::from_secs(5)).await;
    assert_eq!(raw.rows().await.len(), 1);
    tokio::time::timeout(Duration::from_secs(10), server.stop()).await.expect("server and relay stop");
    raw.close().await;
});
