//! The decrypted `CTP_ENROLLMENT_ATTEMPT` payload (Visa's enrollment-attempt notification documentation), as typed values.
//!
//! Read field by field from a `serde_json::Value` rather than derived: serde's own error
//! messages quote the offending value, and the offending value may be a card number.
//! Unknown fields are ignored; a missing required field or a value outside Visa's format is
//! a [`Rejection`] naming the field, never its content.

use serde_json::{Map, Value};

use super::error::{Rejected, Rejection};
use crate::pan::Pan;

/// `clientInformation`: every field is conditional, so each is optional here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInformation {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub contact_email: Option<String>,
}

/// What Visa tells us of a consumer trying to enroll one of our cards.
#[derive(Debug, Clone)]
pub struct EnrollmentAttempt {
    pub client: ClientInformation,
    /// Token service provider code, e.g. `V`.
    pub tsp: String,
    pub pan: Pan,
}

impl EnrollmentAttempt {
    pub fn from_json(plaintext: &[u8]) -> Result<Self, Rejected> {
        let value: Value = serde_json::from_slice(plaintext).map_err(|_| Rejection::PayloadNotJson)?;
        let root = value.as_object().ok_or(Rejection::PayloadNotJson)?;

        let client = object(root, "clientInformation", "clientInformation")?;
        let client = ClientInformation {
            first_name: text(client, "firstName", "clientInformation.firstName", 2, 80)?,
            last_name: text(client, "lastName", "clientInformation.lastName", 2, 80)?,
            phone_number: phone(client)?,
            contact_email: text(client, "contactEmail", "clientInformation.contactEmail", 1, 48)?,
        };

        let enrollment = object(root, "enrollment", "enrollment")?;
        let tsp = text(enrollment, "tsp", "enrollment.tsp", 1, 8)?.ok_or(Rejection::PayloadMissingField.at("enrollment.tsp"))?;
        let instrument = object(enrollment, "paymentInstrument", "enrollment.paymentInstrument")?;
        let pan = account_number(instrument)?;
        Ok(Self { client, tsp, pan })
    }
}

fn object<'a>(parent: &'a Map<String, Value>, key: &str, path: &'static str) -> Result<&'a Map<String, Value>, Rejected> {
    match parent.get(key) {
        None | Some(Value::Null) => Err(Rejection::PayloadMissingField.at(path)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(Rejection::PayloadInvalidField.at(path)),
    }
}

/// An optional string of `min..=max` characters (not bytes: names and emails are UTF-8).
fn text(parent: &Map<String, Value>, key: &str, path: &'static str, min: usize, max: usize) -> Result<Option<String>, Rejected> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if (min..=max).contains(&n) { Ok(Some(s.clone())) } else { Err(Rejection::PayloadInvalidField.at(path)) }
        }
        Some(_) => Err(Rejection::PayloadInvalidField.at(path)),
    }
}

/// `phoneNumber`: at most 32 of `0-9 ( ) . - +` and spaces (the format of Visa's own example).
fn phone(client: &Map<String, Value>) -> Result<Option<String>, Rejected> {
    const PATH: &str = "clientInformation.phoneNumber";
    let phone = text(client, "phoneNumber", PATH, 1, 32)?;
    if let Some(p) = &phone
        && !p.chars().all(|c| c.is_ascii_digit() || "().-+ ".contains(c))
    {
        return Err(Rejection::PayloadInvalidField.at(PATH));
    }
    Ok(phone)
}

