//! What the service counts, read from the real binary's own `/metrics`: a process of the
//! test's own, so that every value is this test's alone and can be asserted exactly (the
//! in-process servers of the other tests share one process-wide registry, where "it went
//! up" can be another test's doing). The Visa endpoint's reasons and outcomes are counted
//! in `visa_notification::every_protocol_status_with_its_reason`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use ctp_issuer::sim::visa::NotificationBuilder;
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::api::{Api, profile};
use crate::support::binary::{Running, Setup, arg, fixture};
use crate::support::cards::{CARD_1, CARD_2, TR, payload};
use crate::support::http::request;
use crate::support::until;

/// The embedded SaaS simulator's address, from the binary's log.
fn saas(server: &Running) -> SocketAddr {
    let line = server.log_line(|l| l["message"] == "embedded Click to Pay SaaS simulator").expect("the embedded simulator");
    line["addr"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_connection_is_counted() {
    const MAX: usize = 4;
    let mut setup = Setup::new();
    // No deadline of a connection's own may close one during the test: only the bound may.
    setup.set("CTP_HTTP_MAX_CONNECTIONS", &MAX.to_string()).set("CTP_HTTP_IDLE_TIMEOUT", "60s").set("CTP_HTTP_HEADER_READ_TIMEOUT", "60s");
    let server = setup.serve().await;
    let mut held = Vec::new();
    for _ in 0..MAX {
        let mut stream = TcpStream::connect(server.public).await.unwrap();
        stream.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        assert!(stream.read(&mut buf).await.unwrap() > 0, "a connection within the limit is served");
        held.push(stream);
    }
    let mut extra = TcpStream::connect(server.public).await.unwrap();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(30), extra.read(&mut buf)).await.expect("a connection past the limit is closed");
    assert_eq!(closed.unwrap_or(0), 0, "a connection past the limit is closed unanswered");
    server.metric_reaches("ctp_http_connections_shed_total{listener=\"public\"}", 1.0).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("ctp_http_connections_shed_total{listener=\"admin\"}"), 0.0);
    assert_eq!(metrics.get("ctp_http_connections_open{listener=\"public\"}"), MAX as f64);
    assert_eq!(metrics.get("ctp_http_requests_total{listener=\"public\",route=\"unmatched\",status=\"404\"}"), MAX as f64);
    drop(held);
    assert!(server.stop().await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reports_what_it_published() {
    let setup = Setup::new();
    let import = setup.run(&["kits", "import", arg(&fixture("kits.csv"))]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let server = setup.serve().await;
    let rsa = NotificationBuilder::rsa_from_dir(&setup.keys()).unwrap();
    let path = ctp_issuer::sim::visa::notification_path(TR);
    for card in [CARD_1, CARD_2] {
        let body = rsa.body(&payload(card), SystemTime::now()).unwrap();
        assert_eq!(request(server.public, Method::POST, &path, &[], body).await.status, StatusCode::OK);
    }
    let published = "ctp_outbox_published_total{event_type=\"CTP_ENROLLMENT_ATTEMPT\"}";
    server.metric_reaches(published, 2.0).await;
    server.metric_reaches("ctp_outbox_waiting_events", 0.0).await;
    let metrics = server.metrics().await;
    assert_eq!(metrics.get("ctp_outbox_dead_events"), 0.0);
    assert!(metrics.has("ctp_outbox_oldest_waiting_age_seconds"), "{}", metrics.text);
    assert_eq!(metrics.get("ctp_outbox_delivery_delay_seconds_count{event_type=\"CTP_ENROLLMENT_ATTEMPT\"}"), 2.0, "one delay per event");
    let rounds = metrics.get("ctp_outbox_publish_duration_seconds_count{publisher=\"log\"}");
    assert!((1.0..=2.0).contains(&rounds), "one or two rounds published the two events: {rounds}");
    assert!(metrics.has("ctp_outbox_publish_duration_seconds_bucket{publisher=\"log\",le=\"0.0005\"}"), "explicit buckets");
    let exited = server.stop().await;
    assert_eq!(exited.stdout.matches("\"eventType\":\"CTP_ENROLLMENT_ATTEMPT\"").count(), 2, "what was counted was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrollment_loop_counts_its_operations_and_the_callbacks_it_refused() {
    let mut setup = Setup::new();
    // Callbacks decide; the reconciler does not look for a minute.
    setup.set("CTP_SAAS_CALLBACK_DELAY", "50ms").set("CTP_RECONCILE_AFTER", "60s");
    let token = setup.token("DEMO");
    let server = setup.serve().await;
    let api = Api::with_token(server.internal, token, "DEMO");
    let sim = saas(&server);
    let faults = json!({"duplicateCallbacks": 2}).to_string();
    assert_eq!(request(sim, Method::POST, "/_sim/faults", &[], faults).await.status, StatusCode::OK);

    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1", profile("alex@example.com")).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1/kits/K1", json!({"pan": CARD_1, "expiry": "2030-01"})).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = api.call(Method::POST, "/click-to-pay/v1/registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The callback and its two copies all arrive; the copies are refused as duplicates.
    until("the three copies of the callback delivered", Duration::from_secs(30), || async {
        (request(sim, Method::GET, "/_sim/stats", &[], "").await.json()["callbacksDelivered"] == 3).then_some(())
    })
    .await;
    let event = "event=\"CTP_REGISTER_ENTITY_AND_KIT\"";
    let metrics = server.metrics().await;
    assert_eq!(metrics.get(&format!("ctp_operations_started_total{{{event}}}")), 1.0);
    assert_eq!(metrics.get(&format!("ctp_operations_finished_total{{{event},status=\"SUCCESS\"}}")), 1.0);
    // A copy is refused as a duplicate (its webhook id was recorded) or, once the first has
    // finished the request, as already finished: which of the two depends on whether the
    // copies overlap, but together they are the two copies, and nothing else was refused.
    let copies = metrics.get("ctp_illegal_transitions_total{reason=\"duplicate_callback\",source=\"callback\"}")
        + metrics.get("ctp_illegal_transitions_total{reason=\"already_finished\",source=\"callback\"}");
    assert_eq!(copies, 2.0, "{:?}", metrics.named("ctp_illegal_transitions_total"));
    let refused: f64 = metrics.named("ctp_illegal_transitions_total").iter().map(|(_, v)| v).sum();
    assert_eq!(refused, 2.0, "nothing else was refused");
    assert_eq!(metrics.get(&format!("ctp_reconciler_polls_total{{{event}}}")), 0.0, "the callback decided, not the reconciler");
    assert_eq!(metrics.get("ctp_http_requests_total{listener=\"public\",route=\"saas_callback\",status=\"200\"}"), 3.0);
    assert!(server.stop().await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_counts_its_polls() {
    let mut setup = Setup::new();
    setup.set("CTP_SAAS_CALLBACK_DELAY", "50ms").set("CTP_RECONCILE_AFTER", "200ms").set("CTP_ENROLLMENT_RECONCILE_INTERVAL", "100ms");
    let token = setup.token("DEMO");
    let server = setup.serve().await;
    let api = Api::with_token(server.internal, token, "DEMO");
    let sim = saas(&server);
    let faults = json!({"dropCallbacks": true}).to_string();
    assert_eq!(request(sim, Method::POST, "/_sim/faults", &[], faults).await.status, StatusCode::OK);
    api.call(Method::PUT, "/registry/v1/entities/E1", profile("alex@example.com")).await;
    api.call(Method::PUT, "/registry/v1/entities/E1/kits/K1", json!({"pan": CARD_1, "expiry": "2030-01"})).await;
    let (status, body) = api.call(Method::POST, "/click-to-pay/v1/registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let finished = "ctp_operations_finished_total{event=\"CTP_REGISTER_ENTITY_AND_KIT\",status=\"SUCCESS\"}";
    server.metric_reaches(finished, 1.0).await;
    let metrics = server.metrics().await;
    let polls = metrics.get("ctp_reconciler_polls_total{event=\"CTP_REGISTER_ENTITY_AND_KIT\"}");
    assert!(polls >= 1.0, "no callback came, so the reconciler's poll finished it: {polls}");
    assert_eq!(metrics.get("ctp_saas_simulator_in_use"), 1.0);
    assert!(server.stop().await.status.success());
}
