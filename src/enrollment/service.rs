//! The enrollment service: starts Click to Pay operations, applies their results, heals
//! what a lost callback or a crash left behind, and keeps profiles. It owns every rule of
//! the loop; the store only stores, the SaaS client only speaks the contract.
//!
//! A start, in order: read the customer and its cards (one statement), decide by the
//! transition table, ask the store to move the statuses and record the request
//! IN_PROGRESS, guarded by the statuses read (one write); then call the SaaS and record
//! its trace id (one write). If a status moved between the read and the write, the store
//! writes nothing and the service reads and decides again. A SaaS refusal finishes the
//! request FAILED, which restores the statuses; a crash between the write and the call
//! leaves a request IN_PROGRESS without a trace id, which the reconciler submits again
//! under the same `requestId` (the SaaS answers a repeat with the first answer, so nothing
//! is done twice).
//!
//! A result (callback, poll, or a refusal at once) is applied the same way: read the
//! request with the statuses it moved, decide by the table, write everything (trace,
//! statuses, ids, the outbox event, the callback's id) in one guarded write.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::config::EnrollmentConfig;
use super::profile::{BillingAddress, EntityProfile, FieldError};
use super::status::{Refusal, plan_finish, plan_start};
use crate::ctp::{CtpEvent, CtpStatus, TraceStatus};
use crate::ids::{CorrelationId, EntityId, KitNo, TenantId};
use crate::notify::{RequestFailureData, RequestSuccessData, request_failure_payload, request_success_payload};
use crate::registry::CardRegistry;
use crate::saas::client::SaasError;
use crate::saas::wire::{self, Outcome, OutcomeResult, RequestState, SaasRequest};
use crate::saas::{SaasClient, scrub};
use crate::store::enrollment::{Changed, Finish, Finished, KitMove, NewTrace, OutboxRow, Start, StatusMove, TraceRow, TraceToFinish};
use crate::store::registry::{EntityRecord, KitState};
use crate::store::{Store, StoreError, epoch_millis};

/// How often a decision is made again when the statuses it was made on moved meanwhile
/// (another request for the same customer won the race) before giving up as "in progress".
const DECIDE_AGAIN: usize = 3;

/// The immediate answer to an operation (M2P's `result`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    pub tenant: String,
    pub entity_id: String,
    pub request_trace_id: String,
    pub event: &'static str,
    /// Our own id for the request (the SaaS's `requestId`): not part of M2P's answer.
    #[serde(skip)]
    pub request_id: String,
}

/// One operation to start.
#[derive(Debug, Clone)]
pub struct Operation {
    pub tenant: TenantId,
    pub entity_id: EntityId,
    pub kit_no: Option<KitNo>,
    pub event: CtpEvent,
    pub correlation_id: Option<CorrelationId>,
}

/// Why an operation did not start (nothing changed), or started and was refused at once
/// by the network (statuses restored, the request recorded FAILED).
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("entity not found")]
    EntityNotFound,
    #[error("kit not found")]
    KitNotFound,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("profile incomplete: {0}")]
    Incomplete(#[from] FieldError),
    #[error("network refused the request: {0}")]
    NetworkRejected(String),
    #[error("network unavailable: {0}")]
    NetworkUnavailable(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request's result, from a callback, a poll, or a refusal at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkResult {
    pub request_id: String,
    pub request_trace_id: Option<String>,
    pub succeeded: bool,
    pub click_to_pay_customer_id: Option<String>,
    /// `(kit_no, payment instrument id)` for each card the result names.
    pub instruments: Vec<(String, Option<String>)>,
    pub error_details: Option<String>,
}

/// Where a result comes from: a callback must be about a request of its own tenant and
/// event, and is applied once by its webhook id.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Callback {
        tenant: &'a str,
        event: CtpEvent,
        webhook_id: &'a str,
    },
    Reconciler,
    /// The SaaS refused the request as it was sent.
    Refusal,
}

