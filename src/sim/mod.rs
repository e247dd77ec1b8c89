//! Stand-ins for the parties outside our reach, faithful enough to test against: Visa's
//! notification sender ([`visa`]), the small HTTP client it posts with ([`client`]), the
//! Click to Pay SaaS simulator ([`saas`]), and fresh keys, cards and notifications for a
//! server under test ([`fixtures`]).

pub mod client;
pub mod fixtures;
pub mod saas;
pub mod visa;
