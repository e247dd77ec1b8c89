//! Recording one Visa notification on SQLite: a job of the store's one writer, so that
//! concurrent notifications (and every other write) share its transactions. Its statements
//! are the shared texts of `store::sql`, prepared once on the writer's connection.

use rusqlite::Connection;

use super::Sqlite;
use super::exec::{query, sqlite_err};
use crate::store::attempts::{AttemptOutcome, AttemptWrite, MatchedKit, Recorded, match_kit, new_attempt_id};
use crate::store::value::params;
use crate::store::{StoreError, epoch_millis, sql};

pub async fn record(store: &Sqlite, write: AttemptWrite) -> Result<AttemptOutcome, StoreError> {
    store.writer().write("record attempt", |_| true, move |conn| record_on(conn, &write)).await
}

/// The kit, the attempt, its outbox event: inside the writer's savepoint for this job.
fn record_on(conn: &Connection, item: &AttemptWrite) -> Result<AttemptOutcome, StoreError> {
    let find = |fingerprint: &str| -> Result<Option<MatchedKit>, StoreError> {
        let params = params![fingerprint, item.tenant.as_deref()];
        let rows = query(conn, "find kit", sql::FIND_KIT, &params)?;
        rows.first().map(|row| Ok(MatchedKit { tenant: row.text(0)?, entity_id: row.text(1)?, kit_no: row.text(2)? })).transpose()
    };
    let Some(kit) = match_kit(item, find)? else { return Ok(AttemptOutcome::UnknownCard) };
    let n = &item.notification;
    let client = &n.attempt().client;
    let id = new_attempt_id();
    let now = epoch_millis(std::time::SystemTime::now());
    let mut insert = conn.prepare_cached(sql::INSERT_ATTEMPT).map_err(sqlite_err("insert attempt"))?;
    super::exec::bind(
        "insert attempt",
        &mut insert,
        &params![
            &id,
            &kit.tenant,
            n.token_requestor_id(),
            &kit.entity_id,
            &kit.kit_no,
            n.attempt().pan.last4(),
            &client.first_name,
            &client.last_name,
            &client.contact_email,
            &client.phone_number,
            n.jws_kid(),
            n.jwe_kid(),
            n.iat(),
            now,
            n.envelope_hash()
        ],
    )?;
    if insert.raw_execute().map_err(sqlite_err("insert attempt"))? == 0 {
        return Ok(AttemptOutcome::Duplicate);
    }
    let announcement = (item.announce)(&Recorded { attempt_id: &id, kit: &kit, received_at: now }, n);
    let mut outbox = conn.prepare_cached(sql::INSERT_OUTBOX).map_err(sqlite_err("insert outbox event"))?;
    let params = params![&kit.tenant, announcement.event_type, announcement.payload, now];
    super::exec::bind("insert outbox event", &mut outbox, &params)?;
    outbox.raw_execute().map_err(sqlite_err("insert outbox event"))?;
    Ok(AttemptOutcome::Recorded { attempt_id: id, kit })
}
