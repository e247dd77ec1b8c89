//! `ctp-issuer outbox list [--dead]` and `ctp-issuer outbox redrive [ID...]`: what an
//! operator needs when the relay has given up on events (see `docs/outbox.md`).
//!
//! Payloads are not printed: they may carry a consumer's name and contact details.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;

use super::format_millis;
use crate::store::outbox::OutboxEntry;
use crate::store::{Store, epoch_millis};

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Unpublished events, oldest first (without their payloads).
    List {
        /// The dead events (given up on after `outbox.max_attempts` tries) instead of
        /// those still waiting.
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put dead events back in line with a fresh count of tries; every dead event when no
    /// ID is given. A running relay picks them up on its next round.
    Redrive { ids: Vec<i64> },
}

/// Runs `command` on `store`, then closes it.
pub async fn run(store: Store, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let result = match command {
        OutboxCommand::List { dead, limit } => list(&store, dead, limit).await,
        OutboxCommand::Redrive { ids } => redrive(&store, &ids).await,
    };
    store.close().await;
    result
}

/// Prints unpublished events, oldest first: the dead ones, or those still waiting.
async fn list(store: &Store, dead: bool, limit: i64) -> anyhow::Result<ExitCode> {
    let entries = store.list_outbox(dead, limit).await?;
    if entries.is_empty() {
        println!("{}", if dead { "no dead events" } else { "no events waiting" });
    }
    for entry in &entries {
        println!("{}", describe(entry));
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(e: &OutboxEntry) -> String {
    let state = match (e.dead_at, &e.claimed_by) {
        (Some(at), _) => format!("dead since {}", format_millis(at)),
        (None, Some(owner)) => format!("claimed by {owner} until {}", format_millis(e.next_attempt_at)),
        (None, None) => format!("next try {}", format_millis(e.next_attempt_at)),
    };
    format!(
        "{}  {}  {}  tenant={} attempts={}  {}  last_error={}",
        e.id,
        format_millis(e.created_at),
        e.event_type,
        e.tenant,
        e.attempts,
        state,
        e.last_error.as_deref().unwrap_or("-"),
    )
}

/// Puts dead events back in line with a fresh count of tries: the given ids, or every
/// dead event when none is given. Fails (exit 1) if an id given was not dead.
async fn redrive(store: &Store, ids: &[i64]) -> anyhow::Result<ExitCode> {
    let now = epoch_millis(SystemTime::now());
    let redriven = store.redrive_outbox((!ids.is_empty()).then_some(ids), now).await?;
    let listed: Vec<String> = redriven.iter().map(i64::to_string).collect();
    println!("redriven: {} event(s){}", redriven.len(), if listed.is_empty() { String::new() } else { format!(": {}", listed.join(" ")) });
    let missed: Vec<String> = ids.iter().filter(|id| !redriven.contains(id)).map(i64::to_string).collect();
    if missed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("not dead (already waiting, published, or no such event): {}", missed.join(" "));
        Ok(ExitCode::from(1))
    }
}
