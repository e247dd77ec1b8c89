//! A Click to Pay SaaS layer in memory, faithful enough to develop and test the
//! enrollment loop against with no outside service: the eight endpoints of the contract
//! ([`crate::saas::wire`]) on a real HTTP server, its own consumers and cards per tenant,
//! VICA-like answers (validation errors at once, business refusals as FAILED outcomes), and
//! signed callbacks ([`crate::webhook`]) after a configurable delay. It can be told to fail
//! ([`faults`]).
//!
//! Run it with `ctp-issuer sim saas`, or in process with [`Simulator::start`] (what
//! `ctp-issuer serve` does when `saas.base_url` is not set, and what the tests do).
//!
//! How a request goes: validated (400 at once), deduplicated on `requestId`, accepted
//! (202), completed by the rules of [`state`] after `callback_delay` in acceptance order,
//! then its callback is posted to `callback_url`, retried a few times if our endpoint is
//! down. Completion does not wait for the callback: `/status` tells the outcome as soon as
//! the request is complete, whatever becomes of the callback.

mod callbacks;
pub mod cli;
pub mod faults;
mod server;
pub mod state;
pub mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cli::SimCommand;
pub use faults::{FailMode, Faults};

use crate::config::{Config, HttpConfig};
use crate::saas::wire::Callback;
use crate::webhook::{SecretFileError, WebhookSecret};
use state::State;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where callbacks are posted. `None`: none are sent (only `/status` tells).
    pub callback_url: Option<String>,
    /// From accepting a request to completing it (and sending its callback).
    pub callback_delay: Duration,
    /// Callbacks are signed with every one of these (several during a key rotation).
    pub webhook_secrets: Vec<WebhookSecret>,
    /// When set, requests must carry `Authorization: Bearer <api_key>` (not `/_sim/*`).
    pub api_key: Option<SecretString>,
    /// Longest wait for our endpoint to answer one callback (M2P asks for 10 s).
    pub callback_timeout: Duration,
    /// Tries per callback copy before giving up.
    pub callback_attempts: u32,
    /// Delay before the first callback retry; doubles each time, up to 5 s.
    pub callback_backoff: Duration,
    /// With `reorderCallbacks`, how long a held callback waits for a next one before it is
    /// sent anyway.
    pub reorder_max_hold: Duration,
    /// The HTTP server's timeouts. Its request timeout must exceed the longest
    /// `timeoutHoldMs` a test asks for.
    pub http: HttpConfig,
}

impl SimConfig {
    /// Defaults, signing with `webhook_secrets`.
    pub fn new(webhook_secrets: Vec<WebhookSecret>) -> Self {
        Self {
            callback_url: None,
            callback_delay: Duration::from_millis(500),
            webhook_secrets,
            api_key: None,
            callback_timeout: Duration::from_secs(10),
            callback_attempts: 5,
            callback_backoff: Duration::from_millis(200),
            reorder_max_hold: Duration::from_secs(5),
            http: HttpConfig {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 1024,
                request_timeout: Duration::from_secs(300),
                drain_timeout: Duration::from_secs(2),
            },
        }
    }

    /// What the service's configuration says: the secrets of
    /// `saas.webhook_secrets_dir` (default `KEYS_DIR/saas`), `saas.callback_url`,
    /// `saas.callback_delay` and `saas.api_key` (so the embedded simulator expects the key
    /// our client sends).
    pub fn from_config(config: &Config) -> Result<Self, SimError> {
        let dir = config.saas.webhook_secrets_dir(&config.keys_dir);
        let secrets = crate::webhook::load_secrets_dir(&dir)?.into_iter().map(|(_, s)| s).collect();
        Ok(Self {
            callback_url: config.saas.callback_url.clone(),
            callback_delay: config.saas.callback_delay,
            api_key: config.saas.api_key.clone(),
            ..Self::new(secrets)
        })
    }
}

