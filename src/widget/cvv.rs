//! The CVV2 printed on the back of a card, computed the way Visa's CVV algorithm does.
//!
//! Cards do not store their CVV2 anywhere (PCI DSS forbids keeping it after
//! authorisation), so to show it the issuer computes it again from the card number, the
//! expiry date and the card verification key (CVK):
//!
//! 1. Concatenate the card number, the expiry as `YYMM` and the service code (`000` for
//!    CVV2), and pad on the right with `0` to 32 hexadecimal digits: two 64-bit blocks.
//! 2. Encrypt the first block with CVK-A (single DES).
//! 3. XOR the result with the second block and encrypt that with the whole double-length
//!    key as triple DES (encrypt with A, decrypt with B, encrypt with A).
//! 4. Decimalise the 16 hexadecimal digits of the result: the digits `0`–`9` from left to
//!    right, then, if fewer than needed, the letters `A`–`F` as `0`–`5`; keep the first
//!    three.
//!
//! [`CvvGenerator`] is the seam: a bank whose CVKs live in a hardware security module
//! implements it with its HSM's "generate CVV" command and the key never enters this
//! process. [`SoftwareCvv`] is the implementation for development and for banks whose
//! security policy accepts software keys: it reads each tenant's CVK from a file.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;

use openssl::symm::{Cipher, Crypter, Mode};
use zeroize::Zeroizing;

use crate::ids::{Expiry, TenantId};
use crate::pan::Pan;

/// The service code Visa's algorithm takes for CVV2. (The magnetic stripe's CVV1 uses the
/// card's own service code, the chip's iCVV `999`; the three values differ on purpose.)
pub const CVV2_SERVICE_CODE: &str = "000";

/// A three-digit card security code. It does not implement `Display`, and `Debug` shows
/// `Cvv2(***)`: the digits come out only through [`Cvv2::expose_for_display`].
#[derive(Clone)]
pub struct Cvv2(Zeroizing<String>);

impl Cvv2 {
    /// Three ASCII digits, from an HSM's answer for instance. `None` for anything else.
    pub fn from_digits(digits: &str) -> Option<Self> {
        (digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| Self(Zeroizing::new(digits.to_owned())))
    }

    /// The digits, for exactly one use: the details page shown to the cardholder. Never
    /// log the result, never put it in an error, never store it.
    pub fn expose_for_display(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cvv2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvv2(***)")
    }
}

/// Why no CVV could be computed. Never carries the card number, the key or a CVV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvvError {
    #[error("no card verification key for tenant `{0}`")]
    NoKey(String),
    /// The DES computation itself failed (an OpenSSL error; should not happen).
    #[error("CVV computation failed in the cipher library")]
    Cipher,
    /// An HSM-backed implementation's failure, described without card data.
    #[error("CVV generation failed: {0}")]
    Backend(String),
}

/// Computes CVV2 values. Implemented in software by [`SoftwareCvv`]; a bank with an HSM
/// implements it with its HSM's CVV command. Implementations must keep card numbers and
/// CVVs out of their errors and logs.
pub trait CvvGenerator: Send + Sync {
    /// The CVV2 of `pan` expiring `expiry`, with `tenant`'s card verification key.
    fn cvv2(&self, tenant: &TenantId, pan: &Pan, expiry: Expiry) -> impl Future<Output = Result<Cvv2, CvvError>> + Send;

    /// Whether `tenant` has a key at all, asked before a link is issued so that no link is
    /// handed out that could only fail. An implementation that cannot tell says `true`.
    fn has_key(&self, tenant: &TenantId) -> bool {
        let _ = tenant;
        true
    }
}

/// One tenant's double-length CVK, kept as the two 24-byte three-key schedules OpenSSL's
/// DES-EDE3 takes: `A|A|A` (which is single DES with A, since E_A∘D_A is the identity)
/// and `A|B|A` (two-key triple DES). OpenSSL 3 keeps plain single DES in its legacy
/// provider only, so the single-DES step goes through EDE3 too.
struct Cvk {
    single_a: Zeroizing<[u8; 24]>,
    a_b_a: Zeroizing<[u8; 24]>,
}

/// CVV2 from card verification keys held in files: `KEYS_DIR/cvk/<tenant>.key`, 32
/// hexadecimal characters, CVK-A then CVK-B.
///
/// A key in a file is readable by anyone who can read the file or the process's memory.
/// That is fine for development and for banks whose security policy accepts software
/// keys; other banks implement [`CvvGenerator`] with their HSM instead.
pub struct SoftwareCvv {
    keys: BTreeMap<String, Cvk>,
}

impl fmt::Debug for SoftwareCvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareCvv").field("tenants", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

