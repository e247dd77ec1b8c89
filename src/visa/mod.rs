//! Visa Token Service's `CTP_ENROLLMENT_ATTEMPT` notification, as Visa's enrollment-attempt
//! notification documentation and `docs/protocol.md` describe it: the envelope
//! ([`envelope`]), its keys ([`keys`]), the decrypted payload ([`payload`]), the errors and
//! their statuses ([`error`]). The HTTP handler is `public::visa_notification`.

pub mod config;
pub mod envelope;
pub mod error;
pub mod keys;
pub mod payload;
pub mod rsa_decrypter;
pub mod rsa_verifier;

pub use envelope::{ENROLLMENT_ATTEMPT, RawNotification, ReplayPolicy, VerifiedNotification};
pub use error::{Rejected, Rejection};
pub use keys::VisaKeyRing;
