//! The synchronous checks of the simulator: what a VICA-like SaaS refuses with 400 before
//! accepting anything (`VIDC-1000`…`VIDC-1003`). Business rules (already enrolled, expired…)
//! are not here: they are decided when the request completes ([`super::state`]).

use http::StatusCode;

use crate::ctp::CtpEvent;
use crate::saas::wire::{BAD_ACCOUNT_NUMBER, BillingAddress, ConsumerInformation, PaymentInstrument, SaasRequest, code};

/// A synchronous refusal: status, `errorCode`, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }
}

fn missing(field: &str) -> Refusal {
    Refusal::bad_request(code::MISSING_FIELD, format!("{field} is required"))
}

fn too_long(field: &str, max: usize) -> Refusal {
    Refusal::bad_request(code::TOO_LONG, format!("{field} exceeds {max}"))
}

fn invalid(field: &str, why: &str) -> Refusal {
    Refusal::bad_request(code::INVALID_FIELD, format!("{field} {why}"))
}

/// Visa's field limits (`docs/protocol.md`, section 3).
const MAX_NAME: usize = 35;
const MAX_EMAILS: usize = 5;
const MAX_PHONES: usize = 5;
const MAX_NATIONAL_IDS: usize = 5;
const MAX_CITY: usize = 32;
const MAX_POSTAL_CODE: usize = 9;
const MAX_ADDRESS_LINE: usize = 64;
const MAX_ID: usize = 100;
/// Characters Visa refuses in a billing address.
const FORBIDDEN_ADDRESS_CHARS: &[char] = &['[', ']', '{', '}', ':', '&', '$', '^', '!', '=', ';', '*', '#', '`', '<', '>', '"', '@'];

/// Turns a body that did not deserialize into the contract's refusal: a bad card number is
/// a bad field (1003), a missing field is 1001, anything else a malformed request (1000).
/// The parser's message is scrubbed of digit runs before it is echoed.
pub fn classify_parse_error(e: &serde_json::Error) -> Refusal {
    let text = crate::saas::scrub(&e.to_string());
    if e.is_syntax() || e.is_eof() {
        return Refusal::bad_request(code::INVALID_REQUEST, format!("body is not JSON: {text}"));
    }
    if text.contains(BAD_ACCOUNT_NUMBER) {
        return Refusal::bad_request(code::INVALID_FIELD, text);
    }
    if text.starts_with("missing field") {
        return Refusal::bad_request(code::MISSING_FIELD, text);
    }
    Refusal::bad_request(code::INVALID_REQUEST, text)
}

/// Every synchronous rule for `event`; the first broken one is the answer.
pub fn validate(event: CtpEvent, r: &SaasRequest) -> Result<(), Refusal> {
    if r.request_id.is_empty() {
        return Err(missing("requestId"));
    }
    if r.request_id.chars().count() > MAX_ID {
        return Err(too_long("requestId", MAX_ID));
    }
    if !r.intent.is_click_to_pay() {
        return Err(invalid("intent", "must be {type: PRODUCT_CODE, value: CLICK_TO_PAY}"));
    }
    let c = &r.consumer_information;
    consumer(c)?;
    let cards = &r.payment_instruments;
    match event {
        CtpEvent::RegisterEntityAndKit => {
            required(&c.first_name, "consumerInformation.firstName")?;
            required(&c.last_name, "consumerInformation.lastName")?;
            required(&c.locale, "consumerInformation.locale")?;
            required(&c.country_code, "consumerInformation.countryCode")?;
            if c.emails.is_empty() && c.phones.is_empty() {
                return Err(missing("consumerInformation.emails or consumerInformation.phones"));
            }
            enrolling_cards(cards)?;
        }
        CtpEvent::AddKit => enrolling_cards(cards)?,
        CtpEvent::RemoveKit | CtpEvent::UpdateKit => {
            if cards.is_empty() {
                return Err(missing("paymentInstruments"));
            }
        }
        CtpEvent::RemoveEntity | CtpEvent::UpdateEntity => {}
    }
    for (i, card) in cards.iter().enumerate() {
        instrument(i, card)?;
    }
    Ok(())
}

