//! The card-number audit: run the real binary as an operator would (import, serve, take
//! notifications good and bad, show a card on the card-details page, stop on SIGTERM),
//! then scan everything it wrote — every log line of every command, every byte of the
//! database files — for the card numbers it was fed. None may appear; nor the
//! card-details link, nor the CVV2 it showed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use ctp_issuer::ids::{Expiry, TenantId};
use ctp_issuer::pan::Pan;
use ctp_issuer::sim::visa::{NotificationBuilder, enrollment_payload, notification_path};
use ctp_issuer::widget::SoftwareCvv;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::binary::{Setup, arg};
use crate::support::cards::TR;
use crate::support::http::request;
use crate::support::until;

/// Card numbers that go in: registered, unknown, and malformed-but-plausible.
const REGISTERED: [&str; 3] = ["4111111111111111", "4012888888881881", "5555555555554444"];
const UNKNOWN: &str = "4000000000000002";
const BAD_LUHN: &str = "4111111111111112";
const IN_BAD_CSV_ROW: &str = "4999999999999990";

/// Every string value in a JSON document.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(fields) => fields.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn scan(what: &str, bytes: &[u8], found: &mut Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    for pan in REGISTERED.iter().chain([&UNKNOWN, &BAD_LUHN, &IN_BAD_CSV_ROW]) {
        if text.contains(pan) {
            found.push(format!("{what} contains card ****{}", &pan[pan.len() - 4..]));
        }
    }
}