/// `accountNumber`: required, at most 19 digits. A JSON number is tolerated (it cannot
/// carry a leading zero, and card numbers do not start with one).
fn account_number(instrument: &Map<String, Value>) -> Result<Pan, Rejected> {
    const PATH: &str = "enrollment.paymentInstrument.accountNumber";
    let digits = match instrument.get("accountNumber") {
        None | Some(Value::Null) => return Err(Rejection::PayloadMissingField.at(PATH)),
        Some(Value::String(s)) => zeroize::Zeroizing::new(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => zeroize::Zeroizing::new(n.to_string()),
        Some(_) => return Err(Rejection::PayloadInvalidField.at(PATH)),
    };
    Pan::parse(&digits).map_err(|_| Rejection::PayloadInvalidField.at(PATH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "clientInformation": {"firstName": "Jane", "lastName": "Doe",
                "phoneNumber": "+1 (415) 555-0100", "contactEmail": "jane@example.com"},
            "enrollment": {"tsp": "V", "paymentInstrument": {"accountNumber": "4111111111111111"}},
            "somethingNew": {"ignored": true}
        })
    }

    fn parse(v: &Value) -> Result<EnrollmentAttempt, Rejected> {
        EnrollmentAttempt::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn reads_every_field_and_ignores_unknown_ones() {
        let a = parse(&sample()).unwrap();
        assert_eq!(a.client.first_name.as_deref(), Some("Jane"));
        assert_eq!(a.client.phone_number.as_deref(), Some("+1 (415) 555-0100"));
        assert_eq!(a.tsp, "V");
        assert_eq!(a.pan.last4(), "1111");
    }

    #[test]
    fn conditional_client_fields_may_be_absent() {
        let mut v = sample();
        v["clientInformation"] = json!({});
        assert_eq!(parse(&v).unwrap().client, ClientInformation::default());
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (path, expect) in [
            ("/clientInformation", "clientInformation"),
            ("/enrollment", "enrollment"),
            ("/enrollment/tsp", "enrollment.tsp"),
            ("/enrollment/paymentInstrument", "enrollment.paymentInstrument"),
            ("/enrollment/paymentInstrument/accountNumber", "enrollment.paymentInstrument.accountNumber"),
        ] {
            let mut v = sample();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() { &mut v } else { v.pointer_mut(parent).unwrap() };
            parent.as_object_mut().unwrap().remove(key);
            let err = parse(&v).unwrap_err();
            assert_eq!(err, Rejection::PayloadMissingField.at(expect), "{path}");
        }
    }

    #[test]
    fn out_of_format_fields_are_refused() {
        for (pointer, bad) in [
            ("/clientInformation/firstName", json!("J")),
            ("/clientInformation/lastName", json!("x".repeat(81))),
            ("/clientInformation/phoneNumber", json!("+1 555 CALL NOW")),
            ("/clientInformation/contactEmail", json!(format!("{}@example.com", "a".repeat(40)))),
            ("/enrollment/paymentInstrument/accountNumber", json!("4111111111111112")),
            ("/enrollment/paymentInstrument/accountNumber", json!("41111111111111111111")),
            ("/enrollment/paymentInstrument/accountNumber", json!(true)),
        ] {
            let mut v = sample();
            *v.pointer_mut(pointer).unwrap() = bad;
            assert_eq!(parse(&v).unwrap_err().reason, Rejection::PayloadInvalidField, "{pointer}");
        }
    }

    #[test]
    fn account_number_as_json_number_is_tolerated() {
        let mut v = sample();
        v["enrollment"]["paymentInstrument"]["accountNumber"] = json!(4111111111111111u64);
        assert_eq!(parse(&v).unwrap().pan.last4(), "1111");
    }

    #[test]
    fn rejections_never_quote_the_card_number() {
        let mut v = sample();
        v["enrollment"]["paymentInstrument"]["accountNumber"] = json!("4111111111111112");
        let err = parse(&v).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("411111111111111"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = EnrollmentAttempt::from_json(&bytes);
        }

        #[test]
        fn arbitrary_json_values_never_panic(s in "\\PC{0,64}", n in any::<i64>()) {
            for v in [json!({"clientInformation": s, "enrollment": n}),
                      json!({"clientInformation": {"firstName": n}, "enrollment": {"tsp": s}}),
                      json!({"clientInformation": {}, "enrollment": {"tsp": "V", "paymentInstrument": {"accountNumber": s}}})] {
                let _ = parse(&v);
            }
        }
    }
}
