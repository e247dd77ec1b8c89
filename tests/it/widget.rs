//! The secure card-details page over HTTP, on SQLite and PostgreSQL: the internal API
//! issues a one-time link (`POST …/kits/{kitNo}/detailsUrl`), the cardholder opens it on
//! the widget listener (GET: one button, or the date-of-birth form, and a CSRF cookie)
//! and presses the button (POST: the card number, expiry and CVV2, once). A second use,
//! an expired link and a tampered one get the same 410 page; a wrong date of birth three
//! times burns the link; another tenant's kit is not found; of concurrent presses exactly
//! one shows the details. Neither the card number nor the link is ever in the database.
//! And once in a real browser, headless Chromium at phone size.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ctp_issuer::config::{Config, TenantConfig, TenantsConfig};
use ctp_issuer::ids::{Expiry, TenantId};
use ctp_issuer::pan::Pan;
use ctp_issuer::widget::SoftwareCvv;
use futures_util::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::support::api::{Api, profile};
use crate::support::cards::{CARD_1, CARD_2};
use crate::support::dump::Dump;
use crate::support::http::{Reply, request, request_tls};
use crate::support::webdriver::{Browser, Viewport, png_size};
use crate::support::{TestDb, TestServer, dev_keys, repo, until};

const TENANT: &str = "DEMOBANK";
const GONE_TITLE: &str = "This link has expired or was already used";
const DOB: &str = "1985-07-04";

/// `POST /registry/v1/entities/{entity}/kits/{kit}/detailsUrl`.
async fn details_url(api: &Api, entity: &str, kit: &str) -> Reply {
    let path = format!("/registry/v1/entities/{entity}/kits/{kit}/detailsUrl");
    api.send(Method::POST, &path, &api.tenant, &[], &Value::Null).await
}

/// A link for `kit` of `entity`, asserting the answer's shape: `(url, expiresAt)`.
async fn link(api: &Api, entity: &str, kit: &str) -> String {
    let reply = details_url(api, entity, kit).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!((&body["exception"], &body["pagination"]), (&Value::Null, &Value::Null), "{body}");
    let expires_at = body["result"]["expiresAt"].as_str().unwrap();
    let expires = humantime_serde::re::humantime::parse_rfc3339(expires_at).unwrap();
    let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left > Duration::from_secs(200) && left <= Duration::from_secs(300), "expiresAt {expires_at} is the default 5 minutes away");
    body["result"]["url"].as_str().unwrap().to_owned()
}

/// The path and query of a link, as sent to the widget listener.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").expect("an absolute link").1;
    &rest[rest.find('/').unwrap()..]
}

/// What a browser keeps from a first page: the CSRF cookie and the form's hidden fields.
#[derive(Debug, Clone)]
struct Visit {
    cookie: String,
    token: String,
    csrf: String,
}

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in {body}")) + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

/// GET the link (a first page, 200).
async fn open(widget: SocketAddr, url: &str) -> (Reply, Visit) {
    let page = request(widget, Method::GET, path_of(url), &[], "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let body = page.text();
    let set_cookie = header(&page, "set-cookie");
    let visit = Visit { cookie: set_cookie.split(';').next().unwrap().to_owned(), token: hidden(&body, "t"), csrf: hidden(&body, "csrf") };
    (page, visit)
}

/// The form a browser posts from `visit`, with the date of birth typed into its three
/// fields when given (`YYYY-MM-DD`).
fn form(visit: &Visit, dob: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("t", &visit.token).append_pair("csrf", &visit.csrf);
    if let Some(dob) = dob {
        let parts: Vec<&str> = dob.split('-').collect();
        form.append_pair("dob-day", parts[2]).append_pair("dob-month", parts[1]).append_pair("dob-year", parts[0]);
    }
    form.finish()
}

/// Presses the button (POST), with the cookie.
async fn press(widget: SocketAddr, visit: &Visit, dob: Option<&str>) -> Reply {
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("cookie", visit.cookie.as_str())];
    request(widget, Method::POST, "/card-details", &headers, form(visit, dob)).await
}

/// The CVV2 the page must show for `pan` expiring 2030-01, with the tenant's CVK.
fn cvv_of(server: &TestServer, pan: &str) -> String {
    let cvv = SoftwareCvv::load(server.keys.path()).unwrap();
    let tenant = TenantId::parse(TENANT).unwrap();
    cvv.generate(&tenant, &Pan::parse(pan).unwrap(), Expiry::parse("2030-01").unwrap()).unwrap().expose_for_display().to_owned()
}