impl Source<'_> {
    fn label(&self) -> &'static str {
        match self {
            Source::Callback { .. } => "callback",
            Source::Reconciler => "reconciler",
            Source::Refusal => "refusal",
        }
    }
}

/// What applying a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    DuplicateCallback,
    AlreadyFinished,
    /// No such request (in the callback's tenant).
    Unknown,
    /// A callback whose event is not its request's.
    WrongEvent,
    /// The statuses are not where the request left them: refused, nothing changed.
    IllegalTransition,
}

impl Applied {
    fn refusal_label(self) -> Option<&'static str> {
        match self {
            Applied::Applied => None,
            Applied::DuplicateCallback => Some("duplicate_callback"),
            Applied::AlreadyFinished => Some("already_finished"),
            Applied::Unknown => Some("unknown_request"),
            Applied::WrongEvent => Some("event_mismatch"),
            Applied::IllegalTransition => Some("illegal_transition"),
        }
    }
}

/// What saving a profile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSaved {
    pub created: bool,
    /// The automatic updates it started (M2P's rule: after the change has committed).
    pub updates: Vec<CtpEvent>,
}

/// The enrollment service. Cheap to clone.
#[derive(Clone)]
pub struct Enrollment {
    store: Store,
    saas: SaasClient,
    registry: CardRegistry,
    settings: Arc<EnrollmentConfig>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment").field("saas", &self.saas).finish_non_exhaustive()
    }
}

fn now() -> i64 {
    epoch_millis(SystemTime::now())
}

impl Enrollment {
    pub fn new(store: Store, saas: SaasClient, registry: CardRegistry, settings: EnrollmentConfig) -> Self {
        Self { store, saas, registry, settings: Arc::new(settings) }
    }

    pub fn saas(&self) -> &SaasClient {
        &self.saas
    }

    /// The entity as the registry holds it: its profile, statuses and cards.
    pub async fn entity(&self, tenant: &TenantId, entity_id: &EntityId) -> Result<Option<(EntityRecord, EntityProfile)>, StoreError> {
        let record = self.store.entity(tenant.as_str(), entity_id.as_str()).await?;
        Ok(record.map(|r| {
            let profile = EntityProfile::from_stored(r.profile.as_deref(), &r.imported);
            (r, profile)
        }))
    }

    /// Starts `op`: statuses moved and the request recorded, then the SaaS called.
    pub async fn start(&self, op: &Operation) -> Result<OperationAccepted, OperationError> {
        let (tenant, entity_id) = (op.tenant.as_str(), op.entity_id.as_str());
        for _ in 0..DECIDE_AGAIN {
            let record = self.store.entity(tenant, entity_id).await?.ok_or(OperationError::EntityNotFound)?;
            let profile = EntityProfile::from_stored(record.profile.as_deref(), &record.imported);
            let kit = match &op.kit_no {
                Some(kit_no) => Some(record.kit(kit_no.as_str()).ok_or(OperationError::KitNotFound)?),
                None => None,
            };
            let start = decide_start(op, &record, &profile, kit, self.settings.reconcile_after)?;
            match self.store.start_operation(&start, now()).await? {
                Changed::Meanwhile => continue,
                Changed::Done => {}
            }
            let request_id = start.trace.request_id.clone();
            metrics::counter!("ctp_operations_started_total", "event" => op.event.as_str()).increment(1);
            tracing::info!(
                tenant,
                entity_id,
                kit_no = op.kit_no.as_ref().map(KitNo::as_str).unwrap_or(""),
                event = op.event.as_str(),
                %request_id,
                correlation_id = op.correlation_id.as_ref().map(CorrelationId::as_str).unwrap_or(""),
                "operation started"
            );
            let submitted = self
                .submit(tenant, op.correlation_id.as_ref().map(CorrelationId::as_str), op.event, &request_id, &record, &profile, kit)
                .await;
            return match submitted {
                Ok(request_trace_id) => Ok(OperationAccepted {
                    tenant: tenant.to_owned(),
                    entity_id: entity_id.to_owned(),
                    request_trace_id,
                    event: op.event.as_str(),
                    request_id,
                }),
                Err(error) => {
                    tracing::warn!(tenant, entity_id, event = op.event.as_str(), error = %error, "SaaS call failed; rolling back");
                    let result = NetworkResult { request_id, error_details: Some(refusal_details(&error)), ..NetworkResult::default() };
                    self.finish(&result, Source::Refusal).await?;
                    Err(match error {
                        SaasError::Rejected { error_code, .. } => OperationError::NetworkRejected(error_code),
                        other => OperationError::NetworkUnavailable(other.kind()),
                    })
                }
            };
        }
        Err(Refusal::InProgress.into())
    }

