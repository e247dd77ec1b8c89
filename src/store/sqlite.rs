//! The SQLite store: the embedded default. WAL journal, one writer at a time; every write
//! transaction starts `BEGIN IMMEDIATE` so that a read-then-write transaction waits for the
//! write lock up front instead of failing with `SQLITE_BUSY` halfway through.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::{ConnectOptions, Connection, QueryBuilder};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::batch::{AttemptWrite, BatchWriter, GroupCommit, match_kits};
use super::{
    AttemptOutcome, AttemptRow, KitRecord, KitUpsert, MatchedKit, StoreError, db_err, epoch_millis,
    new_attempt_id,
};
use crate::notify;
use crate::visa::VerifiedNotification;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// Visa's notifications: duplicate checks and writes, batched (see `store::batch`).
    attempts: GroupCommit,
}

/// The notification writer's connections.
#[derive(Clone)]
struct Attempts {
    /// Duplicate checks read through the pool. (On the writer's own connection, whose
    /// page cache stays warm, they measured the same in RSA mode at concurrency 16 and 64,
    /// within the noise, and would wait behind every write.)
    pool: SqlitePool,
    options: SqliteConnectOptions,
    /// The writer's own connection, outside the pool and kept: a connection's page cache
    /// is dropped whenever another connection has written, so a writer taking a different
    /// pooled connection for every batch re-read the index pages it was inserting into.
    /// Replaced after any error, in case the error broke it.
    writer: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
}

