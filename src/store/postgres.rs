//! The PostgreSQL store: for several replicas on one database. Write transactions run at
//! READ COMMITTED; the unique indexes (card fingerprint, envelope hash) are what keep two
//! replicas from recording the same thing twice.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    AttemptOutcome, AttemptRow, KitRecord, KitUpsert, MatchedKit, OutboxRow, StoreError, db_err, epoch_millis,
    new_attempt_id,
};
use crate::notify;
use crate::visa::VerifiedNotification;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(db_err("connect"))?;
        Ok(Self { pool })
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

        let owner: Option<(String, String)> =
            sqlx::query_as("SELECT tenant, kit_no FROM kit WHERE pan_fingerprint = $1")
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
                if entity_changed { KitUpsert::Updated } else { KitUpsert::Unchanged }
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

    pub async fn attempt_seen(&self, envelope_hash: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1::BIGINT FROM enrollment_attempt WHERE envelope_hash = $1")
            .bind(envelope_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("check duplicate"))?;
        Ok(row.is_some())
    }

    pub async fn record_attempt(
        &self,
        n: &VerifiedNotification,
        fingerprints: &[String],
    ) -> Result<AttemptOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let mut kit = None;
        for fingerprint in fingerprints {
            kit = sqlx::query_as::<_, (String, String, String)>(
                "SELECT tenant, entity_id, kit_no FROM kit WHERE pan_fingerprint = $1",
            )
            .bind(fingerprint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("find kit"))?;
            if kit.is_some() {
                break;
            }
        }
        let Some((tenant, entity_id, kit_no)) = kit else {
            return Ok(AttemptOutcome::UnknownCard);
        };
        let kit = MatchedKit { tenant, entity_id, kit_no };

        let id = new_attempt_id();
        let now = epoch_millis(SystemTime::now());
        let client = &n.attempt().client;
        let inserted = sqlx::query(
            "INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
                 first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (envelope_hash) DO NOTHING",
        )
        .bind(&id)
        .bind(&kit.tenant)
        .bind(n.token_requestor_id())
        .bind(&kit.entity_id)
        .bind(&kit.kit_no)
        .bind(n.attempt().pan.last4())
        .bind(&client.first_name)
        .bind(&client.last_name)
        .bind(&client.contact_email)
        .bind(&client.phone_number)
        .bind(n.jws_kid())
        .bind(n.jwe_kid())
        .bind(n.iat())
        .bind(now)
        .bind(n.envelope_hash())
        .execute(&mut *tx)
        .await
        .map_err(db_err("insert attempt"))?
        .rows_affected();
        if inserted == 0 {
            return Ok(AttemptOutcome::Duplicate);
        }

        sqlx::query(
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&kit.tenant)
        .bind(notify::CTP_ENROLLMENT_ATTEMPT)
        .bind(notify::enrollment_attempt_payload(&id, &kit, n, now))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("insert outbox event"))?;
        tx.commit().await.map_err(db_err("commit attempt"))?;
        Ok(AttemptOutcome::Recorded { attempt_id: id, kit })
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

    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, event_type, payload, created_at, attempts, published_at
             FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list outbox"))
    }
}
