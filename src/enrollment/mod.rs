//! The enrollment domain: Click to Pay operations on customers and cards, the one table of
//! legal status transitions every change goes through ([`status`]), the profile and its
//! rules ([`profile`]), and the service that runs the loop ([`service`]). Knows nothing of
//! HTTP or SQL: it reads and writes through the store's operations and calls the SaaS
//! through its client.

pub mod config;
pub mod profile;
pub mod service;
pub mod status;

pub use profile::EntityProfile;
pub use service::{Enrollment, Operation, OperationAccepted, OperationError};
pub use status::{Refusal, StartPlan, plan_finish, plan_start};
