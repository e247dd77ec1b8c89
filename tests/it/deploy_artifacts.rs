//! The deployment artifacts under `deploy/` stay true to the code.
//!
//! - Every `ctp_*` metric that the alert rules and the Grafana dashboard name is emitted by
//!   a `counter!`, `gauge!` or `histogram!` under `src/`, with the right suffixes for its
//!   kind, and every label value they match on (reasons, outcomes, routes…) is a string
//!   the code uses: a renamed metric or reason code breaks the build instead of silently
//!   muting an alert.
//! - The dashboard is valid JSON with a `${datasource}` variable.
//! - The Deployment probes `/healthz` and `/readyz` on the admin port, and its environment
//!   plus the ConfigMap's `config.toml` make a configuration the service accepts (with the
//!   listeners, keys, TLS files and grace period lined up with the manifest).
//! - No private key or webhook secret is committed under `deploy/`.
//!
//! The crate has no YAML parser: the YAML files are read as text, which is enough for the
//! few shapes checked here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use ctp_issuer::config::{Config, PublisherKind};
use secrecy::ExposeSecret;

use crate::support::repo;

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("listing {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The Rust source under `src/`, all files concatenated.
fn source() -> String {
    walk(&repo().join("src"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| fs::read_to_string(&p).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Metric names emitted by the `metrics` macros: `counter!("ctp_…"`, `gauge!(…`,
/// `histogram!(…`, the name being the macro's first argument.
fn emitted_metrics(src: &str) -> BTreeMap<String, Kind> {
    let mut out = BTreeMap::new();
    for (macro_name, kind) in [("counter!(", Kind::Counter), ("gauge!(", Kind::Gauge), ("histogram!(", Kind::Histogram)] {
        for (at, _) in src.match_indices(macro_name) {
            let rest = src[at + macro_name.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else { continue };
            let Some(end) = rest.find('"') else { continue };
            let name = &rest[..end];
            if name.starts_with("ctp_")
                && let Some(previous) = out.insert(name.to_owned(), kind)
            {
                assert_eq!(previous, kind, "{name} is emitted as two kinds of metric");
            }
        }
    }
    out
}

/// Every `ctp_[a-z_]+` word in `text`, except Rust paths (`ctp_issuer::…`, a log target).
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("ctp_") {
        if at > 0 && word(bytes[at - 1]) {
            continue;
        }
        let len = text[at..].bytes().take_while(|&b| b.is_ascii_lowercase() || b == b'_').count();
        let end = at + len;
        if (end < bytes.len() && word(bytes[end])) || text[end..].starts_with("::") {
            continue;
        }
        out.insert(text[at..end].to_owned());
    }
    out
}

/// `(label, value)` of every PromQL matcher `label="v"`, `label=~"v"`, `label!="v"` and
/// `label!~"v"` in `text`.
fn label_matchers(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices('"') {
        let before = text[..at].trim_end();
        let Some(before) = before
            .strip_suffix("=~")
            .or_else(|| before.strip_suffix("!~"))
            .or_else(|| before.strip_suffix("!="))
            .or_else(|| before.strip_suffix('='))
        else {
            continue;
        };
        let before = before.trim_end();
        let label: String = before.chars().rev().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if label.is_empty() {
            continue;
        }
        let label: String = label.chars().rev().collect();
        let Some(end) = text[at + 1..].find('"') else { continue };
        out.push((label, text[at + 1..at + 1 + end].to_owned()));
    }
    out
}

/// Labels whose values are fixed strings in the code (not `status`, a number made at run
/// time, nor `event_type`, read from the database).
const CHECKED_LABELS: &[&str] = &["reason", "outcome", "listener", "route", "event", "source", "operation", "publisher"];

/// Checks the metric names and label values that `text` (PromQL, or a file of it) uses.
fn check_references(what: &str, text: &str, emitted: &BTreeMap<String, Kind>, src: &str, problems: &mut Vec<String>) {
    for name in referenced_metrics(text) {
        let (base, suffix) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| emitted.get(*b) == Some(&Kind::Histogram)).map(|b| (b.to_owned(), Some(*s))))
            .unwrap_or((name.clone(), None));
        match (emitted.get(&base), suffix) {
            (None, _) => problems.push(format!("{what}: {name} is not emitted by any counter!/gauge!/histogram! under src/")),
            // A histogram exists only as _bucket, _sum and _count; a bare name in a
            // description is fine, in a query it selects nothing.
            (Some(Kind::Histogram), None)
                if text.contains(&format!("{base}[")) || text.contains(&format!("{base}{{")) || text.contains(&format!("({base})")) =>
            {
                problems.push(format!("{what}: histogram {base} queried without _bucket/_sum/_count"));
            }
            _ => {}
        }
    }
    for (label, value) in label_matchers(text) {
        if !CHECKED_LABELS.contains(&label.as_str()) {
            continue;
        }
        for alternative in value.split('|') {
            let plain = !alternative.is_empty() && alternative.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if plain && !src.contains(&format!("\"{alternative}\"")) {
                problems.push(format!("{what}: {label}=\"{alternative}\" is not a string anywhere under src/"));
            }
        }
    }
}

#[test]
fn alerts_and_dashboard_name_only_real_metrics_and_label_values() {
    let src = source();
    let emitted = emitted_metrics(&src);
    assert!(emitted.len() >= 20, "the macro scan found too few metrics, it is broken: {emitted:?}");
    assert_eq!(emitted.get("ctp_visa_notification_duration_seconds"), Some(&Kind::Histogram));
    assert_eq!(emitted.get("ctp_outbox_waiting_events"), Some(&Kind::Gauge));

    let mut problems = Vec::new();
    let alerts = read("deploy/prometheus/alerts.yml");
    check_references("alerts.yml", &alerts, &emitted, &src, &mut problems);

    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/ctp-issuer.json")).unwrap();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        // Descriptions name metrics too: they must not send anyone after a ghost.
        if let Some(description) = panel["description"].as_str() {
            check_references(&format!("dashboard panel {title:?} description"), description, &emitted, &src, &mut problems);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            check_references(&format!("dashboard panel {title:?}"), expr, &emitted, &src, &mut problems);
            used.extend(referenced_metrics(expr));
        }
    }
    assert!(problems.is_empty(), "deploy/ is out of step with src/:\n  {}", problems.join("\n  "));

    // Both name a fair share of what exists (a scan that finds nothing passes vacuously).
    assert!(used.len() >= 15, "the dashboard queries only {used:?}");
    assert!(referenced_metrics(&alerts).len() >= 12, "alerts.yml names only {:?}", referenced_metrics(&alerts));
}

#[test]
fn dashboard_is_valid_grafana_json_on_a_datasource_variable() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/ctp-issuer.json")).expect("dashboard JSON");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36, "schemaVersion");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a `datasource` variable of type datasource, query prometheus"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let rows: Vec<&str> = panels.iter().filter(|p| p["type"] == "row").map(|p| p["title"].as_str().unwrap()).collect();
    assert_eq!(rows, ["Visa notifications", "Internal API", "Enrollment loop", "Outbox", "Process health"]);
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel id of {title:?} used twice");
        let grid = &panel["gridPos"];
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24, "{title:?} is wider than the grid");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title:?} datasource");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "a query of {title:?}");
            assert!(target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "an empty query in {title:?}");
        }
    }
}