impl Attempts {
    /// The writer's connection, opened if needed. Set the slot to `None` after an error.
    async fn writer(&self) -> Result<tokio::sync::MutexGuard<'_, Option<SqliteConnection>>, StoreError> {
        let mut slot = self.writer.lock().await;
        if slot.is_none() {
            *slot = Some(self.options.connect().await.map_err(db_err("connect"))?);
        }
        Ok(slot)
    }
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Statement journals (multi-row inserts) in memory rather than in a temp file.
            .pragma("temp_store", "memory")
            // 8 MiB of page cache per connection (default 2 MiB): the notification
            // writer's inserts land on random pages of the envelope-hash index.
            .pragma("cache_size", "-8192");
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Url(format!("cannot create {}: {e}", parent.display())))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // A connection to a local file does not go stale; the default ping before
            // every acquire was a round trip to the connection's thread per query.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db_err("connect"))?;
        // One writer: SQLite has one write lock, and one transaction per batch of
        // notifications replaces a queue of transactions waiting on it.
        // The writer never checkpoints the WAL itself: the checkpointer does, in the
        // background (see `store::checkpoint`).
        tokio::spawn(super::checkpoint::run(pool.clone(), options.clone()));
        let writer_options = options.pragma("wal_autocheckpoint", "0");
        let attempts = GroupCommit::spawn(
            Attempts { pool: pool.clone(), options: writer_options, writer: Arc::new(tokio::sync::Mutex::new(None)) },
            1,
            1,
        );
        Ok(Self { pool, attempts })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(MIGRATOR.run(&self.pool).await?)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err("ping"))?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn upsert_kit(&self, kit: &KitRecord) -> Result<KitUpsert, StoreError> {
        let now = epoch_millis(SystemTime::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err("begin"))?;

        let owner: Option<(String, String)> =
            sqlx::query_as("SELECT tenant, kit_no FROM kit WHERE pan_fingerprint = ?")
                .bind(&kit.pan_fingerprint)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("find card owner"))?;
        if owner.is_some_and(|(t, k)| t != kit.tenant || k != kit.kit_no) {
            return Ok(KitUpsert::CardTaken);
        }

        let entity_changed = sqlx::query(
            "INSERT INTO entity (tenant, entity_id, first_name, last_name, email, phone, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant, entity_id) DO UPDATE SET
                 first_name = COALESCE(excluded.first_name, entity.first_name),
                 last_name  = COALESCE(excluded.last_name, entity.last_name),
                 email      = COALESCE(excluded.email, entity.email),
                 phone      = COALESCE(excluded.phone, entity.phone),
                 updated_at = excluded.updated_at
             WHERE COALESCE(excluded.first_name, entity.first_name) IS NOT entity.first_name
                OR COALESCE(excluded.last_name, entity.last_name) IS NOT entity.last_name
                OR COALESCE(excluded.email, entity.email) IS NOT entity.email
                OR COALESCE(excluded.phone, entity.phone) IS NOT entity.phone",
        )
        .bind(&kit.tenant)
        .bind(&kit.entity_id)
        .bind(&kit.first_name)
        .bind(&kit.last_name)
        .bind(&kit.email)
        .bind(&kit.phone)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("upsert entity"))?
        .rows_affected()
            > 0;

        let existing: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT entity_id, pan_fingerprint, expiry FROM kit WHERE tenant = ? AND kit_no = ?")
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("read kit"))?;
        let outcome = match existing {
            None => {
                sqlx::query(
                    "INSERT INTO kit (tenant, kit_no, entity_id, pan_fingerprint, pan_sealed, pan_last4, expiry, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .bind(&kit.entity_id)
                .bind(&kit.pan_fingerprint)
                .bind(&kit.pan_sealed)
                .bind(&kit.pan_last4)
                .bind(&kit.expiry)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err("insert kit"))?;
                KitUpsert::Inserted
            }
            Some((entity_id, fingerprint, expiry))
                if entity_id == kit.entity_id && fingerprint == kit.pan_fingerprint && expiry == kit.expiry =>
            {
                if entity_changed { KitUpsert::Updated } else { KitUpsert::Unchanged }
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE kit SET entity_id = ?, pan_fingerprint = ?, pan_sealed = ?, pan_last4 = ?, expiry = ?, updated_at = ?
                     WHERE tenant = ? AND kit_no = ?",
                )
                .bind(&kit.entity_id)
                .bind(&kit.pan_fingerprint)
                .bind(&kit.pan_sealed)
                .bind(&kit.pan_last4)
                .bind(&kit.expiry)
                .bind(now)
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .execute(&mut *tx)
                .await
                .map_err(db_err("update kit"))?;
                KitUpsert::Updated
            }
        };
        tx.commit().await.map_err(db_err("commit kit"))?;
        Ok(outcome)
    }

    /// Whether an envelope with this hash has been recorded; concurrent checks share one
    /// query (see `store::batch`).
    pub async fn attempt_seen(&self, envelope_hash: &str) -> Result<bool, StoreError> {
        self.attempts.attempt_seen(envelope_hash).await
    }

    /// Records a verified notification; concurrent ones share one transaction (see
    /// `store::batch`), each with the outcome it would have had alone.
    pub async fn record_attempt(
        &self,
        n: &VerifiedNotification,
        fingerprints: &[String],
    ) -> Result<AttemptOutcome, StoreError> {
        self.attempts.record_attempt(n, fingerprints).await
    }

    pub async fn recent_attempts(&self, limit: i64) -> Result<Vec<AttemptRow>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, token_requestor_id, entity_id, kit_no, pan_last4, first_name, last_name, email, phone,
                    jws_kid, jwe_kid, iat, received_at
             FROM enrollment_attempt ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list attempts"))
    }

    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, event_type, payload, created_at, attempts
             FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list outbox"))
    }
}

impl BatchWriter for Attempts {
    async fn record_batch(&self, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
        let mut slot = self.writer().await?;
        let conn = slot.as_mut().expect("the writer's connection was opened");
        let result = if items.iter().all(|i| i.fingerprints.len() == 1) {
            record_batch_fast(conn, items).await
        } else {
            record_batch(conn, items).await
        };
        if result.is_err() {
            *slot = None;
        }
        result
    }

    async fn seen_batch(&self, hashes: &[String]) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err("check duplicates"))?;
        seen(&mut conn, hashes).await
    }
}

/// Which of `hashes` have been recorded: one query.
async fn seen(conn: &mut SqliteConnection, hashes: &[String]) -> Result<Vec<String>, StoreError> {
    if let [hash] = hashes {
        let row: Option<(String,)> = sqlx::query_as("SELECT envelope_hash FROM enrollment_attempt WHERE envelope_hash = ?")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err("check duplicate"))?;
        return Ok(row.into_iter().map(|(h,)| h).collect());
    }
    let mut query = QueryBuilder::<Sqlite>::new("SELECT envelope_hash FROM enrollment_attempt WHERE envelope_hash IN (");
    let mut list = query.separated(", ");
    for hash in hashes {
        list.push_bind(hash);
    }
    query.push(")");
    let rows: Vec<(String,)> = query.build_query_as().fetch_all(&mut *conn).await.map_err(db_err("check duplicates"))?;
    Ok(rows.into_iter().map(|(h,)| h).collect())
}

