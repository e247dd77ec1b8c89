//! An entity's Click to Pay profile and the rules it must meet before anything is sent to
//! the network: the field limits of Visa's Click to Pay issuer API (VICA), and the stricter
//! of what M2P's Click to Pay module, Pismo's tokenization API and Thales D1's Click to Pay
//! API accept.

use serde::{Deserialize, Serialize};

use crate::ids::DateOfBirth;
use crate::store::registry::ImportedContact;

/// What the issuer tells us about a customer. Every field is optional at the registry;
/// registration requires names, an email and a phone (Pismo's rule, Visa's need).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// `en_US`: ISO 639-1 language, underscore, ISO 3166-1 country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// ISO 3166-1 alpha-3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub national_identifiers: Vec<NationalIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<BillingAddress>,
    /// `YYYY-MM-DD`. Not sent to the network: the card-details page asks the cardholder
    /// for it when `widget.require_dob` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NationalIdentifier {
    /// PASSPORT, DRIVING_LICENSE or NATIONAL_IDENTITY.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Consent {
    /// `YYYY-MM-DDThh:mm:ss.000Z`, now or in the past.
    pub time_of_consent: String,
    /// Terms-and-conditions version accepted, 1 to 9 characters.
    pub version: String,
    /// Who presented the consent, 1 to 30 characters.
    pub presenter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillingAddress {
    pub address_line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line3: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-3.
    pub country: String,
}

/// A field that breaks a rule: which field, and which rule. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: String,
    pub rule: &'static str,
}

/// Characters Visa refuses in a billing address (VICA's documentation lists them).
const ADDRESS_FORBIDDEN: &[char] = &['[', ']', '{', '}', ':', '&', '$', '^', '!', '=', ';', '*', '#', '`', '<', '>', '"', '@'];

impl EntityProfile {
    /// The profile the registry holds for an entity: the document the API saved (an
    /// unreadable one counts as empty), with names, email and phone taken from the card
    /// file where the document has none.
    pub fn from_stored(document: Option<&str>, imported: &ImportedContact) -> Self {
        let mut profile: EntityProfile = document.and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
        profile.first_name = profile.first_name.or_else(|| imported.first_name.clone());
        profile.last_name = profile.last_name.or_else(|| imported.last_name.clone());
        if profile.emails.is_empty() {
            profile.emails.extend(imported.email.clone());
        }
        if profile.phones.is_empty() {
            profile.phones.extend(imported.phone.clone());
        }
        profile
    }

