//! Writes the committed seed corpora (`fuzz/corpus/<target>/`) and dictionaries
//! (`fuzz/dicts/`) from the repository's own fixtures, development keys and documented
//! examples:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seed_corpora
//!
//! Notifications made here are signed and encrypted afresh (random IVs, keys and PSS
//! salts), so every run changes their bytes but not their meaning. Files this does not
//! write are left alone: inputs a campaign found and someone kept stay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ctp_issuer::sim::visa::{ContentEncryption, IatForm, NotificationBuilder, enrollment_payload};
use ctp_issuer::webhook::{load_secrets_dir, sign};
use ctp_issuer_fuzz::{AuthCase, ConfigCase, NOW_SECS, WebhookCase, keys_dir, now, repo, visa_ring};
use serde_json::{Value, json};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

/// The card kits of `fixtures/kits.csv`: `(pan, first name, last name, email)`.
fn kits() -> Vec<(String, String, String, String)> {
    let mut reader = csv::Reader::from_path(repo().join("fixtures/kits.csv")).expect("fixtures/kits.csv");
    reader
        .records()
        .map(|r| {
            let r = r.expect("a kit row");
            (r[3].to_owned(), r[5].to_owned(), r[6].to_owned(), r[7].to_owned())
        })
        .collect()
}

/// `(file stem, body bytes)` of every `fixtures/notifications/*.json`.
fn fixture_bodies() -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fixtures/notifications");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("fixtures/notifications").map(|e| e.expect("a fixture").path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let fixture: Value = serde_json::from_slice(&std::fs::read(&path).expect("a fixture")).expect("fixture JSON");
            let body = match (&fixture["body"], &fixture["rawBody"]) {
                (Value::Null, Value::String(raw)) => raw.as_bytes().to_vec(),
                (body, _) => serde_json::to_vec(body).expect("a body"),
            };
            (path.file_stem().expect("a name").to_string_lossy().into_owned(), body)
        })
        .collect()
}

/// The JWS payload (the inner JWE) of a body, when it has one.
fn inner_jwe(body: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let jws = value["encryptedData"].as_str()?;
    B64URL.decode(jws.split('.').nth(1)?).ok()
}

fn envelopes() {
    let keys = keys_dir();
    let kits = kits();
    let enc_name = |e: ContentEncryption| match e {
        ContentEncryption::A256gcm => "a256gcm",
        ContentEncryption::A128gcm => "a128gcm",
    };
    let iat_name = |f: IatForm| match f {
        IatForm::StringSeconds => "iat-string",
        IatForm::IntegerSeconds => "iat-int",
        IatForm::IntegerMillis => "iat-ms",
    };
    type MakeBuilder = fn(&Path) -> NotificationBuilder;
    let modes: [(&str, &str, MakeBuilder); 3] = [
        ("visa_envelope_shared", "shared-hs256", |k| NotificationBuilder::shared_from_dir(k, true).expect("shared HS256 builder")),
        ("visa_envelope_shared", "shared-ps256", |k| NotificationBuilder::shared_from_dir(k, false).expect("shared PS256 builder")),
        ("visa_envelope_rsa", "rsa-ps256", |k| NotificationBuilder::rsa_from_dir(k).expect("RSA builder")),
    ];
    let mut jwes: Vec<(String, Vec<u8>)> = Vec::new();
    for (target, mode, builder) in modes {
        let mut builder = builder(&keys);
        let mut n = 0;
        for enc in [ContentEncryption::A256gcm, ContentEncryption::A128gcm] {
            for iat_form in [IatForm::StringSeconds, IatForm::IntegerSeconds, IatForm::IntegerMillis] {
                builder.enc = enc;
                builder.iat_form = iat_form;
                let (pan, first, last, email) = &kits[n % kits.len()];
                n += 1;
                let payload = enrollment_payload(pan, first, last, email, "+1 (415) 555-0100");
                let body = builder.body(&payload, now()).expect("a notification");
                let name = format!("{mode}-{}-{}", enc_name(enc), iat_name(iat_form));
                jwes.push((name.clone(), inner_jwe(body.as_bytes()).expect("a JWE")));
                write(target, &name, body);
            }
        }
    }
    for (name, body) in fixture_bodies() {
        for target in ["visa_envelope_shared", "visa_envelope_rsa"] {
            write(target, &format!("fixture-{name}"), &body);
        }
        if let Some(jwe) = inner_jwe(&body) {
            jwes.push((format!("fixture-{name}"), jwe));
        }
    }
    for (name, jwe) in &jwes {
        write("visa_jwe_signed", name, jwe);
    }

    // The payloads: what the fixtures decrypt to, and the simulator's with each kit.
    let ring = visa_ring(&["issuer", "shared", "visa"]);
    for (name, jwe) in &jwes {
        let Some(header) = std::str::from_utf8(jwe).ok().and_then(|j| j.split('.').next()).and_then(|h| B64URL.decode(h).ok()) else {
            continue;
        };
        let header: Value = serde_json::from_slice(&header).expect("a JWE header");
        let (Some(kid), Some(alg)) = (header["kid"].as_str(), header["alg"].as_str()) else { continue };
        let Some(decrypter) = ring.decrypter(kid, alg) else { continue };
        if let Ok((plaintext, _)) = josekit::jwe::deserialize_compact(std::str::from_utf8(jwe).expect("ASCII"), decrypter) {
            write("visa_payload", name, plaintext);
        }
    }
    for (i, (pan, first, last, email)) in kits.iter().enumerate() {
        write("visa_payload", &format!("kit-{}", i + 1), enrollment_payload(pan, first, last, email, "+1 (415) 555-0100").to_string());
    }
    let mut number = enrollment_payload("4111111111111111", "Jane", "Doe", "jane@example.com", "+14155550100");
    number["enrollment"]["paymentInstrument"]["accountNumber"] = json!(4111111111111111u64);
    write("visa_payload", "account-number-as-number", number.to_string());
    let minimal = json!({"clientInformation": {}, "enrollment": {"tsp": "V", "paymentInstrument": {"accountNumber": "4012888888881881"}}});
    write("visa_payload", "client-information-empty", minimal.to_string());
    let unicode = json!({"clientInformation": {"firstName": "Zoë", "lastName": "Ōtsuka", "contactEmail": "zoë@example.com"},
        "enrollment": {"tsp": "V", "paymentInstrument": {"accountNumber": "4000056655665556"}}, "somethingNew": {"ignored": true}});
    write("visa_payload", "unicode-names-unknown-field", unicode.to_string());
}

