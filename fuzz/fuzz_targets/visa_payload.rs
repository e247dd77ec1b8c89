//! The decrypted notification payload on its own (`EnrollmentAttempt::from_json`): the
//! envelope targets reach it only with what the development keys encrypted, this one
//! with any plaintext.

#![no_main]

use ctp_issuer::visa::payload::EnrollmentAttempt;
use ctp_issuer_fuzz::{check_rejection, is_card_number};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|plaintext: &[u8]| {
    match EnrollmentAttempt::from_json(plaintext) {
        Ok(attempt) => {
            let pan = attempt.pan.expose_for_network();
            assert!(is_card_number(pan), "a payload was read with a card number that is not one");
            assert_eq!(format!("{:?} {}", attempt.pan, attempt.pan), format!("Pan(****{0}) ****{0}", attempt.pan.last4()));
            // The card number shows only where the sender also wrote it into free text.
            let shown = format!("{attempt:?}").matches(pan).count();
            let written = format!("{:?} {:?}", attempt.client, attempt.tsp).matches(pan).count();
            assert!(shown <= written, "the attempt's Debug shows the card number: {attempt:?}");
            let tsp = attempt.tsp.chars().count();
            assert!((1..=8).contains(&tsp), "tsp of {tsp} characters");
            let client = &attempt.client;
            for name in [&client.first_name, &client.last_name].into_iter().flatten() {
                assert!((2..=80).contains(&name.chars().count()), "a name of {} characters", name.chars().count());
            }
            if let Some(phone) = &client.phone_number {
                assert!(phone.len() <= 32 && phone.chars().all(|c| c.is_ascii_digit() || "().-+ ".contains(c)), "phone {phone:?}");
            }
            if let Some(email) = &client.contact_email {
                assert!((1..=48).contains(&email.chars().count()), "an email of {} characters", email.chars().count());
            }
        }
        Err(rejected) => {
            check_rejection(&rejected, plaintext);
            let code = rejected.reason.code();
            assert!(code.starts_with("payload_"), "the payload decoder answered {code}");
        }
    }
});
