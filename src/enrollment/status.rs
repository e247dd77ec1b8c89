//! The one table of legal status transitions (M2P's Click to Pay lifecycle).
//!
//! Every status change in the service is asked of [`plan_start`] (when an operation is
//! sent) or [`plan_finish`] (when its result arrives). Anything the table does not list is
//! refused, counted, and changes nothing: a callback for a finished request, a SUCCESS
//! after a FAILED, an add-card for a customer who is not ACTIVE.

use crate::ctp::{CtpEvent, CtpStatus, TraceStatus};

/// Whether an operation may (re-)register a customer or a card from `status`.
fn registrable(status: CtpStatus) -> bool {
    matches!(status, CtpStatus::Unregistered | CtpStatus::Removed)
}

/// The request trace lifecycle: only IN_PROGRESS may finish, and only once.
pub fn trace_may_become(from: TraceStatus, next: TraceStatus) -> bool {
    from == TraceStatus::InProgress && next != TraceStatus::InProgress
}

/// Why an operation may not start. Each maps to a stable API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// M2P's `Y109`: the entity has no ACTIVE Click to Pay registration.
    #[error("Not a registered Customer")]
    NotRegistered,
    #[error("Customer is already registered on Click to Pay")]
    AlreadyRegistered,
    #[error("Kit is already enrolled on Click to Pay")]
    KitAlreadyEnrolled,
    #[error("Kit is not enrolled on Click to Pay")]
    KitNotEnrolled,
    #[error("Another Click to Pay request for this customer is in progress")]
    InProgress,
}

/// What starting an operation does to the statuses it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPlan {
    /// The entity's status while the request is in flight (`None`: unchanged).
    pub entity: Option<CtpStatus>,
    /// The status each named kit takes while the request is in flight.
    pub kit: Option<CtpStatus>,
}

/// Checks that `event` may start for an entity in `entity` and a kit in `kit` (the kit the
/// operation names; for REMOVE_ENTITY and UPDATE_ENTITY there is none), and says what
/// changes. `kit` is `None` when the operation names no kit.
pub fn plan_start(event: CtpEvent, entity: CtpStatus, kit: Option<CtpStatus>) -> Result<StartPlan, Refusal> {
    use CtpEvent::*;
    use CtpStatus::*;
    if matches!(entity, RegistrationInProgress | RemovalInProgress) {
        return Err(Refusal::InProgress);
    }
    if matches!(kit, Some(RegistrationInProgress | RemovalInProgress)) {
        return Err(Refusal::InProgress);
    }
    match event {
        RegisterEntityAndKit => {
            if !registrable(entity) {
                return Err(if entity == Active { Refusal::AlreadyRegistered } else { Refusal::NotRegistered });
            }
            match kit {
                Some(k) if registrable(k) => Ok(StartPlan { entity: Some(RegistrationInProgress), kit: Some(RegistrationInProgress) }),
                Some(_) => Err(Refusal::KitAlreadyEnrolled),
                None => Err(Refusal::KitNotEnrolled),
            }
        }
        AddKit => {
            if entity != Active {
                return Err(Refusal::NotRegistered);
            }
            match kit {
                Some(k) if registrable(k) => Ok(StartPlan { entity: None, kit: Some(RegistrationInProgress) }),
                _ => Err(Refusal::KitAlreadyEnrolled),
            }
        }
        RemoveKit => {
            if entity != Active {
                return Err(Refusal::NotRegistered);
            }
            match kit {
                Some(Active) => Ok(StartPlan { entity: None, kit: Some(RemovalInProgress) }),
                _ => Err(Refusal::KitNotEnrolled),
            }
        }
        RemoveEntity => {
            if entity != Active {
                return Err(Refusal::NotRegistered);
            }
            // Every ACTIVE kit of the entity goes with it (the caller applies `kit` to each).
            Ok(StartPlan { entity: Some(RemovalInProgress), kit: Some(RemovalInProgress) })
        }
        UpdateEntity => {
            if entity != Active {
                return Err(Refusal::NotRegistered);
            }
            Ok(StartPlan { entity: None, kit: None })
        }
        UpdateKit => {
            if entity != Active {
                return Err(Refusal::NotRegistered);
            }
            match kit {
                Some(Active) => Ok(StartPlan { entity: None, kit: None }),
                _ => Err(Refusal::KitNotEnrolled),
            }
        }
    }
}

