//! Known answers for what the service derives from the card-number keys: fingerprints,
//! keyed digests, sealed card numbers. Elsewhere fingerprints are only compared with each
//! other, so a change in how they are derived would pass every other test and break every
//! card stored before it (no notification would match its kit again).
//!
//! The constants were computed once, for the development keys under `keys/pan/`, without
//! the service's code: by `tests/it/known_answers.py` (Python's `hmac`/`hashlib` and the
//! `cryptography` package), which `known_answers_agree_with_the_independent_computation`
//! runs again when Python and `cryptography` are there (CI installs them). The values
//! that cannot be constants (a seal has a random nonce) are checked with OpenSSL here,
//! another implementation than the aws-lc-rs the service uses. And the values the service
//! stored in a real database are checked against the same constants.

use http::Method;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::symm::{Cipher, decrypt_aead};

use base64::Engine;
use ctp_issuer::pan::Pan;
use ctp_issuer::registry::sealing_context;

use crate::support::cards::{CARD_1, CARD_2, dev_pan_keys};
use crate::support::{TestDb, TestServer, repo};

// Printed by `python3 tests/it/known_answers.py`; checked by its `--verify`.
const FINGERPRINT_1111: &str = "v1:96b72e375b174f8070eca1431a0e3459665c95c2be5d3a960f5922a62425192e";
const FINGERPRINT_1881: &str = "v1:5e0ca8e9ded967c581f0eb2430be4578ff71ee8ce07a1a570eac43d110fc5dea";
const FINGERPRINT_4444: &str = "v1:124147476fd5e91e1baa9422790363014d4b7e37eef26217bd504e3309702ce0";
const DIGEST_OF_BODY: &str = "v1:0ae93f698354952bacefc039fd17f73c4d4db4ebe7b191b24d31a6982ba49f7e";
const DIGEST_OF_PARTS: &str = "v1:cb243fa87de312c3f7c99860b09e0bc873164c83f36ab3b8bddcf6b27426497b";
const SEALED_1111: &str = "v1:AAECAwQFBgcICQoLFmaxJrQvRrYhJWyAuBRB5G7cTU2KL4LMQibjR/teCCw";

