//! The enrollment service: starts Click to Pay operations, applies their results, and
//! heals what a lost callback or a crash left behind.
//!
//! The order of a start is the design's flow 2: the status table is consulted and the
//! request recorded IN_PROGRESS in one transaction, *then* the SaaS is called. A SaaS
//! refusal rolls the statuses back (the request ends FAILED); a crash between the two
//! steps leaves an IN_PROGRESS request without a trace id, which the reconciler submits
//! again under the same `requestId` (the SaaS answers a repeat with the first answer, so
//! nothing is done twice).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{CtpEvent, CtpStatus, EntityProfile, Refusal};
use crate::app::App;
use crate::registry::import::sealing_context;
use crate::saas::client::SaasError;
use crate::saas::wire::{self, Outcome, OutcomeResult, RequestState, SaasRequest};
use crate::store::enrollment::{Finish, FinishOutcome, NewOperation, StartError, TraceRow};
use crate::store::{StoreError, epoch_millis};

/// The immediate answer to an operation (seed 000's `result`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    pub tenant: String,
    pub entity_id: String,
    pub request_trace_id: String,
    pub event: &'static str,
}

/// Why an operation did not start (nothing changed), or started and was refused at once
/// by the network (statuses rolled back, the request recorded FAILED).
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("entity not found")]
    EntityNotFound,
    #[error("kit not found")]
    KitNotFound,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("profile incomplete: {0}")]
    Incomplete(#[from] super::profile::FieldError),
    #[error("network refused the request: {0}")]
    NetworkRejected(String),
    #[error("network unavailable: {0}")]
    NetworkUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealed card number of kit {0} cannot be opened")]
    Unseal(String),
}

impl From<StartError> for OperationError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::EntityNotFound => Self::EntityNotFound,
            StartError::KitNotFound => Self::KitNotFound,
            StartError::Refused(r) => Self::Refused(r),
            StartError::Store(s) => Self::Store(s),
        }
    }
}

