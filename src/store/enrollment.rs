//! Persistence of the enrollment loop: entity profiles, Click to Pay statuses (seed 003's
//! `ctp_customer` and `ctp_payment`), request traces, callback receipts and idempotency
//! keys.
//!
//! Each statement is written once per dialect, side by side (`?` for SQLite, `$n` for
//! PostgreSQL); the logic around them — which statuses move, in which transaction — is
//! written once, against [`Tx`]. Status changes are decided by
//! [`crate::enrollment::status`], never here.

use std::time::SystemTime;

use sqlx::{Postgres, Sqlite, Transaction};

use super::{Store, StoreError, db_err, epoch_millis};
use crate::enrollment::{CtpEvent, CtpStatus, EntityProfile, Refusal, TraceStatus, plan_finish, plan_start};
use crate::notify::{RequestFailureData, RequestSuccessData, request_failure_payload, request_success_payload};

/// A write transaction on either database.
pub(super) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs a statement on whichever database `$tx` is; yields rows affected.
macro_rules! exec {
    ($tx:expr, $op:literal, $sqlite:literal, $pg:literal $(, $arg:expr)* $(,)?) => {
        match $tx {
            Tx::Sqlite(tx) => sqlx::query($sqlite)$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
            Tx::Postgres(tx) => sqlx::query($pg)$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
        }
        .map_err(db_err($op))
    };
}

/// Fetches rows of type `$ty` with `$method` (fetch_optional, fetch_all).
macro_rules! fetch {
    ($tx:expr, $method:ident, $ty:ty, $op:literal, $sqlite:literal, $pg:literal $(, $arg:expr)* $(,)?) => {
        match $tx {
            Tx::Sqlite(tx) => sqlx::query_as::<_, $ty>($sqlite)$(.bind($arg))*.$method(&mut **tx).await,
            Tx::Postgres(tx) => sqlx::query_as::<_, $ty>($pg)$(.bind($arg))*.$method(&mut **tx).await,
        }
        .map_err(db_err($op))
    };
}

impl Tx {
    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(db_err("commit"))
    }
}

impl Store {
    /// A write transaction (SQLite takes the write lock up front).
    pub(super) async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Store::Sqlite(s) => Tx::Sqlite(s.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err("begin"))?),
            Store::Postgres(s) => Tx::Postgres(s.pool.begin().await.map_err(db_err("begin"))?),
        })
    }

    /// A read-only transaction. On SQLite a plain (deferred) `BEGIN`: its reads share one
    /// snapshot of the WAL without taking the write lock, so they neither wait for
    /// writers nor make writers wait (with `BEGIN IMMEDIATE` every profile read queued on
    /// the lock with the writes: BENCHMARKS.md, "The enrollment API").
    pub(super) async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Store::Sqlite(s) => Tx::Sqlite(s.pool.begin().await.map_err(db_err("begin"))?),
            Store::Postgres(s) => Tx::Postgres(s.pool.begin().await.map_err(db_err("begin"))?),
        })
    }
}

/// An entity as the API shows it: profile, Click to Pay status, and its kits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityView {
    pub tenant: String,
    pub entity_id: String,
    pub profile: EntityProfile,
    pub ctp_status: CtpStatus,
    pub click_to_pay_customer_id: Option<String>,
    pub kits: Vec<KitView>,
}

/// A kit as the API shows it: never its card number, only the last four digits.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KitView {
    pub kit_no: String,
    pub pan_last4: String,
    pub expiry: Option<String>,
    pub name_on_card: Option<String>,
    #[sqlx(try_from = "String")]
    pub ctp_status: CtpStatusColumn,
    pub payment_instrument_id: Option<String>,
}

/// A status read from a column; unknown text reads as UNREGISTERED (the CHECK constraint
/// makes that impossible in practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtpStatusColumn(pub CtpStatus);

impl TryFrom<String> for CtpStatusColumn {
    type Error = std::convert::Infallible;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Ok(Self(CtpStatus::parse(&s).unwrap_or(CtpStatus::Unregistered)))
    }
}

/// What saving a profile changed, for seed 003's automatic updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSaved {
    pub created: bool,
    pub identity_changed: bool,
    pub address_changed: bool,
    pub ctp_status: CtpStatus,
    pub active_kits: Vec<String>,
}

