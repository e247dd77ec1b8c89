//! Internal API tokens as a deployment configures them (`deploy/`): RS256 and ES256 keys
//! from a JWKS file (`auth.jwks_file`) or from a directory of PEM files
//! (`auth.public_keys_dir`, `<kid>.pem`, a public key or a certificate), with the issuer
//! and the audience enforced (`auth.issuer`, `auth.audience`), and no HS256 secret.
//!
//! Keys are generated here and tokens signed here with OpenSSL, from the JWS definition
//! (RS256: RSASSA-PKCS1-v1_5 with SHA-256; ES256: ECDSA P-256 with SHA-256, `r ‖ s`), not
//! with the JOSE library the service verifies them with.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use http::{Method, StatusCode};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Value, json};

use crate::support::cards::self_signed;
use crate::support::http::{Reply, request};
use crate::support::{TestDb, TestServer, dev_keys};

const ISSUER: &str = "https://idp.bank.example";
const AUDIENCE: &str = "ctp-issuer";
const TENANT: &str = "DEMOBANK";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A signing key of the identity provider.
struct Key {
    kid: String,
    pkey: PKey<Private>,
}

impl Key {
    fn rsa(kid: &str) -> Self {
        Self { kid: kid.into(), pkey: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap() }
    }

    fn ec(kid: &str) -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        Self { kid: kid.into(), pkey: PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap() }
    }

    fn alg(&self) -> &'static str {
        if self.pkey.rsa().is_ok() { "RS256" } else { "ES256" }
    }

    /// The public key as a JWK.
    fn jwk(&self) -> Value {
        if let Ok(rsa) = self.pkey.rsa() {
            json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                   "n": B64URL.encode(rsa.n().to_vec()), "e": B64URL.encode(rsa.e().to_vec())})
        } else {
            let ec = self.pkey.ec_key().unwrap();
            let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
            ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut BigNumContext::new().unwrap()).unwrap();
            json!({"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                   "x": B64URL.encode(x.to_vec_padded(32).unwrap()), "y": B64URL.encode(y.to_vec_padded(32).unwrap())})
        }
    }

    /// A compact JWS of `claims`, with `alg` and `kid` in its header as given.
    fn sign_as(&self, alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey).unwrap();
        signer.update(input.as_bytes()).unwrap();
        let der = signer.sign_to_vec().unwrap();
        let signature = if self.pkey.rsa().is_ok() {
            der
        } else {
            let sig = EcdsaSig::from_der(&der).unwrap();
            [sig.r().to_vec_padded(32).unwrap(), sig.s().to_vec_padded(32).unwrap()].concat()
        };
        format!("{input}.{}", B64URL.encode(signature))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg(), &self.kid, claims)
    }
}

/// Claims a deployment's identity provider would issue for `tenants`.
fn claims(tenants: &[&str]) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "payments-service", "iat": now(), "exp": now() + 600, "tenants": tenants})
}

/// `claims` with `key` set to `value` (`null`: removed).
fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

/// The development keys without the development HS256 secret: as deployed, only the
/// configured asymmetric keys verify tokens.
fn keys_without_hs256() -> tempfile::TempDir {
    let keys = dev_keys();
    std::fs::remove_file(keys.path().join("jwt/dev-hs256.secret")).unwrap();
    keys
}

async fn call(server: &TestServer, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    request(server.internal, Method::GET, "/registry/v1/entities/NOPE", &[("authorization", &auth), ("tenant", TENANT)], "").await
}

