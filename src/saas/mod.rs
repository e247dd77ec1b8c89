//! The Click to Pay SaaS layer as we see it: the JSON contract ([`wire`]) and the client
//! that speaks it ([`client`]). The SaaS side of the same contract, for development and
//! tests, is [`crate::sim::saas`]; the signed callbacks it sends are [`crate::webhook`].

pub mod client;
pub mod config;
pub mod wire;

pub use client::{SaasClient, SaasError};
pub use wire::{Accepted, Callback, Outcome, Profile, RequestStatus, SaasRequest};

/// Longest outside text we keep in an error or a log line.
const MAX_MESSAGE_CHARS: usize = 300;

/// Makes a message from outside (the SaaS's `message`, a parser's error) fit to log: any
/// run of 8 or more digits (spaces and dashes inside it count as part of the run) becomes
/// `[digits]`, so that a card number echoed back by a careless server never reaches a log
/// line, and the text is cut to a bounded length. Control characters become spaces, before
/// the runs are looked for: one between two short runs would otherwise become the space
/// that joins them into a card number.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    let chars: Vec<char> = message.chars().take(MAX_MESSAGE_CHARS * 4).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            // Extend over digits and separators; count digits.
            let mut j = i;
            let mut digits = 0;
            let mut last_digit = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ' ' || chars[j] == '-') {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    last_digit = j;
                }
                j += 1;
            }
            if digits >= 8 {
                out.push_str("[digits]");
            } else {
                out.extend(&chars[i..=last_digit]);
            }
            i = last_digit + 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;
    use proptest::prelude::*;

    #[test]
    fn scrub_hides_long_digit_runs_only() {
        assert_eq!(scrub("card 4111111111111111 refused"), "card [digits] refused");
        assert_eq!(scrub("card 4111 1111 1111 1111 refused"), "card [digits] refused");
        assert_eq!(scrub("card 4111-1111-1111-1111"), "card [digits]");
        assert_eq!(scrub("VIDC-2004 at 12:30, 5 cards"), "VIDC-2004 at 12:30, 5 cards");
        assert_eq!(scrub("line\nbreak"), "line break");
        assert_eq!(scrub("card 4111111\t1111111\u{0}11 refused"), "card [digits] refused", "control characters join a run");
        assert!(scrub(&"x".repeat(1000)).chars().count() <= 301);
    }

    proptest! {
        #[test]
        fn scrub_never_keeps_a_card_number(prefix in "\\PC{0,20}", pan in "[0-9]{12,19}", suffix in "\\PC{0,20}") {
            let out = scrub(&format!("{prefix}{pan}{suffix}"));
            prop_assert!(!out.contains(&pan));
        }
    }
}
