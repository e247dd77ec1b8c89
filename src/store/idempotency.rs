//! Idempotency keys: a key is claimed in the database before the request it guards runs,
//! so that across replicas exactly one request with a key runs. The request is kept only
//! as a keyed digest (it may hold a card number); the answer as the client got it.

use super::plan::{Applied, Expect, Plan};
use super::value::params;
use super::{Store, StoreError, sql};

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: run the request, then [`Store::complete_idempotency_key`] (or
    /// [`Store::release_idempotency_key`] after our own failure). `claimed_at` names the claim.
    Claimed { claimed_at: i64 },
    /// The same request ran before: its answer.
    Replay { status: u16, body: String },
    /// The key was used with another request.
    Mismatch,
    /// The same request is running now.
    InFlight,
}

impl Store {
    /// Claims `key` for a request with `digest`. A claim left unfinished since before
    /// `stale_before` (its process died) is taken over.
    pub async fn claim_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
        digest: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Claim, StoreError> {
        // Two rounds at most: a claim that vanished between our insert and our read (its
        // owner released it) is tried once more.
        for _ in 0..2 {
            let mut plan = Plan::new("claim idempotency key");
            plan.step(sql::CLAIM_IDEMPOTENCY_KEY, params![tenant, key, digest, now], Expect::One);
            if let Applied::Done(_) = self.apply(plan).await? {
                return Ok(Claim::Claimed { claimed_at: now });
            }
            let rows = self.query("read idempotency key", sql::IDEMPOTENCY_KEY, params![tenant, key]).await?;
            let Some(row) = rows.first() else { continue };
            if row.text(0)? != digest {
                return Ok(Claim::Mismatch);
            }
            if let Some(status) = row.opt_int(1)? {
                let status = u16::try_from(status).unwrap_or(500);
                return Ok(Claim::Replay { status, body: row.opt_text(2)?.unwrap_or_default() });
            }
            if row.int(3)? >= stale_before {
                return Ok(Claim::InFlight);
            }
            let mut plan = Plan::new("reclaim idempotency key");
            plan.step(sql::RECLAIM_IDEMPOTENCY_KEY, params![tenant, key, digest, now, stale_before], Expect::One);
            if let Applied::Done(_) = self.apply(plan).await? {
                return Ok(Claim::Claimed { claimed_at: now });
            }
        }
        Ok(Claim::InFlight)
    }

    /// Keeps the answer to a claimed key, for its replays.
    pub async fn complete_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
        claimed_at: i64,
        status: u16,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut plan = Plan::new("complete idempotency key");
        plan.step(sql::COMPLETE_IDEMPOTENCY_KEY, params![tenant, key, claimed_at, i64::from(status), body, now], Expect::Any);
        self.apply(plan).await.map(drop)
    }

    /// Gives a claimed key back: the request failed on our side, and a retry may succeed.
    pub async fn release_idempotency_key(&self, tenant: &str, key: &str, claimed_at: i64) -> Result<(), StoreError> {
        let mut plan = Plan::new("release idempotency key");
        plan.step(sql::RELEASE_IDEMPOTENCY_KEY, params![tenant, key, claimed_at], Expect::Any);
        self.apply(plan).await.map(drop)
    }
}
