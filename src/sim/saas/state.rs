//! The simulator's memory: per tenant, consumers and their cards, and every request by
//! `requestTraceId` and by `requestId`. Accepting a request ([`State::accept`]) and
//! completing it ([`State::complete`]) are plain functions of this state, with no I/O, so
//! that the VICA-like rules can be tested on their own.
//!
//! No card number is kept: a request's cards are reduced, on acceptance, to what the rules
//! need (last four digits, whether it is a Visa card, a keyed fingerprint to recognise the
//! same card under another id, the expiry).

use std::collections::{BTreeMap, HashMap};

use aws_lc_rs::{digest, hmac};
use http::StatusCode;

use super::validate::{Refusal, parse_expiry};
use crate::ctp::CtpEvent;
use crate::saas::wire::{
    BillingAddress, Callback, ConsumerInformation, ErrorBody, InstrumentOutcome, Outcome, OutcomeResult, Profile, ProfileInstrument,
    RequestState, RequestStatus, SaasRequest, code,
};

pub const ACTIVE: &str = "ACTIVE";
pub const REMOVED: &str = "REMOVED";

/// The state of every tenant.
pub struct State {
    tenants: HashMap<String, Tenant>,
    /// Random per process: fingerprints mean nothing outside it.
    fingerprint_key: hmac::Key,
}

#[derive(Default)]
struct Tenant {
    consumers: HashMap<String, Consumer>,
    requests: HashMap<String, Request>,
    /// requestId → (requestTraceId, digest of the request).
    by_request_id: HashMap<String, (String, digest::Digest)>,
}

struct Consumer {
    ctp_id: String,
    status: &'static str,
    info: ConsumerInformation,
    cards: BTreeMap<String, Card>,
}

struct Card {
    payment_instrument_id: String,
    last4: String,
    status: &'static str,
    fingerprint: Option<[u8; 32]>,
    expiry: Option<(u16, u8)>,
    name_on_card: Option<String>,
    billing_address: Option<BillingAddress>,
}

/// One card of a request, as far as the rules need it.
#[derive(Clone)]
struct CardFacts {
    external_instrument_id: String,
    last4: Option<String>,
    is_visa: Option<bool>,
    fingerprint: Option<[u8; 32]>,
    expiry: Option<(u16, u8)>,
    name_on_card: Option<String>,
    billing_address: Option<BillingAddress>,
}

struct Request {
    request_id: String,
    event: CtpEvent,
    external_consumer_id: String,
    consumer: ConsumerInformation,
    cards: Vec<CardFacts>,
    /// Decided at acceptance (an operation on a consumer whose registration is running).
    forced_failure: Option<&'static str>,
    outcome: Option<Outcome>,
}

/// What [`State::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// A new request, to be completed later.
    New(String),
    /// A repeat of a `requestId`: the first request's trace, nothing started.
    Replay(String),
}

impl Accept {
    pub fn trace(&self) -> &str {
        match self {
            Self::New(t) | Self::Replay(t) => t,
        }
    }
}

/// Operations on the consumer itself: at most one at a time per consumer.
fn consumer_level(event: CtpEvent) -> bool {
    matches!(event, CtpEvent::RegisterEntityAndKit | CtpEvent::RemoveEntity | CtpEvent::UpdateEntity)
}

