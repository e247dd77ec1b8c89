//! The real service in this process, on loopback port 0 for each listener, with a copy of
//! the development keys and the embedded Click to Pay SaaS simulator.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ctp_issuer::config::Config;
use ctp_issuer::ctp::CtpEvent;
use ctp_issuer::registry::import::{ImportReport, import_kits};
use ctp_issuer::{App, Listeners};
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::api::Api;
use super::db::TestDb;
use super::http::{Reply, request};
use super::{dev_keys, repo};

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

/// A SaaS that answers fast and a reconciler that looks often: the enrollment loop in
/// tens of milliseconds.
pub fn fast_enrollment(c: &mut Config) {
    c.saas.callback_delay = Duration::from_millis(50);
    c.saas.max_retries = 2;
    c.saas.backoff_base = Duration::from_millis(10);
    c.saas.backoff_max = Duration::from_millis(50);
    c.saas.request_timeout = Duration::from_secs(1);
    c.enrollment.reconcile_after = Duration::from_millis(500);
    c.enrollment.reconcile_interval = Duration::from_millis(100);
}

/// The real service on loopback.
pub struct TestServer {
    pub app: App,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub admin: SocketAddr,
    /// The card-details page's listener, unless `widget.enabled` was switched off.
    pub widget: Option<SocketAddr>,
    pub keys: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts on `db` with a copy of the dev keys; `adjust` may change the config first.
    pub async fn start(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_keys(db, dev_keys(), adjust).await
    }

    /// Starts on `db` with the keys in `keys`.
    pub async fn start_with_keys(db: &TestDb, keys: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(db, keys.path());
        config.listen.public = "127.0.0.1:0".parse().unwrap();
        config.listen.internal = "127.0.0.1:0".parse().unwrap();
        config.listen.admin = "127.0.0.1:0".parse().unwrap();
        config.listen.widget = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let listeners = Listeners::bind(&config).await.unwrap();
        let (public, internal, admin) =
            (listeners.public.local_addr().unwrap(), listeners.internal.local_addr().unwrap(), listeners.admin.local_addr().unwrap());
        let widget = listeners.widget.as_ref().map(|l| l.local_addr().unwrap());
        let app = App::build(config).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.clone().serve(listeners, shutdown.clone()));
        Self { app, public, internal, admin, widget, keys, shutdown, task }
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
        request(self.public, Method::POST, path, &[], body).await.status
    }

    pub async fn get_admin(&self, path: &str) -> (StatusCode, String) {
        let reply = request(self.admin, Method::GET, path, &[], "").await;
        (reply.status, reply.text())
    }

    /// An internal API client whose token allows `tenants`.
    pub fn api(&self, tenants: &[&str]) -> Api {
        Api::new(self.internal, self.keys.path(), tenants)
    }

    /// The embedded SaaS simulator's address.
    pub fn saas(&self) -> SocketAddr {
        self.app.services().enrollment.saas().base_url().trim_start_matches("http://").parse().unwrap()
    }

    /// Tells the embedded simulator what to get wrong (`POST /_sim/faults`).
    pub async fn faults(&self, faults: Value) {
        let reply = request(self.saas(), Method::POST, "/_sim/faults", &[], faults.to_string()).await;
        assert!(reply.status.is_success(), "{} {}", reply.status, reply.text());
    }

    /// What the embedded simulator counted (`GET /_sim/stats`).
    pub async fn saas_stats(&self) -> Value {
        request(self.saas(), Method::GET, "/_sim/stats", &[], "").await.json()
    }

    /// Where the simulator says a request of `tenant` stands (`GET /status`).
    pub async fn saas_status(&self, tenant: &str, request_trace_id: &str) -> Reply {
        request(self.saas(), Method::GET, &format!("/status?requestTraceId={request_trace_id}"), &[("x-tenant-id", tenant)], "").await
    }

    /// The payloads of the unpublished outbox events of `event`, oldest first.
    pub async fn events(&self, event: CtpEvent) -> Vec<Value> {
        let rows = self.app.store().pending_outbox(1000).await.unwrap();
        rows.into_iter().filter(|r| r.event_type == event.as_str()).map(|r| serde_json::from_str(&r.payload).unwrap()).collect()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}