fn webhooks() {
    let current = load_secrets_dir(&keys_dir().join("saas")).expect("keys/saas").remove(0).1;
    let trace = "451562ba-83cf-11ee-b962-024212345678";
    let mut bodies = Vec::new();
    for (event, kit) in [
        ("CTP_REGISTER_ENTITY_AND_KIT", true),
        ("CTP_ADD_KIT", true),
        ("CTP_REMOVE_KIT", true),
        ("CTP_REMOVE_ENTITY", false),
        ("CTP_UPDATE_ENTITY", false),
        ("CTP_UPDATE_KIT", true),
    ] {
        let instruments = if kit {
            json!([{"externalInstrumentID": "KIT-000001", "paymentInstrumentId": "pi-7f3a", "result": "SUCCESS"}])
        } else {
            json!([])
        };
        let success = json!({"requestTraceId": trace, "requestId": "0b0d5c1e-5bfa-4bd5-a3c1-1f0b7f3e9a10", "event": event,
            "tenant": "DEMOBANK", "outcome": {"result": "SUCCESS", "clickToPayCustomerId": "86e9d8c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "paymentInstruments": instruments}});
        bodies.push((format!("{}-success", event.to_lowercase()), success.to_string()));
    }
    let failed = json!({"requestTraceId": trace, "requestId": "r-1", "event": "CTP_ADD_KIT", "tenant": "DEMOBANK",
        "outcome": {"result": "FAILED",
                    "paymentInstruments": [{"externalInstrumentID": "KIT-000002", "result": "FAILED", "errorCode": "VIDC-2004"}],
                    "error": {"errorCode": "VIDC-2004", "message": "card already exists"}}});
    bodies.push(("ctp_add_kit-failed".into(), failed.to_string()));
    let echoing = json!({"requestTraceId": trace, "requestId": "r-2", "event": "CTP_ADD_KIT", "tenant": "DEMOBANK",
        "outcome": {"result": "FAILED", "error": {"errorCode": "VIDC-1003", "message": "card 4111 1111 1111 1111 is not valid"}}});
    bodies.push(("ctp_add_kit-message-with-card".into(), echoing.to_string()));

    let ts = NOW_SECS.to_string();
    for (name, body) in &bodies {
        let case = WebhookCase {
            flags: WebhookCase::SIGN | WebhookCase::NOW,
            id: b"msg_2b9Zl1gkE0m8xj1T",
            timestamp: ts.as_bytes(),
            signature: b"",
            body: body.as_bytes(),
        };
        write("webhook_verify", &format!("signed-{name}"), case.encode());
    }
    let body = bodies[0].1.as_bytes();
    let signature = sign(&current, "msg_fixed", NOW_SECS as i64, body);
    for (name, flags, signature) in [
        ("given-signature", 0, signature.as_str()),
        ("rotation-two-signatures", WebhookCase::SIGN | WebhookCase::SIGN_OLD | WebhookCase::NOW, "v1a,ignored"),
        ("old-secret-only", WebhookCase::SIGN_OLD | WebhookCase::NOW, ""),
        ("bad-signature", WebhookCase::NOW, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ("no-id", WebhookCase::SIGN | WebhookCase::NOW | WebhookCase::NO_ID, ""),
        ("no-timestamp", WebhookCase::SIGN | WebhookCase::NO_TIMESTAMP, ""),
        ("no-signature", WebhookCase::NOW | WebhookCase::NO_SIGNATURE, ""),
    ] {
        let case = WebhookCase { flags, id: b"msg_fixed", timestamp: ts.as_bytes(), signature: signature.as_bytes(), body };
        write("webhook_verify", name, case.encode());
    }
    // The Standard Webhooks specification's example, at its own (long past) time.
    let spec = WebhookCase {
        flags: 0,
        id: b"msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: b"1614265330",
        signature: b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        body: br#"{"test": 2432232314}"#,
    };
    write("webhook_verify", "specification-example", spec.encode());
}

fn csv_files() {
    let kits = std::fs::read_to_string(repo().join("fixtures/kits.csv")).expect("fixtures/kits.csv");
    write("csv_rows", "fixture-kits", &kits);
    let without_tenant: String = kits.lines().map(|l| l.split_once(',').expect("a tenant column").1.to_owned() + "\n").collect();
    write("csv_rows", "no-tenant-column", without_tenant);
    write("csv_rows", "crlf-and-bom", format!("\u{feff}{}", kits.replace('\n', "\r\n")));
    write(
        "csv_rows",
        "reordered-quoted-optional",
        "PAN,Kit_No,entity_id,name_on_card,expiry\n\"4111111111111111\",\"KIT-9\",\"ENT-9\",\"JANE Q. DOE\",2029-12\n4012888888881881,KIT-10,ENT-10,,\n",
    );
    write(
        "csv_rows",
        "bad-rows",
        "tenant,entity_id,kit_no,pan,expiry,email,phone\nDEMOBANK,ENT-1,KIT-1,4111111111111112,2029-13,not-an-email,call me\n\
         DEMOBANK,ENT 2,KIT-2,41111111111111111111,2029-1,a@b,+1 (415) 555-0100\nDEMOBANK,,KIT-3,4111 1111 1111 1111\n",
    );
}

fn api_bodies() {
    let profile = json!({
        "firstName": "Alex", "lastName": "Miller", "emails": ["alex@example.com"], "phones": ["+14155550100"],
        "locale": "en_US", "countryCode": "USA",
        "consent": {"timeOfConsent": "2024-05-05T12:12:12.000Z", "version": "1.0", "presenter": "Demo Bank"},
        "billingAddress": {"addressLine1": "1000 Market Street", "city": "San Francisco", "state": "CA", "postalCode": "94105", "country": "USA"},
        "nationalIdentifiers": [{"type": "PASSPORT", "value": "X1234567"}]
    });
    for (name, body) in [
        ("profile-complete", profile.clone()),
        ("profile-first-name-only", json!({"firstName": "Alex"})),
        ("profile-wrong-type", json!({"firstName": 4111111111111111u64})),
        ("profile-unknown-field", json!({"firstName": "Alex", "middleNmae": "Q"})),
        ("operation-with-kit", json!({"entityId": "ENT-1", "kitNo": "KIT-1"})),
        ("operation-entity-only", json!({"entityId": "f25a9f38-682b-4094-b6e4-9671d500c49b"})),
        ("request-status", json!({"requestTraceId": "00000000-0000-0000-0000-000000000000"})),
        ("kit-put", json!({"pan": "4111111111111111", "expiry": "2029-12", "nameOnCard": "ALEX MILLER"})),
        ("kit-put-bad", json!({"pan": "4111 1111 1111 1111", "expiry": "2029-13"})),
    ] {
        write("api_bodies", name, body.to_string());
    }
    write("api_bodies", "not-json", "{\"entityId\": ");
    write("api_bodies", "header-tenant", "DEMO_BANK");
    write("api_bodies", "header-idempotency-key", "order-1:retry/2");
    write("api_bodies", "identifier-expiry", "2029-12");
}

fn configs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let example = readme.split("Example file:").nth(1).and_then(|e| e.split("```toml\n").nth(1)).and_then(|t| t.split("```").next());
    write("config_file", "readme-example", example.expect("the README's example file"));
    let secrets_file = "[database]\nurl = \"postgres://ctp:S3CR3T@db.internal/ctp\"\n\n[outbox]\npublisher = \"rabbitmq\"\n\
                        amqp_url = \"amqp://ctp:S3CR3T@broker:5672/%2f\"\n\n[saas]\nbase_url = \"https://saas.example.com/ctp/v1\"\n\
                        api_key = \"S3CR3T-api-key\"\n";
    write("config_file", "secrets-in-file", ConfigCase::encode(secrets_file, &[]));
    write("config_file", "secret-in-a-bad-url", ConfigCase::encode("[database]\nurl = \"mysql://u:S3CR3T@db/x\"\n", &[]));
    write(
        "config_file",
        "secrets-in-env",
        ConfigCase::encode(
            "",
            &[
                ("CTP_DATABASE_URL", "postgres://ctp:S3CR3T@db.internal/ctp"),
                ("CTP_AMQP_URL", "amqp://u:S3CR3T@broker/%2f"),
                ("CTP_SAAS_API_KEY", "k-S3CR3T"),
                ("CTP_SAAS_URL", "https://saas.example.com/ctp/v1"),
            ],
        ),
    );
    write(
        "config_file",
        "disagreeing-aliases",
        ConfigCase::encode("", &[("CTP_AMQP_URL", "amqp://u:S3CR3T@a/"), ("CTP_OUTBOX_AMQP_URL", "amqp://u:S3CR3Tx@b/")]),
    );
    write(
        "config_file",
        "file-and-env",
        ConfigCase::encode(
            "keys_dir = \"/file/keys\"\n[visa]\nreplay_window = \"2m\"\nmax_body_bytes = 9000\njws_algorithms = [\"PS256\", \"RS256\"]\n\
             [outbox]\nexchange = \"issuer\"\n[tls]\ncert = \"/f/cert.pem\"\nkey = \"/f/key.pem\"\n",
            &[("CTP_VISA_REPLAY_WINDOW", "90s"), ("CTP_OUTBOX_EXCHANGE", ""), ("CTP_TLS_CLIENT_CA", "/tls/ca.pem")],
        ),
    );
    write(
        "config_file",
        "tenants",
        ConfigCase::encode(
            "[tenants.bank-a]\nbins = [\"411111\"]\ndisplay_name = \"Bank A\"\nd1_issuer_id = \"BANKA00001\"\naccent_color = \"#0a5cff\"\n",
            &[("CTP_TENANTS", "bank-a=401288,422222;bank-b=5222")],
        ),
    );
    write(
        "config_file",
        "bad-values",
        ConfigCase::encode(
            "[http]\nmax_connections = 0\n[saas]\nmax_retries = 11\n",
            &[
                ("CTP_PUBLIC_ADDR", "garbage"),
                ("CTP_VISA_REPLAY_WINDOW", "forever"),
                ("CTP_OUTBOX_PUBLISHER", "kafka"),
                ("CTP_LOG", "[[bad"),
                ("CTP_HTTP_IDLE_TIMOUT", "5s"),
            ],
        ),
    );
}

fn saas_answers() {
    for (name, answer) in [
        ("accepted", json!({"requestTraceId": "451562ba-83cf-11ee-b962-024212345678"})),
        ("error", json!({"errorCode": "VIDC-1001", "message": "consumerInformation.firstName is required"})),
        ("error-echoing-a-card", json!({"errorCode": "VIDC-1003", "message": "accountNumber 4111111111111111 is invalid"})),
        (
            "status-completed",
            json!({"requestTraceId": "451562ba-83cf-11ee-b962-024212345678", "requestId": "0b0d5c1e-5bfa-4bd5-a3c1-1f0b7f3e9a10",
                   "event": "CTP_ADD_KIT", "status": "COMPLETED",
                   "outcome": {"result": "FAILED", "clickToPayCustomerId": "86e9d8c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                               "paymentInstruments": [{"externalInstrumentID": "12346535", "result": "FAILED", "errorCode": "VIDC-2004"}],
                               "error": {"errorCode": "VIDC-2004", "message": "card already exists"}}}),
        ),
        ("status-in-progress", json!({"requestTraceId": "t-1", "requestId": "r-1", "event": "CTP_REMOVE_ENTITY", "status": "IN_PROGRESS"})),
        (
            "profile",
            json!({"externalConsumerID": "f25a9f38-682b-4094-b6e4-9671d500c49b", "clickToPayCustomerId": "86e9d8c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                   "status": "ACTIVE",
                   "consumerInformation": {"externalConsumerID": "f25a9f38-682b-4094-b6e4-9671d500c49b", "firstName": "Jane", "lastName": "Doe",
                                           "emails": ["jane@example.com"], "phones": ["+14155550100"], "locale": "en_US", "countryCode": "USA"},
                   "paymentInstruments": [{"externalInstrumentID": "12346535", "paymentInstrumentId": "pi-1", "last4": "1111", "status": "ACTIVE"}]}),
        ),
        (
            "callback",
            json!({"requestTraceId": "t", "requestId": "r", "event": "CTP_REGISTER_ENTITY_AND_KIT", "tenant": "T",
                   "outcome": {"result": "SUCCESS", "clickToPayCustomerId": "c"}}),
        ),
    ] {
        write("saas_answers", name, answer.to_string());
    }
    write("saas_answers", "retry-after-seconds", "120");
    write("saas_answers", "retry-after-http-date", "Sun, 06 Nov 1994 08:49:37 GMT");
    write("saas_answers", "retry-after-rfc3339", "2026-03-03T09:00:00Z");
    write("saas_answers", "text-with-digit-runs", "card 4111-1111-1111-1111 refused at 12:30, VIDC-2004\n5 cards");
}

fn auth_tokens() {
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let iat = NOW_SECS;
    let exp = NOW_SECS + 3600;
    for (name, header, payload) in [
        ("tenants", header, format!(r#"{{"sub":"ops","iat":{iat},"exp":{exp},"tenants":["DEMOBANK","OTHERBANK"]}}"#)),
        ("tenant", header, format!(r#"{{"sub":"ops","exp":{exp},"tenant":"DEMOBANK"}}"#)),
        ("every-tenant", header, format!(r#"{{"exp":{exp},"tenants":["*"]}}"#)),
        (
            "issuer-and-audience",
            header,
            format!(r#"{{"iss":"https://auth.bank.example","aud":"ctp-issuer","exp":{exp},"nbf":{iat},"tenants":["DEMOBANK"]}}"#),
        ),
        ("expired", header, format!(r#"{{"exp":{},"tenants":["DEMOBANK"]}}"#, NOW_SECS - 60)),
        ("no-exp", header, r#"{"tenants":["DEMOBANK"]}"#.to_owned()),
        ("no-tenant", header, format!(r#"{{"exp":{exp}}}"#)),
        ("rs256-kid", r#"{"alg":"RS256","kid":"715EA257","typ":"JWT"}"#, format!(r#"{{"exp":{exp},"tenants":["DEMOBANK"]}}"#)),
    ] {
        write("api_auth", &format!("signed-{name}"), AuthCase::signed(header, &payload));
    }
    let minted =
        ctp_issuer::auth::mint_token(&keys_dir().join("jwt/dev-hs256.secret"), &["DEMOBANK".into()], "ops", Duration::from_secs(60))
            .expect("a development token");
    write("api_auth", "raw-minted", AuthCase::raw(&format!("Bearer {minted}")));
    write("api_auth", "raw-basic", AuthCase::raw("Basic YWxhZGRpbjpvcGVuc2VzYW1l"));
    write("api_auth", "raw-not-a-jwt", AuthCase::raw("Bearer not.a.jwt"));
}

/// One line of a libFuzzer dictionary: quoted, with `\\`, `\"` and `\xNN` escapes.
fn dictionary_entry(word: &[u8]) -> String {
    let mut line = String::from("\"");
    for &b in word {
        match b {
            b'\\' | b'"' => line.extend(['\\', b as char]),
            0x20..=0x7e => line.push(b as char),
            _ => line.push_str(&format!("\\x{b:02X}")),
        }
    }
    line + "\"\n"
}

/// libFuzzer dictionaries: the names the decoders look for, which mutation alone finds late.
fn dictionaries() {
    let dir = fuzz_dir().join("dicts");
    std::fs::create_dir_all(&dir).expect("dicts directory");
    let dict = |words: &[&str]| words.iter().map(|w| dictionary_entry(w.as_bytes())).collect::<String>();
    let json = ["{", "}", "[", "]", ":", ",", "\"", "null", "true", "false", "\\u0000", "1e999", "-0"];
    let visa = [
        "encryptedData",
        "alg",
        "enc",
        "kid",
        "iat",
        "crit",
        "zip",
        "typ",
        "cty",
        "iv",
        "tag",
        "A256GCMKW",
        "RSA-OAEP-256",
        "A256GCM",
        "A128GCM",
        "HS256",
        "PS256",
        "RS256",
        "none",
        "dir",
        "RSA1_5",
        "DEF",
        "shared-dev-1",
        "issuer-dev-1",
        "715EA257",
        "clientInformation",
        "firstName",
        "lastName",
        "phoneNumber",
        "contactEmail",
        "enrollment",
        "tsp",
        "paymentInstrument",
        "accountNumber",
        "4111111111111111",
    ];
    let visa: String = dict(&json) + &dict(&visa);
    std::fs::write(dir.join("visa.dict"), &visa).expect("a dictionary");
    let api = [
        "firstName",
        "middleName",
        "lastName",
        "emails",
        "phones",
        "locale",
        "countryCode",
        "nationalIdentifiers",
        "consent",
        "timeOfConsent",
        "version",
        "presenter",
        "billingAddress",
        "addressLine1",
        "addressLine2",
        "addressLine3",
        "city",
        "state",
        "postalCode",
        "country",
        "type",
        "value",
        "PASSPORT",
        "DRIVING_LICENSE",
        "NATIONAL_IDENTITY",
        "entityId",
        "kitNo",
        "requestTraceId",
        "pan",
        "expiry",
        "nameOnCard",
        "en_US",
        "USA",
        "2029-12",
        "2024-05-05T12:12:12.000Z",
        "4111111111111111",
    ];
    std::fs::write(dir.join("api.dict"), dict(&json) + &dict(&api)).expect("a dictionary");
    let saas = [
        "requestTraceId",
        "requestId",
        "event",
        "status",
        "outcome",
        "result",
        "clickToPayCustomerId",
        "paymentInstruments",
        "externalInstrumentID",
        "paymentInstrumentId",
        "errorCode",
        "message",
        "error",
        "tenant",
        "externalConsumerID",
        "consumerInformation",
        "last4",
        "SUCCESS",
        "FAILED",
        "IN_PROGRESS",
        "COMPLETED",
        "CTP_REGISTER_ENTITY_AND_KIT",
        "CTP_ADD_KIT",
        "CTP_REMOVE_KIT",
        "CTP_REMOVE_ENTITY",
        "CTP_UPDATE_ENTITY",
        "CTP_UPDATE_KIT",
        "VIDC-2004",
        "GMT",
        "4111111111111111",
    ];
    std::fs::write(dir.join("saas.dict"), dict(&json) + &dict(&saas)).expect("a dictionary");
    let auth = [
        "alg",
        "kid",
        "typ",
        "HS256",
        "RS256",
        "ES256",
        "none",
        "715EA257",
        "JWT",
        "exp",
        "nbf",
        "iat",
        "iss",
        "aud",
        "sub",
        "tenants",
        "tenant",
        "*",
        "https://auth.bank.example",
        "ctp-issuer",
        "1e300",
        "9223372036854775807",
        "18446744073709551615",
        "0.5",
        "Bearer ",
        "bearer ",
    ];
    std::fs::write(dir.join("auth.dict"), dict(&json) + &dict(&auth)).expect("a dictionary");
    // Every key and variable the configuration documents.
    let doc = std::fs::read_to_string(repo().join("docs/configuration.md")).expect("docs/configuration.md");
    let mut words: Vec<String> = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 && !part.is_empty() && part.len() <= 64 && !words.iter().any(|w| w == part) {
                words.push(part.to_owned());
            }
        }
    }
    for extra in ["[", "]", "=", "\"", "\n", "\u{0}", "S3CR3T", "postgres://u:S3CR3T@db/x", "CTP_TENANTS", "CTP_CONFIG"] {
        words.push(extra.to_owned());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    std::fs::write(dir.join("config.dict"), dict(&words)).expect("a dictionary");
}

fn main() {
    envelopes();
    webhooks();
    csv_files();
    api_bodies();
    configs();
    saas_answers();
    auth_tokens();
    dictionaries();
    println!("seed corpora written under {}", fuzz_dir().join("corpus").display());
}
