//! Visa's enrollment-attempt notification, end to end over loopback: every status the
//! protocol defines (each counted under its reason, on the real binary's own metrics),
//! both key modes, key rotation, duplicate delivery, and a database that goes away and
//! comes back.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ctp_issuer::sim::visa::{ContentEncryption, IatForm, NotificationBuilder};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::binary::{Setup, arg, fixture};
use crate::support::cards::{CARD_1, CARD_2, CARD_3, CARD_4, STRANGER, TR, encrypted_data, payload};
use crate::support::dump::Dump;
use crate::support::http::request;
use crate::support::proxy::Proxy;
use crate::support::{Blocker, TestDb, TestServer, repo, until};

fn now() -> SystemTime {
    SystemTime::now()
}

async fn started(db: &TestDb) -> TestServer {
    let server = TestServer::start(db, |_| {}).await;
    let report = server.import_fixture_kits().await;
    assert_eq!(report.inserted, 4, "{report:?}");
    server
}

db_test!(both_key_modes_and_every_iat_form_are_recorded, |db: TestDb| async move {
    let server = started(&db).await;
    let keys = server.keys.path();

    let mut rsa = NotificationBuilder::rsa_from_dir(keys).unwrap();
    rsa.iat_form = IatForm::StringSeconds;
    assert_eq!(server.notify(TR, rsa.body(&payload(CARD_1), now()).unwrap()).await, StatusCode::OK);

    rsa.enc = ContentEncryption::A128gcm;
    rsa.iat_form = IatForm::IntegerSeconds;
    assert_eq!(server.notify(TR, rsa.body(&payload(CARD_2), now()).unwrap()).await, StatusCode::OK);

    let mut shared = NotificationBuilder::shared_from_dir(keys, false).unwrap();
    shared.iat_form = IatForm::IntegerMillis;
    assert_eq!(server.notify(TR, shared.body(&payload(CARD_3), now()).unwrap()).await, StatusCode::OK);

    let mut hs256 = NotificationBuilder::shared_from_dir(keys, true).unwrap();
    hs256.enc = ContentEncryption::A128gcm;
    assert_eq!(server.notify(TR, hs256.body(&payload(CARD_4), now()).unwrap()).await, StatusCode::OK);

    let attempts = server.app.store().recent_attempts(10).await.unwrap();
    assert_eq!(attempts.len(), 4);
    let by_card = |last4: &str| attempts.iter().find(|a| a.pan_last4 == last4).unwrap().clone();
    let a1 = by_card("1111");
    assert_eq!((a1.tenant.as_str(), a1.entity_id.as_str(), a1.kit_no.as_str()), ("DEMOBANK", "ENT-0001", "KIT-000001"));
    assert_eq!((a1.jws_kid.as_str(), a1.jwe_kid.as_str()), ("715EA257", "issuer-dev-1"));
    assert_eq!(a1.first_name.as_deref(), Some("Jane"));
    assert_eq!(a1.email.as_deref(), Some("jane@example.com"));
    assert_eq!(a1.phone.as_deref(), Some("+1 (415) 555-0100"));
    assert_eq!(a1.token_requestor_id, TR);
    let iat = a1.iat.unwrap();
    assert!((now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64 - iat).abs() < 60);
    assert_eq!((by_card("5556").jws_kid, by_card("5556").jwe_kid), ("715EA257".into(), "shared-dev-1".into()));
    assert_eq!((by_card("4242").jws_kid, by_card("4242").jwe_kid), ("shared-dev-1".into(), "shared-dev-1".into()));
    // The millisecond iat was read as seconds.
    assert!(by_card("5556").iat.unwrap() < 10_000_000_000);

    // Each attempt wrote one outbox event in the same transaction.
    let events = server.app.store().pending_outbox(10).await.unwrap();
    assert_eq!(events.len(), 4);
    let event: Value = serde_json::from_str(&events.iter().find(|e| e.payload.contains("\"1111\"")).unwrap().payload).unwrap();
    assert_eq!(event["business"], "DEMOBANK");
    assert_eq!(event["transactionType"], "CTP_ENROLLMENT_ATTEMPT");
    assert_eq!(event["serverNotifyData"]["kitNo"], "KIT-000001");
    assert_eq!(event["serverNotifyData"]["entityId"], "ENT-0001");
    assert_eq!(event["serverNotifyData"]["cardLast4"], "1111");
    assert_eq!(event["serverNotifyData"]["attemptId"], a1.id.as_str());
    server.stop().await;
});

