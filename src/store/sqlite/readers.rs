//! SQLite's readers: read-only connections, used on the caller's own thread.
//!
//! Why on the caller's thread: a read of SQLite's WAL never waits for the writer (it reads
//! the last commit it sees), and the store's reads are point lookups through indexes, a
//! few microseconds to a few hundred. Handing such a read to another thread and waking up
//! for its answer costs more than doing it. A read that is not a point lookup (the
//! operator's `outbox list`, `attempts list`) is still bounded by a `LIMIT`.
//!
//! Connections are kept in a small pool, taken for one read and put back; a connection
//! that errs is dropped rather than reused, and a new one opened on the next read.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

use super::exec::sqlite_err;
use crate::store::StoreError;

/// Idle connections kept. Reads run on the async runtime's worker threads (one per core)
/// and the blocking pool's: a few are ever in use at once.
const KEEP_IDLE: usize = 8;

pub struct Readers {
    path: PathBuf,
    open: fn(&Path) -> Result<Connection, StoreError>,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Readers {
    pub fn new(path: PathBuf, open: fn(&Path) -> Result<Connection, StoreError>) -> Self {
        Self { path, open, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `work` on a reader. With `snapshot`, inside one read transaction, so that
    /// several statements see the same commit.
    pub fn read<T>(&self, snapshot: bool, work: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match taken {
            Some(conn) => conn,
            None => (self.open)(&self.path)?,
        };
        let result = if snapshot {
            conn.execute_batch("BEGIN").map_err(sqlite_err("begin read")).and_then(|()| {
                let result = work(&conn);
                let end = conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).map_err(sqlite_err("end read"));
                result.and_then(|value| end.map(|()| value))
            })
        } else {
            work(&conn)
        };
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < KEEP_IDLE {
                idle.push(conn);
            }
        }
        result
    }
}
