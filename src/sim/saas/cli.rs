//! `ctp-issuer sim saas`: the simulator as its own process, for pointing a `serve` (with
//! `saas.base_url`) or any other client at.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{SimConfig, Simulator};
use crate::config::Config;

/// Stand-ins for outside parties, run as servers.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Run the Click to Pay SaaS simulator (docs/saas.md): the eight endpoints, signed
    /// callbacks, fault injection at /_sim/faults.
    Saas(SaasArgs),
}

#[derive(Debug, clap::Args)]
pub struct SaasArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Where callbacks are posted. Default: `saas.callback_url`, else this configuration's
    /// public listener (`listen.public`, https when `tls` is set) and its callback path, so
    /// that a `serve` with `saas.base_url` pointing here gets its callbacks.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Time from accepting a request to completing it (default: `saas.callback_delay`).
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    pub callback_delay: Option<Duration>,
    /// Directory of `webhook-*.secret` files to sign callbacks with (default:
    /// `saas.webhook_secrets_dir`, else `KEYS_DIR/saas`).
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
}

/// Runs the command until SIGINT or SIGTERM.
pub async fn run(mut config: Config, command: SimCommand) -> anyhow::Result<ExitCode> {
    let SimCommand::Saas(args) = command;
    if let Some(dir) = args.secrets_dir {
        config.saas.webhook_secrets_dir = Some(dir);
    }
    let mut sim_config = SimConfig::from_config(&config).context("SaaS simulator")?;
    if let Some(url) = args.callback_url {
        sim_config.callback_url = Some(url);
    }
    if sim_config.callback_url.is_none() {
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let public = config.listen.public;
        sim_config.callback_url = Some(format!("{scheme}://{public}{}", crate::routes::SAAS_CALLBACK_PATH));
    }
    if let Some(delay) = args.callback_delay {
        sim_config.callback_delay = delay;
    }
    let callbacks = sim_config.callback_url.clone().unwrap_or_default();
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = Simulator::start(listener, sim_config)?;
    println!("Click to Pay SaaS simulator on {}; callbacks to {callbacks}", handle.base_url());
    wait_for_signal().await;
    handle.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
