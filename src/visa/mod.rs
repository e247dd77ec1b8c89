//! Visa Token Service's `CTP_ENROLLMENT_ATTEMPT` notification (seed 001, protocol.md §1):
//! the envelope ([`envelope`]), its keys ([`keys`]), the decrypted payload ([`payload`]),
//! the errors and their statuses ([`error`]), and the HTTP handler ([`handler`]).

pub mod config;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod keys;
pub mod payload;
pub mod rsa_decrypter;
pub mod rsa_verifier;

pub use envelope::{ENROLLMENT_ATTEMPT, RawNotification, ReplayPolicy, VerifiedNotification};
pub use error::{NotificationError, Rejected, Rejection};
pub use keys::VisaKeyRing;
