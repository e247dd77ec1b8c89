//! The PostgreSQL store: for several replicas on one database. Write transactions run at
//! READ COMMITTED; the unique indexes (card fingerprint, envelope hash) are what keep two
//! replicas from recording the same thing twice.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::batch::{AttemptWrite, BatchWriter, GroupCommit, match_kits};
use super::{AttemptOutcome, AttemptRow, KitRecord, KitUpsert, MatchedKit, StoreError, db_err, epoch_millis, new_attempt_id};
use crate::notify;
use crate::visa::VerifiedNotification;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// Visa's notifications: duplicate checks and writes, batched (see `store::batch`).
    attempts: GroupCommit,
}

/// The notification writers' handle on the pool.
#[derive(Clone)]
struct Attempts(PgPool);

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(db_err("connect"))?;
        // A few writers, so that one batch is being built while another waits for its
        // commit to reach the disk; each still commits many notifications at once.
        let writers = (max_connections / 4).clamp(1, 4) as usize;
        let attempts = GroupCommit::spawn(Attempts(pool.clone()), writers, 1);
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
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;

        let owner: Option<(String, String)> = sqlx::query_as("SELECT tenant, kit_no FROM kit WHERE pan_fingerprint = $1")
            .bind(&kit.pan_fingerprint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("find card owner"))?;
        if owner.is_some_and(|(t, k)| t != kit.tenant || k != kit.kit_no) {
            return Ok(KitUpsert::CardTaken);
        }

        let entity_changed = sqlx::query(
            "INSERT INTO entity (tenant, entity_id, first_name, last_name, email, phone, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, entity_id) DO UPDATE SET
                 first_name = COALESCE(excluded.first_name, entity.first_name),
                 last_name  = COALESCE(excluded.last_name, entity.last_name),
                 email      = COALESCE(excluded.email, entity.email),
                 phone      = COALESCE(excluded.phone, entity.phone),
                 updated_at = excluded.updated_at
             WHERE COALESCE(excluded.first_name, entity.first_name) IS DISTINCT FROM entity.first_name
                OR COALESCE(excluded.last_name, entity.last_name) IS DISTINCT FROM entity.last_name
                OR COALESCE(excluded.email, entity.email) IS DISTINCT FROM entity.email
                OR COALESCE(excluded.phone, entity.phone) IS DISTINCT FROM entity.phone",
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
            sqlx::query_as("SELECT entity_id, pan_fingerprint, expiry FROM kit WHERE tenant = $1 AND kit_no = $2")
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("read kit"))?;
        let outcome = match existing {
            None => {
                sqlx::query(
                    "INSERT INTO kit (tenant, kit_no, entity_id, pan_fingerprint, pan_sealed, pan_last4, expiry, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
                if entity_changed {
                    KitUpsert::Updated
                } else {
                    KitUpsert::Unchanged
                }
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE kit SET entity_id = $1, pan_fingerprint = $2, pan_sealed = $3, pan_last4 = $4, expiry = $5, updated_at = $6
                     WHERE tenant = $7 AND kit_no = $8",
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
    pub async fn record_attempt(&self, n: &VerifiedNotification, fingerprints: &[String]) -> Result<AttemptOutcome, StoreError> {
        self.attempts.record_attempt(n, fingerprints).await
    }

    pub async fn recent_attempts(&self, limit: i64) -> Result<Vec<AttemptRow>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, token_requestor_id, entity_id, kit_no, pan_last4, first_name, last_name, email, phone,
                    jws_kid, jwe_kid, iat, received_at
             FROM enrollment_attempt ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list attempts"))
    }

    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, event_type, payload, created_at, attempts
             FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list outbox"))
    }
}

impl BatchWriter for Attempts {
    async fn record_batch(&self, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
        record_batch(&self.0, items).await
    }

    async fn seen_batch(&self, hashes: &[String]) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope_hash FROM enrollment_attempt WHERE envelope_hash = ANY($1)")
            .bind(hashes)
            .fetch_all(&self.0)
            .await
            .map_err(db_err("check duplicate"))?;
        Ok(rows.into_iter().map(|(h,)| h).collect())
    }
}