    /// Checks every present field against its limits.
    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |field: &str, rule| Err(FieldError { field: field.to_owned(), rule });
        for (field, v) in [("firstName", &self.first_name), ("middleName", &self.middle_name), ("lastName", &self.last_name)] {
            if let Some(v) = v {
                if v.trim().is_empty() || v.chars().count() > 35 {
                    return err(field, "must be 1 to 35 characters");
                }
                if v.chars().any(char::is_control) {
                    return err(field, "must not contain control characters");
                }
            }
        }
        if self.emails.len() > 5 {
            return err("emails", "at most 5");
        }
        for (i, e) in self.emails.iter().enumerate() {
            if !valid_email(e) {
                return err(&format!("emails[{i}]"), "must be an email address of at most 254 characters");
            }
        }
        if self.phones.len() > 5 {
            return err("phones", "at most 5");
        }
        for (i, p) in self.phones.iter().enumerate() {
            let digits = p.chars().filter(char::is_ascii_digit).count();
            if p.len() > 32 || digits < 6 || !p.chars().all(|c| c.is_ascii_digit() || "+-(). ".contains(c)) {
                return err(&format!("phones[{i}]"), "must be 6 to 32 of 0-9 + - ( ) . and space");
            }
        }
        if let Some(l) = &self.locale {
            let b = l.as_bytes();
            if !(b.len() == 5 && b[..2].iter().all(u8::is_ascii_lowercase) && b[2] == b'_' && b[3..].iter().all(u8::is_ascii_uppercase)) {
                return err("locale", "must look like en_US");
            }
        }
        if let Some(c) = &self.country_code
            && !alpha3(c)
        {
            return err("countryCode", "must be ISO 3166-1 alpha-3, e.g. USA");
        }
        if self.national_identifiers.len() > 5 {
            return err("nationalIdentifiers", "at most 5");
        }
        for (i, n) in self.national_identifiers.iter().enumerate() {
            if !["PASSPORT", "DRIVING_LICENSE", "NATIONAL_IDENTITY"].contains(&n.kind.as_str()) {
                return err(&format!("nationalIdentifiers[{i}].type"), "must be PASSPORT, DRIVING_LICENSE or NATIONAL_IDENTITY");
            }
            if n.value.is_empty() || n.value.chars().count() > 24 {
                return err(&format!("nationalIdentifiers[{i}].value"), "must be 1 to 24 characters");
            }
        }
        if let Some(c) = &self.consent {
            if !valid_consent_time(&c.time_of_consent) {
                return err("consent.timeOfConsent", "must be YYYY-MM-DDThh:mm:ss.000Z, not in the future");
            }
            if c.version.is_empty() || c.version.chars().count() > 9 {
                return err("consent.version", "must be 1 to 9 characters");
            }
            if c.presenter.is_empty() || c.presenter.chars().count() > 30 {
                return err("consent.presenter", "must be 1 to 30 characters");
            }
        }
        if let Some(d) = &self.date_of_birth
            && !valid_date_of_birth(d)
        {
            return err("dateOfBirth", "must be a real date written YYYY-MM-DD, from 1900 on and not in the future");
        }
        if let Some(a) = &self.billing_address {
            let lines = [
                ("billingAddress.addressLine1", Some(&a.address_line1)),
                ("billingAddress.addressLine2", a.address_line2.as_ref()),
                ("billingAddress.addressLine3", a.address_line3.as_ref()),
            ];
            for (field, line) in lines {
                if let Some(line) = line
                    && (line.is_empty() || line.chars().count() > 64)
                {
                    return err(field, "must be 1 to 64 characters");
                }
            }
            if a.city.is_empty() || a.city.chars().count() > 32 {
                return err("billingAddress.city", "must be 1 to 32 characters");
            }
            if a.state.as_ref().is_some_and(|s| s.is_empty() || s.chars().count() > 3) {
                return err("billingAddress.state", "must be 1 to 3 characters (ISO 3166-2)");
            }
            if a.postal_code.is_empty() || a.postal_code.chars().count() > 9 {
                return err("billingAddress.postalCode", "must be 1 to 9 characters");
            }
            if !alpha3(&a.country) {
                return err("billingAddress.country", "must be ISO 3166-1 alpha-3");
            }
            let all = [
                Some(&a.address_line1),
                a.address_line2.as_ref(),
                a.address_line3.as_ref(),
                Some(&a.city),
                a.state.as_ref(),
                Some(&a.postal_code),
            ];
            if all.into_iter().flatten().any(|v| v.contains(ADDRESS_FORBIDDEN)) {
                return err("billingAddress", "must not contain [ ] { } : & $ ^ ! = ; * # ` < > \" @");
            }
        }
        Ok(())
    }

    /// What registration needs: the field limits (a profile may come from a CSV import,
    /// which the API's checks never saw), then names, an email, a phone and a billing
    /// address (Pismo's list), and the locale and country VICA requires.
    pub fn ready_for_registration(&self) -> Result<(), FieldError> {
        self.validate()?;
        let missing = |field: &str| Err(FieldError { field: field.to_owned(), rule: "is required to register on Click to Pay" });
        if self.first_name.is_none() {
            return missing("firstName");
        }
        if self.last_name.is_none() {
            return missing("lastName");
        }
        if self.emails.is_empty() {
            return missing("emails");
        }
        if self.phones.is_empty() {
            return missing("phones");
        }
        if self.billing_address.is_none() {
            return missing("billingAddress");
        }
        if self.locale.is_none() {
            return missing("locale");
        }
        if self.country_code.is_none() {
            return missing("countryCode");
        }
        Ok(())
    }

    /// Whether a change from `self` to `next` touches what CTP_UPDATE_ENTITY carries
    /// (names, emails, phones) — M2P's automatic update.
    pub fn identity_differs(&self, next: &EntityProfile) -> bool {
        (&self.first_name, &self.middle_name, &self.last_name, &self.emails, &self.phones)
            != (&next.first_name, &next.middle_name, &next.last_name, &next.emails, &next.phones)
    }

    /// The date of birth on file, if it is one (a profile that came from elsewhere may
    /// hold anything).
    pub fn date_of_birth(&self) -> Option<DateOfBirth> {
        self.date_of_birth.as_deref().and_then(|d| DateOfBirth::parse(d).ok())
    }

    /// Whether the billing address changed (→ CTP_UPDATE_KIT for the active kits).
    pub fn address_differs(&self, next: &EntityProfile) -> bool {
        self.billing_address != next.billing_address
    }
}