impl Default for State {
    fn default() -> Self {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).expect("system random source");
        Self { tenants: HashMap::new(), fingerprint_key: hmac::Key::new(hmac::HMAC_SHA256, &key) }
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl State {
    /// Accepts a validated request: a replay of a known `requestId`, a 409 if another
    /// consumer-level operation is running for the consumer, or a new trace.
    pub fn accept(&mut self, tenant: &str, event: CtpEvent, request: &SaasRequest, body_digest: digest::Digest) -> Result<Accept, Refusal> {
        let t = self.tenants.entry(tenant.to_owned()).or_default();
        if let Some((trace, seen)) = t.by_request_id.get(&request.request_id) {
            let same_event = t.requests.get(trace).is_some_and(|r| r.event == event);
            if same_event && seen.as_ref() == body_digest.as_ref() {
                return Ok(Accept::Replay(trace.clone()));
            }
            return Err(Refusal::bad_request(code::INVALID_REQUEST, "requestId already used for another request"));
        }
        let consumer_id = &request.consumer_information.external_consumer_id;
        let running = |r: &&Request| r.outcome.is_none() && &r.external_consumer_id == consumer_id;
        if consumer_level(event) && t.requests.values().filter(running).any(|r| consumer_level(r.event)) {
            return Err(Refusal {
                status: StatusCode::CONFLICT,
                code: code::CONCURRENT_REQUEST,
                message: "another request for this consumer is in progress".into(),
            });
        }
        let registration_running = t.requests.values().filter(running).any(|r| r.event == CtpEvent::RegisterEntityAndKit);
        let forced_failure = (!consumer_level(event) && registration_running).then_some(code::CONCURRENT_REQUEST);
        let key = &self.fingerprint_key;
        let cards = request
            .payment_instruments
            .iter()
            .map(|p| CardFacts {
                external_instrument_id: p.external_instrument_id.clone(),
                last4: p.account_number.as_ref().map(|pan| pan.last4().to_owned()),
                is_visa: p.account_number.as_ref().map(|pan| pan.expose_for_network().starts_with('4')),
                fingerprint: p.account_number.as_ref().map(|pan| {
                    let tag = hmac::sign(key, pan.expose_for_network().as_bytes());
                    let mut out = [0u8; 32];
                    out.copy_from_slice(tag.as_ref());
                    out
                }),
                expiry: p.expiration_date.as_deref().and_then(parse_expiry),
                name_on_card: p.name_on_card.clone(),
                billing_address: p.billing_address.clone(),
            })
            .collect();
        let trace = new_id();
        t.by_request_id.insert(request.request_id.clone(), (trace.clone(), body_digest));
        t.requests.insert(
            trace.clone(),
            Request {
                request_id: request.request_id.clone(),
                event,
                external_consumer_id: consumer_id.clone(),
                consumer: request.consumer_information.clone(),
                cards,
                forced_failure,
                outcome: None,
            },
        );
        Ok(Accept::New(trace))
    }

    /// `GET /status`.
    pub fn status(&self, tenant: &str, trace: &str) -> Option<RequestStatus> {
        let r = self.tenants.get(tenant)?.requests.get(trace)?;
        Some(RequestStatus {
            request_trace_id: trace.to_owned(),
            request_id: r.request_id.clone(),
            event: r.event,
            status: if r.outcome.is_some() { RequestState::Completed } else { RequestState::InProgress },
            outcome: r.outcome.clone(),
        })
    }

    /// `GET /getData`: every consumer ever enrolled, removed ones included.
    pub fn profile(&self, tenant: &str, external_consumer_id: &str) -> Option<Profile> {
        let c = self.tenants.get(tenant)?.consumers.get(external_consumer_id)?;
        Some(Profile {
            external_consumer_id: external_consumer_id.to_owned(),
            click_to_pay_customer_id: c.ctp_id.clone(),
            status: c.status.to_owned(),
            consumer_information: c.info.clone(),
            payment_instruments: c
                .cards
                .iter()
                .map(|(id, card)| ProfileInstrument {
                    external_instrument_id: id.clone(),
                    payment_instrument_id: card.payment_instrument_id.clone(),
                    last4: card.last4.clone(),
                    status: card.status.to_owned(),
                })
                .collect(),
        })
    }

    /// Completes a request by the rules of its event, at `month` (`(year, month)`, for
    /// expiry). Returns the callback to send, or `None` if the trace is unknown or done.
    pub fn complete(&mut self, tenant: &str, trace: &str, month: (u16, u8)) -> Option<Callback> {
        let t = self.tenants.get_mut(tenant)?;
        let r = t.requests.get(trace)?;
        if r.outcome.is_some() {
            return None;
        }
        let outcome = match r.forced_failure {
            Some(code) => failed_all(code, &r.cards),
            None => {
                let (event, consumer_id, info, cards) = (r.event, r.external_consumer_id.clone(), r.consumer.clone(), r.cards.clone());
                run(&mut t.consumers, event, &consumer_id, info, &cards, month)
            }
        };
        let r = t.requests.get_mut(trace)?;
        r.outcome = Some(outcome.clone());
        // The card details of a finished request are not needed any more.
        r.cards.iter_mut().for_each(|c| {
            c.fingerprint = None;
            c.billing_address = None;
        });
        Some(Callback {
            request_trace_id: trace.to_owned(),
            request_id: r.request_id.clone(),
            event: r.event,
            tenant: tenant.to_owned(),
            outcome,
        })
    }

    /// Number of requests (not replays) accepted for `tenant`.
    pub fn request_count(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, |t| t.requests.len())
    }
}

