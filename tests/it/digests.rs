//! No unkeyed digest of a request body is kept. A body may hold a card number, and an
//! unkeyed hash of one is the card number to anyone who can guess it (a BIN, the last four
//! digits and the Luhn check leave few candidates). The service keeps only keyed digests
//! (`v1:<hex>`, HMAC under a key derived from the fingerprint key): of a Visa envelope,
//! to recognise a redelivery, and of an internal API request, to recognise a retry under
//! its Idempotency-Key.
//!
//! After a run of Visa notifications and internal API requests with Idempotency-Keys,
//! every column of every table is searched for the SHA-256 (hex, and base64 in both
//! alphabets, padded or not) of every body sent, of every `encryptedData`, of
//! `"<METHOD> <path>\n" + body`, and of the length-prefixed parts the keyed digest is made
//! of; none may be there. And the digests that are there are the keyed ones, as computed
//! independently (`known_answers`).

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ctp_issuer::sim::fixtures::fresh_cards;
use ctp_issuer::sim::visa::NotificationBuilder;
use http::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;

use crate::db_test;
use crate::known_answers::{keyed_digest, keyed_digest_of_parts};
use crate::support::api::profile;
use crate::support::cards::{CARD_1, CARD_2, CARD_3, TR, encrypted_data, payload};
use crate::support::dump::Dump;
use crate::support::server::fast_enrollment;
use crate::support::{TestDb, TestServer};

const TENANT: &str = "DEMOBANK";

/// The ways an unkeyed SHA-256 of `bytes` could be written down.
fn unkeyed_forms(bytes: &[u8]) -> Vec<String> {
    let digest = openssl::sha::sha256(bytes);
    vec![
        hex::encode(digest),
        STANDARD.encode(digest),
        STANDARD_NO_PAD.encode(digest),
        URL_SAFE.encode(digest),
        URL_SAFE_NO_PAD.encode(digest),
    ]
}

/// The parts of a request as the keyed digest takes them, each length-prefixed.
fn length_prefixed(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| (p.len() as u64).to_be_bytes().into_iter().chain(p.iter().copied())).collect()
}

/// Where in `dump` any of `needles` (`(what, text)`) is: hex case-insensitively, base64 as is.
fn unkeyed_in(dump: &Dump, needles: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (table, value) in dump.values() {
        let lower = value.to_ascii_lowercase();
        for (what, needle) in needles {
            let hex = needle.len() == 64 && needle.bytes().all(|b| b.is_ascii_hexdigit());
            if (hex && lower.contains(needle.as_str())) || (!hex && value.contains(needle.as_str())) {
                found.push(format!("{table}: the SHA-256 of {what}"));
            }
        }
    }
    found
}

/// The values of one column, read over a connection of the test's own.
async fn column(db: &TestDb, sql: &'static str) -> Vec<String> {
    if db.kind == "sqlite" {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    }
}

