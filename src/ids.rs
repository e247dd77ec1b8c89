//! The identifiers that come from outside, each a type that can only hold a valid one:
//! parsed once, where the value enters (a path, a header, a body, a CSV row), and trusted
//! after. Their rules are the strictest of the documents we follow: M2P's entity ids are
//! UUIDs and its kit numbers digits, Thales D1's card ids `^[A-Za-z0-9_-]{1,48}$` and its
//! correlation ids `^[A-Za-z0-9_-]{1,64}$` ("logged in clear"), so every one of them is 1
//! to 64 letters, digits, `-` or `_`: safe in a log line, a metric-free label, a path.

use std::fmt;

/// Why a value is not an identifier of its kind. Names the kind and the rule, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {rule}")]
pub struct IdError {
    pub what: &'static str,
    pub rule: &'static str,
}

const WORD_RULE: &str = "1 to 64 letters, digits, - or _";

fn is_word(value: &str) -> bool {
    !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! word_identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const WHAT: &'static str = $what;

            pub fn parse(value: &str) -> Result<Self, IdError> {
                if is_word(value) { Ok(Self(value.to_owned())) } else { Err(IdError { what: $what, rule: WORD_RULE }) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

word_identifier!(
    /// A tenant: an issuer.
    TenantId,
    "tenant"
);
word_identifier!(
    /// A customer in the issuer's registry (M2P's entity).
    EntityId,
    "entityId"
);
word_identifier!(
    /// A card in the issuer's registry (M2P's kit).
    KitNo,
    "kitNo"
);
word_identifier!(
    /// Thales D1's `x-correlation-id`, which we also log and pass on to the SaaS layer.
    CorrelationId,
    "x-correlation-id"
);

/// An `Idempotency-Key` header: 1 to 255 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if !value.is_empty() && value.len() <= 255 && value.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError { what: "Idempotency-Key", rule: "1 to 255 printable characters" })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

/// A card's expiry month, `YYYY-MM` (as the registry and the SaaS layer write it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expiry {
    year: u16,
    month: u8,
}

impl Expiry {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let invalid = IdError { what: "expiry", rule: "YYYY-MM, month 01 to 12" };
        let b = value.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(invalid);
        }
        let year: u16 = value[..4].parse().map_err(|_| invalid)?;
        let month: u8 = value[5..].parse().map_err(|_| invalid)?;
        if !(1..=12).contains(&month) {
            return Err(invalid);
        }
        Ok(Self { year, month })
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// `YYMM`: the form Visa's CVV algorithm takes.
    pub fn yymm(self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }

    /// `MM/YY`: the form printed on a card and typed into checkout forms.
    pub fn mm_yy(self) -> String {
        format!("{:02}/{:02}", self.month, self.year % 100)
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expiry({self})")
    }
}

/// A date of birth, `YYYY-MM-DD`: a real calendar date from 1900 on. `Debug` hides it,
/// since the card-details page asks for it as a secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateOfBirth {
    year: u16,
    month: u8,
    day: u8,
}