fn message(code: &str) -> &'static str {
    match code {
        code::CONSUMER_ALREADY_ENROLLED => "consumer already enrolled",
        code::CONSUMER_NOT_ENROLLED => "consumer not enrolled",
        code::CARD_EXPIRED => "card expired",
        code::CARD_ALREADY_EXISTS => "card already exists",
        code::CARD_NOT_ENROLLED => "card not enrolled",
        code::NOT_A_VISA_CARD => "not a Visa card",
        code::FIELD_NOT_UPDATABLE => "field cannot be updated",
        code::CONCURRENT_REQUEST => "another request for this consumer is in progress",
        _ => "request failed",
    }
}

fn error(code: &str) -> ErrorBody {
    ErrorBody { error_code: code.to_owned(), message: message(code).to_owned() }
}

fn failed_all(code: &'static str, cards: &[CardFacts]) -> Outcome {
    Outcome {
        result: OutcomeResult::Failed,
        click_to_pay_customer_id: None,
        payment_instruments: cards
            .iter()
            .map(|c| InstrumentOutcome {
                external_instrument_id: c.external_instrument_id.clone(),
                payment_instrument_id: None,
                result: OutcomeResult::Failed,
                error_code: Some(code.to_owned()),
            })
            .collect(),
        error: Some(error(code)),
    }
}

fn card_ok(id: &str, payment_instrument_id: &str) -> InstrumentOutcome {
    InstrumentOutcome {
        external_instrument_id: id.to_owned(),
        payment_instrument_id: Some(payment_instrument_id.to_owned()),
        result: OutcomeResult::Success,
        error_code: None,
    }
}

fn card_failed(id: &str, payment_instrument_id: Option<&str>, code: &str) -> InstrumentOutcome {
    InstrumentOutcome {
        external_instrument_id: id.to_owned(),
        payment_instrument_id: payment_instrument_id.map(str::to_owned),
        result: OutcomeResult::Failed,
        error_code: Some(code.to_owned()),
    }
}

/// SUCCESS if any card succeeded (or there were none to do), else FAILED with the first
/// card's code.
fn summarise(ctp_id: Option<String>, cards: Vec<InstrumentOutcome>) -> Outcome {
    let any_ok = cards.is_empty() || cards.iter().any(|c| c.result == OutcomeResult::Success);
    let first_error = cards.iter().find_map(|c| c.error_code.clone());
    Outcome {
        result: if any_ok { OutcomeResult::Success } else { OutcomeResult::Failed },
        click_to_pay_customer_id: ctp_id,
        payment_instruments: cards,
        error: if any_ok { None } else { first_error.map(|c| error(&c)) },
    }
}