    /// Builds the SaaS request from what was read, sends it, records the trace id.
    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &self,
        tenant: &str,
        correlation_id: Option<&str>,
        event: CtpEvent,
        request_id: &str,
        record: &EntityRecord,
        profile: &EntityProfile,
        kit: Option<&KitState>,
    ) -> Result<String, SaasError> {
        let request = self.build_request(event, request_id, record, profile, kit)?;
        let accepted = self.saas.submit(tenant, correlation_id, event, &request).await?;
        self.store
            .attach_request_trace_id(request_id, &accepted.request_trace_id, now())
            .await
            .map_err(|e| SaasError::Unavailable(format!("recording the trace id: {e}")))?;
        Ok(accepted.request_trace_id)
    }

    /// The VICA-shaped body for `event`: the consumer always, the card (with its number,
    /// opened only here) for registrations, additions and card updates, a bare reference
    /// for removals.
    fn build_request(
        &self,
        event: CtpEvent,
        request_id: &str,
        record: &EntityRecord,
        profile: &EntityProfile,
        kit: Option<&KitState>,
    ) -> Result<SaasRequest, SaasError> {
        let mut instruments = Vec::new();
        match (event, kit) {
            (CtpEvent::RegisterEntityAndKit | CtpEvent::AddKit | CtpEvent::UpdateKit, Some(kit)) => {
                let pan = self
                    .registry
                    .open(&record.tenant, &kit.kit_no, &kit.pan_sealed)
                    .map_err(|_| SaasError::InvalidRequest(format!("the sealed card number of kit {} cannot be opened", kit.kit_no)))?;
                instruments.push(wire::PaymentInstrument {
                    account_number: Some(pan),
                    name_on_card: kit.name_on_card.clone(),
                    expiration_date: kit.expiry.clone(),
                    billing_address: profile.billing_address.as_ref().map(billing_address),
                    ..wire::PaymentInstrument::reference(&kit.kit_no)
                });
            }
            (CtpEvent::RemoveKit, Some(kit)) => instruments.push(wire::PaymentInstrument::reference(&kit.kit_no)),
            _ => {}
        }
        Ok(SaasRequest {
            request_id: request_id.into(),
            intent: wire::Intent::default(),
            consumer_information: consumer_information(&record.entity_id, profile),
            payment_instruments: instruments,
            click_to_pay_customer_id: record.click_to_pay_customer_id.clone(),
        })
    }

    /// Applies a request's result, counting what was refused.
    pub async fn finish(&self, result: &NetworkResult, source: Source<'_>) -> Result<Applied, StoreError> {
        let applied = self.apply_result(result, source).await?;
        if let Some(reason) = applied.refusal_label() {
            tracing::info!(reason, source = source.label(), request_id = %result.request_id, "result refused; nothing changed");
            metrics::counter!("ctp_illegal_transitions_total", "reason" => reason, "source" => source.label()).increment(1);
        }
        Ok(applied)
    }

    async fn apply_result(&self, result: &NetworkResult, source: Source<'_>) -> Result<Applied, StoreError> {
        for _ in 0..DECIDE_AGAIN {
            let Some(ctx) = self.store.trace_to_finish(&result.request_id).await? else { return Ok(Applied::Unknown) };
            let webhook_id = match source {
                Source::Callback { tenant, event, webhook_id } => {
                    if ctx.trace.tenant != tenant {
                        return Ok(Applied::Unknown);
                    }
                    if ctx.trace.event != event {
                        return Ok(Applied::WrongEvent);
                    }
                    Some(webhook_id.to_owned())
                }
                Source::Reconciler | Source::Refusal => None,
            };
            if ctx.trace.status != TraceStatus::InProgress {
                return Ok(Applied::AlreadyFinished);
            }
            let Some(finish) = decide_finish(&ctx, result, webhook_id) else { return Ok(Applied::IllegalTransition) };
            match self.store.finish_operation(&finish, now()).await? {
                Finished::StatusesMoved => continue,
                Finished::DuplicateCallback => return Ok(Applied::DuplicateCallback),
                Finished::AlreadyFinished => return Ok(Applied::AlreadyFinished),
                Finished::Applied => {
                    let status = finish.status.as_str();
                    tracing::info!(request_id = %result.request_id, event = %ctx.trace.event, status, source = source.label(), "request finished");
                    metrics::counter!("ctp_operations_finished_total", "event" => ctx.trace.event.as_str(), "status" => status)
                        .increment(1);
                    return Ok(Applied::Applied);
                }
            }
        }
        Ok(Applied::IllegalTransition)
    }

    /// Saves an entity's profile; if the entity is ACTIVE on Click to Pay and its names,
    /// emails or phones changed, sends CTP_UPDATE_ENTITY, and if its address changed,
    /// CTP_UPDATE_KIT for each active card: in the background, after the commit.
    pub async fn save_profile(
        &self,
        tenant: &TenantId,
        entity_id: &EntityId,
        profile: &EntityProfile,
        correlation_id: Option<CorrelationId>,
    ) -> Result<ProfileSaved, StoreError> {
        let document = serde_json::to_string(profile).expect("a profile serializes");
        for _ in 0..DECIDE_AGAIN {
            let record = self.store.entity(tenant.as_str(), entity_id.as_str()).await?;
            let before = record.as_ref().and_then(|r| r.profile.clone());
            if !self.store.save_profile(tenant.as_str(), entity_id.as_str(), &document, before.as_deref(), now()).await? {
                continue;
            }
            let Some(record) = record else { return Ok(ProfileSaved { created: true, updates: Vec::new() }) };
            let previous = EntityProfile::from_stored(before.as_deref(), &record.imported);
            let mut jobs: Vec<(CtpEvent, Option<KitNo>)> = Vec::new();
            if record.ctp_status == CtpStatus::Active {
                if previous.identity_differs(profile) {
                    jobs.push((CtpEvent::UpdateEntity, None));
                }
                if previous.address_differs(profile) {
                    let active = record.kits.iter().filter(|k| k.ctp_status == CtpStatus::Active);
                    jobs.extend(active.filter_map(|k| KitNo::parse(&k.kit_no).ok()).map(|k| (CtpEvent::UpdateKit, Some(k))));
                }
            }
            let updates = jobs.iter().map(|(e, _)| *e).collect();
            self.spawn_updates(tenant, entity_id, jobs, correlation_id);
            return Ok(ProfileSaved { created: false, updates });
        }
        // Three saves in a row lost to concurrent ones: the last writer's profile stands.
        Ok(ProfileSaved { created: false, updates: Vec::new() })
    }

    fn spawn_updates(
        &self,
        tenant: &TenantId,
        entity_id: &EntityId,
        jobs: Vec<(CtpEvent, Option<KitNo>)>,
        correlation_id: Option<CorrelationId>,
    ) {
        if jobs.is_empty() {
            return;
        }
        let (service, tenant, entity_id) = (self.clone(), tenant.clone(), entity_id.clone());
        tokio::spawn(async move {
            for (event, kit_no) in jobs {
                let op = Operation {
                    tenant: tenant.clone(),
                    entity_id: entity_id.clone(),
                    kit_no,
                    event,
                    correlation_id: correlation_id.clone(),
                };
                if let Err(e) = service.start(&op).await {
                    tracing::warn!(%tenant, %entity_id, event = event.as_str(), error = %e, "automatic update not sent");
                    metrics::counter!("ctp_automatic_updates_failed_total", "event" => event.as_str()).increment(1);
                }
            }
        });
    }

    /// Where a request stands, by the trace id we answered with (or our request id).
    pub async fn request(&self, tenant: &TenantId, id: &str) -> Result<Option<TraceRow>, StoreError> {
        self.store.request_trace(tenant.as_str(), id).await
    }

    /// The network's view of the consumer (SaaS `getData`), with the settled statuses it
    /// reports written back (M2P's "fetch entity details" does so). `None` when the network
    /// does not know the consumer or cannot be reached (then the caller answers from our
    /// records).
    pub async fn refresh_from_network(
        &self,
        tenant: &TenantId,
        entity_id: &EntityId,
        correlation_id: Option<&CorrelationId>,
    ) -> Result<Option<wire::Profile>, StoreError> {
        let network = self.saas.get_data_correlated(tenant.as_str(), correlation_id.map(CorrelationId::as_str), entity_id.as_str()).await;
        let profile = match network {
            Ok(profile) => profile,
            Err(e) => {
                tracing::warn!(error = %e, "getData failed; answering from our records");
                return Ok(None);
            }
        };
        let Some(profile) = profile else { return Ok(None) };
        for _ in 0..DECIDE_AGAIN {
            let Some(record) = self.store.entity(tenant.as_str(), entity_id.as_str()).await? else { return Ok(Some(profile)) };
            let (entity, kits) = decide_sync(&record, &profile);
            if kits.is_empty() && entity.from == entity.to {
                break;
            }
            if self.store.move_statuses(tenant.as_str(), entity_id.as_str(), entity, &kits, now()).await? == Changed::Done {
                break;
            }
        }
        Ok(Some(profile))
    }

    /// The reconciler: every `reconcile_interval`, claims requests IN_PROGRESS past their
    /// poll time and asks the SaaS where they stand (or submits them again if they never
    /// reached it). Safe in every replica: a claim pushes the poll time ahead, and a result
    /// is applied only to a request still IN_PROGRESS.
    pub async fn reconcile_loop(self, shutdown: CancellationToken) {
        let settings = self.settings.clone();
        let permits = Arc::new(Semaphore::new(settings.reconcile_concurrency));
        let mut tick = tokio::time::interval(settings.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let lease = settings.reconcile_after.max(Duration::from_secs(1));
            let due = match self.store.claim_due_traces(now(), lease, (settings.reconcile_concurrency * 8) as i64).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciler cannot read requests");
                    continue;
                }
            };
            let mut tasks = tokio::task::JoinSet::new();
            for trace in due {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let service = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = service.reconcile_one(&trace).await {
                        tracing::warn!(request_id = %trace.request_id, error = %e, "reconcile failed; will retry");
                    }
                    drop(permit);
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Heals one request.
    pub async fn reconcile_one(&self, trace: &TraceRow) -> Result<(), ReconcileError> {
        metrics::counter!("ctp_reconciler_polls_total", "event" => trace.event.as_str()).increment(1);
        let trace_id = match &trace.request_trace_id {
            Some(id) => id.clone(),
            None => {
                // Recorded IN_PROGRESS but never (knowingly) sent: send it now, same requestId.
                let record = self.store.entity(&trace.tenant, &trace.entity_id).await?.ok_or(ReconcileError::EntityGone)?;
                let profile = EntityProfile::from_stored(record.profile.as_deref(), &record.imported);
                let kit = trace.kit_no.as_deref().and_then(|k| record.kit(k));
                let correlation_id = trace.correlation_id.as_deref();
                match self.submit(&trace.tenant, correlation_id, trace.event, &trace.request_id, &record, &profile, kit).await {
                    Ok(id) => id,
                    Err(error @ SaasError::Rejected { .. }) => {
                        let result = NetworkResult {
                            request_id: trace.request_id.clone(),
                            error_details: Some(refusal_details(&error)),
                            ..NetworkResult::default()
                        };
                        self.finish(&result, Source::Reconciler).await?;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        match self.saas.status(&trace.tenant, &trace_id).await? {
            Some(status) if status.status == RequestState::Completed => {
                let outcome = status.outcome.as_ref().ok_or(ReconcileError::NoOutcome)?;
                let result = result_of(trace.event, &trace.request_id, &trace_id, outcome);
                self.finish(&result, Source::Reconciler).await?;
            }
            Some(_) => {} // still in progress: the claim pushed the next look ahead
            None => return Err(ReconcileError::UnknownToSaas),
        }
        Ok(())
    }
}

/// Why one request could not be healed this round (it is tried again the next).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Saas(#[from] SaasError),
    #[error("the SaaS answered COMPLETED without an outcome")]
    NoOutcome,
    #[error("the SaaS does not know this request")]
    UnknownToSaas,
    #[error("the request's entity is no longer in the registry")]
    EntityGone,
}

/// The error details recorded when the SaaS refused a request as it was sent.
fn refusal_details(error: &SaasError) -> String {
    match error {
        SaasError::Rejected { error_code, .. } => format!("{error_code}: refused by the Click to Pay network"),
        other => format!("{}: {other}", other.kind()),
    }
}

/// What starting `op` changes, decided by the transition table on what was read.
/// `reconcile_after`: how long the request may go without a result before the reconciler
/// polls it.
fn decide_start(
    op: &Operation,
    record: &EntityRecord,
    profile: &EntityProfile,
    kit: Option<&KitState>,
    reconcile_after: Duration,
) -> Result<Start, OperationError> {
    if op.event == CtpEvent::RegisterEntityAndKit {
        profile.ready_for_registration()?;
    }
    let plan = plan_start(op.event, record.ctp_status, kit.map(|k| k.ctp_status))?;
    let entity = StatusMove { from: record.ctp_status, to: plan.entity.unwrap_or(record.ctp_status) };
    let kits = match (op.event, plan.kit, kit) {
        // Every ACTIVE card of the customer goes with it.
        (CtpEvent::RemoveEntity, Some(to), _) => record
            .kits
            .iter()
            .filter(|k| k.ctp_status == CtpStatus::Active)
            .map(|k| KitMove { kit_no: k.kit_no.clone(), status: StatusMove { from: CtpStatus::Active, to }, payment_instrument_id: None })
            .collect(),
        (_, to, Some(kit)) => vec![KitMove {
            kit_no: kit.kit_no.clone(),
            // A card the operation does not move must still be where it was read.
            status: StatusMove { from: kit.ctp_status, to: to.unwrap_or(kit.ctp_status) },
            payment_instrument_id: None,
        }],
        _ => Vec::new(),
    };
    Ok(Start {
        tenant: op.tenant.to_string(),
        entity_id: op.entity_id.to_string(),
        entity,
        kits,
        trace: NewTrace {
            request_id: uuid::Uuid::new_v4().to_string(),
            kit_no: op.kit_no.as_ref().map(KitNo::to_string),
            event: op.event,
            entity_before: record.ctp_status,
            kit_before: kit.map(|k| k.ctp_status),
            correlation_id: op.correlation_id.as_ref().map(CorrelationId::to_string),
            next_poll_at: epoch_millis(SystemTime::now() + reconcile_after),
        },
    })
}

/// What a result changes, decided by the transition table; `None` if the statuses are not
/// where the request left them (an illegal transition: refused, nothing changes).
fn decide_finish(ctx: &TraceToFinish, result: &NetworkResult, webhook_id: Option<String>) -> Option<Finish> {
    let trace = &ctx.trace;
    let event = trace.event;
    let ok = result.succeeded;
    let moves_statuses = !matches!(event, CtpEvent::UpdateEntity | CtpEvent::UpdateKit);
    let entity_to = if moves_statuses && matches!(event, CtpEvent::RegisterEntityAndKit | CtpEvent::RemoveEntity) {
        plan_finish(event, ctx.entity_now, ctx.entity_before, ok)?
    } else {
        ctx.entity_now
    };
    let moving: Vec<(String, CtpStatus)> = match (event, &trace.kit_no) {
        _ if !moves_statuses => Vec::new(),
        (CtpEvent::RemoveEntity, _) => ctx.kits_now.iter().filter(|(_, s)| *s == CtpStatus::RemovalInProgress).cloned().collect(),
        (_, Some(kit)) => ctx.kits_now.iter().filter(|(k, _)| k == kit).cloned().collect(),
        _ => Vec::new(),
    };
    // A customer removal names no card, so its trace keeps no card status to restore; the
    // cards it moved were every ACTIVE one (`decide_start`), and ACTIVE is where they go
    // back if it fails.
    let kit_before = if event == CtpEvent::RemoveEntity { CtpStatus::Active } else { ctx.kit_before };
    let mut kits = Vec::with_capacity(moving.len());
    for (kit_no, from) in moving {
        let to = plan_finish(event, from, kit_before, ok)?;
        let instrument = if ok { result.instruments.iter().find(|(k, _)| *k == kit_no).and_then(|(_, id)| id.clone()) } else { None };
        kits.push(KitMove { kit_no, status: StatusMove { from, to }, payment_instrument_id: instrument });
    }
    let named_kit = trace.kit_no.as_ref().and_then(|k| kits.iter().find(|m| m.kit_no == *k));
    let customer_id = if ok { result.click_to_pay_customer_id.clone() } else { None };
    let request_trace_id = trace.request_trace_id.clone().or_else(|| result.request_trace_id.clone());
    let error_details = if ok { None } else { Some(result.error_details.clone().unwrap_or_else(|| "no details".into())) };
    let payload = if ok {
        request_success_payload(
            event.as_str(),
            RequestSuccessData {
                entity_id: &trace.entity_id,
                kit_no: trace.kit_no.as_deref(),
                request_trace_id: request_trace_id.as_deref(),
                request_status: TraceStatus::Success.as_str(),
                transaction_type: event.as_str(),
                ctp_entity_status: entity_to.as_str(),
                ctp_kit_status: named_kit.map(|m| m.status.to.as_str()),
                ctp_entity_id: customer_id.as_deref().or(ctx.click_to_pay_customer_id.as_deref()),
                ctp_kit_id: named_kit.and_then(|m| m.payment_instrument_id.as_deref()),
                tenant: &trace.tenant,
            },
        )
    } else {
        request_failure_payload(
            event.as_str(),
            RequestFailureData {
                entity_id: &trace.entity_id,
                kit_no: trace.kit_no.as_deref(),
                request_trace_id: request_trace_id.as_deref(),
                request_status: TraceStatus::Failed.as_str(),
                transaction_type: event.as_str(),
                message: "CTP FAILURE: Request Rejected",
                error_details: error_details.as_deref().unwrap_or_default(),
                tenant: &trace.tenant,
            },
        )
    };
    Some(Finish {
        tenant: trace.tenant.clone(),
        entity_id: trace.entity_id.clone(),
        request_id: trace.request_id.clone(),
        webhook_id,
        status: if ok { TraceStatus::Success } else { TraceStatus::Failed },
        request_trace_id,
        error_details,
        entity: StatusMove { from: ctx.entity_now, to: entity_to },
        click_to_pay_customer_id: customer_id,
        kits,
        outbox: OutboxRow { tenant: trace.tenant.clone(), event_type: event.as_str().to_owned(), payload },
    })
}

/// The settled statuses the network reports that differ from ours: statuses a request of
/// ours is moving (`*_IN_PROGRESS`) stay as they are, and only cards of this entity count.
fn decide_sync(record: &EntityRecord, profile: &wire::Profile) -> (StatusMove, Vec<KitMove>) {
    let settled = |s: CtpStatus| !s.in_flight();
    let entity = match CtpStatus::parse(&profile.status) {
        Some(to) if settled(record.ctp_status) && settled(to) => StatusMove { from: record.ctp_status, to },
        _ => StatusMove::stays(record.ctp_status),
    };
    let kits = profile
        .payment_instruments
        .iter()
        .filter_map(|i| {
            let kit = record.kit(&i.external_instrument_id)?;
            let to = CtpStatus::parse(&i.status).filter(|to| settled(*to) && settled(kit.ctp_status) && *to != kit.ctp_status)?;
            Some(KitMove { kit_no: kit.kit_no.clone(), status: StatusMove { from: kit.ctp_status, to }, payment_instrument_id: None })
        })
        .collect();
    (entity, kits)
}

/// Turns a SaaS outcome into a result. VIDC-2000 (consumer already enrolled) on a
/// registration and VIDC-2004 (card already exists) on an addition mean the network
/// already has what we asked for: an earlier attempt of ours got through.
pub fn result_of(event: CtpEvent, request_id: &str, request_trace_id: &str, outcome: &Outcome) -> NetworkResult {
    let already_done = outcome.error.as_ref().is_some_and(|e| {
        wire::code::means_already_done(&e.error_code) && matches!(event, CtpEvent::RegisterEntityAndKit | CtpEvent::AddKit)
    });
    NetworkResult {
        request_id: request_id.into(),
        request_trace_id: Some(request_trace_id.into()),
        succeeded: outcome.result == OutcomeResult::Success || already_done,
        click_to_pay_customer_id: outcome.click_to_pay_customer_id.clone(),
        instruments: outcome
            .payment_instruments
            .iter()
            .map(|i| (i.external_instrument_id.clone(), i.payment_instrument_id.clone()))
            .collect(),
        error_details: outcome.error.as_ref().map(|e| format!("{}: {}", e.error_code, scrub(&e.message))),
    }
}

fn consumer_information(entity_id: &str, p: &EntityProfile) -> wire::ConsumerInformation {
    wire::ConsumerInformation {
        external_consumer_id: entity_id.into(),
        first_name: p.first_name.clone(),
        middle_name: p.middle_name.clone(),
        last_name: p.last_name.clone(),
        emails: p.emails.clone(),
        phones: p.phones.clone(),
        locale: p.locale.clone(),
        country_code: p.country_code.clone(),
        national_identifiers: p
            .national_identifiers
            .iter()
            .map(|n| wire::NationalIdentifier { kind: n.kind.clone(), value: n.value.clone() })
            .collect(),
        consent: p.consent.as_ref().map(|c| wire::Consent {
            time_of_consent: c.time_of_consent.clone(),
            version: c.version.clone(),
            presenter: c.presenter.clone(),
        }),
    }
}

fn billing_address(a: &BillingAddress) -> wire::BillingAddress {
    wire::BillingAddress {
        address_line1: Some(a.address_line1.clone()),
        address_line2: a.address_line2.clone(),
        address_line3: a.address_line3.clone(),
        city: Some(a.city.clone()),
        state: a.state.clone(),
        postal_code: Some(a.postal_code.clone()),
        country: Some(a.country.clone()),
    }
}
