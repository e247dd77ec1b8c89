//! A real browser for tests: headless Chromium driven by chromedriver over the W3C
//! WebDriver protocol (JSON over HTTP, the handful of commands the tests use), through the
//! harness's own HTTP client rather than a WebDriver crate: a session, a page, elements,
//! a click, a script, a screenshot.
//!
//! Debian's `chromium` and `chromium-driver` provide the two binaries (`.ci/run` installs
//! them). Without them [`Browser::start`] says `skipped` and returns `None`, except under
//! `CI=true`, where it fails the test.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{request, try_request};
use super::until;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A phone-sized viewport: CSS pixels wide and high, and device pixels per CSS pixel.
#[derive(Debug, Clone, Copy)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub pixel_ratio: u32,
}

/// One browser session, and the chromedriver that runs it (killed when dropped).
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Headless Chromium emulating `viewport`, or `None` (with a note) when Chromium or
    /// chromedriver is not installed and `CI` is not `true`.
    pub async fn start(viewport: Viewport) -> Option<Self> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(binary).exists() {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true but {binary} is missing: apt-get install chromium chromium-driver");
                }
                eprintln!("skipped: {binary} is missing (apt-get install chromium chromium-driver)");
                return None;
            }
        }
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut browser = Self { driver, addr, session: String::new() };
        until("chromedriver to be ready", Duration::from_secs(30), || async {
            let status = try_request(addr, Method::GET, "/status", &[], "").await.ok()?;
            (status.json()["value"]["ready"] == true).then_some(())
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"],
                "mobileEmulation": {"deviceMetrics": {
                    "width": viewport.width, "height": viewport.height, "pixelRatio": viewport.pixel_ratio}},
            },
        }}});
        let created = browser.command(Method::POST, "/session", capabilities).await;
        browser.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        Some(browser)
    }

    /// Sends one command; returns its `value`, failing the test on a WebDriver error.
    async fn command(&self, method: Method, path: &str, body: Value) -> Value {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let reply = request(self.addr, method, path, &[], body).await;
        let value = reply.json()["value"].clone();
        assert_eq!(reply.status, StatusCode::OK, "WebDriver {path}: {value}");
        value
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn go(&self, url: &str) {
        self.command(Method::POST, &self.path("/url"), json!({"url": url})).await;
    }

    pub async fn title(&self) -> String {
        self.command(Method::GET, &self.path("/title"), Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let found = self.command(Method::POST, &self.path("/element"), json!({"using": "css selector", "value": css})).await;
        Element { browser: self, id: found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned() }
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn run(&self, script: &str) -> Value {
        self.command(Method::POST, &self.path("/execute/sync"), json!({"script": script, "args": []})).await
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command(Method::GET, &self.path("/screenshot"), Value::Null).await;
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap()
    }

    pub async fn quit(mut self) {
        self.command(Method::DELETE, &self.path(""), Value::Null).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        self.browser.path(&format!("/element/{}{rest}", self.id))
    }

    pub async fn click(&self) {
        self.browser.command(Method::POST, &self.path("/click"), json!({})).await;
    }

    /// The text as rendered (what a user reads, whitespace as laid out).
    pub async fn text(&self) -> String {
        self.browser.command(Method::GET, &self.path("/text"), Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn displayed(&self) -> bool {
        self.browser.command(Method::GET, &self.path("/displayed"), Value::Null).await == true
    }
}

/// The width and height, in pixels, of a PNG image (its IHDR chunk).
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}
