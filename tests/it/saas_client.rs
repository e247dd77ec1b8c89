//! The SaaS client against the SaaS simulator, both real, over loopback: every operation,
//! the VICA-like refusals, idempotent retries, each injected fault, and the signed
//! callbacks (checked by a receiver built on `webhook::WebhookVerifier`).

use std::time::{Duration, Instant, SystemTime};

use ctp_issuer::config::{HttpConfig, SaasConfig};
use ctp_issuer::ctp::CtpEvent;
use ctp_issuer::pan::Pan;
use ctp_issuer::saas::wire::{
    BillingAddress, Callback, ConsumerInformation, Intent, Outcome, OutcomeResult, PaymentInstrument, RequestState, SaasRequest,
};
use ctp_issuer::saas::{SaasClient, SaasError};
use ctp_issuer::sim::saas::{FailMode, SimConfig, Simulator, SimulatorHandle};
use ctp_issuer::webhook::{WebhookSecret, WebhookVerifier};
use http::StatusCode;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support::until;

const T: &str = "ENBDTABBY";
const VISA: &str = "4111111111111111";
const VISA2: &str = "4012888888881881";
const VISA3: &str = "4000056655665556";
const MASTERCARD: &str = "5555555555554444";

fn secret(n: u8) -> WebhookSecret {
    WebhookSecret::from_bytes(&[n; 32]).unwrap()
}

async fn sim(change: impl FnOnce(&mut SimConfig)) -> SimulatorHandle {
    let mut config = SimConfig::new(vec![secret(1)]);
    config.callback_delay = Duration::from_millis(50);
    config.callback_backoff = Duration::from_millis(20);
    change(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, config).unwrap()
}

fn client(sim: &SimulatorHandle, change: impl FnOnce(&mut SaasConfig)) -> SaasClient {
    let mut config = SaasConfig {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_secs(2),
        ..SaasConfig::default()
    };
    change(&mut config);
    SaasClient::new(&sim.base_url(), &config).unwrap()
}

fn consumer(id: &str) -> ConsumerInformation {
    ConsumerInformation {
        external_consumer_id: id.into(),
        first_name: Some("Jane".into()),
        last_name: Some("Doe".into()),
        emails: vec!["jane.doe@example.com".into()],
        phones: vec!["+14155550100".into()],
        locale: Some("en_US".into()),
        country_code: Some("USA".into()),
        ..Default::default()
    }
}

fn card(kit: &str, pan: &str, expiry: &str) -> PaymentInstrument {
    PaymentInstrument {
        account_number: Some(Pan::parse(pan).unwrap()),
        name_on_card: Some("JANE DOE".into()),
        expiration_date: Some(expiry.into()),
        billing_address: Some(BillingAddress {
            address_line1: Some("1 Main St".into()),
            city: Some("San Francisco".into()),
            state: Some("CA".into()),
            postal_code: Some("94105".into()),
            country: Some("USA".into()),
            ..Default::default()
        }),
        ..PaymentInstrument::reference(kit)
    }
}

fn request(consumer_info: ConsumerInformation, cards: Vec<PaymentInstrument>) -> SaasRequest {
    SaasRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        intent: Intent::default(),
        consumer_information: consumer_info,
        payment_instruments: cards,
        click_to_pay_customer_id: None,
    }
}

fn only_id(id: &str) -> ConsumerInformation {
    ConsumerInformation { external_consumer_id: id.into(), ..Default::default() }
}

/// Polls `/status` until the request completes.
async fn outcome(client: &SaasClient, trace: &str) -> Outcome {
    until(&format!("request {trace} to complete"), Duration::from_secs(20), || async {
        let status = client.status(T, trace).await.unwrap().expect("trace known");
        (status.status == RequestState::Completed).then(|| status.outcome.unwrap())
    })
    .await
}

