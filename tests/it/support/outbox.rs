//! What the outbox and RabbitMQ tests share: writing events straight into the outbox (as
//! the code that announces a change does, in its own transaction) and reading the rows
//! back, in either dialect.

use std::time::{Duration, SystemTime};

use ctp_issuer::config::OutboxConfig;
use ctp_issuer::store::epoch_millis;
use sqlx::{PgPool, SqlitePool};

use super::db::TestDb;
use super::until;

/// A second, plain connection to the test database.
pub enum Raw {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// An outbox row as the tests check it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub published_at: Option<i64>,
    pub dead_at: Option<i64>,
    pub claimed_by: Option<String>,
}

const ROWS: &str = "SELECT id, attempts, next_attempt_at, last_error, published_at, dead_at, claimed_by FROM outbox ORDER BY id";

impl Raw {
    /// Opens `db`, whose schema must be migrated already (open a `Store` first).
    pub async fn open(db: &TestDb) -> Self {
        match db.kind {
            "sqlite" => Raw::Sqlite(SqlitePool::connect(&db.url).await.unwrap()),
            _ => Raw::Pg(PgPool::connect(&db.url).await.unwrap()),
        }
    }

    /// Inserts one due event and returns its id.
    pub async fn insert(&self, tenant: &str, event_type: &str, payload: &str) -> i64 {
        let now = epoch_millis(SystemTime::now());
        let (sql_sqlite, sql_pg) = (
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        );
        let row: (i64,) = match self {
            Raw::Sqlite(p) => {
                sqlx::query_as(sql_sqlite).bind(tenant).bind(event_type).bind(payload).bind(now).bind(now).fetch_one(p).await.unwrap()
            }
            Raw::Pg(p) => {
                sqlx::query_as(sql_pg).bind(tenant).bind(event_type).bind(payload).bind(now).bind(now).fetch_one(p).await.unwrap()
            }
        };
        row.0
    }

    /// Inserts `n` success events shaped as M2P's lifecycle documentation shows them with distinct request trace ids.
    pub async fn insert_many(&self, n: usize) -> Vec<(i64, String)> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let payload = success_payload("ENBDTABBY", &format!("trace-{i:06}"));
            let id = self.insert("ENBDTABBY", "CTP_REGISTER_ENTITY_AND_KIT", &payload).await;
            out.push((id, payload));
        }
        out
    }

    pub async fn rows(&self) -> Vec<Row> {
        match self {
            Raw::Sqlite(p) => sqlx::query_as(ROWS).fetch_all(p).await.unwrap(),
            Raw::Pg(p) => sqlx::query_as(ROWS).fetch_all(p).await.unwrap(),
        }
    }

    pub async fn row(&self, id: i64) -> Row {
        self.rows().await.into_iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no outbox row {id}"))
    }

    pub async fn unpublished(&self) -> usize {
        self.rows().await.iter().filter(|r| r.published_at.is_none()).count()
    }

    /// Waits until every row is published, or fails the test after `limit`.
    pub async fn wait_all_published(&self, limit: Duration) {
        until("every outbox event published", limit, || async { (self.unpublished().await == 0).then_some(()) }).await
    }

    pub async fn close(&self) {
        match self {
            Raw::Sqlite(p) => p.close().await,
            Raw::Pg(p) => p.close().await,
        }
    }
}

/// M2P's lifecycle documentation's success notification, with this tenant and request trace id.
pub fn success_payload(tenant: &str, request_trace_id: &str) -> String {
    serde_json::json!({
        "business": tenant,
        "transactionType": "CTP_REGISTER_ENTITY_AND_KIT",
        "serverNotifyData": {
            "entityId": "70752df2-5a8e-4c1f-9d3b-2f1e7a6c0b11",
            "kitNo": "100000011561",
            "requestTraceId": request_trace_id,
            "requestStatus": "SUCCESS",
            "transactionType": "CTP_REGISTER_ENTITY_AND_KIT",
            "ctpEntityStatus": "ACTIVE",
            "ctpKitStatus": "ACTIVE",
            "ctpEntityId": "86e9d8c0-1b2c-4d5e-8f90-a1b2c3d4e5f6",
            "ctpKitId": "86e9d8c0-6f5e-4d3c-2b1a-0f9e8d7c6b5a",
            "tenant": tenant
        }
    })
    .to_string()
}

/// Settings that make a relay quick to test: small batches, millisecond pauses.
pub fn fast(mut config: OutboxConfig) -> OutboxConfig {
    config.batch_size = 10;
    config.poll_interval = Duration::from_millis(20);
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(100);
    config.publish_timeout = Duration::from_secs(5);
    config.lease = Duration::from_secs(30);
    config
}