db_test!(no_unkeyed_digest_of_any_request_body_is_stored, |db: TestDb| async move {
    let server = TestServer::start(&db, fast_enrollment).await;
    assert_eq!(server.import_fixture_kits().await.inserted, 4);
    let keys = server.keys.path();

    // Visa: both key modes, and a redelivery.
    let mut envelopes = Vec::new();
    for (builder, card) in [
        (NotificationBuilder::rsa_from_dir(keys).unwrap(), CARD_1),
        (NotificationBuilder::shared_from_dir(keys, false).unwrap(), CARD_2),
        (NotificationBuilder::shared_from_dir(keys, true).unwrap(), CARD_3),
    ] {
        let body = builder.body(&payload(card), SystemTime::now()).unwrap();
        assert_eq!(server.notify(TR, body.clone()).await, StatusCode::OK);
        envelopes.push(body);
    }
    assert_eq!(server.notify(TR, envelopes[0].clone()).await, StatusCode::OK, "a redelivery");

    // The internal API, every write under an Idempotency-Key, one of them retried.
    let api = server.api(&[TENANT]);
    let card = fresh_cards(1)[0].digits().to_owned();
    let requests: Vec<(Method, &str, String)> = vec![
        (Method::PUT, "/registry/v1/entities/E1", profile("alex@example.com").to_string()),
        (
            Method::PUT,
            "/registry/v1/entities/E1/kits/K1",
            json!({"pan": card, "expiry": "2030-01", "nameOnCard": "ALEX MILLER"}).to_string(),
        ),
        (Method::POST, "/click-to-pay/v1/registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"}).to_string()),
    ];
    for (i, (method, path, body)) in requests.iter().enumerate() {
        let key = format!("key-{i}");
        for _ in 0..2 {
            let headers = [("authorization", format!("Bearer {}", api.token)), ("tenant", TENANT.into()), ("idempotency-key", key.clone())];
            let headers: Vec<(&str, &str)> = headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
            let reply = crate::support::http::request(server.internal, method.clone(), path, &headers, body.clone()).await;
            assert!(reply.status.is_success(), "{method} {path}: {}", reply.text());
        }
    }
    api.wait_for("E1", "ACTIVE", Some(("K1", "ACTIVE"))).await;
    server.stop().await;

    // Nothing unkeyed, in any column of any table.
    let mut needles: Vec<(String, String)> = Vec::new();
    let mut add = |what: String, bytes: &[u8]| needles.extend(unkeyed_forms(bytes).into_iter().map(|f| (what.clone(), f)));
    for (i, body) in envelopes.iter().enumerate() {
        add(format!("notification body {i}"), body.as_bytes());
        add(format!("encryptedData {i}"), encrypted_data(body).as_bytes());
        add(format!("the notification request {i}"), format!("POST {}\n{body}", ctp_issuer::sim::visa::notification_path(TR)).as_bytes());
    }
    for (method, path, body) in &requests {
        add(format!("{method} {path}: body"), body.as_bytes());
        add(format!("{method} {path}: request"), format!("{method} {path}\n{body}").as_bytes());
        add(format!("{method} {path}: parts"), &length_prefixed(&[method.as_str().as_bytes(), path.as_bytes(), body.as_bytes()]));
    }
    let dump = Dump::of(&db).await;
    assert!(dump.values().count() > 50, "the dump holds too little to mean anything");
    let found = unkeyed_in(&dump, &needles);
    assert!(found.is_empty(), "unkeyed digests stored:\n{}", found.join("\n"));
    // (The search finds one where it is: an upper-case hex digest in a BLOB, as SQLite's
    // quote() shows it, and a base64 one in text.)
    let mut planted = dump.clone();
    let (what, hex) = needles.iter().find(|(_, n)| n.len() == 64).unwrap();
    planted.tables.get_mut("outbox").unwrap().push(vec![Some(format!("X'{}'", hex.to_ascii_uppercase()))]);
    planted.tables.get_mut("kit").unwrap().push(vec![Some(format!("note {} end", needles[1].1))]);
    let hits = unkeyed_in(&planted, &needles);
    for table in ["outbox", "kit"] {
        assert!(hits.iter().any(|h| h.starts_with(table)), "the search missed what was planted in {table} for {what}: {hits:?}");
    }

    // The digests that are kept are the keyed ones.
    let mut kept = column(&db, "SELECT envelope_hash FROM enrollment_attempt").await;
    let mut expected: Vec<String> = envelopes.iter().map(|b| keyed_digest(encrypted_data(b).as_bytes())).collect();
    kept.sort();
    expected.sort();
    assert_eq!(kept, expected, "the envelope digests are not the keyed digests of encryptedData");
    let mut kept = column(&db, "SELECT request_digest FROM idempotency_request").await;
    let mut expected: Vec<String> =
        requests.iter().map(|(m, p, b)| keyed_digest_of_parts(&[m.as_str().as_bytes(), p.as_bytes(), b.as_bytes()])).collect();
    kept.sort();
    expected.sort();
    assert_eq!(kept, expected, "the idempotency digests are not the keyed digests of method, path and body");
});
