//! The internal API's refusals and failures, exactly: Y113 while another request for the
//! customer is in flight, Y131 when the Click to Pay network refuses a request at once
//! (and Y130 when it cannot be reached),
//! Y500 when our own database fails the request; and what each leaves behind. A request
//! refused before it starts writes nothing at all (statuses, request traces, outbox,
//! idempotency keys) and sends nothing to the network. A request the network refuses at
//! once is, by design, recorded FAILED with its failure event, and the statuses it had
//! moved are restored. A request our database fails writes nothing and gives its
//! Idempotency-Key back.

use std::time::Duration;

use ctp_issuer::ctp::CtpEvent;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::api::Api;
use crate::support::dump::Dump;
use crate::support::proxy::Proxy;
use crate::support::server::fast_enrollment;
use crate::support::{TestDb, TestServer};

const TENANT: &str = "DEMOBANK";
/// What an operation may write.
const WRITES: &[&str] =
    &["entity", "kit", "ctp_customer", "ctp_payment", "ctp_request_trace", "outbox", "idempotency_request", "saas_callback"];

/// A refusal: an operation, its body, the status and code it must get.
type Refused = (&'static str, Value, StatusCode, &'static str);

/// Sends each refused operation (under an Idempotency-Key of its own) and checks its
/// answer, that nothing was written (but the key, which keeps a 4xx answer for the key's
/// retries) and that nothing reached the SaaS.
async fn refused_without_a_trace(server: &TestServer, db: &TestDb, api: &Api, cases: Vec<Refused>) {
    let without_keys = |d: Dump| Dump { tables: d.tables.into_iter().filter(|(t, _)| t != "idempotency_request").collect() };
    for (i, (op, body, status, code)) in cases.into_iter().enumerate() {
        let before = Dump::of(db).await.only(WRITES);
        let submits = server.saas_stats().await["submitsReceived"].clone();
        let key = format!("refused-{i}");
        let reply = api.send(Method::POST, &format!("/click-to-pay/v1/{op}"), TENANT, &[("idempotency-key", &key)], &body).await;
        assert_eq!((reply.status, reply.code()), (status, code.to_owned()), "{op} {body}: {}", reply.text());
        let after = Dump::of(db).await.only(WRITES);
        assert_eq!(
            after.rows("idempotency_request").len(),
            before.rows("idempotency_request").len() + 1,
            "{op}: the refusal is kept for the key"
        );
        assert_eq!(without_keys(after), without_keys(before), "{op} {body} ({code}) wrote something");
        assert_eq!(server.saas_stats().await["submitsReceived"], submits, "{op} {body} ({code}) reached the SaaS");
        // A retry under the key is told the same, without running again.
        let again = api.send(Method::POST, &format!("/click-to-pay/v1/{op}"), TENANT, &[("idempotency-key", &key)], &body).await;
        assert_eq!((again.status, &again.body), (reply.status, &reply.body), "{op}: the retry");
        assert!(again.headers.get("idempotent-replayed").is_some(), "{op}: the retry was run again");
    }
}

/// Runs one statement on a connection of its own; the rows it affected.
async fn sqlx_exec(db: &TestDb, sql: &'static str) -> u64 {
    use sqlx::Connection;
    if db.kind == "sqlite" {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap().rows_affected()
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap().rows_affected()
    }
}

db_test!(y113_while_a_request_for_the_customer_is_in_flight, |db: TestDb| async move {
    // The registration stays in flight: no callback comes, the reconciler is a minute away.
    let server = TestServer::start(&db, |c| {
        fast_enrollment(c);
        c.enrollment.reconcile_after = Duration::from_secs(60);
    })
    .await;
    server.faults(json!({"dropCallbacks": true})).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111"), ("K2", "4012888888881881")]).await;
    api.put_customer("E2", &[("K3", "4242424242424242")]).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.entity("E1").await["ctpStatus"], "REGISTRATION_IN_PROGRESS");

    let conflict = StatusCode::CONFLICT;
    refused_without_a_trace(
        &server,
        &db,
        &api,
        vec![
            ("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K2"}), conflict, "Y113"),
            ("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"}), conflict, "Y113"),
            ("addKit", json!({"entityId": "E1", "kitNo": "K2"}), conflict, "Y113"),
            ("removeKit", json!({"entityId": "E1", "kitNo": "K1"}), conflict, "Y113"),
            ("updateKit", json!({"entityId": "E1", "kitNo": "K1"}), conflict, "Y113"),
            ("removeEntity", json!({"entityId": "E1"}), conflict, "Y113"),
            ("updateEntity", json!({"entityId": "E1"}), conflict, "Y113"),
            // And the refusals that are not about timing write nothing either.
            ("addKit", json!({"entityId": "E2", "kitNo": "K3"}), conflict, "Y109"),
            ("removeEntity", json!({"entityId": "E2"}), conflict, "Y109"),
            ("registerEntityAndKit", json!({"entityId": "E2", "kitNo": "K9"}), StatusCode::NOT_FOUND, "Y105"),
            ("registerEntityAndKit", json!({"entityId": "E9", "kitNo": "K3"}), StatusCode::NOT_FOUND, "Y104"),
            ("registerEntityAndKit", json!({"entityId": "E2"}), StatusCode::BAD_REQUEST, "Y100"),
            ("removeEntity", json!({"entityId": "E2", "kitNo": "K3"}), StatusCode::BAD_REQUEST, "Y100"),
        ],
    )
    .await;
    server.stop().await;
});

