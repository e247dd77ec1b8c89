//! The card-details page logic, independent of the HTTP framework and of the database.
//!
//! [`Widget`] answers the two requests of the page with a [`PageResponse`] (status,
//! headers, HTML). It talks to the outside through three small traits the service
//! implements: [`LinkLedger`] (the database row of each link, shared by every replica),
//! [`CardSource`] (the registry's card) and [`CvvGenerator`] (software keys or an HSM).
//!
//! Order of a reveal, and why:
//!
//! 1. The token (tag, expiry): a forged or stale URL costs nothing more.
//! 2. The CSRF value: before anything that counts, so a cross-site post cannot burn a
//!    link with wrong dates of birth.
//! 3. The ledger, read-only: a used or burned link costs no card lookup.
//! 4. The date of birth, when the link carries one: a wrong one is recorded, and the
//!    third burns the link.
//! 5. The card and its CVV2: fetched before consuming, so that a failure there leaves the
//!    link usable for another try.
//! 6. Consume, atomically in the database: exactly one caller wins; only the winner
//!    renders the details.
//!
//! Every refusal that a cardholder could learn something from gets the one 410 page.
//!
//! Metrics (Prometheus names):
//!
//! | metric | labels | when |
//! | --- | --- | --- |
//! | `ctp_widget_links_issued_total` | | [`Widget::issue`] recorded a new link |
//! | `ctp_widget_pages_shown_total` | `page` = `landing`, `date_of_birth` | a first page was shown (GET, or again after a refusal that keeps the link) |
//! | `ctp_widget_links_used_total` | | card details were shown (the link was consumed) |
//! | `ctp_widget_refusals_total` | `reason` (see [`Refusal::code`]), `step` = `show`, `reveal` | a request was refused |
//! | `ctp_widget_errors_total` | `source` = `ledger`, `cards`, `cvv` | our own failure; answered 503, nothing used |

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::StatusCode;

use super::csrf::{self, CsrfPair};
use super::cvv::CvvGenerator;
use super::link::{IssueError, IssuedLink, LinkClaims, LinkHash, LinkKeys};
use super::page::{self, DobProblem, Html, Notice, PageContext, PageResponse};
use super::{MAX_DOB_TRIES, WidgetSettings};
use crate::ids::{DateOfBirth, EntityId, Expiry, KitNo, TenantId};
use crate::pan::Pan;

/// A link's state as the ledger sees it, without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Known, not used, not expired, not burned; `tries_left` wrong dates of birth remain
    /// (1 to [`MAX_DOB_TRIES`]).
    Usable { tries_left: u8 },
    /// Used, expired, burned, or never recorded: the page does not say which.
    Gone,
}

/// The outcome of [`LinkLedger::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// This caller used the link; every other caller, before or after, gets `Gone`.
    Won,
    Gone,
}

/// The outcome of [`LinkLedger::record_wrong_dob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongDob {
    /// Recorded; this many tries remain (at least one).
    TriesLeft(u8),
    /// That was the last try: the link is burned.
    Burned,
    /// The link was not usable anyway (used, expired, burned, unknown).
    Gone,
}

/// The database's failure, described without card data (the ledger never sees any).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("link ledger: {0}")]
pub struct LedgerError(pub String);

/// The database side of links: one row per link, keyed by its [`LinkHash`], holding the
/// expiry, whether it was used, and the wrong dates of birth left. Implementations must be
/// atomic across every replica of the service (one conditional `UPDATE … RETURNING` per
/// change does it).
pub trait LinkLedger: Send + Sync {
    /// Records a newly issued link of `tenant`: unused, [`MAX_DOB_TRIES`] tries, expiring
    /// at `expires_at` (epoch seconds). Called before the URL is handed out.
    fn register(&self, link: &LinkHash, tenant: &TenantId, expires_at: i64) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The link's state at `now`, read-only (a link preview may cause this call).
    fn state(&self, link: &LinkHash, now: i64) -> impl Future<Output = Result<LinkState, LedgerError>> + Send;

    /// Marks the link used if it is usable at `now`. Exactly one caller ever gets
    /// [`Consume::Won`] for a link.
    fn consume(&self, link: &LinkHash, now: i64) -> impl Future<Output = Result<Consume, LedgerError>> + Send;

    /// Counts one wrong date of birth against a usable link; the [`MAX_DOB_TRIES`]th
    /// burns it (it can then never be consumed).
    fn record_wrong_dob(&self, link: &LinkHash, now: i64) -> impl Future<Output = Result<WrongDob, LedgerError>> + Send;
}

/// A card as the page shows it. `Debug` masks the number and hides the name.
pub struct CardForDisplay {
    pub pan: Pan,
    pub expiry: Expiry,
    /// As embossed, when the registry has it.
    pub name_on_card: Option<String>,
}

impl fmt::Debug for CardForDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardForDisplay")
            .field("pan", &self.pan)
            .field("expiry", &self.expiry)
            .field("name_on_card", &self.name_on_card.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// The registry's failure, described without card data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("card source: {0}")]
pub struct CardSourceError(pub String);

/// What the registry knows of a kit when a link is asked for: nothing is opened yet.
#[derive(Clone, PartialEq, Eq)]
pub enum KitLookup {
    /// No such entity in the tenant.
    NoEntity,
    /// The entity has no such kit (another entity's kit included).
    NoKit,
    /// The kit, its expiry if on file, and its holder's date of birth if on file.
    Found { expiry: Option<Expiry>, date_of_birth: Option<DateOfBirth> },
}

impl fmt::Debug for KitLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEntity => f.write_str("NoEntity"),
            Self::NoKit => f.write_str("NoKit"),
            Self::Found { expiry, date_of_birth } => {
                f.debug_struct("Found").field("expiry", expiry).field("date_of_birth", date_of_birth).finish()
            }
        }
    }
}

/// Where the card comes from: the registry, with the sealed card number opened.
pub trait CardSource: Send + Sync {
    /// What is on file for kit `kit_no` of entity `entity_id` in `tenant`, without opening
    /// its card number: asked when a link is issued.
    fn lookup(
        &self,
        tenant: &TenantId,
        entity_id: &EntityId,
        kit_no: &KitNo,
    ) -> impl Future<Output = Result<KitLookup, CardSourceError>> + Send;

