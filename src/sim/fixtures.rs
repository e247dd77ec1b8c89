//! Fresh material for a server under test and for the tests: a key directory with every
//! key new, distinct Luhn-valid test cards, a kits CSV, and notifications built the way
//! Visa builds them (by [`super::visa::NotificationBuilder`]). Nothing here prints a card
//! number: a [`TestCard`] prints masked, as a `Pan` does.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, bail};

use super::visa::{NotificationBuilder, enrollment_payload};
use crate::pan::Pan;

/// Upper bound on the cards of one prepared directory.
pub const MAX_CARDS: usize = 1_000_000;
/// The tenant of the generated kits and of `bench enroll`'s customers.
pub const TENANT: &str = "BENCH";
/// The token requestor the bodies are posted for.
pub const TOKEN_REQUESTOR_ID: &str = "40010030273";

/// The two Visa key modes (and the shared-secret variant signed by Visa's RSA key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// JWS PS256 by Visa's key, JWE RSA-OAEP-256 to the issuer's key.
    Rsa,
    /// JWS PS256 by Visa's key, JWE A256GCMKW with the shared secret.
    Shared,
    /// JWS HS256 and JWE A256GCMKW, both with the shared secret (no RSA at all).
    SharedHs256,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Shared => "shared",
            Self::SharedHs256 => "shared-hs256",
        }
    }

    /// A builder for this mode from a directory laid out by [`FreshKeys::write`].
    pub fn builder(self, keys_dir: &Path) -> anyhow::Result<NotificationBuilder> {
        match self {
            Self::Rsa => NotificationBuilder::rsa_from_dir(keys_dir),
            Self::Shared => NotificationBuilder::shared_from_dir(keys_dir, false),
            Self::SharedHs256 => NotificationBuilder::shared_from_dir(keys_dir, true),
        }
    }
}

/// The kids of a freshly written key directory.
#[derive(Debug, Clone)]
pub struct FreshKeys {
    pub visa_kid: String,
    pub issuer_kid: String,
    pub shared_kid: String,
}

impl FreshKeys {
    /// Writes a complete key directory in the layout of `keys/README.md`, every key new:
    /// Visa's RSA-2048 pair (public half under `visa/`, private half under `sim/visa/` for
    /// the sender), the issuer's RSA-2048 private key, a shared secret and the two
    /// card-number keys (version v1), a SaaS callback secret (the service requires one) and
    /// an HS256 secret for internal API tokens at `jwt/dev-hs256.secret` (where `serve` and
    /// `token` look by default, so that `bench enroll` can authenticate).
    /// Anything in `dir` from before is removed first.
    pub fn write(dir: &Path) -> anyhow::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        for sub in ["visa", "issuer", "shared", "pan", "sim/visa", "saas", "jwt"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let keys = Self {
            visa_kid: random_hex(4).to_uppercase(),
            issuer_kid: format!("bench-issuer-{}", random_hex(4)),
            shared_kid: format!("bench-shared-{}", random_hex(4)),
        };
        let visa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
        write_private(&dir.join(format!("sim/visa/{}.pem", keys.visa_kid)), &visa.private_key_to_pem_pkcs8()?)?;
        std::fs::write(dir.join(format!("visa/{}.pem", keys.visa_kid)), visa.public_key_to_pem()?)?;
        let issuer = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
        write_private(&dir.join(format!("issuer/{}.pem", keys.issuer_kid)), &issuer.private_key_to_pem_pkcs8()?)?;
        write_private(&dir.join(format!("shared/{}.secret", keys.shared_kid)), random_hex(32).as_bytes())?;
        write_private(&dir.join("pan/fingerprint-v1.key"), random_hex(32).as_bytes())?;
        write_private(&dir.join("pan/encryption-v1.key"), random_hex(32).as_bytes())?;
        // The service will not start without a Click to Pay SaaS callback secret.
        let mut webhook = [0u8; 32];
        aws_lc_rs::rand::fill(&mut webhook).expect("system random source");
        let webhook = format!("whsec_{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, webhook));
        write_private(&dir.join("saas/webhook-bench.secret"), webhook.as_bytes())?;
        write_private(&crate::auth::dev_secret_path(dir), random_hex(32).as_bytes())?;
        Ok(keys)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    Ok(())
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("system random source");
    hex::encode(buf)
}

/// A generated test card number. Like [`Pan`] it prints masked; unlike it, it hands its
/// digits out, because writing them into the kits CSV and the payloads is its purpose.
#[derive(Clone)]
pub struct TestCard(zeroize::Zeroizing<String>);

impl TestCard {
    /// Checks `digits` the way the service does.
    pub fn parse(digits: &str) -> Result<Self, crate::pan::PanError> {
        Pan::parse(digits).map(|_| Self(zeroize::Zeroizing::new(digits.to_owned())))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TestCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestCard(****{})", &self.0[self.0.len() - 4..])
    }
}

/// `n` distinct, random, Luhn-valid 16-digit Visa-range card numbers.
pub fn fresh_cards(n: usize) -> Vec<TestCard> {
    let mut seen = HashSet::with_capacity(n);
    let mut cards = Vec::with_capacity(n);
    let mut random = [0u8; 14];
    while cards.len() < n {
        aws_lc_rs::rand::fill(&mut random).expect("system random source");
        let mut digits = String::with_capacity(16);
        digits.push('4');
        digits.extend(random.iter().map(|b| char::from(b'0' + b % 10)));
        digits.push(char::from(b'0' + luhn_check_digit(digits.as_bytes())));
        let card = TestCard::parse(&digits).expect("a generated number passes its own Luhn check");
        if seen.insert(digits) {
            cards.push(card);
        }
    }
    cards
}

/// The digit that makes `payload` followed by it pass the Luhn check.
fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Writes `cards` fresh kits (tenant [`TENANT`]) as a CSV `kits import` reads.
pub fn write_kits_csv(path: &Path, cards: usize) -> anyhow::Result<usize> {
    if cards == 0 || cards > MAX_CARDS {
        bail!("--cards must be 1 to {MAX_CARDS}");
    }
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "tenant,entity_id,kit_no,pan,first_name,last_name,email,phone")?;
    for (i, pan) in fresh_cards(cards).iter().enumerate() {
        writeln!(
            out,
            "{TENANT},bench-entity-{i},{},{},Bench,Consumer,bench{i}@example.com,+1 415 555 0100",
            100_000_000 + i,
            pan.digits()
        )?;
    }
    out.flush()?;
    Ok(cards)
}

/// The card numbers of a kits CSV written by [`write_kits_csv`].
pub fn read_cards(path: &Path) -> anyhow::Result<Vec<TestCard>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let column = reader.headers()?.iter().position(|h| h == "pan").with_context(|| format!("{}: no pan column", path.display()))?;
    let mut cards = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|_| anyhow::anyhow!("{}: malformed CSV", path.display()))?;
        let card = TestCard::parse(record.get(column).unwrap_or("")).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cards.push(card);
    }
    if cards.is_empty() {
        bail!("{}: no cards", path.display());
    }
    Ok(cards)
}