/// Why the CVK files could not be loaded. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum CvkError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: a CVK file must hold exactly 32 hexadecimal characters (CVK-A then CVK-B)")]
    Format { path: String },
    #[error("{path}: CVK-A and CVK-B are equal, which makes the key single DES; use a double-length key")]
    EqualHalves { path: String },
    #[error("{path}: the file name must be <tenant>.key with a tenant id of 1 to 64 letters, digits, - or _")]
    TenantName { path: String },
    #[error("no <tenant>.key file in {0}")]
    None(String),
}

impl SoftwareCvv {
    /// Every `<tenant>.key` in `KEYS_DIR/cvk`. Other files are ignored; a malformed key
    /// file is an error naming it (a tenant silently without a key would only be found
    /// at the first reveal).
    pub fn load(keys_dir: &Path) -> Result<Self, CvkError> {
        let dir = keys_dir.join("cvk");
        let read_err = |source| CvkError::Read { path: dir.display().to_string(), source };
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(tenant) = name.strip_suffix(".key") else { continue };
            if TenantId::parse(tenant).is_err() {
                return Err(CvkError::TenantName { path: path.display().to_string() });
            }
            keys.insert(tenant.to_owned(), read_cvk(&path)?);
        }
        if keys.is_empty() {
            return Err(CvkError::None(dir.display().to_string()));
        }
        Ok(Self { keys })
    }

    /// The tenants that have a key.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The CVV2, computed here and now (a few DES blocks: no need to leave the thread).
    pub fn generate(&self, tenant: &TenantId, pan: &Pan, expiry: Expiry) -> Result<Cvv2, CvvError> {
        let key = self.keys.get(tenant.as_str()).ok_or_else(|| CvvError::NoKey(tenant.to_string()))?;
        visa_cvv(key, super::pan_digits(pan), &expiry.yymm(), CVV2_SERVICE_CODE)
    }
}

impl CvvGenerator for SoftwareCvv {
    async fn cvv2(&self, tenant: &TenantId, pan: &Pan, expiry: Expiry) -> Result<Cvv2, CvvError> {
        self.generate(tenant, pan, expiry)
    }

    fn has_key(&self, tenant: &TenantId) -> bool {
        self.keys.contains_key(tenant.as_str())
    }
}

fn read_cvk(path: &Path) -> Result<Cvk, CvkError> {
    let format = || CvkError::Format { path: path.display().to_string() };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| CvkError::Read { path: path.display().to_string(), source })?);
    let text = text.trim();
    if text.len() != 32 {
        return Err(format());
    }
    let mut bytes = Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(text, bytes.as_mut()).map_err(|_| format())?;
    let (a, b) = bytes.split_at(8);
    if a == b {
        return Err(CvkError::EqualHalves { path: path.display().to_string() });
    }
    Ok(cvk_from_halves(a, b))
}

fn cvk_from_halves(a: &[u8], b: &[u8]) -> Cvk {
    let mut single_a = Zeroizing::new([0u8; 24]);
    let mut a_b_a = Zeroizing::new([0u8; 24]);
    for (i, half) in [a, a, a].iter().enumerate() {
        single_a[i * 8..i * 8 + 8].copy_from_slice(half);
    }
    for (i, half) in [a, b, a].iter().enumerate() {
        a_b_a[i * 8..i * 8 + 8].copy_from_slice(half);
    }
    Cvk { single_a, a_b_a }
}

/// Steps 1 to 4 of the module documentation.
fn visa_cvv(key: &Cvk, pan: &str, yymm: &str, service_code: &str) -> Result<Cvv2, CvvError> {
    let mut data = Zeroizing::new(String::with_capacity(32));
    data.push_str(pan);
    data.push_str(yymm);
    data.push_str(service_code);
    // A PAN has at most 19 digits, so the input is at most 26 digits: it always fits.
    while data.len() < 32 {
        data.push('0');
    }
    let mut blocks = Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(data.as_bytes(), blocks.as_mut()).map_err(|_| CvvError::Cipher)?;
    let mut x = Zeroizing::new(des_ede3_block(&key.single_a, &blocks[..8])?);
    for (x, b) in x.iter_mut().zip(&blocks[8..]) {
        *x ^= b;
    }
    let y = Zeroizing::new(des_ede3_block(&key.a_b_a, x.as_ref())?);
    let hex = Zeroizing::new(hex::encode_upper(y.as_ref()));
    let digits = Zeroizing::new(decimalise(&hex, 3));
    Cvv2::from_digits(&digits).ok_or(CvvError::Cipher)
}

