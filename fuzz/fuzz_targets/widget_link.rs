//! The card-details link token as it arrives: the `t` parameter of the page's query
//! string, then `LinkKeys::open` with the development link keys. A token is sealed with
//! AES-256-GCM, so no input the fuzzer makes opens: every one must be refused, without a
//! panic, with the one message that never says why.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use ctp_issuer::widget::LinkKeys;
use ctp_issuer::widget::flow::token_from_query;
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
    let keys = keys();
    let text = String::from_utf8_lossy(data);
    let from_query = token_from_query(Some(&text));
    for token in from_query.iter().map(String::as_str).chain([text.as_ref()]) {
        let refused = keys.open(token, NOW).expect_err("a token the fuzzer made opened");
        assert_eq!(refused.to_string(), "link is invalid or has expired");
        assert!(["invalid_token", "expired"].contains(&refused.metric_reason()));
    }
});
