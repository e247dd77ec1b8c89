//! Stand-ins for the parties outside our reach, faithful enough to test against: Visa's
//! notification sender ([`visa`]) and the small HTTP client it posts with ([`client`]).
//! The Click to Pay SaaS simulator joins them with the enrollment loop.

pub mod client;
pub mod saas;
pub mod visa;