fn assert_details(server: &TestServer, reply: &Reply, pan: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.text();
    let groups: Vec<String> = pan.as_bytes().chunks(4).map(|g| format!("<span>{}</span>", std::str::from_utf8(g).unwrap())).collect();
    assert!(body.contains(&format!("<dd class=\"pan\">{}</dd>", groups.join(" "))), "{body}");
    assert!(body.contains("<dd>01/30</dd>"), "the expiry as MM/YY: {body}");
    assert!(body.contains(&format!("<dd>{}</dd>", cvv_of(server, pan))), "the CVV2: {body}");
    assert!(body.contains("<dd>ALEX MILLER</dd>"), "the name on the card: {body}");
    assert!(header(reply, "set-cookie").contains("Max-Age=0"), "the CSRF cookie is cleared");
}

fn assert_gone(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::GONE, "{}", reply.text());
    assert!(reply.text().contains(GONE_TITLE), "{}", reply.text());
    assert_eq!(header(reply, "cache-control"), "no-store");
}

async fn start(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> (TestServer, Api, SocketAddr) {
    start_with_keys(db, dev_keys(), adjust).await
}

async fn start_with_keys(db: &TestDb, keys: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> (TestServer, Api, SocketAddr) {
    let server = TestServer::start_with_keys(db, keys, adjust).await;
    let api = server.api(&[TENANT]);
    api.put_customer("ENT-1", &[("KIT-1", CARD_1)]).await;
    let widget = server.widget.expect("the widget listener is on by default");
    (server, api, widget)
}

db_test!(a_link_shows_the_card_once, |db: TestDb| async move {
    let (server, api, widget) = start(&db, |_| {}).await;
    let url = link(&api, "ENT-1", "KIT-1").await;
    assert!(url.starts_with(&format!("http://{widget}/card-details?t=v1.")), "{url}");
    assert!(!url.contains("KIT-1") && !url.contains("ENT-1") && !url.contains(CARD_1), "the token hides what it names: {url}");

    // The first page: one button, the security headers, a CSRF cookie a browser keeps on
    // plain http (no Secure, so no __Host- prefix), and nothing of the card.
    let (page, visit) = open(widget, &url).await;
    let body = page.text();
    assert!(body.contains("<button type=\"submit\">Show card details</button>"), "{body}");
    assert!(!body.contains(CARD_1) && !body.contains("1111"), "the first page shows nothing of the card");
    assert_eq!(header(&page, "cache-control"), "no-store");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    let csp = header(&page, "content-security-policy");
    assert!(csp.starts_with("default-src 'none'; style-src 'sha256-") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(visit.cookie.starts_with("ctp-widget-csrf="), "{}", visit.cookie);
    let set_cookie = header(&page, "set-cookie");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict") && !set_cookie.contains("Secure"), "{set_cookie}");
    // Looking again uses nothing up (a messaging app's link preview).
    open(widget, &url).await;

    let shown = press(widget, &visit, None).await;
    assert_details(&server, &shown, CARD_1);
    assert_eq!(header(&shown, "cache-control"), "no-store");
    assert!(header(&shown, "content-security-policy").contains("script-src 'sha256-"), "the copy button's script, by hash");

    // Second use, by the same press or a fresh visit: the one 410 page.
    let again = press(widget, &visit, None).await;
    assert_gone(&again);
    let reopened = request(widget, Method::GET, path_of(&url), &[], "").await;
    assert_gone(&reopened);
    assert_eq!(again.body, reopened.body, "the same page, byte for byte");

    // The database knows the link only by its keyed hash, used; never the token or the card.
    let dump = Dump::of(&db).await;
    let links = dump.rows("widget_link");
    assert_eq!(links.len(), 1);
    assert!(links[0].iter().flatten().any(|v| v.trim_matches('\'').starts_with("v1:")), "{links:?}");
    for secret in [visit.token.as_str(), url.as_str(), CARD_1] {
        assert!(dump.find(secret).is_empty(), "{} is stored: {:?}", &secret[..8], dump.find(secret));
    }
    server.stop().await;
});

db_test!(expired_and_tampered_links_get_the_same_410, |db: TestDb| async move {
    let (server, api, widget) = start(&db, |c| c.widget.link_ttl = Duration::from_secs(2)).await;
    let url_of = |reply: Reply| reply.json()["result"]["url"].as_str().unwrap().to_owned();
    let (_, used_visit) = open(widget, &url_of(details_url(&api, "ENT-1", "KIT-1").await)).await;
    assert_eq!(press(widget, &used_visit, None).await.status, StatusCode::OK);
    let used = press(widget, &used_visit, None).await;
    assert_gone(&used);

    // Tampered: one character of the token changed, in the URL and in the form.
    let url = url_of(details_url(&api, "ENT-1", "KIT-1").await);
    let mut chars: Vec<char> = url.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let tampered_get = request(widget, Method::GET, path_of(&tampered), &[], "").await;
    assert_gone(&tampered_get);
    let (_, visit) = open(widget, &url).await;
    let forged = Visit { token: tampered.rsplit_once("t=").unwrap().1.to_owned(), ..visit.clone() };
    assert_gone(&press(widget, &forged, None).await);
    // No token, or garbage, or a form too big to read.
    assert_gone(&request(widget, Method::GET, "/card-details", &[], "").await);
    assert_gone(&request(widget, Method::GET, "/card-details?t=%3Cscript%3E", &[], "").await);
    let huge = vec![b'a'; 8192];
    assert_gone(&request(widget, Method::POST, "/card-details", &[("content-type", "application/x-www-form-urlencoded")], huge).await);

    // Expired: the link lives 2 s; once past, the page and the press are refused.
    let expired = until("the link to expire", Duration::from_secs(10), || async {
        let reply = request(widget, Method::GET, path_of(&url), &[], "").await;
        (reply.status == StatusCode::GONE).then_some(reply)
    })
    .await;
    assert_gone(&expired);
    assert_gone(&press(widget, &visit, None).await);

    // Every refusal is the same bytes: nothing tells which it was.
    for other in [&tampered_get, &expired] {
        assert_eq!(other.body, used.body);
    }
    server.stop().await;
});

db_test!(a_date_of_birth_guards_the_link_and_three_wrong_burn_it, |db: TestDb| async move {
    let (server, api, widget) = start(&db, |c| c.widget.require_dob = true).await;
    // A customer without a date of birth gets no link.
    let refused = details_url(&api, "ENT-1", "KIT-1").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "Y100".into()));
    assert!(refused.json()["exception"]["detailMessage"].as_str().unwrap().contains("dateOfBirth"), "{}", refused.text());
    // The profile's dateOfBirth: checked, stored, shown.
    let mut with_dob = profile("alex@example.com");
    with_dob["dateOfBirth"] = json!("1985-02-30");
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/ENT-1", with_dob.clone()).await;
    assert_eq!((status, body["exception"]["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("Y100")));
    assert!(body["exception"]["detailMessage"].as_str().unwrap().starts_with("dateOfBirth:"), "{body}");
    with_dob["dateOfBirth"] = json!(DOB);
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/ENT-1", with_dob).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.entity("ENT-1").await["profile"]["dateOfBirth"], DOB);

    // The right date, after a wrong one and an unreadable one.
    let url = link(&api, "ENT-1", "KIT-1").await;
    let (page, visit) = open(widget, &url).await;
    let body = page.text();
    assert!(body.contains("<legend>Date of birth</legend>") && body.contains("You have 3 tries left"), "{body}");
    assert!(!body.contains(DOB) && !body.contains("1985"), "the page does not give the date away");
    let unreadable = press(widget, &visit, Some("1985-02-30")).await;
    assert!(unreadable.status == StatusCode::OK && unreadable.text().contains("You have 3 tries left"), "not a try");
    let wrong = press(widget, &visit, Some("1985-07-05")).await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(wrong.text().contains("does not match") && wrong.text().contains("You have 2 tries left"), "{}", wrong.text());
    assert!(!wrong.text().contains("1111"));
    assert_details(&server, &press(widget, &visit, Some(DOB)).await, CARD_1);

    // Three wrong dates burn the link: the right one after is refused.
    let url = link(&api, "ENT-1", "KIT-1").await;
    let (_, visit) = open(widget, &url).await;
    for (date, left) in [("1985-07-03", "2 tries"), ("1984-07-04", "1 try")] {
        let reply = press(widget, &visit, Some(date)).await;
        assert!(reply.text().contains(&format!("You have {left} left")), "{}", reply.text());
    }
    assert_gone(&press(widget, &visit, Some("1958-04-07")).await);
    assert_gone(&press(widget, &visit, Some(DOB)).await);
    assert_gone(&request(widget, Method::GET, path_of(&url), &[], "").await);
    server.stop().await;
});

db_test!(another_tenants_or_entitys_kit_is_not_found, |db: TestDb| async move {
    let bank = |id: &str, bins: &[&str], name: Option<&str>| TenantConfig {
        id: id.into(),
        bins: bins.iter().map(|b| b.parse().unwrap()).collect(),
        display_name: name.map(str::to_owned),
        accent_color: name.map(|_| "#0b6e4f".to_owned()),
        d1_issuer_id: None,
    };
    // The other bank has a card verification key of its own.
    let keys = dev_keys();
    std::fs::write(keys.path().join("cvk/OTHERBANK.key"), "00112233445566778899AABBCCDDEEFF").unwrap();
    let (server, api, widget) = start_with_keys(&db, keys, |c| {
        c.tenants = TenantsConfig(vec![bank(TENANT, &["411111"], Some("Demo & Co Bank")), bank("OTHERBANK", &["401288"], None)]);
    })
    .await;
    let other = server.api(&["OTHERBANK"]);
    other.put_customer("ENT-2", &[("KIT-2", CARD_2)]).await;
    api.put_customer("ENT-3", &[]).await;

    let code = |reply: Reply| (reply.status, reply.code());
    let not_found = |code: &str| (StatusCode::NOT_FOUND, code.to_owned());
    // Another tenant's customer and card, and our card under another tenant's name.
    assert_eq!(code(details_url(&api, "ENT-2", "KIT-2").await), not_found("Y104"));
    assert_eq!(code(details_url(&other, "ENT-1", "KIT-1").await), not_found("Y104"));
    // Our card under another of our customers, and a kit nobody has.
    assert_eq!(code(details_url(&api, "ENT-3", "KIT-1").await), not_found("Y105"));
    assert_eq!(code(details_url(&api, "ENT-1", "KIT-9").await), not_found("Y105"));
    assert_eq!(code(details_url(&api, "ENT-9", "KIT-1").await), not_found("Y104"));
    // A body, if any, asks for nothing; a bad identifier is named.
    let path = "/registry/v1/entities/ENT-1/kits/KIT-1/detailsUrl";
    let reply = api.send(Method::POST, path, TENANT, &[], &json!({"kitNo": "KIT-2"})).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "Y100".into()));
    let reply = api.send(Method::POST, "/registry/v1/entities/ENT-1/kits/K%20I/detailsUrl", TENANT, &[], &Value::Null).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "Y100".into()));
    let reply = api.send(Method::GET, path, TENANT, &[], &Value::Null).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::METHOD_NOT_ALLOWED, "Y405".into()));
    // No link was recorded for any refusal.
    assert!(Dump::of(&db).await.rows("widget_link").is_empty());

    // Each tenant's own works, with its branding (escaped), and shows its own card.
    let (page, visit) = open(widget, &link(&api, "ENT-1", "KIT-1").await).await;
    assert!(page.text().contains("<p class=\"brand\">Demo &amp; Co Bank</p>"), "{}", page.text());
    assert!(page.text().contains("--accent:#0b6e4f;--on-accent:#ffffff"), "{}", page.text());
    assert_details(&server, &press(widget, &visit, None).await, CARD_1);
    let (page, visit) = open(widget, &link(&other, "ENT-2", "KIT-2").await).await;
    assert!(!page.text().contains("class=\"brand\""), "no branding configured");
    let shown = press(widget, &visit, None).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert!(shown.text().contains("<span>4012</span> <span>8888</span> <span>8888</span> <span>1881</span>"));
    server.stop().await;
});

