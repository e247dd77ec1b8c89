//! The enrollment loop's records: Click to Pay statuses of customers and cards (M2P's
//! `ctp_customer` and `ctp_payment`), one trace per asynchronous request
//! (`ctp_request_trace`), the callbacks applied, and the outbox row each outcome writes.
//!
//! Nothing here decides a status: the domain reads ([`Store::entity`],
//! [`Store::trace_to_finish`]), consults its transition table, and asks for the changes it
//! decided, each guarded by the status it read ([`StatusMove`]). If a guard no longer
//! holds, nothing is written and the domain hears [`Changed::Meanwhile`].

use super::plan::{Applied, Expect, Plan};
use super::value::{Row, params};
use super::{Store, StoreError, millis, sql};
use crate::ctp::{CtpEvent, CtpStatus, TraceStatus};

/// A request trace, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    pub tenant: String,
    pub request_id: String,
    pub request_trace_id: Option<String>,
    pub entity_id: String,
    pub kit_no: Option<String>,
    pub event: CtpEvent,
    pub status: TraceStatus,
    pub error_details: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TraceRow {
    /// Decodes the columns `sql::trace_columns!` lists, which come first in every row that holds a trace.
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            tenant: row.text(0)?,
            request_id: row.text(1)?,
            request_trace_id: row.opt_text(2)?,
            entity_id: row.text(3)?,
            kit_no: row.opt_text(4)?,
            event: row.parsed(5, CtpEvent::parse)?,
            status: row.parsed(6, TraceStatus::parse)?,
            error_details: row.opt_text(7)?,
            correlation_id: row.opt_text(8)?,
            created_at: row.int(9)?,
            updated_at: row.int(10)?,
        })
    }
}

/// A trace with what finishing it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceToFinish {
    pub trace: TraceRow,
    /// The statuses the request moved things from (restored if it fails).
    pub entity_before: CtpStatus,
    pub kit_before: CtpStatus,
    /// Where the customer stands now.
    pub entity_now: CtpStatus,
    pub click_to_pay_customer_id: Option<String>,
    /// Each kit of the entity with its status now.
    pub kits_now: Vec<(String, CtpStatus)>,
}

/// A status the domain read, and the one it decided on (equal: only a guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusMove {
    pub from: CtpStatus,
    pub to: CtpStatus,
}

impl StatusMove {
    /// Requires the status to still be `status`, changing nothing.
    pub fn stays(status: CtpStatus) -> Self {
        Self { from: status, to: status }
    }
}

/// A card's status move, with the network's id for the card when a result brings one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitMove {
    pub kit_no: String,
    pub status: StatusMove,
    pub payment_instrument_id: Option<String>,
}

/// A new request, recorded IN_PROGRESS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrace {
    pub request_id: String,
    pub kit_no: Option<String>,
    pub event: CtpEvent,
    pub entity_before: CtpStatus,
    pub kit_before: Option<CtpStatus>,
    pub correlation_id: Option<String>,
    /// When the reconciler may first look at it, if no callback has come (epoch ms).
    pub next_poll_at: i64,
}

/// An event for the outbox, written in the same transaction as the change it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub tenant: String,
    pub event_type: String,
    /// The message body (JSON), as the relay will publish it.
    pub payload: String,
}

/// Starting an operation: the statuses it moves and the request it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub tenant: String,
    pub entity_id: String,
    pub entity: StatusMove,
    pub kits: Vec<KitMove>,
    pub trace: NewTrace,
}

/// A request's result: the trace finished, the statuses moved, the ids learned, the
/// outbox event; and, for a callback, its webhook id (so that a redelivery does nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub tenant: String,
    pub entity_id: String,
    pub request_id: String,
    pub webhook_id: Option<String>,
    pub status: TraceStatus,
    pub request_trace_id: Option<String>,
    pub error_details: Option<String>,
    pub entity: StatusMove,
    pub click_to_pay_customer_id: Option<String>,
    pub kits: Vec<KitMove>,
    pub outbox: OutboxRow,
}

/// Whether guarded changes were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Done,
    /// A status was not what the change was decided on: nothing was written.
    Meanwhile,
}

/// What applying a [`Finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Applied,
    /// This callback's webhook id was applied before: nothing was written.
    DuplicateCallback,
    /// The request is no longer IN_PROGRESS: nothing was written.
    AlreadyFinished,
    /// A status moved since it was read: nothing was written.
    StatusesMoved,
}

/// Adds the guarded moves of a customer and its cards to `plan`.
fn move_statuses(
    plan: &mut Plan,
    tenant: &str,
    entity_id: &str,
    entity: StatusMove,
    customer_id: Option<&str>,
    kits: &[KitMove],
    now: i64,
) {
    plan.step(sql::ENSURE_CUSTOMER, params![tenant, entity_id, now], Expect::Any);
    plan.step(sql::MOVE_CUSTOMER, params![tenant, entity_id, entity.from.as_str(), entity.to.as_str(), customer_id, now], Expect::One);
    for kit in kits {
        let statement = if kit.status.from == CtpStatus::Unregistered { sql::MOVE_NEW_KIT } else { sql::MOVE_KIT };
        plan.step(
            statement,
            params![tenant, entity_id, &kit.kit_no, kit.status.from.as_str(), kit.status.to.as_str(), &kit.payment_instrument_id, now],
            Expect::One,
        );
    }
}