/// Why a card cannot be enrolled for `owner`: not Visa, expired, or already enrolled (its
/// id under `owner`, or the same number anywhere in the tenant).
fn enrolment_refusal(consumers: &HashMap<String, Consumer>, owner: &str, card: &CardFacts, month: (u16, u8)) -> Option<&'static str> {
    if card.is_visa == Some(false) {
        return Some(code::NOT_A_VISA_CARD);
    }
    if card.expiry.is_some_and(|e| e < month) {
        return Some(code::CARD_EXPIRED);
    }
    let taken = consumers.iter().filter(|(_, c)| c.status == ACTIVE).any(|(id, c)| {
        c.cards.iter().filter(|(_, k)| k.status == ACTIVE).any(|(kid, k)| {
            (id == owner && *kid == card.external_instrument_id) || (card.fingerprint.is_some() && k.fingerprint == card.fingerprint)
        })
    });
    taken.then_some(code::CARD_ALREADY_EXISTS)
}

fn new_card(card: &CardFacts) -> Card {
    Card {
        payment_instrument_id: new_id(),
        last4: card.last4.clone().unwrap_or_default(),
        status: ACTIVE,
        fingerprint: card.fingerprint,
        expiry: card.expiry,
        name_on_card: card.name_on_card.clone(),
        billing_address: card.billing_address.clone(),
    }
}