db_test!(of_sixteen_simultaneous_presses_exactly_one_shows_the_card, |db: TestDb| async move {
    let (server, api, widget) = start(&db, |_| {}).await;
    let (_, visit) = open(widget, &link(&api, "ENT-1", "KIT-1").await).await;
    let replies = join_all((0..16).map(|_| press(widget, &visit, None))).await;
    let shown: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(shown.len(), 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_details(&server, shown[0], CARD_1);
    assert!(replies.iter().filter(|r| r.status != StatusCode::OK).all(|r| r.status == StatusCode::GONE));
    server.stop().await;
});

db_test!(links_need_an_expiry_and_are_never_replayed, |db: TestDb| async move {
    let (server, api, widget) = start(&db, |_| {}).await;
    // A kit without an expiry: the CVV2 cannot be computed, so no link.
    let (status, body) = api.call(Method::PUT, "/registry/v1/entities/ENT-1/kits/KIT-2", json!({"pan": CARD_2})).await;
    assert!(status.is_success(), "{body}");
    let reply = details_url(&api, "ENT-1", "KIT-2").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "Y100".into()));
    assert!(reply.text().contains("expiry"), "{}", reply.text());
    // A tenant without a card verification key gets no link that could only fail: our
    // failure, said as one.
    let keyless = server.api(&["NOCVKBANK"]);
    keyless.put_customer("ENT-9", &[("KIT-9", "4000056655665556")]).await;
    let reply = details_url(&keyless, "ENT-9", "KIT-9").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::INTERNAL_SERVER_ERROR, "Y500".into()), "{}", reply.text());
    // An Idempotency-Key does not replay a link (that would keep it in the database): each
    // call is a new link, and the key is not even claimed.
    let path = "/registry/v1/entities/ENT-1/kits/KIT-1/detailsUrl";
    let key = [("idempotency-key", "show-card-1")];
    let first = api.send(Method::POST, path, TENANT, &key, &Value::Null).await;
    let second = api.send(Method::POST, path, TENANT, &key, &Value::Null).await;
    assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::OK));
    assert!(second.headers.get("idempotent-replayed").is_none());
    assert_ne!(first.json()["result"]["url"], second.json()["result"]["url"]);
    let dump = Dump::of(&db).await;
    assert!(dump.rows("idempotency_request").is_empty(), "{:?}", dump.rows("idempotency_request"));
    assert_eq!(dump.rows("widget_link").len(), 2);
    // Both links work, each once.
    for reply in [first, second] {
        let (_, visit) = open(widget, reply.json()["result"]["url"].as_str().unwrap()).await;
        assert_details(&server, &press(widget, &visit, None).await, CARD_1);
    }
    // The widget listener serves the page and nothing else.
    let other_path = request(widget, Method::GET, "/metrics", &[], "").await;
    assert_eq!(other_path.status, StatusCode::NOT_FOUND);
    let put = request(widget, Method::PUT, "/card-details", &[], "").await;
    assert_eq!((put.status, header(&put, "allow")), (StatusCode::METHOD_NOT_ALLOWED, "GET, POST"));
    server.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_cookie_is_host_prefixed_and_secure() {
    let tls = repo().join("fixtures/tls");
    let db = TestDb::sqlite();
    let (server, api, widget) = start(&db, |c| {
        c.widget.tls_cert = Some(tls.join("server.pem"));
        c.widget.tls_key = Some(tls.join("server.key"));
        c.widget.public_url = Some("https://cards.bank.example/card-details".into());
    })
    .await;
    let url = link(&api, "ENT-1", "KIT-1").await;
    assert!(url.starts_with("https://cards.bank.example/card-details?t=v1."), "links name the public address: {url}");
    let ca = tls.join("ca.pem");
    let page = request_tls(widget, "localhost", &ca, Method::GET, path_of(&url), &[], "").await.unwrap();
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let set_cookie = header(&page, "set-cookie");
    assert!(set_cookie.starts_with("__Host-ctp-widget-csrf=") && set_cookie.contains("; Secure;"), "{set_cookie}");
    let body = page.text();
    let visit = Visit { cookie: set_cookie.split(';').next().unwrap().to_owned(), token: hidden(&body, "t"), csrf: hidden(&body, "csrf") };
    // The plain-http cookie's name is not ours here.
    let plain_cookie = visit.cookie.replace("__Host-ctp-widget-csrf", "ctp-widget-csrf");
    let form_type = ("content-type", "application/x-www-form-urlencoded");
    let press_tls = |cookie: String| {
        let (ca, form) = (ca.clone(), form(&visit, None));
        async move {
            request_tls(widget, "localhost", &ca, Method::POST, "/card-details", &[form_type, ("cookie", &cookie)], form).await.unwrap()
        }
    };
    assert_eq!(press_tls(plain_cookie).await.status, StatusCode::FORBIDDEN);
    assert_details(&server, &press_tls(visit.cookie.clone()).await, CARD_1);
    // Plain HTTP on the TLS port gets nowhere.
    assert!(crate::support::http::try_request(widget, Method::GET, path_of(&url), &[], "").await.is_err());
    server.stop().await;
}