/// What a kit's network request needs: the sealed card and what goes with it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KitForNetwork {
    pub kit_no: String,
    pub entity_id: String,
    pub pan_sealed: String,
    pub expiry: Option<String>,
    pub name_on_card: Option<String>,
}

/// An operation to start.
#[derive(Debug, Clone)]
pub struct NewOperation<'a> {
    pub tenant: &'a str,
    pub entity_id: &'a str,
    pub kit_no: Option<&'a str>,
    pub event: CtpEvent,
    pub request_id: &'a str,
    pub correlation_id: Option<&'a str>,
    /// When the reconciler may first look at it, if no callback has come (epoch ms).
    pub next_poll_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("entity not found")]
    EntityNotFound,
    #[error("kit not found for this entity")]
    KitNotFound,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request trace, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TraceRow {
    pub tenant: String,
    pub request_id: String,
    pub request_trace_id: Option<String>,
    pub entity_id: String,
    pub kit_no: Option<String>,
    pub event: String,
    pub status_ctp: String,
    pub error_details: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The result of a request, from a callback or a poll.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// Our request id, or the SaaS's trace id, whichever the message carries.
    pub request_id: Option<String>,
    pub request_trace_id: Option<String>,
    pub succeeded: bool,
    pub click_to_pay_customer_id: Option<String>,
    /// `(kit_no, payment instrument id)` for each kit the result names.
    pub instruments: Vec<(String, Option<String>)>,
    pub error_details: Option<String>,
    /// The callback's webhook id, recorded in the same transaction (exactly-once).
    pub webhook_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Applied {
        trace: TraceRow,
        entity_status: CtpStatus,
    },
    /// The request already finished (a late duplicate, or SUCCESS after FAILED): refused.
    AlreadyFinished {
        status: String,
    },
    /// This callback id was applied before.
    DuplicateCallback,
    /// No such request.
    Unknown,
    /// The statuses are not where the request left them; nothing was changed.
    IllegalTransition {
        from: CtpStatus,
    },
}

/// An idempotency record: the first answer to a key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdempotentResponse {
    pub request_hash: String,
    pub response_status: i64,
    pub response_body: String,
}

impl Store {
    /// Creates or replaces an entity's profile; says what changed.
    pub async fn save_profile(&self, tenant: &str, entity_id: &str, profile: &EntityProfile) -> Result<ProfileSaved, StoreError> {
        let now = epoch_millis(SystemTime::now());
        let json = serde_json::to_string(profile).expect("profile serializes");
        let mut tx = self.begin_write().await?;
        let existing: Option<(Option<String>,)> = fetch!(
            &mut tx,
            fetch_optional,
            (Option<String>,),
            "read profile",
            "SELECT profile FROM entity WHERE tenant = ? AND entity_id = ?",
            "SELECT profile FROM entity WHERE tenant = $1 AND entity_id = $2",
            tenant,
            entity_id
        )?;
        let before: Option<EntityProfile> =
            existing.as_ref().map(|(p,)| p.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default());
        exec!(
            &mut tx,
            "save profile",
            "INSERT INTO entity (tenant, entity_id, first_name, last_name, email, phone, profile, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant, entity_id) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
                 email = excluded.email, phone = excluded.phone, profile = excluded.profile, updated_at = excluded.updated_at",
            "INSERT INTO entity (tenant, entity_id, first_name, last_name, email, phone, profile, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant, entity_id) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
                 email = excluded.email, phone = excluded.phone, profile = excluded.profile, updated_at = excluded.updated_at",
            tenant,
            entity_id,
            profile.first_name.as_deref(),
            profile.last_name.as_deref(),
            profile.emails.first().map(String::as_str),
            profile.phones.first().map(String::as_str),
            &json,
            now,
            now
        )?;
        let status = entity_status(&mut tx, tenant, entity_id).await?.map(|(s, _)| s).unwrap_or(CtpStatus::Unregistered);
        let active_kits = kits_in_status(&mut tx, tenant, entity_id, CtpStatus::Active).await?;
        tx.commit().await?;
        Ok(ProfileSaved {
            created: before.is_none(),
            identity_changed: before.as_ref().is_some_and(|b| b.identity_differs(profile)),
            address_changed: before.as_ref().is_some_and(|b| b.address_differs(profile)),
            ctp_status: status,
            active_kits,
        })
    }