/// The inputs the script used.
const DIGESTED: &[u8] = br#"{"encryptedData":"eyJraWQiOiI3MTVFQTI1NyJ9.e30.c2ln"}"#;
const PARTS: [&[u8]; 3] = [b"POST", b"/click-to-pay/v1/registerEntityAndKit", br#"{"entityId":"E1","kitNo":"K1"}"#];
const SEAL_CONTEXT: &str = "kit:DEMOBANK/KIT-000001";

fn key_file(name: &str) -> Vec<u8> {
    hex::decode(std::fs::read_to_string(repo().join("keys/pan").join(name)).unwrap().trim()).unwrap()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = PKey::hmac(key).unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(data).unwrap();
    signer.sign_to_vec().unwrap()
}

/// The service's keyed digest of `data` under the development keys, computed with OpenSSL
/// from the definition: `v1:` + hex HMAC-SHA-256(HMAC-SHA-256(fingerprint key, label), data).
pub fn keyed_digest(data: &[u8]) -> String {
    let digest_key = hmac_sha256(&key_file("fingerprint-v1.key"), b"ctp-issuer: digest of outside bytes");
    format!("v1:{}", hex::encode(hmac_sha256(&digest_key, data)))
}

/// [`keyed_digest`] of a list of parts, each prefixed with its length (8 bytes, big-endian).
pub fn keyed_digest_of_parts(parts: &[&[u8]]) -> String {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    keyed_digest(&bytes)
}

/// Opens a sealed card number with OpenSSL: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
fn open_independently(sealed: &str, context: &str) -> Result<String, openssl::error::ErrorStack> {
    let body = sealed.strip_prefix("v1:").expect("a v1 seal");
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(body).expect("standard base64 without padding");
    let (nonce, rest) = raw.split_at(12);
    let (ciphertext, tag) = rest.split_at(rest.len() - 16);
    let plain = decrypt_aead(Cipher::aes_256_gcm(), &key_file("encryption-v1.key"), Some(nonce), context.as_bytes(), ciphertext, tag)?;
    Ok(String::from_utf8(plain).unwrap())
}

#[test]
fn fingerprints_are_the_independently_computed_values() {
    let keys = dev_pan_keys();
    for (card, expected) in [(CARD_1, FINGERPRINT_1111), (CARD_2, FINGERPRINT_1881), ("5555555555554444", FINGERPRINT_4444)] {
        let pan = Pan::parse(card).unwrap();
        assert_eq!(keys.fingerprint(&pan), expected, "card ****{}", pan.last4());
        assert_eq!(keys.lookup_fingerprints(&pan), vec![expected.to_owned()], "one key version, one fingerprint");
    }
    // The OpenSSL computation agrees with the constants (so that a wrong constant fails
    // here rather than passing by accident).
    assert_eq!(format!("v1:{}", hex::encode(hmac_sha256(&key_file("fingerprint-v1.key"), CARD_1.as_bytes()))), FINGERPRINT_1111);
}

#[test]
fn keyed_digests_are_the_independently_computed_values() {
    let keys = dev_pan_keys();
    assert_eq!(keys.digest(DIGESTED), DIGEST_OF_BODY);
    assert_eq!(keys.digest_parts(&PARTS), DIGEST_OF_PARTS);
    assert_eq!(keyed_digest(DIGESTED), DIGEST_OF_BODY);
    assert_eq!(keyed_digest_of_parts(&PARTS), DIGEST_OF_PARTS);
    // The digest key is not the fingerprint key: the same bytes do not digest to their fingerprint.
    assert_ne!(keys.digest(CARD_1.as_bytes()), FINGERPRINT_1111);
}

#[test]
fn a_card_sealed_independently_opens_and_ours_opens_independently() {
    let keys = dev_pan_keys();
    // Sealed by the script with a fixed nonce: the service opens it, in its context only.
    assert_eq!(keys.open(SEALED_1111, SEAL_CONTEXT).unwrap(), Pan::parse(CARD_1).unwrap());
    assert!(keys.open(SEALED_1111, "kit:DEMOBANK/KIT-000002").is_err());
    assert!(keys.open(SEALED_1111, "kit:OTHERBANK/KIT-000001").is_err());
    assert_eq!(sealing_context("DEMOBANK", "KIT-000001"), SEAL_CONTEXT);
    // Sealed by the service (a random nonce): OpenSSL opens it with the same key and
    // context, and with no other context.
    let sealed = keys.seal(&Pan::parse(CARD_1).unwrap(), SEAL_CONTEXT);
    assert_eq!(sealed.len(), SEALED_1111.len(), "v1: and 44 bytes, base64 without padding");
    assert_eq!(open_independently(&sealed, SEAL_CONTEXT).unwrap(), CARD_1);
    assert!(open_independently(&sealed, "kit:DEMOBANK/KIT-000002").is_err());
    assert_eq!(open_independently(SEALED_1111, SEAL_CONTEXT).unwrap(), CARD_1);
}

/// What the service stored for the fixture kits (the CSV import) and for a kit PUT (the
/// internal API), read from the database: the fingerprints are the known answers, and the
/// sealed copies open with OpenSSL in their kit's context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_kits_carry_the_known_fingerprints_and_seals() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db, |_| {}).await;
    assert_eq!(server.import_fixture_kits().await.inserted, 4);
    let api = server.api(&["DEMOBANK"]);
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/ENT-9", serde_json::json!({"firstName": "Ana"})).await;
    assert!(status.is_success(), "{body}");
    let (status, body) =
        api.call(Method::PUT, "/registry/v1/entities/ENT-9/kits/KIT-9", serde_json::json!({"pan": "5555555555554444"})).await;
    assert!(status.is_success(), "{body}");
    server.stop().await;

    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let kits: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT tenant, kit_no, pan_fingerprint, pan_sealed FROM kit").fetch_all(&pool).await.unwrap();
    pool.close().await;
    let expected = [
        ("KIT-000001", FINGERPRINT_1111, CARD_1),
        ("KIT-000002", FINGERPRINT_1881, CARD_2),
        ("KIT-9", FINGERPRINT_4444, "5555555555554444"),
    ];
    for (kit_no, fingerprint, card) in expected {
        let (tenant, _, stored, sealed) = kits.iter().find(|k| k.1 == kit_no).unwrap_or_else(|| panic!("no kit {kit_no}: {kits:?}"));
        assert_eq!(stored, fingerprint, "kit {kit_no} is not stored under the known fingerprint");
        assert_eq!(open_independently(sealed, &sealing_context(tenant, kit_no)).unwrap(), card, "kit {kit_no}");
    }
}

/// The constants above are what the independent script computes. Needs `python3` with the
/// `cryptography` package (CI installs it); without them the test says so and passes,
/// except under `CI=true`.
#[test]
fn known_answers_agree_with_the_independent_computation() {
    let script = repo().join("tests/it/known_answers.py");
    let has_python = std::process::Command::new("python3").args(["-c", "import cryptography"]).output().is_ok_and(|o| o.status.success());
    if !has_python {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but python3 with cryptography is missing");
        eprintln!("skipped: python3 with the cryptography package is needed to recompute the known answers");
        return;
    }
    let out = std::process::Command::new("python3").arg(&script).arg("--verify").output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