#[test]
fn every_alert_has_a_severity_summary_description_and_runbook() {
    let alerts = read("deploy/prometheus/alerts.yml");
    let mut names = BTreeSet::new();
    let blocks: Vec<&str> = alerts.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 15, "found {} alerts", blocks.len());
    for block in blocks {
        let name = block.lines().next().unwrap().trim();
        assert!(names.insert(name.to_owned()), "alert {name} defined twice");
        for key in ["expr:", "severity:", "summary:", "description:", "runbook:"] {
            assert!(block.contains(key), "alert {name} has no {key}");
        }
    }
    // Readiness is watched through Prometheus' own `up`, which needs no code of ours.
    assert!(alerts.contains("up{job=\"ctp-issuer\"}"));
}

// ---- the Kubernetes manifests, read as text ----

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of the YAML item or mapping that starts at `lines[at]`: those after it that
/// are indented deeper (blank lines included).
fn block<'a>(lines: &[&'a str], at: usize) -> Vec<&'a str> {
    let own = indent(lines[at]);
    lines[at + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > own).copied().collect()
}

/// `key: value` in `lines` (the first one), without quotes.
fn value_of<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().trim_matches('"')))
}

fn position(lines: &[&str], trimmed: &str) -> usize {
    lines.iter().position(|l| l.trim() == trimmed).unwrap_or_else(|| panic!("deployment.yaml has no line `{trimmed}`"))
}