/// Submits and waits for the outcome; returns it and its error code or "SUCCESS".
async fn run(client: &SaasClient, event: CtpEvent, r: &SaasRequest) -> (Outcome, String) {
    let accepted = client.submit(T, Some("corr-1"), event, r).await.unwrap();
    let o = outcome(client, &accepted.request_trace_id).await;
    let code = o.error.as_ref().map_or_else(|| "SUCCESS".to_owned(), |e| e.error_code.clone());
    (o, code)
}

fn year_ahead() -> String {
    let now = humantime_serde::re::humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let year: u16 = now[0..4].parse().unwrap();
    format!("{}-{}", year + 2, &now[5..7])
}

#[tokio::test]
async fn every_operation_through_status_with_callbacks_dropped() {
    let sim = sim(|_| {}).await;
    sim.update_faults(|f| f.drop_callbacks = true);
    let c = client(&sim, |_| {});
    let exp = year_ahead();

    let (o, code) = run(&c, CtpEvent::RegisterEntityAndKit, &request(consumer("e1"), vec![card("k1", VISA, &exp)])).await;
    assert_eq!(code, "SUCCESS");
    let ctp_id = o.click_to_pay_customer_id.clone().expect("clickToPayCustomerId");
    assert_eq!(o.payment_instruments[0].external_instrument_id, "k1");
    assert_eq!(o.payment_instruments[0].result, OutcomeResult::Success);
    assert!(o.payment_instruments[0].payment_instrument_id.is_some());

    let profile = c.get_data(T, "e1").await.unwrap().unwrap();
    assert_eq!((profile.status.as_str(), profile.click_to_pay_customer_id.as_str()), ("ACTIVE", ctp_id.as_str()));
    assert_eq!(profile.payment_instruments[0].last4, "1111");

    let (o, code) = run(&c, CtpEvent::AddKit, &request(only_id("e1"), vec![card("k2", VISA2, &exp)])).await;
    assert_eq!((code.as_str(), o.click_to_pay_customer_id.as_deref()), ("SUCCESS", Some(ctp_id.as_str())));

    let mut update = consumer("e1");
    update.first_name = Some("Janet".into());
    assert_eq!(run(&c, CtpEvent::UpdateEntity, &request(update, vec![])).await.1, "SUCCESS");
    let profile = c.get_data(T, "e1").await.unwrap().unwrap();
    assert_eq!(profile.consumer_information.first_name.as_deref(), Some("Janet"));

    let mut new_expiry = PaymentInstrument::reference("k2");
    new_expiry.expiration_date = Some(exp.clone());
    assert_eq!(run(&c, CtpEvent::UpdateKit, &request(only_id("e1"), vec![new_expiry])).await.1, "SUCCESS");

    assert_eq!(run(&c, CtpEvent::RemoveKit, &request(only_id("e1"), vec![PaymentInstrument::reference("k2")])).await.1, "SUCCESS");
    let profile = c.get_data(T, "e1").await.unwrap().unwrap();
    let k2 = profile.payment_instruments.iter().find(|k| k.external_instrument_id == "k2").unwrap();
    assert_eq!(k2.status, "REMOVED");

    let (o, code) = run(&c, CtpEvent::RemoveEntity, &request(only_id("e1"), vec![])).await;
    assert_eq!((code.as_str(), o.payment_instruments.len()), ("SUCCESS", 1));
    let profile = c.get_data(T, "e1").await.unwrap().unwrap();
    assert_eq!(profile.status, "REMOVED");

    assert_eq!(c.get_data(T, "never-enrolled").await.unwrap(), None);
    assert_eq!(c.status(T, "00000000-0000-0000-0000-000000000000").await.unwrap(), None);
    // Another tenant sees nothing of this one's.
    assert_eq!(c.get_data("OTHER", "e1").await.unwrap(), None);

    let stats = sim.stats();
    assert_eq!((stats.requests_accepted, stats.requests_completed, stats.callbacks_dropped), (6, 6, 6));
    assert_eq!(stats.callback_attempts, 0);
    sim.stop().await;
}