/// Many notifications in one transaction and four statements: their kits, their attempts
/// (`ON CONFLICT DO NOTHING RETURNING id` tells recorded from duplicate, a second copy of
/// an envelope in the same batch included), their outbox events. On any error the
/// transaction is rolled back when `tx` is dropped, and nothing was written.
async fn record_batch(conn: &mut SqliteConnection, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err("begin"))?;

    let fingerprints: HashSet<&str> = items.iter().flat_map(|i| i.fingerprints.iter().map(String::as_str)).collect();
    let mut query = QueryBuilder::<Sqlite>::new("SELECT pan_fingerprint, tenant, entity_id, kit_no FROM kit WHERE pan_fingerprint IN (");
    let mut list = query.separated(", ");
    for fingerprint in &fingerprints {
        list.push_bind(*fingerprint);
    }
    query.push(")");
    let rows: Vec<(String, String, String, String)> =
        query.build_query_as().fetch_all(&mut *tx).await.map_err(db_err("find kits"))?;
    let kits: HashMap<String, MatchedKit> = rows
        .into_iter()
        .map(|(fingerprint, tenant, entity_id, kit_no)| (fingerprint, MatchedKit { tenant, entity_id, kit_no }))
        .collect();
    let matched = match_kits(items, &kits);

    let now = epoch_millis(SystemTime::now());
    let ids: Vec<String> = items.iter().map(|_| new_attempt_id()).collect();
    let known: Vec<usize> = (0..items.len()).filter(|&i| matched[i].is_some()).collect();
    let mut inserted = HashSet::new();
    if !known.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
                 first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash) ",
        );
        query.push_values(&known, |mut row, &i| {
            let (n, kit) = (&items[i].notification, matched[i].as_ref().expect("only matched items"));
            let client = &n.attempt().client;
            row.push_bind(&ids[i])
                .push_bind(&kit.tenant)
                .push_bind(n.token_requestor_id())
                .push_bind(&kit.entity_id)
                .push_bind(&kit.kit_no)
                .push_bind(n.attempt().pan.last4())
                .push_bind(&client.first_name)
                .push_bind(&client.last_name)
                .push_bind(&client.contact_email)
                .push_bind(&client.phone_number)
                .push_bind(n.jws_kid())
                .push_bind(n.jwe_kid())
                .push_bind(n.iat())
                .push_bind(now)
                .push_bind(n.envelope_hash());
        });
        query.push(" ON CONFLICT (envelope_hash) DO NOTHING RETURNING id");
        let rows: Vec<(String,)> = query.build_query_as().fetch_all(&mut *tx).await.map_err(db_err("insert attempts"))?;
        inserted = rows.into_iter().map(|(id,)| id).collect();
    }

    let recorded: Vec<usize> = known.iter().copied().filter(|&i| inserted.contains(&ids[i])).collect();
    if !recorded.is_empty() {
        let mut query =
            QueryBuilder::<Sqlite>::new("INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) ");
        query.push_values(&recorded, |mut row, &i| {
            let kit = matched[i].as_ref().expect("only matched items");
            row.push_bind(&kit.tenant)
                .push_bind(notify::CTP_ENROLLMENT_ATTEMPT)
                .push_bind(notify::enrollment_attempt_payload(&ids[i], kit, &items[i].notification, now))
                .push_bind(now)
                .push_bind(now);
        });
        query.build().execute(&mut *tx).await.map_err(db_err("insert outbox events"))?;
    }
    tx.commit().await.map_err(db_err("commit attempts"))?;

    Ok(matched
        .into_iter()
        .zip(ids)
        .map(|(kit, id)| match kit {
            None => AttemptOutcome::UnknownCard,
            Some(kit) if inserted.contains(&id) => AttemptOutcome::Recorded { attempt_id: id, kit },
            Some(_) => AttemptOutcome::Duplicate,
        })
        .collect())
}