/// Where a status goes when the request that moved it finishes. `from` is the in-flight
/// status, `before` the status it had when the request started (restored on failure).
/// `None` means the transition is illegal and must be refused.
pub fn plan_finish(event: CtpEvent, from: CtpStatus, before: CtpStatus, succeeded: bool) -> Option<CtpStatus> {
    use CtpEvent::*;
    use CtpStatus::*;
    match (event, from, succeeded) {
        (RegisterEntityAndKit | AddKit, RegistrationInProgress, true) => Some(Active),
        (RegisterEntityAndKit | AddKit, RegistrationInProgress, false) => Some(before),
        (RemoveEntity | RemoveKit, RemovalInProgress, true) => Some(Removed),
        (RemoveEntity | RemoveKit, RemovalInProgress, false) => Some(before),
        // Updates do not move statuses; they finish where they started.
        (UpdateEntity | UpdateKit, Active, _) => Some(Active),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CtpStatus::*;

    #[test]
    fn trace_lifecycle_is_one_way() {
        use TraceStatus::*;
        let all = [InProgress, Success, Failed];
        for from in all {
            for to in all {
                let legal = from == InProgress && to != InProgress;
                assert_eq!(trace_may_become(from, to), legal, "{from:?} -> {to:?}");
            }
        }
    }

    /// Every (event, entity, kit) combination: the expected outcome written out as a
    /// second, independent statement of the rules of M2P's Click to Pay module and lifecycle documentation.
    #[test]
    fn start_table_is_exhaustive() {
        let kits: Vec<Option<CtpStatus>> = std::iter::once(None).chain(CtpStatus::ALL.map(Some)).collect();
        for event in CtpEvent::ALL {
            for entity in CtpStatus::ALL {
                for &kit in &kits {
                    let got = plan_start(event, entity, kit);
                    let busy = matches!(entity, RegistrationInProgress | RemovalInProgress)
                        || matches!(kit, Some(RegistrationInProgress | RemovalInProgress));
                    let expected = if busy { Err(Refusal::InProgress) } else { expected_start(event, entity, kit) };
                    assert_eq!(got, expected, "{event} entity={entity} kit={kit:?}");
                }
            }
        }
    }

    fn expected_start(event: CtpEvent, entity: CtpStatus, kit: Option<CtpStatus>) -> Result<StartPlan, Refusal> {
        let free = |k: Option<CtpStatus>| matches!(k, Some(Unregistered | Removed));
        let plan = |e, k| Ok(StartPlan { entity: e, kit: k });
        match event {
            CtpEvent::RegisterEntityAndKit => match entity {
                Active => Err(Refusal::AlreadyRegistered),
                Disabled => Err(Refusal::NotRegistered),
                _ if free(kit) => plan(Some(RegistrationInProgress), Some(RegistrationInProgress)),
                _ if kit.is_none() => Err(Refusal::KitNotEnrolled),
                _ => Err(Refusal::KitAlreadyEnrolled),
            },
            _ if entity != Active => Err(Refusal::NotRegistered),
            CtpEvent::AddKit if free(kit) => plan(None, Some(RegistrationInProgress)),
            CtpEvent::AddKit => Err(Refusal::KitAlreadyEnrolled),
            CtpEvent::RemoveKit if kit == Some(Active) => plan(None, Some(RemovalInProgress)),
            CtpEvent::RemoveKit => Err(Refusal::KitNotEnrolled),
            CtpEvent::RemoveEntity => plan(Some(RemovalInProgress), Some(RemovalInProgress)),
            CtpEvent::UpdateEntity => plan(None, None),
            CtpEvent::UpdateKit if kit == Some(Active) => plan(None, None),
            CtpEvent::UpdateKit => Err(Refusal::KitNotEnrolled),
        }
    }

    #[test]
    fn finish_table_is_exhaustive() {
        for event in CtpEvent::ALL {
            for from in CtpStatus::ALL {
                for before in CtpStatus::ALL {
                    for ok in [true, false] {
                        let got = plan_finish(event, from, before, ok);
                        let expected = match (event, from) {
                            (CtpEvent::RegisterEntityAndKit | CtpEvent::AddKit, RegistrationInProgress) => {
                                Some(if ok { Active } else { before })
                            }
                            (CtpEvent::RemoveEntity | CtpEvent::RemoveKit, RemovalInProgress) => Some(if ok { Removed } else { before }),
                            (CtpEvent::UpdateEntity | CtpEvent::UpdateKit, Active) => Some(Active),
                            _ => None,
                        };
                        assert_eq!(got, expected, "{event} from={from} before={before} ok={ok}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_register_that_fails_goes_back_to_where_it_was() {
        let start = plan_start(CtpEvent::RegisterEntityAndKit, Removed, Some(Unregistered)).unwrap();
        assert_eq!(start.entity, Some(RegistrationInProgress));
        assert_eq!(plan_finish(CtpEvent::RegisterEntityAndKit, RegistrationInProgress, Removed, false), Some(Removed));
        assert_eq!(plan_finish(CtpEvent::RegisterEntityAndKit, Active, Unregistered, true), None, "a second SUCCESS is refused");
    }
}