fn required(value: &Option<String>, field: &str) -> Result<(), Refusal> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(missing(field)),
    }
}

/// Cards being enrolled need their number and expiry.
fn enrolling_cards(cards: &[PaymentInstrument]) -> Result<(), Refusal> {
    if cards.is_empty() {
        return Err(missing("paymentInstruments"));
    }
    for (i, card) in cards.iter().enumerate() {
        if card.account_number.is_none() {
            return Err(missing(&format!("paymentInstruments[{i}].accountNumber")));
        }
        if card.expiration_date.is_none() {
            return Err(missing(&format!("paymentInstruments[{i}].expirationDate")));
        }
    }
    Ok(())
}

fn consumer(c: &ConsumerInformation) -> Result<(), Refusal> {
    let field = |name: &str| format!("consumerInformation.{name}");
    if c.external_consumer_id.trim().is_empty() {
        return Err(missing(&field("externalConsumerID")));
    }
    if c.external_consumer_id.chars().count() > MAX_ID {
        return Err(too_long(&field("externalConsumerID"), MAX_ID));
    }
    for (name, value) in [("firstName", &c.first_name), ("middleName", &c.middle_name), ("lastName", &c.last_name)] {
        if let Some(v) = value
            && v.chars().count() > MAX_NAME
        {
            return Err(too_long(&field(name), MAX_NAME));
        }
    }
    if c.emails.len() > MAX_EMAILS {
        return Err(too_long(&field("emails"), MAX_EMAILS));
    }
    if c.phones.len() > MAX_PHONES {
        return Err(too_long(&field("phones"), MAX_PHONES));
    }
    for email in &c.emails {
        if !is_email(email) {
            return Err(invalid(&field("emails"), "holds a value that is not an email address"));
        }
    }
    for phone in &c.phones {
        if !is_phone(phone) {
            return Err(invalid(&field("phones"), "holds a value that is not a phone number"));
        }
    }
    if let Some(locale) = &c.locale
        && !is_locale(locale)
    {
        return Err(invalid(&field("locale"), "must look like en_US"));
    }
    if let Some(country) = &c.country_code
        && !is_alpha3(country)
    {
        return Err(invalid(&field("countryCode"), "must be an ISO 3166 alpha-3 code such as USA"));
    }
    if c.national_identifiers.len() > MAX_NATIONAL_IDS {
        return Err(too_long(&field("nationalIdentifiers"), MAX_NATIONAL_IDS));
    }
    for id in &c.national_identifiers {
        if id.kind.trim().is_empty() || id.value.trim().is_empty() {
            return Err(missing(&field("nationalIdentifiers[].type and value")));
        }
    }
    if let Some(consent) = &c.consent {
        if consent.version.trim().is_empty() || consent.presenter.trim().is_empty() {
            return Err(missing(&field("consent.version and consent.presenter")));
        }
        if humantime_serde::re::humantime::parse_rfc3339_weak(&consent.time_of_consent).is_err() {
            return Err(invalid(&field("consent.timeOfConsent"), "must be an RFC 3339 time"));
        }
    }
    Ok(())
}

fn instrument(i: usize, card: &PaymentInstrument) -> Result<(), Refusal> {
    let field = |name: &str| format!("paymentInstruments[{i}].{name}");
    if card.kind != "CARD" {
        return Err(invalid(&field("type"), "must be CARD"));
    }
    if card.external_instrument_id.trim().is_empty() {
        return Err(missing(&field("externalInstrumentID")));
    }
    if card.external_instrument_id.chars().count() > MAX_ID {
        return Err(too_long(&field("externalInstrumentID"), MAX_ID));
    }
    if let Some(name) = &card.name_on_card
        && name.chars().count() > MAX_ID
    {
        return Err(too_long(&field("nameOnCard"), MAX_ID));
    }
    if let Some(date) = &card.expiration_date
        && parse_expiry(date).is_none()
    {
        return Err(invalid(&field("expirationDate"), "must be YYYY-MM"));
    }
    if let Some(address) = &card.billing_address {
        billing(&field("billingAddress"), address)?;
    }
    Ok(())
}

