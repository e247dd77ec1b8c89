//! Group commit for Visa's notifications on PostgreSQL: the duplicate checks and the
//! attempt writes of many concurrent notifications are each done in one round of
//! statements, one transaction for the writes, while every caller still gets its own
//! answer. (SQLite gets the same from its one writer, `store::sqlite::writer`.)
//!
//! Why: PostgreSQL pays one WAL flush per commit, and each statement a round trip; a
//! batch pays them once for many notifications.
//!
//! How: callers put a job on a queue and await a oneshot answer. A writer task takes
//! whatever has queued up (at most [`MAX_BATCH`]; it never waits for a batch to fill, so
//! a lone notification goes through at once), writes it through [`BatchWriter`], and
//! answers each job. Semantics are those of one transaction per notification, exactly:
//!
//! - outcomes are per notification: `Recorded`, `Duplicate` (including a second copy of an
//!   envelope in the same batch), `UnknownCard`;
//! - if the batch fails in any way, its transaction is rolled back — nothing of it was
//!   written — and each notification is then written on its own, as a batch of one in its
//!   own transaction; a notification whose own write fails gets that error (a 500
//!   for Visa, who retries), the others are not penalised for sharing its batch;
//! - a caller that gave up before its turn (request timeout) is skipped, as its own
//!   transaction would have been rolled back when its future was dropped;
//! - a writer that panics answers its batch with an error and keeps serving.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;
use super::attempts::{AttemptOutcome, AttemptWrite};

/// Most notifications written in one transaction (and envelope hashes looked up in one
/// query). Far below SQLite's and PostgreSQL's limits on bound parameters.
pub const MAX_BATCH: usize = 128;
/// Queued jobs before callers wait for room (backpressure, not loss).
const QUEUE: usize = 4096;

/// What the database provides: the batched write and the batched duplicate check.
pub(crate) trait BatchWriter: Clone + Send + Sync + 'static {
    /// Records every item in one transaction, outcomes in item order. `Err` means the
    /// transaction was rolled back: nothing was written. A batch of one is the path
    /// without batching.
    fn record_batch(&self, items: &[AttemptWrite]) -> impl Future<Output = Result<Vec<AttemptOutcome>, StoreError>> + Send;
    /// Which of `hashes` have been recorded.
    fn seen_batch(&self, hashes: &[String]) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The queues in front of one store's writer and duplicate checker. Cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    writes: mpsc::Sender<(AttemptWrite, Reply<AttemptOutcome>)>,
    lookups: mpsc::Sender<(String, Reply<bool>)>,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit").field("max_batch", &MAX_BATCH).finish()
    }
}

fn gone(op: &'static str) -> StoreError {
    StoreError::WriterGone(op)
}

impl GroupCommit {
    /// Starts `writers` writer tasks and `readers` duplicate-check tasks. They stop when
    /// the last clone of the returned handle is dropped.
    ///
    /// They run on runtimes of their own, one thread for the writers and one for the
    /// duplicate checks: a batch is a handful of round trips to the database, and on the
    /// service's runtime each of them waited behind every ready request task, which made
    /// the queue of notifications, not the database, the limit. Two threads, so that a
    /// duplicate check never waits behind a write.
    pub(crate) fn spawn<W: BatchWriter>(store: W, writers: usize, readers: usize) -> Self {
        let (writes, write_queue) = mpsc::channel(QUEUE);
        let (lookups, lookup_queue) = mpsc::channel(QUEUE);
        let write_queue = Arc::new(Mutex::new(write_queue));
        let lookup_queue = Arc::new(Mutex::new(lookup_queue));
        let write_loops = (0..writers.max(1)).map(|_| write_loop(store.clone(), write_queue.clone()));
        run_on_own_thread("ctp-store-write", futures_util::future::join_all(write_loops));
        let lookup_loops = (0..readers.max(1)).map(|_| lookup_loop(store.clone(), lookup_queue.clone()));
        run_on_own_thread("ctp-store-lookup", futures_util::future::join_all(lookup_loops));
        Self { writes, lookups }
    }

