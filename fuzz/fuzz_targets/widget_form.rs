//! The card-details page's POST body: the form decoder, the date of birth made of its
//! three fields, and the token it carries. A body within the limit is always read, a
//! longer one never; no token the fuzzer makes opens; the form's `Debug` shows no value.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use ctp_issuer::widget::LinkKeys;
use ctp_issuer::widget::flow::{MAX_FORM_BYTES, RevealForm};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fn keys() -> &'static LinkKeys {
    static KEYS: OnceLock<LinkKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/ is in the repository").join("keys");
        LinkKeys::load(&keys_dir, "v1").expect("keys/widget")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(form) = RevealForm::parse(data) else {
        assert!(data.len() > MAX_FORM_BYTES, "a form within the limit was not read");
        return;
    };
    if let Some(dob) = form.dob() {
        assert_eq!(dob.iso().len(), 10);
    }
    if let Some(token) = form.token() {
        assert!(keys().open(token, NOW).is_err());
    }
    let debug = format!("{form:?}");
    assert!(debug.bytes().all(|b| b.is_ascii_alphabetic() || b" {}:(),_".contains(&b)), "{debug}");
});
