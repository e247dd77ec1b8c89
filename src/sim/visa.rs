//! Builds notifications the way Visa does, for `ctp-issuer visa send`, the tests and the
//! benchmarks: a compact JWE of the payload, wrapped in a compact JWS.
//!
//! It needs the other side's keys: Visa's private signing key (`KEYS_DIR/sim/visa/<kid>.pem`
//! in the development layout) and the issuer's public key (derived from
//! `KEYS_DIR/issuer/<kid>.pem`) or the shared secret. Production never loads this module's
//! keys; they exist only under `keys/`, which holds development keys.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use josekit::jwe::{JweEncrypter, JweHeader};
use josekit::jws::{JwsHeader, JwsSigner};
use serde_json::{Value, json};

/// How `iat` is written in the JWE header; Visa has been seen using all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IatForm {
    StringSeconds,
    IntegerSeconds,
    IntegerMillis,
}

/// Content encryption of the JWE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentEncryption {
    A256gcm,
    A128gcm,
}

impl ContentEncryption {
    fn name(self) -> &'static str {
        match self {
            Self::A256gcm => "A256GCM",
            Self::A128gcm => "A128GCM",
        }
    }
}

/// A ready-to-use sender of one kind of notification.
pub struct NotificationBuilder {
    signer: Box<dyn JwsSigner>,
    signer_kid: String,
    encrypter: Box<dyn JweEncrypter>,
    encrypter_kid: String,
    channel: &'static str,
    pub enc: ContentEncryption,
    pub iat_form: IatForm,
}

impl NotificationBuilder {
    /// RSA PKI mode: PS256 by Visa's private key, RSA-OAEP-256 to the issuer's public key.
    pub fn rsa(visa_private_pem: &[u8], visa_kid: &str, issuer_public_pem: &[u8], issuer_kid: &str) -> anyhow::Result<Self> {
        Ok(Self {
            signer: Box::new(ps256_signer(visa_private_pem)?),
            signer_kid: visa_kid.into(),
            encrypter: Box::new(josekit::jwe::RSA_OAEP_256.encrypter_from_pem(issuer_public_pem)?),
            encrypter_kid: issuer_kid.into(),
            channel: "RSA_PKI",
            enc: ContentEncryption::A256gcm,
            iat_form: IatForm::StringSeconds,
        })
    }

    /// Shared-secret mode: A256GCMKW with SHA-256 of the secret. The JWS is PS256 by Visa's
    /// key when one is given, else HS256 by the secret itself.
    pub fn shared_secret(secret: &str, secret_kid: &str, visa_signer: Option<(&[u8], &str)>) -> anyhow::Result<Self> {
        let kek = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let (signer, signer_kid): (Box<dyn JwsSigner>, String) = match visa_signer {
            Some((pem, kid)) => (Box::new(ps256_signer(pem)?), kid.into()),
            None => (Box::new(josekit::jws::HS256.signer_from_bytes(secret.as_bytes())?), secret_kid.into()),
        };
        Ok(Self {
            signer,
            signer_kid,
            encrypter: Box::new(josekit::jwe::A256GCMKW.encrypter_from_bytes(kek.as_ref())?),
            encrypter_kid: secret_kid.into(),
            channel: "SHARED_SECRET",
            enc: ContentEncryption::A256gcm,
            iat_form: IatForm::IntegerSeconds,
        })
    }

    /// RSA mode from the development layout: the first (sorted) `sim/visa/*.pem` and
    /// `issuer/*.pem` under `keys_dir`.
    pub fn rsa_from_dir(keys_dir: &Path) -> anyhow::Result<Self> {
        let (visa_kid, visa_pem) = first_file(&keys_dir.join("sim/visa"), "pem")?;
        let (issuer_kid, issuer_pem) = first_file(&keys_dir.join("issuer"), "pem")?;
        let issuer_public = openssl::pkey::PKey::private_key_from_pem(&issuer_pem)?.public_key_to_pem()?;
        Self::rsa(&visa_pem, &visa_kid, &issuer_public, &issuer_kid)
    }

