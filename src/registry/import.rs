//! `ctp-issuer kits import`: loads the issuer's card registry from CSV.
//!
//! Columns are found by header name: `entity_id`, `kit_no`, `pan` are required; `tenant`,
//! `expiry` (YYYY-MM), `first_name`, `last_name`, `email`, `phone` are optional. Rows are
//! streamed (bounded memory for any file size); each row is checked on its own and stored
//! in its own transaction, so a bad row is reported with its line number and nothing of it
//! is written, while the good rows around it are. Re-importing the same file changes
//! nothing.

use std::io::Read;

use crate::pan::{Pan, PanKeys};
use crate::store::{KitRecord, KitUpsert, Store, StoreError};

/// Counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<RowError>,
}

impl ImportReport {
    pub fn rows(&self) -> u64 {
        self.inserted + self.updated + self.unchanged + self.rejected.len() as u64
    }
}

/// A row that was not imported. `message` names the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("CSV header: {0}")]
    Header(String),
    #[error("reading CSV: {0}")]
    Csv(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where each known column sits in the file.
struct Columns {
    tenant: Option<usize>,
    entity_id: usize,
    kit_no: usize,
    pan: usize,
    expiry: Option<usize>,
    first_name: Option<usize>,
    last_name: Option<usize>,
    email: Option<usize>,
    phone: Option<usize>,
}

impl Columns {
    fn from_header(header: &csv::StringRecord, default_tenant: Option<&str>) -> Result<Self, ImportError> {
        let find = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let need = |name: &str| find(name).ok_or_else(|| ImportError::Header(format!("missing required column `{name}`")));
        let columns = Self {
            tenant: find("tenant"),
            entity_id: need("entity_id")?,
            kit_no: need("kit_no")?,
            pan: need("pan")?,
            expiry: find("expiry"),
            first_name: find("first_name"),
            last_name: find("last_name"),
            email: find("email"),
            phone: find("phone"),
        };
        if columns.tenant.is_none() && default_tenant.is_none() {
            return Err(ImportError::Header("no `tenant` column: pass --tenant".into()));
        }
        Ok(columns)
    }
}

/// Streams `input` into the store. `progress` is called with the bytes read so far after
/// each row (for a progress bar).
pub async fn import_kits<R: Read>(
    input: R,
    default_tenant: Option<&str>,
    store: &Store,
    keys: &PanKeys,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(input);
    let header = reader.headers().map_err(|e| ImportError::Header(e.to_string()))?.clone();
    let columns = Columns::from_header(&header, default_tenant)?;
    let mut report = ImportReport::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            // A CSV syntax error carries the raw field bytes in its message: report only
            // where it happened.
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(ImportError::Csv(format!("malformed CSV near line {line}")));
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        match kit_from_row(&record, &columns, default_tenant, keys) {
            Err(message) => report.rejected.push(RowError { line, message }),
            Ok(kit) => match store.upsert_kit(&kit).await? {
                KitUpsert::Inserted => report.inserted += 1,
                KitUpsert::Updated => report.updated += 1,
                KitUpsert::Unchanged => report.unchanged += 1,
                KitUpsert::CardTaken => {
                    report.rejected.push(RowError { line, message: "card number is already registered to another kit".into() })
                }
            },
        }
        progress(reader.position().byte());
        record.clear();
    }
    Ok(report)
}

/// Validates one row and turns it into a storable kit.
fn kit_from_row(row: &csv::StringRecord, columns: &Columns, default_tenant: Option<&str>, keys: &PanKeys) -> Result<KitRecord, String> {
    let get = |i: Option<usize>| i.and_then(|i| row.get(i)).map(str::trim).filter(|s| !s.is_empty());
    let tenant = get(columns.tenant).or(default_tenant).ok_or("tenant is empty")?;
    let entity_id = get(Some(columns.entity_id)).ok_or("entity_id is empty")?;
    let kit_no = get(Some(columns.kit_no)).ok_or("kit_no is empty")?;
    check_identifier("tenant", tenant)?;
    check_identifier("entity_id", entity_id)?;
    check_identifier("kit_no", kit_no)?;
    let pan = Pan::parse(get(Some(columns.pan)).unwrap_or("")).map_err(|e| format!("pan: {e}"))?;
    let expiry = get(columns.expiry).map(check_expiry).transpose()?;
    let email = get(columns.email);
    if email.is_some_and(|e| e.chars().count() > 254 || !e.contains('@')) {
        return Err("email is not an email address".into());
    }
    let phone = get(columns.phone);
    if phone.is_some_and(|p| p.len() > 32 || !p.chars().all(|c| c.is_ascii_digit() || "+-(). ".contains(c))) {
        return Err("phone must be at most 32 of 0-9 + - ( ) . and space".into());
    }
    for (name, value) in [("first_name", get(columns.first_name)), ("last_name", get(columns.last_name))] {
        if value.is_some_and(|v| v.chars().count() > 80) {
            return Err(format!("{name} is longer than 80 characters"));
        }
    }
    Ok(KitRecord {
        tenant: tenant.to_owned(),
        entity_id: entity_id.to_owned(),
        kit_no: kit_no.to_owned(),
        pan_fingerprint: keys.fingerprint(&pan),
        pan_sealed: keys.seal(&pan, &sealing_context(tenant, kit_no)),
        pan_last4: pan.last4().to_owned(),
        expiry,
        first_name: get(columns.first_name).map(String::from),
        last_name: get(columns.last_name).map(String::from),
        email: email.map(String::from),
        phone: phone.map(String::from),
    })
}

/// The associated data a kit's sealed card number is bound to.
pub fn sealing_context(tenant: &str, kit_no: &str) -> String {
    format!("kit:{tenant}/{kit_no}")
}

/// Tenants, entity ids and kit numbers: 1 to 64 of letters, digits, `-` and `_`
/// (M2P entity ids are UUIDs, kit numbers digits).
fn check_identifier(name: &str, value: &str) -> Result<(), String> {
    if value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(format!("{name} must be 1 to 64 letters, digits, - or _"))
    }
}

/// `YYYY-MM`, month 01 to 12.
fn check_expiry(value: &str) -> Result<String, String> {
    let ok = value.len() == 7
        && value.as_bytes()[4] == b'-'
        && value[..4].bytes().all(|b| b.is_ascii_digit())
        && value[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    if ok { Ok(value.to_owned()) } else { Err("expiry must be YYYY-MM".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_format() {
        assert!(check_expiry("2029-12").is_ok());
        for bad in ["2029-13", "2029-00", "29-12", "2029/12", "2029-1x", "２０２９-12"] {
            assert!(check_expiry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("kit_no", "12346535").is_ok());
        assert!(check_identifier("entity_id", "f25a9f38-682b-4094-b6e4-9671d500c49b").is_ok());
        assert!(check_identifier("kit_no", "12 34").is_err());
        assert!(check_identifier("kit_no", &"1".repeat(65)).is_err());
    }
}
