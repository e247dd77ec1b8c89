//! The enrollment loop over loopback: internal API → SaaS simulator (a real HTTP server,
//! in-process) → signed callback → statuses → outbox, on SQLite and PostgreSQL; with the
//! simulator told to fail, time out, drop, duplicate and reorder.

use std::time::Duration;

use ctp_issuer::ctp::CtpEvent;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::api::profile;
use crate::support::http::request;
use crate::support::server::fast_enrollment;
use crate::support::{TestDb, TestServer, until};

const TENANT: &str = "DEMOBANK";

/// A server whose SaaS answers fast and whose reconciler looks often.
async fn start(db: &TestDb) -> TestServer {
    TestServer::start(db, fast_enrollment).await
}

db_test!(full_walk_register_add_remove_profile, |db: TestDb| async move {
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    api.put_customer("ENT-1", &[("KIT-1", "4111111111111111"), ("KIT-2", "4012888888881881")]).await;

    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "ENT-1", "kitNo": "KIT-1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = &body["result"];
    assert_eq!(result["tenant"], TENANT);
    assert_eq!(result["entityId"], "ENT-1");
    assert_eq!(result["event"], "CTP_REGISTER_ENTITY_AND_KIT");
    let trace_id = result["requestTraceId"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 36);
    assert_eq!(body["exception"], Value::Null);

    let e = api.wait_for("ENT-1", "ACTIVE", Some(("KIT-1", "ACTIVE"))).await;
    assert!(e["clickToPayCustomerId"].is_string());
    let (_, status) = api.op("fetchRequestStatus", json!({"requestTraceId": trace_id})).await;
    assert_eq!(status["result"]["status"], "SUCCESS");

    // M2P's lifecycle documentation's success payload, field by field.
    let ev = server.events(CtpEvent::RegisterEntityAndKit).await;
    assert_eq!(ev.len(), 1);
    let d = &ev[0]["serverNotifyData"];
    assert_eq!(ev[0]["business"], TENANT);
    assert_eq!(ev[0]["transactionType"], "CTP_REGISTER_ENTITY_AND_KIT");
    assert_eq!((d["entityId"].as_str(), d["kitNo"].as_str()), (Some("ENT-1"), Some("KIT-1")));
    assert_eq!(d["requestTraceId"], trace_id.as_str());
    assert_eq!(
        (d["requestStatus"].as_str(), d["ctpEntityStatus"].as_str(), d["ctpKitStatus"].as_str()),
        (Some("SUCCESS"), Some("ACTIVE"), Some("ACTIVE"))
    );
    assert_eq!(d["ctpEntityId"], e["clickToPayCustomerId"]);
    assert!(d["ctpKitId"].is_string());
    assert_eq!(d["tenant"], TENANT);

    let (status, body) = api.op("addKit", json!({"entityId": "ENT-1", "kitNo": "KIT-2"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["event"], "CTP_ADD_KIT");
    api.wait_for("ENT-1", "ACTIVE", Some(("KIT-2", "ACTIVE"))).await;

    let (status, _) = api.op("removeKit", json!({"entityId": "ENT-1", "kitNo": "KIT-2"})).await;
    assert_eq!(status, StatusCode::OK);
    api.wait_for("ENT-1", "ACTIVE", Some(("KIT-2", "REMOVED"))).await;

    let (status, body) = api.op("fetchEntityDetails", json!({"entityId": "ENT-1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["networkProfile"]["status"], "ACTIVE");
    assert!(!body.to_string().contains("4111111111111111"));

    let (status, _) = api.op("removeEntity", json!({"entityId": "ENT-1"})).await;
    assert_eq!(status, StatusCode::OK);
    api.wait_for("ENT-1", "REMOVED", Some(("KIT-1", "REMOVED"))).await;
    server.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_of_the_gate_and_the_rules() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    let code = |body: &Value| body["exception"]["errorCode"].as_str().unwrap_or("").to_owned();

    // The gate.
    let reply = request(server.internal, Method::GET, "/registry/v1/entities/E", &[("tenant", TENANT)], "").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "Y102".into()));
    let (status, body) = api.call_with(Method::GET, "/registry/v1/entities/E", "OTHERBANK", &[], Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "Y103".into()));
    let auth = format!("Bearer {}", api.token);
    let reply = request(server.internal, Method::GET, "/registry/v1/entities/E", &[("authorization", &auth)], "").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "Y101".into()));
    let (status, body) =
        api.call_with(Method::GET, "/registry/v1/entities/E", TENANT, &[("x-correlation-id", "has spaces")], Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "Y100".into()));
    let (status, body) = api.call(Method::GET, "/click-to-pay/v1/nothing", Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y404".into()));
    let (status, body) = api.call(Method::GET, "/click-to-pay/v1/addKit", Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "Y405".into()));

    // Validation names the field, never the value.
    let mut bad = profile("alex@example.com");
    bad["billingAddress"]["addressLine1"] = json!("1 Main St #5");
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1", bad).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "Y100".into()));
    assert!(body["exception"]["detailMessage"].as_str().unwrap().contains("billingAddress"));
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1", json!({"firstName": 4111111111111111u64})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("4111111111111111"), "{body}");
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1", json!({"nickname": "x"})).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "Y100".into()));
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1", json!({"firstName": "Alex"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/E1/kits/K1", json!({"pan": "4111111111111112"})).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "Y100".into()));
    assert!(!body.to_string().contains("4111111111111112"));
    let (status, _) = api.call(Method::PUT, "/registry/v1/entities/E1/kits/K1", json!({"pan": "4111111111111111"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/NOPE/kits/K9", json!({"pan": "4242424242424242"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y104".into()));

    // M2P's rules for addKit, and the others.
    let (status, body) = api.op("addKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "Y109".into()));
    assert_eq!(body["exception"]["shortMessage"], "Not a registered Customer");
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "Y100".into()), "profile incomplete: {body}");
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K404"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y105".into()), "an unknown kit before an incomplete profile: {body}");
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E404", "kitNo": "K1"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y104".into()));
    let (status, body) = api.op("removeEntity", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "Y100".into()));
    let (status, body) = api.op("fetchRequestStatus", json!({"requestTraceId": "00000000-0000-0000-0000-000000000000"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y106".into()));

    // A complete profile; then the kit rules.
    api.put_customer("E2", &[("K2", "4242424242424242"), ("K3", "4000056655665556")]).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E2", "kitNo": "K-missing"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y105".into()));
    let (status, _) = api.op("registerEntityAndKit", json!({"entityId": "E2", "kitNo": "K2"})).await;
    assert_eq!(status, StatusCode::OK);
    // (That nothing else may start while the registration is in flight, Y113, is asserted
    // exactly where the registration is held in flight: refusals::y113_while_a_request_for_the_customer_is_in_flight.)
    api.wait_for("E2", "ACTIVE", Some(("K2", "ACTIVE"))).await;
    let (_, body) = api.op("registerEntityAndKit", json!({"entityId": "E2", "kitNo": "K3"})).await;
    assert_eq!(code(&body), "Y110");
    let (_, body) = api.op("addKit", json!({"entityId": "E2", "kitNo": "K2"})).await;
    assert_eq!(code(&body), "Y111");
    let (_, body) = api.op("removeKit", json!({"entityId": "E2", "kitNo": "K3"})).await;
    assert_eq!(code(&body), "Y112");

    // Cross-tenant: another tenant's token sees "not found", never the data.
    let other = server.api(&["OTHERBANK"]);
    let (status, body) = other.call_with(Method::GET, "/registry/v1/entities/E2", "OTHERBANK", &[], Value::Null).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y104".into()));
    let (status, body) = other.call_with(Method::POST, "/click-to-pay/v1/removeEntity", "OTHERBANK", &[], json!({"entityId": "E2"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "Y104".into()));
    server.stop().await;
}

db_test!(saas_failure_rolls_back_and_recovery_works, |db: TestDb| async move {
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    // More failures than the client retries: the network is "down".
    server.faults(json!({"failNext": 5, "failWith": "500"})).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!((status, body["exception"]["errorCode"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("Y130")), "{body}");
    let e = api.entity("E1").await;
    assert_eq!((e["ctpStatus"].as_str(), e["kits"][0]["ctpStatus"].as_str()), (Some("UNREGISTERED"), Some("UNREGISTERED")), "rolled back");
    let failed = server.events(CtpEvent::RegisterEntityAndKit).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["serverNotifyData"]["requestStatus"], "FAILED");
    assert_eq!(failed[0]["serverNotifyData"]["message"], "CTP FAILURE: Request Rejected");
    assert!(failed[0]["serverNotifyData"]["errorDetails"].is_string());

    // A hold longer than the client's timeout, every try: unavailable, rolled back.
    server.faults(json!({"failNext": 10, "failWith": "timeout", "timeoutHoldMs": 1500})).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!((status, body["exception"]["errorCode"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("Y130")), "{body}");
    assert_eq!(api.entity("E1").await["ctpStatus"], "UNREGISTERED");
    server.faults(json!({"failNext": 0})).await;

    // Two failures are within the client's retries; a timeout after acceptance is retried
    // under the same requestId and so is not a second operation.
    server.faults(json!({"failNext": 2, "failWith": "500"})).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    api.put_customer("E1", &[("K2", "4012888888881881")]).await;
    server.faults(json!({"failNext": 1, "failWith": "timeoutAfterAccept", "timeoutHoldMs": 1500})).await;
    let replays = server.saas_stats().await["replays"].as_u64().unwrap();
    let (status, body) = api.op("addKit", json!({"entityId": "E1", "kitNo": "K2"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(server.saas_stats().await["replays"].as_u64().unwrap() > replays, "the lost answer was asked for again");
    api.wait_for("E1", "ACTIVE", Some(("K2", "ACTIVE"))).await;
    let added = server.events(CtpEvent::AddKit).await;
    assert_eq!(added.len(), 1, "the retried submit was one operation: {added:?}");
    assert_eq!(added[0]["serverNotifyData"]["requestStatus"], "SUCCESS");
    server.stop().await;
});

db_test!(lost_callbacks_are_healed_by_the_reconciler, |db: TestDb| async move {
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    server.faults(json!({"dropCallbacks": true})).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK);
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    // No callback was sent at all: only the reconciler's poll of /status can have done it.
    let stats = server.saas_stats().await;
    assert_eq!((stats["callbacksDropped"].as_u64(), stats["callbackAttempts"].as_u64()), (Some(1), Some(0)), "{stats}");
    let trace_id = body["result"]["requestTraceId"].as_str().unwrap();
    let (_, status) = api.op("fetchRequestStatus", json!({"requestTraceId": trace_id})).await;
    assert_eq!(status["result"]["status"], "SUCCESS", "{status}");
    assert_eq!(server.events(CtpEvent::RegisterEntityAndKit).await.len(), 1);
    server.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_callbacks_change_nothing_twice() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111"), ("K2", "4012888888881881")]).await;
    server.faults(json!({"duplicateCallbacks": 2, "reorderCallbacks": true})).await;
    api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    api.op("addKit", json!({"entityId": "E1", "kitNo": "K2"})).await;
    api.wait_for("E1", "ACTIVE", Some(("K2", "ACTIVE"))).await;
    // Every copy of both callbacks (1 + 2 each) arrives, held ones and duplicates too, and
    // is answered 200 (so the SaaS stops): refused as a duplicate (same webhook id), or as
    // already finished when the reconciler got there first while a copy was held back.
    until("all six callback copies delivered", Duration::from_secs(30), || async {
        (server.saas_stats().await["callbacksDelivered"] == 6).then_some(())
    })
    .await;
    let stats = server.saas_stats().await;
    assert_eq!((stats["callbackAttempts"].as_u64(), stats["callbacksFailed"].as_u64()), (Some(6), Some(0)), "{stats}");
    // And they changed nothing twice: one event per request, the statuses where they were.
    assert_eq!(server.events(CtpEvent::RegisterEntityAndKit).await.len(), 1);
    assert_eq!(server.events(CtpEvent::AddKit).await.len(), 1);
    server.stop().await;
}

db_test!(crash_between_in_progress_and_the_saas_call_is_healed, |db: TestDb| async move {
    use ctp_issuer::ctp::CtpStatus;
    use ctp_issuer::store::enrollment::{KitMove, NewTrace, Start, StatusMove};
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    // What a crash leaves: the request recorded IN_PROGRESS, the SaaS never called.
    let request_id = uuid::Uuid::new_v4().to_string();
    server
        .app
        .store()
        .start_operation(
            &Start {
                tenant: TENANT.into(),
                entity_id: "E1".into(),
                entity: StatusMove { from: CtpStatus::Unregistered, to: CtpStatus::RegistrationInProgress },
                kits: vec![KitMove {
                    kit_no: "K1".into(),
                    status: StatusMove { from: CtpStatus::Unregistered, to: CtpStatus::RegistrationInProgress },
                    payment_instrument_id: None,
                }],
                trace: NewTrace {
                    request_id: request_id.clone(),
                    kit_no: Some("K1".into()),
                    event: CtpEvent::RegisterEntityAndKit,
                    entity_before: CtpStatus::Unregistered,
                    kit_before: Some(CtpStatus::Unregistered),
                    correlation_id: None,
                    next_poll_at: 0,
                },
            },
            ctp_issuer::store::epoch_millis(std::time::SystemTime::now()),
        )
        .await
        .unwrap();
    assert_eq!(api.entity("E1").await["ctpStatus"], "REGISTRATION_IN_PROGRESS");
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    let trace = server.app.store().request_trace(TENANT, &request_id).await.unwrap().unwrap();
    assert_eq!(trace.status, ctp_issuer::ctp::TraceStatus::Success);
    assert!(trace.request_trace_id.is_some());
    server.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_updates_follow_committed_changes_only() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;

    // A rejected change (invalid) commits nothing and sends nothing.
    let mut invalid = profile("new@example.com");
    invalid["countryCode"] = json!("US");
    assert_eq!(api.call(Method::PUT, "/registry/v1/entities/E1", invalid).await.0, StatusCode::BAD_REQUEST);
    // Same data again: nothing to send.
    assert_eq!(api.call(Method::PUT, "/registry/v1/entities/E1", profile("alex@example.com")).await.0, StatusCode::OK);
    // A new email: CTP_UPDATE_ENTITY. A new address: CTP_UPDATE_KIT for the active kit.
    assert_eq!(api.call(Method::PUT, "/registry/v1/entities/E1", profile("new@example.com")).await.0, StatusCode::OK);
    let mut moved = profile("new@example.com");
    moved["billingAddress"]["postalCode"] = json!("94106");
    assert_eq!(api.call(Method::PUT, "/registry/v1/entities/E1", moved).await.0, StatusCode::OK);

    let (u_e, u_k) = until("both automatic updates", Duration::from_secs(20), || async {
        let (u_e, u_k) = (server.events(CtpEvent::UpdateEntity).await, server.events(CtpEvent::UpdateKit).await);
        (!u_e.is_empty() && !u_k.is_empty()).then_some((u_e, u_k))
    })
    .await;
    assert_eq!(u_e.len(), 1, "one identity change, one update: {u_e:?}");
    assert_eq!(u_k.len(), 1);
    assert_eq!(u_e[0]["serverNotifyData"]["requestStatus"], "SUCCESS");
    assert_eq!(u_k[0]["serverNotifyData"]["kitNo"], "K1");
    // Exactly these two reached the SaaS after the registration: the invalid change and
    // the unchanged profile sent nothing.
    until("the two updates to complete", Duration::from_secs(20), || async {
        (server.saas_stats().await["requestsCompleted"] == 3).then_some(())
    })
    .await;
    assert_eq!(server.saas_stats().await["requestsAccepted"], 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_refusals_arrive_asynchronously_and_roll_back() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let api = server.api(&[TENANT]);
    // A Mastercard number: the network refuses it (VIDC-2006) after accepting the request.
    api.put_customer("E1", &[("K1", "5555555555554444")]).await;
    let (status, _) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK);
    let f = until("the refusal's failure event", Duration::from_secs(20), || async {
        server.events(CtpEvent::RegisterEntityAndKit).await.into_iter().next()
    })
    .await;
    assert_eq!(f["serverNotifyData"]["requestStatus"], "FAILED");
    assert!(f["serverNotifyData"]["errorDetails"].as_str().unwrap().contains("VIDC-2006"), "{f}");
    let e = api.entity("E1").await;
    assert_eq!((e["ctpStatus"].as_str(), e["kits"][0]["ctpStatus"].as_str()), (Some("UNREGISTERED"), Some("UNREGISTERED")));
    server.stop().await;
}