    /// The entity with its statuses and kits, if it exists in this tenant.
    pub async fn entity_view(&self, tenant: &str, entity_id: &str) -> Result<Option<EntityView>, StoreError> {
        let mut tx = self.begin_read().await?;
        let row: Option<(Option<String>,)> = fetch!(
            &mut tx,
            fetch_optional,
            (Option<String>,),
            "read entity",
            "SELECT profile FROM entity WHERE tenant = ? AND entity_id = ?",
            "SELECT profile FROM entity WHERE tenant = $1 AND entity_id = $2",
            tenant,
            entity_id
        )?;
        let Some((profile,)) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let (ctp_status, customer_id) = entity_status(&mut tx, tenant, entity_id).await?.unwrap_or((CtpStatus::Unregistered, None));
        let kits: Vec<KitView> = fetch!(
            &mut tx,
            fetch_all,
            KitView,
            "read kits",
            "SELECT k.kit_no, k.pan_last4, k.expiry, k.name_on_card, COALESCE(p.ctp_kit_status, 'UNREGISTERED') AS ctp_status,
                    p.click_to_pay_payment_instrument_id AS payment_instrument_id
             FROM kit k LEFT JOIN ctp_payment p ON p.tenant = k.tenant AND p.kit_no = k.kit_no
             WHERE k.tenant = ? AND k.entity_id = ? ORDER BY k.kit_no",
            "SELECT k.kit_no, k.pan_last4, k.expiry, k.name_on_card, COALESCE(p.ctp_kit_status, 'UNREGISTERED') AS ctp_status,
                    p.click_to_pay_payment_instrument_id AS payment_instrument_id
             FROM kit k LEFT JOIN ctp_payment p ON p.tenant = k.tenant AND p.kit_no = k.kit_no
             WHERE k.tenant = $1 AND k.entity_id = $2 ORDER BY k.kit_no",
            tenant,
            entity_id
        )?;
        tx.commit().await?;
        Ok(Some(EntityView {
            tenant: tenant.to_owned(),
            entity_id: entity_id.to_owned(),
            profile: profile.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default(),
            ctp_status,
            click_to_pay_customer_id: customer_id,
            kits,
        }))
    }

    /// The sealed card and card data of a kit, for a request to the network.
    pub async fn kit_for_network(&self, tenant: &str, kit_no: &str) -> Result<Option<KitForNetwork>, StoreError> {
        let mut tx = self.begin_read().await?;
        let kit = fetch!(
            &mut tx,
            fetch_optional,
            KitForNetwork,
            "read kit",
            "SELECT kit_no, entity_id, pan_sealed, expiry, name_on_card FROM kit WHERE tenant = ? AND kit_no = ?",
            "SELECT kit_no, entity_id, pan_sealed, expiry, name_on_card FROM kit WHERE tenant = $1 AND kit_no = $2",
            tenant,
            kit_no
        )?;
        tx.commit().await?;
        Ok(kit)
    }

    /// Sets the name printed on a kit.
    pub async fn set_name_on_card(&self, tenant: &str, kit_no: &str, name: Option<&str>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        exec!(
            &mut tx,
            "set name on card",
            "UPDATE kit SET name_on_card = ? WHERE tenant = ? AND kit_no = ?",
            "UPDATE kit SET name_on_card = $1 WHERE tenant = $2 AND kit_no = $3",
            name,
            tenant,
            kit_no
        )?;
        tx.commit().await
    }

