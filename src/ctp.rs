//! Click to Pay's vocabulary, as M2P's Click to Pay module names it: the asynchronous
//! operations ([`CtpEvent`]) and the statuses of customers, cards ([`CtpStatus`]) and
//! requests ([`TraceStatus`]). The same names go on the wire to the SaaS layer, into the
//! database and onto the queue, so every layer speaks them; which status may follow which
//! is the domain's business (`enrollment::status`), not this module's.

use std::fmt;

/// One asynchronous Click to Pay operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtpEvent {
    RegisterEntityAndKit,
    AddKit,
    RemoveEntity,
    RemoveKit,
    UpdateEntity,
    UpdateKit,
}

impl CtpEvent {
    pub const ALL: [CtpEvent; 6] =
        [Self::RegisterEntityAndKit, Self::AddKit, Self::RemoveEntity, Self::RemoveKit, Self::UpdateEntity, Self::UpdateKit];

    /// The name on the wire, in the database and on the queue.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegisterEntityAndKit => "CTP_REGISTER_ENTITY_AND_KIT",
            Self::AddKit => "CTP_ADD_KIT",
            Self::RemoveEntity => "CTP_REMOVE_ENTITY",
            Self::RemoveKit => "CTP_REMOVE_KIT",
            Self::UpdateEntity => "CTP_UPDATE_ENTITY",
            Self::UpdateKit => "CTP_UPDATE_KIT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Whether the operation names a kit (a card) besides the entity.
    pub fn names_a_kit(self) -> bool {
        matches!(self, Self::RegisterEntityAndKit | Self::AddKit | Self::RemoveKit | Self::UpdateKit)
    }
}

impl fmt::Display for CtpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of an entity (customer) or a kit (card) on Click to Pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtpStatus {
    Unregistered,
    RegistrationInProgress,
    Active,
    RemovalInProgress,
    Removed,
    Disabled,
}

impl CtpStatus {
    pub const ALL: [CtpStatus; 6] =
        [Self::Unregistered, Self::RegistrationInProgress, Self::Active, Self::RemovalInProgress, Self::Removed, Self::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unregistered => "UNREGISTERED",
            Self::RegistrationInProgress => "REGISTRATION_IN_PROGRESS",
            Self::Active => "ACTIVE",
            Self::RemovalInProgress => "REMOVAL_IN_PROGRESS",
            Self::Removed => "REMOVED",
            Self::Disabled => "DISABLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A request is moving it (it is not where it will stay).
    pub fn in_flight(self) -> bool {
        matches!(self, Self::RegistrationInProgress | Self::RemovalInProgress)
    }
}

impl fmt::Display for CtpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of one asynchronous request: IN_PROGRESS, then SUCCESS or FAILED, never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceStatus {
    InProgress,
    Success,
    Failed,
}

impl TraceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::InProgress, Self::Success, Self::Failed].into_iter().find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in CtpStatus::ALL {
            assert_eq!(CtpStatus::parse(s.as_str()), Some(s));
        }
        for e in CtpEvent::ALL {
            assert_eq!(CtpEvent::parse(e.as_str()), Some(e));
        }
        for t in [TraceStatus::InProgress, TraceStatus::Success, TraceStatus::Failed] {
            assert_eq!(TraceStatus::parse(t.as_str()), Some(t));
        }
        assert_eq!(CtpStatus::parse("active"), None);
    }
}