/// The VICA-like rules of each operation.
fn run(
    consumers: &mut HashMap<String, Consumer>,
    event: CtpEvent,
    consumer_id: &str,
    info: ConsumerInformation,
    cards: &[CardFacts],
    month: (u16, u8),
) -> Outcome {
    let active = consumers.get(consumer_id).is_some_and(|c| c.status == ACTIVE);
    match event {
        CtpEvent::RegisterEntityAndKit => {
            if let Some(existing) = consumers.get(consumer_id).filter(|c| c.status == ACTIVE) {
                // Tell what is already there, so that a retried registration can be healed.
                let per_card = cards
                    .iter()
                    .map(|c| match existing.cards.get(&c.external_instrument_id).filter(|k| k.status == ACTIVE) {
                        Some(k) => card_failed(&c.external_instrument_id, Some(&k.payment_instrument_id), code::CARD_ALREADY_EXISTS),
                        None => card_failed(&c.external_instrument_id, None, code::CONSUMER_ALREADY_ENROLLED),
                    })
                    .collect();
                return Outcome {
                    result: OutcomeResult::Failed,
                    click_to_pay_customer_id: Some(existing.ctp_id.clone()),
                    payment_instruments: per_card,
                    error: Some(error(code::CONSUMER_ALREADY_ENROLLED)),
                };
            }
            let mut enrolled = BTreeMap::new();
            let mut results = Vec::new();
            for card in cards {
                match enrolment_refusal(consumers, consumer_id, card, month) {
                    Some(code) => results.push(card_failed(&card.external_instrument_id, None, code)),
                    None => {
                        let new = new_card(card);
                        results.push(card_ok(&card.external_instrument_id, &new.payment_instrument_id));
                        enrolled.insert(card.external_instrument_id.clone(), new);
                    }
                }
            }
            if enrolled.is_empty() {
                return summarise(None, results);
            }
            let ctp_id = new_id();
            // A consumer removed earlier comes back with a new id; its old cards stay REMOVED.
            let mut all_cards = consumers.remove(consumer_id).map(|c| c.cards).unwrap_or_default();
            all_cards.extend(enrolled);
            consumers.insert(consumer_id.to_owned(), Consumer { ctp_id: ctp_id.clone(), status: ACTIVE, info, cards: all_cards });
            summarise(Some(ctp_id), results)
        }
        _ if !active => failed_all(code::CONSUMER_NOT_ENROLLED, cards),
        CtpEvent::AddKit => {
            let mut results = Vec::new();
            for card in cards {
                match enrolment_refusal(consumers, consumer_id, card, month) {
                    Some(code) => results.push(card_failed(&card.external_instrument_id, None, code)),
                    None => {
                        let new = new_card(card);
                        results.push(card_ok(&card.external_instrument_id, &new.payment_instrument_id));
                        if let Some(c) = consumers.get_mut(consumer_id) {
                            c.cards.insert(card.external_instrument_id.clone(), new);
                        }
                    }
                }
            }
            summarise(consumers.get(consumer_id).map(|c| c.ctp_id.clone()), results)
        }
        CtpEvent::RemoveKit => {
            let Some(c) = consumers.get_mut(consumer_id) else { return failed_all(code::CONSUMER_NOT_ENROLLED, cards) };
            let results = cards
                .iter()
                .map(|card| match c.cards.get_mut(&card.external_instrument_id).filter(|k| k.status == ACTIVE) {
                    Some(k) => {
                        k.status = REMOVED;
                        card_ok(&card.external_instrument_id, &k.payment_instrument_id)
                    }
                    None => card_failed(&card.external_instrument_id, None, code::CARD_NOT_ENROLLED),
                })
                .collect();
            summarise(Some(c.ctp_id.clone()), results)
        }
        CtpEvent::RemoveEntity => {
            let Some(c) = consumers.get_mut(consumer_id) else { return failed_all(code::CONSUMER_NOT_ENROLLED, cards) };
            c.status = REMOVED;
            let results = c
                .cards
                .iter_mut()
                .filter(|(_, k)| k.status == ACTIVE)
                .map(|(id, k)| {
                    k.status = REMOVED;
                    card_ok(id, &k.payment_instrument_id)
                })
                .collect();
            summarise(Some(c.ctp_id.clone()), results)
        }
        CtpEvent::UpdateEntity => {
            let Some(c) = consumers.get_mut(consumer_id) else { return failed_all(code::CONSUMER_NOT_ENROLLED, cards) };
            merge_consumer(&mut c.info, info);
            summarise(Some(c.ctp_id.clone()), Vec::new())
        }
        CtpEvent::UpdateKit => {
            let Some(c) = consumers.get_mut(consumer_id) else { return failed_all(code::CONSUMER_NOT_ENROLLED, cards) };
            let results = cards
                .iter()
                .map(|card| {
                    let id = &card.external_instrument_id;
                    let Some(k) = c.cards.get_mut(id).filter(|k| k.status == ACTIVE) else {
                        return card_failed(id, None, code::CARD_NOT_ENROLLED);
                    };
                    if card.fingerprint.is_some() && card.fingerprint != k.fingerprint {
                        return card_failed(id, Some(&k.payment_instrument_id), code::FIELD_NOT_UPDATABLE);
                    }
                    if card.expiry.is_some_and(|e| e < month) {
                        return card_failed(id, Some(&k.payment_instrument_id), code::CARD_EXPIRED);
                    }
                    if card.expiry.is_some() {
                        k.expiry = card.expiry;
                    }
                    if card.name_on_card.is_some() {
                        k.name_on_card = card.name_on_card.clone();
                    }
                    if card.billing_address.is_some() {
                        k.billing_address = card.billing_address.clone();
                    }
                    card_ok(id, &k.payment_instrument_id)
                })
                .collect();
            summarise(Some(c.ctp_id.clone()), results)
        }
    }
}

