//! The public listener's handlers: what Visa Token Service and the Click to Pay SaaS layer
//! call. The only port exposed to the outside.

pub mod saas_callback;
pub mod visa_notification;
