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
//! | **listeners** | |
//! | [`app`] | the service's state and its start/stop: [`App::build`], [`App::serve`], [`run`] |
//! | [`routes`] | the listeners' routing tables; handlers are thin translations |
//! | [`http`] | hyper 1 plumbing: accept loop, connection limits and deadlines, TLS, body limits, routing by name |
//! | [`cli`] | the command line; `main.rs` only calls it |
//! | **handlers** | |
//! | [`public`] | the public listener's handlers: Visa's notifications, the SaaS's callbacks |
//! | [`api`] | the internal API: M2P's `{result, exception, pagination}` envelope, the tenant gate, registry and operations |
//! | [`admin`] | `/metrics`, `/healthz`, `/readyz` |
//! | [`cardholder`] | the cardholder-facing listener: the secure card-details page (GET shows, POST reveals) |
//! | [`auth`] | bearer JWTs on the internal API |
//! | [`state`] | the services a handler is given |
//! | **domain** | |
//! | [`enrollment`] | statuses and the one transition table, profiles and their rules; the enrollment service and reconciler |
//! | [`attempts`] | Visa's enrollment attempts: matched and recorded, announced on the outbox |
//! | [`registry`] | the issuer's entities and kits, and the CSV import |
//! | [`tenants`] | the issuers served and the BIN ranges each owns |
//! | [`widget`] | the secure card-details page: one-time sealed links, Visa CVV2, CSRF, server-rendered pages |
//! | [`ctp`] | Click to Pay's vocabulary: events, statuses |
//! | [`ids`] | identifiers checked once at the boundary: tenant, entity, kit, keys |
//! | [`visa`] | the inbound notification: envelope, JOSE verify + decrypt, key rings, replay window |
//! | [`pan`] | the card-number type: masked printing, keyed fingerprint and digests, sealing at rest |
//! | [`webhook`] | Standard Webhooks signing and verification (the SaaS's callbacks) |
//! | **beneath the domain** | |
//! | [`store`] | persistence behind one interface: SQLite and PostgreSQL, each with its migrations; retention |
//! | [`notify`] | outbox payloads (M2P's lifecycle envelope), the relay, publishers (RabbitMQ, log) |
//! | [`saas`] | the Click to Pay SaaS layer: its JSON contract and our client of it |
//! | **around it all** | |
//! | [`config`] | layered configuration: defaults → TOML file → `CTP_*` environment, validated once; each section lives in its module's `config` |
//! | [`setting`] | what configuration sections are built from: values with hints, problems named by key |
//! | [`telemetry`] | logs and the Prometheus recorder |
//! | [`sim`] | stand-ins for outside parties: a Visa notification sender, the Click to Pay SaaS simulator |
//!
//! Imports flow down the table: listeners call handlers, handlers call the domain, the
//! domain calls the store, the outbox and the SaaS client; nothing below calls up.
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
pub mod cardholder;
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
pub mod widget;

pub use app::{App, Listeners};
pub use config::Config;

use tokio_util::sync::CancellationToken;

/// Builds the service from `config` and serves `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    App::build(config).await?.serve(listeners, shutdown).await
}