/// The `- name: X` item at `lines[from..]` whose name is `name`, as its block.
fn named_item<'a>(lines: &[&'a str], from: usize, name: &str) -> Vec<&'a str> {
    let at = (from..lines.len())
        .find(|&i| lines[i].trim() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("deployment.yaml has no item `- name: {name}` after line {from}"));
    block(lines, at)
}

#[test]
fn deployment_probes_health_and_readiness_on_the_admin_port() {
    let text = read("deploy/kubernetes/deployment.yaml");
    let lines: Vec<&str> = text.lines().collect();
    for (probe, path) in [("livenessProbe:", "/healthz"), ("readinessProbe:", "/readyz"), ("startupProbe:", "/healthz")] {
        let body = block(&lines, position(&lines, probe));
        assert_eq!(value_of(&body, "path"), Some(path), "{probe} path");
        assert_eq!(value_of(&body, "port"), Some("admin"), "{probe} port");
    }
    // Those are the admin listener's routes.
    let routes = read("src/routes.rs");
    assert!(routes.contains("\"/healthz\"") && routes.contains("\"/readyz\""), "src/routes.rs no longer serves them");
}

#[test]
fn no_private_key_or_secret_is_committed_under_deploy() {
    let files = walk(&repo().join("deploy"));
    assert!(files.len() >= 8, "deploy/ has only {files:?}");
    for path in files {
        let bytes = fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for marker in ["BEGIN PRIVATE KEY", "PRIVATE KEY-----", "BEGIN OPENSSH PRIVATE KEY"] {
            assert!(!text.contains(marker), "{} contains a PEM private key ({marker})", path.display());
        }
        // A Standard Webhooks secret is whsec_ and base64; the docs' `whsec_…` is not one.
        for (at, _) in text.match_indices("whsec_") {
            let run = text[at + 6..].bytes().take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)).count();
            assert!(run < 16, "{} contains what looks like a webhook secret", path.display());
        }
    }
}

