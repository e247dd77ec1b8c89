//! SQLite, the embedded default: one file, one process.
//!
//! The file is reached four ways, each for one reason:
//!
//! | path | connection | what runs on it |
//! | --- | --- | --- |
//! | the migrator | sqlx, opened at start and closed | the schema's migrations (`migrations/sqlite/`), shared with sqlx's bookkeeping table |
//! | the writer ([`writer`]) | rusqlite, on a thread of its own | every write of the process, batched: one transaction for many, a savepoint each |
//! | the readers ([`readers`]) | rusqlite, read-only, on the caller's thread | every read: point lookups through indexes, which never wait for the writer in WAL mode |
//! | the checkpointer ([`checkpoint`]) | rusqlite, on a thread of its own | copying the WAL back into the file, off the writer's commits |
//!
//! Why rusqlite and not sqlx for the three that run all the time: sqlx runs each SQLite
//! connection on a worker thread of its own, so every statement is a round trip between
//! threads (and every returned row one more message). Here a read is a function call, and
//! a write is one hand-off to the writer however many statements it runs. The statements
//! are the same texts PostgreSQL runs (`store::sql`).
//!
//! Every connection uses the settings in [`CONNECTION_PRAGMAS`]: WAL journal, `synchronous
//! = NORMAL` (a commit is durable once the WAL is synced at the next checkpoint, and the
//! database is never corrupted by a crash), foreign keys on.

pub mod attempts;
pub mod checkpoint;
pub mod exec;
pub mod readers;
pub mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::store::plan::{Applied, Plan};
use crate::store::value::{Param, Row};
use crate::store::{StoreError, db_err};
use exec::sqlite_err;
use readers::Readers;
use writer::Writer;

/// How long a connection waits for SQLite's write lock (only another process, such as a
/// `kits import` run beside the server, or the checkpointer's rewind ever holds it).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every connection's settings.
pub const CONNECTION_PRAGMAS: &[(&str, &str)] = &[
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    // Statement journals in memory rather than in a temp file.
    ("temp_store", "memory"),
];

/// Page cache of the writer: 8 MiB (its inserts land on random pages of the indexes).
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// Page cache of each reader: 2 MiB (SQLite's default), shared pages come from the OS.
const READER_CACHE_KIB: i64 = 2 * 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The SQLite store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Writer,
    readers: Readers,
}

impl Sqlite {
    /// Opens (creating the file and its directory if needed) and migrates the database at
    /// `url`, then starts the writer and the checkpointer.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = migrate(url, true).await?;
        Self::start(path).await
    }

    /// Opens a database that must exist already (for commands that only read).
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        if !path.exists() {
            return Err(StoreError::Url(format!(
                "no database at {}: run the command from the directory `serve` runs in, or set CTP_DATABASE_URL",
                path.display()
            )));
        }
        let path = migrate(url, false).await?;
        Self::start(path).await
    }

    async fn start(path: PathBuf) -> Result<Self, StoreError> {
        let writer = Writer::start(path.clone(), open_writer).await?;
        let inner = Arc::new(Inner { writer, readers: Readers::new(path.clone(), open_reader) });
        checkpoint::start(path, open_checkpointer, Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// Nothing to close: the writer stops with the last handle, the checkpointer with the
    /// store; readers are dropped with it. (A method so that both stores read alike.)
    pub fn close(&self) {}

    pub fn query(&self, op: &'static str, sql: &'static str, params: &[Param]) -> Result<Vec<Row>, StoreError> {
        self.inner.readers.read(false, |conn| exec::query(conn, op, sql, params))
    }

    pub fn query_together(&self, op: &'static str, statements: &[(&'static str, Vec<Param>)]) -> Result<Vec<Vec<Row>>, StoreError> {
        self.inner.readers.read(true, |conn| statements.iter().map(|(sql, params)| exec::query(conn, op, sql, params)).collect())
    }

    pub async fn apply(&self, plan: Plan) -> Result<Applied, StoreError> {
        let op = plan.op;
        self.inner.writer.write(op, |applied| matches!(applied, Applied::Done(_)), move |conn| exec::run_plan(conn, &plan)).await
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }
}

fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
    Ok(options.get_filename().to_owned())
}

/// Runs the migrations on a connection opened for them, and returns the file's path.
async fn migrate(url: &str, create: bool) -> Result<PathBuf, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Url(e.to_string()))?
        .create_if_missing(create)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("journal_mode", "WAL")
        .pragma("foreign_keys", "ON");
    let path = options.get_filename().to_owned();
    if create && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Url(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut conn = options.connect().await.map_err(db_err("connect"))?;
    MIGRATOR.run(&mut conn).await?;
    sqlx::Connection::close(conn).await.map_err(db_err("close the migrator's connection"))?;
    Ok(path)
}

fn open(path: &Path, flags: OpenFlags, cache_kib: i64) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sqlite_err("connect"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err("connect"))?;
    for (name, value) in CONNECTION_PRAGMAS {
        // `pragma_update` reads and drops the row some pragmas answer with.
        conn.pragma_update(None, name, value).map_err(sqlite_err("connect"))?;
    }
    conn.pragma_update(None, "cache_size", -cache_kib).map_err(sqlite_err("connect"))?;
    conn.set_prepared_statement_cache_capacity(exec::STATEMENT_CACHE);
    Ok(conn)
}

/// The writer never checkpoints the WAL itself: the checkpointer does.
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE, WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite_err("connect"))?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    open(path, OpenFlags::SQLITE_OPEN_READ_ONLY, READER_CACHE_KIB)
}

fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    open(path, OpenFlags::SQLITE_OPEN_READ_WRITE, READER_CACHE_KIB)
}
