//! A Visa notification body, shared-secret mode: `RawNotification::parse` then `open`
//! with the development Visa verification key and shared secret (HS256 or PS256 JWS,
//! A256GCMKW JWE). The body is the whole input.

#![no_main]

use std::sync::OnceLock;

use ctp_issuer::visa::VisaKeyRing;
use ctp_issuer_fuzz::{check_notification, visa_ring};
use libfuzzer_sys::fuzz_target;

fn ring() -> &'static VisaKeyRing {
    static RING: OnceLock<VisaKeyRing> = OnceLock::new();
    RING.get_or_init(|| visa_ring(&["visa", "shared"]))
}

fuzz_target!(|body: &[u8]| check_notification(body, ring()));