/// Fields present in an update replace the stored ones; absent ones are kept.
fn merge_consumer(stored: &mut ConsumerInformation, update: ConsumerInformation) {
    macro_rules! take {
        ($($f:ident),*) => { $( if update.$f.is_some() { stored.$f = update.$f; } )* };
    }
    macro_rules! take_list {
        ($($f:ident),*) => { $( if !update.$f.is_empty() { stored.$f = update.$f; } )* };
    }
    take!(first_name, middle_name, last_name, locale, country_code, consent);
    take_list!(emails, phones, national_identifiers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pan::Pan;
    use crate::saas::wire::{Intent, PaymentInstrument};

    const NOW: (u16, u8) = (2026, 6);

    fn req(id: &str, consumer: &str, cards: &[(&str, &str, &str)]) -> SaasRequest {
        SaasRequest {
            request_id: id.into(),
            intent: Intent::default(),
            consumer_information: ConsumerInformation { external_consumer_id: consumer.into(), ..Default::default() },
            payment_instruments: cards
                .iter()
                .map(|(kit, pan, exp)| PaymentInstrument {
                    account_number: (!pan.is_empty()).then(|| Pan::parse(pan).unwrap()),
                    expiration_date: (!exp.is_empty()).then(|| exp.to_string()),
                    ..PaymentInstrument::reference(*kit)
                })
                .collect(),
            click_to_pay_customer_id: None,
        }
    }

    fn digest_of(r: &SaasRequest) -> digest::Digest {
        digest::digest(&digest::SHA256, &serde_json::to_vec(r).unwrap())
    }

    /// Accepts and completes at once; the outcome's code (or "SUCCESS").
    fn run_one(s: &mut State, event: CtpEvent, r: &SaasRequest) -> (Outcome, String) {
        let trace = s.accept("T", event, r, digest_of(r)).unwrap();
        let cb = s.complete("T", trace.trace(), NOW).unwrap();
        let code = cb.outcome.error.as_ref().map_or("SUCCESS".to_owned(), |e| e.error_code.clone());
        (cb.outcome, code)
    }

    const VISA: &str = "4111111111111111";
    const VISA2: &str = "4012888888881881";
    const MASTERCARD: &str = "5555555555554444";

    #[test]
    fn lifecycle_and_vica_codes() {
        let mut s = State::default();
        let (o, c) = run_one(&mut s, CtpEvent::AddKit, &req("a0", "e", &[("k1", VISA, "2030-01")]));
        assert_eq!(c, "VIDC-2001");
        assert_eq!(o.payment_instruments[0].error_code.as_deref(), Some("VIDC-2001"));

        let (o, c) = run_one(&mut s, CtpEvent::RegisterEntityAndKit, &req("r1", "e", &[("k1", VISA, "2030-01")]));
        assert_eq!(c, "SUCCESS");
        let ctp_id = o.click_to_pay_customer_id.clone().unwrap();
        assert!(o.payment_instruments[0].payment_instrument_id.is_some());

        let (o, c) = run_one(&mut s, CtpEvent::RegisterEntityAndKit, &req("r2", "e", &[("k1", VISA, "2030-01")]));
        assert_eq!(c, "VIDC-2000");
        assert_eq!(o.click_to_pay_customer_id.as_deref(), Some(ctp_id.as_str()));
        assert_eq!(o.payment_instruments[0].error_code.as_deref(), Some("VIDC-2004"));

        assert_eq!(run_one(&mut s, CtpEvent::AddKit, &req("a1", "e", &[("k1", VISA, "2030-01")])).1, "VIDC-2004");
        assert_eq!(run_one(&mut s, CtpEvent::AddKit, &req("a2", "e", &[("k9", VISA, "2030-01")])).1, "VIDC-2004", "same number, other id");
        assert_eq!(run_one(&mut s, CtpEvent::AddKit, &req("a3", "e", &[("k2", VISA2, "2026-05")])).1, "VIDC-2003");
        assert_eq!(run_one(&mut s, CtpEvent::AddKit, &req("a4", "e", &[("k2", MASTERCARD, "2030-01")])).1, "VIDC-2006");
        assert_eq!(run_one(&mut s, CtpEvent::AddKit, &req("a5", "e", &[("k2", VISA2, "2026-06")])).1, "SUCCESS");

        let p = s.profile("T", "e").unwrap();
        assert_eq!((p.status.as_str(), p.payment_instruments.len()), ("ACTIVE", 2));
        assert_eq!(p.payment_instruments[1].last4, "1881");

        assert_eq!(run_one(&mut s, CtpEvent::UpdateKit, &req("u1", "e", &[("k2", VISA, "")])).1, "VIDC-2008");
        assert_eq!(run_one(&mut s, CtpEvent::UpdateKit, &req("u2", "e", &[("k2", "", "2031-01")])).1, "SUCCESS");
        assert_eq!(run_one(&mut s, CtpEvent::RemoveKit, &req("x1", "e", &[("k2", "", "")])).1, "SUCCESS");
        assert_eq!(run_one(&mut s, CtpEvent::RemoveKit, &req("x2", "e", &[("k2", "", "")])).1, "VIDC-2005");
        assert_eq!(run_one(&mut s, CtpEvent::UpdateEntity, &req("u3", "e", &[])).1, "SUCCESS");
        let (o, c) = run_one(&mut s, CtpEvent::RemoveEntity, &req("x3", "e", &[]));
        assert_eq!((c.as_str(), o.payment_instruments.len()), ("SUCCESS", 1));
        let p = s.profile("T", "e").unwrap();
        assert_eq!(p.status, "REMOVED");
        assert!(p.payment_instruments.iter().all(|k| k.status == "REMOVED"));
        assert_eq!(run_one(&mut s, CtpEvent::RemoveEntity, &req("x4", "e", &[])).1, "VIDC-2001");
        // Back again, with a new consumer id.
        let (o, c) = run_one(&mut s, CtpEvent::RegisterEntityAndKit, &req("r3", "e", &[("k1", VISA, "2030-01")]));
        assert_eq!(c, "SUCCESS");
        assert_ne!(o.click_to_pay_customer_id.unwrap(), ctp_id);
        // Other tenants see nothing.
        assert!(s.profile("U", "e").is_none());
        assert!(s.status("U", "whatever").is_none());
    }

    #[test]
    fn a_registration_whose_every_card_fails_enrolls_nobody() {
        let mut s = State::default();
        assert_eq!(run_one(&mut s, CtpEvent::RegisterEntityAndKit, &req("r", "e", &[("k", MASTERCARD, "2030-01")])).1, "VIDC-2006");
        assert!(s.profile("T", "e").is_none());
    }

    #[test]
    fn idempotency_and_concurrency() {
        let mut s = State::default();
        let r = req("r1", "e", &[("k1", VISA, "2030-01")]);
        let first = s.accept("T", CtpEvent::RegisterEntityAndKit, &r, digest_of(&r)).unwrap();
        let again = s.accept("T", CtpEvent::RegisterEntityAndKit, &r, digest_of(&r)).unwrap();
        assert_eq!(again, Accept::Replay(first.trace().to_owned()));
        assert_eq!(s.request_count("T"), 1);
        // Same requestId, other body: refused.
        let other = req("r1", "e", &[("k2", VISA2, "2030-01")]);
        assert_eq!(s.accept("T", CtpEvent::RegisterEntityAndKit, &other, digest_of(&other)).unwrap_err().code, "VIDC-1000");
        // A second consumer-level operation while the first runs: 409.
        let remove = req("x1", "e", &[]);
        let refusal = s.accept("T", CtpEvent::RemoveEntity, &remove, digest_of(&remove)).unwrap_err();
        assert_eq!((refusal.status, refusal.code), (StatusCode::CONFLICT, "VIDC-3000"));
        // A card operation while the registration runs: accepted, fails VIDC-3000.
        let add = req("a1", "e", &[("k2", VISA2, "2030-01")]);
        let add_trace = s.accept("T", CtpEvent::AddKit, &add, digest_of(&add)).unwrap();
        assert_eq!(s.status("T", add_trace.trace()).unwrap().status, RequestState::InProgress);
        s.complete("T", first.trace(), NOW).unwrap();
        let cb = s.complete("T", add_trace.trace(), NOW).unwrap();
        assert_eq!(cb.outcome.error.unwrap().error_code, "VIDC-3000");
        // Completing twice gives nothing.
        assert!(s.complete("T", first.trace(), NOW).is_none());
        // Same requestId in another tenant is another request.
        assert!(matches!(s.accept("U", CtpEvent::RegisterEntityAndKit, &r, digest_of(&r)).unwrap(), Accept::New(_)));
    }
}
