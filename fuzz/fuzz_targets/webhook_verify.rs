//! A SaaS callback delivery: `WebhookVerifier::verify` with the development secret and a
//! second (rotation) secret, then, for what verifies, the `Callback` JSON and the result
//! the enrollment loop makes of it. The input is a `WebhookCase`: flags, the three
//! headers and the body; with `SIGN` (and `NOW`) the target signs correctly, so that
//! arbitrary bodies reach the success path and the JSON decoder.

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use ctp_issuer::saas::wire::Callback;
use ctp_issuer::webhook::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret, WebhookVerifier, load_secrets_dir, sign,
};
use ctp_issuer_fuzz::{NOW_SECS, WebhookCase, assert_no_card_echo, assert_scrubbed, keys_dir, now};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The Standard Webhooks specification's example secret, as the old key of a rotation.
const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn secrets() -> &'static (WebhookSecret, WebhookSecret, WebhookVerifier) {
    static SECRETS: OnceLock<(WebhookSecret, WebhookSecret, WebhookVerifier)> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let current = load_secrets_dir(&keys_dir().join("saas")).expect("keys/saas").remove(0).1;
        let old = WebhookSecret::parse(OLD_SECRET).expect("the specification's secret");
        let verifier = WebhookVerifier::new(vec![current.clone(), old.clone()], DEFAULT_TOLERANCE);
        (current, old, verifier)
    })
}

/// An identifier the SaaS gave us, which we store: never as long a digit run as a card.
fn assert_outside_id(what: &str, id: &str) {
    let longest = id.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    assert!(longest < 13 && !id.is_empty() && id.len() <= 128, "{what} {id:?} was accepted as an identifier");
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = WebhookCase::parse(data) else { return };
    let (current, old, verifier) = secrets();
    let timestamp = if case.flags & WebhookCase::NOW != 0 { NOW_SECS.to_string().into_bytes() } else { case.timestamp.to_vec() };
    let mut signature = Vec::new();
    if case.flags & (WebhookCase::SIGN | WebhookCase::SIGN_OLD) != 0 {
        // Signed as the receiver will read the headers: trimmed text.
        let id = String::from_utf8_lossy(case.id);
        let ts = String::from_utf8_lossy(&timestamp).trim().parse::<i64>().unwrap_or_default();
        if case.flags & WebhookCase::SIGN != 0 {
            signature.extend_from_slice(sign(current, id.trim(), ts, case.body).as_bytes());
            signature.push(b' ');
        }
        if case.flags & WebhookCase::SIGN_OLD != 0 {
            signature.extend_from_slice(sign(old, id.trim(), ts, case.body).as_bytes());
            signature.push(b' ');
        }
    }
    signature.extend_from_slice(case.signature);

    let mut headers = HeaderMap::new();
    for (name, value, left_out) in [
        (HEADER_ID, case.id, WebhookCase::NO_ID),
        (HEADER_TIMESTAMP, &timestamp[..], WebhookCase::NO_TIMESTAMP),
        (HEADER_SIGNATURE, &signature[..], WebhookCase::NO_SIGNATURE),
    ] {
        // A value no HTTP parser would have delivered is left out, as a missing header.
        if case.flags & left_out == 0
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            headers.insert(name, value);
        }
    }

    let body = Bytes::copy_from_slice(case.body);
    let verified = match verifier.verify(&headers, body, now()) {
        Ok(verified) => verified,
        Err(e) => {
            assert!(!e.reason().is_empty() && e.reason().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_no_card_echo("webhook error", &e.to_string(), data);
            return;
        }
    };
    assert_eq!(verified.body().as_ref(), case.body, "the verified body is the body");
    assert!(verified.timestamp().abs_diff(NOW_SECS as i64) <= DEFAULT_TOLERANCE.as_secs(), "a stale delivery verified");
    assert!(!verified.id().is_empty() && verified.id().len() <= 256 && verified.id().bytes().all(|b| b.is_ascii_graphic()));
    assert!(!format!("{verified:?}").contains("body: "), "a verified delivery's Debug shows its body");

    let Ok(callback) = verified.json::<Callback>() else { return };
    assert_outside_id("requestTraceId", &callback.request_trace_id);
    assert_outside_id("requestId", &callback.request_id);
    let outcome = &callback.outcome;
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
        assert_scrubbed("errorCode", &error.error_code);
        assert_scrubbed("message", &error.message);
    }
    let result = ctp_issuer::enrollment::service::result_of(callback.event, &callback.request_id, &callback.request_trace_id, outcome);
    if let Some(details) = &result.error_details {
        assert_scrubbed("error details", details);
        assert_no_card_echo("error details", details, data);
    }
});