/// One 8-byte block through DES-EDE3 in ECB mode, no padding.
fn des_ede3_block(key: &[u8; 24], block: &[u8]) -> Result<[u8; 8], CvvError> {
    let mut crypter = Crypter::new(Cipher::des_ede3_ecb(), Mode::Encrypt, key, None).map_err(|_| CvvError::Cipher)?;
    crypter.pad(false);
    // OpenSSL wants room for one block more than the input.
    let mut out = Zeroizing::new([0u8; 16]);
    let n = crypter.update(block, out.as_mut()).map_err(|_| CvvError::Cipher)?;
    let m = crypter.finalize(&mut out[n..]).map_err(|_| CvvError::Cipher)?;
    if n + m != 8 {
        return Err(CvvError::Cipher);
    }
    let mut result = [0u8; 8];
    result.copy_from_slice(&out[..8]);
    Ok(result)
}

/// Visa's decimalisation: the decimal digits of `hex` in order, then its letters `A`–`F`
/// as `0`–`5`, cut to `n`.
fn decimalise(hex: &str, n: usize) -> String {
    let digits = hex.bytes().filter(u8::is_ascii_digit);
    let letters = hex.bytes().filter(|b| (b'A'..=b'F').contains(b)).map(|b| b - b'A' + b'0');
    digits.chain(letters).take(n).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn key(hex32: &str) -> Cvk {
        let bytes = hex::decode(hex32).unwrap();
        cvk_from_halves(&bytes[..8], &bytes[8..])
    }

    fn cvv(key_hex: &str, pan: &str, yymm: &str, service_code: &str) -> String {
        visa_cvv(&key(key_hex), pan, yymm, service_code).unwrap().expose_for_display().to_owned()
    }

    /// Published examples of the algorithm, each with its service code.
    #[test]
    fn published_vectors() {
        // The example in the documentation of the psec package (`psec.cvv.generate_cvv`).
        assert_eq!(cvv("0123456789ABCDEFFEDCBA9876543210", "1234567890123456", "9912", "220"), "170");
        // The psec package's own test of `generate_cvv`.
        assert_eq!(cvv("99999999999999998888888888888888", "2222222222222222", "3333", "111"), "361");
        // The worked example reproduced in HSM vendors' and tutorials' descriptions of
        // Visa's CVV: CVK-A 0123456789ABCDEF, CVK-B FEDCBA9876543210.
        assert_eq!(cvv("0123456789ABCDEFFEDCBA9876543210", "4123456789012345", "8701", "101"), "561");
    }

    #[test]
    fn decimalisation_falls_back_to_letters() {
        assert_eq!(decimalise("1A2B3C4D5E6F7A8B", 3), "123");
        // Only two digits: the first letter, A, becomes 0.
        assert_eq!(decimalise("ABCDEF1ABCDEFAB2", 3), "120");
        assert_eq!(decimalise("FEDCBAFEDCBAFEDC", 3), "543");
    }

    #[test]
    fn cvv_never_prints_its_digits() {
        let c = Cvv2::from_digits("123").unwrap();
        assert_eq!(format!("{c:?}"), "Cvv2(***)");
        assert!(Cvv2::from_digits("12").is_none());
        assert!(Cvv2::from_digits("12a").is_none());
    }

    fn write_cvk(dir: &Path, tenant: &str, text: &str) -> std::path::PathBuf {
        std::fs::create_dir_all(dir.join("cvk")).unwrap();
        let path = dir.join("cvk").join(format!("{tenant}.key"));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loads_tenant_keys_and_computes_with_them() {
        let dir = tempfile::tempdir().unwrap();
        write_cvk(dir.path(), "bank-a", "0123456789ABCDEFFEDCBA9876543210\n");
        write_cvk(dir.path(), "bank-b", "99999999999999998888888888888888");
        std::fs::write(dir.path().join("cvk/README"), "ignored").unwrap();
        let cvv = SoftwareCvv::load(dir.path()).unwrap();
        assert_eq!(cvv.tenants().collect::<Vec<_>>(), ["bank-a", "bank-b"]);
        let pan = Pan::parse("4111111111111111").unwrap();
        let expiry = Expiry::parse("2087-01").unwrap();
        let a = cvv.generate(&tenant("bank-a"), &pan, expiry).unwrap();
        let b = cvv.generate(&tenant("bank-b"), &pan, expiry).unwrap();
        assert_eq!(a.expose_for_display().len(), 3);
        // Same card, another tenant's key: (almost surely) another CVV; the same key
        // through the file gives what the vectors give.
        assert_eq!(
            a.expose_for_display(),
            visa_cvv(&key("0123456789ABCDEFFEDCBA9876543210"), "4111111111111111", "8701", "000").unwrap().expose_for_display()
        );
        assert_ne!(a.expose_for_display(), b.expose_for_display());
        assert_eq!(cvv.generate(&tenant("bank-c"), &pan, expiry).unwrap_err(), CvvError::NoKey("bank-c".into()));
    }

    #[test]
    fn bad_key_files_name_the_path_and_never_the_key() {
        let cases = [
            ("0123456789ABCDEFFEDCBA98765432", "32 hexadecimal"),     // too short
            ("0123456789ABCDEFFEDCBA9876543210AB", "32 hexadecimal"), // too long
            ("0123456789ABCDEFFEDCBA987654321G", "32 hexadecimal"),   // not hex
            ("0123456789ABCDEF0123456789ABCDEF", "single DES"),       // A == B
        ];
        for (text, expect) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = write_cvk(dir.path(), "bank", text);
            let err = SoftwareCvv::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains(&text[..16]) && !err.contains(&text[text.len() - 16..]), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        write_cvk(dir.path(), "bad.tenant", "0123456789ABCDEFFEDCBA9876543210");
        assert!(matches!(SoftwareCvv::load(dir.path()), Err(CvkError::TenantName { .. })));
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("cvk")).unwrap();
        assert!(matches!(SoftwareCvv::load(empty.path()), Err(CvkError::None(_))));
        let missing = tempfile::tempdir().unwrap();
        let err = SoftwareCvv::load(missing.path()).unwrap_err().to_string();
        assert!(err.contains("cvk"), "{err}");
    }

    #[test]
    fn the_development_keys_load() {
        let keys_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
        let cvv = SoftwareCvv::load(&keys_dir).unwrap();
        assert!(cvv.tenants().next().is_some());
    }

    /// A random Luhn-valid card number of 12 to 19 digits.
    fn random_pan(rng: &mut fastrand::Rng) -> String {
        let len = rng.usize(12..=19);
        let mut digits: Vec<u8> = (0..len - 1).map(|_| rng.u8(0..10)).collect();
        digits[0] = rng.u8(1..10);
        // The check digit: the Luhn sum of the others, doubled from the right.
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                let d = u32::from(d);
                if i % 2 == 0 {
                    let d2 = d * 2;
                    if d2 > 9 { d2 - 9 } else { d2 }
                } else {
                    d
                }
            })
            .sum();
        digits.push(((10 - sum % 10) % 10) as u8);
        digits.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// Cross-check against an independent implementation: the psec package for Python
    /// (`psec.cvv.generate_cvv`), over random cards, expiries and keys. The keys go
    /// through real files and [`SoftwareCvv::load`].
    ///
    /// Without python3 or psec the test says `skipped` and passes, except under `CI=true`
    /// where it fails: CI must run it.
    #[test]
    fn agrees_with_psec() {
        const CASES: usize = 40;
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut lines = String::new();
        let mut cases = Vec::new();
        for i in 0..CASES {
            let mut k = [0u8; 16];
            rng.fill(&mut k);
            if k[..8] == k[8..] {
                k[15] ^= 1;
            }
            let tenant = format!("t{i}");
            write_cvk(dir.path(), &tenant, &hex::encode(k));
            let pan = random_pan(&mut rng);
            let expiry = Expiry::parse(&format!("{:04}-{:02}", rng.u16(2000..=2099), rng.u8(1..=12))).unwrap();
            lines.push_str(&format!("{} {} {}\n", hex::encode(k), pan, expiry.yymm()));
            cases.push((tenant, pan, expiry));
        }
        let script = r#"
import sys, warnings
warnings.simplefilter("ignore")
try:
    import psec.cvv
except ImportError:
    sys.exit(3)
for line in sys.stdin:
    key, pan, yymm = line.split()
    print(psec.cvv.generate_cvv(bytes.fromhex(key), pan, yymm, "000"))
"#;
        let skip = |why: &str| {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the psec cross-check cannot run under CI ({why}): pip install psec");
            }
            eprintln!("skipped: pip install psec ({why})");
        };
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child =
            Command::new("python3").arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return skip(&format!("python3 cannot be started: {e}")),
        };
        child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(3) {
            return skip("psec is not importable");
        }
        assert!(out.status.success(), "psec failed: {}", String::from_utf8_lossy(&out.stderr));
        let theirs: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(theirs.len(), CASES, "psec answered {} lines", theirs.len());
        let ours = SoftwareCvv::load(dir.path()).unwrap();
        for ((tenant, pan, expiry), theirs) in cases.iter().zip(&theirs) {
            let mine = ours.generate(&TenantId::parse(tenant).unwrap(), &Pan::parse(pan).unwrap(), *expiry).unwrap();
            let mine = mine.expose_for_display();
            // Test data only: random keys and card numbers, printed to reproduce a failure.
            let context = format!("seed {seed}: key of {tenant}, card {pan}, expiry {}", expiry.yymm());
            if theirs.len() < 3 {
                // psec keeps only the decimal digits and skips the letters' fallback; with
                // fewer than three digits in the result (about 1 run in 500), ours must
                // start with the digits it found.
                assert!(mine.starts_with(theirs.as_str()), "{context}");
            } else {
                assert_eq!(mine, theirs, "{context}");
            }
        }
    }
}
