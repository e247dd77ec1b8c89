//! Pre-built notification bodies, kept in `D/bodies-<mode>.jsonl` so that several runs
//! against fresh databases can share them (building one in RSA mode is one RSA private-key
//! operation, the price the server pays to open it).

use std::collections::HashSet;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use ctp_issuer::sim::fixtures::{Mode, build_bodies, read_cards};

/// Upper bound on the notifications of one mode in a prepared directory.
pub const MAX_NOTIFICATIONS: usize = 2_000_000;

pub fn bodies_path(dir: &Path, mode: Mode) -> PathBuf {
    dir.join(format!("bodies-{}.jsonl", mode.name()))
}

/// Makes sure `dir` holds at least `needed` bodies for `mode`, building and appending the
/// shortfall.
pub fn ensure_bodies(dir: &Path, mode: Mode, needed: usize) -> anyhow::Result<()> {
    if needed > MAX_NOTIFICATIONS {
        bail!("at most {MAX_NOTIFICATIONS} notifications per mode");
    }
    let path = bodies_path(dir, mode);
    let have = match std::fs::File::open(&path) {
        Ok(f) => std::io::BufReader::new(f).lines().map_while(Result::ok).filter(|l| !l.starts_with('#')).count(),
        Err(_) => 0,
    };
    if have >= needed {
        return Ok(());
    }
    let cards = read_cards(&dir.join("kits.csv"))?;
    let started = Instant::now();
    let bodies = build_bodies(&dir.join("keys"), mode, &cards, have, needed - have)?;
    let mut out = BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(&path)?);
    let built = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    writeln!(out, "#ctp-issuer bench bodies mode={} built={built}", mode.name())?;
    for body in &bodies {
        writeln!(out, "{body}")?;
    }
    out.flush()?;
    tracing::info!(mode = mode.name(), built = bodies.len(), seconds = started.elapsed().as_secs_f64(), "notification bodies built");
    Ok(())
}

/// The first `needed` bodies, checked distinct, and the age of the oldest.
pub fn load_bodies(dir: &Path, mode: Mode, needed: usize) -> anyhow::Result<(Vec<Bytes>, Option<Duration>)> {
    let path = bodies_path(dir, mode);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut bodies = Vec::with_capacity(needed);
    let mut oldest = None;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if let Some(meta) = line.strip_prefix('#') {
            let built = meta.split_whitespace().find_map(|kv| kv.strip_prefix("built=")).and_then(|v| v.parse::<u64>().ok());
            if let (None, Some(secs)) = (oldest, built) {
                oldest = SystemTime::now().duration_since(UNIX_EPOCH + Duration::from_secs(secs)).ok();
            }
            continue;
        }
        if bodies.len() == needed {
            break;
        }
        bodies.push(Bytes::from(line));
    }
    if bodies.len() < needed {
        bail!("{} holds {} bodies, {needed} needed", path.display(), bodies.len());
    }
    let distinct: HashSet<&[u8]> = bodies.iter().map(|b| b.as_ref()).collect();
    if distinct.len() != bodies.len() {
        bail!("{} holds repeated bodies: a load must send each notification once", path.display());
    }
    Ok((bodies, oldest))
}
