//! Shared test harness: real databases (a SQLite file, a fresh PostgreSQL schema), the real
//! server on loopback port 0, real keys.
//!
//! PostgreSQL tests run when `CTP_TEST_POSTGRES_URL` is set (`.ci/run` sets it). Without
//! it they print that they were skipped — except under `CI=true`, where a missing or
//! unreachable database fails the test loudly.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ctp_issuer::config::Config;
use ctp_issuer::pan::PanKeys;
use ctp_issuer::registry::import::{ImportReport, import_kits};
use ctp_issuer::sim::client;
use ctp_issuer::store::Store;
use ctp_issuer::{App, Listeners};
use http::StatusCode;
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Repository root (for `keys/` and `fixtures/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A database for one test, dropped with it.
pub struct TestDb {
    pub url: String,
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self { url, kind: "sqlite", _dir: Some(dir) }
    }

    /// A fresh schema on the test PostgreSQL, or `None` when PostgreSQL tests are off.
    pub async fn postgres() -> Option<Self> {
        let base = postgres_url()?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn =
            sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| panic!("PostgreSQL at CTP_TEST_POSTGRES_URL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Self { url: format!("{base}{sep}options[search_path]={schema}"), kind: "postgres", _dir: None })
    }

    /// A database at a URL the test made itself (e.g. through a proxy).
    pub fn at(url: String, kind: &'static str) -> Self {
        Self { url, kind, _dir: None }
    }

    pub async fn store(&self) -> Store {
        let mut config = Config::default();
        config.database.url = self.url.parse().unwrap();
        Store::connect(&config.database).await.unwrap()
    }
}

/// The PostgreSQL URL for tests, if they are to run. Panics under `CI=true` without one.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CTP_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but CTP_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI")
        }
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
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but CTP_TEST_AMQP_URL is not set: RabbitMQ tests must run in CI")
        }
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

/// Runs an async test body against SQLite and, when enabled, PostgreSQL:
/// `db_test!(name, |db: TestDb| async move { ... });` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(common::TestDb::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = common::TestDb::postgres().await {
                    ($body)(db).await;
                }
            }
        }
    };
}

/// A copy of the development keys in a temporary directory, so that a test may add and
/// remove key files.
pub fn dev_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("keys"), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The configuration tests start from: the given database, the given keys, a generous
/// replay window (the committed fixtures carry fixed 2026 timestamps) unless changed.
pub fn test_config(db: &TestDb, keys_dir: &Path) -> Config {
    let mut config = Config::default();
    config.database.url = db.url.parse().unwrap();
    config.database.acquire_timeout = Duration::from_secs(2);
    // The in-process SaaS simulator, asked for: PostgreSQL is not the embedded shape.
    config.saas.simulator = Some(true);
    config.keys_dir = keys_dir.to_owned();
    config.visa.replay_window = Duration::from_secs(5 * 365 * 24 * 3600);
    // The relay would publish (and so take away) the outbox rows other tests look at;
    // the outbox tests switch it on.
    config.outbox.enabled = false;
    config
}

/// The real service on loopback, port 0 for each listener.
pub struct TestServer {
    pub app: App,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub admin: SocketAddr,
    pub keys: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts on `db` with a copy of the dev keys; `adjust` may change the config first.
    pub async fn start(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> Self {
        let keys = dev_keys();
        let mut config = test_config(db, keys.path());
        config.listen.public = "127.0.0.1:0".parse().unwrap();
        config.listen.internal = "127.0.0.1:0".parse().unwrap();
        config.listen.admin = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let listeners = Listeners::bind(&config.listen).await.unwrap();
        let (public, internal, admin) =
            (listeners.public.local_addr().unwrap(), listeners.internal.local_addr().unwrap(), listeners.admin.local_addr().unwrap());
        let app = App::build(config).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.clone().serve(listeners, shutdown.clone()));
        Self { app, public, internal, admin, keys, shutdown, task }
    }

    /// Imports `fixtures/kits.csv` (tenant DEMOBANK, four Visa test cards).
    pub async fn import_fixture_kits(&self) -> ImportReport {
        let file = std::fs::File::open(repo().join("fixtures/kits.csv")).unwrap();
        import_kits(file, None, &self.app.services().registry, |_| {}).await.unwrap()
    }

    /// Imports kits from CSV text.
    pub async fn import_csv(&self, csv: &str, tenant: Option<&str>) -> ImportReport {
        let tenant = tenant.map(|t| ctp_issuer::ids::TenantId::parse(t).unwrap());
        import_kits(csv.as_bytes(), tenant.as_ref(), &self.app.services().registry, |_| {}).await.unwrap()
    }

    /// Posts a raw body to Visa's notification path.
    pub async fn notify(&self, token_requestor_id: &str, body: impl Into<bytes::Bytes>) -> StatusCode {
        let path = ctp_issuer::sim::visa::notification_path(token_requestor_id);
        self.post_public(&path, body).await
    }

    pub async fn post_public(&self, path: &str, body: impl Into<bytes::Bytes>) -> StatusCode {
        client::send(&self.public.to_string(), None, http::Method::POST, path, body).await.unwrap().0
    }

    pub async fn get_admin(&self, path: &str) -> (StatusCode, String) {
        let (status, body) = client::send(&self.admin.to_string(), None, http::Method::GET, path, bytes::Bytes::new()).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Reads a Prometheus sample, e.g. `ctp_visa_notifications_total{outcome="recorded"}`.
    /// The registry is process-wide, so compare before/after rather than absolute values.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get_admin("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Same store, fresh PanKeys from a keys dir (for tests that import without a server).
pub fn pan_keys(dir: &Path) -> PanKeys {
    PanKeys::load(dir, "v1", "v1").unwrap()
}

/// Polls `probe` until it answers `Some`, or until `within` has passed (then `None`): the
/// one way tests wait for something to happen, instead of sleeping and hoping.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another connection holding the write path of `enrollment_attempt`: SQLite's write lock,
/// or an exclusive lock on the table in PostgreSQL (reads still go through).
pub enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Blocker {
    pub async fn hold(db: &TestDb) -> Self {
        if db.kind == "sqlite" {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
            Blocker::Sqlite(c)
        } else {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE enrollment_attempt IN EXCLUSIVE MODE").execute(&mut c).await.unwrap();
            Blocker::Pg(c)
        }
    }

    pub async fn release(&mut self) {
        match self {
            Blocker::Sqlite(c) => {
                sqlx::raw_sql("ROLLBACK").execute(c).await.unwrap();
            }
            Blocker::Pg(c) => {
                sqlx::raw_sql("ROLLBACK").execute(c).await.unwrap();
            }
        }
    }
}
