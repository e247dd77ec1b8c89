//! The JSON contract between us and the Click to Pay SaaS layer, as types.
//!
//! The SaaS's own payloads are not public, so these are ours, modelled on Visa's VICA
//! issuer API so that a SaaS built on VICA maps them field for field. `docs/saas.md` is the
//! contract in prose (endpoints, headers, examples, error codes, callbacks); this module is
//! the one copy of it in code. Every field name below is the JSON name; unknown fields are
//! ignored on reading, optional fields are left out when empty.
//!
//! Text the SaaS sends back is outside bytes: it reaches our records only through
//! `outside`, which scrubs anything that could be a card number.

use serde::{Deserialize, Serialize};

use crate::ctp::CtpEvent;
use crate::pan::Pan;

/// The endpoint and method of each operation (M2P's Click to Pay lifecycle names them).
pub fn endpoint(event: CtpEvent) -> (http::Method, &'static str) {
    match event {
        CtpEvent::RegisterEntityAndKit => (http::Method::POST, "/addCustomerAndPaymentInstrument"),
        CtpEvent::AddKit => (http::Method::POST, "/addPaymentInstrument"),
        CtpEvent::RemoveEntity => (http::Method::POST, "/removeCustomer"),
        CtpEvent::RemoveKit => (http::Method::POST, "/removePaymentInstrument"),
        CtpEvent::UpdateEntity => (http::Method::PUT, "/updateCustomerData"),
        CtpEvent::UpdateKit => (http::Method::PUT, "/updatePaymentInstrument"),
    }
}

/// Header naming the tenant on every SaaS request.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// Header carrying our caller's correlation id, passed through.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The error codes of the contract (VICA's, plus two of ours for non-VICA answers).
pub mod code {
    /// Malformed request.
    pub const INVALID_REQUEST: &str = "VIDC-1000";
    /// A required field is missing.
    pub const MISSING_FIELD: &str = "VIDC-1001";
    /// A field or a list is too long.
    pub const TOO_LONG: &str = "VIDC-1002";
    /// A field has a bad format or value.
    pub const INVALID_FIELD: &str = "VIDC-1003";
    /// The consumer is already enrolled (on a retried registration: already done).
    pub const CONSUMER_ALREADY_ENROLLED: &str = "VIDC-2000";
    /// The consumer is not enrolled.
    pub const CONSUMER_NOT_ENROLLED: &str = "VIDC-2001";
    /// The card has expired.
    pub const CARD_EXPIRED: &str = "VIDC-2003";
    /// The card is already enrolled (on a retried add: already done).
    pub const CARD_ALREADY_EXISTS: &str = "VIDC-2004";
    /// The card is not enrolled.
    pub const CARD_NOT_ENROLLED: &str = "VIDC-2005";
    /// The card is not a Visa card.
    pub const NOT_A_VISA_CARD: &str = "VIDC-2006";
    /// The field cannot be updated (e.g. the card number of an enrolled card).
    pub const FIELD_NOT_UPDATABLE: &str = "VIDC-2008";
    /// Another request for the same consumer is in progress.
    pub const CONCURRENT_REQUEST: &str = "VIDC-3000";
    /// Service error.
    pub const SERVICE_ERROR: &str = "VIDC-5000";
    /// Ours: missing or wrong API key.
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// Ours: unknown `requestTraceId` on `/status`.
    pub const NOT_FOUND: &str = "NOT_FOUND";

    /// VIDC-2000 and VIDC-2004 received for a *retried* registration or card addition mean
    /// the first attempt got through: treat them as success (`docs/saas.md`).
    pub fn means_already_done(code: &str) -> bool {
        code == CONSUMER_ALREADY_ENROLLED || code == CARD_ALREADY_EXISTS
    }
}

/// One of the six operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaasRequest {
    /// Our idempotency key, a UUID; a repeat gets the first answer.
    pub request_id: String,
    #[serde(default)]
    pub intent: Intent,
    pub consumer_information: ConsumerInformation,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payment_instruments: Vec<PaymentInstrument>,
    /// The SaaS's consumer id, once a registration has told us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_to_pay_customer_id: Option<String>,
}

/// Always `{"type": "PRODUCT_CODE", "value": "CLICK_TO_PAY"}`, as in VICA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Intent {
    pub const TYPE: &'static str = "PRODUCT_CODE";
    pub const VALUE: &'static str = "CLICK_TO_PAY";

    pub fn is_click_to_pay(&self) -> bool {
        self.kind == Self::TYPE && self.value == Self::VALUE
    }
}

impl Default for Intent {
    fn default() -> Self {
        Self { kind: Self::TYPE.into(), value: Self::VALUE.into() }
    }
}