    /// The kit `kit_no` of entity `entity_id` in `tenant`, or `None` when there is no
    /// such kit, it belongs to another entity, or it has no expiry on file.
    fn card(
        &self,
        tenant: &TenantId,
        entity_id: &EntityId,
        kit_no: &KitNo,
    ) -> impl Future<Output = Result<Option<CardForDisplay>, CardSourceError>> + Send;
}

/// Why a request was refused: the `reason` label of `ctp_widget_refusals_total`, and the
/// log field. The page never shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, malformed, unknown kid or tampered token; or an unreadable form.
    InvalidToken,
    /// An authentic token past its expiry.
    Expired,
    /// The ledger says used, expired, burned or unknown.
    Gone,
    /// `widget.require_dob` is on and the link carries no date of birth.
    DobNotOnLink,
    /// The CSRF cookie or field is missing or does not match.
    Csrf,
    /// The date-of-birth field is not a date: shown again, no try counted.
    DobUnreadable,
    /// A wrong date of birth, tries remain.
    WrongDob,
    /// A wrong date of birth that burned the link.
    DobBurned,
    /// The registry has no such card (any more).
    CardNotFound,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Self::InvalidToken,
        Self::Expired,
        Self::Gone,
        Self::DobNotOnLink,
        Self::Csrf,
        Self::DobUnreadable,
        Self::WrongDob,
        Self::DobBurned,
        Self::CardNotFound,
    ];

    /// Stable snake_case code, a metric label.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::Expired => "expired",
            Self::Gone => "gone",
            Self::DobNotOnLink => "dob_not_on_link",
            Self::Csrf => "csrf",
            Self::DobUnreadable => "dob_unreadable",
            Self::WrongDob => "wrong_dob",
            Self::DobBurned => "dob_burned",
            Self::CardNotFound => "card_not_found",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Show,
    Reveal,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Self::Show => "show",
            Self::Reveal => "reveal",
        }
    }
}

/// Largest form body read: a token, a CSRF value and a date fit in well under 2 KiB.
pub const MAX_FORM_BYTES: usize = 4096;

/// The POSTed form. Unknown fields are ignored; of a repeated field the first counts.
/// `Debug` shows which fields came, never their values.
#[derive(Default)]
pub struct RevealForm {
    token: Option<String>,
    csrf: Option<String>,
    dob_day: Option<String>,
    dob_month: Option<String>,
    dob_year: Option<String>,
}

impl fmt::Debug for RevealForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealForm")
            .field("token", &self.token.is_some())
            .field("csrf", &self.csrf.is_some())
            .field("dob", &(self.dob_day.is_some(), self.dob_month.is_some(), self.dob_year.is_some()))
            .finish()
    }
}

impl RevealForm {
    /// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`];
    /// `None` for a longer one. Never fails otherwise: what is missing is `None`.
    pub fn parse(body: &[u8]) -> Option<Self> {
        if body.len() > MAX_FORM_BYTES {
            return None;
        }
        let mut form = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "t" => &mut form.token,
                csrf::FIELD_NAME => &mut form.csrf,
                "dob-day" => &mut form.dob_day,
                "dob-month" => &mut form.dob_month,
                "dob-year" => &mut form.dob_year,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        Some(form)
    }

    /// The link token, if the form carries one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The date of birth entered, if its three fields make a real date.
    pub fn dob(&self) -> Option<DateOfBirth> {
        DateOfBirth::from_parts(self.dob_day.as_deref()?, self.dob_month.as_deref()?, self.dob_year.as_deref()?).ok()
    }
}

/// The `t` parameter of the page URL's query string.
pub fn token_from_query(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(name, _)| name == "t").map(|(_, value)| value.into_owned())
}

/// The card-details page. Holds the link keys, the settings and the three backends; the
/// HTTP layer calls [`Widget::show`] for `GET` and [`Widget::reveal`] for `POST`.
pub struct Widget<L, C, G> {
    keys: Arc<LinkKeys>,
    settings: WidgetSettings,
    ledger: L,
    cards: C,
    cvv: G,
}

