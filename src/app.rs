//! The running service: its state ([`App`]) and how it is started and stopped.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::auth::ApiAuth;
use crate::config::{Config, ListenConfig, SaasChoice};
use crate::http::server::ListenerSpec;
use crate::pan::PanKeys;
use crate::saas::client::SaasClient;
use crate::sim::saas::{SimConfig, Simulator};
use crate::store::Store;
use crate::visa::{ReplayPolicy, VisaKeyRing};
use crate::webhook::WebhookVerifier;
use crate::{http, routes};

/// Everything a request handler may need, cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    visa_keys: ArcSwap<VisaKeyRing>,
    pan_keys: PanKeys,
    api_auth: ApiAuth,
    saas: SaasClient,
    callbacks: WebhookVerifier,
    /// With the built-in simulator chosen (see [`Config::saas_choice`]), its listener,
    /// bound at build time (so the client knows its address) and served from `serve`
    /// (once our callback address is known).
    embedded_saas: std::sync::Mutex<Option<TcpListener>>,
    /// Whether that simulator stands in for the Click to Pay SaaS.
    saas_simulator: bool,
}

/// The three listeners, bound before the service starts (tests bind port 0 and read the
/// addresses back).
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &ListenConfig) -> std::io::Result<Self> {
        let bind = |addr| async move {
            TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        Ok(Self { public: bind(config.public).await?, internal: bind(config.internal).await?, admin: bind(config.admin).await? })
    }
}