#[tokio::test]
async fn business_refusals_are_asynchronous_failures() {
    let sim = sim(|_| {}).await;
    let c = client(&sim, |_| {});
    let exp = year_ahead();
    let register = |id: &str, kit: &str, pan: &str, exp: &str| request(consumer(id), vec![card(kit, pan, exp)]);

    assert_eq!(run(&c, CtpEvent::RegisterEntityAndKit, &register("e1", "k1", VISA, &exp)).await.1, "SUCCESS");
    let (o, code) = run(&c, CtpEvent::RegisterEntityAndKit, &register("e1", "k1", VISA, &exp)).await;
    assert_eq!(code, "VIDC-2000");
    assert_eq!(o.result, OutcomeResult::Failed);
    assert!(o.click_to_pay_customer_id.is_some(), "an already-enrolled answer names the consumer");
    assert_eq!(run(&c, CtpEvent::RegisterEntityAndKit, &register("e2", "k9", VISA2, "2020-01")).await.1, "VIDC-2003");
    assert_eq!(run(&c, CtpEvent::RegisterEntityAndKit, &register("e3", "k8", MASTERCARD, &exp)).await.1, "VIDC-2006");
    assert_eq!(run(&c, CtpEvent::AddKit, &request(only_id("e4"), vec![card("k7", VISA2, &exp)])).await.1, "VIDC-2001");
    assert_eq!(run(&c, CtpEvent::AddKit, &request(only_id("e1"), vec![card("k1", VISA, &exp)])).await.1, "VIDC-2004");
    assert_eq!(run(&c, CtpEvent::RemoveKit, &request(only_id("e1"), vec![PaymentInstrument::reference("nope")])).await.1, "VIDC-2005");
    sim.stop().await;

    // A card added before the registration completed fails VIDC-3000; a second
    // consumer-level operation meanwhile is refused at once with 409.
    let sim = self::sim(|s| s.callback_delay = Duration::from_millis(300)).await;
    let c = client(&sim, |_| {});
    let reg = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &register("e5", "k1", VISA, &exp)).await.unwrap();
    let add = c.submit(T, None, CtpEvent::AddKit, &request(only_id("e5"), vec![card("k2", VISA2, &exp)])).await.unwrap();
    let err = c.submit(T, None, CtpEvent::RemoveEntity, &request(only_id("e5"), vec![])).await.unwrap_err();
    assert!(matches!(&err, SaasError::Rejected { status: 409, error_code, .. } if error_code == "VIDC-3000"), "{err}");
    assert_eq!(outcome(&c, &reg.request_trace_id).await.result, OutcomeResult::Success);
    assert_eq!(outcome(&c, &add.request_trace_id).await.error.unwrap().error_code, "VIDC-3000");
    sim.stop().await;
}

