//! Tenants own BIN ranges (`[tenants.<ID>] bins = […]`): a tenant that is not declared is
//! refused; a tenant may hold only cards of its own ranges, and is told so in the same
//! words whether another tenant holds the card or nobody does (so that the answer says
//! nothing about another issuer's cards); a Visa notification goes to the tenant whose
//! range holds the card and is matched among that tenant's cards only. Without tenants
//! declared, one issuer is served as before.

use std::time::SystemTime;

use ctp_issuer::config::{TenantConfig, TenantsConfig};
use ctp_issuer::sim::visa::NotificationBuilder;
use ctp_issuer::store::epoch_millis;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::cards::{TR, dev_pan_keys, kit_record, payload};
use crate::support::dump::Dump;
use crate::support::http::Reply;
use crate::support::{TestDb, TestServer};

/// BANK_A's range.
const A_CARD: &str = "4111111111111111";
/// BANK_B's range.
const B_CARD: &str = "4012888888881881";
/// No declared tenant's range.
const NOBODYS_CARD: &str = "4000056655665556";

fn tenant(id: &str, bins: &[&str]) -> TenantConfig {
    TenantConfig {
        id: id.into(),
        bins: bins.iter().map(|b| b.parse().unwrap()).collect(),
        display_name: None,
        accent_color: None,
        d1_issuer_id: None,
    }
}

/// BANK_A owns 411111, BANK_B owns 401288.
async fn two_banks(db: &TestDb) -> TestServer {
    TestServer::start(db, |c| c.tenants = TenantsConfig(vec![tenant("BANK_A", &["411111"]), tenant("BANK_B", &["401288"])])).await
}

/// A Luhn-valid 16-digit card number that starts with `prefix`.
fn card_in(prefix: &str) -> String {
    let mut digits = format!("{prefix}{}", "7".repeat(15 - prefix.len()));
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    digits.push(char::from(b'0' + ((10 - sum % 10) % 10) as u8));
    ctp_issuer::pan::Pan::parse(&digits).expect("Luhn-valid");
    digits
}

async fn put_kit(server: &TestServer, tenant: &str, entity: &str, kit: &str, pan: &str) -> Reply {
    let api = server.api(&[tenant]);
    let (status, body) = api.call(Method::PUT, &format!("/registry/v1/entities/{entity}"), json!({"firstName": "Ana"})).await;
    assert!(status.is_success(), "{body}");
    api.send(Method::PUT, &format!("/registry/v1/entities/{entity}/kits/{kit}"), tenant, &[], &json!({"pan": pan})).await
}

db_test!(a_tenant_that_is_not_declared_is_refused, |db: TestDb| async move {
    let server = two_banks(&db).await;
    for (what, tokens_tenants) in [("a token naming it", vec!["BANK_C"]), ("a token for every tenant", vec!["*"])] {
        let api = server.api(&tokens_tenants);
        let (status, body) = api.call_with(Method::GET, "/registry/v1/entities/E1", "BANK_C", &[], Value::Null).await;
        assert_eq!((status, body["exception"]["errorCode"].as_str()), (StatusCode::FORBIDDEN, Some("Y103")), "{what}: {body}");
        let (status, body) = api.call_with(Method::PUT, "/registry/v1/entities/E1", "BANK_C", &[], json!({"firstName": "Ana"})).await;
        assert_eq!((status, body["exception"]["errorCode"].as_str()), (StatusCode::FORBIDDEN, Some("Y103")), "{what}: {body}");
    }
    // A declared tenant passes the same gate.
    let (status, body) = server.api(&["BANK_A"]).call(Method::GET, "/registry/v1/entities/E1", Value::Null).await;
    assert_eq!((status, body["exception"]["errorCode"].as_str()), (StatusCode::NOT_FOUND, Some("Y104")), "{body}");
    assert!(Dump::of(&db).await.rows("entity").is_empty(), "a refused tenant wrote an entity");
    server.stop().await;
});

