//! Recording Visa's notifications on PostgreSQL, many in one transaction and three
//! statements, each one fixed text (so prepared once per connection) with arrays for the
//! rows: their kits, their attempts, their outbox events. The batching itself (queue,
//! answers, the fallback to one by one) is `store::batch`'s.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use sqlx::postgres::PgPool;

use crate::store::attempts::{AttemptOutcome, AttemptWrite, MatchedKit, Recorded, match_kit, new_attempt_id};
use crate::store::batch::BatchWriter;
use crate::store::{StoreError, db_err, epoch_millis};

/// The notification writers' handle on the pool.
#[derive(Clone)]
pub struct Attempts(pub PgPool);

const SEEN: &str = "SELECT envelope_hash FROM enrollment_attempt WHERE envelope_hash = ANY($1)";

impl BatchWriter for Attempts {
    async fn record_batch(&self, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
        record_batch(&self.0, items).await
    }

    async fn seen_batch(&self, hashes: &[String]) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(SEEN).bind(hashes).fetch_all(&self.0).await.map_err(db_err("check duplicate"))?;
        Ok(rows.into_iter().map(|(h,)| h).collect())
    }
}

/// Many notifications in one transaction and three statements, each one fixed text (so
/// prepared once per connection) with arrays for the rows: their kits, their attempts
/// (`ON CONFLICT DO NOTHING RETURNING id` tells recorded from duplicate, a second copy of
/// an envelope in the same batch included), their outbox events. On any error the
/// transaction is rolled back when `tx` is dropped, and nothing was written.
async fn record_batch(pool: &PgPool, items: &[AttemptWrite]) -> Result<Vec<AttemptOutcome>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_err("begin"))?;

    let fingerprints: Vec<&str> =
        items.iter().flat_map(|i| i.fingerprints.iter().map(String::as_str)).collect::<HashSet<_>>().into_iter().collect();
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT pan_fingerprint, tenant, entity_id, kit_no FROM kit WHERE pan_fingerprint = ANY($1)")
            .bind(&fingerprints)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err("find kits"))?;
    let kits: HashMap<String, MatchedKit> =
        rows.into_iter().map(|(fingerprint, tenant, entity_id, kit_no)| (fingerprint, MatchedKit { tenant, entity_id, kit_no })).collect();
    let matched = items.iter().map(|item| match_kit(item, |fp| Ok(kits.get(fp).cloned()))).collect::<Result<Vec<_>, StoreError>>()?;

    let now = epoch_millis(SystemTime::now());
    let ids: Vec<String> = items.iter().map(|_| new_attempt_id()).collect();
    let known: Vec<usize> = (0..items.len()).filter(|&i| matched[i].is_some()).collect();
    let mut inserted = HashSet::new();
    if !known.is_empty() {
        let kit = |i: usize| matched[i].as_ref().expect("only matched items");
        let n = |i: usize| &items[i].notification;
        let column = |f: &dyn Fn(usize) -> String| known.iter().map(|&i| f(i)).collect::<Vec<String>>();
        let optional = |f: &dyn Fn(usize) -> Option<String>| known.iter().map(|&i| f(i)).collect::<Vec<Option<String>>>();
        let rows: Vec<(String,)> = sqlx::query_as(
            "INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
                 first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash)
             SELECT u.id, u.tenant, u.tr, u.entity_id, u.kit_no, u.last4, u.first_name, u.last_name, u.email,
                    u.phone, u.jws_kid, u.jwe_kid, u.iat, $14, u.envelope_hash
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $15::text[])
                  WITH ORDINALITY AS u(id, tenant, tr, entity_id, kit_no, last4, first_name, last_name, email, phone,
                       jws_kid, jwe_kid, iat, envelope_hash, n)
             ORDER BY u.n
             ON CONFLICT (envelope_hash) DO NOTHING
             RETURNING id",
        )
        .bind(column(&|i| ids[i].clone()))
        .bind(column(&|i| kit(i).tenant.clone()))
        .bind(column(&|i| n(i).token_requestor_id().to_owned()))
        .bind(column(&|i| kit(i).entity_id.clone()))
        .bind(column(&|i| kit(i).kit_no.clone()))
        .bind(column(&|i| n(i).attempt().pan.last4().to_owned()))
        .bind(optional(&|i| n(i).attempt().client.first_name.clone()))
        .bind(optional(&|i| n(i).attempt().client.last_name.clone()))
        .bind(optional(&|i| n(i).attempt().client.contact_email.clone()))
        .bind(optional(&|i| n(i).attempt().client.phone_number.clone()))
        .bind(column(&|i| n(i).jws_kid().to_owned()))
        .bind(column(&|i| n(i).jwe_kid().to_owned()))
        .bind(known.iter().map(|&i| n(i).iat()).collect::<Vec<Option<i64>>>())
        .bind(now)
        .bind(column(&|i| n(i).envelope_hash().to_owned()))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err("insert attempts"))?;
        inserted = rows.into_iter().map(|(id,)| id).collect();
    }

    let recorded: Vec<usize> = known.iter().copied().filter(|&i| inserted.contains(&ids[i])).collect();
    if !recorded.is_empty() {
        let tenants: Vec<&str> = recorded.iter().map(|&i| matched[i].as_ref().expect("matched").tenant.as_str()).collect();
        let (event_types, payloads): (Vec<&str>, Vec<String>) = recorded
            .iter()
            .map(|&i| {
                let kit = matched[i].as_ref().expect("matched");
                let announcement = (items[i].announce)(&Recorded { attempt_id: &ids[i], kit, received_at: now }, &items[i].notification);
                (announcement.event_type, announcement.payload)
            })
            .unzip();
        sqlx::query(
            "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at)
             SELECT u.tenant, u.event_type, u.payload, $4, $4
             FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(tenant, event_type, payload, n)
             ORDER BY u.n",
        )
        .bind(&tenants)
        .bind(&event_types)
        .bind(&payloads)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("insert outbox events"))?;
    }
    tx.commit().await.map_err(db_err("commit attempts"))?;

    Ok(matched
        .into_iter()
        .zip(ids)
        .map(|(kit, id)| match kit {
            None => AttemptOutcome::UnknownCard,
            Some(kit) if inserted.contains(&id) => AttemptOutcome::Recorded { attempt_id: id, kit },
            Some(_) => AttemptOutcome::Duplicate,
        })
        .collect())
}
