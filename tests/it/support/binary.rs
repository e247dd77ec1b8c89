//! The real binary, run as an operator runs it: configured by `CTP_*` variables only,
//! in a child process of its own, so that what it logs, its metrics and its exit status
//! are its own and no other test's.
//!
//! Listeners bind port 0; the ports are read from the `listening` lines the binary logs
//! (JSON logs), so no port is picked by the test and then raced for.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use super::db::TestDb;
use super::http::{Reply, request};
use super::{copy_dir, eventually, repo, until};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ctp-issuer");

/// A working directory (a copy of the development keys, a SQLite database unless told
/// otherwise) and the environment the binary runs with.
pub struct Setup {
    pub dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

impl Setup {
    /// SQLite at `<dir>/db/ctp.db`, keys at `<dir>/keys`, every listener on 127.0.0.1:0,
    /// JSON logs at `ctp_issuer=debug`, the relay polling every 100 ms.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("keys"), &dir.path().join("keys"));
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        let mut setup = Self { vars: BTreeMap::new(), dir };
        let db = format!("sqlite://{}", setup.dir.path().join("db/ctp.db").display());
        let keys = setup.keys().display().to_string();
        for (var, value) in [
            ("CTP_DATABASE_URL", db.as_str()),
            ("CTP_KEYS_DIR", keys.as_str()),
            ("CTP_PUBLIC_ADDR", "127.0.0.1:0"),
            ("CTP_INTERNAL_ADDR", "127.0.0.1:0"),
            ("CTP_ADMIN_ADDR", "127.0.0.1:0"),
            ("CTP_WIDGET_ADDR", "127.0.0.1:0"),
            ("CTP_LOG", "info,ctp_issuer=debug"),
            ("CTP_LOG_FORMAT", "json"),
            ("CTP_OUTBOX_POLL_INTERVAL", "100ms"),
        ] {
            setup.set(var, value);
        }
        setup
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The database, as a [`TestDb`] that owns nothing (the directory is this setup's).
    pub fn db(&self) -> TestDb {
        TestDb::at(self.vars["CTP_DATABASE_URL"].clone(), "sqlite")
    }

    pub fn set(&mut self, var: &str, value: &str) -> &mut Self {
        self.vars.insert(var.to_owned(), value.to_owned());
        self
    }

    /// The binary with exactly this environment (and `PATH`), nothing inherited.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(&self.vars).current_dir(self.dir.path());
        cmd
    }

