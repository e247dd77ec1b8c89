//! The internal API's decoders of request bytes: every body type through `api::json_body`
//! (serde plus the shape-error describer), the profile's rules, the identifiers, and the
//! tenant, correlation id and Idempotency-Key headers as the gate reads them. The input is
//! the body, and also each header's value and each identifier's text. No error text may
//! echo a card number from the input.

#![no_main]

use ctp_issuer::api::envelope::ApiError;
use ctp_issuer::api::gate::{correlation_id, tenant_header};
use ctp_issuer::api::json_body;
use ctp_issuer::api::m2p::{EntityDetailsBody, OperationBody, RequestStatusBody};
use ctp_issuer::api::registry::KitPut;
use ctp_issuer::enrollment::EntityProfile;
use ctp_issuer::ids::{CorrelationId, EntityId, Expiry, IdError, IdempotencyKey, KitNo, TenantId};
use ctp_issuer::pan::Pan;
use ctp_issuer::store::registry::ImportedContact;
use ctp_issuer_fuzz::{assert_no_card_echo, is_card_number};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_answer<T>(what: &str, answer: Result<T, ApiError>, input: &[u8]) -> Option<T> {
    match answer {
        Ok(value) => Some(value),
        Err(error) => {
            assert_no_card_echo(what, &error.body().to_string(), input);
            None
        }
    }
}

/// An identifier either holds exactly its text or refuses it, naming only its kind and rule.
fn check_id<T: AsRef<str>>(parsed: Result<T, IdError>, text: &str, input: &[u8]) {
    match parsed {
        Ok(id) => assert_eq!(id.as_ref(), text, "an identifier that is not its text"),
        Err(e) => assert_no_card_echo("identifier error", &e.to_string(), input),
    }
}

fn check_text(text: &str, input: &[u8]) {
    check_id(TenantId::parse(text), text, input);
    check_id(EntityId::parse(text), text, input);
    check_id(KitNo::parse(text), text, input);
    check_id(CorrelationId::parse(text), text, input);
    if let Ok(key) = IdempotencyKey::parse(text) {
        assert_eq!(key.as_str(), text);
    }
    if let Ok(expiry) = Expiry::parse(text) {
        assert_eq!(expiry.to_string(), text, "an expiry that does not print back");
        assert!((1..=12).contains(&expiry.month()));
    }
    match Pan::parse(text) {
        Ok(pan) => assert!(is_card_number(pan.expose_for_network())),
        Err(e) => assert_no_card_echo("card number error", &e.to_string(), input),
    }
}

/// Every string in a JSON document, keys too.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out);
        }),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The bodies, as the handlers read them.
    if let Some(profile) = check_answer("profile body", json_body::<EntityProfile>(data), data) {
        match profile.validate() {
            Ok(()) => {
                // What was saved reads back the same (the registry stores it as JSON).
                let stored = serde_json::to_string(&profile).expect("a profile serializes");
                assert_eq!(EntityProfile::from_stored(Some(&stored), &ImportedContact::default()), profile);
            }
            Err(e) => assert_no_card_echo("profile rule", &e.to_string(), data),
        }
        if let Err(e) = profile.ready_for_registration() {
            assert_no_card_echo("registration rule", &e.to_string(), data);
        }
    }
    check_answer("operation body", json_body::<OperationBody>(data), data);
    check_answer("request status body", json_body::<RequestStatusBody>(data), data);
    check_answer("entity details body", json_body::<EntityDetailsBody>(data), data);
    check_answer("kit body", json_body::<KitPut>(data), data);
    // A stored profile document is read leniently: anything unreadable is an empty one.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EntityProfile::from_stored(Some(text), &ImportedContact::default());
    }

    // Identifiers: the input itself, and every string in it when it is JSON.
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text, data);
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let mut texts = Vec::new();
        strings(&value, &mut texts);
        for text in texts.iter().take(64) {
            check_text(text, data);
        }
    }

    // Headers, as the gate reads them.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        for name in ["tenant", "x-tenant-id"] {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.clone());
            if let Some(tenant) = check_answer("tenant header", tenant_header(&headers), data) {
                assert_eq!(tenant.as_str(), value.to_str().expect("a tenant is text").trim());
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-correlation-id", value.clone());
        if let Some(Some(id)) = check_answer("correlation id", correlation_id(&headers), data) {
            assert_eq!(id.as_str(), value.to_str().expect("a correlation id is text"));
        }
        if let Err(e) = IdempotencyKey::parse(value.to_str().unwrap_or_default()) {
            assert_no_card_echo("Idempotency-Key error", &e.to_string(), data);
        }
    }
});
