//! The SQLite notification writer: group-commit batches (see `store::batch`) written on
//! the store's write thread itself, through rusqlite, on a connection that thread keeps.
//!
//! Why not through sqlx like the rest of the SQLite store: sqlx runs each SQLite
//! connection on a worker thread of its own, so every statement is a round trip between
//! threads and every row returned is one more message. For a notification batch that was
//! two to five round trips, each a sleep and a wake-up on both sides: at concurrency 1
//! about twenty context switches per notification, and on this 2-core VM the context
//! switches, not SQLite, were most of the writer's CPU (BENCHMARKS.md, third round). Here
//! the write thread calls SQLite directly: one statement per row, each prepared once and
//! cached, no hand-off at all between `BEGIN` and `COMMIT`.
//!
//! The SQL is that of the PostgreSQL writer, row by row; the outcomes are those of one
//! transaction per notification (see `store::batch`). Duplicate checks are done the same
//! way on the lookup thread, on a read-only connection of their own: a WAL reader never
//! waits for the writer, so they never wait behind a write.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::batch::{AttemptWrite, BatchWriter, match_kits};
use super::sqlite::{BUSY_TIMEOUT, CONNECTION_PRAGMAS};
use super::{AttemptOutcome, MatchedKit, StoreError, epoch_millis, new_attempt_id};
use crate::notify;

/// The attempt insert. `ON CONFLICT DO NOTHING` makes a redelivery (or a second copy in the
/// same batch) change no row, which is how a duplicate is told from a new attempt.
const INSERT_ATTEMPT: &str = "
    INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
        first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
    ON CONFLICT (envelope_hash) DO NOTHING";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5)";
const FIND_KIT: &str = "SELECT tenant, entity_id, kit_no FROM kit WHERE pan_fingerprint = ?1";
const ATTEMPT_SEEN: &str = "SELECT 1 FROM enrollment_attempt WHERE envelope_hash = ?1";

/// The notification writer's connection and the duplicate checks' connection.
#[derive(Clone)]
pub(super) struct SqliteAttempts {
    path: PathBuf,
    /// Each opened on first use and replaced after any error, in case the error broke it.
    /// Only the write thread takes the writer, only the lookup thread the reader, so the
    /// locks are never contended: they make the connections shareable, they queue no one.
    writer: Arc<Mutex<Option<Connection>>>,
    reader: Arc<Mutex<Option<Connection>>>,
}

impl SqliteAttempts {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, writer: Arc::default(), reader: Arc::default() }
    }

    /// The writer never checkpoints the WAL itself: the checkpointer does, in the
    /// background (`store::checkpoint`).
    fn open_writer(&self) -> Result<Connection, StoreError> {
        let conn = self.open(OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite_err("connect"))?;
        Ok(conn)
    }

    /// A connection with the store's settings (`sqlite::CONNECTION_PRAGMAS`).
    fn open(&self, mode: OpenFlags) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(&self.path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sqlite_err("connect"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err("connect"))?;
        for (name, value) in CONNECTION_PRAGMAS {
            // `pragma_update` reads and drops the row some pragmas answer with.
            conn.pragma_update(None, name, value).map_err(sqlite_err("connect"))?;
        }
        Ok(conn)
    }
}

/// Runs `work` on the connection in `slot`, opening it first if needed and dropping it
/// after an error.
fn with_connection<T>(
    slot: &Mutex<Option<Connection>>,
    open: impl FnOnce() -> Result<Connection, StoreError>,
    work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let conn = match &mut *slot {
        Some(conn) => conn,
        empty => empty.insert(open()?),
    };
    let result = work(conn);
    if result.is_err() {
        *slot = None;
    }
    result
}

fn sqlite_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

impl BatchWriter for SqliteAttempts {
    /// Synchronous: the write thread exists to do this, and blocking it for the batch's
    /// few hundred microseconds is cheaper than handing every statement to another thread.
    async fn record_batch(&self, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
        with_connection(&self.writer, || self.open_writer(), |conn| record_batch(conn, items))
    }

    /// Synchronous too, on the lookup thread: a read of the WAL's last commit.
    async fn seen_batch(&self, hashes: &[String]) -> Result<Vec<String>, StoreError> {
        with_connection(&self.reader, || self.open(OpenFlags::SQLITE_OPEN_READ_ONLY), |conn| seen(conn, hashes))
    }
}

/// Which of `hashes` have been recorded.
fn seen(conn: &mut Connection, hashes: &[String]) -> Result<Vec<String>, StoreError> {
    let mut query = conn.prepare_cached(ATTEMPT_SEEN).map_err(sqlite_err("check duplicates"))?;
    let mut seen = Vec::new();
    for hash in hashes {
        if query.exists([hash]).map_err(sqlite_err("check duplicates"))? {
            seen.push(hash.clone());
        }
    }
    Ok(seen)
}

/// Every item in one transaction: their kits, their attempts, the outbox events of those
/// recorded. On any error the transaction is rolled back (when `tx` is dropped) and
/// nothing of the batch was written.
fn record_batch(conn: &mut Connection, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_err("begin"))?;

    let mut kits: HashMap<String, MatchedKit> = HashMap::new();
    {
        let mut find = tx.prepare_cached(FIND_KIT).map_err(sqlite_err("find kits"))?;
        for fingerprint in items.iter().flat_map(|i| &i.fingerprints) {
            if kits.contains_key(fingerprint) {
                continue;
            }
            let kit = find
                .query_row([fingerprint], |row| Ok(MatchedKit { tenant: row.get(0)?, entity_id: row.get(1)?, kit_no: row.get(2)? }))
                .optional()
                .map_err(sqlite_err("find kits"))?;
            if let Some(kit) = kit {
                kits.insert(fingerprint.clone(), kit);
            }
        }
    }
    let matched = match_kits(items, &kits);

    let now = epoch_millis(SystemTime::now());
    let mut outcomes = Vec::with_capacity(items.len());
    {
        let mut insert_attempt = tx.prepare_cached(INSERT_ATTEMPT).map_err(sqlite_err("insert attempts"))?;
        let mut insert_outbox = tx.prepare_cached(INSERT_OUTBOX).map_err(sqlite_err("insert outbox events"))?;
        for (item, kit) in items.iter().zip(matched) {
            let Some(kit) = kit else {
                outcomes.push(AttemptOutcome::UnknownCard);
                continue;
            };
            let n = &item.notification;
            let client = &n.attempt().client;
            let id = new_attempt_id();
            let inserted = insert_attempt
                .execute(params![
                    id,
                    kit.tenant,
                    n.token_requestor_id(),
                    kit.entity_id,
                    kit.kit_no,
                    n.attempt().pan.last4(),
                    client.first_name,
                    client.last_name,
                    client.contact_email,
                    client.phone_number,
                    n.jws_kid(),
                    n.jwe_kid(),
                    n.iat(),
                    now,
                    n.envelope_hash(),
                ])
                .map_err(sqlite_err("insert attempts"))?;
            if inserted == 0 {
                outcomes.push(AttemptOutcome::Duplicate);
                continue;
            }
            let payload = notify::enrollment_attempt_payload(&id, &kit, n, now);
            insert_outbox
                .execute(params![kit.tenant, notify::CTP_ENROLLMENT_ATTEMPT, payload, now, now])
                .map_err(sqlite_err("insert outbox events"))?;
            outcomes.push(AttemptOutcome::Recorded { attempt_id: id, kit });
        }
    }
    tx.commit().map_err(sqlite_err("commit attempts"))?;
    Ok(outcomes)
}
