//! The SaaS callback on the public listener, `POST /ctp/v1/saas/callback`, against
//! deliveries the SaaS did not make: forged, unsigned, stale, malformed. Each is refused
//! with the status the contract gives it (400 for a malformed delivery, 401 for one that
//! fails authentication) and changes nothing: no status, no request trace, no outbox event,
//! no recorded webhook id. And a callback that carries a card number where a code should
//! be: the number reaches neither the request trace, nor the outbox, nor the API's answer.
//!
//! Deliveries are signed here from the definition (Standard Webhooks: HMAC-SHA-256 of
//! `{id}.{timestamp}.{body}` under the key of `keys/saas/webhook-dev-1.secret`), with
//! OpenSSL, not with the service's signer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::dump::Dump;
use crate::support::http::request;
use crate::support::server::fast_enrollment;
use crate::support::{TestDb, TestServer};

const TENANT: &str = "DEMOBANK";
const PATH: &str = "/ctp/v1/saas/callback";
/// A delivery's headers, as `(name, value)`.
type Headers = Vec<(&'static str, String)>;

/// What a callback may change.
const TOUCHED: &[&str] = &["ctp_customer", "ctp_payment", "ctp_request_trace", "outbox", "saas_callback", "idempotency_request"];

/// The key of a `whsec_<base64>` secret file.
fn webhook_key(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    B64.decode(text.trim().strip_prefix("whsec_").expect("a whsec_ secret")).unwrap()
}

fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = openssl::pkey::PKey::hmac(key).unwrap();
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    signer.update(format!("{id}.{timestamp}.{body}").as_bytes()).unwrap();
    format!("v1,{}", B64.encode(signer.sign_to_vec().unwrap()))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A server whose requests stay IN_PROGRESS until a callback says otherwise: the SaaS
/// sends no callbacks of its own and the reconciler does not look for a minute.
async fn server(db: &TestDb) -> TestServer {
    let server = TestServer::start(db, |c| {
        fast_enrollment(c);
        c.enrollment.reconcile_after = Duration::from_secs(60);
    })
    .await;
    server.faults(json!({"dropCallbacks": true})).await;
    server
}

/// A request in flight: customer `entity` registered with kit `kit` (card `pan`). Returns
/// the callback body the SaaS would send for it, with `outcome`.
async fn in_flight(server: &TestServer, entity: &str, kit: &str, pan: &str, outcome: Value) -> Value {
    let api = server.api(&[TENANT]);
    api.put_customer(entity, &[(kit, pan)]).await;
    let (status, body) = api.op("registerEntityAndKit", json!({"entityId": entity, "kitNo": kit})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trace = body["result"]["requestTraceId"].as_str().unwrap().to_owned();
    // Our requestId is the SaaS's: ask the simulator.
    let at_saas = server.saas_status(TENANT, &trace).await.json();
    json!({"requestTraceId": trace, "requestId": at_saas["requestId"], "event": "CTP_REGISTER_ENTITY_AND_KIT", "tenant": TENANT, "outcome": outcome})
}

/// Posts a delivery with these headers.
async fn deliver(server: &TestServer, headers: &[(&str, &str)], body: &str) -> StatusCode {
    request(server.public, Method::POST, PATH, headers, body.to_owned()).await.status
}

/// Posts `body` signed with `key` at `timestamp` under webhook id `id`.
async fn deliver_signed(server: &TestServer, key: &[u8], id: &str, timestamp: i64, body: &str) -> StatusCode {
    let (ts, sig) = (timestamp.to_string(), sign(key, id, timestamp, body));
    deliver(server, &[("webhook-id", id), ("webhook-timestamp", &ts), ("webhook-signature", &sig)], body).await
}

db_test!(forged_unsigned_stale_and_malformed_callbacks_change_nothing, |db: TestDb| async move {
    let server = server(&db).await;
    let key = webhook_key(&server.keys.path().join("saas/webhook-dev-1.secret"));
    let success = json!({"result": "SUCCESS", "clickToPayCustomerId": "86e9d8c0-2a1f-4f1e-9b7a-6f1f1f0e2c3d",
        "paymentInstruments": [{"externalInstrumentID": "K1", "paymentInstrumentId": "0f1c0b5e-1d2e-4f3a-9b8c-7d6e5f4a3b2c", "result": "SUCCESS"}]});
    let callback = in_flight(&server, "E1", "K1", "4111111111111111", success).await;
    let body = callback.to_string();
    let before = Dump::of(&db).await.only(TOUCHED);
    assert_eq!(before.rows("ctp_request_trace").len(), 1);

    let other_tenant = {
        let mut c = callback.clone();
        c["tenant"] = json!("OTHERBANK");
        c.to_string()
    };
    let card_as_trace = {
        let mut c = callback.clone();
        c["requestTraceId"] = json!("4111111111111111");
        c.to_string()
    };
    let tampered = body.replace("SUCCESS", "FAILED");
    // The three headers of a delivery of `body` signed with `key` at `at`.
    let signed = |key: &[u8], at: i64, body: &str| {
        vec![("webhook-id", "msg_1".to_owned()), ("webhook-timestamp", at.to_string()), ("webhook-signature", sign(key, "msg_1", at, body))]
    };
    let without = |name: &str| signed(&key, now(), &body).into_iter().filter(|(h, _)| *h != name).collect::<Vec<_>>();
    let with = |name: &str, value: &str| {
        signed(&key, now(), &body).into_iter().map(|(h, v)| if h == name { (h, value.to_owned()) } else { (h, v) }).collect::<Vec<_>>()
    };
    let cases: Vec<(&str, StatusCode, Headers, String)> = vec![
        ("no headers at all", StatusCode::BAD_REQUEST, vec![], body.clone()),
        ("no signature", StatusCode::BAD_REQUEST, without("webhook-signature"), body.clone()),
        ("no id", StatusCode::BAD_REQUEST, without("webhook-id"), body.clone()),
        ("no timestamp", StatusCode::BAD_REQUEST, without("webhook-timestamp"), body.clone()),
        ("a timestamp that is no number", StatusCode::BAD_REQUEST, with("webhook-timestamp", "yesterday"), body.clone()),
        ("signed with another key", StatusCode::UNAUTHORIZED, signed(&[7u8; 32], now(), &body), body.clone()),
        ("a signature of another body", StatusCode::UNAUTHORIZED, signed(&key, now(), &body), tampered),
        ("a signature that is no signature", StatusCode::UNAUTHORIZED, with("webhook-signature", "v1,bm9wZQ=="), body.clone()),
        ("ten minutes old", StatusCode::UNAUTHORIZED, signed(&key, now() - 600, &body), body.clone()),
        ("ten minutes ahead", StatusCode::UNAUTHORIZED, signed(&key, now() + 600, &body), body.clone()),
        ("signed, but not JSON", StatusCode::BAD_REQUEST, signed(&key, now(), "not json"), "not json".into()),
        ("signed, but no callback", StatusCode::BAD_REQUEST, signed(&key, now(), r#"{"hello":"world"}"#), r#"{"hello":"world"}"#.into()),
        ("signed, a card number for an id", StatusCode::BAD_REQUEST, signed(&key, now(), &card_as_trace), card_as_trace.clone()),
        ("signed, another tenant's", StatusCode::NOT_FOUND, signed(&key, now(), &other_tenant), other_tenant.clone()),
    ];
    for (what, expected, headers, body) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
        assert_eq!(deliver(&server, &headers, &body).await, expected, "{what}");
        assert_eq!(Dump::of(&db).await.only(TOUCHED), before, "{what} changed something");
    }
    let api = server.api(&[TENANT]);
    let (_, status) = api.op("fetchRequestStatus", json!({"requestTraceId": callback["requestTraceId"]})).await;
    assert_eq!(status["result"]["status"], "IN_PROGRESS", "{status}");
    assert_eq!(api.entity("E1").await["ctpStatus"], "REGISTRATION_IN_PROGRESS");

    // The same callback, signed as the SaaS signs it, is applied (so the refusals above
    // were refusals of that delivery, not of a callback that could never apply) — once.
    assert_eq!(deliver_signed(&server, &key, "msg_1", now(), &body).await, StatusCode::OK);
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    let applied = Dump::of(&db).await.only(TOUCHED);
    assert_eq!(applied.rows("saas_callback").len(), 1);
    assert_eq!(server.events(ctp_issuer::ctp::CtpEvent::RegisterEntityAndKit).await.len(), 1);
    assert_eq!(deliver_signed(&server, &key, "msg_1", now(), &body).await, StatusCode::OK, "a redelivery is answered 200");
    assert_eq!(Dump::of(&db).await.only(TOUCHED), applied, "a redelivery changed something");
    server.stop().await;
});

/// `text` without spaces and dashes (a card number written in groups reads as one).
fn squeezed(text: &str) -> String {
    text.chars().filter(|c| *c != ' ' && *c != '-').collect()
}

db_test!(a_card_number_in_a_callbacks_error_code_is_kept_nowhere, |db: TestDb| async move {
    let server = server(&db).await;
    let api = server.api(&[TENANT]);
    let key = webhook_key(&server.keys.path().join("saas/webhook-dev-1.secret"));
    let cards = ["4111111111111111", "4012888888881881", "4000056655665556", "4242424242424242"];
    // How a careless SaaS might echo the card it refused.
    let codes = |pan: &str| {
        let grouped: Vec<String> = pan.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        [pan.to_owned(), format!("VIDC-2004 {}", grouped.join(" ")), format!("VIDC-2004:{}", grouped.join("-")), format!("card{pan}x")]
    };
    let mut traces = Vec::new();
    for (i, pan) in cards.iter().enumerate() {
        let (entity, kit) = (format!("E{i}"), format!("K{i}"));
        let code = codes(pan)[i].clone();
        let outcome = json!({"result": "FAILED", "error": {"errorCode": code, "message": format!("card {pan} refused")},
            "paymentInstruments": [{"externalInstrumentID": kit, "result": "FAILED", "errorCode": pan}]});
        let callback = in_flight(&server, &entity, &kit, pan, outcome).await;
        assert_eq!(deliver_signed(&server, &key, &format!("msg_{i}"), now(), &callback.to_string()).await, StatusCode::OK);
        api.wait_for(&entity, "UNREGISTERED", Some((&kit, "UNREGISTERED"))).await;
        traces.push(callback["requestTraceId"].as_str().unwrap().to_owned());
    }

    let dump = Dump::of(&db).await;
    let failures = server.events(ctp_issuer::ctp::CtpEvent::RegisterEntityAndKit).await;
    assert_eq!(failures.len(), cards.len());
    let mut answers = Vec::new();
    for trace in &traces {
        let (status, answer) = api.op("fetchRequestStatus", json!({"requestTraceId": trace})).await;
        assert_eq!((status, answer["result"]["status"].as_str()), (StatusCode::OK, Some("FAILED")), "{answer}");
        let details = answer["result"]["errorDetails"].as_str().unwrap_or_default();
        assert!(!details.is_empty(), "the failure's details are kept (without the card): {answer}");
        answers.push(answer.to_string());
    }
    for failure in &failures {
        assert_eq!(failure["serverNotifyData"]["requestStatus"], "FAILED");
        assert!(failure["serverNotifyData"]["errorDetails"].as_str().is_some_and(|d| !d.is_empty()), "{failure}");
    }
    let error_details: Vec<&str> = dump.tables["ctp_request_trace"].iter().flatten().flatten().map(String::as_str).collect();
    let outbox: Vec<&str> = dump.tables["outbox"].iter().flatten().flatten().map(String::as_str).collect();
    for pan in cards {
        for (what, texts) in [("ctp_request_trace", &error_details), ("the outbox", &outbox)] {
            assert!(!texts.iter().any(|t| squeezed(t).contains(pan)), "card ****{} in {what}: {texts:?}", &pan[12..]);
        }
        assert!(!answers.iter().any(|a| squeezed(a).contains(pan)), "card ****{} in fetchRequestStatus: {answers:?}", &pan[12..]);
        assert!(dump.find(pan).is_empty(), "card ****{} in the database: {:?}", &pan[12..], dump.find(pan));
    }
    server.stop().await;
});
