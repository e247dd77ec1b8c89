//! `Idempotency-Key` on the internal API: a request with a key runs at most once. The key
//! is claimed in the database before the request runs, so the guarantee holds for
//! concurrent requests as well as for retries, on SQLite and PostgreSQL: one runs, the
//! others are told it is running (409 Y121) or, once it has finished, get its answer
//! (`idempotent-replayed: true`); another body under the same key is 409 Y120.

use std::time::Duration;

use ctp_issuer::ctp::CtpEvent;
use futures_util::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::dump::Dump;
use crate::support::http::Reply;
use crate::support::server::fast_enrollment;
use crate::support::{TestDb, TestServer};

const TENANT: &str = "DEMOBANK";
const REGISTER: &str = "/click-to-pay/v1/registerEntityAndKit";
/// Simultaneous requests under one key.
const AT_ONCE: usize = 16;

fn replayed(reply: &Reply) -> bool {
    reply.headers.get("idempotent-replayed").is_some_and(|v| v == "true")
}

db_test!(a_key_replays_the_first_answer_and_refuses_another_request, |db: TestDb| async move {
    let server = TestServer::start(&db, fast_enrollment).await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    let body = json!({"entityId": "E1", "kitNo": "K1"});
    let key = [("idempotency-key", "order-42")];
    let first = api.send(Method::POST, REGISTER, TENANT, &key, &body).await;
    let second = api.send(Method::POST, REGISTER, TENANT, &key, &body).await;
    assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::OK), "{}", first.text());
    assert!(!replayed(&first) && replayed(&second));
    assert_eq!(first.body, second.body, "the replay is the first answer, byte for byte");
    // The same key on another path (so another request) is refused.
    let third = api.send(Method::POST, "/click-to-pay/v1/addKit", TENANT, &key, &body).await;
    assert_eq!((third.status, third.code()), (StatusCode::CONFLICT, "Y120".into()));
    // The same key under another tenant is another key: not a replay of this tenant's answer.
    let other = server.api(&["OTHERBANK"]);
    let elsewhere = other.send(Method::POST, REGISTER, "OTHERBANK", &key, &body).await;
    assert_eq!((elsewhere.status, elsewhere.code()), (StatusCode::NOT_FOUND, "Y104".into()), "{}", elsewhere.text());
    api.wait_for("E1", "ACTIVE", None).await;
    assert_eq!(server.events(CtpEvent::RegisterEntityAndKit).await.len(), 1, "one operation, not two");
    server.stop().await;
});

db_test!(sixteen_simultaneous_requests_with_one_key_run_once, |db: TestDb| async move {
    let server = TestServer::start(&db, |c| {
        fast_enrollment(c);
        c.saas.request_timeout = Duration::from_secs(10);
    })
    .await;
    let api = server.api(&[TENANT]);
    api.put_customer("E1", &[("K1", "4111111111111111")]).await;
    // The SaaS holds its answer to the one submit for a second: the request that runs is
    // still running while the others arrive.
    server.faults(json!({"failNext": 1, "failWith": "timeoutAfterAccept", "timeoutHoldMs": 1000})).await;
    let body = json!({"entityId": "E1", "kitNo": "K1"});
    let key = [("idempotency-key", "burst-1")];
    let replies = join_all((0..AT_ONCE).map(|_| api.send(Method::POST, REGISTER, TENANT, &key, &body))).await;

    let ran: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::OK && !replayed(r)).collect();
    assert_eq!(ran.len(), 1, "exactly one request ran: {:?}", replies.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>());
    let answer = ran[0].body.clone();
    for reply in &replies {
        match (reply.status, replayed(reply)) {
            (StatusCode::OK, false) => {}
            (StatusCode::OK, true) => assert_eq!(reply.body, answer, "a replay is the answer of the one that ran"),
            (StatusCode::CONFLICT, false) => assert_eq!(reply.code(), "Y121", "{}", reply.text()),
            other => panic!("unexpected answer {other:?}: {}", reply.text()),
        }
    }
    // The SaaS held the one that ran for a second, so the others met it running.
    let in_flight = replies.iter().filter(|r| r.status == StatusCode::CONFLICT).count();
    assert!(in_flight >= 1, "no request met the one that ran while it ran");
    // After it finished, the key answers with its answer.
    let after = api.send(Method::POST, REGISTER, TENANT, &key, &body).await;
    assert_eq!((after.status, replayed(&after), &after.body), (StatusCode::OK, true, &answer));

    // One operation: one request trace, one submit to the SaaS, one result.
    let dump = Dump::of(&db).await;
    assert_eq!(dump.rows("ctp_request_trace").len(), 1, "{:?}", dump.rows("ctp_request_trace"));
    let stats = server.saas_stats().await;
    assert_eq!((stats["submitsReceived"].as_u64(), stats["requestsAccepted"].as_u64()), (Some(1), Some(1)), "{stats}");
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    assert_eq!(server.events(CtpEvent::RegisterEntityAndKit).await.len(), 1);
    server.stop().await;
});

db_test!(simultaneous_requests_with_one_key_and_different_bodies_run_one, |db: TestDb| async move {
    let server = TestServer::start(&db, |c| {
        fast_enrollment(c);
        c.saas.request_timeout = Duration::from_secs(10);
    })
    .await;
    let api = server.api(&[TENANT]);
    let customers: Vec<String> = (0..AT_ONCE).map(|i| format!("E{i}")).collect();
    let cards = ctp_issuer::sim::fixtures::fresh_cards(AT_ONCE);
    for (i, (customer, card)) in customers.iter().zip(&cards).enumerate() {
        api.put_customer(customer, &[(&format!("K{i}"), card.digits())]).await;
    }
    server.faults(json!({"failNext": 1, "failWith": "timeoutAfterAccept", "timeoutHoldMs": 1000})).await;
    let key = [("idempotency-key", "burst-2")];
    let bodies: Vec<Value> = customers.iter().enumerate().map(|(i, c)| json!({"entityId": c, "kitNo": format!("K{i}")})).collect();
    let replies = join_all(bodies.iter().map(|body| api.send(Method::POST, REGISTER, TENANT, &key, body))).await;

    let ran: Vec<usize> = (0..AT_ONCE).filter(|&i| replies[i].status == StatusCode::OK).collect();
    assert_eq!(ran.len(), 1, "exactly one ran: {:?}", replies.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>());
    for (i, reply) in replies.iter().enumerate().filter(|(i, _)| *i != ran[0]) {
        assert_eq!(reply.status, StatusCode::CONFLICT, "request {i}: {}", reply.text());
        assert!(matches!(reply.code().as_str(), "Y120" | "Y121"), "request {i}: {}", reply.text());
        assert!(!replayed(reply), "request {i} got another body's answer");
    }
    let dump = Dump::of(&db).await;
    let traces = dump.rows("ctp_request_trace");
    assert_eq!(traces.len(), 1, "{traces:?}");
    let winner = &customers[ran[0]];
    assert!(traces[0].iter().flatten().any(|v| v.trim_matches('\'') == winner), "the trace is the one that ran: {traces:?}");
    let stats = server.saas_stats().await;
    assert_eq!((stats["submitsReceived"].as_u64(), stats["requestsAccepted"].as_u64()), (Some(1), Some(1)), "{stats}");
    for (i, customer) in customers.iter().enumerate().filter(|(i, _)| *i != ran[0]) {
        assert_eq!(api.entity(customer).await["ctpStatus"], "UNREGISTERED", "customer {i} was not to move");
    }
    server.stop().await;
});
