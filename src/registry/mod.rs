//! The issuer's registry of entities and kits (cards), as loaded from its card system.

pub mod import;