fn scan_dir(dir: &Path, found: &mut Vec<String>, files: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, found, files);
        } else {
            *files += 1;
            scan(&path.display().to_string(), &std::fs::read(&path).unwrap(), found);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_card_number_in_any_log_line_or_database_byte() {
    let mut setup = Setup::new();
    // Everything every library logs, as an operator turning the level up to find a fault would.
    setup.set("CTP_LOG", "trace").set("CTP_LOG_FORMAT", "text");
    let mut found = Vec::new();

    // Import, with a bad row whose card must not be echoed in the error.
    let csv = setup.dir.path().join("kits.csv");
    std::fs::write(
        &csv,
        format!(
            "tenant,entity_id,kit_no,pan,expiry\nDEMO,E1,K1,{},2030-01\nDEMO,E2,K2,{},2030-01\nDEMO,E3,K3,{},2030-01\nDEMO,E4,K4,{},2030-13\nDEMO,E5,K5,{},2030-01\n",
            REGISTERED[0], REGISTERED[1], REGISTERED[2], IN_BAD_CSV_ROW, BAD_LUHN
        ),
    )
    .unwrap();
    let import = setup.run(&["kits", "import", arg(&csv)]);
    assert_eq!(import.status.code(), Some(1), "bad rows make the import exit 1");
    let import_text = String::from_utf8_lossy(&import.stdout);
    assert!(import_text.contains("3 inserted"), "{import_text}");
    assert!(String::from_utf8_lossy(&import.stderr).contains("line 5"), "the bad rows are reported by line");
    scan("kits import stdout", &import.stdout, &mut found);
    scan("kits import stderr", &import.stderr, &mut found);

    let token = setup.token("DEMO");
    setup.set("CTP_LOG_FORMAT", "json");
    // The tenant's card verification key, for the card-details page.
    std::fs::write(setup.keys().join("cvk/DEMO.key"), "00112233445566778899AABBCCDDEEFF").unwrap();
    let cvv = SoftwareCvv::load(&setup.keys())
        .unwrap()
        .generate(&TenantId::parse("DEMO").unwrap(), &Pan::parse(REGISTERED[0]).unwrap(), Expiry::parse("2030-01").unwrap())
        .unwrap()
        .expose_for_display()
        .to_owned();
    let server = setup.serve().await;
    let api = Api::with_token(server.internal, token, "DEMO");
    let call = |method: Method, path: &'static str, body: Value| {
        let api = api.clone();
        async move {
            let reply = api.send(method, path, "DEMO", &[], &body).await;
            (reply.status, reply.text())
        }
    };

    let keys = setup.keys();
    let rsa = NotificationBuilder::rsa_from_dir(&keys).unwrap();
    let shared = NotificationBuilder::shared_from_dir(&keys, true).unwrap();
    let path = notification_path(TR);
    let post = |body: String| {
        let path = path.clone();
        let public = server.public;
        async move { request(public, Method::POST, &path, &[], body).await.status }
    };
    let payload = |pan: &str| enrollment_payload(pan, "Jane", "Doe", "jane@example.com", "+1 415 555 0100");
    for pan in REGISTERED {
        let body = rsa.body(&payload(pan), SystemTime::now()).unwrap();
        assert_eq!(post(body.clone()).await, StatusCode::OK);
        assert_eq!(post(body).await, StatusCode::OK, "redelivery");
    }
    assert_eq!(post(shared.body(&payload(UNKNOWN), SystemTime::now()).unwrap()).await, StatusCode::NOT_FOUND);
    assert_eq!(post(rsa.body(&payload(BAD_LUHN), SystemTime::now()).unwrap()).await, StatusCode::BAD_REQUEST);
    // The card as a JSON number, and inside a field of the wrong type.
    let odd = json!({"clientInformation": {"firstName": REGISTERED[0]}, "enrollment": {"tsp": "V", "paymentInstrument": {"accountNumber": [REGISTERED[1]]}}});
    assert_eq!(post(rsa.body(&odd, SystemTime::now()).unwrap()).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        post(rsa.body(&payload(REGISTERED[2]), SystemTime::now() - Duration::from_secs(86_400)).unwrap()).await,
        StatusCode::UNAUTHORIZED
    );

    // The enrollment loop: the card goes to the SaaS simulator (in-process, so its logs are
    // ours too) and comes back as statuses.
    let profile = json!({"firstName": "Jane", "lastName": "Doe", "emails": ["jane@example.com"], "phones": ["+14155550100"],
        "locale": "en_US", "countryCode": "USA", "billingAddress": {"addressLine1": "1 Main Street", "city": "Springfield", "postalCode": "12345", "country": "USA"}});
    let (status, _) = call(Method::PUT, "/registry/v1/entities/E1", profile).await;
    assert!(status.is_success());
    let (status, body) = call(Method::PUT, "/registry/v1/entities/E1/kits/K9", json!({"pan": REGISTERED[2]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the card is K3's: {body}");
    scan("the refusal of a card another kit holds", body.as_bytes(), &mut found);
    let (status, body) = call(Method::PUT, "/registry/v1/entities/E1/kits/K1", json!({"pan": REGISTERED[0], "expiry": "2030-01"})).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = call(Method::POST, "/click-to-pay/v1/registerEntityAndKit", json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until("E1 and K1 ACTIVE", Duration::from_secs(20), || async {
        let (_, body) = call(Method::GET, "/registry/v1/entities/E1", Value::Null).await;
        let entity: Value = serde_json::from_str(&body).unwrap();
        (entity["result"]["ctpStatus"] == "ACTIVE" && entity["result"]["kits"][0]["ctpStatus"] == "ACTIVE").then_some(())
    })
    .await;
    let (_, body) = call(Method::POST, "/click-to-pay/v1/fetchEntityDetails", json!({"entityId": "E1"})).await;
    assert!(body.contains("\"last4\":\"1111\""), "{body}");
    scan("internal API answers", body.as_bytes(), &mut found);

    // The card-details page: a link for K1, a tampered copy, a press without the CSRF
    // cookie, the press that shows the card (to the cardholder: that is the page's job),
    // and a second use.
    let (status, body) = call(Method::POST, "/registry/v1/entities/E1/kits/K1/detailsUrl", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    scan("the detailsUrl answer", body.as_bytes(), &mut found);
    let url = serde_json::from_str::<Value>(&body).unwrap()["result"]["url"].as_str().unwrap().to_owned();
    let link_token = url.rsplit_once("t=").unwrap().1.to_owned();
    let widget = server.widget.expect("the widget listener");
    let tampered = format!("/card-details?t={}", link_token.replace('.', ".A"));
    assert_eq!(request(widget, Method::GET, &tampered, &[], "").await.status, StatusCode::GONE);
    let page = request(widget, Method::GET, &format!("/card-details?t={link_token}"), &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    scan("the card-details landing page", &page.body, &mut found);
    let cookie = page.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let text = page.text();
    let marker = "name=\"csrf\" value=\"";
    let csrf_at = text.find(marker).unwrap() + marker.len();
    let csrf = &text[csrf_at..csrf_at + text[csrf_at..].find('"').unwrap()];
    let form = form_urlencoded::Serializer::new(String::new()).append_pair("t", &link_token).append_pair("csrf", csrf).finish();
    let form_type = ("content-type", "application/x-www-form-urlencoded");
    let no_cookie = request(widget, Method::POST, "/card-details", &[form_type], form.clone()).await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN, "a press without the CSRF cookie is refused");
    let with_cookie = [form_type, ("cookie", cookie.as_str())];
    let shown = request(widget, Method::POST, "/card-details", &with_cookie, form.clone()).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.text().contains("<span>4111</span> <span>1111</span>") && shown.text().contains(&format!("<dd>{cvv}</dd>")));
    let again = request(widget, Method::POST, "/card-details", &with_cookie, form).await;
    assert_eq!(again.status, StatusCode::GONE);
    scan("the card-details refusal", &again.body, &mut found);
    let metrics = server.metrics().await;
    for (series, value) in [
        ("ctp_widget_links_issued_total", 1.0),
        ("ctp_widget_links_used_total", 1.0),
        ("ctp_widget_pages_shown_total{page=\"landing\"}", 2.0),
        ("ctp_widget_refusals_total{reason=\"invalid_token\",step=\"show\"}", 1.0),
        ("ctp_widget_refusals_total{reason=\"csrf\",step=\"reveal\"}", 1.0),
        ("ctp_widget_refusals_total{reason=\"gone\",step=\"reveal\"}", 1.0),
    ] {
        assert_eq!(metrics.get(series), value, "{series}\n{}", metrics.text);
    }

    // The relay has published the three attempts (on the log publisher: to stdout).
    server.metric_reaches("ctp_outbox_published_total{event_type=\"CTP_ENROLLMENT_ATTEMPT\"}", 3.0).await;
    scan("/metrics", server.get_admin("/metrics").await.text().as_bytes(), &mut found);

    // SIGTERM: a graceful stop with exit code 0.
    let exited = server.stop().await;
    assert!(exited.status.success(), "serve did not exit cleanly: {:?}", exited.status);
    assert!(exited.stderr.contains("enrollment attempt recorded"), "the log is not what we think it is");
    assert!(exited.stderr.contains("****1111"), "the masked card should be there");
    // The log publisher printed every event, without the consumers' contact details.
    assert_eq!(exited.stdout.matches("\"eventType\":\"CTP_ENROLLMENT_ATTEMPT\"").count(), 3, "{}", exited.stdout);
    for personal in ["jane@example.com", "415 555 0100", "\"Jane\"", "\"Doe\""] {
        assert!(!exited.stdout.contains(personal), "the log publisher printed {personal}: {}", exited.stdout);
    }
    scan("serve stdout", exited.stdout.as_bytes(), &mut found);
    scan("serve stderr", exited.stderr.as_bytes(), &mut found);
    assert!(exited.stderr.contains("card details shown"), "the page's log line is not what we think it is");
    for (what, output) in [("stdout", &exited.stdout), ("stderr", &exited.stderr)] {
        if output.contains(&link_token) {
            found.push(format!("serve {what} contains the card-details link"));
        }
        // A CVV2 is three digits, so it is looked for as a whole logged value.
        let lines = output.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
        if lines.flat_map(|l| strings(&l)).any(|v| v == cvv) {
            found.push(format!("serve {what} logs the CVV2 as a value"));
        }
    }

    setup.set("CTP_LOG_FORMAT", "text");
    let attempts = setup.run(&["attempts", "list"]);
    assert!(String::from_utf8_lossy(&attempts.stdout).contains("card=****4444"));
    scan("attempts list", &attempts.stdout, &mut found);
    scan("attempts list stderr", &attempts.stderr, &mut found);

    let mut files = 0;
    scan_dir(&setup.dir.path().join("db"), &mut found, &mut files);
    let mut db_bytes = Vec::new();
    for entry in std::fs::read_dir(setup.dir.path().join("db")).unwrap() {
        db_bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    if String::from_utf8_lossy(&db_bytes).contains(&link_token[link_token.len() - 24..]) {
        found.push("the database contains the card-details link".into());
    }
    assert!(files >= 1, "no database file was scanned");
    assert!(found.is_empty(), "card numbers leaked:\n{}", found.join("\n"));
}