/// Many notifications in one transaction and three statements, each one fixed text (so
/// prepared once per connection) with arrays for the rows: their kits, their attempts
/// (`ON CONFLICT DO NOTHING RETURNING id` tells recorded from duplicate, a second copy of
/// an envelope in the same batch included), their outbox events. On any error the
/// transaction is rolled back when `tx` is dropped, and nothing was written.
async fn record_batch(pool: &PgPool, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err("begin"))?;

    let fingerprints: Vec<&str> =
        items.iter().flat_map(|i| i.fingerprints.iter().map(String::as_str)).collect::<HashSet<_>>().into_iter().collect();
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT pan_fingerprint, tenant, entity_id, kit_no FROM kit WHERE pan_fingerprint = ANY($1)")
            .bind(&fingerprints)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err("find kits"))?;
    let kits: HashMap<String, MatchedKit> =
        rows.into_iter().map(|(fingerprint, tenant, entity_id, kit_no)| (fingerprint, MatchedKit { tenant, entity_id, kit_no })).collect();
    let matched = match_kits(items, &kits);

    let now = epoch_millis(SystemTime::now());
    let ids: Vec<String> = items.iter().map(|_| new_attempt_id()).collect();
    let known: Vec<usize> = (0..items.len()).filter(|&i| matched[i].is_some()).collect();
    let mut inserted = HashSet::new();
    if !known.is_empty() {
        let kit = |i: usize| matched[i].as_ref().expect("only matched items");
        let n = |i: usize| &items[i].notification;
        let column = |f: &dyn Fn(usize) -> String| known.iter().map(|&i| f(i)).collect::<Vec<String>>();
        let optional = |f: &dyn Fn(usize) -> Option<String>| known.iter().map(|&i| f(i)).collect::<Vec<Option<String>>>();
        let rows: Vec<(String,)> = sqlx::query_as(
            "INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
                 first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash)
             SELECT u.id, u.tenant, u.tr, u.entity_id, u.kit_no, u.last4, u.first_name, u.last_name, u.email,
                    u.phone, u.jws_kid, u.jwe_kid, u.iat, $14, u.envelope_hash
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $15::text[])
                  WITH ORDINALITY AS u(id, tenant, tr, entity_id, kit_no, last4, first_name, last_name, email, phone,
                       jws_kid, jwe_kid, iat, envelope_hash, n)
             ORDER BY u.n
             ON CONFLICT (envelope_hash) DO NOTHING
             RETURNING id",
        )
        .bind(column(&|i| ids[i].clone()))
        .bind(column(&|i| kit(i).tenant.clone()))
        .bind(column(&|i| n(i).token_requestor_id().to_owned()))
        .bind(column(&|i| kit(i).entity_id.clone()))
        .bind(column(&|i| kit(i).kit_no.clone()))
        .bind(column(&|i| n(i).attempt().pan.last4().to_owned()))
        .bind(optional(&|i| n(i).attempt().client.first_name.clone()))
        .bind(optional(&|i| n(i).attempt().client.last_name.clone()))
        .bind(optional(&|i| n(i).attempt().client.contact_email.clone()))
        .bind(optional(&|i| n(i).attempt().client.phone_number.clone()))
        .bind(column(&|i| n(i).jws_kid().to_owned()))
        .bind(column(&|i| n(i).jwe_kid().to_owned()))
        .bind(known.iter().map(|&i| n(i).iat()).collect::<Vec<Option<i64>>>())
        .bind(now)
        .bind(column(&|i| n(i).envelope_hash().to_owned()))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("insert attempts"))?;
        inserted = rows.into_iter().map(|(id,)| id).collect();
    }

    let recorded: Vec<usize> = known.iter().copied().filter(|&i| inserted.contains(&ids[i])).collect();
    if !recorded.is_empty() {
        let tenants: Vec<&str> = recorded.iter().map(|&i| matched[i].as_ref().expect("matched").tenant.as_str()).collect();
        let payloads: Vec<String> = recorded
            .iter()
            .map(|&i| {
                let kit = matched[i].as_ref().expect("matched");
                notify::enrollment_attempt_payload(&ids[i], kit, &items[i].notification, now)
            })
            .collect();
        sqlx::query(
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at)
             SELECT u.tenant, $2, u.payload, $4, $4 FROM UNNEST($1::text[], $3::text[]) WITH ORDINALITY AS u(tenant, payload, n)
             ORDER BY u.n",
        )
        .bind(&tenants)
        .bind(notify::CTP_ENROLLMENT_ATTEMPT)
        .bind(&payloads)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("insert outbox events"))?;
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
