//! Visa's RSA signatures (PS256, PS384, PS512, RS256) verified with aws-lc-rs, behind
//! josekit's `JwsVerifier` trait so that josekit still does the JOSE parsing.
//!
//! Why not josekit's own RSA verifiers: they rebuild the key as an RSA-PSS
//! SubjectPublicKeyInfo and decode it with OpenSSL, and with OpenSSL 3.0 that decode
//! failed intermittently (about one load in thirty here) while other threads were using
//! OpenSSL — so a key reload under traffic could refuse a valid key. aws-lc-rs takes the
//! key as Visa gives it (SPKI, or a certificate's SPKI) and is the library the rest of the
//! service's crypto already uses.

use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters};
use josekit::JoseError;
use josekit::jws::{JwsAlgorithm, JwsVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};

/// A verifier for one RSA JWS algorithm and one key.
#[derive(Clone)]
pub struct RsaJwsVerifier {
    alg: &'static str,
    key: Arc<ParsedPublicKey>,
}

impl std::fmt::Debug for RsaJwsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaJwsVerifier").field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The RSA JWS algorithms this verifier handles, with aws-lc-rs's parameters. All
/// require keys of 2048 bits or more.
fn parameters(alg: &str) -> Option<(&'static str, &'static RsaParameters)> {
    match alg {
        "PS256" => Some(("PS256", &signature::RSA_PSS_2048_8192_SHA256)),
        "PS384" => Some(("PS384", &signature::RSA_PSS_2048_8192_SHA384)),
        "PS512" => Some(("PS512", &signature::RSA_PSS_2048_8192_SHA512)),
        "RS256" => Some(("RS256", &signature::RSA_PKCS1_2048_8192_SHA256)),
        _ => None,
    }
}

impl RsaJwsVerifier {
    /// A verifier for `alg` with the public key in `pem` (`PUBLIC KEY` or `CERTIFICATE`).
    pub fn from_pem(alg: &str, pem: &[u8]) -> Result<Self, String> {
        let (alg, params) = parameters(alg).ok_or_else(|| format!("{alg} is not an RSA JWS algorithm"))?;
        let spki = spki_from_pem(pem)?;
        let key = ParsedPublicKey::new(params, spki.as_ref()).map_err(|e| format!("not an RSA public key of 2048 to 8192 bits: {e}"))?;
        Ok(Self { alg, key: Arc::new(key) })
    }
}

/// The SubjectPublicKeyInfo of a `PUBLIC KEY` PEM, or of a `CERTIFICATE` PEM's subject.
pub fn spki_from_pem(pem: &[u8]) -> Result<SubjectPublicKeyInfoDer<'static>, String> {
    if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem) {
        return Ok(spki);
    }
    let cert = CertificateDer::from_pem_slice(pem).map_err(|_| "neither a PUBLIC KEY nor a CERTIFICATE PEM".to_owned())?;
    let parsed = webpki::EndEntityCert::try_from(&cert).map_err(|e| format!("not a readable X.509 certificate: {e}"))?;
    Ok(parsed.subject_public_key_info())
}

impl JwsVerifier for RsaJwsVerifier {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        match self.alg {
            "PS256" => &josekit::jws::PS256,
            "PS384" => &josekit::jws::PS384,
            "PS512" => &josekit::jws::PS512,
            _ => &josekit::jws::RS256,
        }
    }

    fn key_id(&self) -> Option<&str> {
        None
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        self.key.verify_sig(message, signature).map_err(|_| JoseError::InvalidSignature(anyhow::anyhow!("signature does not verify")))
    }

    fn box_clone(&self) -> Box<dyn JwsVerifier> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_key() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/visa/715EA257.pem")).unwrap()
    }

    #[test]
    fn loads_public_keys_and_refuses_other_pem() {
        for alg in ["PS256", "PS384", "PS512", "RS256"] {
            RsaJwsVerifier::from_pem(alg, &repo_key()).unwrap();
        }
        assert!(RsaJwsVerifier::from_pem("HS256", &repo_key()).is_err());
        assert!(RsaJwsVerifier::from_pem("PS256", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
        assert!(RsaJwsVerifier::from_pem("PS256", b"not pem at all").is_err());
    }

    #[test]
    fn verifies_what_josekit_and_openssl_signed() {
        let private = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/sim/visa/715EA257.pem")).unwrap();
        let pkcs1 = openssl::rsa::Rsa::private_key_from_pem(&private).unwrap().private_key_to_der().unwrap();
        let signer = josekit::jws::PS256.signer_from_der(pkcs1).unwrap();
        use josekit::jws::JwsSigner;
        let sig = signer.sign(b"message").unwrap();
        let verifier = RsaJwsVerifier::from_pem("PS256", &repo_key()).unwrap();
        assert!(verifier.verify(b"message", &sig).is_ok());
        assert!(verifier.verify(b"messagf", &sig).is_err());
    }
}
