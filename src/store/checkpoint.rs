//! SQLite WAL checkpoints in the background, off the notification writer's commit path.
//!
//! Why: by default SQLite checkpoints inside whichever commit pushes the WAL past 1000
//! pages, and that commit copies the pages into the database file and fsyncs it before it
//! returns. With group commit that commit is a whole batch of Visa notifications: every
//! few hundred batches one of them stalled for the checkpoint, and so did every
//! notification queued behind it. Measured (BENCHMARKS.md, shared secret on SQLite at
//! concurrency 64, same build, alternating runs): 7.9k → 10.1k–11.0k notifications/s and
//! p99 19 → 12.5–14 ms.
//!
//! How: the writer's connection runs with `wal_autocheckpoint = 0`, and this task, on a
//! connection of its own, runs a `PASSIVE` checkpoint every [`INTERVAL`]. A passive checkpoint
//! copies what it can without blocking the writer, but under sustained writes it never
//! catches the WAL's end, and SQLite only rewinds the WAL once a checkpoint has. So when the
//! WAL has grown past [`RESTART_FRAMES`] the task follows with a `RESTART` checkpoint, which
//! holds the writer only while it copies the few frames written since the passive one (or
//! for at most [`RESTART_WAIT`] if a reader is still in the WAL), and lets the next write
//! start the WAL again from the beginning: the WAL stays bounded.
//! Other connections keep SQLite's automatic checkpoints (they write rarely), so the WAL
//! is still checkpointed if this task is not running.

use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

/// How often the WAL is checkpointed. A page rewritten many times between two checkpoints
/// is copied once, so fewer checkpoints are less work: measured at concurrency 64, every
/// 250 ms and every second cost throughput and p99 against every 2 s (8.2k–8.6k/s and
/// p99 19–23 ms against 10.1k–11.0k/s and 12.5–14 ms).
pub const INTERVAL: Duration = Duration::from_secs(2);

/// WAL frames (pages, 4 KiB each by default) after which a checkpoint also rewinds the
/// WAL: 128 MiB. The WAL therefore stays under this plus one [`INTERVAL`] of writes (about
/// 40k frames at 10k notifications/s; a few hundred at ordinary rates).
pub const RESTART_FRAMES: i64 = 32_768;

/// How long a `RESTART` checkpoint waits for readers to leave the WAL. While it waits it
/// holds new writers back (SQLite's `FULL` semantics), so it gives up soon, leaving the WAL
/// as it is until the next interval, instead of stalling the notification writer for the
/// pool's five-second busy timeout behind a long read.
pub const RESTART_WAIT: Duration = Duration::from_millis(100);

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

/// One checkpoint in `mode` (`PASSIVE` or `RESTART`).
pub async fn checkpoint(conn: &mut SqliteConnection, mode: &'static str) -> Result<Checkpointed, sqlx::Error> {
    let sql = match mode {
        "RESTART" => "PRAGMA wal_checkpoint(RESTART)",
        _ => "PRAGMA wal_checkpoint(PASSIVE)",
    };
    let (busy, wal_frames, copied_frames): (i64, i64, i64) = sqlx::query_as(sql).fetch_one(conn).await?;
    Ok(Checkpointed { busy: busy != 0, wal_frames, copied_frames })
}

/// Checkpoints every [`INTERVAL`] until `pool` is closed, on a connection of its own to the
/// same database (`options`) that waits at most [`RESTART_WAIT`] for a lock.
pub async fn run(pool: SqlitePool, options: SqliteConnectOptions) {
    let options = options.busy_timeout(RESTART_WAIT);
    let mut conn: Option<SqliteConnection> = None;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if conn.is_none() {
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "SQLite checkpointer cannot connect; retrying next interval");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let result = match checkpoint(c, "PASSIVE").await {
            Ok(done) if done.wal_frames >= RESTART_FRAMES => checkpoint(c, "RESTART").await.map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying next interval");
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteJournalMode;
    use std::str::FromStr;

    /// A writer that never checkpoints, as the notification writer: its WAL only grows
    /// until a passive checkpoint copies it back, and a restart checkpoint rewinds it.
    #[tokio::test]
    async fn restart_checkpoint_rewinds_a_wal_the_writer_never_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wal.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
        let mut checkpointer = options.clone().connect().await.unwrap();
        let mut writer = options.pragma("wal_autocheckpoint", "0").connect().await.unwrap();
        sqlx::query("CREATE TABLE t (v BLOB)").execute(&mut writer).await.unwrap();
        // 1500 commits of two pages each: past SQLite's default automatic checkpoint
        // (1000 frames), which this writer must not have run.
        for _ in 0..1500 {
            sqlx::query("INSERT INTO t VALUES (randomblob(5000))").execute(&mut writer).await.unwrap();
        }
        let passive = checkpoint(&mut checkpointer, "PASSIVE").await.unwrap();
        assert!(passive.wal_frames >= 3000, "the writer checkpointed by itself: {passive:?}");
        assert_eq!(passive.copied_frames, passive.wal_frames, "nothing else was writing");

        let restarted = checkpoint(&mut checkpointer, "RESTART").await.unwrap();
        assert!(!restarted.busy, "{restarted:?}");
        sqlx::query("INSERT INTO t VALUES (randomblob(10))").execute(&mut writer).await.unwrap();
        let after = checkpoint(&mut checkpointer, "PASSIVE").await.unwrap();
        assert!(after.wal_frames < 10, "the WAL started again from the beginning: {after:?}");
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(rows, 1501);
    }

    /// A restart checkpoint that finds a reader still on an older snapshot gives up after
    /// [`RESTART_WAIT`] (not the pool's five seconds), and the writer goes on.
    #[tokio::test]
    async fn a_restart_gives_way_to_a_long_reader() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wal.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
        let mut writer = options.clone().pragma("wal_autocheckpoint", "0").connect().await.unwrap();
        let mut reader = options.clone().connect().await.unwrap();
        let mut checkpointer = options.busy_timeout(RESTART_WAIT).connect().await.unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER)").execute(&mut writer).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut writer).await.unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        let _: (i64,) = sqlx::query_as("SELECT count(*) FROM t").fetch_one(&mut reader).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)").execute(&mut writer).await.unwrap();

        let started = std::time::Instant::now();
        let restart = checkpoint(&mut checkpointer, "RESTART").await.unwrap();
        assert!(restart.busy, "the reader still uses the WAL: {restart:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "waited {:?}, as long as a pool connection would", started.elapsed());
        sqlx::query("INSERT INTO t VALUES (3)").execute(&mut writer).await.unwrap();
        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    }

    #[tokio::test]
    async fn the_task_stops_with_its_pool() {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").unwrap();
        let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
        let task = tokio::spawn(run(pool.clone(), options));
        pool.close().await;
        tokio::time::timeout(INTERVAL * 4, task).await.expect("stopped").unwrap();
    }
}