#[test]
fn deployment_and_configmap_make_a_configuration_the_service_accepts() {
    let text = read("deploy/kubernetes/deployment.yaml");
    let lines: Vec<&str> = text.lines().collect();

    // The container's environment: plain values, and the names that come from Secrets.
    let env_at = position(&lines, "env:");
    let mut env: HashMap<String, String> = HashMap::new();
    let mut from_secret = BTreeSet::new();
    for (i, line) in lines.iter().enumerate().skip(env_at) {
        if i > env_at && indent(line) <= indent(lines[env_at]) && !line.trim().is_empty() {
            break;
        }
        let Some(name) = line.trim().strip_prefix("- name: ") else { continue };
        let item = block(&lines, i);
        if let Some(value) = value_of(&item, "value") {
            env.insert(name.to_owned(), value.to_owned());
        } else {
            assert!(item.iter().any(|l| l.trim() == "secretKeyRef:"), "{name} is neither a value nor a Secret reference");
            from_secret.insert(name.to_owned());
        }
    }
    // Credentials come from Secrets, never from plain values in the manifest.
    for name in ["CTP_DATABASE_URL", "CTP_AMQP_URL", "CTP_SAAS_API_KEY"] {
        assert!(from_secret.contains(name), "{name} must come from a Secret");
    }
    let placeholder = |name: &str| match name {
        "CTP_DATABASE_URL" => "postgres://ctp:secret@db.internal:5432/ctp".to_owned(),
        "CTP_AMQP_URL" => "amqps://ctp:secret@rabbitmq.internal:5671/issuer".to_owned(),
        _ => "secret".to_owned(),
    };
    for name in &from_secret {
        env.insert(name.clone(), placeholder(name));
    }

    // The ConfigMap's config.toml, where CTP_CONFIG says it is mounted.
    let configmap = read("deploy/kubernetes/configmap.yaml");
    let cm_lines: Vec<&str> = configmap.lines().collect();
    let toml_at = cm_lines.iter().position(|l| l.trim() == "config.toml: |").expect("config.toml in the ConfigMap");
    let toml_lines = block(&cm_lines, toml_at);
    let strip = toml_lines.iter().filter(|l| !l.trim().is_empty()).map(|l| indent(l)).min().unwrap();
    let toml_text: String = toml_lines.iter().map(|l| format!("{}\n", l.get(strip..).unwrap_or(""))).collect();
    // The service's own loader: defaults, the file, then the environment; validated.
    let loaded = Config::from_layers(Some((Path::new("configmap.yaml config.toml"), &toml_text)), env.clone())
        .unwrap_or_else(|e| panic!("deploy/kubernetes: {e}"));
    assert!(loaded.warnings.is_empty(), "deployment.yaml sets variables that are no settings: {:?}", loaded.warnings);
    let config = loaded.config;

    // Mounts, by volume name.
    let mounts_at = position(&lines, "volumeMounts:");
    let mount = |volume: &str| -> PathBuf {
        let item = named_item(&lines, mounts_at, volume);
        assert_eq!(value_of(&item, "readOnly"), Some("true"), "the {volume} mount must be read-only");
        PathBuf::from(value_of(&item, "mountPath").unwrap())
    };
    let config_file = PathBuf::from(&env["CTP_CONFIG"]);
    assert_eq!(config_file, mount("config").join("config.toml"), "CTP_CONFIG");

    // Listeners on all interfaces, on the ports the container declares.
    let mut ports = HashMap::new();
    let mut last_name = "";
    for line in &lines {
        if let Some(name) = line.trim().strip_prefix("- name: ") {
            last_name = name;
        }
        if let Some(port) = line.trim().strip_prefix("containerPort: ") {
            ports.insert(last_name, port.parse::<u16>().unwrap());
        }
    }
    let listeners = [
        ("public", config.listen.public),
        ("internal", config.listen.internal),
        ("admin", config.listen.admin),
        ("widget", config.listen.widget),
    ];
    for (name, addr) in listeners {
        assert!(addr.ip().is_unspecified(), "the {name} listener must bind 0.0.0.0 in a pod, not {addr}");
        assert_eq!(ports.get(name), Some(&addr.port()), "containerPort {name} vs the {name} listener");
    }

    // Production keys from the Secret volume, laid out as keys/README.md says, with the
    // current card-number key versions present (the service does not start without them).
    let keys_dir = mount("keys");
    assert_eq!(config.keys_dir, keys_dir, "CTP_KEYS_DIR must be the keys mount");
    let volumes_at = position(&lines, "volumes:");
    let key_paths: Vec<&str> = named_item(&lines, volumes_at, "keys").iter().filter_map(|l| l.trim().strip_prefix("path: ")).collect();
    assert!(key_paths.iter().any(|p| p.starts_with("visa/") && p.ends_with(".pem")), "a Visa verification key");
    assert!(key_paths.iter().any(|p| p.starts_with("issuer/") && p.ends_with(".pem")), "an issuer decryption key");
    assert!(key_paths.iter().any(|p| p.starts_with("saas/webhook-") && p.ends_with(".secret")), "a SaaS webhook secret");
    assert!(key_paths.contains(&format!("pan/fingerprint-{}.key", config.pan.fingerprint_version).as_str()));
    assert!(key_paths.contains(&format!("pan/encryption-{}.key", config.pan.encryption_version).as_str()));
    for path in &key_paths {
        let (dir, file) = path.split_once('/').unwrap_or_else(|| panic!("key item {path} is not in a subdirectory"));
        let fits = match dir {
            "visa" | "issuer" => file.ends_with(".pem"),
            "shared" => file.ends_with(".secret"),
            "pan" => (file.starts_with("fingerprint-") || file.starts_with("encryption-")) && file.ends_with(".key"),
            "saas" => file.starts_with("webhook-") && file.ends_with(".secret"),
            "widget" => (file.starts_with("link-") || file.starts_with("linkhash-")) && file.ends_with(".key"),
            "cvk" => file.ends_with(".key"),
            "jwt" => true,
            _ => false,
        };
        assert!(fits, "key item {path} does not fit the layout of keys/README.md");
    }
    // The card-details page: its current link key pair, a CVK, and a public https address.
    assert!(config.widget.enabled, "the card-details page is on in the manifest");
    let kid = &config.widget.link_key_version;
    for file in [format!("widget/link-{kid}.key"), format!("widget/linkhash-{kid}.key")] {
        assert!(key_paths.contains(&file.as_str()), "{file}: the current link keys (the service does not start without them)");
    }
    for tenant in config.tenants.iter() {
        let cvk = format!("cvk/{}.key", tenant.id);
        assert!(key_paths.contains(&cvk.as_str()), "{cvk}: tenant {}'s card verification key", tenant.id);
    }
    assert!(config.widget.public_url.as_deref().is_some_and(|u| u.starts_with("https://")), "the page's public https address");
    let jwks = config.auth.jwks_file.as_ref().expect("internal API tokens verified with a JWKS");
    let jwks_in_keys = jwks.strip_prefix(&keys_dir).expect("the JWKS file is in the keys mount");
    assert!(key_paths.contains(&jwks_in_keys.to_str().unwrap()), "the JWKS file is one of the keys items");

    // TLS (mutual TLS) on the public listener, from the tls mount.
    let tls_dir = mount("tls");
    let tls = config.tls.as_ref().expect("TLS on the public listener");
    assert!(tls.cert.starts_with(&tls_dir) && tls.key.starts_with(&tls_dir));
    assert!(tls.client_ca.as_ref().is_some_and(|ca| ca.starts_with(&tls_dir)), "mutual TLS for Visa");

    // Production collaborators, not the development defaults.
    assert_eq!(config.outbox.publisher, PublisherKind::Rabbitmq);
    assert!(config.saas.base_url.is_some(), "without CTP_SAAS_URL `serve` runs the embedded simulator");
    assert!(config.database.url.expose_secret().starts_with("postgres"), "PostgreSQL, not SQLite");

    // Kubernetes waits longer than the preStop pause plus the drain before SIGKILL.
    let grace: u64 = value_of(&lines, "terminationGracePeriodSeconds").unwrap().parse().unwrap();
    let sleep_line = lines.iter().find(|l| l.contains("\"sleep\"")).expect("a preStop sleep");
    let pause: u64 = sleep_line.rsplit('"').nth(1).unwrap().parse().unwrap();
    assert!(
        grace > pause + config.http.drain_timeout.as_secs(),
        "terminationGracePeriodSeconds {grace} must exceed preStop {pause}s + http.drain_timeout {:?}",
        config.http.drain_timeout
    );
}