impl DateOfBirth {
    const INVALID: IdError = IdError { what: "dateOfBirth", rule: "a real date written YYYY-MM-DD, from 1900 on" };

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let b = value.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit()) {
            return Err(Self::INVALID);
        }
        let year: u16 = value[..4].parse().map_err(|_| Self::INVALID)?;
        let month: u8 = value[5..7].parse().map_err(|_| Self::INVALID)?;
        let day: u8 = value[8..].parse().map_err(|_| Self::INVALID)?;
        let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(Self::INVALID),
        };
        if year < 1900 || day == 0 || day > days {
            return Err(Self::INVALID);
        }
        Ok(Self { year, month, day })
    }

    /// From a form's three fields: a day and a month of one or two digits, a year of four.
    /// Surrounding spaces are ignored.
    pub fn from_parts(day: &str, month: &str, year: &str) -> Result<Self, IdError> {
        let (day, month, year) = (day.trim(), month.trim(), year.trim());
        let digits =
            |s: &str, lengths: std::ops::RangeInclusive<usize>| lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(day, 1..=2) || !digits(month, 1..=2) || !digits(year, 4..=4) {
            return Err(Self::INVALID);
        }
        Self::parse(&format!("{year}-{month:0>2}-{day:0>2}"))
    }

    /// `YYYY-MM-DD`.
    pub fn iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// Whether `other` is the same date, compared without an early exit.
    pub fn matches(&self, other: &DateOfBirth) -> bool {
        let (a, b) = (self.iso(), other.iso());
        a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for DateOfBirth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DateOfBirth(****-**-**)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_are_letters_digits_dash_and_underscore() {
        assert!(EntityId::parse("f25a9f38-682b-4094-b6e4-9671d500c49b").is_ok());
        assert!(KitNo::parse("12346535").is_ok());
        assert_eq!(TenantId::parse("DEMO_BANK").unwrap().as_str(), "DEMO_BANK");
        for bad in ["", "12 34", "a/b", "é", &"1".repeat(65)] {
            let err = KitNo::parse(bad).unwrap_err();
            assert_eq!(err.to_string(), "kitNo must be 1 to 64 letters, digits, - or _");
        }
        assert!(CorrelationId::parse(&"c".repeat(64)).is_ok());
    }

    #[test]
    fn expiry_format() {
        assert_eq!(Expiry::parse("2029-12").unwrap().to_string(), "2029-12");
        for bad in ["2029-13", "2029-00", "29-12", "2029/12", "2029-1x", "２０２９-12", "+029-12"] {
            assert!(Expiry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_card_forms() {
        let e = Expiry::parse("2027-03").unwrap();
        assert_eq!((e.yymm().as_str(), e.mm_yy().as_str()), ("2703", "03/27"));
    }

    #[test]
    fn dates_of_birth_are_real_dates() {
        let dob = |s: &str| DateOfBirth::parse(s).unwrap();
        assert!(DateOfBirth::parse("2000-02-29").is_ok());
        assert!(DateOfBirth::parse("1900-01-01").is_ok());
        for bad in [
            "1900-02-29",
            "2023-02-29",
            "2023-04-31",
            "2023-13-01",
            "2023-00-10",
            "2023-01-00",
            "1899-12-31",
            "2023-1-01",
            "20230101",
            "2023/01/01",
            "+023-01-01",
            "",
        ] {
            let err = DateOfBirth::parse(bad).unwrap_err();
            assert_eq!(err.to_string(), "dateOfBirth must be a real date written YYYY-MM-DD, from 1900 on", "{bad:?}");
        }
        assert_eq!(format!("{:?}", dob("1990-05-17")), "DateOfBirth(****-**-**)");
        assert_eq!(dob("1990-05-17").iso(), "1990-05-17");
        assert!(dob("1990-05-17").matches(&dob("1990-05-17")) && !dob("1990-05-17").matches(&dob("1990-05-18")));
        assert_eq!(DateOfBirth::from_parts("5", "3", "1990"), Ok(dob("1990-03-05")));
        assert_eq!(DateOfBirth::from_parts(" 17 ", "05", "1990 "), Ok(dob("1990-05-17")));
        for (d, m, y) in
            [("31", "4", "1990"), ("", "3", "1990"), ("5", "3", "90"), ("005", "3", "1990"), ("5", "+3", "1990"), ("5", "3", "１９９０")]
        {
            assert!(DateOfBirth::from_parts(d, m, y).is_err(), "{d:?} {m:?} {y:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_printable() {
        assert!(IdempotencyKey::parse("order-1:retry/2").is_ok());
        assert!(IdempotencyKey::parse("with space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    proptest! {
        /// Whatever comes in: a valid identifier that prints back unchanged, or an error
        /// that does not contain the input.
        #[test]
        fn parsing_never_panics_or_echoes(input in "\\PC{0,80}") {
            match EntityId::parse(&input) {
                Ok(id) => prop_assert_eq!(id.as_str(), input.as_str()),
                Err(e) => prop_assert!(input.len() < 4 || !e.to_string().contains(&input)),
            }
            let _ = Expiry::parse(&input);
            let _ = DateOfBirth::parse(&input);
            let _ = IdempotencyKey::parse(&input);
        }
    }
}
