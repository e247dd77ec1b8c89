//! The real binary and the signals an operator (or Kubernetes) sends it: SIGTERM stops it
//! gracefully, finishing the request in flight, with exit status 0; SIGHUP reloads the Visa
//! keys from their files, keeping the old ring if the new files do not load.

use std::time::{Duration, SystemTime};

use ctp_issuer::sim::visa::NotificationBuilder;
use http::{Method, StatusCode};

use crate::support::Blocker;
use crate::support::api::profile;
use crate::support::binary::{Setup, arg, fixture};
use crate::support::cards::{CARD_1, CARD_2, CARD_3, TR, new_visa_signer, payload};
use crate::support::dump::Dump;
use crate::support::http::request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let setup = Setup::new();
    let auth = format!("Bearer {}", setup.token("DEMO"));
    let server = setup.serve().await;

    // Hold SQLite's write lock from another connection: the next write waits for it.
    let mut blocker = Blocker::hold(&setup.db()).await;
    let internal = server.internal;
    let in_flight = tokio::spawn(async move {
        let headers = [("authorization", auth.as_str()), ("tenant", "DEMO")];
        request(internal, Method::PUT, "/registry/v1/entities/E1", &headers, profile("alex@example.com").to_string()).await
    });
    // The request is past the gate (logged before its handler runs), so in the handler.
    server.logged("internal API call", 1).await;

    server.signal(libc::SIGTERM);
    server.logged("draining connections", 3).await;
    assert!(!in_flight.is_finished(), "the request finished although its write could not");
    assert!(tokio::net::TcpStream::connect(server.internal).await.is_err(), "a draining server still accepts new connections");

    blocker.release().await;
    let reply = tokio::time::timeout(Duration::from_secs(30), in_flight).await.expect("the request in flight finishes").unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.json()["result"]["entityId"], "E1");
    let exited = server.exit(Duration::from_secs(30)).await;
    assert!(exited.status.success(), "exit status {:?}:\n{}", exited.status, exited.stderr);
    assert!(exited.stderr.contains("shutdown requested") && exited.stderr.contains("\"stopped\""), "{}", exited.stderr);
    assert_eq!(Dump::of(&setup.db()).await.rows("entity").len(), 1, "the answered write is in the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_loads_a_new_visa_key_and_keeps_the_old_ring_if_the_new_files_fail() {
    let setup = Setup::new();
    let import = setup.run(&["kits", "import", arg(&fixture("kits.csv"))]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let server = setup.serve().await;
    let notify = |builder: &NotificationBuilder, pan: &str| {
        let body = builder.body(&payload(pan), SystemTime::now()).unwrap();
        let public = server.public;
        async move { request(public, Method::POST, &ctp_issuer::sim::visa::notification_path(TR), &[], body).await.status }
    };

    // Visa starts signing with a new key, whose certificate is put in place.
    let new = new_visa_signer(&setup.keys(), "NEWKID01");
    assert_eq!(notify(&new, CARD_1).await, StatusCode::UNAUTHORIZED, "a key not yet loaded");
    server.signal(libc::SIGHUP);
    server.logged("Visa notification keys reloaded", 1).await;
    assert_eq!(notify(&new, CARD_1).await, StatusCode::OK, "the reloaded key");
    let old = NotificationBuilder::rsa_from_dir(&setup.keys()).unwrap();
    assert_eq!(notify(&old, CARD_2).await, StatusCode::OK, "the old key, still present, still verifies");

    // A file that does not load: the reload fails and the ring that works stays.
    std::fs::write(setup.keys().join("visa/BROKEN.pem"), "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n").unwrap();
    server.signal(libc::SIGHUP);
    server.logged("key reload failed; keeping the previous keys", 1).await;
    assert_eq!(notify(&new, CARD_3).await, StatusCode::OK, "the ring that worked is kept");
    assert_eq!(server.get_admin("/healthz").await.status, StatusCode::OK);

    let exited = server.stop().await;
    assert!(exited.status.success(), "exit status {:?}", exited.status);
    let attempts = Dump::of(&setup.db()).await;
    assert_eq!(attempts.rows("enrollment_attempt").len(), 3);
}