db_test!(a_card_of_another_range_is_refused_in_the_same_words_whoever_holds_it, |db: TestDb| async move {
    let server = two_banks(&db).await;
    // Nobody holds BANK_B's card yet.
    let free = put_kit(&server, "BANK_A", "EA", "KA", B_CARD).await;
    assert_eq!((free.status, free.code()), (StatusCode::BAD_REQUEST, "Y100".into()), "{}", free.text());
    assert!(free.text().contains("outside this tenant's BIN ranges"), "{}", free.text());
    let import_free = server.import_csv(&format!("entity_id,kit_no,pan\nEA,KA2,{B_CARD}\n"), Some("BANK_A")).await;
    let before = Dump::of(&db).await.only(&["kit", "ctp_payment"]);

    // BANK_B registers it.
    let taken = put_kit(&server, "BANK_B", "EB", "KB", B_CARD).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.text());

    // BANK_A's attempt is answered byte for byte as before; so is the import row.
    let held = put_kit(&server, "BANK_A", "EA", "KA", B_CARD).await;
    assert_eq!((held.status, &held.body), (free.status, &free.body), "the answer tells whether another tenant holds the card");
    let import_held = server.import_csv(&format!("entity_id,kit_no,pan\nEA,KA2,{B_CARD}\n"), Some("BANK_A")).await;
    assert_eq!(import_held, import_free);
    assert_eq!(import_held.rejected.len(), 1, "{import_held:?}");
    // And a card in nobody's range is refused in the same words.
    let nobodys = put_kit(&server, "BANK_A", "EA", "KA", NOBODYS_CARD).await;
    assert_eq!((nobodys.status, &nobodys.body), (free.status, &free.body));
    let import_nobodys = server.import_csv(&format!("entity_id,kit_no,pan\nEA,KA2,{NOBODYS_CARD}\n"), Some("BANK_A")).await;
    assert_eq!(import_nobodys, import_free);

    // The refusals wrote nothing: BANK_A holds no kit, BANK_B its one.
    let after = Dump::of(&db).await.only(&["kit", "ctp_payment"]);
    assert_eq!(after.rows("kit").len(), before.rows("kit").len() + 1, "only BANK_B's kit was added");
    assert!(after.rows("kit").iter().flatten().flatten().all(|v| !v.contains("BANK_A")), "BANK_A holds a kit: {after:?}");
    // BANK_A's own range is its to hold.
    let own = put_kit(&server, "BANK_A", "EA", "KA", A_CARD).await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text());
    server.stop().await;
});

db_test!(a_notification_goes_to_the_tenant_that_owns_the_range, |db: TestDb| async move {
    let server = two_banks(&db).await;
    assert_eq!(put_kit(&server, "BANK_A", "EA", "KA", A_CARD).await.status, StatusCode::CREATED);
    assert_eq!(put_kit(&server, "BANK_B", "EB", "KB", B_CARD).await.status, StatusCode::CREATED);
    // Cards filed before the tenants were declared (the store takes what it is given):
    // one in nobody's range, one in BANK_A's range held by BANK_B.
    let keys = dev_pan_keys();
    let stray_in_a = card_in("411111");
    let now = epoch_millis(SystemTime::now());
    for (tenant, kit, pan) in [("LEGACY", "KL", NOBODYS_CARD), ("BANK_B", "KB2", stray_in_a.as_str())] {
        server.app.store().upsert_kit(&kit_record(&keys, tenant, kit, pan), false, now).await.unwrap();
    }
    let rsa = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap();
    let notify = |pan: &str| server.notify(TR, rsa.body(&payload(pan), SystemTime::now()).unwrap());

    assert_eq!(notify(A_CARD).await, StatusCode::OK);
    assert_eq!(notify(B_CARD).await, StatusCode::OK);
    let attempts = server.app.store().recent_attempts(10).await.unwrap();
    let by_last4 = |last4: &str| attempts.iter().find(|a| a.pan_last4 == last4).unwrap_or_else(|| panic!("no attempt ****{last4}"));
    assert_eq!((by_last4("1111").tenant.as_str(), by_last4("1111").kit_no.as_str()), ("BANK_A", "KA"));
    assert_eq!((by_last4("1881").tenant.as_str(), by_last4("1881").kit_no.as_str()), ("BANK_B", "KB"));
    let events = server.app.store().pending_outbox(10).await.unwrap();
    let tenants: Vec<(&str, Value)> = events.iter().map(|e| (e.tenant.as_str(), serde_json::from_str(&e.payload).unwrap())).collect();
    assert_eq!(tenants.len(), 2);
    for (tenant, payload) in &tenants {
        assert_eq!(payload["business"], *tenant);
        assert_eq!(payload["serverNotifyData"]["tenant"], *tenant);
    }

    // Nobody's range: 404, although a kit holds the card; BANK_A's range but another
    // tenant's kit: 404. Neither writes anything.
    let before = Dump::of(&db).await;
    assert_eq!(notify(NOBODYS_CARD).await, StatusCode::NOT_FOUND);
    assert_eq!(notify(&stray_in_a).await, StatusCode::NOT_FOUND);
    assert_eq!(Dump::of(&db).await, before, "a notification for nobody's card wrote something");
    server.stop().await;
});

db_test!(without_tenants_declared_one_issuer_is_served_as_before, |db: TestDb| async move {
    let server = TestServer::start(&db, |_| {}).await;
    // Any tenant name is accepted and any card may be held, whatever its range.
    for (tenant, kit, pan) in [("ANYBANK", "K1", NOBODYS_CARD), ("OTHERBANK", "K2", B_CARD)] {
        assert_eq!(put_kit(&server, tenant, "E1", kit, pan).await.status, StatusCode::CREATED, "{tenant}");
    }
    let rsa = NotificationBuilder::rsa_from_dir(server.keys.path()).unwrap();
    for pan in [NOBODYS_CARD, B_CARD] {
        assert_eq!(server.notify(TR, rsa.body(&payload(pan), SystemTime::now()).unwrap()).await, StatusCode::OK);
    }
    let attempts = server.app.store().recent_attempts(10).await.unwrap();
    let mut tenants: Vec<&str> = attempts.iter().map(|a| a.tenant.as_str()).collect();
    tenants.sort();
    assert_eq!(tenants, ["ANYBANK", "OTHERBANK"], "each recorded under the kit's tenant");
    server.stop().await;
});