fn billing(prefix: &str, a: &BillingAddress) -> Result<(), Refusal> {
    let fields = [
        ("addressLine1", &a.address_line1, MAX_ADDRESS_LINE),
        ("addressLine2", &a.address_line2, MAX_ADDRESS_LINE),
        ("addressLine3", &a.address_line3, MAX_ADDRESS_LINE),
        ("city", &a.city, MAX_CITY),
        ("state", &a.state, MAX_ADDRESS_LINE),
        ("postalCode", &a.postal_code, MAX_POSTAL_CODE),
        ("country", &a.country, 3),
    ];
    for (name, value, max) in fields {
        let Some(value) = value else { continue };
        if value.contains(FORBIDDEN_ADDRESS_CHARS) {
            return Err(invalid(&format!("{prefix}.{name}"), "contains a character Visa refuses"));
        }
        if name != "country" && value.chars().count() > max {
            return Err(too_long(&format!("{prefix}.{name}"), max));
        }
    }
    if let Some(country) = &a.country
        && !is_alpha3(country)
    {
        return Err(invalid(&format!("{prefix}.country"), "must be an ISO 3166 alpha-3 code such as USA"));
    }
    Ok(())
}

/// `YYYY-MM` as (year, month).
pub fn parse_expiry(text: &str) -> Option<(u16, u8)> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, month) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&month).then_some((year, month))
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (4..=20).contains(&digits) && s.len() <= 32 && s.chars().all(|c| c.is_ascii_digit() || "+ -()".contains(c))
}

fn is_locale(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b[..2].iter().all(u8::is_ascii_lowercase) && b[2] == b'_' && b[3..].iter().all(u8::is_ascii_uppercase)
}

