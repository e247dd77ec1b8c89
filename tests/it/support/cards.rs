//! Cards, kits and Visa notifications, made the one way every test makes them.

use std::path::Path;
use std::time::{Duration, SystemTime};

use ctp_issuer::pan::{Pan, PanKeys};
use ctp_issuer::registry::sealing_context;
use ctp_issuer::sim::visa::{NotificationBuilder, enrollment_payload};
use ctp_issuer::store::KitRecord;
use ctp_issuer::store::attempts::{Announcement, AttemptWrite, Recorded};
use ctp_issuer::store::registry::ImportedContact;
use ctp_issuer::visa::{RawNotification, ReplayPolicy, VerifiedNotification, VisaKeyRing};
use serde_json::Value;

use super::repo;

/// Visa's test cards, as in `fixtures/kits.csv` (DEMOBANK, KIT-000001 … KIT-000004).
pub const CARD_1: &str = "4111111111111111";
pub const CARD_2: &str = "4012888888881881";
pub const CARD_3: &str = "4000056655665556";
pub const CARD_4: &str = "4242424242424242";
/// A valid Visa test card that no fixture holds.
pub const STRANGER: &str = "4000000000000002";
/// The token requestor every test's notifications come from.
pub const TR: &str = "40010030273";

/// A `CTP_ENROLLMENT_ATTEMPT` payload for `pan`, from Jane Doe.
pub fn payload(pan: &str) -> Value {
    enrollment_payload(pan, "Jane", "Doe", "jane@example.com", "+1 (415) 555-0100")
}

/// The card-number keys in `dir` (`pan/*-v1.key`).
pub fn pan_keys(dir: &Path) -> PanKeys {
    PanKeys::load(dir, "v1", "v1").unwrap()
}

/// The development card-number keys.
pub fn dev_pan_keys() -> PanKeys {
    pan_keys(&repo().join("keys"))
}

/// What the store keeps of `pan` as kit `kit_no` of entity `E-<kit_no>` of `tenant`.
pub fn kit_record(keys: &PanKeys, tenant: &str, kit_no: &str, pan: &str) -> KitRecord {
    let pan = Pan::parse(pan).unwrap();
    KitRecord {
        tenant: tenant.into(),
        entity_id: format!("E-{kit_no}"),
        kit_no: kit_no.into(),
        pan_fingerprint: keys.fingerprint(&pan),
        pan_sealed: keys.seal(&pan, &sealing_context(tenant, kit_no)),
        pan_last4: pan.last4().into(),
        expiry: Some("2030-01".into()),
        name_on_card: None,
        contact: ImportedContact { first_name: Some("Ana".into()), ..ImportedContact::default() },
    }
}

/// The store's write of a verified notification, looked up under `fingerprints`,
/// announced with a marker event.
pub fn attempt_write(n: &VerifiedNotification, fingerprints: Vec<String>) -> AttemptWrite {
    fn announce(recorded: &Recorded<'_>, _: &VerifiedNotification) -> Announcement {
        Announcement { event_type: "CTP_ENROLLMENT_ATTEMPT", payload: format!("{{\"attemptId\":\"{}\"}}", recorded.attempt_id) }
    }
    AttemptWrite { notification: n.clone(), fingerprints, tenant: None, announce }
}

/// A real, verified notification for `pan`, built and opened with the development keys
/// (the only way to make one).
pub fn verified(pan: &str) -> VerifiedNotification {
    let dir = repo().join("keys");
    let body = NotificationBuilder::rsa_from_dir(&dir)
        .unwrap()
        .body(&enrollment_payload(pan, "Ana", "Lima", "ana@example.com", "+55 11 5555-0100"), SystemTime::now())
        .unwrap();
    let ring = VisaKeyRing::load(&dir, &["PS256".into()]).unwrap();
    RawNotification::parse(TR, None, body.as_bytes(), &dev_pan_keys())
        .unwrap()
        .open(&ring, ReplayPolicy { window: Duration::from_secs(60), require_iat: true }, SystemTime::now())
        .unwrap()
}

/// The `encryptedData` of a notification body.
pub fn encrypted_data(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["encryptedData"].as_str().unwrap().to_owned()
}

/// A self-signed certificate for `key` (Visa hands over its signing keys as certificates).
pub fn self_signed(key: &openssl::pkey::PKey<openssl::pkey::Private>) -> Vec<u8> {
    use openssl::x509::{X509Builder, X509NameBuilder};
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "Visa test signing").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(365).unwrap()).unwrap();
    b.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
    b.build().to_pem().unwrap()
}

/// A new Visa signing key, installed as `visa/<kid>.pem` (a certificate) under `keys_dir`,
/// and a builder that signs with it (encrypting to the development issuer key).
pub fn new_visa_signer(keys_dir: &Path, kid: &str) -> NotificationBuilder {
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    std::fs::write(keys_dir.join(format!("visa/{kid}.pem")), self_signed(&key)).unwrap();
    let issuer = std::fs::read(repo().join("keys/issuer/issuer-dev-1.pem")).unwrap();
    let issuer_public = openssl::pkey::PKey::private_key_from_pem(&issuer).unwrap().public_key_to_pem().unwrap();
    NotificationBuilder::rsa(&key.private_key_to_pem_pkcs8().unwrap(), kid, &issuer_public, "issuer-dev-1").unwrap()
}
