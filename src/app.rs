//! The running service ([`App`]): its parts built from the configuration, the listeners
//! and background tasks started, and their graceful stop.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ListenConfig, SaasChoice};
use crate::http::server::ListenerSpec;
use crate::sim::saas::{SimConfig, Simulator};
use crate::state::Services;
use crate::store::Store;
use crate::{http, routes};

/// The running service: its parts and, with the embedded simulator, the simulator's
/// listener until it is served. Cheap to clone.
#[derive(Clone)]
pub struct App {
    services: Arc<Services>,
    /// With the built-in simulator chosen (see [`Config::saas_choice`]), its listener,
    /// bound at build time (so the client knows its address) and served from `serve`
    /// (once our callback address is known).
    embedded_saas: Arc<std::sync::Mutex<Option<TcpListener>>>,
}

/// The listeners, bound before the service starts (tests bind port 0 and read the
/// addresses back).
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
    pub admin: TcpListener,
    /// The card-details page's, when `widget.enabled`.
    pub widget: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let ListenConfig { public, internal, admin, widget } = config.listen;
        let bind = |addr| async move {
            TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        Ok(Self {
            public: bind(public).await?,
            internal: bind(internal).await?,
            admin: bind(admin).await?,
            widget: if config.widget.enabled { Some(bind(widget).await?) } else { None },
        })
    }
}

impl App {
    /// Opens the database (bringing its schema up to date) and builds every service.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Refused before the database is touched: no SaaS, and not the simulator's shape.
        config.saas_choice()?;
        crate::http::tls::install_crypto_provider();
        let store = Store::connect(&config.database).await?;
        Self::with_store(config, store)
    }

    /// Like [`App::build`] with a store already open.
    pub fn with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        let (base_url, embedded) = match config.saas_choice()? {
            SaasChoice::Remote { base_url } => (base_url.to_owned(), None),
            SaasChoice::Simulator { .. } => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                listener.set_nonblocking(true)?;
                let url = format!("http://{}", listener.local_addr()?);
                (url, Some(TcpListener::from_std(listener)?))
            }
        };
        let services = Services::build(config, store, &base_url, embedded.is_some())?;
        Ok(Self { services: Arc::new(services), embedded_saas: Arc::new(std::sync::Mutex::new(embedded)) })
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    pub fn config(&self) -> &Config {
        &self.services.config
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// Serves the listeners until `shutdown` is cancelled, then drains them.
    pub async fn serve(self, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tls = self.config().tls.as_ref().map(http::tls::acceptor).transpose()?;
        let widget_tls = self.config().widget.tls().as_ref().map(http::tls::acceptor).transpose()?;
        let http_config = self.config().http.clone();
        let fd_limit = http::fd_limit::ensure(3 + u64::from(listeners.widget.is_some()), http_config.max_connections as u64)?;
        tracing::debug!(fd_limit, "open-file limit");
        for (name, l) in [("public", &listeners.public), ("internal", &listeners.internal), ("admin", &listeners.admin)] {
            tracing::info!(listener = name, addr = %l.local_addr()?, tls = name == "public" && tls.is_some(), "listening");
        }
        if let Some(l) = &listeners.widget {
            let addr = l.local_addr()?;
            self.services.set_widget_listener(addr);
            let links = self.services.widget_url().unwrap_or_default();
            tracing::info!(listener = "widget", %addr, tls = widget_tls.is_some(), links, "listening");
        }
        let upkeep = tokio::spawn(metrics_upkeep(shutdown.clone()));
        let embedded = self.embedded_saas.lock().expect("not poisoned").take();
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
        metrics::gauge!("ctp_saas_simulator_in_use").set(if self.services.simulator_in_use { 1.0 } else { 0.0 });
        let reconciler = tokio::spawn(self.services.enrollment.clone().reconcile_loop(shutdown.clone()));
        let janitor =
            tokio::spawn(crate::store::retention::janitor(self.store().clone(), self.config().retention.clone(), shutdown.clone()));
        // The outbox relay stops with the listeners; a round under way is finished first.
        let relay = tokio::spawn(crate::notify::relay::run(self.store().clone(), self.config().outbox.clone(), shutdown.clone()));
        let public = tokio::spawn(http::server::serve(PUBLIC, listeners.public, tls, http_config.clone(), shutdown.clone(), {
            let services = self.services.clone();
            move |req| routes::public(services.clone(), req)
        }));
        let internal = tokio::spawn(http::server::serve(INTERNAL, listeners.internal, None, http_config.clone(), shutdown.clone(), {
            let services = self.services.clone();
            move |req| routes::internal(services.clone(), req)
        }));
        let admin = tokio::spawn(http::server::serve(ADMIN, listeners.admin, None, http_config.clone(), shutdown.clone(), {
            let services = self.services.clone();
            move |req| routes::admin(services.clone(), req)
        }));
        let widget = listeners.widget.map(|listener| {
            tokio::spawn(http::server::serve(WIDGET, listener, widget_tls, http_config, shutdown.clone(), {
                let services = self.services.clone();
                move |req| routes::widget(services.clone(), req)
            }))
        });
        let (a, b, c, d, e, f, g) = tokio::join!(public, internal, admin, upkeep, relay, reconciler, janitor);
        if let Some(widget) = widget {
            widget.await?;
        }
        a?;
        b?;
        c?;
        d?;
        e?;
        f?;
        g?;
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
const WIDGET: ListenerSpec = ListenerSpec { name: "widget", timeout_status: ::http::StatusCode::SERVICE_UNAVAILABLE };

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