#[tokio::test]
async fn a_repeated_request_id_is_one_operation() {
    let sim = sim(|_| {}).await;
    let c = client(&sim, |_| {});
    let r = request(consumer("e1"), vec![card("k1", VISA, &year_ahead())]);
    let first = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    let again = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(outcome(&c, &first.request_trace_id).await.result, OutcomeResult::Success);
    let third = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    assert_eq!(first, third, "a repeat after completion is still the same request");
    let stats = sim.stats();
    assert_eq!((stats.requests_accepted, stats.replays, stats.requests_completed), (1, 2, 1));

    // The same requestId with another body is refused, not taken for the first.
    let mut other = r.clone();
    other.consumer_information.first_name = Some("Eve".into());
    let err = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &other).await.unwrap_err();
    assert_eq!(err.error_code(), Some("VIDC-1000"), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let sim = sim(|_| {}).await;
    let c = client(&sim, |_| {});
    sim.update_faults(|f| {
        f.fail_next = 2;
        f.fail_with = FailMode::ServerError;
    });
    let r = request(consumer("e1"), vec![card("k1", VISA, &year_ahead())]);
    let accepted = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    assert_eq!(outcome(&c, &accepted.request_trace_id).await.result, OutcomeResult::Success);
    let stats = sim.stats();
    assert_eq!((stats.submits_received, stats.faults_injected, stats.requests_accepted), (3, 2, 1));

    // Past the retries: Unavailable, after exactly 1 + max_retries attempts.
    let c = client(&sim, |s| s.max_retries = 2);
    sim.update_faults(|f| f.fail_next = 10);
    let err = c.submit(T, None, CtpEvent::AddKit, &request(only_id("e1"), vec![card("k2", VISA2, &year_ahead())])).await.unwrap_err();
    assert!(matches!(&err, SaasError::Unavailable(m) if m.contains("3 attempts") && m.contains("500")), "{err}");
    assert_eq!(sim.stats().submits_received, 3 + 3);
    sim.stop().await;
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let sim = sim(|_| {}).await;
    let c = client(&sim, |_| {});
    sim.update_faults(|f| {
        f.fail_next = 1;
        f.fail_with = FailMode::TooManyRequests;
        f.retry_after_seconds = 1;
    });
    let started = Instant::now();
    let r = request(consumer("e1"), vec![card("k1", VISA, &year_ahead())]);
    c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    assert_eq!(sim.stats().submits_received, 2);

    // A Retry-After beyond backoff_max ends the retries at once.
    sim.update_faults(|f| {
        f.fail_next = 1;
        f.retry_after_seconds = 60;
    });
    let started = Instant::now();
    let err = c.submit(T, None, CtpEvent::UpdateEntity, &request(consumer("e1"), vec![])).await.unwrap_err();
    assert!(matches!(&err, SaasError::Unavailable(m) if m.contains("Retry-After")), "{err}");
    assert_eq!(sim.stats().submits_received, 3, "not retried");
    assert!(started.elapsed() < Duration::from_secs(30), "waited for the Retry-After: {:?}", started.elapsed());
    sim.stop().await;
}

/// A lost answer is retried under the same `requestId`, so the SaaS runs the operation
/// once however many attempts it took. The attempts are at least two (the first timed
/// out); how many more a loaded machine needs before one answers in time is not the point,
/// so only the operations are counted exactly.
#[tokio::test]
async fn a_timed_out_submit_is_retried_without_doubling_the_operation() {
    let sim = sim(|_| {}).await;
    let c = client(&sim, |s| {
        s.connect_timeout = Duration::from_secs(1);
        s.request_timeout = Duration::from_secs(1);
        s.max_retries = 5;
    });
    // The SaaS processed the request but its answer never came back in time.
    sim.update_faults(|f| {
        f.fail_next = 1;
        f.fail_with = FailMode::TimeoutAfterAccept;
        f.timeout_hold = Duration::from_secs(30);
    });
    let r = request(consumer("e1"), vec![card("k1", VISA, &year_ahead())]);
    let accepted = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    assert_eq!(outcome(&c, &accepted.request_trace_id).await.result, OutcomeResult::Success);
    let stats = sim.stats();
    assert_eq!(stats.requests_accepted, 1, "one operation: {stats:?}");
    assert!(stats.submits_received >= 2, "the lost answer was retried: {stats:?}");
    assert_eq!(stats.replays, stats.submits_received - 1, "every retry was answered as the first: {stats:?}");

    // The SaaS hung before processing: the retry is the one operation.
    sim.update_faults(|f| {
        f.fail_next = 1;
        f.fail_with = FailMode::Timeout;
    });
    let before = sim.stats();
    let add = request(only_id("e1"), vec![card("k2", VISA2, &year_ahead())]);
    let accepted = c.submit(T, None, CtpEvent::AddKit, &add).await.unwrap();
    assert_eq!(outcome(&c, &accepted.request_trace_id).await.result, OutcomeResult::Success);
    let stats = sim.stats();
    assert_eq!(stats.requests_accepted, before.requests_accepted + 1, "one operation: {stats:?}");
    assert!(stats.submits_received >= before.submits_received + 2, "the hung submit was retried: {stats:?}");
    assert_eq!(stats.faults_injected, 2);
    sim.stop().await;
}