/// Builds `count` distinct notification bodies for `mode`, card `i % cards.len()` in the
/// `i`-th, spread over every core. The JWE's random key and IV make each one unique even
/// for the same card; uniqueness is still checked.
pub fn build_bodies(keys_dir: &Path, mode: Mode, cards: &[TestCard], first: usize, count: usize) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count.max(1));
    let per = count.div_ceil(threads.max(1));
    let chunks: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * per).min(count)..((t + 1) * per).min(count);
                s.spawn(move || -> anyhow::Result<Vec<String>> {
                    let builder = mode.builder(keys_dir)?;
                    let mut out = Vec::with_capacity(range.len());
                    for i in range {
                        let n = first + i;
                        let card = &cards[n % cards.len()];
                        let payload =
                            enrollment_payload(card.digits(), "Bench", "Consumer", &format!("n{n}@example.com"), "+1 415 555 0100");
                        out.push(builder.body(&payload, SystemTime::now())?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("builder thread panicked")))).collect()
    });
    let mut bodies = Vec::with_capacity(count);
    for chunk in chunks {
        bodies.extend(chunk?);
    }
    Ok(bodies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn generated_cards_are_distinct_and_valid() {
        let cards = fresh_cards(500);
        let distinct: HashSet<String> = cards.iter().map(|c| c.digits().to_owned()).collect();
        assert_eq!(distinct.len(), 500);
        assert!(cards.iter().all(|c| Pan::parse(c.digits()).is_ok()));
        assert!(!format!("{:?}", cards[0]).contains(&cards[0].digits()[..12]));
    }

    #[test]
    fn fresh_keys_and_bodies_are_accepted_by_the_key_ring() {
        let dir = tempfile::tempdir().unwrap();
        let keys = FreshKeys::write(&dir.path().join("keys")).unwrap();
        write_kits_csv(&dir.path().join("kits.csv"), 3).unwrap();
        let ring = crate::visa::VisaKeyRing::load(&dir.path().join("keys"), &["PS256".into(), "HS256".into()]).unwrap();
        assert!(ring.verifier(&keys.visa_kid, "PS256").is_some());
        let cards = read_cards(&dir.path().join("kits.csv")).unwrap();
        let bodies = build_bodies(&dir.path().join("keys"), Mode::SharedHs256, &cards, 0, 4).unwrap();
        let keys = crate::pan::PanKeys::load(&dir.path().join("keys"), "v1", "v1").unwrap();
        let policy = crate::visa::ReplayPolicy { window: Duration::from_secs(300), require_iat: true };
        for body in &bodies {
            let raw = crate::visa::RawNotification::parse(TOKEN_REQUESTOR_ID, None, body.as_bytes(), &keys).unwrap();
            raw.open(&ring, policy, SystemTime::now()).unwrap();
        }
    }

    #[test]
    fn fresh_keys_carry_an_internal_api_token_secret() {
        let dir = tempfile::tempdir().unwrap();
        FreshKeys::write(dir.path()).unwrap();
        let auth = crate::auth::ApiAuth::load(&crate::config::AuthConfig::default(), dir.path()).unwrap();
        let secret = crate::auth::dev_secret_path(dir.path());
        let token = crate::auth::mint_token(&secret, &[TENANT.into()], "bench", Duration::from_secs(60)).unwrap();
        let caller = auth.verify(Some(&format!("Bearer {token}")), SystemTime::now()).unwrap();
        assert!(caller.may_act_for(TENANT));
    }
}