impl Store {
    /// Moves the statuses and records the request IN_PROGRESS, if every status is still
    /// what `start` was decided on.
    pub async fn start_operation(&self, start: &Start, now: i64) -> Result<Changed, StoreError> {
        let mut plan = Plan::new("start operation");
        move_statuses(&mut plan, &start.tenant, &start.entity_id, start.entity, None, &start.kits, now);
        let t = &start.trace;
        plan.step(
            sql::INSERT_TRACE,
            params![
                &start.tenant,
                &t.request_id,
                &start.entity_id,
                &t.kit_no,
                t.event.as_str(),
                t.entity_before.as_str(),
                t.kit_before.map(CtpStatus::as_str),
                &t.correlation_id,
                t.next_poll_at,
                now
            ],
            Expect::One,
        );
        Ok(match self.apply(plan).await? {
            Applied::Done(_) => Changed::Done,
            Applied::Conflict { .. } => Changed::Meanwhile,
        })
    }

    /// Records the SaaS's trace id for our request.
    pub async fn attach_request_trace_id(&self, request_id: &str, request_trace_id: &str, now: i64) -> Result<(), StoreError> {
        let mut plan = Plan::new("attach trace id");
        plan.step(sql::ATTACH_TRACE_ID, params![request_id, request_trace_id, now], Expect::Any);
        self.apply(plan).await.map(drop)
    }

    /// A request by our request id, with the statuses finishing it needs.
    pub async fn trace_to_finish(&self, request_id: &str) -> Result<Option<TraceToFinish>, StoreError> {
        let statements = vec![(sql::TRACE_TO_FINISH, params![request_id]), (sql::KIT_STATUSES_OF_REQUEST, params![request_id])];
        let mut results = self.query_together("read trace", statements).await?.into_iter();
        let (rows, kits) = (results.next().unwrap_or_default(), results.next().unwrap_or_default());
        let Some(row) = rows.first() else { return Ok(None) };
        let trace = TraceRow::read(row)?;
        let status = |row: &Row, i: usize| -> Result<CtpStatus, StoreError> {
            Ok(row.opt_text(i)?.and_then(|s| CtpStatus::parse(&s)).unwrap_or(CtpStatus::Unregistered))
        };
        let kits_now = kits.iter().map(|k| Ok((k.text(0)?, status(k, 1)?))).collect::<Result<_, StoreError>>()?;
        Ok(Some(TraceToFinish {
            entity_before: status(row, 11)?,
            kit_before: status(row, 12)?,
            entity_now: status(row, 13)?,
            click_to_pay_customer_id: row.opt_text(14)?,
            kits_now,
            trace,
        }))
    }

    /// Applies a request's result, all or nothing.
    pub async fn finish_operation(&self, finish: &Finish, now: i64) -> Result<Finished, StoreError> {
        let mut plan = Plan::new("finish operation");
        let callback = finish.webhook_id.as_ref().map(|id| plan.step(sql::RECORD_CALLBACK, params![id, now], Expect::One));
        let trace = plan.step(
            sql::FINISH_TRACE,
            params![&finish.request_id, finish.status.as_str(), &finish.error_details, &finish.request_trace_id, now],
            Expect::One,
        );
        let customer_id = finish.click_to_pay_customer_id.as_deref();
        move_statuses(&mut plan, &finish.tenant, &finish.entity_id, finish.entity, customer_id, &finish.kits, now);
        let o = &finish.outbox;
        plan.step(sql::INSERT_OUTBOX, params![&o.tenant, &o.event_type, &o.payload, now], Expect::Any);
        Ok(match self.apply(plan).await? {
            Applied::Done(_) => {
                self.announce_outbox_event();
                Finished::Applied
            }
            Applied::Conflict { at } if Some(at) == callback => Finished::DuplicateCallback,
            Applied::Conflict { at } if at == trace => Finished::AlreadyFinished,
            Applied::Conflict { .. } => Finished::StatusesMoved,
        })
    }

    /// Moves statuses learned from the network (not from one of our requests), each
    /// guarded by the status read.
    pub async fn move_statuses(
        &self,
        tenant: &str,
        entity_id: &str,
        entity: StatusMove,
        kits: &[KitMove],
        now: i64,
    ) -> Result<Changed, StoreError> {
        let mut plan = Plan::new("write back statuses");
        move_statuses(&mut plan, tenant, entity_id, entity, None, kits, now);
        Ok(match self.apply(plan).await? {
            Applied::Done(_) => Changed::Done,
            Applied::Conflict { .. } => Changed::Meanwhile,
        })
    }

    /// A request's trace, by the SaaS's trace id or our request id, within a tenant.
    pub async fn request_trace(&self, tenant: &str, id: &str) -> Result<Option<TraceRow>, StoreError> {
        let rows = self.query("read trace", sql::TRACE_IN_TENANT, params![tenant, id]).await?;
        rows.first().map(TraceRow::read).transpose()
    }

    /// Claims up to `limit` IN_PROGRESS requests whose poll time has come, pushing their
    /// next poll `lease` ahead so that other replicas skip them meanwhile.
    pub async fn claim_due_traces(&self, now: i64, lease: std::time::Duration, limit: i64) -> Result<Vec<TraceRow>, StoreError> {
        let mut plan = Plan::new("claim due traces");
        let claim = plan.step(sql::claim_due_traces(self.dialect()), params![now.saturating_add(millis(lease)), now, limit], Expect::Rows);
        let applied = self.apply(plan).await?;
        applied.rows(claim).iter().map(TraceRow::read).collect()
    }
}
