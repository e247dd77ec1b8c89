//! The enrollment domain: Click to Pay operations, the statuses of entities, kits and
//! requests, and the one table of legal transitions every change goes through. Knows
//! nothing of HTTP or SQL.

pub mod config;
pub mod event;
pub mod profile;
pub mod service;
pub mod status;

pub use event::CtpEvent;
pub use profile::EntityProfile;
pub use status::{CtpStatus, Refusal, StartPlan, TraceStatus, plan_finish, plan_start};