    /// Records one notification, batched with whatever else is being recorded.
    pub(crate) async fn record_attempt(&self, item: AttemptWrite) -> Result<AttemptOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send((item, reply)).await.map_err(|_| gone("record attempt"))?;
        answer.await.map_err(|_| gone("record attempt"))?
    }

    /// Whether an envelope has been recorded, looked up together with concurrent checks.
    pub(crate) async fn attempt_seen(&self, envelope_hash: &str) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.lookups.send((envelope_hash.to_owned(), reply)).await.map_err(|_| gone("check duplicate"))?;
        answer.await.map_err(|_| gone("check duplicate"))?
    }
}

/// Runs `work` to completion on a current-thread runtime on a new thread named `name`,
/// or, if no thread or runtime can be had, as a task of the caller's runtime.
fn run_on_own_thread(name: &str, work: impl Future<Output = Vec<()>> + Send + 'static) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(error = %e, thread = name, "no runtime of its own for the notification store; sharing the service's");
            tokio::spawn(work);
            return;
        }
    };
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(move || runtime.block_on(work)) {
        panic!("cannot start the notification store's {name} thread: {e}");
    }
}

/// A queue several loops take from.
type SharedQueue<T, R> = Arc<Mutex<mpsc::Receiver<(T, Reply<R>)>>>;

async fn write_loop<W: BatchWriter>(store: W, queue: SharedQueue<AttemptWrite, AttemptOutcome>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        // A caller that has gone away would have had its transaction rolled back.
        jobs.retain(|(_, reply)| !reply.is_closed());
        let (items, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        if items.is_empty() {
            continue;
        }
        metrics::histogram!("ctp_store_notification_batch_size", "op" => "write").record(items.len() as f64);
        let results = AssertUnwindSafe(write(&store, &items)).catch_unwind().await;
        match results {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(_) => {
                tracing::error!(batch = items.len(), "notification writer panicked; the batch is answered with an error");
                for reply in replies {
                    let _ = reply.send(Err(gone("record attempt")));
                }
            }
        }
    }
}

/// The batch in one transaction; if that fails, each item on its own, as a batch of one.
async fn write<W: BatchWriter>(store: &W, items: &[AttemptWrite]) -> Vec<Result<AttemptOutcome, StoreError>> {
    match store.record_batch(items).await {
        Ok(outcomes) if outcomes.len() == items.len() => return outcomes.into_iter().map(Ok).collect(),
        Ok(outcomes) => {
            tracing::error!(
                batch = items.len(),
                outcomes = outcomes.len(),
                "batched notification write answered the wrong number of outcomes; writing each on its own"
            );
        }
        Err(e) if items.len() > 1 => {
            tracing::warn!(error = %e, batch = items.len(), "batched notification write failed; writing each on its own");
        }
        Err(e) => return vec![Err(e)],
    }
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let outcome = store.record_batch(std::slice::from_ref(item)).await;
        results.push(outcome.and_then(|o| o.into_iter().next().ok_or_else(|| gone("record attempt"))));
    }
    results
}

async fn lookup_loop<W: BatchWriter>(store: W, queue: SharedQueue<String, bool>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        jobs.retain(|(_, reply)| !reply.is_closed());
        let (hashes, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        if hashes.is_empty() {
            continue;
        }
        metrics::histogram!("ctp_store_notification_batch_size", "op" => "duplicate_check").record(hashes.len() as f64);
        let answers = AssertUnwindSafe(lookup(&store, &hashes)).catch_unwind().await;
        match answers {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(_) => {
                tracing::error!(batch = hashes.len(), "duplicate checker panicked; the batch is answered with an error");
                for reply in replies {
                    let _ = reply.send(Err(gone("check duplicate")));
                }
            }
        }
    }
}

/// All hashes in one query; if that fails, each on its own (so that each caller gets the
/// answer or the error its own query gets).
async fn lookup<W: BatchWriter>(store: &W, hashes: &[String]) -> Vec<Result<bool, StoreError>> {
    if hashes.len() > 1 {
        match store.seen_batch(hashes).await {
            Ok(seen) => {
                let seen: std::collections::HashSet<String> = seen.into_iter().collect();
                return hashes.iter().map(|h| Ok(seen.contains(h))).collect();
            }
            Err(e) => tracing::warn!(error = %e, batch = hashes.len(), "batched duplicate check failed; checking each on its own"),
        }
    }
    let mut answers = Vec::with_capacity(hashes.len());
    for hash in hashes {
        answers.push(store.seen_batch(std::slice::from_ref(hash)).await.map(|seen| !seen.is_empty()));
    }
    answers
}