    /// In one transaction: check the operation against the status table, move the statuses
    /// it moves, and record the request IN_PROGRESS with the statuses to restore on failure.
    pub async fn start_operation(&self, op: &NewOperation<'_>) -> Result<Vec<String>, StartError> {
        let now = epoch_millis(SystemTime::now());
        let mut tx = self.begin_write().await?;
        let entity: Option<(String,)> = fetch!(
            &mut tx,
            fetch_optional,
            (String,),
            "read entity",
            "SELECT entity_id FROM entity WHERE tenant = ? AND entity_id = ?",
            "SELECT entity_id FROM entity WHERE tenant = $1 AND entity_id = $2",
            op.tenant,
            op.entity_id
        )?;
        if entity.is_none() {
            return Err(StartError::EntityNotFound);
        }
        let customer_pkey = ensure_customer(&mut tx, op.tenant, op.entity_id, now).await?;
        let entity_before = entity_status(&mut tx, op.tenant, op.entity_id).await?.map(|(s, _)| s).unwrap_or(CtpStatus::Unregistered);
        let kit_before = match op.kit_no {
            None => None,
            Some(kit_no) => {
                let owner: Option<(String,)> = fetch!(
                    &mut tx,
                    fetch_optional,
                    (String,),
                    "read kit",
                    "SELECT entity_id FROM kit WHERE tenant = ? AND kit_no = ?",
                    "SELECT entity_id FROM kit WHERE tenant = $1 AND kit_no = $2",
                    op.tenant,
                    kit_no
                )?;
                if owner.is_none_or(|(e,)| e != op.entity_id) {
                    return Err(StartError::KitNotFound);
                }
                Some(kit_status(&mut tx, op.tenant, kit_no).await?)
            }
        };
        let plan = plan_start(op.event, entity_before, kit_before)?;
        if let Some(status) = plan.entity {
            set_entity_status(&mut tx, op.tenant, op.entity_id, status, None, now).await?;
        }
        let moved_kits = match (op.event, plan.kit, op.kit_no) {
            (CtpEvent::RemoveEntity, Some(status), _) => {
                let kits = kits_in_status(&mut tx, op.tenant, op.entity_id, CtpStatus::Active).await?;
                for kit in &kits {
                    set_kit_status(&mut tx, op.tenant, customer_pkey, kit, status, None, now).await?;
                }
                kits
            }
            (_, Some(status), Some(kit)) => {
                set_kit_status(&mut tx, op.tenant, customer_pkey, kit, status, None, now).await?;
                vec![kit.to_owned()]
            }
            _ => Vec::new(),
        };
        exec!(
            &mut tx,
            "insert request trace",
            "INSERT INTO ctp_request_trace (tenant, request_id, entity_id, kit_no, event, status_ctp, prev_entity_status,
                 prev_kit_status, correlation_id, next_poll_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'IN_PROGRESS', ?, ?, ?, ?, ?, ?)",
            "INSERT INTO ctp_request_trace (tenant, request_id, entity_id, kit_no, event, status_ctp, prev_entity_status,
                 prev_kit_status, correlation_id, next_poll_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'IN_PROGRESS', $6, $7, $8, $9, $10, $11)",
            op.tenant,
            op.request_id,
            op.entity_id,
            op.kit_no,
            op.event.as_str(),
            entity_before.as_str(),
            kit_before.map(CtpStatus::as_str).unwrap_or(CtpStatus::Active.as_str()),
            op.correlation_id,
            op.next_poll_at,
            now,
            now
        )?;
        tx.commit().await?;
        Ok(moved_kits)
    }

    /// Records the SaaS's trace id for our request.
    pub async fn attach_request_trace_id(&self, request_id: &str, request_trace_id: &str) -> Result<(), StoreError> {
        let now = epoch_millis(SystemTime::now());
        let mut tx = self.begin_write().await?;
        exec!(
            &mut tx,
            "attach trace id",
            "UPDATE ctp_request_trace SET request_trace_id = ?, updated_at = ? WHERE request_id = ? AND request_trace_id IS NULL",
            "UPDATE ctp_request_trace SET request_trace_id = $1, updated_at = $2 WHERE request_id = $3 AND request_trace_id IS NULL",
            request_trace_id,
            now,
            request_id
        )?;
        tx.commit().await
    }

    /// Applies a request's result: trace to SUCCESS/FAILED, statuses by the table, ids
    /// stored, the outbox event written — all or nothing.
    pub async fn finish_operation(&self, finish: &Finish) -> Result<FinishOutcome, StoreError> {
        let now = epoch_millis(SystemTime::now());
        let mut tx = self.begin_write().await?;
        if let Some(id) = &finish.webhook_id {
            let fresh = exec!(
                &mut tx,
                "record callback",
                "INSERT INTO saas_callback (webhook_id, received_at) VALUES (?, ?) ON CONFLICT (webhook_id) DO NOTHING",
                "INSERT INTO saas_callback (webhook_id, received_at) VALUES ($1, $2) ON CONFLICT (webhook_id) DO NOTHING",
                id.as_str(),
                now
            )?;
            if fresh == 0 {
                return Ok(FinishOutcome::DuplicateCallback);
            }
        }
        let trace: Option<(String, String, Option<String>, String, Option<String>, String, String, Option<String>, Option<String>)> = match (
            &finish.request_id,
            &finish.request_trace_id,
        ) {
            (Some(id), _) => fetch!(
                &mut tx,
                fetch_optional,
                (String, String, Option<String>, String, Option<String>, String, String, Option<String>, Option<String>),
                "read trace",
                "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, prev_entity_status, prev_kit_status FROM ctp_request_trace WHERE request_id = ?",
                "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, prev_entity_status, prev_kit_status FROM ctp_request_trace WHERE request_id = $1",
                id.as_str()
            )?,
            (None, Some(id)) => fetch!(
                &mut tx,
                fetch_optional,
                (String, String, Option<String>, String, Option<String>, String, String, Option<String>, Option<String>),
                "read trace",
                "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, prev_entity_status, prev_kit_status FROM ctp_request_trace WHERE request_trace_id = ?",
                "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, prev_entity_status, prev_kit_status FROM ctp_request_trace WHERE request_trace_id = $1",
                id.as_str()
            )?,
            (None, None) => None,
        };
        // Returning before the commit rolls back the callback receipt too: only an applied
        // result marks its webhook id as seen.
        let Some((tenant, request_id, trace_id, entity_id, kit_no, event, status, prev_entity, prev_kit)) = trace else {
            return Ok(FinishOutcome::Unknown);
        };
        let next = if finish.succeeded { TraceStatus::Success } else { TraceStatus::Failed };
        if !TraceStatus::parse(&status).is_some_and(|s| s.can_become(next)) {
            return Ok(FinishOutcome::AlreadyFinished { status });
        }
        let Some(event) = CtpEvent::parse(&event) else {
            return Ok(FinishOutcome::AlreadyFinished { status });
        };
        let trace_id = trace_id.or_else(|| finish.request_trace_id.clone());
        let prev_entity = prev_entity.as_deref().and_then(CtpStatus::parse).unwrap_or(CtpStatus::Unregistered);
        let prev_kit = prev_kit.as_deref().and_then(CtpStatus::parse).unwrap_or(CtpStatus::Unregistered);
        let customer_pkey = ensure_customer(&mut tx, &tenant, &entity_id, now).await?;
        let (entity_now, customer_id) = entity_status(&mut tx, &tenant, &entity_id).await?.unwrap_or((CtpStatus::Unregistered, None));
        let moves_statuses = !matches!(event, CtpEvent::UpdateEntity | CtpEvent::UpdateKit);

        let mut entity_after = entity_now;
        if moves_statuses && matches!(event, CtpEvent::RegisterEntityAndKit | CtpEvent::RemoveEntity) {
            match plan_finish(event, entity_now, prev_entity, finish.succeeded) {
                Some(s) => entity_after = s,
                None => return Ok(FinishOutcome::IllegalTransition { from: entity_now }),
            }
        }
        let kits_to_move: Vec<String> = match (event, &kit_no) {
            _ if !moves_statuses => Vec::new(),
            (CtpEvent::RemoveEntity, _) => kits_in_status(&mut tx, &tenant, &entity_id, CtpStatus::RemovalInProgress).await?,
            (_, Some(k)) => vec![k.clone()],
            _ => Vec::new(),
        };
        let mut kit_after = None;
        let mut kit_pi = None;
        let mut kit_updates = Vec::new();
        for kit in &kits_to_move {
            let from = kit_status(&mut tx, &tenant, kit).await?;
            let Some(to) = plan_finish(event, from, prev_kit, finish.succeeded) else {
                return Ok(FinishOutcome::IllegalTransition { from });
            };
            let pi = finish.instruments.iter().find(|(k, _)| k == kit).and_then(|(_, pi)| pi.clone());
            kit_updates.push((kit.clone(), to, pi.clone()));
            if Some(kit) == kit_no.as_ref() {
                kit_after = Some(to);
                kit_pi = pi;
            }
        }
        let new_customer_id = if finish.succeeded { finish.click_to_pay_customer_id.clone() } else { None };
        if entity_after != entity_now || new_customer_id.is_some() {
            set_entity_status(&mut tx, &tenant, &entity_id, entity_after, new_customer_id.as_deref(), now).await?;
        }
        for (kit, to, pi) in &kit_updates {
            set_kit_status(&mut tx, &tenant, customer_pkey, kit, *to, pi.as_deref(), now).await?;
        }
        let error_details = if finish.succeeded { None } else { Some(finish.error_details.clone().unwrap_or_else(|| "no details".into())) };
        let changed = exec!(&mut tx, "finish trace",
            "UPDATE ctp_request_trace SET status_ctp = ?, error_details = ?, request_trace_id = COALESCE(request_trace_id, ?), updated_at = ?
             WHERE request_id = ? AND status_ctp = 'IN_PROGRESS'",
            "UPDATE ctp_request_trace SET status_ctp = $1, error_details = $2, request_trace_id = COALESCE(request_trace_id, $3), updated_at = $4
             WHERE request_id = $5 AND status_ctp = 'IN_PROGRESS'",
            next.as_str(), error_details.as_deref(), trace_id.as_deref(), now, request_id.as_str())?;
        if changed == 0 {
            return Ok(FinishOutcome::AlreadyFinished { status: "FINISHED".into() });
        }
        let customer_id = new_customer_id.or(customer_id);
        let payload = if finish.succeeded {
            request_success_payload(
                event.as_str(),
                RequestSuccessData {
                    entity_id: &entity_id,
                    kit_no: kit_no.as_deref(),
                    request_trace_id: trace_id.as_deref(),
                    request_status: "SUCCESS",
                    transaction_type: event.as_str(),
                    ctp_entity_status: entity_after.as_str(),
                    ctp_kit_status: kit_after.map(CtpStatus::as_str),
                    ctp_entity_id: customer_id.as_deref(),
                    ctp_kit_id: kit_pi.as_deref(),
                    tenant: &tenant,
                },
            )
        } else {
            request_failure_payload(
                event.as_str(),
                RequestFailureData {
                    entity_id: &entity_id,
                    kit_no: kit_no.as_deref(),
                    request_trace_id: trace_id.as_deref(),
                    request_status: "FAILED",
                    transaction_type: event.as_str(),
                    message: "CTP FAILURE: Request Rejected",
                    error_details: error_details.as_deref().unwrap_or_default(),
                    tenant: &tenant,
                },
            )
        };
        exec!(
            &mut tx,
            "insert outbox event",
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5)",
            tenant.as_str(),
            event.as_str(),
            payload,
            now,
            now
        )?;
        let trace = fetch!(&mut tx, fetch_optional, TraceRow, "read trace",
            "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, error_details, correlation_id, created_at, updated_at FROM ctp_request_trace WHERE request_id = ?",
            "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, error_details, correlation_id, created_at, updated_at FROM ctp_request_trace WHERE request_id = $1",
            request_id.as_str())?
        .expect("the trace was just updated in this transaction");
        tx.commit().await?;
        Ok(FinishOutcome::Applied { trace, entity_status: entity_after })
    }

    /// A request's trace, by the SaaS's trace id or our request id, within a tenant.
    pub async fn request_trace(&self, tenant: &str, id: &str) -> Result<Option<TraceRow>, StoreError> {
        let mut tx = self.begin_read().await?;
        let row = fetch!(&mut tx, fetch_optional, TraceRow, "read trace",
            "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, error_details, correlation_id, created_at, updated_at
             FROM ctp_request_trace WHERE tenant = ? AND (request_trace_id = ? OR request_id = ?)",
            "SELECT tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, error_details, correlation_id, created_at, updated_at
             FROM ctp_request_trace WHERE tenant = $1 AND (request_trace_id = $2 OR request_id = $3)",
            tenant, id, id)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Claims up to `limit` IN_PROGRESS requests whose poll time has come, pushing their
    /// next poll `lease_ms` ahead so that other replicas skip them meanwhile.
    pub async fn claim_due_traces(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<TraceRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = fetch!(&mut tx, fetch_all, TraceRow, "claim due traces",
            "UPDATE ctp_request_trace SET next_poll_at = ?
             WHERE pkey IN (SELECT pkey FROM ctp_request_trace WHERE status_ctp = 'IN_PROGRESS' AND next_poll_at <= ? ORDER BY next_poll_at LIMIT ?)
             RETURNING tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, error_details, correlation_id, created_at, updated_at",
            "UPDATE ctp_request_trace SET next_poll_at = $1
             WHERE pkey IN (SELECT pkey FROM ctp_request_trace WHERE status_ctp = 'IN_PROGRESS' AND next_poll_at <= $2
                            ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING tenant, request_id, request_trace_id, entity_id, kit_no, event, status_ctp, error_details, correlation_id, created_at, updated_at",
            now + lease_ms, now, limit)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Writes back statuses learned from the SaaS's profile (getData), e.g. DISABLED.
    /// Only settled statuses are written; requests in flight keep theirs.
    pub async fn sync_statuses(
        &self,
        tenant: &str,
        entity_id: &str,
        entity: Option<CtpStatus>,
        kits: &[(String, CtpStatus)],
    ) -> Result<(), StoreError> {
        let now = epoch_millis(SystemTime::now());
        let settled = |s: CtpStatus| !matches!(s, CtpStatus::RegistrationInProgress | CtpStatus::RemovalInProgress);
        let mut tx = self.begin_write().await?;
        let customer_pkey = ensure_customer(&mut tx, tenant, entity_id, now).await?;
        if let Some(status) = entity {
            let current = entity_status(&mut tx, tenant, entity_id).await?.map(|(s, _)| s).unwrap_or(CtpStatus::Unregistered);
            if settled(current) && current != status {
                set_entity_status(&mut tx, tenant, entity_id, status, None, now).await?;
            }
        }
        for (kit, status) in kits {
            let current = kit_status(&mut tx, tenant, kit).await?;
            if settled(current) && current != *status {
                set_kit_status(&mut tx, tenant, customer_pkey, kit, *status, None, now).await?;
            }
        }
        tx.commit().await
    }

    pub async fn idempotent_response(&self, tenant: &str, key: &str) -> Result<Option<IdempotentResponse>, StoreError> {
        let mut tx = self.begin_read().await?;
        let row = fetch!(
            &mut tx,
            fetch_optional,
            IdempotentResponse,
            "read idempotency key",
            "SELECT request_hash, response_status, response_body FROM idempotency_key WHERE tenant = ? AND idempotency_key = ?",
            "SELECT request_hash, response_status, response_body FROM idempotency_key WHERE tenant = $1 AND idempotency_key = $2",
            tenant,
            key
        )?;
        tx.commit().await?;
        Ok(row)
    }

    /// Keeps the first answer to a key; a concurrent second writer keeps the first's.
    pub async fn save_idempotent_response(
        &self,
        tenant: &str,
        key: &str,
        request_hash: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let now = epoch_millis(SystemTime::now());
        let mut tx = self.begin_write().await?;
        exec!(
            &mut tx,
            "save idempotency key",
            "INSERT INTO idempotency_key (tenant, idempotency_key, request_hash, response_status, response_body, created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, idempotency_key) DO NOTHING",
            "INSERT INTO idempotency_key (tenant, idempotency_key, request_hash, response_status, response_body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, idempotency_key) DO NOTHING",
            tenant,
            key,
            request_hash,
            i64::from(status),
            body,
            now
        )?;
        tx.commit().await
    }
}

// --- Statement helpers shared by the operations above. ---

async fn entity_status(tx: &mut Tx, tenant: &str, entity_id: &str) -> Result<Option<(CtpStatus, Option<String>)>, StoreError> {
    let row: Option<(String, Option<String>)> = fetch!(
        tx,
        fetch_optional,
        (String, Option<String>),
        "read entity status",
        "SELECT ctp_entity_status, click_to_pay_customer_id FROM ctp_customer WHERE tenant = ? AND entity_id = ?",
        "SELECT ctp_entity_status, click_to_pay_customer_id FROM ctp_customer WHERE tenant = $1 AND entity_id = $2",
        tenant,
        entity_id
    )?;
    Ok(row.map(|(s, id)| (CtpStatus::parse(&s).unwrap_or(CtpStatus::Unregistered), id)))
}

async fn ensure_customer(tx: &mut Tx, tenant: &str, entity_id: &str, now: i64) -> Result<i64, StoreError> {
    exec!(
        tx,
        "create ctp_customer",
        "INSERT INTO ctp_customer (tenant, entity_id, ctp_entity_status, created_at, updated_at) VALUES (?, ?, 'UNREGISTERED', ?, ?)
         ON CONFLICT (tenant, entity_id) DO NOTHING",
        "INSERT INTO ctp_customer (tenant, entity_id, ctp_entity_status, created_at, updated_at) VALUES ($1, $2, 'UNREGISTERED', $3, $4)
         ON CONFLICT (tenant, entity_id) DO NOTHING",
        tenant,
        entity_id,
        now,
        now
    )?;
    let (pkey,): (i64,) = fetch!(
        tx,
        fetch_optional,
        (i64,),
        "read ctp_customer",
        "SELECT pkey FROM ctp_customer WHERE tenant = ? AND entity_id = ?",
        "SELECT pkey FROM ctp_customer WHERE tenant = $1 AND entity_id = $2",
        tenant,
        entity_id
    )?
    .expect("the row was just ensured in this transaction");
    Ok(pkey)
}

async fn set_entity_status(
    tx: &mut Tx,
    tenant: &str,
    entity_id: &str,
    status: CtpStatus,
    customer_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    exec!(
        tx,
        "set entity status",
        "UPDATE ctp_customer SET ctp_entity_status = ?, click_to_pay_customer_id = COALESCE(?, click_to_pay_customer_id), updated_at = ?
         WHERE tenant = ? AND entity_id = ?",
        "UPDATE ctp_customer SET ctp_entity_status = $1, click_to_pay_customer_id = COALESCE($2, click_to_pay_customer_id), updated_at = $3
         WHERE tenant = $4 AND entity_id = $5",
        status.as_str(),
        customer_id,
        now,
        tenant,
        entity_id
    )?;
    Ok(())
}

async fn kit_status(tx: &mut Tx, tenant: &str, kit_no: &str) -> Result<CtpStatus, StoreError> {
    let row: Option<(String,)> = fetch!(
        tx,
        fetch_optional,
        (String,),
        "read kit status",
        "SELECT ctp_kit_status FROM ctp_payment WHERE tenant = ? AND kit_no = ?",
        "SELECT ctp_kit_status FROM ctp_payment WHERE tenant = $1 AND kit_no = $2",
        tenant,
        kit_no
    )?;
    Ok(row.and_then(|(s,)| CtpStatus::parse(&s)).unwrap_or(CtpStatus::Unregistered))
}

#[allow(clippy::too_many_arguments)]
async fn set_kit_status(
    tx: &mut Tx,
    tenant: &str,
    customer_pkey: i64,
    kit_no: &str,
    status: CtpStatus,
    instrument_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    exec!(tx, "set kit status",
        "INSERT INTO ctp_payment (tenant, ctp_customer_pkey, kit_no, ctp_kit_status, click_to_pay_payment_instrument_id, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant, kit_no) DO UPDATE SET ctp_kit_status = excluded.ctp_kit_status, ctp_customer_pkey = excluded.ctp_customer_pkey,
             click_to_pay_payment_instrument_id = COALESCE(excluded.click_to_pay_payment_instrument_id, ctp_payment.click_to_pay_payment_instrument_id),
             updated_at = excluded.updated_at",
        "INSERT INTO ctp_payment (tenant, ctp_customer_pkey, kit_no, ctp_kit_status, click_to_pay_payment_instrument_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant, kit_no) DO UPDATE SET ctp_kit_status = excluded.ctp_kit_status, ctp_customer_pkey = excluded.ctp_customer_pkey,
             click_to_pay_payment_instrument_id = COALESCE(excluded.click_to_pay_payment_instrument_id, ctp_payment.click_to_pay_payment_instrument_id),
             updated_at = excluded.updated_at",
        tenant, customer_pkey, kit_no, status.as_str(), instrument_id, now, now)?;
    Ok(())
}

async fn kits_in_status(tx: &mut Tx, tenant: &str, entity_id: &str, status: CtpStatus) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = fetch!(
        tx,
        fetch_all,
        (String,),
        "read kits by status",
        "SELECT p.kit_no FROM ctp_payment p JOIN kit k ON k.tenant = p.tenant AND k.kit_no = p.kit_no
         WHERE p.tenant = ? AND k.entity_id = ? AND p.ctp_kit_status = ? ORDER BY p.kit_no",
        "SELECT p.kit_no FROM ctp_payment p JOIN kit k ON k.tenant = p.tenant AND k.kit_no = p.kit_no
         WHERE p.tenant = $1 AND k.entity_id = $2 AND p.ctp_kit_status = $3 ORDER BY p.kit_no",
        tenant,
        entity_id,
        status.as_str()
    )?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}
