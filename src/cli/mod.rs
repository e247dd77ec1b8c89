//! The command line. Each subcommand loads the configuration, and every one that touches
//! the database brings its schema up to date first.

mod outbox;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::app::{App, Listeners};
use crate::config::{Config, Loaded};
use crate::ids::TenantId;
use crate::pan::PanKeys;
use crate::registry::CardRegistry;
use crate::registry::import::import_kits;
use crate::sim::client::{ClientTls, send};
use crate::sim::visa::{ContentEncryption, IatForm, NotificationBuilder, enrollment_payload, notification_path};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(name = "ctp-issuer", version, about = "An issuer's Click to Pay backend")]
pub struct Cli {
    /// TOML configuration file; `CTP_*` environment variables override it.
    #[arg(long, global = true, env = "CTP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: public, internal and admin listeners.
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// The issuer's card registry.
    Kits {
        #[command(subcommand)]
        command: KitsCommand,
    },
    /// Stand-ins for outside parties, run as servers (`sim saas`: the Click to Pay SaaS).
    Sim {
        #[command(subcommand)]
        command: crate::sim::saas::SimCommand,
    },
    /// Act as Visa Token Service.
    Visa {
        #[command(subcommand)]
        command: VisaCommand,
    },
    /// Enrollment attempts recorded from Visa's notifications.
    Attempts {
        #[command(subcommand)]
        command: AttemptsCommand,
    },
    /// The outbox of events for the issuer's other systems: list, and redrive dead events.
    Outbox {
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Mint a development bearer token for the internal API (signed with the HS256
    /// secret, by default `KEYS_DIR/jwt/dev-hs256.secret`).
    Token {
        /// Tenant the token may act for (repeat for several; `*` for all).
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        /// How long the token is valid, e.g. `1h`, `30m`.
        #[arg(long, default_value = "1h", value_parser = humantime_serde::re::humantime::parse_duration)]
        ttl: std::time::Duration,
        #[arg(long, default_value = "developer")]
        subject: String,
    },
}

#[derive(Debug, Subcommand)]
enum KitsCommand {
    /// Import kits from CSV (columns by header name: entity_id, kit_no, pan required;
    /// tenant, expiry, first_name, last_name, email, phone optional).
    Import {
        /// Tenant for rows without a `tenant` column value.
        #[arg(long)]
        tenant: Option<String>,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyMode {
    /// JWS PS256 by Visa's key, JWE RSA-OAEP-256 to the issuer's key.
    Rsa,
    /// JWS PS256 by Visa's key, JWE A256GCMKW with the shared secret.
    Shared,
    /// JWS HS256 and JWE A256GCMKW, both with the shared secret.
    SharedHs256,
}

#[derive(Debug, Subcommand)]
enum VisaCommand {
    /// Send one signed and encrypted CTP_ENROLLMENT_ATTEMPT notification, as Visa would.
    Send {
        /// Base URL of the public listener; defaults to the configured public address.
        #[arg(long)]
        url: Option<String>,
        /// Card number the consumer is enrolling (a Visa test number by default).
        #[arg(long, default_value = "4111111111111111")]
        pan: String,
        #[arg(long, default_value = "40010030273")]
        token_requestor_id: String,
        #[arg(long, value_enum, default_value = "rsa")]
        mode: KeyMode,
        #[arg(long, value_enum, default_value = "a256gcm")]
        enc: ContentEncryption,
        #[arg(long, value_enum, default_value = "string-seconds")]
        iat: IatForm,
        #[arg(long, default_value = "Jane")]
        first_name: String,
        #[arg(long, default_value = "Doe")]
        last_name: String,
        #[arg(long, default_value = "jane.doe@example.com")]
        email: String,
        #[arg(long, default_value = "+1 (415) 555-0100")]
        phone: String,
        /// CA to trust for an https URL.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Client certificate and key for mutual TLS.
        #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
        client_cert: Option<Vec<PathBuf>>,
    },
}

#[derive(Debug, Subcommand)]
enum AttemptsCommand {
    /// The most recent attempts, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

/// Parses the command line and runs it; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Loaded { config, warnings } = match Config::load_with_warnings(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("ctp-issuer: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::telemetry::init_logging(&config.log) {
        eprintln!("ctp-issuer: log.filter: {e}");
        return ExitCode::from(2);
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if let (Command::Serve, Err(problem)) = (&cli.command, config.saas_choice()) {
        eprintln!("ctp-issuer: invalid configuration: {problem}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ctp-issuer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ctp-issuer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Kits { command: KitsCommand::Import { tenant, file } } => import(config, tenant, file).await,
        Command::Visa { command } => visa_send(config, command).await,
        Command::Sim { command } => crate::sim::saas::cli::run(config, command).await,
        Command::Attempts { command: AttemptsCommand::List { limit } } => list_attempts(config, limit).await,
        Command::Outbox { command } => outbox::run(open_store(&config).await?, command).await,
        Command::Token { tenants, ttl, subject } => {
            let secret = config.auth.hs256_secret_file.clone().unwrap_or_else(|| crate::auth::dev_secret_path(&config.keys_dir));
            println!("{}", crate::auth::mint_token(&secret, &tenants, &subject, ttl)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens the database, creating it and bringing its schema up to date if needed.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    crate::http::tls::install_crypto_provider();
    Store::connect(&config.database).await.context("opening the database")
}

/// Opens a database that must exist: commands that only read do not create one.
async fn open_existing_store(config: &Config) -> anyhow::Result<Store> {
    crate::http::tls::install_crypto_provider();
    Store::open_existing(&config.database).await.context("opening the database")
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let listeners = Listeners::bind(&config).await?;
    let app = App::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(app.clone(), shutdown.clone()));
    app.serve(listeners, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM / SIGINT: stop accepting, drain, exit. SIGHUP: reload the Visa keys.
async fn watch_signals(app: App, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => if let Err(e) = app.services().reload_visa_keys() {
                tracing::error!(error = %e, "key reload failed; keeping the previous keys");
            },
        }
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

async fn import(config: Config, tenant: Option<String>, file: PathBuf) -> anyhow::Result<ExitCode> {
    let tenant = tenant.as_deref().map(TenantId::parse).transpose().map_err(|e| anyhow::anyhow!("--{e}"))?;
    let store = open_store(&config).await?;
    let keys = Arc::new(PanKeys::load(&config.keys_dir, &config.pan.fingerprint_version, &config.pan.encryption_version)?);
    let registry = CardRegistry::new(store.clone(), keys, Arc::new(crate::state::tenants_of(&config)));
    let input = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let size = input.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(size) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = import_kits(std::io::BufReader::new(input), tenant.as_ref(), &registry, |b| bar.set_position(b)).await;
    bar.finish_and_clear();
    store.close().await;
    let report = report?;
    for error in &report.rejected {
        eprintln!("{}: {error}", file.display());
    }
    println!(
        "{} rows: {} inserted, {} updated, {} unchanged, {} rejected",
        report.rows(),
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected.len()
    );
    Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn visa_send(config: Config, command: VisaCommand) -> anyhow::Result<ExitCode> {
    let VisaCommand::Send { url, pan, token_requestor_id, mode, enc, iat, first_name, last_name, email, phone, ca, client_cert } = command;
    let mut builder = match mode {
        KeyMode::Rsa => NotificationBuilder::rsa_from_dir(&config.keys_dir)?,
        KeyMode::Shared => NotificationBuilder::shared_from_dir(&config.keys_dir, false)?,
        KeyMode::SharedHs256 => NotificationBuilder::shared_from_dir(&config.keys_dir, true)?,
    };
    builder.enc = enc;
    builder.iat_form = iat;
    let payload = enrollment_payload(&pan, &first_name, &last_name, &email, &phone);
    let body = builder.body(&payload, SystemTime::now())?;

    let scheme_default = if config.tls.is_some() { "https" } else { "http" };
    let url = url.unwrap_or_else(|| format!("{scheme_default}://{}", config.listen.public));
    let (https, authority) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest.trim_end_matches('/')),
        Some(("http", rest)) => (false, rest.trim_end_matches('/')),
        _ => anyhow::bail!("--url must start with http:// or https://"),
    };
    let tls = if https {
        let ca = ca.context("an https URL needs --ca")?;
        let client = client_cert.as_ref().map(|v| (v[0].as_path(), v[1].as_path()));
        Some(ClientTls::new(&ca, client)?)
    } else {
        None
    };
    let path = notification_path(&token_requestor_id);
    let (status, _) = send(authority, tls.as_ref(), http::Method::POST, &path, body).await?;
    let meaning = match status.as_u16() {
        200 => "recorded (or a duplicate, answered without effect)",
        400 => "rejected as malformed",
        401 => "rejected: signature, key or freshness",
        404 => "no kit has this card number",
        _ => "server error; Visa would retry",
    };
    println!("POST {url}{path} -> {status}: {meaning}");
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn list_attempts(config: Config, limit: i64) -> anyhow::Result<ExitCode> {
    let store = open_existing_store(&config).await?;
    let rows = store.recent_attempts(limit).await?;
    store.close().await;
    if rows.is_empty() {
        println!("no enrollment attempts recorded");
    }
    for row in rows {
        println!(
            "{}  {}  tenant={} entity={} kit={} card=****{} tr={} name={} {} email={} jws_kid={} jwe_kid={}",
            row.id,
            format_millis(row.received_at),
            row.tenant,
            row.entity_id,
            row.kit_no,
            row.pan_last4,
            row.token_requestor_id,
            row.first_name.as_deref().unwrap_or("-"),
            row.last_name.as_deref().unwrap_or("-"),
            row.email.as_deref().unwrap_or("-"),
            row.jws_kid,
            row.jwe_kid,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn format_millis(ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime_serde::re::humantime::format_rfc3339_seconds(t).to_string()
}
