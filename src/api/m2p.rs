//! `/click-to-pay/v1/*`: M2P's operation names, so that a client written for M2P's Click
//! to Pay module can point at us. Each operation answers at once with `{tenant, entityId,
//! requestTraceId, event}`; its result arrives by callback (or the reconciler's poll) and
//! is announced on the outbox.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::envelope::{ApiError, ErrorCode, ok};
use super::registry::entity_body;
use super::{Call, internal, invalid};
use crate::ctp::CtpEvent;
use crate::enrollment::{Operation, OperationError};
use crate::http::Response;
use crate::ids::{EntityId, KitNo};

/// The body of the six operations: `{entityId, kitNo?}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationBody {
    entity_id: String,
    #[serde(default)]
    kit_no: Option<String>,
}

/// Starts one asynchronous operation.
pub async fn operation(call: &Call<'_>, event: CtpEvent) -> Result<Response, ApiError> {
    let body: OperationBody = call.json()?;
    let entity_id = EntityId::parse(&body.entity_id).map_err(invalid)?;
    let kit_no = match (event.names_a_kit(), body.kit_no.as_deref()) {
        (true, None) => return Err(ApiError::with(ErrorCode::InvalidRequest, "missing field kitNo")),
        (true, Some(kit)) => Some(KitNo::parse(kit).map_err(invalid)?),
        (false, Some(_)) => return Err(ApiError::with(ErrorCode::InvalidRequest, format!("{event} takes no kitNo"))),
        (false, None) => None,
    };
    let op = Operation { tenant: call.tenant.clone(), entity_id, kit_no, event, correlation_id: call.correlation_id.clone() };
    match call.services.enrollment.start(&op).await {
        Ok(accepted) => Ok(ok(StatusCode::OK, accepted)),
        Err(e) => Err(operation_error(e)),
    }
}

/// The catalogue's answer to a refused or failed operation.
pub fn operation_error(e: OperationError) -> ApiError {
    match e {
        OperationError::EntityNotFound => ApiError::new(ErrorCode::EntityNotFound),
        OperationError::KitNotFound => ApiError::new(ErrorCode::KitNotFound),
        OperationError::Refused(r) => r.into(),
        OperationError::Incomplete(field) => ApiError::with(ErrorCode::InvalidRequest, field.to_string()),
        OperationError::NetworkRejected(code) => ApiError::with(ErrorCode::NetworkRejected, format!("network error code {code}")),
        OperationError::NetworkUnavailable(kind) => {
            ApiError::with(ErrorCode::NetworkUnavailable, format!("network {kind}; nothing was changed"))
        }
        other @ OperationError::Store(_) => internal(other),
    }
}

/// The body of `fetchRequestStatus`: `{requestTraceId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestStatusBody {
    request_trace_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestStatusAnswer<'a> {
    tenant: &'a str,
    entity_id: &'a str,
    kit_no: Option<&'a str>,
    request_trace_id: &'a str,
    event: &'a str,
    status: &'a str,
    error_details: Option<&'a str>,
}

/// `fetchRequestStatus`: where a request stands, by the trace id we answered with.
pub async fn request_status(call: &Call<'_>) -> Result<Response, ApiError> {
    let body: RequestStatusBody = call.json()?;
    if body.request_trace_id.is_empty() || body.request_trace_id.len() > 64 {
        return Err(ApiError::with(ErrorCode::InvalidRequest, "requestTraceId must be 1 to 64 characters"));
    }
    let trace = call.services.enrollment.request(&call.tenant, &body.request_trace_id).await.map_err(internal)?;
    let trace = trace.ok_or(ApiError::new(ErrorCode::RequestNotFound))?;
    Ok(ok(
        StatusCode::OK,
        RequestStatusAnswer {
            tenant: &trace.tenant,
            entity_id: &trace.entity_id,
            kit_no: trace.kit_no.as_deref(),
            request_trace_id: trace.request_trace_id.as_deref().unwrap_or(&trace.request_id),
            event: trace.event.as_str(),
            status: trace.status.as_str(),
            error_details: trace.error_details.as_deref(),
        },
    ))
}

/// The body of `fetchEntityDetails`: `{entityId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityDetailsBody {
    entity_id: String,
}

/// `fetchEntityDetails`: the profile with its cards and statuses. Synchronous: reads the
/// network's view (SaaS `getData`) and writes back any settled status it learns (as M2P's
/// module does), then answers from our records. If the network is unreachable, answers
/// from our records with `networkProfile: null`.
pub async fn entity_details(call: &Call<'_>) -> Result<Response, ApiError> {
    let body: EntityDetailsBody = call.json()?;
    let entity_id = EntityId::parse(&body.entity_id).map_err(invalid)?;
    let enrollment = &call.services.enrollment;
    if enrollment.entity(&call.tenant, &entity_id).await.map_err(internal)?.is_none() {
        return Err(ApiError::new(ErrorCode::EntityNotFound));
    }
    let network = enrollment.refresh_from_network(&call.tenant, &entity_id, call.correlation_id.as_ref()).await.map_err(internal)?;
    let (record, profile) =
        enrollment.entity(&call.tenant, &entity_id).await.map_err(internal)?.ok_or(ApiError::new(ErrorCode::EntityNotFound))?;
    let mut answer = serde_json::to_value(entity_body(&record, &profile)).map_err(internal)?;
    answer["networkProfile"] = serde_json::to_value(&network).map_err(internal)?;
    Ok(ok(StatusCode::OK, answer))
}
