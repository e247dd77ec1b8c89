//! Personal data out of the log publisher's lines. The queue's consumers are entitled to a
//! consumer's name and contact details; a log pipeline usually is not (it is read by more
//! people, kept longer, and copied to more places), so by default the log publisher masks
//! them, and `outbox.log_payloads = "full"` turns that off for development.
//!
//! What is masked: any JSON member, at any depth, whose name says it holds a name, an email
//! address, a phone number, a postal address, a date of birth or a national identifier.
//! Names keep their first character, email addresses their first character and domain,
//! phone numbers their last two digits; everything else becomes `***`.

use serde_json::Value;

/// How a member is masked, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Name,
    Email,
    Phone,
    Other,
}

fn kind(member: &str) -> Option<Kind> {
    let kind = match member {
        "firstName" | "middleName" | "lastName" | "nameOnCard" | "name" => Kind::Name,
        "contactEmail" | "email" | "emails" => Kind::Email,
        "phoneNumber" | "phone" | "phones" => Kind::Phone,
        "addressLine1" | "addressLine2" | "addressLine3" | "billingAddress" | "postalCode" | "dateOfBirth" | "nationalIdentifiers" => {
            Kind::Other
        }
        _ => return None,
    };
    Some(kind)
}

/// Masks every personal member of `value` in place.
pub fn mask_personal_data(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                match kind(name) {
                    Some(kind) => mask_all(member, kind),
                    None => mask_personal_data(member),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_personal_data),
        _ => {}
    }
}

/// Masks every string under `value` as `kind` (a list of emails, an address object …).
fn mask_all(value: &mut Value, kind: Kind) {
    match value {
        Value::String(text) => *text = mask(text, kind),
        Value::Array(items) => items.iter_mut().for_each(|item| mask_all(item, kind)),
        Value::Object(members) => members.values_mut().for_each(|member| mask_all(member, Kind::Other)),
        Value::Null => {}
        other => *other = Value::String("***".into()),
    }
}

fn mask(text: &str, kind: Kind) -> String {
    let first = || text.chars().next().map(String::from).unwrap_or_default();
    match kind {
        Kind::Name => format!("{}***", first()),
        Kind::Email => match text.rsplit_once('@') {
            Some((_, domain)) => format!("{}***@{domain}", first()),
            None => "***".into(),
        },
        Kind::Phone => {
            let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
            format!("***{tail}")
        }
        Kind::Other => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_members_are_masked_at_any_depth_and_the_rest_kept() {
        let mut payload = json!({
            "business": "DEMOBANK",
            "serverNotifyData": {
                "entityId": "ENT-1", "kitNo": "KIT-1", "cardLast4": "1111",
                "firstName": "Jane", "lastName": "Doe",
                "contactEmail": "jane.doe@example.com", "phoneNumber": "+1 (415) 555-0100",
                "profile": {"emails": ["a.b@bank.example", "c@d.example"], "phones": ["+14155550123"],
                            "billingAddress": {"addressLine1": "1 Main St", "city": "Springfield"}}
            }
        });
        mask_personal_data(&mut payload);
        let data = &payload["serverNotifyData"];
        assert_eq!(payload["business"], "DEMOBANK");
        assert_eq!(
            (data["entityId"].as_str(), data["kitNo"].as_str(), data["cardLast4"].as_str()),
            (Some("ENT-1"), Some("KIT-1"), Some("1111"))
        );
        assert_eq!(data["firstName"], "J***");
        assert_eq!(data["lastName"], "D***");
        assert_eq!(data["contactEmail"], "j***@example.com");
        assert_eq!(data["phoneNumber"], "***00");
        assert_eq!(data["profile"]["emails"], json!(["a***@bank.example", "c***@d.example"]));
        assert_eq!(data["profile"]["phones"], json!(["***23"]));
        assert_eq!(data["profile"]["billingAddress"], json!({"addressLine1": "***", "city": "***"}));
        let text = payload.to_string();
        for secret in ["Jane", "Doe", "jane.doe", "555-0100", "Main St", "Springfield"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
    }

    #[test]
    fn odd_values_are_masked_without_panicking() {
        let mut payload = json!({"firstName": "", "email": "no-at-sign", "phone": "", "name": 42, "emails": null});
        mask_personal_data(&mut payload);
        assert_eq!(payload, json!({"firstName": "***", "email": "***", "phone": "***", "name": "***", "emails": null}));
    }
}