db_test!(switched_off_there_is_no_page_and_no_link, |db: TestDb| async move {
    let server = TestServer::start(&db, |c| c.widget.enabled = false).await;
    assert!(server.widget.is_none(), "no widget listener is bound");
    let api = server.api(&[TENANT]);
    api.put_customer("ENT-1", &[("KIT-1", CARD_1)]).await;
    let reply = details_url(&api, "ENT-1", "KIT-1").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "Y404".into()));
    server.stop().await;
});

/// The page in a real browser, headless Chromium at phone size (375 CSS pixels wide, as an
/// iPhone's web view): the stylesheet and the copy button's script run under the CSP, the
/// CSRF cookie of a plain-http page comes back, the press shows the number, expiry and
/// CVV2, nothing scrolls sideways; a screenshot is saved (`CTP_WIDGET_SCREENSHOT=PATH`
/// writes it there too, which is how `docs/card-details-375.png` is made). Then the same
/// at desktop size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_phone_sized_browser() {
    let Some(phone) = Browser::start(Viewport { width: 375, height: 812, pixel_ratio: 2 }).await else { return };
    let db = TestDb::sqlite();
    let (server, api, _) = start(&db, |c| {
        c.tenants = TenantsConfig(vec![TenantConfig {
            id: TENANT.into(),
            bins: vec!["411111".parse().unwrap()],
            display_name: Some("Demo Bank".into()),
            accent_color: None,
            d1_issuer_id: None,
        }]);
    })
    .await;
    let url = link(&api, "ENT-1", "KIT-1").await;
    phone.go(&url).await;
    assert_eq!(phone.title().await, "Your card details – Demo Bank");
    // The one inline stylesheet is allowed by its hash: the button has the accent colour.
    let background = phone.run("return getComputedStyle(document.querySelector('button')).backgroundColor").await;
    assert_eq!(background, "rgb(31, 79, 184)", "the page's style did not apply under its CSP");
    phone.find("button[type=submit]").await.click().await;
    until("the details page", Duration::from_secs(20), || async {
        (phone.run("return document.querySelector('.pan') !== null").await == true).then_some(())
    })
    .await;
    // What the cardholder reads: the number in groups of four, MM/YY, the CVV2, the name.
    assert_eq!(phone.find(".pan").await.text().await, "4111 1111 1111 1111");
    let values = phone.run("return Array.from(document.querySelectorAll('dd')).map(function (e) { return e.textContent; })").await;
    assert_eq!(values, json!(["ALEX MILLER", "4111 1111 1111 1111", "01/30", cvv_of(&server, CARD_1)]));
    let groups = phone.run("return document.querySelectorAll('.pan span').length").await;
    assert_eq!(groups, 4, "a screen reader reads the number as four groups");
    // The copy button's script ran (it shows the button), under `script-src` by hash.
    assert!(phone.find("#copy").await.displayed().await, "the copy button is shown only when its script runs");
    let width = phone.run("return document.documentElement.scrollWidth").await;
    assert!(width.as_u64().unwrap() <= 375, "the page scrolls sideways at 375 px: {width}");
    let png = phone.screenshot().await;
    assert_eq!(png_size(&png), (750, 1624), "a 375 × 812 viewport at 2 device pixels per CSS pixel");
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join("card-details-375.png");
    std::fs::write(&saved, &png).unwrap();
    if let Ok(path) = std::env::var("CTP_WIDGET_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }
    eprintln!("screenshot: {}", saved.display());
    // The link was used: opening it again shows the one refusal.
    phone.go(&url).await;
    assert_eq!(phone.title().await, GONE_TITLE);
    phone.quit().await;

    // At desktop size the card sits in a column of at most 32rem.
    let Some(desktop) = Browser::start(Viewport { width: 1280, height: 800, pixel_ratio: 1 }).await else { return };
    desktop.go(&link(&api, "ENT-1", "KIT-1").await).await;
    desktop.find("button[type=submit]").await.click().await;
    until("the details page", Duration::from_secs(20), || async {
        (desktop.run("return document.querySelector('.pan') !== null").await == true).then_some(())
    })
    .await;
    let main = desktop.run("return document.querySelector('main').getBoundingClientRect().width").await;
    assert!(main.as_f64().unwrap() <= 512.0, "main is {main} px wide");
    assert_eq!(desktop.find(".pan").await.text().await, "4111 1111 1111 1111");
    desktop.quit().await;
    server.stop().await;
}