/// The consumer (our entity). Only `externalConsumerID` is always required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerInformation {
    /// Our `entityId`.
    #[serde(rename = "externalConsumerID")]
    pub external_consumer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// At most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// At most 5, E.164 preferred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// `en_US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// ISO 3166 alpha-3, `USA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub national_identifiers: Vec<NationalIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NationalIdentifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The consumer's consent to Click to Pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// RFC 3339.
    pub time_of_consent: String,
    pub version: String,
    pub presenter: String,
}

/// A card (our kit). `Debug` shows the card number as `****1234`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInstrument {
    /// Always `CARD`.
    #[serde(rename = "type", default = "card")]
    pub kind: String,
    /// Our `kitNo`.
    #[serde(rename = "externalInstrumentID")]
    pub external_instrument_id: String,
    /// The card number, in clear on the wire only (the one place it must be).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "account_number")]
    pub account_number: Option<Pan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_on_card: Option<String>,
    /// `YYYY-MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<BillingAddress>,
}

fn card() -> String {
    "CARD".into()
}

impl PaymentInstrument {
    /// A card with only its id, for removals.
    pub fn reference(external_instrument_id: impl Into<String>) -> Self {
        Self {
            kind: card(),
            external_instrument_id: external_instrument_id.into(),
            account_number: None,
            name_on_card: None,
            expiration_date: None,
            billing_address: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line3: Option<String>,
    /// At most 32 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most 9 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166 alpha-3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// The text every bad-card-number error starts with, so that a reader can tell it from
/// other shape errors (the SaaS simulator answers it with VIDC-1003 rather than VIDC-1000).
pub const BAD_ACCOUNT_NUMBER: &str = "accountNumber is not a card number";

/// A card number goes out through [`Pan::expose_for_network`] and comes in through
/// [`Pan::parse`]. Errors say why, never which digits.
mod account_number {
    use std::fmt;

    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};
    use zeroize::Zeroizing;

    use crate::pan::Pan;

    pub fn serialize<S: Serializer>(pan: &Option<Pan>, s: S) -> Result<S::Ok, S::Error> {
        match pan {
            Some(pan) => s.serialize_str(pan.expose_for_network()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Pan>, D::Error> {
        d.deserialize_option(AccountNumber)
    }

    /// A visitor rather than `String::deserialize`, so that a number (serde's default
    /// "invalid type: integer `4111…`" message) never puts the digits into an error.
    struct AccountNumber;

    fn not_a_string<E: serde::de::Error>() -> E {
        E::custom(format_args!("{}: not a string", super::BAD_ACCOUNT_NUMBER))
    }

    impl<'de> Visitor<'de> for AccountNumber {
        type Value = Option<Pan>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a card number as a string of digits")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(AccountNumber)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Pan::parse(text).map(Some).map_err(|e| E::custom(format_args!("{}: {e}", super::BAD_ACCOUNT_NUMBER)))
        }

        fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
            let text = Zeroizing::new(text);
            self.visit_str(&text)
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(not_a_string())
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(not_a_string())
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(not_a_string())
        }
    }
}

/// 202: the operation is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    #[serde(deserialize_with = "outside::id")]
    pub request_trace_id: String,
}

/// Every non-2xx answer with a body, and the error of a failed outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(deserialize_with = "outside::text")]
    pub error_code: String,
    #[serde(default, deserialize_with = "outside::text")]
    pub message: String,
}

/// Where a request stands at the SaaS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestState {
    InProgress,
    Completed,
}

/// How a completed request (or one card of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutcomeResult {
    Success,
    Failed,
}

/// `200` of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    #[serde(deserialize_with = "outside::id")]
    pub request_trace_id: String,
    #[serde(deserialize_with = "outside::id")]
    pub request_id: String,
    #[serde(with = "event")]
    pub event: CtpEvent,
    pub status: RequestState,
    /// Present once `status` is `COMPLETED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// The result of a completed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub result: OutcomeResult,
    /// The consumer's id at the network: set by a successful registration, repeated after.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "outside::optional_id")]
    pub click_to_pay_customer_id: Option<String>,
    /// One entry per card of the request (for a consumer removal: every card removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payment_instruments: Vec<InstrumentOutcome>,
    /// Why the request failed; present when `result` is `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One card's part of an [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstrumentOutcome {
    #[serde(rename = "externalInstrumentID")]
    pub external_instrument_id: String,
    /// The card's id at the network, once enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "outside::optional_id")]
    pub payment_instrument_id: Option<String>,
    pub result: OutcomeResult,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "outside::optional_text")]
    pub error_code: Option<String>,
}

/// `200` of `GET /getData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(rename = "externalConsumerID")]
    pub external_consumer_id: String,
    #[serde(deserialize_with = "outside::id")]
    pub click_to_pay_customer_id: String,
    /// `ACTIVE`, `DISABLED`, `REMOVED` (the values of M2P's Click to Pay lifecycle documentation; others may appear).
    #[serde(deserialize_with = "outside::text")]
    pub status: String,
    pub consumer_information: ConsumerInformation,
    #[serde(default)]
    pub payment_instruments: Vec<ProfileInstrument>,
}