/// Tokens of `rsa` and `ec` (the keys the server trusts) pass, everything else is 401 Y102
/// (or 403 Y103 for a tenant the token does not name).
async fn check(server: &TestServer, rsa: &Key, ec: &Key) {
    // Past the gate: the entity does not exist.
    for (what, token) in [
        ("RS256", rsa.sign(&claims(&[TENANT]))),
        ("ES256", ec.sign(&claims(&[TENANT]))),
        ("an audience list naming ours", rsa.sign(&with(claims(&[TENANT]), "aud", json!(["another-api", AUDIENCE])))),
        ("a tenant claim", ec.sign(&with(with(claims(&[]), "tenants", Value::Null), "tenant", json!(TENANT)))),
    ] {
        let reply = call(server, &token).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "Y104".into()), "{what}: {}", reply.text());
    }
    // A write goes through too.
    let auth = format!("Bearer {}", ec.sign(&claims(&[TENANT])));
    let reply = request(
        server.internal,
        Method::PUT,
        "/registry/v1/entities/E1",
        &[("authorization", &auth), ("tenant", TENANT)],
        json!({"firstName": "Ana"}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());

    let stranger = Key::rsa(&rsa.kid);
    let hs256 = ctp_issuer::auth::mint_token(
        &crate::support::repo().join("keys/jwt/dev-hs256.secret"),
        &[TENANT.to_owned()],
        "dev",
        std::time::Duration::from_secs(600),
    )
    .unwrap();
    let unsigned = {
        let token = rsa.sign(&claims(&[TENANT]));
        let payload = token.split('.').nth(1).unwrap().to_owned();
        format!("{}.{payload}.", B64URL.encode(json!({"alg": "none", "typ": "JWT", "kid": rsa.kid}).to_string()))
    };
    let refused = [
        ("another issuer", rsa.sign(&with(claims(&[TENANT]), "iss", json!("https://idp.evil.example")))),
        ("no issuer", rsa.sign(&with(claims(&[TENANT]), "iss", Value::Null))),
        ("another audience", ec.sign(&with(claims(&[TENANT]), "aud", json!("another-api")))),
        ("no audience", ec.sign(&with(claims(&[TENANT]), "aud", Value::Null))),
        ("expired an hour ago", rsa.sign(&with(claims(&[TENANT]), "exp", json!(now() - 3600)))),
        ("no expiry", ec.sign(&with(claims(&[TENANT]), "exp", Value::Null))),
        ("a kid nobody knows", rsa.sign_as("RS256", "rsa-unknown", &claims(&[TENANT]))),
        ("the RSA kid with ES256", ec.sign_as("ES256", &rsa.kid, &claims(&[TENANT]))),
        ("another key under a trusted kid", stranger.sign(&claims(&[TENANT]))),
        ("alg none", unsigned),
        ("the development HS256 secret", hs256),
        ("no tenant", rsa.sign(&with(claims(&[]), "tenants", Value::Null))),
    ];
    for (what, token) in refused {
        let reply = call(server, &token).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "Y102".into()), "{what}: {}", reply.text());
    }
    let reply = call(server, &rsa.sign(&claims(&["OTHERBANK"]))).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "Y103".into()), "a token for another tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_from_a_jwks_file_with_issuer_and_audience() {
    let db = TestDb::sqlite();
    let (rsa, ec) = (Key::rsa("rsa-1"), Key::ec("ec-1"));
    let idp = tempfile::tempdir().unwrap();
    let jwks = idp.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [rsa.jwk(), ec.jwk()]}).to_string()).unwrap();
    let server = TestServer::start_with_keys(&db, keys_without_hs256(), |c| {
        c.auth.jwks_file = Some(jwks.clone());
        c.auth.issuer = Some(ISSUER.into());
        c.auth.audience = Some(AUDIENCE.into());
    })
    .await;
    check(&server, &rsa, &ec).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_from_a_keys_directory_with_issuer_and_audience() {
    let db = TestDb::sqlite();
    let (rsa, ec) = (Key::rsa("rsa-2"), Key::ec("ec-2"));
    let dir = tempfile::tempdir().unwrap();
    // The RSA key as a certificate, the EC key as a bare public key.
    std::fs::write(dir.path().join("rsa-2.pem"), self_signed(&rsa.pkey)).unwrap();
    std::fs::write(dir.path().join("ec-2.pem"), ec.pkey.public_key_to_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a key: ignored").unwrap();
    let server = TestServer::start_with_keys(&db, keys_without_hs256(), |c| {
        c.auth.public_keys_dir = Some(dir.path().to_owned());
        c.auth.issuer = Some(ISSUER.into());
        c.auth.audience = Some(AUDIENCE.into());
    })
    .await;
    check(&server, &rsa, &ec).await;
    server.stop().await;
}
