//! The inner JWE of a Visa notification, past the signature: the input is the JWS
//! payload, which the target signs (HS256, the development shared secret) and wraps in a
//! body, so that mutations of the JWE's header, key, IV, ciphertext and tag reach the JWE
//! checks, the replay window and the decrypters (A256GCMKW and RSA-OAEP-256) instead of
//! stopping at the signature as they do in the envelope targets.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ctp_issuer::visa::VisaKeyRing;
use ctp_issuer_fuzz::{check_notification, shared_secret, visa_ring};
use josekit::jws::JwsSigner;
use libfuzzer_sys::fuzz_target;

fn ring() -> &'static VisaKeyRing {
    static RING: OnceLock<VisaKeyRing> = OnceLock::new();
    RING.get_or_init(|| visa_ring(&["visa", "issuer", "shared"]))
}

/// The JWS header and signer Visa's shared-secret channel uses.
fn signer() -> &'static (String, Box<dyn JwsSigner>) {
    static SIGNER: OnceLock<(String, Box<dyn JwsSigner>)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let (secret, kid) = shared_secret();
        let header = format!(r#"{{"alg":"HS256","typ":"JOSE","kid":"{kid}","cty":"JWE"}}"#);
        let signer = josekit::jws::HS256.signer_from_bytes(secret.as_bytes()).expect("an HS256 key");
        (B64URL.encode(header), Box::new(signer))
    })
}

fuzz_target!(|jwe: &[u8]| {
    let (header, signer) = signer();
    let signing_input = format!("{header}.{}", B64URL.encode(jwe));
    let signature = signer.sign(signing_input.as_bytes()).expect("HS256 signs anything");
    let jws = format!("{signing_input}.{}", B64URL.encode(signature));
    let body = serde_json::json!({ "encryptedData": jws }).to_string();
    check_notification(body.as_bytes(), ring());
});
