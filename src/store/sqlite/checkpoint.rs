//! SQLite WAL checkpoints in the background, off the writer's commit path.
//!
//! Why: by default SQLite checkpoints inside whichever commit pushes the WAL past 1000
//! pages, and that commit copies the pages into the database file and syncs it before it
//! returns: every write queued behind it waits too (BENCHMARKS.md has what moving it off
//! the commit path gained).
//!
//! How: the writer's connection runs with `wal_autocheckpoint = 0`, and a thread of its
//! own, on a connection of its own, runs a `PASSIVE` checkpoint every [`INTERVAL`]. A
//! passive checkpoint copies what it can without blocking the writer, but under sustained
//! writes it never reaches the WAL's end, and SQLite only rewinds the WAL once a checkpoint
//! has. So when the WAL has grown past [`RESTART_FRAMES`] the thread follows with a
//! `RESTART` checkpoint, which holds the writer only while it copies the frames written
//! since the passive one (or for at most [`RESTART_WAIT`] while a reader is still in the
//! WAL), and lets the next write start the WAL again from the beginning: the WAL stays
//! bounded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

use super::exec::sqlite_err;
use crate::store::StoreError;

/// How often the WAL is checkpointed. A page rewritten many times between two checkpoints
/// is copied once, so fewer checkpoints are less work.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// WAL frames (pages, 4 KiB each by default) after which a checkpoint also rewinds the
/// WAL: 128 MiB. The WAL therefore stays under this plus one [`INTERVAL`] of writes.
pub const RESTART_FRAMES: i64 = 32_768;

/// How long a `RESTART` checkpoint waits for readers to leave the WAL. While it waits it
/// holds new writers back, so it gives up soon, leaving the WAL as it is until the next
/// interval, rather than stall the writer behind a long read.
pub const RESTART_WAIT: Duration = Duration::from_millis(100);

/// Which checkpoint to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy what can be copied without waiting for anyone.
    Passive,
    /// Copy everything and rewind the WAL, waiting (briefly) for readers and the writer.
    Restart,
}

/// What one `PRAGMA wal_checkpoint` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// Whether the checkpoint could not finish because of a lock (`SQLITE_BUSY`).
    pub busy: bool,
    /// Frames in the WAL.
    pub wal_frames: i64,
    /// Frames copied into the database file.
    pub copied_frames: i64,
}

/// One checkpoint.
pub fn checkpoint(conn: &Connection, mode: Mode) -> Result<Checkpointed, StoreError> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    let (busy, wal_frames, copied_frames): (i64, i64, i64) =
        conn.query_row(sql, [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).map_err(sqlite_err("checkpoint"))?;
    Ok(Checkpointed { busy: busy != 0, wal_frames, copied_frames })
}

/// Starts the checkpoint thread on the database at `path`. It runs for as long as
/// `running` can be upgraded, i.e. until the store that owns the `Arc` is dropped.
pub fn start<T: Send + Sync + 'static>(path: PathBuf, open: fn(&Path) -> Result<Connection, StoreError>, running: Weak<T>) {
    let spawned = std::thread::Builder::new().name("ctp-sqlite-checkpoint".into()).spawn(move || {
        let mut conn: Option<Connection> = None;
        loop {
            std::thread::sleep(INTERVAL);
            let Some(_alive): Option<Arc<T>> = running.upgrade() else { return };
            if conn.is_none() {
                match open(&path).and_then(|c| c.busy_timeout(RESTART_WAIT).map(|()| c).map_err(sqlite_err("connect"))) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "SQLite checkpointer cannot connect; retrying next interval");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_ref() else { continue };
            let result = match checkpoint(c, Mode::Passive) {
                Ok(done) if done.wal_frames >= RESTART_FRAMES => checkpoint(c, Mode::Restart).map(drop),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying next interval");
                conn = None;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the SQLite checkpointer; SQLite's own checkpoints will run in the other connections");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn open(path: &Path, autocheckpoint: bool) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        if !autocheckpoint {
            conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        }
        conn
    }

    /// A writer that never checkpoints, as the store's writer: its WAL only grows until a
    /// passive checkpoint copies it back, and a restart checkpoint rewinds it.
    #[test]
    fn restart_checkpoint_rewinds_a_wal_the_writer_never_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let writer = open(&path, false);
        let checkpointer = open(&path, true);
        writer.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        // 1500 commits of two pages each: past SQLite's default automatic checkpoint
        // (1000 frames), which this writer must not have run.
        for _ in 0..1500 {
            writer.execute_batch("INSERT INTO t VALUES (randomblob(5000))").unwrap();
        }
        let passive = checkpoint(&checkpointer, Mode::Passive).unwrap();
        assert!(passive.wal_frames >= 3000, "the writer checkpointed by itself: {passive:?}");
        assert_eq!(passive.copied_frames, passive.wal_frames, "nothing else was writing");

        let restarted = checkpoint(&checkpointer, Mode::Restart).unwrap();
        assert!(!restarted.busy, "{restarted:?}");
        writer.execute_batch("INSERT INTO t VALUES (randomblob(10))").unwrap();
        let after = checkpoint(&checkpointer, Mode::Passive).unwrap();
        assert!(after.wal_frames < 10, "the WAL started again from the beginning: {after:?}");
        let rows: i64 = checkpointer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1501);
    }

    /// A restart checkpoint that finds a reader still on an older snapshot gives up after
    /// [`RESTART_WAIT`], and the writer goes on.
    #[test]
    fn a_restart_gives_way_to_a_long_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let writer = open(&path, false);
        let reader = open(&path, true);
        let checkpointer = open(&path, true);
        checkpointer.busy_timeout(RESTART_WAIT).unwrap();
        writer.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1)").unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();

        let started = Instant::now();
        let restart = checkpoint(&checkpointer, Mode::Restart).unwrap();
        assert!(restart.busy, "the reader still uses the WAL: {restart:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "waited {:?}", started.elapsed());
        writer.execute_batch("INSERT INTO t VALUES (3)").unwrap();
        reader.execute_batch("COMMIT").unwrap();
    }
}