impl<L, C, G> fmt::Debug for Widget<L, C, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Widget").field("keys", &self.keys).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl<L: LinkLedger, C: CardSource, G: CvvGenerator> Widget<L, C, G> {
    pub fn new(keys: Arc<LinkKeys>, settings: WidgetSettings, ledger: L, cards: C, cvv: G) -> Self {
        Self { keys, settings, ledger, cards, cvv }
    }

    /// Issues a link for kit `kit_no` of entity `entity_id` and records it in the ledger.
    /// The URL is `issued.token.url(<public page URL>)`. The kit must be the entity's and
    /// have an expiry on file (the CVV2 is computed from it); with `widget.require_dob` on,
    /// the entity's profile must carry a date of birth, and the link carries it.
    pub async fn issue(&self, tenant: &TenantId, entity_id: &EntityId, kit_no: &KitNo, now: i64) -> Result<IssuedLink, IssueLinkError> {
        let dob = match self.cards.lookup(tenant, entity_id, kit_no).await? {
            KitLookup::NoEntity => return Err(IssueLinkError::NoEntity),
            KitLookup::NoKit => return Err(IssueLinkError::NoKit),
            KitLookup::Found { expiry: None, .. } => return Err(IssueLinkError::NoExpiry),
            KitLookup::Found { date_of_birth, .. } => date_of_birth,
        };
        if !self.cvv.has_key(tenant) {
            return Err(IssueLinkError::NoCvk);
        }
        let dob = match (self.settings.require_dob, dob) {
            (false, _) => None,
            (true, None) => return Err(IssueLinkError::DobRequired),
            (true, Some(dob)) => Some(dob),
        };
        let issued = self.keys.issue(tenant, entity_id, kit_no, dob, now, self.settings.link_ttl)?;
        self.ledger.register(&issued.link_hash, tenant, issued.expires_at).await?;
        metrics::counter!("ctp_widget_links_issued_total").increment(1);
        tracing::info!(link = %issued.link_hash, %tenant, %entity_id, %kit_no, dob = dob.is_some(), "card-details link issued");
        Ok(issued)
    }

    /// `POST` with a body that could not be read whole (over [`MAX_FORM_BYTES`], or cut
    /// off): the 410 page, as for any form without a usable token.
    pub fn unreadable_form(&self) -> PageResponse {
        self.refuse(Refusal::InvalidToken, Step::Reveal)
    }

    /// The path the page's forms post to.
    pub fn form_action(&self) -> &str {
        self.settings.form_action.as_str()
    }

    /// `GET`: the first page (button, or date-of-birth form), or the 410 page. Reads the
    /// ledger, changes nothing.
    pub async fn show(&self, token: Option<&str>, now: i64) -> PageResponse {
        let claims = match self.open(token, now, Step::Show) {
            Ok(c) => c,
            Err(response) => return response,
        };
        match self.ledger.state(claims.link_hash(), now).await {
            Ok(LinkState::Usable { tries_left }) => self.first_page(&claims, StatusCode::OK, tries_left, None, None),
            Ok(LinkState::Gone) => self.refuse(Refusal::Gone, Step::Show),
            Err(e) => self.fail("ledger", &e),
        }
    }

    /// `POST`: the form body (`application/x-www-form-urlencoded`) and the request's
    /// `Cookie` header. Shows the details at most once per link.
    pub async fn reveal(&self, form_body: &[u8], cookie_header: Option<&str>, now: i64) -> PageResponse {
        let step = Step::Reveal;
        let Some(form) = RevealForm::parse(form_body) else { return self.refuse(Refusal::InvalidToken, step) };
        let claims = match self.open(form.token.as_deref(), now, step) {
            Ok(c) => c,
            Err(response) => return response,
        };
        let link = claims.link_hash();
        if let Err(why) = csrf::verify(&self.keys, &claims, self.settings.cookie, cookie_header, form.csrf.as_deref()) {
            // The link keeps its state: show the first page again with a fresh pair.
            tracing::info!(link = %link, why = %why, "card details: CSRF check failed");
            self.count_refusal(Refusal::Csrf, step);
            return match self.ledger.state(link, now).await {
                Ok(LinkState::Usable { tries_left }) => {
                    self.first_page(&claims, StatusCode::FORBIDDEN, tries_left, None, Some(Notice::PressAgain))
                }
                Ok(LinkState::Gone) => self.refuse(Refusal::Gone, step),
                Err(e) => self.fail("ledger", &e),
            };
        }
        let tries_left = match self.ledger.state(link, now).await {
            Ok(LinkState::Usable { tries_left }) => tries_left,
            Ok(LinkState::Gone) => return self.refuse(Refusal::Gone, step),
            Err(e) => return self.fail("ledger", &e),
        };
        if let Some(expected) = claims.dob() {
            let Some(given) = form.dob() else {
                self.count_refusal(Refusal::DobUnreadable, step);
                return self.first_page(&claims, StatusCode::OK, tries_left, Some(DobProblem::Unreadable), None);
            };
            if !expected.matches(&given) {
                return match self.ledger.record_wrong_dob(link, now).await {
                    Ok(WrongDob::TriesLeft(n)) => {
                        self.count_refusal(Refusal::WrongDob, step);
                        self.first_page(&claims, StatusCode::OK, n, Some(DobProblem::NoMatch), None)
                    }
                    Ok(WrongDob::Burned) => self.refuse(Refusal::DobBurned, step),
                    Ok(WrongDob::Gone) => self.refuse(Refusal::Gone, step),
                    Err(e) => self.fail("ledger", &e),
                };
            }
        }
        let card = match self.cards.card(claims.tenant(), claims.entity_id(), claims.kit_no()).await {
            Ok(Some(card)) => card,
            Ok(None) => return self.refuse(Refusal::CardNotFound, step),
            Err(e) => return self.fail("cards", &e),
        };
        let cvv = match self.cvv.cvv2(claims.tenant(), &card.pan, card.expiry).await {
            Ok(cvv) => cvv,
            Err(e) => return self.fail("cvv", &e),
        };
        match self.ledger.consume(link, now).await {
            Ok(Consume::Won) => {}
            Ok(Consume::Gone) => return self.refuse(Refusal::Gone, step),
            Err(e) => return self.fail("ledger", &e),
        }
        metrics::counter!("ctp_widget_links_used_total").increment(1);
        tracing::info!(link = %link, tenant = %claims.tenant(), kit_no = %claims.kit_no(), "card details shown");
        let ctx = self.context(claims.tenant().as_str());
        page::details(&ctx, &card.pan, card.expiry, card.name_on_card.as_deref(), &cvv)
            .into_response(&self.settings.frame_ancestors, Some(csrf::clear_cookie(self.settings.cookie)))
    }

    /// The token, opened and checked against `widget.require_dob`; or the 410 response.
    fn open(&self, token: Option<&str>, now: i64, step: Step) -> Result<LinkClaims, PageResponse> {
        let Some(token) = token else { return Err(self.refuse(Refusal::InvalidToken, step)) };
        let claims = self.keys.open(token, now).map_err(|e| {
            self.refuse(if e.metric_reason() == Refusal::Expired.code() { Refusal::Expired } else { Refusal::InvalidToken }, step)
        })?;
        if self.settings.require_dob && claims.dob().is_none() {
            return Err(self.refuse(Refusal::DobNotOnLink, step));
        }
        Ok(claims)
    }

    fn context(&self, tenant: &str) -> PageContext<'_> {
        PageContext {
            branding: self.settings.branding_for(tenant),
            form_action: &self.settings.form_action,
            copy_button: self.settings.copy_button,
        }
    }

    /// The landing or date-of-birth page with a fresh CSRF pair.
    fn first_page(
        &self,
        claims: &LinkClaims,
        status: StatusCode,
        tries_left: u8,
        problem: Option<DobProblem>,
        notice: Option<Notice>,
    ) -> PageResponse {
        let pair = CsrfPair::new(&self.keys, claims);
        let ctx = self.context(claims.tenant().as_str());
        // The page carries the token it was opened from.
        let token = claims.token();
        let (html, page_name): (Html, &str) = match claims.dob() {
            Some(_) => (
                page::date_of_birth(&ctx, status, token, pair.field(), tries_left.clamp(1, MAX_DOB_TRIES), problem, notice),
                "date_of_birth",
            ),
            None => (page::landing(&ctx, status, token, pair.field(), notice), "landing"),
        };
        metrics::counter!("ctp_widget_pages_shown_total", "page" => page_name).increment(1);
        html.into_response(&self.settings.frame_ancestors, Some(pair.set_cookie(self.settings.cookie, self.settings.link_ttl.as_secs())))
    }

    fn count_refusal(&self, reason: Refusal, step: Step) {
        metrics::counter!("ctp_widget_refusals_total", "reason" => reason.code(), "step" => step.as_str()).increment(1);
    }

    /// The 410 page, the same bytes for every reason.
    fn refuse(&self, reason: Refusal, step: Step) -> PageResponse {
        self.count_refusal(reason, step);
        page::gone().into_response(&self.settings.frame_ancestors, Some(csrf::clear_cookie(self.settings.cookie)))
    }

    /// Our own failure: logged with its source, answered 503, nothing used up.
    fn fail(&self, source: &'static str, error: &dyn fmt::Display) -> PageResponse {
        tracing::error!(source, error = %error, "card details page failed");
        metrics::counter!("ctp_widget_errors_total", "source" => source).increment(1);
        page::unavailable().into_response(&self.settings.frame_ancestors, None)
    }
}

