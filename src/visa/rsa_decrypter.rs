//! The RSA-OAEP-256 key unwrap of Visa's JWE done with aws-lc-rs, behind josekit's
//! `JweDecrypter` trait so that josekit still does the JOSE parsing and the content
//! decryption (AES-GCM).
//!
//! Why not josekit's own RSA-OAEP-256 decrypter: it calls OpenSSL 3's `EVP_PKEY` API,
//! which fetches the algorithm, builds a fresh context and sets up the OAEP digests on
//! every call — measured at about 120 µs of CPU around a 250 µs modular exponentiation
//! (BENCHMARKS.md). aws-lc-rs parses the key once, here, and its decrypt is the modular
//! exponentiation plus the OAEP padding check. It is also the library the verifier
//! (`rsa_verifier`) and the rest of the service's crypto already use.

use std::borrow::Cow;
use std::sync::Arc;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use josekit::JoseError;
use josekit::jwe::{JweContentEncryption, JweDecrypter, JweHeader};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

/// Smallest issuer key accepted, as josekit and Visa require.
const MIN_KEY_BITS: usize = 2048;

/// An RSA-OAEP-256 (SHA-256, MGF1 with SHA-256, no label) decrypter for one issuer key.
#[derive(Clone)]
pub struct RsaOaepDecrypter {
    key: Arc<OaepPrivateDecryptingKey>,
}

impl std::fmt::Debug for RsaOaepDecrypter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaOaepDecrypter").field("bits", &self.key.key_size_bits()).finish_non_exhaustive()
    }
}

impl RsaOaepDecrypter {
    /// A decrypter for the RSA private key in `pem`: PKCS#8 (`PRIVATE KEY`, what
    /// `openssl genpkey` writes) or PKCS#1 (`RSA PRIVATE KEY`), 2048 bits or more.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let pkcs8 = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => Zeroizing::new(der.secret_pkcs8_der().to_vec()),
            Ok(PrivateKeyDer::Pkcs1(der)) => pkcs1_to_pkcs8(der.secret_pkcs1_der())?,
            Ok(_) => return Err("not an RSA private key (PKCS#8 or PKCS#1 PEM expected)".into()),
            Err(_) => return Err("no PRIVATE KEY or RSA PRIVATE KEY PEM block".into()),
        };
        let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|e| format!("not a usable RSA private key: {e}"))?;
        if key.key_size_bits() < MIN_KEY_BITS {
            return Err(format!("RSA key of {} bits; at least {MIN_KEY_BITS} are required", key.key_size_bits()));
        }
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| "not usable for RSA-OAEP".to_owned())?;
        Ok(Self { key: Arc::new(key) })
    }

    /// The content-encryption key wrapped in `encrypted_key`.
    pub fn unwrap_key(&self, encrypted_key: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyUnwrapError> {
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let len = self.key.decrypt(&OAEP_SHA256_MGF1SHA256, encrypted_key, &mut out, None).map_err(|_| KeyUnwrapError)?.len();
        out.truncate(len);
        Ok(out)
    }
}

/// The encrypted key does not decrypt with this key (wrong key, or tampered): nothing more
/// is said, so that the answer cannot serve as a padding oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the encrypted key does not decrypt")]
pub struct KeyUnwrapError;

/// PKCS#1 `RSAPrivateKey` DER re-wrapped as PKCS#8, the one form aws-lc-rs reads. Load
/// time only.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let rsa = openssl::rsa::Rsa::private_key_from_der(pkcs1).map_err(|_| "unreadable RSA PRIVATE KEY".to_owned())?;
    let pkey = openssl::pkey::PKey::from_rsa(rsa).map_err(|_| "unreadable RSA PRIVATE KEY".to_owned())?;
    pkey.private_key_to_pkcs8().map(Zeroizing::new).map_err(|_| "unreadable RSA PRIVATE KEY".to_owned())
}

impl JweDecrypter for RsaOaepDecrypter {
    fn algorithm(&self) -> &dyn josekit::jwe::JweAlgorithm {
        &josekit::jwe::RSA_OAEP_256
    }

    fn key_id(&self) -> Option<&str> {
        None
    }

