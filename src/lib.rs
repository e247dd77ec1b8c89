//! # ctp-issuer
//!
//! An issuer's Click to Pay backend in one binary. Visa Token Service tells us when a
//! consumer tries to enroll one of our cards in Click to Pay; we verify and decrypt that
//! notification, match the card by a keyed hash of its number, record the attempt and
//! announce it on the outbox. The issuer's own services enroll and remove consumers and
//! cards through the internal API; a Click to Pay SaaS layer does the network work and
//! calls back; every outcome is published to a message queue through the outbox relay.
//!
//! ## Layout
//!
//! | module | one job |
//! | --- | --- |
//! | [`config`] | layered configuration: defaults → TOML file → `CTP_*` environment, validated once; each section lives in its module's `config` |
//! | [`setting`] | what configuration sections are built from: values with hints, problems named by key |
//! | [`app`] | the service's state and its start/stop: [`App::build`], [`App::serve`], [`run`] |
//! | [`routes`] | the three listeners' routing tables; handlers are thin translations |
//! | [`api`] | the internal API: bearer JWT and tenant gate, seed 000's envelope, registry and operations; the SaaS callback handler |
//! | [`enrollment`] | the domain: events, statuses and the one transition table, profiles and their rules; the enrollment service and reconciler |
//! | [`http`] | hyper 1 plumbing: accept loop, TLS, body limits, routing by name |
//! | [`visa`] | the inbound notification: envelope, JOSE verify + decrypt, key rings, replay window |
//! | [`pan`] | the card-number type: masked printing, HMAC fingerprint, sealing at rest |
//! | [`store`] | persistence behind one interface: SQLite and PostgreSQL, each with its migrations |
//! | [`registry`] | the issuer's entities and kits, and the CSV import |
//! | [`tenants`] | the issuers served and the BIN ranges each owns |
//! | [`notify`] | outbox payloads (seed 003's envelope), the relay, publishers (RabbitMQ, log), `outbox` commands |
//! | [`admin`] | `/metrics`, `/healthz`, `/readyz` |
//! | [`telemetry`] | logs and the Prometheus recorder |
//! | [`saas`] | the Click to Pay SaaS layer: its JSON contract and our client of it |
//! | [`webhook`] | Standard Webhooks signing and verification (the SaaS's callbacks) |
//! | [`sim`] | stand-ins for outside parties: a Visa notification sender, the Click to Pay SaaS simulator |
//! | [`cli`] | the command line; `main.rs` only calls it |
//!
//! ## Rules of the house
//!
//! - Only a [`visa::VerifiedNotification`] reaches the store; the sole way to make one is
//!   to verify and decrypt a [`visa::RawNotification`].
//! - A card number is a [`pan::Pan`] from the moment it is parsed: it prints as `****1234`,
//!   is stored only as a fingerprint, a sealed copy and its last four digits.
//! - One error type per boundary, mapped to a status once; internal causes are logged,
//!   never sent.

pub mod admin;
pub mod api;
pub mod app;
pub mod attempts;
pub mod auth;
pub mod cli;
pub mod config;
pub mod ctp;
pub mod enrollment;
pub mod http;
pub mod ids;
pub mod notify;
pub mod pan;
pub mod public;
pub mod registry;
pub mod routes;
pub mod saas;
pub mod setting;
pub mod sim;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod visa;
pub mod webhook;

pub use app::{App, Listeners};
pub use config::Config;

use tokio_util::sync::CancellationToken;

/// Builds the service from `config` and serves `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    App::build(config).await?.serve(listeners, shutdown).await
}