db_test!(y131_when_the_network_refuses_at_once_and_the_statuses_are_restored, |db: TestDb| async move {
    // A consumer-level request stays in progress at the SaaS for two seconds; a second one
    // for the same consumer meanwhile is refused at once (409 VIDC-3000).
    let server = TestServer::start(&db, |c| {
        fast_enrollment(c);
        c.saas.callback_delay = Duration::from_secs(2);
    })
    .await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    let (status, _) = api.op("registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK);
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;

    let (status, update) = api.op("updateEntity", json!({"entityId": "E1"})).await;
    assert_eq!(status, StatusCode::OK, "{update}");
    let before = api.entity("E1").await;
    let traces_before = Dump::of(&db).await.rows("ctp_request_trace").len();
    let refused_before = server.saas_stats().await["refused"].as_u64().unwrap();
    let reply = api.send(Method::POST, "/click-to-pay/v1/removeEntity", TENANT, &[], &json!({"entityId": "E1"})).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "Y131".into()), "{}", reply.text());
    assert_eq!(reply.json()["exception"]["detailMessage"], "network error code VIDC-3000", "{}", reply.text());
    assert_eq!(server.saas_stats().await["refused"].as_u64().unwrap(), refused_before + 1, "the SaaS refused it");

    // The statuses the removal moved are back where they were; the removal is recorded
    // FAILED, with its failure event.
    let after = api.entity("E1").await;
    assert_eq!(after, before, "statuses not restored");
    assert_eq!((after["ctpStatus"].as_str(), after["kits"][0]["ctpStatus"].as_str()), (Some("ACTIVE"), Some("ACTIVE")));
    assert_eq!(Dump::of(&db).await.rows("ctp_request_trace").len(), traces_before + 1);
    let removals = server.events(CtpEvent::RemoveEntity).await;
    assert_eq!(removals.len(), 1, "{removals:?}");
    let data = &removals[0]["serverNotifyData"];
    assert_eq!((data["requestStatus"].as_str(), data["entityId"].as_str()), (Some("FAILED"), Some("E1")));
    assert!(data["errorDetails"].as_str().unwrap().starts_with("VIDC-3000"), "{data}");
    // The update that was in progress is untouched and finishes.
    let (_, status) = api.op("fetchRequestStatus", json!({"requestTraceId": update["result"]["requestTraceId"]})).await;
    assert_ne!(status["result"]["status"], "FAILED", "{status}");

    // The same restoration when the network cannot be reached at all (Y130).
    server.faults(json!({"failNext": 10, "failWith": "500"})).await;
    let reply = api.send(Method::POST, "/click-to-pay/v1/removeEntity", TENANT, &[], &json!({"entityId": "E1"})).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::SERVICE_UNAVAILABLE, "Y130".into()), "{}", reply.text());
    assert_eq!(api.entity("E1").await, before, "statuses not restored after an unreachable network");
    server.stop().await;
});

db_test!(y500_when_our_database_fails_the_request_and_the_key_is_given_back, |db: TestDb| async move {
    let server = TestServer::start(&db, fast_enrollment).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    // The database refuses to record any request trace.
    if db.kind == "sqlite" {
        sqlx_exec(&db, "CREATE TRIGGER refuse BEFORE INSERT ON ctp_request_trace BEGIN SELECT RAISE(ABORT, 'refused'); END;").await;
    } else {
        sqlx_exec(
            &db,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON ctp_request_trace FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await;
    }
    let before = Dump::of(&db).await.only(WRITES);
    let body = json!({"entityId": "E1", "kitNo": "K1"});
    let key = [("idempotency-key", "order-500")];
    let reply = api.send(Method::POST, "/click-to-pay/v1/registerEntityAndKit", TENANT, &key, &body).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::INTERNAL_SERVER_ERROR, "Y500".into()), "{}", reply.text());
    assert!(
        !reply.text().contains("refused") && !reply.text().contains("ctp_request_trace"),
        "an internal cause was sent: {}",
        reply.text()
    );
    assert_eq!(Dump::of(&db).await.only(WRITES), before, "a failed request wrote something (or kept its key)");
    assert_eq!(server.saas_stats().await["submitsReceived"], 0, "a failed request reached the SaaS");
    assert_eq!(api.entity("E1").await["ctpStatus"], "UNREGISTERED");

    // Once the database works again, a retry under the same key runs (the key was given back).
    sqlx_exec(&db, if db.kind == "sqlite" { "DROP TRIGGER refuse" } else { "DROP TRIGGER refuse ON ctp_request_trace" }).await;
    let retried = api.send(Method::POST, "/click-to-pay/v1/registerEntityAndKit", TENANT, &key, &body).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text());
    assert!(retried.headers.get("idempotent-replayed").is_none(), "the retry ran, it was not a replay of the failure");
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    server.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y500_when_the_database_is_unreachable_for_the_request() {
    let Some(db) = TestDb::postgres().await else { return };
    let (proxy, via_proxy) = Proxy::before(&db).await;
    let server = TestServer::start(&via_proxy, fast_enrollment).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    let before = Dump::of(&db).await.only(WRITES);

    proxy.cut();
    for (method, path, body) in [
        (Method::POST, "/click-to-pay/v1/registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})),
        (Method::GET, "/registry/v1/entities/E1", Value::Null),
        (Method::PUT, "/registry/v1/entities/E2", json!({"firstName": "Ana"})),
    ] {
        let reply = api.send(method.clone(), path, TENANT, &[], &body).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::INTERNAL_SERVER_ERROR, "Y500".into()), "{method} {path}: {}", reply.text());
    }
    proxy.restore();
    assert_eq!(Dump::of(&db).await.only(WRITES), before, "a request that failed wrote something");
    assert_eq!(server.saas_stats().await["submitsReceived"], 0);
    // And the service recovers without a restart.
    crate::support::until("the database to be reachable again", Duration::from_secs(30), || async {
        let (status, _) = api.call(Method::GET, "/registry/v1/entities/E1", Value::Null).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    server.stop().await;
}