fn alpha3(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else { return false };
    e.chars().count() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A real date from 1900 on, not after today (UTC). `YYYY-MM-DD` compares as text.
fn valid_date_of_birth(s: &str) -> bool {
    let today = humantime_serde::re::humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    DateOfBirth::parse(s).is_ok() && s <= &today[..10]
}

/// `YYYY-MM-DDThh:mm:ss.000Z`, not after now.
fn valid_consent_time(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return false;
    }
    match humantime_serde::re::humantime::parse_rfc3339(s) {
        Ok(t) => t <= std::time::SystemTime::now(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> EntityProfile {
        EntityProfile {
            first_name: Some("Alex".into()),
            middle_name: None,
            last_name: Some("Miller".into()),
            emails: vec!["alex@example.com".into()],
            phones: vec!["+1 415 555 0100".into()],
            locale: Some("en_US".into()),
            country_code: Some("USA".into()),
            national_identifiers: vec![NationalIdentifier { kind: "PASSPORT".into(), value: "A123456".into() }],
            consent: Some(Consent {
                time_of_consent: "2020-05-05T12:12:12.000Z".into(),
                version: "1.0".into(),
                presenter: "Acme Bank".into(),
            }),
            billing_address: Some(BillingAddress {
                address_line1: "1000 Market Street".into(),
                address_line2: None,
                address_line3: None,
                city: "San Francisco".into(),
                state: Some("CA".into()),
                postal_code: "94105".into(),
                country: "USA".into(),
            }),
            date_of_birth: Some("1985-07-04".into()),
        }
    }

    #[test]
    fn a_complete_profile_passes() {
        full().validate().unwrap();
        full().ready_for_registration().unwrap();
        assert_eq!(full().date_of_birth().map(|d| d.iso()).as_deref(), Some("1985-07-04"));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Breaks = Box<dyn Fn(&mut EntityProfile)>;
        let cases: Vec<(&str, Breaks)> = vec![
            ("firstName", Box::new(|p| p.first_name = Some("x".repeat(36)))),
            ("emails", Box::new(|p| p.emails = vec!["a@b.co".into(); 6])),
            ("emails[0]", Box::new(|p| p.emails = vec!["not-an-email".into()])),
            ("phones[0]", Box::new(|p| p.phones = vec!["call me".into()])),
            ("locale", Box::new(|p| p.locale = Some("english".into()))),
            ("countryCode", Box::new(|p| p.country_code = Some("US".into()))),
            ("nationalIdentifiers[0].type", Box::new(|p| p.national_identifiers[0].kind = "SSN".into())),
            ("consent.timeOfConsent", Box::new(|p| p.consent.as_mut().unwrap().time_of_consent = "2999-01-01T00:00:00.000Z".into())),
            ("consent.timeOfConsent", Box::new(|p| p.consent.as_mut().unwrap().time_of_consent = "2020-05-05 12:12:12".into())),
            ("billingAddress.city", Box::new(|p| p.billing_address.as_mut().unwrap().city = "x".repeat(33))),
            ("billingAddress.postalCode", Box::new(|p| p.billing_address.as_mut().unwrap().postal_code = "1234567890".into())),
            ("billingAddress", Box::new(|p| p.billing_address.as_mut().unwrap().address_line1 = "1 Main St #5".into())),
            ("billingAddress", Box::new(|p| p.billing_address.as_mut().unwrap().city = "Foo@Bar".into())),
            ("dateOfBirth", Box::new(|p| p.date_of_birth = Some("1985-02-29".into()))),
            ("dateOfBirth", Box::new(|p| p.date_of_birth = Some("04/07/1985".into()))),
            ("dateOfBirth", Box::new(|p| p.date_of_birth = Some("1899-12-31".into()))),
            ("dateOfBirth", Box::new(|p| p.date_of_birth = Some("2999-01-01".into()))),
        ];
        for (field, change) in cases {
            let mut p = full();
            change(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn registration_needs_names_contacts_and_address() {
        let mut p = full();
        p.phones.clear();
        assert_eq!(p.ready_for_registration().unwrap_err().field, "phones");
        let mut p = full();
        p.country_code = None;
        assert_eq!(p.ready_for_registration().unwrap_err().field, "countryCode");
        // A profile that came in through an import is held to the same limits.
        let mut p = full();
        p.emails = vec!["not-an-email".into()];
        assert_eq!(p.ready_for_registration().unwrap_err().field, "emails[0]");
    }

    #[test]
    fn change_detection_separates_identity_from_address() {
        let a = full();
        let mut b = full();
        b.locale = Some("pt_BR".into());
        assert!(!a.identity_differs(&b) && !a.address_differs(&b));
        b.emails.push("second@example.com".into());
        assert!(a.identity_differs(&b));
        let mut c = full();
        c.billing_address.as_mut().unwrap().postal_code = "94106".into();
        assert!(c.address_differs(&a) && !c.identity_differs(&a));
    }
}