    /// Runs a command to its end (`kits import …`, `token …`).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// An internal API bearer token for `tenant`, from the binary's own `token` command.
    pub fn token(&self, tenant: &str) -> String {
        let out = self.run(&["token", "--tenant", tenant]);
        assert!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `serve`, once its listeners are up and `/readyz` answers 200.
    pub async fn serve(&self) -> Running {
        let mut child = self.command().arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let stdout: Arc<Mutex<Vec<u8>>> = Arc::default();
        let err_pipe = child.stderr.take().unwrap();
        let out_pipe = child.stdout.take().unwrap();
        let readers = vec![
            std::thread::spawn({
                let stderr = stderr.clone();
                move || {
                    for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                        stderr.lock().unwrap().push(line);
                    }
                }
            }),
            std::thread::spawn({
                let stdout = stdout.clone();
                move || {
                    let mut buf = [0u8; 8192];
                    let mut pipe = out_pipe;
                    while let Ok(n) = pipe.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        stdout.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                }
            }),
        ];
        let mut running =
            Running { child: Mutex::new(Some(child)), stderr, stdout, readers, public: any(), internal: any(), admin: any(), widget: None };
        let addrs = until("the binary's three listeners", Duration::from_secs(30), || async {
            running.assert_alive();
            let addr = |name: &str| running.log_line(|l| l["message"] == "listening" && l["listener"] == name).map(|l| l["addr"].clone());
            match (addr("public"), addr("internal"), addr("admin")) {
                (Some(p), Some(i), Some(a)) => Some([p, i, a].map(|v| v.as_str().unwrap().parse::<SocketAddr>().unwrap())),
                _ => None,
            }
        })
        .await;
        [running.public, running.internal, running.admin] = addrs;
        until("/readyz to answer 200", Duration::from_secs(30), || async {
            running.assert_alive();
            let ready = super::http::try_request(running.admin, Method::GET, "/readyz", &[], "").await;
            ready.is_ok_and(|r| r.status == StatusCode::OK).then_some(())
        })
        .await;
        // Logged before the service answers anything, so there by now if it is on.
        running.widget = running
            .log_line(|l| l["message"] == "listening" && l["listener"] == "widget")
            .map(|l| l["addr"].as_str().unwrap().parse().unwrap());
        running
    }
}

fn any() -> SocketAddr {
    "0.0.0.0:0".parse().unwrap()
}

/// A running `serve`.
pub struct Running {
    child: Mutex<Option<Child>>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub admin: SocketAddr,
    /// The card-details page's listener, when `widget.enabled`.
    pub widget: Option<SocketAddr>,
}

/// How `serve` ended.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    fn assert_alive(&self) {
        if let Some(status) = self.child.lock().unwrap().as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("the binary exited early ({status}):\n{}", self.stderr.lock().unwrap().join("\n"));
        }
    }

    /// The first JSON log line so far that `matches`.
    pub fn log_line(&self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let lines = self.stderr.lock().unwrap();
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|l| matches(l))
    }

    /// How many JSON log lines so far have this `message`.
    pub fn count_logged(&self, message: &str) -> usize {
        let lines = self.stderr.lock().unwrap();
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|l| l["message"] == message).count()
    }

    /// Waits until the binary has logged `message` `times` times in all.
    pub async fn logged(&self, message: &str, times: usize) {
        until(&format!("the log line {message:?} (x{times})"), Duration::from_secs(30), || async {
            (self.count_logged(message) >= times).then_some(())
        })
        .await
    }

    pub fn pid(&self) -> i32 {
        self.child.lock().unwrap().as_ref().expect("running").id() as i32
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "kill({}, {signal}) failed", self.pid());
    }

    pub async fn get_admin(&self, path: &str) -> Reply {
        request(self.admin, Method::GET, path, &[], "").await
    }

    /// The binary's metrics, `series → value`, e.g.
    /// `ctp_visa_notifications_total{outcome="recorded"}`.
    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&self.get_admin("/metrics").await.text())
    }

    /// Waits until the metric `series` has `value`.
    pub async fn metric_reaches(&self, series: &str, value: f64) {
        let last = Mutex::new(None);
        let reached = eventually(Duration::from_secs(20), || async {
            let now = self.metrics().await.get(series);
            *last.lock().unwrap() = Some(now);
            (now == value).then_some(())
        })
        .await;
        if reached.is_none() {
            let name = series.split('{').next().unwrap_or(series);
            let family: Vec<String> = self.metrics().await.text.lines().filter(|l| l.contains(name)).map(String::from).collect();
            panic!("{series} did not reach {value}; last seen {:?}; the family now:\n{}", last.lock().unwrap(), family.join("\n"));
        }
    }

    /// Waits for the process to end (it must, within `within`) and collects its output.
    pub async fn exit(mut self, within: Duration) -> Exited {
        let child = Mutex::new(self.child.lock().unwrap().take().expect("running"));
        let status = eventually(within, || async { child.lock().unwrap().try_wait().unwrap() }).await;
        let mut child = child.into_inner().unwrap();
        if status.is_none() {
            child.kill().ok();
        }
        child.wait().ok();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stderr = self.stderr.lock().unwrap().join("\n");
        let stdout = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
        let status = status.unwrap_or_else(|| panic!("the binary did not exit within {within:?}:\n{stderr}"));
        Exited { status, stdout, stderr }
    }

    /// SIGTERM, then [`Running::exit`].
    pub async fn stop(self) -> Exited {
        self.signal(libc::SIGTERM);
        self.exit(Duration::from_secs(30)).await
    }
}

impl Drop for Running {
    /// A test that fails midway leaves no process behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A Prometheus text exposition, read.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub text: String,
    series: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(series, value)| Some((series.to_owned(), value.trim().parse().ok()?)))
            .collect();
        Self { text: text.to_owned(), series }
    }

    /// The value of one series; 0 when it is not there (a counter not yet incremented).
    pub fn get(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }

    /// Whether the series is exposed at all.
    pub fn has(&self, series: &str) -> bool {
        self.series.contains_key(series)
    }

    /// Every series whose name (before `{`) is `name`.
    pub fn named(&self, name: &str) -> Vec<(&str, f64)> {
        self.series.iter().filter(|(s, _)| s.split('{').next() == Some(name)).map(|(s, v)| (s.as_str(), *v)).collect()
    }
}

/// The path of a fixture file.
pub fn fixture(path: &str) -> PathBuf {
    repo().join("fixtures").join(path)
}

/// `path` as a `&str` argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}
