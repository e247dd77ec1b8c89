//! `Idempotency-Key` on the internal API: a request with a key runs at most once. The key
//! is claimed in the database before the request runs, so the guarantee holds for
//! concurrent requests as well as for retries, on SQLite and PostgreSQL: one runs, the
//! others are told it is running (409 Y121) or, once it has finished, get its answer
//! (`idempotent-replayed: true`); another body under the same key is 409 Y120.

use ctp_issuer::ctp::CtpEvent;
use http::{Method, StatusCode};
use serde_json::json;

use crate::db_test;
use crate::support::http::Reply;
use crate::support::server::fast_enrollment;
use crate::support::{TestDb, TestServer};

const TENANT: &str = "DEMOBANK";
const REGISTER: &str = "/click-to-pay/v1/registerEntityAndKit";

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