/// Starts `event` for an entity (and a kit, where the event names one).
pub async fn start(
    app: &App,
    tenant: &str,
    entity_id: &str,
    kit_no: Option<&str>,
    event: CtpEvent,
    correlation_id: Option<&str>,
) -> Result<OperationAccepted, OperationError> {
    let store = app.store();
    if event == CtpEvent::RegisterEntityAndKit {
        let entity = store.entity_view(tenant, entity_id).await?.ok_or(OperationError::EntityNotFound)?;
        entity.profile.ready_for_registration()?;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let next_poll_at = epoch_millis(SystemTime::now() + app.config().enrollment.reconcile_after);
    let op = NewOperation { tenant, entity_id, kit_no, event, request_id: &request_id, correlation_id, next_poll_at };
    store.start_operation(&op).await?;
    metrics::counter!("ctp_operations_started_total", "event" => event.as_str()).increment(1);
    tracing::info!(tenant, entity_id, kit_no = kit_no.unwrap_or(""), event = event.as_str(), %request_id, correlation_id = correlation_id.unwrap_or(""), "operation started");

    match submit(app, &op).await {
        Ok(trace_id) => {
            Ok(OperationAccepted { tenant: tenant.into(), entity_id: entity_id.into(), request_trace_id: trace_id, event: event.as_str() })
        }
        Err(error) => {
            let details = match &error {
                SaasError::Rejected { error_code, .. } => format!("{error_code}: refused by the Click to Pay network"),
                other => format!("{}: {other}", other.kind()),
            };
            tracing::warn!(tenant, entity_id, event = event.as_str(), error = %error, "SaaS call failed; rolling back");
            let finish = Finish { request_id: Some(request_id), succeeded: false, error_details: Some(details), ..Finish::default() };
            store.finish_operation(&finish).await?;
            Err(match error {
                SaasError::Rejected { error_code, .. } => OperationError::NetworkRejected(error_code),
                other => OperationError::NetworkUnavailable(other.kind().into()),
            })
        }
    }
}

/// Builds the SaaS request from what is stored now, sends it, records the trace id.
async fn submit(app: &App, op: &NewOperation<'_>) -> Result<String, SaasError> {
    let request = build_request(app, op).await.map_err(|e| SaasError::InvalidRequest(e.to_string()))?;
    let accepted = app.saas().submit(op.tenant, op.correlation_id, op.event, &request).await?;
    app.store()
        .attach_request_trace_id(op.request_id, &accepted.request_trace_id)
        .await
        .map_err(|e| SaasError::Unavailable(format!("recording the trace id: {e}")))?;
    Ok(accepted.request_trace_id)
}

/// The VICA-shaped body for `event`: the consumer always, the card (with its number,
/// unsealed only here) for registrations, additions and card updates, a bare reference
/// for removals.
async fn build_request(app: &App, op: &NewOperation<'_>) -> Result<SaasRequest, OperationError> {
    let NewOperation { tenant, entity_id, kit_no, event, request_id, .. } = *op;
    let store = app.store();
    let entity = store.entity_view(tenant, entity_id).await?.ok_or(OperationError::EntityNotFound)?;
    let consumer = consumer_information(entity_id, &entity.profile);
    let mut instruments = Vec::new();
    match (event, kit_no) {
        (CtpEvent::RegisterEntityAndKit | CtpEvent::AddKit | CtpEvent::UpdateKit, Some(kit_no)) => {
            let kit = store.kit_for_network(tenant, kit_no).await?.ok_or(OperationError::KitNotFound)?;
            let pan = app
                .pan_keys()
                .open(&kit.pan_sealed, &sealing_context(tenant, kit_no))
                .map_err(|_| OperationError::Unseal(kit_no.into()))?;
            instruments.push(wire::PaymentInstrument {
                account_number: Some(pan),
                name_on_card: kit.name_on_card,
                expiration_date: kit.expiry,
                billing_address: entity.profile.billing_address.as_ref().map(billing_address),
                ..wire::PaymentInstrument::reference(kit_no)
            });
        }
        (CtpEvent::RemoveKit, Some(kit_no)) => instruments.push(wire::PaymentInstrument::reference(kit_no)),
        _ => {}
    }
    Ok(SaasRequest {
        request_id: request_id.into(),
        intent: wire::Intent::default(),
        consumer_information: consumer,
        payment_instruments: instruments,
        click_to_pay_customer_id: entity.click_to_pay_customer_id,
    })
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

fn billing_address(a: &super::profile::BillingAddress) -> wire::BillingAddress {
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

/// Turns a SaaS outcome into what the store applies. VIDC-2000 (already enrolled) on a
/// registration and VIDC-2004 (card exists) on an addition mean the network already has
/// what we asked for: an earlier attempt of ours got through (protocol.md §2).
pub fn finish_from_outcome(
    event: CtpEvent,
    request_id: &str,
    request_trace_id: &str,
    outcome: &Outcome,
    webhook_id: Option<String>,
) -> Finish {
    let already_done = outcome.error.as_ref().is_some_and(|e| {
        wire::code::means_already_done(&e.error_code) && matches!(event, CtpEvent::RegisterEntityAndKit | CtpEvent::AddKit)
    });
    let succeeded = outcome.result == OutcomeResult::Success || already_done;
    Finish {
        request_id: Some(request_id.into()),
        request_trace_id: Some(request_trace_id.into()),
        succeeded,
        click_to_pay_customer_id: outcome.click_to_pay_customer_id.clone(),
        instruments: outcome
            .payment_instruments
            .iter()
            .map(|i| (i.external_instrument_id.clone(), i.payment_instrument_id.clone()))
            .collect(),
        error_details: outcome.error.as_ref().map(|e| format!("{}: {}", e.error_code, crate::saas::scrub(&e.message))),
        webhook_id,
    }
}

/// Applies a result, counting what was refused.
pub async fn apply(app: &App, finish: &Finish, source: &'static str) -> Result<FinishOutcome, StoreError> {
    let outcome = app.store().finish_operation(finish).await?;
    let label = match &outcome {
        FinishOutcome::Applied { trace, .. } => {
            tracing::info!(request_id = %trace.request_id, event = %trace.event, status = %trace.status_ctp, source, "request finished");
            metrics::counter!("ctp_operations_finished_total", "event" => CtpEvent::parse(&trace.event).map(CtpEvent::as_str).unwrap_or("unknown"), "status" => if finish.succeeded { "SUCCESS" } else { "FAILED" }).increment(1);
            None
        }
        FinishOutcome::DuplicateCallback => Some("duplicate_callback"),
        FinishOutcome::AlreadyFinished { .. } => Some("already_finished"),
        FinishOutcome::IllegalTransition { .. } => Some("illegal_transition"),
        FinishOutcome::Unknown => Some("unknown_request"),
    };
    if let Some(reason) = label {
        tracing::info!(reason, source, "result refused; nothing changed");
        metrics::counter!("ctp_illegal_transitions_total", "reason" => reason, "source" => source).increment(1);
    }
    Ok(outcome)
}

/// The reconciler: every `reconcile_interval`, claims requests IN_PROGRESS past their poll
/// time and asks the SaaS where they stand (or submits them again if they never reached
/// it). Safe in every replica: a claim pushes the poll time ahead, and the store applies a
/// result only to a request still IN_PROGRESS.
pub async fn reconcile_loop(app: App, shutdown: CancellationToken) {
    let config = app.config().enrollment.clone();
    let permits = Arc::new(Semaphore::new(config.reconcile_concurrency));
    let mut tick = tokio::time::interval(config.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = epoch_millis(SystemTime::now());
        let lease = config.reconcile_after.max(Duration::from_secs(1)).as_millis() as i64;
        let due = match app.store().claim_due_traces(now, lease, (config.reconcile_concurrency * 8) as i64).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler cannot read requests");
                continue;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for trace in due {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let app = app.clone();
            tasks.spawn(async move {
                if let Err(e) = reconcile_one(&app, &trace).await {
                    tracing::warn!(request_id = %trace.request_id, error = %e, "reconcile failed; will retry");
                }
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Heals one request.
pub async fn reconcile_one(app: &App, trace: &TraceRow) -> Result<(), String> {
    let Some(event) = CtpEvent::parse(&trace.event) else { return Err("unknown event".into()) };
    metrics::counter!("ctp_reconciler_polls_total", "event" => event.as_str()).increment(1);
    let trace_id = match &trace.request_trace_id {
        Some(id) => id.clone(),
        None => {
            // Recorded IN_PROGRESS but never (knowingly) sent: send it now, same requestId.
            let op = NewOperation {
                tenant: &trace.tenant,
                entity_id: &trace.entity_id,
                kit_no: trace.kit_no.as_deref(),
                event,
                request_id: &trace.request_id,
                correlation_id: trace.correlation_id.as_deref(),
                next_poll_at: 0,
            };
            let result = submit(app, &op).await;
            match result {
                Ok(id) => id,
                Err(SaasError::Rejected { error_code, .. }) => {
                    let finish = Finish {
                        request_id: Some(trace.request_id.clone()),
                        succeeded: false,
                        error_details: Some(format!("{error_code}: refused by the Click to Pay network")),
                        ..Finish::default()
                    };
                    apply(app, &finish, "reconciler").await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    match app.saas().status(&trace.tenant, &trace_id).await.map_err(|e| e.to_string())? {
        Some(status) if status.status == RequestState::Completed => {
            let outcome = status.outcome.as_ref().ok_or("completed without outcome")?;
            let finish = finish_from_outcome(event, &trace.request_id, &trace_id, outcome, None);
            apply(app, &finish, "reconciler").await.map_err(|e| e.to_string())?;
        }
        Some(_) => {} // still in progress: the claim pushed the next look ahead
        None => return Err("the SaaS does not know this request".into()),
    }
    Ok(())
}

/// Seed 003's automatic updates, after a profile change has committed: names, emails or
/// phones of an ACTIVE entity → CTP_UPDATE_ENTITY; its address → CTP_UPDATE_KIT for each
/// active kit. Runs in the background; a failure is logged and counted, and the request
/// it recorded shows FAILED.
pub fn spawn_automatic_updates(
    app: &App,
    tenant: &str,
    entity_id: &str,
    saved: &crate::store::enrollment::ProfileSaved,
    correlation_id: Option<String>,
) {
    if saved.ctp_status != CtpStatus::Active || !(saved.identity_changed || saved.address_changed) {
        return;
    }
    let (app, tenant, entity_id, saved) = (app.clone(), tenant.to_owned(), entity_id.to_owned(), saved.clone());
    tokio::spawn(async move {
        let mut jobs: Vec<(CtpEvent, Option<String>)> = Vec::new();
        if saved.identity_changed {
            jobs.push((CtpEvent::UpdateEntity, None));
        }
        if saved.address_changed {
            jobs.extend(saved.active_kits.iter().map(|k| (CtpEvent::UpdateKit, Some(k.clone()))));
        }
        for (event, kit) in jobs {
            if let Err(e) = start(&app, &tenant, &entity_id, kit.as_deref(), event, correlation_id.as_deref()).await {
                tracing::warn!(%tenant, %entity_id, event = event.as_str(), error = %e, "automatic update not sent");
                metrics::counter!("ctp_automatic_updates_failed_total", "event" => event.as_str()).increment(1);
            }
        }
    });
}
