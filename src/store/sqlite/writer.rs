//! SQLite's one writer: a thread that owns the process's only write connection and runs
//! every write of the process on it, many at a time.
//!
//! Why: SQLite has one write lock. Writers on several connections queue on it, and the
//! wait is SQLite's busy handler, which sleeps (1, 2, 5 … 100 ms) between tries: that
//! sleep was the seconds-long tail of the notification path once the outbox relay wrote
//! too, and the enrollment API's 150–240 ms p99. With one writer nobody waits on the lock,
//! and nothing sleeps.
//!
//! How: callers send a job and await its answer. The thread takes whatever has queued up
//! (at most [`MAX_BATCH`]; it never waits for a batch to fill, so a lone write goes
//! through at once) and runs it in one transaction, each job inside a savepoint of its
//! own: a job that fails, or whose plan meets a guard that no longer holds, is rolled back
//! alone, and the others commit. Answers go out only after the commit, so a caller never
//! hears "done" for something that a failed commit then lost. A caller that gave up
//! before its turn (a request timeout) is skipped. A job that panics is rolled back and
//! answered with an error; the thread goes on.
//!
//! The thread calls SQLite directly, with statements prepared once and cached; the caller
//! pays one hand-off to the thread and one back, however many statements its job runs.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::exec::sqlite_err;
use crate::store::StoreError;

/// Most jobs in one transaction.
pub const MAX_BATCH: usize = 256;
/// Jobs queued before callers wait for room (backpressure, not loss).
const QUEUE: usize = 8192;

/// The handle callers send jobs through. Cheap to clone; the thread stops when the last
/// clone is dropped or [`Writer::close`] is called.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("max_batch", &MAX_BATCH).finish()
    }
}

/// One write, type-erased so that jobs of every operation share the queue.
trait Job: Send {
    /// The caller is gone: skip it.
    fn abandoned(&self) -> bool;
    /// Runs the write; `false` asks for its savepoint to be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the answer, or the commit's error.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Typed<T, F> {
    op: &'static str,
    work: Option<F>,
    keep: fn(&T) -> bool,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(op = self.op, "a database write panicked; it is rolled back");
                Err(StoreError::WriterGone("the write panicked"))
            }
        };
        let keep = result.as_ref().is_ok_and(self.keep);
        self.result = Some(result);
        keep
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) => Err(StoreError::WriterGone(commit_failure(e))),
            (None, Err(e)) => Err(StoreError::WriterGone(commit_failure(e))),
            (None, Ok(())) => Err(StoreError::WriterGone("the write did not run")),
        };
        let _ = self.reply.send(result);
    }
}

fn commit_failure(e: &StoreError) -> &'static str {
    tracing::error!(error = %e, "the database writer's transaction failed; its writes are answered with an error");
    "the transaction could not be committed"
}

impl Writer {
    /// Starts the thread on the database at `path` (which the migrator has created). The
    /// connection is opened on the thread; an error opening it is returned here.
    pub async fn start(path: PathBuf, open: fn(&std::path::Path) -> Result<Connection, StoreError>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (opened, opened_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("ctp-sqlite-writer".into())
            .spawn(move || match open(&path) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    write_loop(conn, queue);
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                }
            })
            .map_err(|_| StoreError::WriterGone("cannot start the writer thread"))?;
        opened_rx.await.map_err(|_| StoreError::WriterGone("the writer thread stopped while opening"))??;
        Ok(Self { jobs })
    }

    /// Runs `work` on the writer's connection in a transaction (shared with other jobs,
    /// each in its own savepoint) and answers once it is committed. `keep` says whether a
    /// successful result should be kept: `false` rolls the job back (a guard that failed).
    pub async fn write<T, F>(&self, op: &'static str, keep: fn(&T) -> bool, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed { op, work: Some(work), keep, result: None, reply });
        self.jobs.send(job).await.map_err(|_| StoreError::WriterGone("closed"))?;
        answer.await.map_err(|_| StoreError::WriterGone("the writer dropped the job"))?
    }
}

fn write_loop(conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch.retain(|job| !job.abandoned());
        if !batch.is_empty() {
            metrics::histogram!("ctp_store_write_batch_size").record(batch.len() as f64);
            run_batch(&conn, &mut batch);
        }
    }
}

/// One transaction for the whole batch, one savepoint per job.
fn run_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>) {
    debug_assert!(!batch.is_empty());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_err("begin")) {
        for job in batch.drain(..) {
            job.finish(Err(&e));
        }
        return;
    }
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(batch.len());
    let mut waiting = batch.drain(..);
    while let Some(mut job) = waiting.next() {
        let savepoint = conn.execute_batch("SAVEPOINT job");
        let keep = savepoint.is_ok() && job.run(conn);
        let end = if keep { conn.execute_batch("RELEASE job") } else { conn.execute_batch("ROLLBACK TO job; RELEASE job") };
        if let Err(e) = savepoint.and(end).map_err(sqlite_err("savepoint")) {
            // The transaction is in a state we cannot reason about: give it up whole.
            let _ = conn.execute_batch("ROLLBACK");
            for job in ran.into_iter().chain(std::iter::once(job)).chain(waiting) {
                job.finish(Err(&e));
            }
            return;
        }
        ran.push(job);
    }
    let commit = conn.execute_batch("COMMIT").map_err(sqlite_err("commit"));
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for job in ran {
        job.finish(commit.as_ref().map(|_| ()));
    }
}
