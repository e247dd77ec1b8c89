//! The card-number audit: run the real binary as an operator would (import, serve, take
//! notifications good and bad, stop on SIGTERM), then scan everything it wrote — every log
//! line of every command, every byte of the database files — for the card numbers it was
//! fed. None may appear.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use ctp_issuer::sim::client::{send, send_with};
use ctp_issuer::sim::visa::{NotificationBuilder, enrollment_payload, notification_path};
use http::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_ctp-issuer");

/// Card numbers that go in: registered, unknown, and malformed-but-plausible.
const REGISTERED: [&str; 3] = ["4111111111111111", "4012888888881881", "5555555555554444"];
const UNKNOWN: &str = "4000000000000002";
const BAD_LUHN: &str = "4111111111111112";
const IN_BAD_CSV_ROW: &str = "4999999999999990";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Env {
    dir: tempfile::TempDir,
    public: u16,
    admin: u16,
    internal: u16,
}

impl Env {
    fn command(&self, json_logs: bool) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CTP_DATABASE_URL", format!("sqlite://{}", self.dir.path().join("db/ctp.db").display()))
            .env("CTP_KEYS_DIR", common::repo().join("keys"))
            .env("CTP_PUBLIC_ADDR", format!("127.0.0.1:{}", self.public))
            .env("CTP_INTERNAL_ADDR", format!("127.0.0.1:{}", self.internal))
            .env("CTP_ADMIN_ADDR", format!("127.0.0.1:{}", self.admin))
            .env("CTP_LOG", "trace")
            .env("CTP_OUTBOX_POLL_INTERVAL", "100ms")
            .env("CTP_LOG_FORMAT", if json_logs { "json" } else { "text" });
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(false).args(args).output().unwrap()
    }
}