/// Why [`Widget::issue`] issued nothing. The messages name fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum IssueLinkError {
    #[error("no such entity")]
    NoEntity,
    #[error("no such kit for this entity")]
    NoKit,
    #[error("the kit has no expiry on file: the card-details page needs one")]
    NoExpiry,
    #[error("the profile has no dateOfBirth, which widget.require_dob asks for")]
    DobRequired,
    /// Ours: the tenant has no card verification key, so its pages could only fail.
    #[error("no card verification key for the tenant (KEYS_DIR/cvk/<tenant>.key, or the HSM's)")]
    NoCvk,
    #[error(transparent)]
    Input(#[from] IssueError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Cards(#[from] CardSourceError),
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::cvv::SoftwareCvv;
    use super::super::link::tests::{NOW, eid, keys_dir, kno, tid};
    use super::*;

    const PAN: &str = "4111111111111111";
    const DOB: &str = "1984-11-05";

    /// The ledger as a database would keep it, behind one lock (each method is one
    /// atomic statement), with a yield before each so that concurrent callers interleave.
    #[derive(Default)]
    struct FakeLedger {
        rows: Mutex<HashMap<LinkHash, Row>>,
        fail: AtomicBool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Row {
        expires_at: i64,
        used: bool,
        tries_left: u8,
    }

    impl Row {
        fn usable(&self, now: i64) -> bool {
            !self.used && self.tries_left > 0 && now < self.expires_at
        }
    }

    impl FakeLedger {
        async fn enter(&self) -> Result<std::sync::MutexGuard<'_, HashMap<LinkHash, Row>>, LedgerError> {
            tokio::task::yield_now().await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(LedgerError("connection refused".into()));
            }
            Ok(self.rows.lock().unwrap())
        }

        fn row(&self, link: &LinkHash) -> Row {
            self.rows.lock().unwrap()[link]
        }
    }

    impl LinkLedger for FakeLedger {
        async fn register(&self, link: &LinkHash, _tenant: &TenantId, expires_at: i64) -> Result<(), LedgerError> {
            self.enter().await?.insert(link.clone(), Row { expires_at, used: false, tries_left: MAX_DOB_TRIES });
            Ok(())
        }

        async fn state(&self, link: &LinkHash, now: i64) -> Result<LinkState, LedgerError> {
            Ok(match self.enter().await?.get(link) {
                Some(row) if row.usable(now) => LinkState::Usable { tries_left: row.tries_left },
                _ => LinkState::Gone,
            })
        }

        async fn consume(&self, link: &LinkHash, now: i64) -> Result<Consume, LedgerError> {
            Ok(match self.enter().await?.get_mut(link) {
                Some(row) if row.usable(now) => {
                    row.used = true;
                    Consume::Won
                }
                _ => Consume::Gone,
            })
        }

        async fn record_wrong_dob(&self, link: &LinkHash, now: i64) -> Result<WrongDob, LedgerError> {
            Ok(match self.enter().await?.get_mut(link) {
                Some(row) if row.usable(now) => {
                    row.tries_left -= 1;
                    if row.tries_left == 0 { WrongDob::Burned } else { WrongDob::TriesLeft(row.tries_left) }
                }
                _ => WrongDob::Gone,
            })
        }
    }

    #[derive(Default)]
    struct FakeCards {
        fail: AtomicBool,
        missing: AtomicBool,
        no_dob: AtomicBool,
    }

    impl FakeCards {
        fn ours(tenant: &TenantId, entity_id: &EntityId, kit_no: &KitNo) -> bool {
            (tenant.as_str(), entity_id.as_str(), kit_no.as_str()) == ("DEMOBANK", "cust-7", "kit-7")
        }
    }

    impl CardSource for FakeCards {
        async fn lookup(&self, tenant: &TenantId, entity_id: &EntityId, kit_no: &KitNo) -> Result<KitLookup, CardSourceError> {
            if entity_id.as_str() != "cust-7" {
                return Ok(KitLookup::NoEntity);
            }
            if !Self::ours(tenant, entity_id, kit_no) && kit_no.as_str() != "kit-no-expiry" {
                return Ok(KitLookup::NoKit);
            }
            let expiry = (kit_no.as_str() != "kit-no-expiry").then(|| Expiry::parse("2029-07").unwrap());
            let date_of_birth = (!self.no_dob.load(Ordering::SeqCst)).then(|| DateOfBirth::parse(DOB).unwrap());
            Ok(KitLookup::Found { expiry, date_of_birth })
        }

        async fn card(&self, tenant: &TenantId, entity_id: &EntityId, kit_no: &KitNo) -> Result<Option<CardForDisplay>, CardSourceError> {
            tokio::task::yield_now().await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(CardSourceError("registry unreachable".into()));
            }
            if self.missing.load(Ordering::SeqCst) || !Self::ours(tenant, entity_id, kit_no) {
                return Ok(None);
            }
            Ok(Some(CardForDisplay {
                pan: Pan::parse(PAN).unwrap(),
                expiry: Expiry::parse("2029-07").unwrap(),
                name_on_card: Some("ADA LOVELACE".into()),
            }))
        }
    }

    type TestWidget = Widget<FakeLedger, FakeCards, SoftwareCvv>;

    struct Fixture {
        _dir: tempfile::TempDir,
        widget: Arc<TestWidget>,
        /// The CVV2 the page must show for the test card.
        cvv: String,
    }

    fn fixture(settings: WidgetSettings) -> Fixture {
        let dir = keys_dir(&["k1"]);
        std::fs::create_dir_all(dir.path().join("cvk")).unwrap();
        std::fs::write(dir.path().join("cvk/DEMOBANK.key"), "0123456789ABCDEFFEDCBA9876543210").unwrap();
        let keys = Arc::new(LinkKeys::load(dir.path(), "k1").unwrap());
        let cvv = SoftwareCvv::load(dir.path()).unwrap();
        let expected = cvv
            .generate(&TenantId::parse("DEMOBANK").unwrap(), &Pan::parse(PAN).unwrap(), Expiry::parse("2029-07").unwrap())
            .unwrap()
            .expose_for_display()
            .to_owned();
        let widget = Arc::new(Widget::new(keys, settings, FakeLedger::default(), FakeCards::default(), cvv));
        Fixture { _dir: dir, widget, cvv: expected }
    }

    fn with_dob() -> WidgetSettings {
        WidgetSettings { require_dob: true, ..WidgetSettings::default() }
    }

    impl Fixture {
        async fn issue(&self) -> IssuedLink {
            self.widget.issue(&tid("DEMOBANK"), &eid("cust-7"), &kno("kit-7"), NOW).await.unwrap()
        }
    }

    fn header<'a>(response: &'a PageResponse, name: &str) -> Option<&'a str> {
        response.headers.iter().find(|(n, _)| n.as_str() == name).map(|(_, v)| v.to_str().unwrap())
    }

    /// What a browser sends back from a first page: the `Cookie` header and the form.
    struct Browser {
        cookie: String,
        token: String,
        csrf: String,
    }

    fn hidden_value(body: &str, name: &str) -> String {
        let start = body.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} field")) + name.len() + 15;
        body[start..start + body[start..].find('"').unwrap()].to_owned()
    }

    fn browser(first_page: &PageResponse) -> Browser {
        let set_cookie = header(first_page, "set-cookie").expect("a first page sets the CSRF cookie");
        Browser {
            cookie: set_cookie.split(';').next().unwrap().to_owned(),
            token: hidden_value(&first_page.body, "t"),
            csrf: hidden_value(&first_page.body, "csrf"),
        }
    }

    impl Browser {
        fn form(&self, dob: Option<&str>) -> Vec<u8> {
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.append_pair("t", &self.token).append_pair("csrf", &self.csrf);
            // The page's three fields, from `YYYY-MM-DD` (anything else goes in as it is).
            if let Some(dob) = dob {
                let mut parts = dob.splitn(3, '-');
                for field in ["dob-year", "dob-month", "dob-day"] {
                    if let Some(part) = parts.next() {
                        s.append_pair(field, part);
                    }
                }
            }
            s.finish().into_bytes()
        }

        async fn press(&self, widget: &TestWidget, dob: Option<&str>) -> PageResponse {
            widget.reveal(&self.form(dob), Some(&self.cookie), NOW + 10).await
        }
    }

    async fn open_page(f: &Fixture, link: &IssuedLink) -> (PageResponse, Browser) {
        let page = f.widget.show(Some(link.token.as_str()), NOW + 5).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let b = browser(&page);
        (page, b)
    }

    fn assert_details(f: &Fixture, page: &PageResponse) {
        assert_eq!(page.status, StatusCode::OK);
        let body = &page.body;
        assert!(body.contains("<span>4111</span> <span>1111</span> <span>1111</span> <span>1111</span>"), "{body}");
        assert!(body.contains("<dd>07/29</dd>") && body.contains(&format!("<dd>{}</dd>", f.cvv)) && body.contains("ADA LOVELACE"));
        assert!(header(page, "set-cookie").unwrap().contains("Max-Age=0"));
        assert_eq!(header(page, "cache-control"), Some("no-store"));
    }

    #[tokio::test]
    async fn view_then_reveal_shows_the_details_once() {
        let f = fixture(WidgetSettings::default());
        let link = f.issue().await;
        let (page, b) = open_page(&f, &link).await;
        assert!(page.body.contains("<button type=\"submit\">Show card details</button>"));
        assert!(!page.body.contains(PAN) && !page.body.contains("4111"));
        assert_eq!(b.token, link.token.as_str());
        let shown = b.press(&f.widget, None).await;
        assert_details(&f, &shown);
        assert!(f.widget.ledger.row(&link.link_hash).used);
        // The same press again, and a fresh page for the same link: gone.
        assert_eq!(b.press(&f.widget, None).await.status, StatusCode::GONE);
        assert_eq!(f.widget.show(Some(link.token.as_str()), NOW + 20).await.status, StatusCode::GONE);
    }

    #[tokio::test]
    async fn viewing_uses_nothing_up() {
        let f = fixture(with_dob());
        let link = f.issue().await;
        let before = f.widget.ledger.row(&link.link_hash);
        for _ in 0..5 {
            let page = f.widget.show(Some(link.token.as_str()), NOW + 5).await;
            assert!(page.body.contains("You have 3 tries left"));
        }
        assert_eq!(f.widget.ledger.row(&link.link_hash), before);
        let (_, b) = open_page(&f, &link).await;
        assert_details(&f, &b.press(&f.widget, Some(DOB)).await);
    }

    #[tokio::test]
    async fn every_refusal_is_the_same_410_bytes() {
        let f = fixture(with_dob());
        let mut refusals = Vec::new();

        // Second use.
        let used = f.issue().await;
        let (_, b) = open_page(&f, &used).await;
        assert_details(&f, &b.press(&f.widget, Some(DOB)).await);
        refusals.push(("second use", b.press(&f.widget, Some(DOB)).await));
        refusals.push(("second use, GET", f.widget.show(Some(used.token.as_str()), NOW + 20).await));

        // Expired: the token's own expiry, and the ledger's.
        let link = f.issue().await;
        let (_, b) = open_page(&f, &link).await;
        refusals.push(("expired", f.widget.show(Some(link.token.as_str()), link.expires_at).await));
        refusals.push(("expired, POST", f.widget.reveal(&b.form(Some(DOB)), Some(&b.cookie), link.expires_at + 60).await));

        // Tampered: one character of the token changed.
        let mut chars: Vec<char> = link.token.as_str().chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        refusals.push(("tampered", f.widget.show(Some(&tampered), NOW).await));
        let forged = Browser { token: tampered.clone(), ..browser(&f.widget.show(Some(link.token.as_str()), NOW).await) };
        refusals.push(("tampered, POST", forged.press(&f.widget, Some(DOB)).await));
        refusals.push(("no token", f.widget.show(None, NOW).await));
        refusals.push(("garbage", f.widget.show(Some("<script>"), NOW).await));
        refusals.push(("oversized form", f.widget.reveal(&vec![b'a'; MAX_FORM_BYTES + 1], Some(&b.cookie), NOW).await));

        // Burned by wrong dates of birth.
        let burned = f.issue().await;
        let (_, b) = open_page(&f, &burned).await;
        for _ in 0..3 {
            b.press(&f.widget, Some("1984-11-06")).await;
        }
        refusals.push(("burned", b.press(&f.widget, Some(DOB)).await));

        // The card is gone from the registry.
        let link = f.issue().await;
        let (_, b) = open_page(&f, &link).await;
        f.widget.cards.missing.store(true, Ordering::SeqCst);
        refusals.push(("card not found", b.press(&f.widget, Some(DOB)).await));
        f.widget.cards.missing.store(false, Ordering::SeqCst);

        let (first_name, first) = &refusals[0];
        assert_eq!(first.status, StatusCode::GONE);
        assert!(first.body.contains("This link has expired or was already used"));
        for (name, refusal) in &refusals {
            assert_eq!(refusal, first, "{name} differs from {first_name}");
        }
        // Nothing of the link or the reason is in what it says (the stylesheet, shared by
        // every page, is left out: it styles `aria-invalid` fields).
        let said = &first.body[first.body.find("</style>").unwrap()..];
        let all = format!("{:?} {said}", first.headers);
        for word in ["tamper", "burn", "date of birth", "wrong", "invalid", used.link_hash.as_str(), used.token.as_str()] {
            assert!(!all.contains(word), "{word}");
        }
    }

    #[tokio::test]
    async fn csrf_missing_or_mismatched_is_refused_and_keeps_the_link() {
        let f = fixture(WidgetSettings::default());
        let link = f.issue().await;
        let other = f.issue().await;
        let (_, b) = open_page(&f, &link).await;
        let (_, b_other) = open_page(&f, &other).await;
        let cases: [(&str, Option<&str>, Vec<u8>); 4] = [
            ("no cookie", None, b.form(None)),
            ("no field", Some(&b.cookie), form_urlencoded::Serializer::new(String::new()).append_pair("t", &b.token).finish().into_bytes()),
            ("another page's cookie", Some(&b_other.cookie), b.form(None)),
            (
                "another link's pair",
                Some(&b_other.cookie),
                Browser { token: b.token.clone(), cookie: b_other.cookie.clone(), csrf: b_other.csrf.clone() }.form(None),
            ),
        ];
        for (name, cookie, form) in cases {
            let page = f.widget.reveal(&form, cookie, NOW + 10).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{name}");
            assert!(page.body.contains("please press the button again") && !page.body.contains("4111"), "{name}");
            // A fresh pair comes with it, and it works.
            assert!(header(&page, "set-cookie").unwrap().contains("SameSite=Strict"), "{name}");
        }
        assert!(!f.widget.ledger.row(&link.link_hash).used);
        let again = f.widget.reveal(&b.form(None), None, NOW + 10).await;
        assert_details(&f, &browser(&again).press(&f.widget, None).await);
    }

    #[tokio::test]
    async fn a_right_date_of_birth_reveals() {
        let f = fixture(with_dob());
        let link = f.issue().await;
        let (page, b) = open_page(&f, &link).await;
        assert!(
            page.body.contains("<legend>Date of birth</legend>")
                && !page.body.contains("Show card details</button>\n</form>\n<p class=\"small\"")
        );
        // Without a date, or with an unreadable one: asked again, no try counted.
        for dob in [None, Some(""), Some("05/11/1984"), Some("1984-02-30"), Some("1984-11")] {
            let again = b.press(&f.widget, dob).await;
            assert_eq!(again.status, StatusCode::OK);
            assert!(again.body.contains("Enter a real date") && again.body.contains("You have 3 tries left"), "{dob:?}");
        }
        assert_eq!(f.widget.ledger.row(&link.link_hash).tries_left, 3);
        assert_details(&f, &b.press(&f.widget, Some(DOB)).await);
    }

    #[tokio::test]
    async fn three_wrong_dates_of_birth_burn_the_link() {
        let f = fixture(with_dob());
        let link = f.issue().await;
        let (_, b) = open_page(&f, &link).await;
        let first = b.press(&f.widget, Some("1984-11-06")).await;
        assert_eq!(first.status, StatusCode::OK);
        assert!(first.body.contains("does not match") && first.body.contains("You have 2 tries left") && !first.body.contains("4111"));
        // The page after a wrong try carries a fresh pair; either works.
        let b2 = browser(&first);
        let second = b2.press(&f.widget, Some("1948-11-05")).await;
        assert!(second.body.contains("You have 1 try left"));
        let third = b.press(&f.widget, Some("2000-01-01")).await;
        assert_eq!(third.status, StatusCode::GONE);
        assert_eq!(b.press(&f.widget, Some(DOB)).await.status, StatusCode::GONE);
        assert_eq!(f.widget.show(Some(link.token.as_str()), NOW + 20).await.status, StatusCode::GONE);
        assert!(!f.widget.ledger.row(&link.link_hash).used);
    }

    #[tokio::test]
    async fn require_dob_refuses_links_without_one() {
        let f = fixture(with_dob());
        f.widget.cards.no_dob.store(true, Ordering::SeqCst);
        let issued = f.widget.issue(&tid("DEMOBANK"), &eid("cust-7"), &kno("kit-7"), NOW).await;
        assert!(matches!(issued, Err(IssueLinkError::DobRequired)), "{issued:?}");
        f.widget.cards.no_dob.store(false, Ordering::SeqCst);
        // A link issued before the setting was switched on: no date of birth in it, though
        // the profile has one.
        let relaxed = Widget::new(
            f.widget.keys.clone(),
            WidgetSettings::default(),
            FakeLedger::default(),
            FakeCards::default(),
            SoftwareCvv::load(f._dir.path()).unwrap(),
        );
        let link = relaxed.issue(&tid("DEMOBANK"), &eid("cust-7"), &kno("kit-7"), NOW).await.unwrap();
        assert!(f.widget.keys.open(link.token.as_str(), NOW).unwrap().dob().is_none());
        assert_eq!(f.widget.show(Some(link.token.as_str()), NOW).await.status, StatusCode::GONE);
    }

    #[tokio::test]
    async fn links_are_issued_only_for_a_kit_of_the_entity_with_an_expiry() {
        let f = fixture(WidgetSettings::default());
        let issue = |entity: &'static str, kit: &'static str| {
            let widget = f.widget.clone();
            async move { widget.issue(&tid("DEMOBANK"), &eid(entity), &kno(kit), NOW).await }
        };
        assert!(matches!(issue("cust-8", "kit-7").await, Err(IssueLinkError::NoEntity)));
        assert!(matches!(issue("cust-7", "kit-8").await, Err(IssueLinkError::NoKit)));
        assert!(matches!(issue("cust-7", "kit-no-expiry").await, Err(IssueLinkError::NoExpiry)));
        let elsewhere = f.widget.issue(&tid("OTHERBANK"), &eid("cust-7"), &kno("kit-7"), NOW).await;
        assert!(matches!(elsewhere, Err(IssueLinkError::NoKit)), "another tenant's kit is not found: {elsewhere:?}");
        assert!(f.widget.ledger.rows.lock().unwrap().is_empty(), "a refused link is not recorded");
        let link = issue("cust-7", "kit-7").await.unwrap();
        assert_eq!(f.widget.ledger.row(&link.link_hash).tries_left, MAX_DOB_TRIES);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reveals_of_one_link_show_it_once() {
        let f = fixture(WidgetSettings::default());
        let link = f.issue().await;
        let (_, b) = open_page(&f, &link).await;
        let form = b.form(None);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (widget, form, cookie) = (f.widget.clone(), form.clone(), b.cookie.clone());
                tokio::spawn(async move { widget.reveal(&form, Some(&cookie), NOW + 10).await })
            })
            .collect();
        let mut statuses = BTreeMap::new();
        for task in tasks {
            let page = task.await.unwrap();
            if page.status == StatusCode::OK {
                assert_details(&f, &page);
            }
            *statuses.entry(page.status.as_u16()).or_insert(0) += 1;
        }
        assert_eq!(statuses, BTreeMap::from([(200, 1), (410, 15)]));
    }

    #[tokio::test]
    async fn our_failures_use_nothing_up() {
        let f = fixture(WidgetSettings::default());
        let link = f.issue().await;
        let (_, b) = open_page(&f, &link).await;
        f.widget.cards.fail.store(true, Ordering::SeqCst);
        let page = b.press(&f.widget, None).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.body.contains("registry unreachable"));
        f.widget.cards.fail.store(false, Ordering::SeqCst);
        f.widget.ledger.fail.store(true, Ordering::SeqCst);
        assert_eq!(f.widget.show(Some(link.token.as_str()), NOW).await.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.press(&f.widget, None).await.status, StatusCode::SERVICE_UNAVAILABLE);
        f.widget.ledger.fail.store(false, Ordering::SeqCst);
        assert_details(&f, &b.press(&f.widget, None).await);
    }

    #[test]
    fn the_query_token_and_the_form_are_read_strictly() {
        assert_eq!(token_from_query(Some("t=k1.abc&x=1")).as_deref(), Some("k1.abc"));
        assert_eq!(token_from_query(Some("x=1")), None);
        assert_eq!(token_from_query(None), None);
        let form = RevealForm::parse(b"t=a&t=b&csrf=c&dob-day=5&dob-month=11&dob-year=1984&extra=1").unwrap();
        assert_eq!((form.token.as_deref(), form.csrf.as_deref()), (Some("a"), Some("c")));
        assert!(form.dob().unwrap().matches(&DateOfBirth::parse(DOB).unwrap()));
        assert!(RevealForm::parse(b"dob-day=5&dob-month=11").unwrap().dob().is_none());
        assert!(RevealForm::parse(&vec![b'x'; MAX_FORM_BYTES + 1]).is_none());
    }

    proptest::proptest! {
        /// Any body is read without a panic, refused only when longer than the limit; and
        /// whatever it holds, with any cookie, a reveal with it is the one 410 page (no
        /// body made without our key carries a token that opens).
        #[test]
        fn any_form_body_is_read_without_a_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..MAX_FORM_BYTES + 64),
            cookie in proptest::option::of("\\PC{0,80}"),
        ) {
            let form = RevealForm::parse(&body);
            proptest::prop_assert_eq!(form.is_some(), body.len() <= MAX_FORM_BYTES);
            if let Some(form) = &form {
                let _ = form.dob();
            }
            let (f, rt) = shared_fixture();
            let page = rt.block_on(f.widget.reveal(&body, cookie.as_deref(), NOW + 10));
            proptest::prop_assert_eq!(page.status, StatusCode::GONE);
        }

        /// What a browser's form serialiser writes is read back as written, whatever the
        /// fields hold and whatever other fields come with them.
        #[test]
        fn written_forms_read_back(
            token in "\\PC{0,300}",
            csrf in "\\PC{0,120}",
            (day, month, year) in ("[0-9 ]{0,3}", "[0-9]{0,3}", "[0-9]{0,5}"),
            noise in proptest::collection::vec(("[a-z-]{1,10}", "\\PC{0,20}"), 0..4),
        ) {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (name, value) in &noise {
                if !["t", "csrf", "dob-day", "dob-month", "dob-year"].contains(&name.as_str()) {
                    form.append_pair(name, value);
                }
            }
            form.append_pair("t", &token).append_pair("csrf", &csrf);
            form.append_pair("dob-day", &day).append_pair("dob-month", &month).append_pair("dob-year", &year);
            let body = form.finish();
            proptest::prop_assume!(body.len() <= MAX_FORM_BYTES);
            let read = RevealForm::parse(body.as_bytes()).unwrap();
            proptest::prop_assert_eq!(read.token(), Some(token.as_str()));
            proptest::prop_assert_eq!(read.csrf.as_deref(), Some(csrf.as_str()));
            proptest::prop_assert_eq!(read.dob(), DateOfBirth::from_parts(&day, &month, &year).ok());
        }
    }

    /// One fixture and one runtime for every case of the properties above.
    fn shared_fixture() -> &'static (Fixture, tokio::runtime::Runtime) {
        static SHARED: std::sync::OnceLock<(Fixture, tokio::runtime::Runtime)> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| (fixture(with_dob()), tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()))
    }

    /// Whether `needle` occurs in `hay` with no letter or digit right before or after it.
    fn contains_word(hay: &str, needle: &str) -> bool {
        hay.match_indices(needle).any(|(i, _)| {
            let before = hay[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric());
            let after = hay[i + needle.len()..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            !before && !after
        })
    }

    /// Counts every counter increment by its name and labels.
    #[derive(Default)]
    struct Counters(Arc<Mutex<BTreeMap<String, u64>>>);

    struct CounterHandle(String, Arc<Mutex<BTreeMap<String, u64>>>);

    impl metrics::CounterFn for CounterHandle {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
        }
        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value);
        }
    }

    impl metrics::Recorder for Counters {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            metrics::Counter::from_arc(Arc::new(CounterHandle(format!("{}{{{}}}", key.name(), labels.join(",")), self.0.clone())))
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    /// A log writer into a shared buffer.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A whole session (issue, view, CSRF failure, wrong date, reveal, second use, a
    /// failure) with every log line and metric captured: the metrics count what happened
    /// under the documented names, and neither they nor the logs nor any `Debug` hold the
    /// card number, the CVV or the date of birth.
    #[test]
    fn metrics_count_and_nothing_leaks_the_card() {
        let f = fixture(with_dob());
        let counters = Counters::default();
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber =
            tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).without_time().with_writer(move || writer.clone()).finish();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut hashes = Vec::new();
        let shown = tracing::subscriber::with_default(subscriber, || {
            metrics::with_local_recorder(&counters, || {
                rt.block_on(async {
                    let link = f.issue().await;
                    hashes.push(link.link_hash.clone());
                    let (_, b) = open_page(&f, &link).await;
                    f.widget.reveal(&b.form(Some(DOB)), None, NOW + 10).await;
                    b.press(&f.widget, Some("1999-09-09")).await;
                    let shown = b.press(&f.widget, Some(DOB)).await;
                    b.press(&f.widget, Some(DOB)).await;
                    f.widget.cards.fail.store(true, Ordering::SeqCst);
                    let link2 = f.issue().await;
                    hashes.push(link2.link_hash.clone());
                    let (_, b2) = open_page(&f, &link2).await;
                    b2.press(&f.widget, Some(DOB)).await;
                    shown
                })
            })
        });
        assert_details(&f, &shown);
        let counts = counters.0.lock().unwrap().clone();
        let expected = BTreeMap::from(
            [
                ("ctp_widget_links_issued_total{}", 2),
                ("ctp_widget_pages_shown_total{page=date_of_birth}", 4),
                ("ctp_widget_refusals_total{reason=csrf,step=reveal}", 1),
                ("ctp_widget_refusals_total{reason=wrong_dob,step=reveal}", 1),
                ("ctp_widget_links_used_total{}", 1),
                ("ctp_widget_refusals_total{reason=gone,step=reveal}", 1),
                ("ctp_widget_errors_total{source=cards}", 1),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        assert_eq!(counts, expected);
        let mut logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("card details shown") && logs.contains("registry unreachable"), "{logs}");
        // The link hashes are logged on purpose; they are random hex, which could hold
        // the CVV's three digits by chance.
        for hash in &hashes {
            logs = logs.replace(hash.as_str(), "<link>");
        }
        let card = CardForDisplay {
            pan: Pan::parse(PAN).unwrap(),
            expiry: Expiry::parse("2029-07").unwrap(),
            name_on_card: Some("ADA LOVELACE".into()),
        };
        let printed = format!("{logs} {counts:?} {card:?} {:?}", f.widget);
        for secret in [PAN, "1111 1111", &f.cvv, DOB, "ADA LOVELACE"] {
            assert!(!contains_word(&printed, secret), "{secret} printed");
        }
        // The response's Debug has random header values (CSP hashes, cookie): the body,
        // where the details are, is not in it.
        let shown_debug = format!("{shown:?}");
        assert!(shown_debug.contains("body_bytes") && !shown_debug.contains(PAN) && !shown_debug.contains("<dd>"));
        // Every refusal code is a short fixed label.
        assert!(Refusal::ALL.iter().all(|r| r.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}
