//! The service's parts, built once from the configuration: the domain services and the
//! keys every handler may need. Handlers take a [`Services`]; nothing below the handlers
//! does.

use std::sync::Arc;

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
            simulator_in_use,
        })
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

/// The declared tenants.
pub fn tenants_of(config: &Config) -> Tenants {
    Tenants::from_config(&config.tenants)
}