/// One card of a [`Profile`]: never its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileInstrument {
    #[serde(rename = "externalInstrumentID")]
    pub external_instrument_id: String,
    #[serde(deserialize_with = "outside::id")]
    pub payment_instrument_id: String,
    #[serde(deserialize_with = "outside::last4")]
    pub last4: String,
    /// `ACTIVE`, `DISABLED`, `REMOVED`.
    #[serde(deserialize_with = "outside::text")]
    pub status: String,
}

/// The body the SaaS posts to our callback URL when a request completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    #[serde(deserialize_with = "outside::id")]
    pub request_trace_id: String,
    #[serde(deserialize_with = "outside::id")]
    pub request_id: String,
    #[serde(with = "event")]
    pub event: CtpEvent,
    pub tenant: String,
    pub outcome: Outcome,
}

/// What we read from the SaaS and keep, return or log is checked on the way in: free text
/// (error codes, messages, statuses) is scrubbed of digit runs ([`crate::saas::scrub`]),
/// and identifiers we store (trace ids, the network's consumer and card ids) must look like
/// identifiers, not card numbers, or the whole answer is refused as malformed.
mod outside {
    use serde::{Deserialize, Deserializer};

    use crate::saas::scrub;

    /// Longest identifier we take from the SaaS.
    const MAX_ID_CHARS: usize = 128;
    /// A run of this many digits is card-number length (Visa's are 13 to 19). UUIDs, the
    /// usual identifiers, never have more than 12 digits in a row.
    const CARD_LIKE_DIGITS: usize = 13;

    /// Why an identifier from outside is refused (never echoing it).
    pub fn check_id(id: &str) -> Result<(), &'static str> {
        if id.is_empty() || id.len() > MAX_ID_CHARS {
            return Err("identifier must be 1 to 128 characters");
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
            return Err("identifier may hold only letters, digits, - _ . and :");
        }
        let longest_digit_run = id.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
        if longest_digit_run >= CARD_LIKE_DIGITS {
            return Err("identifier holds a run of digits as long as a card number");
        }
        Ok(())
    }

    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let id = String::deserialize(d)?;
        check_id(&id).map_err(serde::de::Error::custom)?;
        Ok(id)
    }

    pub fn optional_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let id = Option::<String>::deserialize(d)?;
        if let Some(id) = &id {
            check_id(id).map_err(serde::de::Error::custom)?;
        }
        Ok(id)
    }

    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        String::deserialize(d).map(|text| scrub(&text))
    }

    pub fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<String>::deserialize(d).map(|text| text.map(|t| scrub(&t)))
    }

    pub fn last4<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let last4 = String::deserialize(d)?;
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom("last4 must be four digits"));
        }
        Ok(last4)
    }
}

/// A [`CtpEvent`] by its wire name (`CTP_ADD_KIT`).
mod event {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ctp::CtpEvent;

