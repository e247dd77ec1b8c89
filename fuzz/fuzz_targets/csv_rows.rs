//! The card-kit CSV import's decoding, as `import_kits` does it: the header through
//! `Columns::from_header`, then every record through `card_from_row`, once with a default
//! tenant (`--tenant`) and once without. No panic; no error (header, syntax or row) holds
//! a card number from the file; every card read is a valid one.

#![no_main]

use ctp_issuer::ids::TenantId;
use ctp_issuer::registry::import::{Columns, card_from_row};
use ctp_issuer_fuzz::{assert_no_card_echo, is_card_number};
use libfuzzer_sys::fuzz_target;

fn import(data: &[u8], default_tenant: Option<&TenantId>) {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(data);
    let header = match reader.headers() {
        Ok(header) => header.clone(),
        // import_kits reports this one as `CSV header: {e}`.
        Err(e) => return assert_no_card_echo("CSV header error", &e.to_string(), data),
    };
    let columns = match Columns::from_header(&header, default_tenant) {
        Ok(columns) => columns,
        Err(e) => return assert_no_card_echo("column error", &e.to_string(), data),
    };
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            // import_kits reports only the line of a syntax error.
            Err(_) => break,
        }
        match card_from_row(&record, &columns, default_tenant) {
            Ok(card) => {
                assert!(is_card_number(card.pan.expose_for_network()), "a row was read with a card number that is not one");
                for id in [card.tenant.as_str(), card.entity_id.as_str(), card.kit_no.as_str()] {
                    let word = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    assert!(word && !id.is_empty() && id.len() <= 64, "identifier {id:?}");
                }
                // The card number shows only where the file also wrote it into another column.
                let pan = card.pan.expose_for_network();
                let shown = format!("{card:?}").matches(pan).count();
                let written =
                    format!("{:?} {:?} {:?} {:?} {:?}", card.tenant, card.entity_id, card.kit_no, card.name_on_card, card.contact)
                        .matches(pan)
                        .count();
                assert!(shown <= written, "a card's Debug shows its number: {card:?}");
            }
            Err(message) => assert_no_card_echo("row error", &message, data),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static DEFAULT: std::sync::OnceLock<TenantId> = std::sync::OnceLock::new();
    import(data, None);
    import(data, Some(DEFAULT.get_or_init(|| TenantId::parse("DEMOBANK").expect("a tenant id"))));
});
