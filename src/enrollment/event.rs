//! The asynchronous Click to Pay operations (seed 003's events) and where each goes on
//! the SaaS layer.

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

    /// The SaaS endpoint (seed 003's table) and its method.
    pub fn saas_endpoint(self) -> (http::Method, &'static str) {
        match self {
            Self::RegisterEntityAndKit => (http::Method::POST, "/addCustomerAndPaymentInstrument"),
            Self::AddKit => (http::Method::POST, "/addPaymentInstrument"),
            Self::RemoveEntity => (http::Method::POST, "/removeCustomer"),
            Self::RemoveKit => (http::Method::POST, "/removePaymentInstrument"),
            Self::UpdateEntity => (http::Method::PUT, "/updateCustomerData"),
            Self::UpdateKit => (http::Method::PUT, "/updatePaymentInstrument"),
        }
    }
}

impl fmt::Display for CtpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