#[cfg(test)]
mod tests {
    //! The batching rules against a scripted writer; the SQL of both dialects is exercised
    //! by `tests/it/group_commit.rs`.
    use super::*;
    use std::sync::Mutex as StdMutex;
    use std::time::{Duration, SystemTime};

    use crate::pan::PanKeys;
    use crate::sim::fixtures::{FreshKeys, Mode, TOKEN_REQUESTOR_ID, build_bodies, fresh_cards};
    use crate::store::attempts::{Announcement, MatchedKit, Recorded};
    use crate::visa::{RawNotification, ReplayPolicy, VerifiedNotification, VisaKeyRing};

    /// Answers each item with its own envelope hash as the attempt id, so that a caller
    /// getting another's answer shows. Holds every call at a gate until the test opens it,
    /// so that what is sent meanwhile queues up into a batch.
    #[derive(Clone)]
    struct Script {
        gate: Arc<tokio::sync::Semaphore>,
        poisoned: Arc<StdMutex<Vec<String>>>,
        panic_next: Arc<StdMutex<bool>>,
        calls: Arc<StdMutex<Vec<(&'static str, usize)>>>,
    }

    impl Script {
        fn new() -> Self {
            Self {
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
                poisoned: Default::default(),
                panic_next: Default::default(),
                calls: Default::default(),
            }
        }

        async fn pass_gate(&self, call: &'static str, n: usize) {
            self.gate.acquire().await.expect("gate open").forget();
            self.calls.lock().unwrap().push((call, n));
            if std::mem::take(&mut *self.panic_next.lock().unwrap()) {
                panic!("scripted panic");
            }
        }

        fn poisoned(&self, item: &AttemptWrite) -> bool {
            self.poisoned.lock().unwrap().iter().any(|h| h == item.notification.envelope_hash())
        }

        fn batched(&self) -> bool {
            self.calls.lock().unwrap().iter().any(|(call, n)| *call == "batch" && *n >= 2)
        }
    }

    fn answer(item: &AttemptWrite) -> AttemptOutcome {
        let kit = MatchedKit { tenant: "T".into(), entity_id: "E".into(), kit_no: "K".into() };
        AttemptOutcome::Recorded { attempt_id: item.notification.envelope_hash().to_owned(), kit }
    }

    impl BatchWriter for Script {
        async fn record_batch(&self, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
            self.pass_gate("batch", items.len()).await;
            if items.iter().any(|i| self.poisoned(i)) {
                return Err(gone("scripted failure"));
            }
            Ok(items.iter().map(answer).collect())
        }

        async fn seen_batch(&self, hashes: &[String]) -> Result<Vec<String>, StoreError> {
            Ok(hashes.iter().filter(|h| h.starts_with('0')).cloned().collect())
        }
    }

    fn notifications(n: usize) -> Vec<VerifiedNotification> {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        FreshKeys::write(&keys).unwrap();
        let ring = VisaKeyRing::load(&keys, &["HS256".into()]).unwrap();
        let pan_keys = PanKeys::load(&keys, "v1", "v1").unwrap();
        let cards = fresh_cards(2);
        let policy = ReplayPolicy { window: Duration::from_secs(60), require_iat: true };
        build_bodies(&keys, Mode::SharedHs256, &cards, 0, n)
            .unwrap()
            .iter()
            .map(|b| {
                RawNotification::parse(TOKEN_REQUESTOR_ID, None, b.as_bytes(), &pan_keys)
                    .unwrap()
                    .open(&ring, policy, SystemTime::now())
                    .unwrap()
            })
            .collect()
    }

    fn write(n: &VerifiedNotification) -> AttemptWrite {
        fn announce(recorded: &Recorded<'_>, _: &VerifiedNotification) -> Announcement {
            Announcement { event_type: "TEST", payload: recorded.attempt_id.to_owned() }
        }
        AttemptWrite { notification: n.clone(), fingerprints: Vec::new(), tenant: None, announce }
    }

