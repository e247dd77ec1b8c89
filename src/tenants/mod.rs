//! The issuers this service acts for, and the BIN ranges that make a card number one
//! tenant's rather than another's. [`config`] reads and checks them.

pub mod config;

pub use config::{BinPrefix, TenantConfig, TenantsConfig};