    pub fn serialize<S: Serializer>(event: &CtpEvent, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(event.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CtpEvent, D::Error> {
        let name = String::deserialize(d)?;
        CtpEvent::parse(&name).ok_or_else(|| serde::de::Error::custom(format_args!("unknown event `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PAN: &str = "4111111111111111";

    fn request() -> SaasRequest {
        SaasRequest {
            request_id: "r-1".into(),
            intent: Intent::default(),
            consumer_information: ConsumerInformation {
                external_consumer_id: "e-1".into(),
                first_name: Some("Jane".into()),
                last_name: Some("Doe".into()),
                emails: vec!["jane@example.com".into()],
                locale: Some("en_US".into()),
                country_code: Some("USA".into()),
                ..Default::default()
            },
            payment_instruments: vec![PaymentInstrument {
                account_number: Some(Pan::parse(PAN).unwrap()),
                expiration_date: Some("2030-01".into()),
                billing_address: Some(BillingAddress { city: Some("Austin".into()), ..Default::default() }),
                ..PaymentInstrument::reference("k-1")
            }],
            click_to_pay_customer_id: None,
        }
    }

    #[test]
    fn request_shape_is_vica_like_and_skips_empty_fields() {
        let value = serde_json::to_value(request()).unwrap();
        assert_eq!(
            value,
            json!({
                "requestId": "r-1",
                "intent": {"type": "PRODUCT_CODE", "value": "CLICK_TO_PAY"},
                "consumerInformation": {
                    "externalConsumerID": "e-1", "firstName": "Jane", "lastName": "Doe",
                    "emails": ["jane@example.com"], "locale": "en_US", "countryCode": "USA"
                },
                "paymentInstruments": [{
                    "type": "CARD", "externalInstrumentID": "k-1", "accountNumber": PAN,
                    "expirationDate": "2030-01", "billingAddress": {"city": "Austin"}
                }]
            })
        );
        let back: SaasRequest = serde_json::from_value(value).unwrap();
        assert_eq!(back, request());
    }

    #[test]
    fn debug_never_shows_the_card_number() {
        let text = format!("{:?}", request());
        assert!(!text.contains(PAN) && text.contains("****1111"), "{text}");
    }

    #[test]
    fn bad_card_numbers_are_refused_without_echoing_digits() {
        for bad in [json!("4111111111111112"), json!(4111111111111111u64), json!("4111 1111"), json!({"x": 1})] {
            let mut value = serde_json::to_value(request()).unwrap();
            value["paymentInstruments"][0]["accountNumber"] = bad;
            let err = serde_json::from_value::<SaasRequest>(value).unwrap_err().to_string();
            assert!(err.contains(BAD_ACCOUNT_NUMBER), "{err}");
            assert!(!err.contains("411111111111111"), "{err}");
        }
        let mut value = serde_json::to_value(request()).unwrap();
        value["paymentInstruments"][0]["accountNumber"] = serde_json::Value::Null;
        assert_eq!(serde_json::from_value::<SaasRequest>(value).unwrap().payment_instruments[0].account_number, None);
    }

    #[test]
    fn status_and_callback_round_trip() {
        let status = json!({
            "requestTraceId": "t", "requestId": "r", "event": "CTP_ADD_KIT", "status": "COMPLETED",
            "outcome": {"result": "FAILED",
                        "paymentInstruments": [{"externalInstrumentID": "k", "result": "FAILED", "errorCode": "VIDC-2004"}],
                        "error": {"errorCode": "VIDC-2004", "message": "card already exists"}},
            "somethingNew": true
        });
        let parsed: RequestStatus = serde_json::from_value(status).unwrap();
        assert_eq!(parsed.event, CtpEvent::AddKit);
        assert_eq!(parsed.status, RequestState::Completed);
        let outcome = parsed.outcome.unwrap();
        assert_eq!(outcome.result, OutcomeResult::Failed);
        assert!(code::means_already_done(&outcome.error.unwrap().error_code));
        let bad_event = json!({"requestTraceId": "t", "requestId": "r", "event": "CTP_NOPE", "status": "IN_PROGRESS"});
        assert!(serde_json::from_value::<RequestStatus>(bad_event).unwrap_err().to_string().contains("CTP_NOPE"));
        let callback = Callback {
            request_trace_id: "t".into(),
            request_id: "r".into(),
            event: CtpEvent::RegisterEntityAndKit,
            tenant: "T".into(),
            outcome: Outcome {
                result: OutcomeResult::Success,
                click_to_pay_customer_id: Some("c".into()),
                payment_instruments: vec![],
                error: None,
            },
        };
        let text = serde_json::to_string(&callback).unwrap();
        assert!(text.contains(r#""event":"CTP_REGISTER_ENTITY_AND_KIT""#), "{text}");
        assert_eq!(serde_json::from_str::<Callback>(&text).unwrap(), callback);
    }

    #[test]
    fn outside_text_is_scrubbed_and_outside_ids_must_not_look_like_card_numbers() {
        let callback = json!({
            "requestTraceId": "451562ba-83cf-11ee-b962-024212345678", "requestId": "r-1", "event": "CTP_ADD_KIT", "tenant": "T",
            "outcome": {"result": "FAILED", "error": {"errorCode": format!("VIDC-2004 {PAN}"), "message": format!("card {PAN} exists")},
                        "paymentInstruments": [{"externalInstrumentID": "k-1", "result": "FAILED", "errorCode": PAN}]}
        });
        let parsed: Callback = serde_json::from_value(callback.clone()).unwrap();
        let text = format!("{parsed:?}");
        assert!(!text.contains(PAN), "{text}");
        assert_eq!(parsed.outcome.error.as_ref().unwrap().error_code, "VIDC-[digits]", "a run with its separators goes whole");

        for (pointer, value) in [("/requestTraceId", PAN.to_owned()), ("/requestId", format!("id-{PAN}")), ("/requestId", "a b".into())] {
            let mut bad = callback.clone();
            *bad.pointer_mut(pointer).unwrap() = json!(value);
            let err = serde_json::from_value::<Callback>(bad).unwrap_err().to_string();
            assert!(!err.contains(PAN), "{err}");
        }
        let mut bad = callback;
        bad["outcome"]["clickToPayCustomerId"] = json!(PAN);
        assert!(serde_json::from_value::<Callback>(bad).is_err());
        assert!(serde_json::from_value::<Accepted>(json!({"requestTraceId": PAN})).is_err());
        assert!(serde_json::from_value::<Accepted>(json!({"requestTraceId": "123456789012"})).is_ok(), "a UUID's last group");
    }
}