db_test!(duplicate_delivery_is_recorded_once, |db: TestDb| async move {
    let server = started(&db).await;
    let body = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap().body(&payload(CARD_1), now()).unwrap();
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::OK);
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::OK);
    // Concurrent redeliveries race on the unique index, not on a read.
    let (a, b) = tokio::join!(server.notify(TR, body.clone()), server.notify(TR, body.clone()));
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    assert_eq!(server.app.store().recent_attempts(10).await.unwrap().len(), 1);
    assert_eq!(server.app.store().pending_outbox(10).await.unwrap().len(), 1);
    // That these were counted as duplicates is asserted on the binary's own metrics, in
    // every_protocol_status_with_its_reason.

    // Shared-secret envelopes are decrypted before any lookup (the write tells a
    // redelivery by its hash). A redelivery whose key has been retired since is still the
    // duplicate it is, not a 401; a new envelope under that key is refused.
    let keys = server.keys.path().to_owned();
    let shared = NotificationBuilder::shared_from_dir(&keys, true).unwrap();
    let body = shared.body(&payload(CARD_2), now()).unwrap();
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::OK);
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::OK);
    std::fs::remove_file(keys.join("shared/shared-dev-1.secret")).unwrap();
    server.app.services().reload_visa_keys().unwrap();
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::OK);
    assert_eq!(server.notify(TR, shared.body(&payload(CARD_3), now()).unwrap()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.app.store().recent_attempts(10).await.unwrap().len(), 2);
    assert_eq!(server.app.store().pending_outbox(10).await.unwrap().len(), 2);
    server.stop().await;
});

