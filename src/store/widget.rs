//! The card-details page's one-time links: one row per link, keyed by the keyed hash of
//! its random id, with its tenant, expiry, date-of-birth tries left and when it was used.
//! The rules (what "usable" means, what a wrong date of birth costs) are the widget's;
//! each change here is one guarded statement, so that it holds across replicas.

use super::plan::{Applied, Expect, Plan};
use super::value::params;
use super::{Store, StoreError, sql};

/// A link as stored. Times are epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WidgetLinkRow {
    pub expires_at: i64,
    pub dob_tries_left: i64,
    pub used_at: Option<i64>,
}

impl Store {
    /// Records a new link. `false`: a link with this hash exists already (nothing written).
    pub async fn insert_widget_link(
        &self,
        link_hash: &str,
        tenant: &str,
        expires_at: i64,
        dob_tries: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut plan = Plan::new("record widget link");
        plan.step(sql::INSERT_WIDGET_LINK, params![link_hash, tenant, expires_at, dob_tries, now], Expect::One);
        Ok(matches!(self.apply(plan).await?, Applied::Done(_)))
    }

    /// The link's row, if it is recorded (and not yet purged).
    pub async fn widget_link(&self, link_hash: &str) -> Result<Option<WidgetLinkRow>, StoreError> {
        let rows = self.query("read widget link", sql::WIDGET_LINK, params![link_hash]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        Ok(Some(WidgetLinkRow { expires_at: row.int(0)?, dob_tries_left: row.int(1)?, used_at: row.opt_int(2)? }))
    }

    /// Marks the link used at `now` if it is usable then. `true` for exactly one caller.
    pub async fn use_widget_link(&self, link_hash: &str, now: i64) -> Result<bool, StoreError> {
        let mut plan = Plan::new("use widget link");
        plan.step(sql::USE_WIDGET_LINK, params![link_hash, now], Expect::One);
        Ok(matches!(self.apply(plan).await?, Applied::Done(_)))
    }

    /// Counts a wrong date of birth against the link if it is usable at `now`: the tries
    /// left after it, or `None` when the link was not usable.
    pub async fn count_wrong_dob(&self, link_hash: &str, now: i64) -> Result<Option<i64>, StoreError> {
        let mut plan = Plan::new("count wrong date of birth");
        let step = plan.step(sql::WRONG_DOB_WIDGET_LINK, params![link_hash, now], Expect::Rows);
        let applied = self.apply(plan).await?;
        applied.rows(step).first().map(|row| row.int(0)).transpose()
    }
}