/// [`record_batch`] in two round trips to the connection's thread instead of five, for
/// the usual batch where every card has one fingerprint (one key version): `BEGIN`, and
/// the attempts inserted joined to their kits (`RETURNING` gives the kit of each recorded
/// one); then the outbox events and `COMMIT`. An item not returned is a duplicate if its
/// card has a kit, else an unknown card — looked up, in the same transaction, only when
/// there is such an item. Same outcomes, same single transaction; on any error it is
/// rolled back and nothing was written.
async fn record_batch_fast(conn: &mut SqliteConnection, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
    let now = epoch_millis(SystemTime::now());
    let ids: Vec<String> = items.iter().map(|_| new_attempt_id()).collect();
    let result = async {
        // VALUES columns: 1 id, 2 token requestor, 3 last4, 4 first, 5 last, 6 email,
        // 7 phone, 8 jws kid, 9 jwe kid, 10 iat, 11 envelope hash, 12 fingerprint.
        let mut query = QueryBuilder::<Sqlite>::new(
            "BEGIN IMMEDIATE;
             INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
                 first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash)
             SELECT v.column1, k.tenant, v.column2, k.entity_id, k.kit_no, v.column3, v.column4, v.column5,
                    v.column6, v.column7, v.column8, v.column9, v.column10, ",
        );
        query.push_bind(now);
        query.push(", v.column11 FROM (");
        query.push_values(items.iter().zip(&ids), |mut row, (item, id)| {
            let n = &item.notification;
            let client = &n.attempt().client;
            row.push_bind(id)
                .push_bind(n.token_requestor_id())
                .push_bind(n.attempt().pan.last4())
                .push_bind(&client.first_name)
                .push_bind(&client.last_name)
                .push_bind(&client.contact_email)
                .push_bind(&client.phone_number)
                .push_bind(n.jws_kid())
                .push_bind(n.jwe_kid())
                .push_bind(n.iat())
                .push_bind(n.envelope_hash())
                .push_bind(&item.fingerprints[0]);
        });
        query.push(
            ") AS v JOIN kit AS k ON k.pan_fingerprint = v.column12 WHERE true
             ON CONFLICT (envelope_hash) DO NOTHING RETURNING id, tenant, entity_id, kit_no",
        );
        let rows: Vec<(String, String, String, String)> =
            query.build_query_as().fetch_all(&mut *conn).await.map_err(db_err("insert attempts"))?;
        let mut recorded: HashMap<String, MatchedKit> = rows
            .into_iter()
            .map(|(id, tenant, entity_id, kit_no)| (id, MatchedKit { tenant, entity_id, kit_no }))
            .collect();

        let missing: Vec<&str> = items
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !recorded.contains_key(*id))
            .map(|(item, _)| item.fingerprints[0].as_str())
            .collect();
        let mut known = HashSet::new();
        if !missing.is_empty() {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT pan_fingerprint FROM kit WHERE pan_fingerprint IN (");
            let mut list = query.separated(", ");
            for fingerprint in &missing {
                list.push_bind(*fingerprint);
            }
            query.push(")");
            let rows: Vec<(String,)> = query.build_query_as().fetch_all(&mut *conn).await.map_err(db_err("find kits"))?;
            known = rows.into_iter().map(|(f,)| f).collect();
        }

        let mut query = QueryBuilder::<Sqlite>::new("");
        if !recorded.is_empty() {
            query.push("INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) ");
            let events = items.iter().zip(&ids).filter_map(|(item, id)| recorded.get(id).map(|kit| (item, id, kit)));
            query.push_values(events, |mut row, (item, id, kit)| {
                row.push_bind(kit.tenant.clone())
                    .push_bind(notify::CTP_ENROLLMENT_ATTEMPT)
                    .push_bind(notify::enrollment_attempt_payload(id, kit, &item.notification, now))
                    .push_bind(now)
                    .push_bind(now);
            });
            query.push(";");
        }
        query.push("COMMIT");
        query.build().execute(&mut *conn).await.map_err(db_err("insert outbox events and commit"))?;

        Ok(items
            .iter()
            .zip(&ids)
            .map(|(item, id)| match recorded.remove(id) {
                Some(kit) => AttemptOutcome::Recorded { attempt_id: id.clone(), kit },
                None if known.contains(&item.fingerprints[0]) => AttemptOutcome::Duplicate,
                None => AttemptOutcome::UnknownCard,
            })
            .collect())
    }
    .await;
    if result.is_err() {
        // Nothing of the batch may stay: roll back now rather than when the connection is
        // closed, so that the one-by-one fallback does not wait for the write lock.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
    result
}