fn is_alpha3(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pan::Pan;
    use crate::saas::wire::Intent;

    fn register() -> SaasRequest {
        SaasRequest {
            request_id: "r".into(),
            intent: Intent::default(),
            consumer_information: ConsumerInformation {
                external_consumer_id: "e".into(),
                first_name: Some("Jane".into()),
                last_name: Some("Doe".into()),
                emails: vec!["jane@example.com".into()],
                phones: vec!["+1 (415) 555-0100".into()],
                locale: Some("en_US".into()),
                country_code: Some("USA".into()),
                ..Default::default()
            },
            payment_instruments: vec![PaymentInstrument {
                account_number: Some(Pan::parse("4111111111111111").unwrap()),
                expiration_date: Some("2030-12".into()),
                billing_address: Some(BillingAddress {
                    address_line1: Some("1 Main St".into()),
                    city: Some("Austin".into()),
                    postal_code: Some("78701".into()),
                    country: Some("USA".into()),
                    ..Default::default()
                }),
                ..PaymentInstrument::reference("k")
            }],
            click_to_pay_customer_id: None,
        }
    }

    fn code_of(change: impl FnOnce(&mut SaasRequest)) -> &'static str {
        let mut r = register();
        change(&mut r);
        validate(CtpEvent::RegisterEntityAndKit, &r).map(|_| "OK").unwrap_or_else(|e| e.code)
    }

    #[test]
    fn each_rule_has_its_code() {
        assert_eq!(code_of(|_| {}), "OK");
        assert_eq!(code_of(|r| r.consumer_information.first_name = None), "VIDC-1001");
        assert_eq!(code_of(|r| r.payment_instruments.clear()), "VIDC-1001");
        assert_eq!(code_of(|r| r.payment_instruments[0].account_number = None), "VIDC-1001");
        assert_eq!(
            code_of(|r| {
                r.consumer_information.emails.clear();
                r.consumer_information.phones.clear()
            }),
            "VIDC-1001"
        );
        assert_eq!(code_of(|r| r.consumer_information.last_name = Some("x".repeat(36))), "VIDC-1002");
        assert_eq!(code_of(|r| r.consumer_information.emails = vec!["a@b.co".into(); 6]), "VIDC-1002");
        assert_eq!(code_of(|r| r.consumer_information.phones = vec!["5550100".into(); 6]), "VIDC-1002");
        let addr = |r: &mut SaasRequest| r.payment_instruments[0].billing_address.as_mut().unwrap().clone();
        assert_eq!(
            code_of(|r| {
                let mut a = addr(r);
                a.city = Some("c".repeat(33));
                r.payment_instruments[0].billing_address = Some(a)
            }),
            "VIDC-1002"
        );
        assert_eq!(
            code_of(|r| {
                let mut a = addr(r);
                a.postal_code = Some("1234567890".into());
                r.payment_instruments[0].billing_address = Some(a)
            }),
            "VIDC-1002"
        );
        assert_eq!(
            code_of(|r| {
                let mut a = addr(r);
                a.country = Some("US".into());
                r.payment_instruments[0].billing_address = Some(a)
            }),
            "VIDC-1003"
        );
        for bad in ['[', ']', '{', '}', ':', '&', '$', '^', '!', '=', ';', '*', '#', '`', '<', '>', '"', '@'] {
            assert_eq!(
                code_of(|r| {
                    let mut a = addr(r);
                    a.address_line1 = Some(format!("1 Main{bad}St"));
                    r.payment_instruments[0].billing_address = Some(a)
                }),
                "VIDC-1003",
                "{bad}"
            );
        }
        assert_eq!(code_of(|r| r.consumer_information.country_code = Some("usa".into())), "VIDC-1003");
        assert_eq!(code_of(|r| r.consumer_information.locale = Some("english".into())), "VIDC-1003");
        assert_eq!(code_of(|r| r.consumer_information.emails = vec!["not-an-email".into()]), "VIDC-1003");
        assert_eq!(code_of(|r| r.payment_instruments[0].expiration_date = Some("12/30".into())), "VIDC-1003");
        assert_eq!(code_of(|r| r.intent.value = "OTHER".into()), "VIDC-1003");
    }

    #[test]
    fn per_event_requirements() {
        let mut r = register();
        r.consumer_information = ConsumerInformation { external_consumer_id: "e".into(), ..Default::default() };
        assert!(validate(CtpEvent::AddKit, &r).is_ok());
        assert!(validate(CtpEvent::RemoveEntity, &r).is_ok());
        assert!(validate(CtpEvent::RegisterEntityAndKit, &r).is_err());
        r.payment_instruments = vec![PaymentInstrument::reference("k")];
        assert!(validate(CtpEvent::RemoveKit, &r).is_ok());
        assert_eq!(validate(CtpEvent::AddKit, &r).unwrap_err().code, "VIDC-1001");
        r.payment_instruments.clear();
        assert_eq!(validate(CtpEvent::RemoveKit, &r).unwrap_err().code, "VIDC-1001");
    }

    #[test]
    fn expiry_format() {
        assert_eq!(parse_expiry("2030-01"), Some((2030, 1)));
        for bad in ["2030-13", "2030-00", "30-01", "2030-1", "abcd-ef", "2030/01", ""] {
            assert_eq!(parse_expiry(bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_errors_are_classified_without_digits() {
        let e = serde_json::from_str::<SaasRequest>("{").unwrap_err();
        assert_eq!(classify_parse_error(&e).code, "VIDC-1000");
        let e = serde_json::from_str::<SaasRequest>(r#"{"consumerInformation":{"externalConsumerID":"e"}}"#).unwrap_err();
        assert_eq!(classify_parse_error(&e).code, "VIDC-1001");
        let body = r#"{"requestId":"r","consumerInformation":{"externalConsumerID":"e"},
            "paymentInstruments":[{"externalInstrumentID":"k","accountNumber":"4111111111111112"}]}"#;
        let e = serde_json::from_str::<SaasRequest>(body).unwrap_err();
        let refusal = classify_parse_error(&e);
        assert_eq!(refusal.code, "VIDC-1003");
        assert!(!refusal.message.contains("411111111111"), "{}", refusal.message);
        let body = r#"{"requestId":"r","consumerInformation":{"externalConsumerID":"e","emails":4111111111111111}}"#;
        let refusal = classify_parse_error(&serde_json::from_str::<SaasRequest>(body).unwrap_err());
        assert!(!refusal.message.contains("411111111111"), "{}", refusal.message);
    }
}