#[tokio::test]
async fn validation_errors_are_answered_at_once_and_not_retried() {
    let sim = sim(|_| {}).await;
    let c = client(&sim, |_| {});
    let exp = year_ahead();
    let mut no_name = consumer("e1");
    no_name.first_name = None;
    let err = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(no_name, vec![card("k1", VISA, &exp)])).await.unwrap_err();
    assert!(
        matches!(&err, SaasError::Rejected { status: 400, error_code, message } if error_code == "VIDC-1001" && message.contains("firstName")),
        "{err}"
    );
    assert_eq!(sim.stats().submits_received, 1, "a 400 is not retried");

    let mut many = consumer("e1");
    many.emails = (0..6).map(|i| format!("j{i}@example.com")).collect();
    let err = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(many, vec![card("k1", VISA, &exp)])).await.unwrap_err();
    assert_eq!(err.error_code(), Some("VIDC-1002"));
    let mut bad_address = card("k1", VISA, &exp);
    bad_address.billing_address.as_mut().unwrap().address_line1 = Some("1 Main St #4".into());
    let err = c.submit(T, None, CtpEvent::AddKit, &request(only_id("e1"), vec![bad_address])).await.unwrap_err();
    assert_eq!(err.error_code(), Some("VIDC-1003"));
    let err = c.submit(T, None, CtpEvent::RemoveKit, &request(only_id("e1"), vec![])).await.unwrap_err();
    assert_eq!(err.error_code(), Some("VIDC-1001"));
    assert_eq!(sim.stats().submits_received, 4);
    assert_eq!(sim.stats().requests_accepted, 0);

    // A body the contract does not allow at all (here: a card number that fails Luhn).
    let raw = reqwest::Client::new()
        .post(format!("{}/addPaymentInstrument", sim.base_url()))
        .header("X-TENANT-ID", T)
        .body(r#"{"requestId":"r","consumerInformation":{"externalConsumerID":"e1"},"paymentInstruments":[{"externalInstrumentID":"k","accountNumber":"4111111111111112","expirationDate":"2099-01"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body = raw.text().await.unwrap();
    assert!(body.contains("VIDC-1003") && !body.contains("411111111111"), "{body}");
    sim.stop().await;
}

#[tokio::test]
async fn the_api_key_is_sent_and_checked() {
    let sim = sim(|s| s.api_key = Some(SecretString::from("k-123"))).await;
    let anonymous = client(&sim, |_| {});
    let err = anonymous.get_data(T, "e1").await.unwrap_err();
    assert!(matches!(&err, SaasError::Rejected { status: 401, .. }), "{err}");
    let keyed = client(&sim, |s| s.api_key = Some(SecretString::from("k-123")));
    assert_eq!(keyed.get_data(T, "e1").await.unwrap(), None);
    sim.stop().await;
}

