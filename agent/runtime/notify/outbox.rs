//! The durable outbox: one JSON file per queued batch of alert notices under `queue/`,
//! written to a temporary name, fsynced, renamed and the directory fsynced, so a batch
//! either exists whole or not at all. A batch is removed only after its digest was accepted
//! by the SMTP server (or written as `.eml` when no server is configured). What is queued
//! when the agent stops is sent after it starts again. `alert-state.json` beside the queue
//! keeps the alerts' states across restarts.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

use super::Batch;
use crate::engine::alert::SavedAlert;

/// File of the alert states in the outbox directory, so a restart neither repeats a firing
/// nor forgets to resolve.
pub const ALERT_STATE: &str = "alert-state.json";

/// The outbox directory.
pub struct Outbox {
    dir: PathBuf,
    queue: PathBuf,
    seq: AtomicU64,
}

/// A queued batch and the file that holds it.
pub struct Queued {
    pub path: PathBuf,
    pub batch: Batch,
}

impl Outbox {
    /// Opens (creating) `dir` and its `queue/`.
    pub fn open(dir: &Path) -> anyhow::Result<Outbox> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let queue = dir.join("queue");
        fs::create_dir_all(&queue)
            .with_context(|| format!("cannot create the outbox directory {}", queue.display()))?;
        // Leftovers of a write cut short by a crash are incomplete by construction.
        for entry in fs::read_dir(&queue)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Outbox { dir, queue, seq: AtomicU64::new(0) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a batch durably; returns its file.
    pub fn enqueue(&self, batch: &Batch) -> anyhow::Result<PathBuf> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{:013}-{:06}-{}.json", batch.created_ms, seq, std::process::id());
        let path = self.queue.join(&name);
        let tmp = self.queue.join(format!("{name}.tmp"));
        let bytes = serde_json::to_vec(batch)?;
        write_durably(&tmp, &bytes)?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot move {} into the outbox", tmp.display()))?;
        sync_dir(&self.queue)?;
        Ok(path)
    }

    /// Every queued batch, oldest first. Unreadable files are reported and left in place.
    pub fn queued(&self) -> Vec<Queued> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&self.queue) else {
            return out;
        };
        let mut paths: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
        paths.sort();
        for path in paths {
            match fs::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice(&b)?)) {
                Ok(batch) => out.push(Queued { path, batch }),
                Err(e) => {
                    tracing::error!(file = %path.display(), "cannot read a queued notification, left in place: {e}")
                }
            }
        }
        out
    }

    /// Removes delivered batches.
    pub fn remove(&self, paths: &[&Path]) -> anyhow::Result<()> {
        for p in paths {
            fs::remove_file(p).with_context(|| format!("cannot remove {} from the outbox", p.display()))?;
        }
        sync_dir(&self.queue)
    }

    /// Saves the alert states of every model (replacing the previous file atomically).
    pub fn save_alerts(&self, alerts: &BTreeMap<String, Vec<SavedAlert>>) -> anyhow::Result<()> {
        let path = self.dir.join(ALERT_STATE);
        replace_durably(&path, &serde_json::to_vec_pretty(alerts)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The alert states saved by an earlier run (empty when there are none).
    pub fn load_alerts(&self) -> anyhow::Result<BTreeMap<String, Vec<SavedAlert>>> {
        let path = self.dir.join(ALERT_STATE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("cannot read {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes a rendered message as `<name>.eml` in the outbox directory (no SMTP server).
    pub fn write_eml(&self, name: &str, message: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{name}.eml"));
        let tmp = self.dir.join(format!("{name}.eml.tmp"));
        write_durably(&tmp, message)?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        Ok(path)
    }
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file, fsynced, renamed
/// over it, and the directory fsynced (the file holds the old bytes or the new, never part).
pub fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all().with_context(|| format!("cannot fsync {}", path.display()))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("cannot fsync the directory {}", dir.display()))
}