db_test!(a_notification_that_runs_out_of_time_is_answered_500_so_visa_retries, |db: TestDb| async move {
    let server = TestServer::start(&db, |c| c.http.request_timeout = Duration::from_millis(300)).await;
    server.import_fixture_kits().await;
    let body = NotificationBuilder::shared_from_dir(server.keys.path(), true).unwrap().body(&payload(CARD_1), now()).unwrap();
    let mut blocker = Blocker::hold(&db).await;
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::INTERNAL_SERVER_ERROR, "Visa retries only a 500");
    blocker.release().await;
    // Visa's retry is recorded once the database answers again.
    until("Visa's retry to be recorded", Duration::from_secs(20), || async {
        (server.notify(TR, body.clone()).await == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(server.app.store().recent_attempts(10).await.unwrap().len(), 1);
    server.stop().await;
});

db_test!(unknown_card_is_404_and_writes_nothing, |db: TestDb| async move {
    let server = started(&db).await;
    let body = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap().body(&payload(STRANGER), now()).unwrap();
    assert_eq!(server.notify(TR, body.clone()).await, StatusCode::NOT_FOUND);
    assert_eq!(server.notify(TR, body).await, StatusCode::NOT_FOUND);
    assert!(server.app.store().recent_attempts(10).await.unwrap().is_empty());
    assert!(server.app.store().pending_outbox(10).await.unwrap().is_empty());
    server.stop().await;
});

/// Builds a JWS(JWE) by hand, for the envelopes our builder will not make.
#[allow(clippy::too_many_arguments)]
fn custom_envelope(
    jwe_alg_enc: (&str, &str),
    jwe_key: &[u8],
    jwe_kid: &str,
    jws_alg: &str,
    jws_key_pem: &[u8],
    jws_kid: &str,
    iat: Value,
    plaintext: &[u8],
) -> String {
    use josekit::jwe::{JweHeader, RSA_OAEP_256};
    use josekit::jws::{JwsHeader, PS256, RS256};
    let mut jwe_header = JweHeader::new();
    jwe_header.set_content_encryption(jwe_alg_enc.1);
    jwe_header.set_key_id(jwe_kid);
    jwe_header.set_claim("iat", Some(iat)).unwrap();
    let jwe = match jwe_alg_enc.0 {
        "RSA-OAEP-256" => {
            josekit::jwe::serialize_compact(plaintext, &jwe_header, &RSA_OAEP_256.encrypter_from_pem(jwe_key).unwrap()).unwrap()
        }
        "A256KW" => {
            josekit::jwe::serialize_compact(plaintext, &jwe_header, &josekit::jwe::A256KW.encrypter_from_bytes(jwe_key).unwrap()).unwrap()
        }
        other => panic!("{other}"),
    };
    let mut jws_header = JwsHeader::new();
    jws_header.set_key_id(jws_kid);
    jws_header.set_token_type("JOSE");
    jws_header.set_content_type("JWE");
    let der = openssl::rsa::Rsa::private_key_from_pem(jws_key_pem).unwrap().private_key_to_der().unwrap();
    let jws = match jws_alg {
        "PS256" => josekit::jws::serialize_compact(jwe.as_bytes(), &jws_header, &PS256.signer_from_der(&der).unwrap()).unwrap(),
        "RS256" => josekit::jws::serialize_compact(jwe.as_bytes(), &jws_header, &RS256.signer_from_der(&der).unwrap()).unwrap(),
        other => panic!("{other}"),
    };
    json!({ "encryptedData": jws }).to_string()
}

fn issuer_public(keys: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read(keys.join("issuer/issuer-dev-1.pem")).unwrap();
    openssl::pkey::PKey::private_key_from_pem(&pem).unwrap().public_key_to_pem().unwrap()
}

fn visa_private(keys: &std::path::Path) -> Vec<u8> {
    std::fs::read(keys.join("sim/visa/715EA257.pem")).unwrap()
}

fn iat_now() -> Value {
    json!(now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
}

/// Every answer the protocol defines, each counted under its reason. On the real binary,
/// so that the counts read back are this test's alone and can be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_status_with_its_reason() {
    let mut setup = Setup::new();
    setup.set("CTP_VISA_REPLAY_WINDOW", "120s");
    let import = setup.run(&["kits", "import", arg(&fixture("kits.csv"))]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let server = setup.serve().await;
    let keys = setup.keys();
    let rsa = NotificationBuilder::rsa_from_dir(&keys).unwrap();
    let good = |pan: &str| rsa.body(&payload(pan), now()).unwrap();
    let plaintext = payload(CARD_1).to_string();

    // A stranger's RSA key, for "signed by someone else" and "encrypted to someone else".
    let stranger = openssl::rsa::Rsa::generate(2048).unwrap();
    let stranger_private = stranger.private_key_to_pem().unwrap();
    let stranger_public = openssl::pkey::PKey::from_rsa(stranger).unwrap().public_key_to_pem().unwrap();

    let tampered = {
        let data = encrypted_data(&good(CARD_1));
        let (head, sig) = data.rsplit_once('.').unwrap();
        let mut sig = sig.as_bytes().to_vec();
        sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
        json!({ "encryptedData": format!("{head}.{}", String::from_utf8(sig).unwrap()) }).to_string()
    };
    let path = ctp_issuer::sim::visa::notification_path(TR);
    let cases: Vec<(&str, String, String, StatusCode, &str)> = vec![
        ("body is not JSON", path.clone(), "hello".into(), StatusCode::BAD_REQUEST, "body_not_json"),
        ("no encryptedData", path.clone(), r#"{"data":"x"}"#.into(), StatusCode::BAD_REQUEST, "missing_encrypted_data"),
        (
            "encryptedData over 7000",
            path.clone(),
            json!({"encryptedData": "a".repeat(7001)}).to_string(),
            StatusCode::BAD_REQUEST,
            "encrypted_data_too_long",
        ),
        ("body over the size limit", path.clone(), "x".repeat(20_000), StatusCode::BAD_REQUEST, "body_too_large"),
        ("not compact JOSE", path.clone(), r#"{"encryptedData":"not-jose"}"#.into(), StatusCode::BAD_REQUEST, "not_compact_jws"),
        (
            "unknown eventType",
            format!("/vtis/v1/tokenRequestors/{TR}/cardEnrollment/notification?eventType=CTP_TOKEN_CREATED"),
            good(CARD_1),
            StatusCode::BAD_REQUEST,
            "unknown_event_type",
        ),
        (
            "payload lacks enrollment",
            path.clone(),
            rsa.body(&json!({"clientInformation": {}}), now()).unwrap(),
            StatusCode::BAD_REQUEST,
            "payload_missing_field",
        ),
        (
            "payload card fails Luhn",
            path.clone(),
            rsa.body(&payload("4111111111111112"), now()).unwrap(),
            StatusCode::BAD_REQUEST,
            "payload_invalid_field",
        ),
        (
            "unknown JWS kid",
            path.clone(),
            custom_envelope(
                ("RSA-OAEP-256", "A256GCM"),
                &issuer_public(&keys),
                "issuer-dev-1",
                "PS256",
                &visa_private(&keys),
                "DEADBEEF",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "unknown_jws_kid",
        ),
        ("bad signature", path.clone(), tampered, StatusCode::UNAUTHORIZED, "bad_signature"),
        (
            "signed by a stranger under Visa's kid",
            path.clone(),
            custom_envelope(
                ("RSA-OAEP-256", "A256GCM"),
                &issuer_public(&keys),
                "issuer-dev-1",
                "PS256",
                &stranger_private,
                "715EA257",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "RS256 not allowed",
            path.clone(),
            custom_envelope(
                ("RSA-OAEP-256", "A256GCM"),
                &issuer_public(&keys),
                "issuer-dev-1",
                "RS256",
                &visa_private(&keys),
                "715EA257",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "jws_alg_not_allowed",
        ),
        (
            "JWE alg A256KW not allowed",
            path.clone(),
            custom_envelope(
                ("A256KW", "A256GCM"),
                &[7u8; 32],
                "shared-dev-1",
                "PS256",
                &visa_private(&keys),
                "715EA257",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "jwe_alg_not_allowed",
        ),
        (
            "JWE enc A192GCM not allowed",
            path.clone(),
            custom_envelope(
                ("RSA-OAEP-256", "A192GCM"),
                &issuer_public(&keys),
                "issuer-dev-1",
                "PS256",
                &visa_private(&keys),
                "715EA257",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "jwe_alg_not_allowed",
        ),
        (
            "unknown JWE kid",
            path.clone(),
            custom_envelope(
                ("RSA-OAEP-256", "A256GCM"),
                &issuer_public(&keys),
                "issuer-old",
                "PS256",
                &visa_private(&keys),
                "715EA257",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "unknown_jwe_kid",
        ),
        (
            "JWE for another key",
            path.clone(),
            custom_envelope(
                ("RSA-OAEP-256", "A256GCM"),
                &stranger_public,
                "issuer-dev-1",
                "PS256",
                &visa_private(&keys),
                "715EA257",
                iat_now(),
                plaintext.as_bytes(),
            ),
            StatusCode::UNAUTHORIZED,
            "decryption_failed",
        ),
        (
            "iat an hour old",
            path.clone(),
            rsa.body(&payload(CARD_1), now() - Duration::from_secs(3600)).unwrap(),
            StatusCode::UNAUTHORIZED,
            "iat_outside_window",
        ),
        (
            "iat an hour ahead",
            path.clone(),
            rsa.body(&payload(CARD_1), now() + Duration::from_secs(3600)).unwrap(),
            StatusCode::UNAUTHORIZED,
            "iat_outside_window",
        ),
        ("unknown card", path.clone(), good(STRANGER), StatusCode::NOT_FOUND, "unknown_card"),
    ];
    let mut counted: BTreeMap<String, f64> = BTreeMap::new();
    let mut expected = |series: String| *counted.entry(series).and_modify(|n| *n += 1.0).or_insert(1.0);
    for (what, path, body, expect, reason) in cases {
        let reply = request(server.public, Method::POST, &path, &[], body).await;
        assert_eq!(reply.status, expect, "{what}");
        assert!(reply.body.is_empty(), "{what}: a rejection says nothing more than its status: {}", reply.text());
        let series = format!("ctp_visa_notification_rejections_total{{reason=\"{reason}\"}}");
        let want = expected(series.clone());
        assert_eq!(server.metrics().await.get(&series), want, "{what}: reason {reason} counted once");
        let outcome = match expect {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "unknown_card",
            _ => "bad_request",
        };
        expected(format!("ctp_visa_notifications_total{{outcome=\"{outcome}\"}}"));
        expected(format!("ctp_http_requests_total{{listener=\"public\",route=\"visa_notification\",status=\"{}\"}}", expect.as_u16()));
    }
    let dump = Dump::of(&setup.db()).await;
    assert!(dump.rows("enrollment_attempt").is_empty(), "a rejected notification left a row");
    assert!(dump.rows("outbox").is_empty(), "a rejected notification left an event");

    // A recorded notification and its redeliveries, counted as what they are.
    let body = good(CARD_1);
    for _ in 0..3 {
        assert_eq!(request(server.public, Method::POST, &path, &[], body.clone()).await.status, StatusCode::OK);
    }
    expected("ctp_visa_notifications_total{outcome=\"recorded\"}".into());
    for _ in 0..2 {
        expected("ctp_visa_notifications_total{outcome=\"duplicate\"}".into());
    }
    for _ in 0..3 {
        expected("ctp_http_requests_total{listener=\"public\",route=\"visa_notification\",status=\"200\"}".into());
    }

    // Wrong method and unknown paths on the public listener, counted by route name.
    assert_eq!(request(server.public, Method::GET, &path, &[], "").await.status, StatusCode::METHOD_NOT_ALLOWED);
    expected("ctp_http_requests_total{listener=\"public\",route=\"visa_notification\",status=\"405\"}".into());
    assert_eq!(request(server.public, Method::POST, "/registry/v1/entities/x", &[], "{}").await.status, StatusCode::NOT_FOUND);
    assert_eq!(request(server.public, Method::POST, "/metrics", &[], "").await.status, StatusCode::NOT_FOUND);
    for _ in 0..2 {
        expected("ctp_http_requests_total{listener=\"public\",route=\"unmatched\",status=\"404\"}".into());
    }

    let metrics = server.metrics().await;
    for (series, want) in &counted {
        assert_eq!(metrics.get(series), *want, "{series}");
    }
    for name in ["ctp_visa_notification_rejections_total", "ctp_visa_notifications_total"] {
        let total: f64 = metrics.named(name).iter().map(|(_, v)| v).sum();
        let want: f64 = counted.iter().filter(|(s, _)| s.starts_with(&format!("{name}{{"))).map(|(_, v)| v).sum();
        assert_eq!(total, want, "{name}: nothing counted under a reason or outcome of its own");
    }
    let histogram = "ctp_visa_notification_duration_seconds_bucket{outcome=\"recorded\",le=\"0.0005\"}";
    assert!(metrics.has(histogram), "the histogram has explicit buckets: {histogram}");
    assert_eq!(metrics.get("ctp_visa_notification_duration_seconds_count{outcome=\"recorded\"}"), 1.0);
    assert!(!metrics.text.contains(TR), "a raw path leaked into a label");
    assert!(!metrics.text.contains("/registry/"), "a raw path leaked into a label");
    assert!(server.stop().await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_by_files() {
    let db = TestDb::sqlite();
    let server = started(&db).await;
    let keys = server.keys.path().to_owned();
    let old = NotificationBuilder::rsa_from_dir(&keys).unwrap();

    // Visa onboards a new signing key (as a certificate) and we a new encryption key.
    let visa_new = openssl::rsa::Rsa::generate(2048).unwrap();
    let visa_new_key = openssl::pkey::PKey::from_rsa(visa_new).unwrap();
    let cert = crate::support::cards::self_signed(&visa_new_key);
    std::fs::write(keys.join("visa/NEWVISA2.pem"), cert).unwrap();
    let issuer_new = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    std::fs::write(keys.join("issuer/issuer-dev-2.pem"), issuer_new.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let new = NotificationBuilder::rsa(
        &visa_new_key.private_key_to_pem_pkcs8().unwrap(),
        "NEWVISA2",
        &issuer_new.public_key_to_pem().unwrap(),
        "issuer-dev-2",
    )
    .unwrap();

    // Not yet loaded: 401.
    assert_eq!(server.notify(TR, new.body(&payload(CARD_1), now()).unwrap()).await, StatusCode::UNAUTHORIZED);
    server.app.services().reload_visa_keys().unwrap();
    // Both generations are valid at once.
    assert_eq!(server.notify(TR, new.body(&payload(CARD_1), now()).unwrap()).await, StatusCode::OK);
    assert_eq!(server.notify(TR, old.body(&payload(CARD_2), now()).unwrap()).await, StatusCode::OK);
    // The old pair is retired.
    std::fs::remove_file(keys.join("visa/715EA257.pem")).unwrap();
    std::fs::remove_file(keys.join("issuer/issuer-dev-1.pem")).unwrap();
    server.app.services().reload_visa_keys().unwrap();
    assert_eq!(server.notify(TR, old.body(&payload(CARD_3), now()).unwrap()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.notify(TR, new.body(&payload(CARD_3), now()).unwrap()).await, StatusCode::OK);
    // A broken key file makes the reload fail and keeps the ring that works.
    std::fs::write(keys.join("visa/BROKEN.pem"), "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n").unwrap();
    assert!(server.app.services().reload_visa_keys().is_err());
    assert_eq!(server.notify(TR, new.body(&payload(CARD_4), now()).unwrap()).await, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_fixtures_from_an_independent_jose_implementation() {
    let db = TestDb::sqlite();
    let server = started(&db).await;
    let dir = repo().join("fixtures/notifications");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "fixtures missing in {}", dir.display());
    for file in files {
        let fixture: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let body = match (fixture.get("body"), fixture.get("rawBody")) {
            (Some(body), _) => body.to_string(),
            (None, Some(Value::String(raw))) => raw.clone(),
            _ => panic!("{}: no body", file.display()),
        };
        let path = format!(
            "/vtis/v1/tokenRequestors/{}/cardEnrollment/notification?eventType={}",
            fixture["tokenRequestorId"].as_str().unwrap(),
            fixture["eventType"].as_str().unwrap()
        );
        let expect = fixture["expectStatus"].as_u64().unwrap() as u16;
        let status = server.post_public(&path, body).await;
        assert_eq!(status.as_u16(), expect, "{}: {}", file.display(), fixture["description"]);
        if expect == 200 {
            let last4 = fixture["cardLast4"].as_str().unwrap();
            let attempts = server.app.store().recent_attempts(100).await.unwrap();
            assert!(attempts.iter().any(|a| a.pan_last4 == last4), "{}: not recorded", file.display());
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_the_public_listener() {
    use ctp_issuer::config::TlsConfig;
    use ctp_issuer::sim::client::{ClientTls, send};
    let tls_dir = repo().join("fixtures/tls");
    let db = TestDb::sqlite();
    let server = TestServer::start(&db, |c| {
        c.tls =
            Some(TlsConfig { cert: tls_dir.join("server.pem"), key: tls_dir.join("server.key"), client_ca: Some(tls_dir.join("ca.pem")) })
    })
    .await;
    server.import_fixture_kits().await;
    let body = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap().body(&payload(CARD_1), now()).unwrap();
    let path = ctp_issuer::sim::visa::notification_path(TR);
    let authority = format!("localhost:{}", server.public.port());

    let visa = ClientTls::new(&tls_dir.join("ca.pem"), Some((&tls_dir.join("client.pem"), &tls_dir.join("client.key")))).unwrap();
    let (status, _) = send(&authority, Some(&visa), http::Method::POST, &path, body.clone()).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let no_cert = ClientTls::new(&tls_dir.join("ca.pem"), None).unwrap();
    assert!(send(&authority, Some(&no_cert), http::Method::POST, &path, body.clone()).await.is_err(), "no client certificate was accepted");
    let stranger =
        ClientTls::new(&tls_dir.join("ca.pem"), Some((&tls_dir.join("other-client.pem"), &tls_dir.join("other-client.key")))).unwrap();
    assert!(
        send(&authority, Some(&stranger), http::Method::POST, &path, body.clone()).await.is_err(),
        "a certificate from another CA was accepted"
    );
    // Plain HTTP on the TLS port gets nowhere.
    assert!(send(&authority, None, http::Method::POST, &path, body).await.map(|(s, _)| s != StatusCode::OK).unwrap_or(true));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_reports_health_and_readiness_and_nothing_else_is_public() {
    let db = TestDb::sqlite();
    let server = started(&db).await;
    assert_eq!(server.get_admin("/healthz").await, (StatusCode::OK, "ok\n".into()));
    let (status, ready) = server.get_admin("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ready.contains("simulator in use"), "the embedded SaaS simulator is said: {ready}");
    // Nothing of the admin listener is reachable on the public port, nor of the internal one.
    assert_eq!(server.post_public("/metrics", "").await, StatusCode::NOT_FOUND);
    assert_eq!(server.post_public("/healthz", "").await, StatusCode::NOT_FOUND);
    assert_eq!(server.post_public("/click-to-pay/v1/addKit", "{}").await, StatusCode::NOT_FOUND);
    assert_eq!(request(server.internal, Method::GET, "/metrics", &[], "").await.status, StatusCode::NOT_FOUND);
    // Counting by route name, never by raw path, is asserted on the binary's own metrics,
    // in every_protocol_status_with_its_reason.
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_unreachable_is_500_then_recovers_without_restart() {
    let Some(db) = TestDb::postgres().await else { return };
    let (proxy, via_proxy) = Proxy::before(&db).await;
    let server = started(&via_proxy).await;
    let rsa = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap();
    assert_eq!(server.notify(TR, rsa.body(&payload(CARD_1), now()).unwrap()).await, StatusCode::OK);

    proxy.cut();
    let retried = rsa.body(&payload(CARD_2), now()).unwrap();
    assert_eq!(server.notify(TR, retried.clone()).await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(server.get_admin("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.get_admin("/healthz").await.0, StatusCode::OK, "liveness must not depend on the database");

    proxy.restore();
    // Visa retries the same body; it is recorded once, with no restart in between.
    until("the retry to succeed once the database is back", Duration::from_secs(30), || async {
        (server.notify(TR, retried.clone()).await == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(server.notify(TR, retried).await, StatusCode::OK);
    assert_eq!(server.app.store().recent_attempts(10).await.unwrap().len(), 2);
    assert_eq!(server.get_admin("/readyz").await.0, StatusCode::OK);
    server.stop().await;
}
