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

use super::Batch;
use crate::engine::alert::SavedAlert;

/// File of the alert states in the outbox directory, so a restart neither repeats a firing
/// nor forgets to resolve.
pub(crate) const ALERT_STATE: &str = "alert-state.json";

/// What went wrong with a file of the outbox (check the directory's space and permissions).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {}: {source}", path.display())]
    Json { what: &'static str, path: PathBuf, source: serde_json::Error },
}

/// An I/O error on `path`, saying what was being done.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError {
    let path = path.to_path_buf();
    move |source| OutboxError::Io { what, path, source }
}

fn json(what: &'static str, path: &Path) -> impl FnOnce(serde_json::Error) -> OutboxError {
    let path = path.to_path_buf();
    move |source| OutboxError::Json { what, path, source }
}

/// The outbox directory.
pub(crate) struct Outbox {
    dir: PathBuf,
    queue: PathBuf,
    seq: AtomicU64,
}

/// A queued batch and the file that holds it.
pub(crate) struct Queued {
    pub path: PathBuf,
    pub batch: Batch,
}

impl Outbox {
    /// Opens (creating) `dir` and its `queue/`.
    pub(crate) fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let queue = dir.join("queue");
        fs::create_dir_all(&queue).map_err(io("cannot create the outbox directory", &queue))?;
        // Leftovers of a write cut short by a crash are incomplete by construction.
        for entry in fs::read_dir(&queue).map_err(io("cannot read", &queue))?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Outbox { dir, queue, seq: AtomicU64::new(0) })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a batch durably; returns its file.
    pub(crate) fn enqueue(&self, batch: &Batch) -> Result<PathBuf, OutboxError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.write(&format!("{:013}-{:06}-{}.json", batch.created_ms, seq, std::process::id()), batch)
    }

    fn write(&self, name: &str, batch: &Batch) -> Result<PathBuf, OutboxError> {
        let path = self.queue.join(name);
        let tmp = self.queue.join(format!("{name}.tmp"));
        let bytes = serde_json::to_vec(batch).map_err(json("cannot encode", &path))?;
        write_durably(&tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(io("cannot move into the outbox:", &tmp))?;
        sync_dir(&self.queue)?;
        Ok(path)
    }

    /// Writes a batch under a name made of its id, unless one is queued there already;
    /// says whether it was written.
    pub(crate) fn enqueue_once(&self, batch: &Batch) -> Result<bool, OutboxError> {
        let name = format!("{:013}-{:016x}.json", batch.created_ms, batch.id());
        if self.queue.join(&name).exists() {
            return Ok(false);
        }
        self.write(&name, batch).map(|_| true)
    }

    /// Removes the queued batches `which` picks; says how many.
    pub(crate) fn drop_queued(&self, which: impl Fn(&Batch) -> bool) -> usize {
        let picked: Vec<PathBuf> = self.queued().into_iter().filter(|q| which(&q.batch)).map(|q| q.path).collect();
        let paths: Vec<&Path> = picked.iter().map(PathBuf::as_path).collect();
        if let Err(e) = self.remove(&paths) {
            tracing::warn!("{e:#}");
        }
        paths.len()
    }

    /// Every queued batch, oldest first. Unreadable files are reported and left in place.
    pub(crate) fn queued(&self) -> Vec<Queued> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&self.queue) else {
            return out;
        };
        let mut paths: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
        paths.sort();
        for path in paths {
            let read = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Batch>(&b).map_err(|e| e.to_string()));
            match read {
                Ok(batch) => out.push(Queued { path, batch }),
                Err(e) => {
                    tracing::error!(file = %path.display(), "cannot read a queued notification, left in place: {e}")
                }
            }
        }
        out
    }

    /// Removes delivered batches.
    pub(crate) fn remove(&self, paths: &[&Path]) -> Result<(), OutboxError> {
        for p in paths {
            fs::remove_file(p).map_err(io("cannot remove from the outbox:", p))?;
        }
        sync_dir(&self.queue)
    }

    /// Saves the alert states of every model (replacing the previous file atomically).
    pub(crate) fn save_alerts(&self, alerts: &BTreeMap<String, Vec<SavedAlert>>) -> Result<(), OutboxError> {
        let path = self.dir.join(ALERT_STATE);
        let bytes = serde_json::to_vec_pretty(alerts).map_err(json("cannot encode", &path))?;
        replace_durably(&path, &bytes).map_err(io("cannot write", &path))
    }

    /// The alert states saved by an earlier run (empty when there are none).
    pub(crate) fn load_alerts(&self) -> Result<BTreeMap<String, Vec<SavedAlert>>, OutboxError> {
        let path = self.dir.join(ALERT_STATE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(json("cannot read", &path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io("cannot read", &path)(e)),
        }
    }

    /// Writes a rendered message as `<name>.eml` in the outbox directory (no SMTP server).
    pub(crate) fn write_eml(&self, name: &str, message: &[u8]) -> Result<PathBuf, OutboxError> {
        let path = self.dir.join(format!("{name}.eml"));
        let tmp = self.dir.join(format!("{name}.eml.tmp"));
        write_durably(&tmp, message)?;
        fs::rename(&tmp, &path).map_err(io("cannot write", &path))?;
        sync_dir(&self.dir)?;
        Ok(path)
    }
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file, fsynced, renamed
/// over it, and the directory fsynced (the file holds the old bytes or the new, never part).
pub(crate) fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path).map_err(io("cannot create", path))?;
    f.write_all(bytes).map_err(io("cannot write", path))?;
    f.sync_all().map_err(io("cannot fsync", path))
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("cannot fsync the directory", dir))
}
