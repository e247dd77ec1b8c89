//! A Visa notification body, RSA mode: `RawNotification::parse` then `open` with the
//! development Visa verification key (PS256) and issuer private key (RSA-OAEP-256). Every
//! input that keeps a valid signature pays for a PSS verification and an RSA decryption,
//! so this target is slow per execution; the body is the whole input.

#![no_main]

use std::sync::OnceLock;

use ctp_issuer::visa::VisaKeyRing;
use ctp_issuer_fuzz::{check_notification, visa_ring};
use libfuzzer_sys::fuzz_target;

fn ring() -> &'static VisaKeyRing {
    static RING: OnceLock<VisaKeyRing> = OnceLock::new();
    RING.get_or_init(|| visa_ring(&["visa", "issuer"]))
}

fuzz_target!(|body: &[u8]| check_notification(body, ring()));