    /// Shared-secret mode from the development layout: the first `shared/*.secret`, with
    /// an HS256 JWS (`hs256`) or a PS256 one by the first `sim/visa/*.pem`.
    pub fn shared_from_dir(keys_dir: &Path, hs256: bool) -> anyhow::Result<Self> {
        let (kid, secret) = first_file(&keys_dir.join("shared"), "secret")?;
        let secret = String::from_utf8(secret)?;
        let secret = secret.trim_end_matches(['\r', '\n']);
        if hs256 {
            Self::shared_secret(secret, &kid, None)
        } else {
            let (visa_kid, visa_pem) = first_file(&keys_dir.join("sim/visa"), "pem")?;
            Self::shared_secret(secret, &kid, Some((&visa_pem, &visa_kid)))
        }
    }

    /// The `encryptedData` value for `payload`, stamped with `iat`.
    pub fn encrypted_data(&self, payload: &Value, iat: SystemTime) -> anyhow::Result<String> {
        let since = iat.duration_since(UNIX_EPOCH)?;
        let iat_value = match self.iat_form {
            IatForm::StringSeconds => json!(since.as_secs().to_string()),
            IatForm::IntegerSeconds => json!(since.as_secs()),
            IatForm::IntegerMillis => json!(since.as_millis() as u64),
        };
        let mut jwe_header = JweHeader::new();
        jwe_header.set_content_encryption(self.enc.name());
        jwe_header.set_key_id(&self.encrypter_kid);
        jwe_header.set_claim("iat", Some(iat_value))?;
        jwe_header.set_claim("channelSecurityContext", Some(json!(self.channel)))?;
        let jwe = josekit::jwe::serialize_compact(payload.to_string().as_bytes(), &jwe_header, self.encrypter.as_ref())?;

        let mut jws_header = JwsHeader::new();
        jws_header.set_token_type("JOSE");
        jws_header.set_key_id(&self.signer_kid);
        jws_header.set_content_type("JWE");
        Ok(josekit::jws::serialize_compact(jwe.as_bytes(), &jws_header, self.signer.as_ref())?)
    }

    /// The HTTP body Visa posts: `{"encryptedData": …}`.
    pub fn body(&self, payload: &Value, iat: SystemTime) -> anyhow::Result<String> {
        Ok(json!({ "encryptedData": self.encrypted_data(payload, iat)? }).to_string())
    }
}

/// A `CTP_ENROLLMENT_ATTEMPT` payload, as Visa's notification documentation shapes it, for a card number and a consumer.
pub fn enrollment_payload(account_number: &str, first_name: &str, last_name: &str, email: &str, phone: &str) -> Value {
    json!({
        "clientInformation": {
            "firstName": first_name,
            "lastName": last_name,
            "phoneNumber": phone,
            "contactEmail": email,
        },
        "enrollment": {
            "tsp": "V",
            "paymentInstrument": { "accountNumber": account_number },
        },
    })
}

/// The path Visa posts to.
pub fn notification_path(token_requestor_id: &str) -> String {
    format!("/vtis/v1/tokenRequestors/{token_requestor_id}/cardEnrollment/notification?eventType={}", crate::visa::ENROLLMENT_ATTEMPT)
}

/// josekit reads PS256 keys only as RSA-PSS PKCS#8 or PKCS#1; ours are plain PKCS#8.
fn ps256_signer(private_pem: &[u8]) -> anyhow::Result<josekit::jws::alg::rsassa_pss::RsassaPssJwsSigner> {
    let pkcs1 = openssl::rsa::Rsa::private_key_from_pem(private_pem)?.private_key_to_der()?;
    Ok(josekit::jws::PS256.signer_from_der(pkcs1)?)
}

fn first_file(dir: &Path, ext: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    let path = files.first().ok_or_else(|| anyhow::anyhow!("no *.{ext} file in {}", dir.display()))?;
    let kid = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    Ok((kid, std::fs::read(path)?))
}