async fn wait_ready(admin: u16, server: &mut Child) {
    for _ in 0..100 {
        if let Ok((StatusCode::OK, _)) = send(&format!("127.0.0.1:{admin}"), None, http::Method::GET, "/readyz", "").await {
            return;
        }
        assert!(server.try_wait().unwrap().is_none(), "server exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server not ready");
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
    let env = Env { dir: tempfile::tempdir().unwrap(), public: free_port(), admin: free_port(), internal: free_port() };
    let mut found = Vec::new();

    // Import, with a bad row whose card must not be echoed in the error.
    let csv = env.dir.path().join("kits.csv");
    std::fs::write(
        &csv,
        format!(
            "tenant,entity_id,kit_no,pan,expiry\nDEMO,E1,K1,{},2030-01\nDEMO,E2,K2,{},2030-01\nDEMO,E3,K3,{},2030-01\nDEMO,E4,K4,{},2030-13\nDEMO,E5,K5,{},2030-01\n",
            REGISTERED[0], REGISTERED[1], REGISTERED[2], IN_BAD_CSV_ROW, BAD_LUHN
        ),
    )
    .unwrap();
    let import = env.run(&["kits", "import", csv.to_str().unwrap()]);
    assert_eq!(import.status.code(), Some(1), "bad rows make the import exit 1");
    let import_text = String::from_utf8_lossy(&import.stdout);
    assert!(import_text.contains("3 inserted"), "{import_text}");
    scan("kits import stdout", &import.stdout, &mut found);
    scan("kits import stderr", &import.stderr, &mut found);

    let mut server = env.command(true).arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_ready(env.admin, &mut server).await;

    let keys = common::repo().join("keys");
    let rsa = NotificationBuilder::rsa_from_dir(&keys).unwrap();
    let shared = NotificationBuilder::shared_from_dir(&keys, true).unwrap();
    let public = format!("127.0.0.1:{}", env.public);
    let path = notification_path("40010030273");
    let post = |body: String| {
        let public = public.clone();
        let path = path.clone();
        async move { send(&public, None, http::Method::POST, &path, body).await.unwrap().0 }
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
    let odd = serde_json::json!({"clientInformation": {"firstName": REGISTERED[0]}, "enrollment": {"tsp": "V", "paymentInstrument": {"accountNumber": [REGISTERED[1]]}}});
    assert_eq!(post(rsa.body(&odd, SystemTime::now()).unwrap()).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        post(rsa.body(&payload(REGISTERED[2]), SystemTime::now() - Duration::from_secs(86_400)).unwrap()).await,
        StatusCode::UNAUTHORIZED
    );

    // The enrollment loop: the card goes to the SaaS simulator (in-process, so its logs are
    // ours too) and comes back as statuses.
    let token = env.run(&["token", "--tenant", "DEMO"]);
    let auth = format!("Bearer {}", String::from_utf8(token.stdout).unwrap().trim());
    let internal = format!("127.0.0.1:{}", env.internal);
    let api = |method: http::Method, path: &'static str, body: serde_json::Value| {
        let (internal, auth) = (internal.clone(), auth.clone());
        async move {
            let headers = [("authorization", auth.as_str()), ("tenant", "DEMO")];
            let (status, body) = send_with(&internal, None, method, path, &headers, body.to_string()).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let profile = serde_json::json!({"firstName": "Jane", "lastName": "Doe", "emails": ["jane@example.com"], "phones": ["+14155550100"],
        "locale": "en_US", "countryCode": "USA", "billingAddress": {"addressLine1": "1 Main Street", "city": "Springfield", "postalCode": "12345", "country": "USA"}});
    let (status, _) = api(http::Method::PUT, "/registry/v1/entities/E1", profile).await;
    assert!(status.is_success());
    let (status, body) = api(http::Method::PUT, "/registry/v1/entities/E1/kits/K9", serde_json::json!({"pan": REGISTERED[2]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the card is K3's: {body}");
    let (status, body) =
        api(http::Method::PUT, "/registry/v1/entities/E1/kits/K1", serde_json::json!({"pan": REGISTERED[0], "expiry": "2030-01"})).await;
    assert!(status.is_success(), "{body}");
    let (status, body) =
        api(http::Method::POST, "/click-to-pay/v1/registerEntityAndKit", serde_json::json!({"entityId": "E1", "kitNo": "K1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..100 {
        let (_, body) = api(http::Method::GET, "/registry/v1/entities/E1", serde_json::Value::Null).await;
        if body.contains("\"ctpStatus\":\"ACTIVE\",\"clickToPay") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = api(http::Method::POST, "/click-to-pay/v1/fetchEntityDetails", serde_json::json!({"entityId": "E1"})).await;
    assert!(body.contains("\"last4\":\"1111\""), "{body}");
    scan("internal API answers", body.as_bytes(), &mut found);

    let (_, metrics) = send(&format!("127.0.0.1:{}", env.admin), None, http::Method::GET, "/metrics", "").await.unwrap();
    scan("/metrics", &metrics, &mut found);

    // The relay has published the three attempts (on the log publisher: to stdout).
    let admin = format!("127.0.0.1:{}", env.admin);
    let published = common::eventually(Duration::from_secs(10), || async {
        let (_, metrics) = send(&admin, None, http::Method::GET, "/metrics", "").await.ok()?;
        String::from_utf8_lossy(&metrics).contains("ctp_outbox_published_total{event_type=\"CTP_ENROLLMENT_ATTEMPT\"} 3").then_some(())
    })
    .await;
    assert!(published.is_some(), "the relay did not publish the attempts");

    // SIGTERM: a graceful stop with exit code 0.
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let output = tokio::task::spawn_blocking(move || server.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "serve did not exit cleanly: {:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("enrollment attempt recorded"), "the log is not what we think it is");
    assert!(log.contains("****1111"), "the masked card should be there");
    // The log publisher printed every event, without the consumers' contact details.
    let published = String::from_utf8_lossy(&output.stdout);
    assert!(published.contains("\"eventType\":\"CTP_ENROLLMENT_ATTEMPT\""), "{published}");
    for personal in ["jane@example.com", "415 555 0100", "\"Jane\"", "\"Doe\""] {
        assert!(!published.contains(personal), "the log publisher printed {personal}: {published}");
    }
    scan("serve stdout", &output.stdout, &mut found);
    scan("serve stderr", &output.stderr, &mut found);

    let attempts = env.run(&["attempts", "list"]);
    assert!(String::from_utf8_lossy(&attempts.stdout).contains("card=****4444"));
    scan("attempts list", &attempts.stdout, &mut found);
    scan("attempts list stderr", &attempts.stderr, &mut found);

    let mut files = 0;
    scan_dir(&env.dir.path().join("db"), &mut found, &mut files);
    assert!(files >= 1, "no database file was scanned");
    assert!(found.is_empty(), "card numbers leaked:\n{}", found.join("\n"));
}
