//! `ctp-issuer kits import`: loads the issuer's card registry from CSV.
//!
//! Columns are found by header name: `entity_id`, `kit_no`, `pan` are required; `tenant`,
//! `expiry` (YYYY-MM), `name_on_card`, `first_name`, `last_name`, `email`, `phone` are
//! optional. Rows are streamed (bounded memory for any file size). Each row is checked on
//! its own and stored as a write of its own, so a bad row is reported with its line number
//! and nothing of it is written, while the good rows around it are. Re-importing the same
//! file changes nothing.
//!
//! Rows are stored [`IN_FLIGHT`] at a time, so that the database can write many in one
//! transaction (SQLite's writer and PostgreSQL both do); outcomes are counted in row order.

use std::collections::HashMap;
use std::io::Read;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use super::{CardRegistry, NewCard, PutError, Stored};
use crate::ids::{EntityId, Expiry, IdError, KitNo, TenantId};
use crate::pan::Pan;
use crate::store::StoreError;
use crate::store::registry::ImportedContact;

/// Rows being stored at once.
pub const IN_FLIGHT: usize = 256;

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
pub struct Columns {
    tenant: Option<usize>,
    entity_id: usize,
    kit_no: usize,
    pan: usize,
    expiry: Option<usize>,
    name_on_card: Option<usize>,
    first_name: Option<usize>,
    last_name: Option<usize>,
    email: Option<usize>,
    phone: Option<usize>,
}

impl Columns {
    pub fn from_header(header: &csv::StringRecord, default_tenant: Option<&TenantId>) -> Result<Self, ImportError> {
        let find = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let need = |name: &str| find(name).ok_or_else(|| ImportError::Header(format!("missing required column `{name}`")));
        let columns = Self {
            tenant: find("tenant"),
            entity_id: need("entity_id")?,
            kit_no: need("kit_no")?,
            pan: need("pan")?,
            expiry: find("expiry"),
            name_on_card: find("name_on_card"),
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

/// Checks one row and turns it into a card. The error names the field and the rule.
pub fn card_from_row(row: &csv::StringRecord, columns: &Columns, default_tenant: Option<&TenantId>) -> Result<NewCard, String> {
    let get = |i: Option<usize>| i.and_then(|i| row.get(i)).map(str::trim).filter(|s| !s.is_empty());
    let id_error = |e: IdError| e.to_string().replace("entityId", "entity_id").replace("kitNo", "kit_no");
    let tenant = match get(columns.tenant) {
        Some(t) => TenantId::parse(t).map_err(id_error)?,
        None => default_tenant.cloned().ok_or("tenant is empty")?,
    };
    let entity_id = EntityId::parse(get(Some(columns.entity_id)).ok_or("entity_id is empty")?).map_err(id_error)?;
    let kit_no = KitNo::parse(get(Some(columns.kit_no)).ok_or("kit_no is empty")?).map_err(id_error)?;
    let pan = Pan::parse(get(Some(columns.pan)).unwrap_or("")).map_err(|e| format!("pan: {e}"))?;
    let expiry = get(columns.expiry).map(Expiry::parse).transpose().map_err(|e| e.to_string())?;
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
    Ok(NewCard {
        tenant,
        entity_id,
        kit_no,
        pan,
        expiry,
        name_on_card: get(columns.name_on_card).map(String::from),
        contact: ImportedContact {
            first_name: get(columns.first_name).map(String::from),
            last_name: get(columns.last_name).map(String::from),
            email: email.map(String::from),
            phone: phone.map(String::from),
        },
    })
}

/// Streams `input` into the registry. `progress` is called with the bytes read so far
/// (for a progress bar).
pub async fn import_kits<R: Read>(
    input: R,
    default_tenant: Option<&TenantId>,
    registry: &CardRegistry,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(input);
    let header = reader.headers().map_err(|e| ImportError::Header(e.to_string()))?.clone();
    let columns = Columns::from_header(&header, default_tenant)?;
    let mut report = ImportReport::default();
    let mut record = csv::StringRecord::new();
    // Rows being stored, answered in the order they were read.
    let mut in_flight = FuturesOrdered::new();
    // What the rows in flight store: a row with the same card or the same kit as one of
    // them waits until they are stored, so that the file's order decides which row takes a
    // card (the first) and which update of a kit stands (the last), as if the rows were
    // stored one by one; concurrent writes would let a later row win the race.
    let mut pending: HashMap<String, usize> = HashMap::new();
    let now = crate::store::epoch_millis(std::time::SystemTime::now());
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
        match card_from_row(&record, &columns, default_tenant).and_then(|card| registry.seal(&card).map_err(|e| e.to_string())) {
            Err(message) => report.rejected.push(RowError { line, message }),
            Ok(kit) => {
                let keys = [kit.pan_fingerprint.clone(), format!("{}/{}", kit.tenant, kit.kit_no)];
                if keys.iter().any(|k| pending.contains_key(k)) {
                    while let Some((line, done, stored)) = in_flight.next().await {
                        release(&mut pending, &done);
                        count(&mut report, line, stored)?;
                    }
                }
                for key in &keys {
                    *pending.entry(key.clone()).or_default() += 1;
                }
                in_flight.push_back(async move { (line, keys, registry.import_one(&kit, now).await) });
                if in_flight.len() >= IN_FLIGHT
                    && let Some((line, done, stored)) = in_flight.next().await
                {
                    release(&mut pending, &done);
                    count(&mut report, line, stored)?;
                }
            }
        }
        progress(reader.position().byte());
        record.clear();
    }
    while let Some((line, _, stored)) = in_flight.next().await {
        count(&mut report, line, stored)?;
    }
    report.rejected.sort_by_key(|r| r.line);
    Ok(report)
}

/// Forgets the keys of a row that has been stored.
fn release(pending: &mut HashMap<String, usize>, keys: &[String; 2]) {
    for key in keys {
        if let Some(n) = pending.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                pending.remove(key);
            }
        }
    }
}

fn count(report: &mut ImportReport, line: u64, stored: Result<Stored, PutError>) -> Result<(), ImportError> {
    match stored {
        Ok(Stored::Inserted) => report.inserted += 1,
        Ok(Stored::Updated) => report.updated += 1,
        Ok(Stored::Unchanged) => report.unchanged += 1,
        Err(PutError::Refused(refusal)) => report.rejected.push(RowError { line, message: refusal.to_string() }),
        Err(PutError::NoEntity) => unreachable_no_entity(report, line),
        Err(PutError::Store(e)) => return Err(e.into()),
    }
    Ok(())
}

/// The import creates the entities it names, so "no entity" cannot happen; were it to,
/// the row is reported rather than the import stopped.
fn unreachable_no_entity(report: &mut ImportReport, line: u64) {
    report.rejected.push(RowError { line, message: "entity_id names no entity".into() });
}