    fn decrypt(
        &self,
        encrypted_key: Option<&[u8]>,
        cencryption: &dyn JweContentEncryption,
        _header: &JweHeader,
    ) -> Result<Cow<'_, [u8]>, JoseError> {
        let invalid = |why: &'static str| JoseError::InvalidJweFormat(anyhow::anyhow!(why));
        let encrypted_key = encrypted_key.ok_or_else(|| invalid("an encrypted key is required"))?;
        let cek = self.unwrap_key(encrypted_key).map_err(|_| invalid("the encrypted key does not decrypt"))?;
        // josekit checks the length too, but only after using the key; a wrong-length CEK
        // is a malformed JWE, not a key to try.
        if cek.len() != cencryption.key_len() {
            return Err(invalid("the content-encryption key has the wrong length"));
        }
        Ok(Cow::Owned(cek.to_vec()))
    }

    fn box_clone(&self) -> Box<dyn JweDecrypter> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jwe::{JweEncrypter, JweHeader};

    fn issuer_pem() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/issuer/issuer-dev-1.pem")).unwrap()
    }

    fn encrypt(plaintext: &[u8], enc: &str) -> String {
        let private = openssl::pkey::PKey::private_key_from_pem(&issuer_pem()).unwrap();
        let public_pem = private.public_key_to_pem().unwrap();
        let encrypter = josekit::jwe::RSA_OAEP_256.encrypter_from_pem(public_pem).unwrap();
        let mut header = JweHeader::new();
        header.set_content_encryption(enc);
        let _: &dyn JweEncrypter = &encrypter;
        josekit::jwe::serialize_compact(plaintext, &header, &encrypter).unwrap()
    }

    /// Differential: what josekit (OpenSSL) encrypts, this decrypts, for both content
    /// encryptions, and josekit's own decrypter agrees.
    #[test]
    fn decrypts_what_josekit_encrypts() {
        let ours = RsaOaepDecrypter::from_pem(&issuer_pem()).unwrap();
        let theirs = josekit::jwe::RSA_OAEP_256.decrypter_from_pem(issuer_pem()).unwrap();
        for enc in ["A256GCM", "A128GCM"] {
            let jwe = encrypt(b"{\"hello\":\"world\"}", enc);
            let (plain, _) = josekit::jwe::deserialize_compact(&jwe, &ours).unwrap();
            assert_eq!(plain, b"{\"hello\":\"world\"}");
            assert_eq!(josekit::jwe::deserialize_compact(&jwe, &theirs).unwrap().0, plain);
        }
    }

    #[test]
    fn refuses_a_tampered_key_or_ciphertext() {
        let ours = RsaOaepDecrypter::from_pem(&issuer_pem()).unwrap();
        let jwe = encrypt(b"payload", "A256GCM");
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let flip = |segment: &str| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut bytes = b64.decode(segment).unwrap();
            bytes[0] ^= 1;
            b64.encode(bytes)
        };
        let original = parts[1].clone();
        parts[1] = flip(&original);
        assert!(josekit::jwe::deserialize_compact(&parts.join("."), &ours).is_err());
        parts[1] = original;
        parts[3] = flip(&parts[3]);
        assert!(josekit::jwe::deserialize_compact(&parts.join("."), &ours).is_err());
        assert!(ours.unwrap_key(&[0u8; 256]).is_err());
        assert!(ours.unwrap_key(b"short").is_err());
    }

    #[test]
    fn reads_pkcs1_and_refuses_small_or_non_rsa_keys() {
        let private = openssl::pkey::PKey::private_key_from_pem(&issuer_pem()).unwrap();
        let pkcs1 = private.rsa().unwrap().private_key_to_pem().unwrap();
        assert!(std::str::from_utf8(&pkcs1).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        RsaOaepDecrypter::from_pem(&pkcs1).unwrap();

        let small = openssl::rsa::Rsa::generate(1024).unwrap();
        let small = openssl::pkey::PKey::from_rsa(small).unwrap().private_key_to_pem_pkcs8().unwrap();
        assert!(RsaOaepDecrypter::from_pem(&small).is_err(), "a 1024-bit key is refused");

        let ec =
            openssl::ec::EcKey::generate(&openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap()).unwrap();
        let ec = openssl::pkey::PKey::from_ec_key(ec).unwrap().private_key_to_pem_pkcs8().unwrap();
        assert!(RsaOaepDecrypter::from_pem(&ec).is_err());
        assert!(RsaOaepDecrypter::from_pem(b"nothing").is_err());
        let public = private.public_key_to_pem().unwrap();
        assert!(RsaOaepDecrypter::from_pem(&public).is_err());
    }
}
