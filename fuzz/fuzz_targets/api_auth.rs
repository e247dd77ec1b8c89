//! The internal API's bearer tokens, `ApiAuth::verify`, against the development HS256
//! secret and the development RSA public key (RS256, kid `715EA257`), without and with a
//! required issuer and audience. The input is an `AuthCase`: the `Authorization` header as
//! is, or a JOSE header and payload that the target signs with the HS256 secret, so that
//! arbitrary claims reach the claim checks and the tenant scope.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ctp_issuer::auth::config::AuthConfig;
use ctp_issuer::auth::{ApiAuth, TenantScope};
use ctp_issuer_fuzz::{AuthCase, jwt_secret, keys_dir, now};
use josekit::jws::JwsSigner;
use libfuzzer_sys::fuzz_target;

fn verifiers() -> &'static [ApiAuth; 2] {
    static AUTH: OnceLock<[ApiAuth; 2]> = OnceLock::new();
    AUTH.get_or_init(|| {
        let open = AuthConfig {
            hs256_secret_file: Some(keys_dir().join("jwt/dev-hs256.secret")),
            public_keys_dir: Some(keys_dir().join("visa")),
            ..AuthConfig::default()
        };
        let strict = AuthConfig { issuer: Some("https://auth.bank.example".into()), audience: Some("ctp-issuer".into()), ..open.clone() };
        [ApiAuth::load(&open, &keys_dir()).expect("auth keys"), ApiAuth::load(&strict, &keys_dir()).expect("auth keys")]
    })
}

fn signer() -> &'static dyn JwsSigner {
    static SIGNER: OnceLock<Box<dyn JwsSigner>> = OnceLock::new();
    SIGNER.get_or_init(|| Box::new(josekit::jws::HS256.signer_from_bytes(jwt_secret().as_bytes()).expect("an HS256 key"))).as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let authorization = if flags & AuthCase::SIGN != 0 {
        let (header, payload) = match rest.iter().position(|b| *b == 0) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let signature = signer().sign(signing_input.as_bytes()).expect("HS256 signs anything");
        let scheme = if flags & AuthCase::LOWER_CASE != 0 { "bearer" } else { "Bearer" };
        format!("{scheme} {signing_input}.{}", B64URL.encode(signature))
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    for auth in verifiers() {
        if let Ok(caller) = auth.verify(Some(&authorization), now()) {
            match &caller.tenants {
                TenantScope::All => assert!(caller.may_act_for("ANY")),
                TenantScope::Only(list) => assert!(!list.is_empty() && list.iter().all(|t| caller.may_act_for(t))),
            }
        }
    }
});
