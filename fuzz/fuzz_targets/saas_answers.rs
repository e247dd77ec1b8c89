//! What the Click to Pay SaaS answers, as the client reads it: `Accepted`, `ErrorBody`,
//! `RequestStatus`, `Profile` and `Callback` from the same bytes, a failed parse turned
//! into a message the way the client does (`scrub` of serde's text), `scrub` itself on
//! the bytes as text, and the input as a `Retry-After` header. Identifiers kept from the
//! SaaS never hold a card-length digit run; scrubbed text never holds 8 digits in a row.

#![no_main]

use ctp_issuer::saas::client::retry_after;
use ctp_issuer::saas::scrub;
use ctp_issuer::saas::wire::{Accepted, Callback, ErrorBody, Outcome, Profile, RequestStatus};
use ctp_issuer_fuzz::{assert_no_card_echo, assert_scrubbed};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn assert_outside_id(what: &str, id: &str) {
    let longest = id.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    assert!(longest < 13 && !id.is_empty() && id.len() <= 128, "{what} {id:?} was accepted as an identifier");
}

/// The client's `parse`: a value, or `SaasError::Protocol(scrub(serde's message))`.
fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    match serde_json::from_slice(data) {
        Ok(value) => Some(value),
        Err(e) => {
            let message = scrub(&e.to_string());
            assert_scrubbed("a protocol error", &message);
            assert_no_card_echo("a protocol error", &message, data);
            None
        }
    }
}

fn check_error(error: &ErrorBody) {
    assert_scrubbed("errorCode", &error.error_code);
    assert_scrubbed("message", &error.message);
}

fn check_outcome(outcome: &Outcome) {
    if let Some(id) = &outcome.click_to_pay_customer_id {
        assert_outside_id("clickToPayCustomerId", id);
    }
    for instrument in &outcome.payment_instruments {
        if let Some(id) = &instrument.payment_instrument_id {
            assert_outside_id("paymentInstrumentId", id);
        }
        if let Some(code) = &instrument.error_code {
            assert_scrubbed("an instrument's errorCode", code);
        }
    }
    if let Some(error) = &outcome.error {
        check_error(error);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(accepted) = parse::<Accepted>(data) {
        assert_outside_id("requestTraceId", &accepted.request_trace_id);
    }
    if let Some(error) = parse::<ErrorBody>(data) {
        check_error(&error);
    }
    if let Some(status) = parse::<RequestStatus>(data) {
        assert_outside_id("requestTraceId", &status.request_trace_id);
        assert_outside_id("requestId", &status.request_id);
        if let Some(outcome) = &status.outcome {
            check_outcome(outcome);
        }
    }
    if let Some(profile) = parse::<Profile>(data) {
        assert_outside_id("clickToPayCustomerId", &profile.click_to_pay_customer_id);
        assert_scrubbed("status", &profile.status);
        for card in &profile.payment_instruments {
            assert_outside_id("paymentInstrumentId", &card.payment_instrument_id);
            assert!(card.last4.len() == 4 && card.last4.bytes().all(|b| b.is_ascii_digit()), "last4 {:?}", card.last4);
            assert_scrubbed("a card's status", &card.status);
        }
    }
    if let Some(callback) = parse::<Callback>(data) {
        assert_outside_id("requestTraceId", &callback.request_trace_id);
        assert_outside_id("requestId", &callback.request_id);
        check_outcome(&callback.outcome);
    }

    let text = String::from_utf8_lossy(data);
    let scrubbed = scrub(&text);
    assert_scrubbed("scrub's output", &scrubbed);
    assert!(scrubbed.chars().count() <= 301, "scrub's output is {} characters", scrubbed.chars().count());

    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, value);
        let _ = retry_after(&headers);
    }
});