    /// Sends every notification at once, opens the gate once they have all queued.
    async fn record_all(script: &Script, commit: &GroupCommit, ns: &[VerifiedNotification]) -> Vec<Result<AttemptOutcome, StoreError>> {
        let open_later = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            script.gate.add_permits(10_000);
        };
        let (results, ()) = tokio::join!(futures_util::future::join_all(ns.iter().map(|n| commit.record_attempt(write(n)))), open_later);
        results
    }

    fn own_answer(result: &Result<AttemptOutcome, StoreError>, n: &VerifiedNotification) -> bool {
        matches!(result, Ok(AttemptOutcome::Recorded { attempt_id, .. }) if attempt_id == n.envelope_hash())
    }

    #[tokio::test]
    async fn a_batch_answers_each_caller_with_its_own_outcome() {
        let script = Script::new();
        let commit = GroupCommit::spawn(script.clone(), 1, 1);
        let ns = notifications(6);
        let results = record_all(&script, &commit, &ns).await;
        for (result, n) in results.iter().zip(&ns) {
            assert!(own_answer(result, n), "{result:?}");
        }
        assert!(script.batched(), "nothing was batched: {:?}", script.calls.lock().unwrap());
    }

    #[tokio::test]
    async fn a_failed_batch_is_written_one_by_one_and_only_the_failing_item_fails() {
        let script = Script::new();
        let ns = notifications(6);
        script.poisoned.lock().unwrap().push(ns[4].envelope_hash().to_owned());
        let commit = GroupCommit::spawn(script.clone(), 1, 1);
        let results = record_all(&script, &commit, &ns).await;
        for (i, (result, n)) in results.iter().zip(&ns).enumerate() {
            if i == 4 {
                assert!(result.is_err(), "the poisoned item must fail: {result:?}");
            } else {
                assert!(own_answer(result, n), "item {i} must get its own outcome: {result:?}");
            }
        }
        // The six arrive as at most two batches (the first is held at the gate while the
        // rest queue), and which of them holds item 4 depends on timing: the failed batch
        // is the last of two or more items, and each of its items follows it on its own.
        let calls = script.calls.lock().unwrap().clone();
        let failed_batch = calls.iter().rposition(|(call, n)| *call == "batch" && *n >= 2).expect("a batch");
        let retried = &calls[failed_batch + 1..];
        let size = calls[failed_batch].1;
        assert!(retried.len() >= size && retried[..size].iter().all(|c| *c == ("batch", 1)), "{calls:?}");
    }

    #[tokio::test]
    async fn a_panicking_writer_fails_its_batch_and_keeps_serving() {
        let script = Script::new();
        *script.panic_next.lock().unwrap() = true;
        let commit = GroupCommit::spawn(script.clone(), 1, 1);
        let ns = notifications(4);
        let first = record_all(&script, &commit, &ns).await;
        assert!(first.iter().any(|r| r.is_err()), "{first:?}");
        let second = record_all(&script, &commit, &ns).await;
        assert!(second.iter().zip(&ns).all(|(r, n)| own_answer(r, n)), "{second:?}");
    }

    #[tokio::test]
    async fn a_lone_notification_goes_through_at_once_as_a_batch_of_one() {
        let script = Script::new();
        script.gate.add_permits(10);
        let commit = GroupCommit::spawn(script.clone(), 1, 1);
        let ns = notifications(1);
        assert!(own_answer(&commit.record_attempt(write(&ns[0])).await, &ns[0]));
        assert_eq!(*script.calls.lock().unwrap(), vec![("batch", 1)]);
    }

    #[tokio::test]
    async fn duplicate_checks_are_answered_per_hash() {
        let commit = GroupCommit::spawn(Script::new(), 1, 1);
        let hashes = ["0a", "1b", "0c", "2d"];
        let answers = futures_util::future::join_all(hashes.iter().map(|h| commit.attempt_seen(h))).await;
        let answers: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, vec![true, false, true, false]);
    }
}
