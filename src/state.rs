//! The service's parts, built once from the configuration: the domain services and the
//! keys every handler may need. Handlers take a [`Services`]; nothing below the handlers
//! does.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use arc_swap::ArcSwap;

use crate::attempts::AttemptRecorder;
use crate::auth::ApiAuth;
use crate::config::Config;
use crate::enrollment::Enrollment;
use crate::pan::PanKeys;
use crate::registry::CardRegistry;
use crate::saas::SaasClient;
use crate::store::Store;
use crate::tenants::Tenants;
use crate::visa::{ReplayPolicy, VisaKeyRing};
use crate::webhook::WebhookVerifier;
use crate::widget::{LinkKeys, RegistryCards, SoftwareCvv, StoreLedger, Widget};

/// The card-details page on the service's parts: links in the database, cards from the
/// registry, CVV2s from the CVK files. A bank whose CVKs live in an HSM implements
/// `widget::CvvGenerator` with its HSM's CVV command and names that type here instead of
/// [`SoftwareCvv`].
pub type CardDetailsPage = Widget<StoreLedger, RegistryCards, SoftwareCvv>;

/// Everything a request handler may call. Shared behind an `Arc`.
pub struct Services {
    pub config: Config,
    pub store: Store,
    pub tenants: Arc<Tenants>,
    pub keys: Arc<PanKeys>,
    visa_keys: ArcSwap<VisaKeyRing>,
    pub api_auth: ApiAuth,
    pub callbacks: WebhookVerifier,
    pub registry: CardRegistry,
    pub enrollment: Enrollment,
    pub attempts: AttemptRecorder,
    /// The card-details page, unless `widget.enabled` is off.
    pub widget: Option<CardDetailsPage>,
    /// The page's address that links name: known once the widget listener is bound.
    widget_url: OnceLock<String>,
    /// Whether the SaaS layer is the built-in simulator (said by `/readyz` and a gauge).
    pub simulator_in_use: bool,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("store", &self.store).field("tenants", &self.tenants).finish_non_exhaustive()
    }
}

impl Services {
    /// Loads every key and builds the services on `store`; the SaaS layer is at `saas_url`.
    pub fn build(config: Config, store: Store, saas_url: &str, simulator_in_use: bool) -> anyhow::Result<Self> {
        let visa_keys = VisaKeyRing::load(&config.keys_dir, &config.visa.jws_algorithm_names())?;
        tracing::info!(keys = ?visa_keys, "Visa notification keys loaded");
        let keys = Arc::new(PanKeys::load(&config.keys_dir, &config.pan.fingerprint_version, &config.pan.encryption_version)?);
        let api_auth = ApiAuth::load(&config.auth, &config.keys_dir)?;
        let callbacks = WebhookVerifier::load_dir(&config.saas.webhook_secrets_dir(&config.keys_dir), config.saas.webhook_tolerance)?;
        if callbacks.is_empty() {
            anyhow::bail!("no SaaS webhook secret: add KEYS_DIR/saas/webhook-<id>.secret");
        }
        let tenants = Arc::new(tenants_of(&config));
        if tenants.single_issuer() {
            tracing::warn!("no tenant declared: serving a single issuer, every tenant name accepted and every card its own");
        }
        let saas = SaasClient::new(saas_url, &config.saas)?;
        let registry = CardRegistry::new(store.clone(), keys.clone(), tenants.clone());
        let enrollment = Enrollment::new(store.clone(), saas, registry.clone(), config.enrollment.clone());
        let attempts = AttemptRecorder::new(store.clone(), keys.clone(), tenants.clone());
        let widget = if config.widget.enabled { Some(card_details_page(&config, &store, &registry, &tenants)?) } else { None };
        Ok(Self {
            config,
            store,
            tenants,
            keys,
            visa_keys: ArcSwap::from_pointee(visa_keys),
            api_auth,
            callbacks,
            registry,
            enrollment,
            attempts,
            widget,
            widget_url: OnceLock::new(),
            simulator_in_use,
        })
    }

    /// Records where the widget listener is bound, for the links' address (unless
    /// `widget.public_url` names another). Once; later calls change nothing.
    pub fn set_widget_listener(&self, bound: SocketAddr) {
        let _ = self.widget_url.set(self.config.widget.page_url(bound));
    }

    /// The page's address that links name, once known.
    pub fn widget_url(&self) -> Option<&str> {
        self.widget_url.get().map(String::as_str).or(self.config.widget.public_url.as_deref())
    }

    /// The current Visa key ring. Held for one request; a reload swaps in a new one.
    pub fn visa_keys(&self) -> Arc<VisaKeyRing> {
        self.visa_keys.load_full()
    }

    pub fn replay_policy(&self) -> ReplayPolicy {
        ReplayPolicy { window: self.config.visa.replay_window, require_iat: self.config.visa.require_iat }
    }

    /// Re-reads the Visa key directories (on SIGHUP). A failed reload keeps the old ring.
    pub fn reload_visa_keys(&self) -> anyhow::Result<()> {
        let ring = VisaKeyRing::load(&self.config.keys_dir, &self.config.visa.jws_algorithm_names())?;
        tracing::info!(keys = ?ring, "Visa notification keys reloaded");
        self.visa_keys.store(Arc::new(ring));
        Ok(())
    }
}

/// The card-details page: its link keys (`KEYS_DIR/widget`), the tenants' CVKs
/// (`KEYS_DIR/cvk`), its settings.
fn card_details_page(config: &Config, store: &Store, registry: &CardRegistry, tenants: &Tenants) -> anyhow::Result<CardDetailsPage> {
    let widget = &config.widget;
    let keys = LinkKeys::load(&config.keys_dir, &widget.link_key_version).context("card-details link keys")?;
    let cvv = SoftwareCvv::load(&config.keys_dir).context("card verification keys")?;
    tracing::info!(links = ?keys, cvk = ?cvv, "card-details page keys loaded");
    for tenant in tenants.declared() {
        if !cvv.tenants().any(|t| t == tenant.id) {
            tracing::warn!(tenant = %tenant.id, "no card verification key (KEYS_DIR/cvk/<tenant>.key): its card-details pages will fail");
        }
    }
    let settings = widget.settings(tenants).map_err(anyhow::Error::msg)?;
    let ledger = StoreLedger::new(store.clone());
    let cards = RegistryCards::new(store.clone(), registry.clone());
    Ok(Widget::new(Arc::new(keys), settings, ledger, cards, cvv))
}

/// The declared tenants.
pub fn tenants_of(config: &Config) -> Tenants {
    Tenants::from_config(&config.tenants)
}