#[tokio::test]
async fn faults_can_be_set_over_http() {
    let sim = sim(|_| {}).await;
    let http = reqwest::Client::new();
    let set = http
        .post(format!("{}/_sim/faults", sim.base_url()))
        .body(r#"{"failNext": 1, "failWith": "500", "duplicateCallbacks": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(sim.faults().duplicate_callbacks, 2);
    let bad = http.post(format!("{}/_sim/faults", sim.base_url())).body(r#"{"failNxt": 1}"#).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let c = client(&sim, |_| {});
    c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(consumer("e1"), vec![card("k1", VISA, &year_ahead())])).await.unwrap();
    let stats = http.get(format!("{}/_sim/stats", sim.base_url())).send().await.unwrap().text().await.unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!((stats["submitsReceived"].as_u64(), stats["faultsInjected"].as_u64()), (Some(2), Some(1)));
    let reset = http.delete(format!("{}/_sim/faults", sim.base_url())).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(sim.faults(), Default::default());
    sim.stop().await;
}

// --- Callbacks -------------------------------------------------------------------------

/// What the receiver saw.
enum Seen {
    Verified(String, Callback),
    Refused(String),
}

/// A tiny callback endpoint: verifies every delivery with `verifier`, answers 200 or 401,
/// and reports what it saw.
async fn receiver(verifier: WebhookVerifier, listener: Option<TcpListener>) -> (String, mpsc::UnboundedReceiver<Seen>, CancellationToken) {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let url = format!("http://{}/saas/callback", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(ctp_issuer::http::server::serve(
        ctp_issuer::http::server::ListenerSpec { name: "receiver", timeout_status: http::StatusCode::SERVICE_UNAVAILABLE },
        listener,
        None,
        HttpConfig::default(),
        stop.clone(),
        move |req| {
            let (verifier, tx) = (verifier.clone(), tx.clone());
            async move {
                let (parts, body) = ctp_issuer::http::read_body(req, 64 * 1024).await.unwrap();
                match verifier.verify(&parts.headers, body, SystemTime::now()) {
                    Ok(verified) => {
                        let callback: Callback = verified.json().unwrap();
                        let _ = tx.send(Seen::Verified(verified.id().to_owned(), callback));
                        ctp_issuer::http::empty(StatusCode::OK)
                    }
                    Err(e) => {
                        let _ = tx.send(Seen::Refused(e.to_string()));
                        ctp_issuer::http::empty(StatusCode::UNAUTHORIZED)
                    }
                }
            }
        },
    ));
    (url, rx, stop)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("a callback in time").expect("receiver alive")
}

async fn next_verified(rx: &mut mpsc::UnboundedReceiver<Seen>) -> (String, Callback) {
    match next(rx).await {
        Seen::Verified(id, cb) => (id, cb),
        Seen::Refused(e) => panic!("callback refused: {e}"),
    }
}

#[tokio::test]
async fn callbacks_arrive_signed_with_rotated_keys() {
    // The SaaS signs with the old and the new key; we know only the new one.
    let (url, mut rx, stop) = receiver(WebhookVerifier::new(vec![secret(2)], Duration::from_secs(300)), None).await;
    let sim = sim(|s| {
        s.webhook_secrets = vec![secret(1), secret(2)];
        s.callback_url = Some(url);
    })
    .await;
    let c = client(&sim, |_| {});
    let r = request(consumer("e1"), vec![card("k1", VISA, &year_ahead())]);
    let accepted = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    let (id, callback) = next_verified(&mut rx).await;
    assert!(id.starts_with("msg_"));
    assert_eq!(callback.request_trace_id, accepted.request_trace_id);
    assert_eq!(
        (callback.request_id.as_str(), callback.event, callback.tenant.as_str()),
        (r.request_id.as_str(), CtpEvent::RegisterEntityAndKit, T)
    );
    assert_eq!(callback.outcome, outcome(&c, &accepted.request_trace_id).await, "callback and /status agree");
    assert!(callback.outcome.click_to_pay_customer_id.is_some());
    sim.stop().await;
    stop.cancel();

    // A receiver that knows neither key refuses every try; the simulator gives up.
    let (url, mut rx, stop) = receiver(WebhookVerifier::new(vec![secret(3)], Duration::from_secs(300)), None).await;
    let sim = self::sim(|s| {
        s.callback_url = Some(url);
        s.callback_attempts = 2;
    })
    .await;
    let c = client(&sim, |_| {});
    c.submit(T, None, CtpEvent::RegisterEntityAndKit, &r).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(next(&mut rx).await, Seen::Refused(e) if e.contains("signature")));
    }
    until("the simulator to give up on the callback", Duration::from_secs(20), || async {
        (sim.stats().callbacks_failed > 0).then_some(())
    })
    .await;
    assert_eq!((sim.stats().callbacks_failed, sim.stats().callback_attempts), (1, 2));
    sim.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn duplicated_callbacks_share_their_webhook_id() {
    let (url, mut rx, stop) = receiver(WebhookVerifier::new(vec![secret(1)], Duration::from_secs(300)), None).await;
    let sim = sim(|s| s.callback_url = Some(url)).await;
    sim.update_faults(|f| f.duplicate_callbacks = 1);
    let c = client(&sim, |_| {});
    c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(consumer("e1"), vec![card("k1", VISA, &year_ahead())])).await.unwrap();
    let (id1, cb1) = next_verified(&mut rx).await;
    let (id2, cb2) = next_verified(&mut rx).await;
    assert_eq!((id1, cb1), (id2, cb2));
    // Both copies were delivered and no third was ever tried; the receiver saw those two.
    until("both deliveries counted", Duration::from_secs(20), || async { (sim.stats().callbacks_delivered == 2).then_some(()) }).await;
    assert_eq!(sim.stats().callback_attempts, 2);
    assert!(rx.try_recv().is_err(), "a third callback arrived");
    sim.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn reordered_callbacks_arrive_second_first() {
    let (url, mut rx, stop) = receiver(WebhookVerifier::new(vec![secret(1)], Duration::from_secs(300)), None).await;
    let sim = sim(|s| s.callback_url = Some(url)).await;
    sim.update_faults(|f| f.reorder_callbacks = true);
    let c = client(&sim, |_| {});
    let exp = year_ahead();
    let first = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(consumer("e1"), vec![card("k1", VISA, &exp)])).await.unwrap();
    outcome(&c, &first.request_trace_id).await;
    let second = c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(consumer("e2"), vec![card("k2", VISA2, &exp)])).await.unwrap();
    let (_, a) = next_verified(&mut rx).await;
    let (_, b) = next_verified(&mut rx).await;
    assert_eq!((a.request_trace_id, b.request_trace_id), (second.request_trace_id, first.request_trace_id));
    sim.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn callbacks_are_retried_while_our_endpoint_is_down_and_can_be_delayed() {
    // Our endpoint's port, bound but not listening: connections to it are refused, and it
    // stays ours until it listens (no window in which another process could take it).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let sim = sim(|s| {
        s.callback_url = Some(format!("http://127.0.0.1:{port}/saas/callback"));
        s.callback_backoff = Duration::from_millis(100);
        s.callback_attempts = 10;
    })
    .await;
    let c = client(&sim, |_| {});
    let accepted =
        c.submit(T, None, CtpEvent::RegisterEntityAndKit, &request(consumer("e1"), vec![card("k1", VISA, &year_ahead())])).await.unwrap();
    outcome(&c, &accepted.request_trace_id).await;
    until("two refused callback attempts", Duration::from_secs(20), || async { (sim.stats().callback_attempts >= 2).then_some(()) }).await;
    assert_eq!(sim.stats().callbacks_delivered, 0);
    let listener = socket.listen(64).unwrap();
    let (_, mut rx, stop) = receiver(WebhookVerifier::new(vec![secret(1)], Duration::from_secs(300)), Some(listener)).await;
    let (_, cb) = next_verified(&mut rx).await;
    assert_eq!(cb.request_trace_id, accepted.request_trace_id);
    assert!(sim.stats().callback_attempts >= 3, "{:?}", sim.stats());
    assert_eq!(sim.stats().callbacks_failed, 0);

    // An extra delay: /status says COMPLETED well before the callback comes.
    sim.update_faults(|f| f.extra_callback_delay = Duration::from_secs(2));
    let accepted = c.submit(T, None, CtpEvent::AddKit, &request(only_id("e1"), vec![card("k2", VISA3, &year_ahead())])).await.unwrap();
    outcome(&c, &accepted.request_trace_id).await;
    assert!(rx.try_recv().is_err(), "the callback came before /status said COMPLETED");
    let (_, cb) = next_verified(&mut rx).await;
    assert_eq!(cb.request_trace_id, accepted.request_trace_id);
    sim.stop().await;
    stop.cancel();
}
