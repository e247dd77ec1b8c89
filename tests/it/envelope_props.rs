//! Property tests of the envelope decoder with real keys: whatever Visa's channel (or an
//! attacker on it) does to a valid notification, the decoder answers with a rejection and
//! never panics; and only the untouched notification opens.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use ctp_issuer::pan::PanKeys;
use ctp_issuer::sim::visa::{NotificationBuilder, enrollment_payload};
use ctp_issuer::visa::{RawNotification, Rejection, ReplayPolicy, VisaKeyRing};
use proptest::prelude::*;

use crate::support::cards::{TR, dev_pan_keys};
use crate::support::repo;

static PAN_KEYS: LazyLock<PanKeys> = LazyLock::new(dev_pan_keys);

static RING: LazyLock<VisaKeyRing> = LazyLock::new(|| VisaKeyRing::load(&repo().join("keys"), &["PS256".into(), "HS256".into()]).unwrap());

/// One valid envelope per mode, built once (RSA work is slow in debug builds).
static VALID: LazyLock<Vec<String>> = LazyLock::new(|| {
    let keys = repo().join("keys");
    let payload = enrollment_payload("4111111111111111", "Jane", "Doe", "jane@example.com", "+1 415 555 0100");
    [
        NotificationBuilder::rsa_from_dir(&keys).unwrap(),
        NotificationBuilder::shared_from_dir(&keys, false).unwrap(),
        NotificationBuilder::shared_from_dir(&keys, true).unwrap(),
    ]
    .iter()
    .map(|b| b.encrypted_data(&payload, SystemTime::now()).unwrap())
    .collect()
});

fn open(encrypted_data: &str) -> Result<(), Rejection> {
    let body = serde_json::json!({ "encryptedData": encrypted_data }).to_string();
    let raw = RawNotification::parse(TR, None, body.as_bytes(), &PAN_KEYS).map_err(|r| r.reason)?;
    let policy = ReplayPolicy { window: Duration::from_secs(3600), require_iat: true };
    raw.open(&RING, policy, SystemTime::now()).map(|_| ()).map_err(|r| r.reason)
}

#[test]
fn valid_envelopes_open() {
    for e in VALID.iter() {
        assert_eq!(open(e), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Change one character anywhere: never a panic, never accepted.
    #[test]
    fn any_single_character_change_is_rejected(which in 0usize..3, pos in any::<prop::sample::Index>(), c in prop::char::range('!', '~')) {
        let original = &VALID[which];
        let i = pos.index(original.len());
        prop_assume!(original.as_bytes()[i] != c as u8);
        let mut mutated = original.clone();
        mutated.replace_range(i..i + 1, &c.to_string());
        // Base64url's last character can carry unused bits: a change there may decode to
        // the same bytes and verify. Anything else must fail.
        if let Ok(()) = open(&mutated) {
            let segment_end = original[i..].find('.').map(|p| p + i).unwrap_or(original.len());
            prop_assert_eq!(i + 1, segment_end, "a change at {} was accepted", i);
        }
    }

    /// Cut anywhere, or splice segments from another envelope: rejected, no panic.
    #[test]
    fn truncation_and_splicing_are_rejected(a in 0usize..3, b in 0usize..3, cut in any::<prop::sample::Index>(), seg in 0usize..3) {
        let original = &VALID[a];
        let end = cut.index(original.len());
        prop_assert!(open(&original[..end]).is_err());
        if a != b {
            let mut parts: Vec<&str> = VALID[a].split('.').collect();
            let other: Vec<&str> = VALID[b].split('.').collect();
            // Identical segments (two modes share a JWS header) splice to the original.
            if parts[seg] != other[seg] {
                parts[seg] = other[seg];
                prop_assert!(open(&parts.join(".")).is_err());
            }
        }
    }

    /// Arbitrary text shaped like compact JOSE.
    #[test]
    fn arbitrary_dotted_text_is_rejected(parts in prop::collection::vec("[A-Za-z0-9_-]{0,64}", 1..8)) {
        prop_assert!(open(&parts.join(".")).is_err());
    }
}