/// Why the simulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the SaaS simulator needs at least one webhook secret to sign callbacks")]
    NoSecrets,
    #[error("webhook secrets: {0}")]
    Secrets(#[from] SecretFileError),
    #[error("callback URL: {0}")]
    CallbackUrl(String),
    #[error("callback client: {0}")]
    Client(String),
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Counters, for tests and `GET /_sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimStats {
    /// Calls to one of the six operation endpoints, whatever their answer.
    pub submits_received: u64,
    /// New operations accepted (202, not a replay).
    pub requests_accepted: u64,
    /// Repeats of a known `requestId`, answered with the first trace.
    pub replays: u64,
    /// Submits refused with a 4xx.
    pub refused: u64,
    /// Submits failed on purpose (`failNext`).
    pub faults_injected: u64,
    pub requests_completed: u64,
    /// Callback deliveries our endpoint answered 2xx (duplicates counted).
    pub callbacks_delivered: u64,
    /// Callback POSTs made, retries included.
    pub callback_attempts: u64,
    /// Callbacks not sent (`dropCallbacks`, or no callback URL).
    pub callbacks_dropped: u64,
    /// Callback copies given up after every attempt failed.
    pub callbacks_failed: u64,
}

#[derive(Default)]
struct Counters {
    submits_received: AtomicU64,
    requests_accepted: AtomicU64,
    replays: AtomicU64,
    refused: AtomicU64,
    faults_injected: AtomicU64,
    requests_completed: AtomicU64,
    callbacks_delivered: AtomicU64,
    callback_attempts: AtomicU64,
    callbacks_dropped: AtomicU64,
    callbacks_failed: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> SimStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            submits_received: g(&self.submits_received),
            requests_accepted: g(&self.requests_accepted),
            replays: g(&self.replays),
            refused: g(&self.refused),
            faults_injected: g(&self.faults_injected),
            requests_completed: g(&self.requests_completed),
            callbacks_delivered: g(&self.callbacks_delivered),
            callback_attempts: g(&self.callback_attempts),
            callbacks_dropped: g(&self.callbacks_dropped),
            callbacks_failed: g(&self.callbacks_failed),
        }
    }
}

/// A request to complete at `at`.
struct Due {
    at: tokio::time::Instant,
    tenant: String,
    trace: String,
}

/// What the server, the completion worker and the callback dispatcher share.
struct Shared {
    config: SimConfig,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    callback_url: Mutex<Option<String>>,
    counters: Counters,
    completions: mpsc::UnboundedSender<Due>,
    shutdown: CancellationToken,
}

/// A poisoned lock only means another task panicked mid-update; the simulator's state is
/// still the best there is, and a test tool must not cascade panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current `(year, month)`, for card expiry.
fn this_month() -> (u16, u8) {
    let now = humantime_serde::re::humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    (now[0..4].parse().unwrap_or(2000), now[5..7].parse().unwrap_or(1))
}

/// The simulator's entry point.
pub struct Simulator;

impl Simulator {
    /// Serves the SaaS on `listener` until [`SimulatorHandle::stop`]. Needs a Tokio runtime.
    pub fn start(listener: TcpListener, config: SimConfig) -> Result<SimulatorHandle, SimError> {
        if config.webhook_secrets.is_empty() {
            return Err(SimError::NoSecrets);
        }
        if let Some(url) = &config.callback_url {
            crate::saas::client::check_callback_url(url).map_err(SimError::CallbackUrl)?;
        }
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .timeout(config.callback_timeout)
            .connect_timeout(config.callback_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        let (callback_tx, callback_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            callback_url: Mutex::new(config.callback_url.clone()),
            config,
            state: Mutex::new(State::default()),
            faults: Mutex::new(Faults::default()),
            counters: Counters::default(),
            completions: due_tx,
            shutdown: shutdown.clone(),
        });
        let tracker = TaskTracker::new();
        let server = tokio::spawn(crate::http::server::serve(
            crate::http::server::ListenerSpec { name: "sim_saas", timeout_status: http::StatusCode::SERVICE_UNAVAILABLE },
            listener,
            None,
            shared.config.http.clone(),
            shutdown.clone(),
            {
                let shared = shared.clone();
                move |request| server::handle(shared.clone(), request)
            },
        ));
        let worker = tokio::spawn(complete_loop(shared.clone(), due_rx, callback_tx));
        let dispatcher = tokio::spawn(callbacks::dispatch_loop(shared.clone(), callback_rx, client, tracker.clone()));
        tracing::info!(%addr, "Click to Pay SaaS simulator listening");
        Ok(SimulatorHandle { shared, addr, tasks: vec![server, worker, dispatcher], tracker })
    }
}

/// Completes requests in acceptance order, each at its due time, and hands their
/// callbacks to the dispatcher.
async fn complete_loop(shared: Arc<Shared>, mut due: mpsc::UnboundedReceiver<Due>, callbacks: mpsc::UnboundedSender<Callback>) {
    loop {
        let next = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            next = due.recv() => match next { Some(d) => d, None => return },
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next.at) => {}
        }
        let done = lock(&shared.state).complete(&next.tenant, &next.trace, this_month());
        if let Some(callback) = done {
            Counters::bump(&shared.counters.requests_completed);
            tracing::debug!(tenant = %next.tenant, trace = %next.trace, result = ?callback.outcome.result, "simulated request completed");
            let _ = callbacks.send(callback);
        }
    }
}

/// The running simulator.
pub struct SimulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    tracker: TaskTracker,
}

impl SimulatorHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the `saas.base_url` that points at this simulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Changes some faults: `handle.update_faults(|f| f.drop_callbacks = true)`.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut lock(&self.shared.faults));
    }

    pub fn stats(&self) -> SimStats {
        self.shared.counters.snapshot()
    }

    /// Points callbacks elsewhere (or nowhere) from now on.
    pub fn set_callback_url(&self, url: Option<String>) -> Result<(), SimError> {
        if let Some(url) = &url {
            crate::saas::client::check_callback_url(url).map_err(SimError::CallbackUrl)?;
        }
        *lock(&self.shared.callback_url) = url;
        Ok(())
    }

    /// Stops serving, abandons pending completions and callbacks, and waits for every task.
    pub async fn stop(self) {
        self.shared.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}
