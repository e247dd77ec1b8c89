//! Real databases, one per test: a SQLite file in a temporary directory, or a fresh schema
//! on the test PostgreSQL.
//!
//! PostgreSQL tests run when `CTP_TEST_POSTGRES_URL` is set (`.ci/run` sets it). Without it
//! they print that they were skipped, except under `CI=true`, where a missing or
//! unreachable database fails the test loudly. The same holds for RabbitMQ and
//! `CTP_TEST_AMQP_URL`.
//!
//! A test's PostgreSQL schema is dropped when its [`TestDb`] is dropped, at the end of the
//! test, passed or failed. The drop waits at most a few seconds for locks (a failed test
//! may leave a connection holding one); a schema it could not drop, or one left by a
//! process that was killed, is swept by the next run: schema names carry their creation
//! time (a UUIDv7), and the first PostgreSQL test of a run drops every test schema older
//! than an hour, which no run still uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctp_issuer::config::Config;
use ctp_issuer::store::Store;
use sqlx::Connection;

/// A test schema older than this belongs to no running test.
const STALE_SCHEMA: Duration = Duration::from_secs(3600);

/// A database for one test, dropped with it.
pub struct TestDb {
    pub url: String,
    /// `"sqlite"` or `"postgres"`.
    pub kind: &'static str,
    /// The PostgreSQL schema this value owns (and drops).
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self { url, kind: "sqlite", schema: None, _dir: Some(dir) }
    }

    /// A fresh schema on the test PostgreSQL, or `None` when PostgreSQL tests are off.
    pub async fn postgres() -> Option<Self> {
        let base = postgres_url()?;
        sweep_stale_schemas(&base);
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut conn =
            sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| panic!("PostgreSQL at CTP_TEST_POSTGRES_URL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.unwrap();
        conn.close().await.ok();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Self { url: format!("{base}{sep}options[search_path]={schema}"), kind: "postgres", schema: Some((base, schema)), _dir: None })
    }

    /// A database at a URL the test made itself (e.g. through a proxy); it owns nothing.
    pub fn at(url: String, kind: &'static str) -> Self {
        Self { url, kind, schema: None, _dir: None }
    }

    /// The PostgreSQL schema of this database, if it is one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_ref().map(|(_, s)| s.as_str())
    }

    pub async fn store(&self) -> Store {
        let mut config = Config::default();
        config.database.url = self.url.parse().unwrap();
        Store::connect(&config.database).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            let dropped = on_own_runtime(async move {
                let mut conn = sqlx::PgConnection::connect(&base).await?;
                sqlx::raw_sql("SET lock_timeout = '5s'").execute(&mut conn).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut conn).await?;
                conn.close().await
            });
            if let Err(e) = dropped {
                eprintln!("note: a test schema was left for the next run to sweep: {e}");
            }
        }
    }
}

/// Runs `work` to its end on a runtime of its own, on a thread of its own: callable from
/// `Drop` inside a test's runtime, which must not be blocked on.
fn on_own_runtime<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work))
        .join()
        .expect("the cleanup thread panicked")
}

/// Once per run: drops the test schemas (named `t_<UUIDv7>`) older than [`STALE_SCHEMA`].
fn sweep_stale_schemas(base: &str) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let base = base.to_owned();
        let swept = on_own_runtime(async move {
            let mut conn = sqlx::PgConnection::connect(&base).await?;
            sqlx::raw_sql("SET lock_timeout = '5s'").execute(&mut conn).await?;
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_%'").fetch_all(&mut conn).await?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            for (name,) in names {
                let created = uuid::Uuid::parse_str(&name[2..]).ok().and_then(|u| u.get_timestamp()).map(|t| t.to_unix().0);
                if created.is_some_and(|at| now.saturating_sub(at) > STALE_SCHEMA.as_secs()) {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE"))).execute(&mut conn).await.ok();
                }
            }
            conn.close().await
        });
        if let Err(e) = swept {
            eprintln!("note: stale test schemas not swept: {e}");
        }
    });
}

/// Whether `CI=true`: then a service a suite needs must be there.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The PostgreSQL URL for tests, if they are to run. Panics under `CI=true` without one.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CTP_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!("CI=true but CTP_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI"),
        _ => {
            eprintln!("skipped: set CTP_TEST_POSTGRES_URL to run the PostgreSQL variant");
            None
        }
    }
}

/// The RabbitMQ URL for tests (`CTP_TEST_AMQP_URL`), if they are to run, checked by
/// connecting. Unset: `None` with a note, except under `CI=true`, where it panics; set but
/// unreachable: it panics.
pub async fn amqp_url() -> Option<String> {
    let url = match std::env::var("CTP_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if in_ci() => panic!("CI=true but CTP_TEST_AMQP_URL is not set: RabbitMQ tests must run in CI"),
        _ => {
            eprintln!("skipped: set CTP_TEST_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f) to run the RabbitMQ tests");
            return None;
        }
    };
    let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "probe".into()).await;
            Some(url)
        }
        Ok(Err(e)) => panic!("RabbitMQ at CTP_TEST_AMQP_URL is unreachable: {e}"),
        Err(_) => panic!("RabbitMQ at CTP_TEST_AMQP_URL did not answer within 10s"),
    }
}

/// Another connection holding the write path: SQLite's write lock (`BEGIN IMMEDIATE`), or
/// on PostgreSQL an exclusive lock on `table` (reads still go through). Released by
/// [`Blocker::release`], or when dropped.
pub enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Blocker {
    /// Holds the write path of `enrollment_attempt` (Visa's notifications).
    pub async fn hold(db: &TestDb) -> Self {
        Self::hold_table(db, "enrollment_attempt").await
    }

    pub async fn hold_table(db: &TestDb, table: &str) -> Self {
        if db.kind == "sqlite" {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
            Blocker::Sqlite(c)
        } else {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let lock = format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE");
            sqlx::raw_sql(sqlx::AssertSqlSafe(lock)).execute(&mut c).await.unwrap();
            Blocker::Pg(c)
        }
    }

    pub async fn release(&mut self) {
        match self {
            Blocker::Sqlite(c) => sqlx::raw_sql("ROLLBACK").execute(c).await.map(drop).unwrap(),
            Blocker::Pg(c) => sqlx::raw_sql("ROLLBACK").execute(c).await.map(drop).unwrap(),
        }
    }
}