impl App {
    /// Connects to the database, brings its schema up to date and loads every key.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Refused before the database is touched: no SaaS, and not the simulator's shape.
        config.saas_choice()?;
        crate::http::tls::install_crypto_provider();
        let store = Store::connect(&config.database).await?;
        store.migrate().await?;
        Self::with_store(config, store)
    }

    /// Like [`App::build`] with a store already open (and migrated).
    pub fn with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        let visa_keys = VisaKeyRing::load(&config.keys_dir, &config.visa.jws_algorithm_names())?;
        let pan_keys = PanKeys::load(&config.keys_dir, &config.pan.fingerprint_version, &config.pan.encryption_version)?;
        tracing::info!(keys = ?visa_keys, "Visa notification keys loaded");
        let api_auth = ApiAuth::load(&config.auth, &config.keys_dir)?;
        let callbacks = WebhookVerifier::load_dir(&config.saas.webhook_secrets_dir(&config.keys_dir), config.saas.webhook_tolerance)?;
        if callbacks.is_empty() {
            anyhow::bail!("no SaaS webhook secret: add KEYS_DIR/saas/webhook-<id>.secret");
        }
        let choice = config.saas_choice()?;
        let saas_simulator = choice.is_simulator();
        let (base_url, embedded) = match choice {
            SaasChoice::Remote { base_url } => (base_url.to_owned(), None),
            SaasChoice::Simulator { explicit } => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                listener.set_nonblocking(true)?;
                let url = format!("http://{}", listener.local_addr()?);
                if explicit {
                    tracing::warn!("saas.simulator = true: the built-in simulator stands in for the Click to Pay SaaS");
                }
                (url, Some(TcpListener::from_std(listener)?))
            }
        };
        metrics::gauge!("ctp_saas_simulator_in_use").set(if saas_simulator { 1.0 } else { 0.0 });
        let saas = SaasClient::new(&base_url, &config.saas)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                visa_keys: ArcSwap::from_pointee(visa_keys),
                pan_keys,
                api_auth,
                saas,
                callbacks,
                embedded_saas: std::sync::Mutex::new(embedded),
                saas_simulator,
            }),
        })
    }

    pub fn api_auth(&self) -> &ApiAuth {
        &self.inner.api_auth
    }

    pub fn saas(&self) -> &SaasClient {
        &self.inner.saas
    }

    pub fn callback_verifier(&self) -> &WebhookVerifier {
        &self.inner.callbacks
    }

    /// Whether the built-in simulator stands in for the Click to Pay SaaS.
    pub fn saas_simulator_in_use(&self) -> bool {
        self.inner.saas_simulator
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn pan_keys(&self) -> &PanKeys {
        &self.inner.pan_keys
    }

    /// The current key ring. Held for one request; a reload swaps in a new one.
    pub fn visa_keys(&self) -> Arc<VisaKeyRing> {
        self.inner.visa_keys.load_full()
    }

    pub fn replay_policy(&self) -> ReplayPolicy {
        ReplayPolicy { window: self.config().visa.replay_window, require_iat: self.config().visa.require_iat }
    }

    /// Re-reads the Visa key directories (on SIGHUP). A failed reload keeps the old ring.
    pub fn reload_visa_keys(&self) -> anyhow::Result<()> {
        let ring = VisaKeyRing::load(&self.config().keys_dir, &self.config().visa.jws_algorithm_names())?;
        tracing::info!(keys = ?ring, "Visa notification keys reloaded");
        self.inner.visa_keys.store(Arc::new(ring));
        Ok(())
    }

    /// Serves the three listeners until `shutdown` is cancelled, then drains them.
    pub async fn serve(self, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tls = self.config().tls.as_ref().map(http::tls::acceptor).transpose()?;
        let http_config = self.config().http.clone();
        let fd_limit = http::fd_limit::ensure(3, http_config.max_connections as u64)?;
        tracing::debug!(fd_limit, "open-file limit");
        for (name, l) in [("public", &listeners.public), ("internal", &listeners.internal), ("admin", &listeners.admin)] {
            tracing::info!(listener = name, addr = %l.local_addr()?, tls = name == "public" && tls.is_some(), "listening");
        }
        let upkeep = tokio::spawn(metrics_upkeep(shutdown.clone()));
        let embedded = self.inner.embedded_saas.lock().expect("not poisoned").take();
        let simulator = match embedded {
            None => None,
            Some(listener) => {
                let mut sim = SimConfig::from_config(self.config())?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                let public = listeners.public.local_addr()?;
                sim.callback_url.get_or_insert(format!("{scheme}://{public}{}", routes::SAAS_CALLBACK_PATH));
                tracing::info!(addr = %listener.local_addr()?, "embedded Click to Pay SaaS simulator");
                Some(Simulator::start(listener, sim)?)
            }
        };
        let reconciler = tokio::spawn(crate::enrollment::service::reconcile_loop(self.clone(), shutdown.clone()));
        // The outbox relay stops with the listeners; a round under way is finished first.
        let relay = tokio::spawn(crate::notify::relay::run(self.store().clone(), self.config().outbox.clone(), shutdown.clone()));
        let public = tokio::spawn(http::server::serve(PUBLIC, listeners.public, tls, http_config.clone(), shutdown.clone(), {
            let app = self.clone();
            move |req| routes::public(app.clone(), req)
        }));
        let internal = tokio::spawn(http::server::serve(INTERNAL, listeners.internal, None, http_config.clone(), shutdown.clone(), {
            let app = self.clone();
            move |req| routes::internal(app.clone(), req)
        }));
        let admin = tokio::spawn(http::server::serve(ADMIN, listeners.admin, None, http_config, shutdown.clone(), {
            let app = self.clone();
            move |req| routes::admin(app.clone(), req)
        }));
        let (a, b, c, d, e, f) = tokio::join!(public, internal, admin, upkeep, relay, reconciler);
        a?;
        b?;
        c?;
        d?;
        e?;
        f?;
        if let Some(simulator) = simulator {
            simulator.stop().await;
        }
        self.store().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Visa retries only a 500: a notification that ran out of time must get one.
const PUBLIC: ListenerSpec = ListenerSpec { name: "public", timeout_status: ::http::StatusCode::INTERNAL_SERVER_ERROR };
const INTERNAL: ListenerSpec = ListenerSpec { name: "internal", timeout_status: ::http::StatusCode::SERVICE_UNAVAILABLE };
const ADMIN: ListenerSpec = ListenerSpec { name: "admin", timeout_status: ::http::StatusCode::SERVICE_UNAVAILABLE };

/// Histograms are folded periodically; without this they only grow.
async fn metrics_upkeep(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => crate::telemetry::metrics().run_upkeep(),
        }
    }
}
