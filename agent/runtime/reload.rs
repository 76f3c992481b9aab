//! Configuration reload: SIGHUP, or a change in the configuration's files (the file, its rule
//! files, the models' baselines — so also a Kubernetes ConfigMap's `..data` symlink swap,
//! which changes what the paths resolve to), re-reads and validates the configuration.
//!
//! A valid one is applied between two chunks by the pipeline thread, without touching the
//! source (Kafka membership and offsets stay): unchanged models keep all their state; a model
//! whose rules alone changed keeps its windows; any other changed model has its open windows
//! evaluated under the old configuration and starts afresh. Alert states carry over by rule
//! name. Settings the running process is built on — `[agent]` (but `rule_files`), `[source]`,
//! `[notify]` and the set of topics — need a restart: a reload that changes them is rejected.
//! A rejected reload is logged with its errors and counted, and the old configuration keeps
//! running; the same files are not tried again until they change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};

use crate::adapters::config::{Config, Model};
use crate::runtime::input::{Input, ReloadRequest};
use crate::runtime::internal_events::InternalEvent;
use crate::runtime::metrics::{Metrics, ReloadResult};
use crate::runtime::notify::{Notifier, NotifyError, Queue};
use crate::runtime::pipeline::{Incoming, Reloaded};
use crate::runtime::setup::{Feed, TopicTable};
use crate::runtime::status::Shared;

/// Watches the running configuration and hands reloads to the pipeline thread.
pub(crate) struct Watcher {
    pub config: Config,
    pub feed: Feed,
    pub table: TopicTable,
    pub max_event_bytes: usize,
    pub shared: Arc<Shared>,
    pub requests: tokio::sync::mpsc::Sender<Input>,
    /// The alert notifier, once any model has rules (stopped at shutdown by `run`).
    pub notifier: Arc<Mutex<Option<Notifier>>>,
    /// Replaces `[notify] outbox` (as at start).
    pub outbox: Option<std::path::PathBuf>,
}

/// The SHA-256 of a configuration's files: the file itself, then its rule files in order
/// (the `sha256` of `driftwatch_config_info`).
pub(crate) fn config_digest(config: &Config) -> String {
    let mut hash = Sha256::new();
    for path in std::iter::once(&config.path).chain(&config.agent.rule_files) {
        hash.update(std::fs::read(path).unwrap_or_default());
    }
    format!("{:x}", hash.finalize())
}

/// What the configuration's files look like now: their digest, and the size and
/// modification time of each baseline.
fn fingerprint(config: &Config) -> String {
    let stamps: Vec<_> = config.models.iter().map(|m| baseline_stamp(&m.baseline)).collect();
    format!("{} {stamps:?}", config_digest(config))
}

fn baseline_stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Settings that need a restart, if `new` changes any.
fn needs_restart(old: &Config, new: &Config) -> Option<&'static str> {
    let agent = |c: &Config| {
        let mut a = c.agent.clone();
        a.rule_files.clear();
        format!("{a:?}")
    };
    if agent(old) != agent(new) {
        Some("[agent] (other than rule_files)")
    } else if format!("{:?}", old.source) != format!("{:?}", new.source) {
        Some("[source]")
    } else if format!("{:?}", old.notify) != format!("{:?}", new.notify) {
        Some("[notify]")
    } else {
        None
    }
}

/// What a model is, without where it was written (positions move when other text changes)
/// and, unless `with_rules`, without its rules.
fn shape(m: &Model, with_rules: bool) -> String {
    let mut m = m.clone();
    m.rule_sources.clear();
    if !with_rules {
        m.rules.clear();
    }
    let text = format!("{m:?}");
    match regex::Regex::new(r"Pos \{ line: \d+, col: \d+ \}") {
        Ok(re) => re.replace_all(&text, "Pos").into_owned(),
        Err(_) => text,
    }
}

impl Watcher {
    /// Runs until `stop`: reloads on SIGHUP and, every `watch_interval`, when the files changed.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut seen = fingerprint(&self.config);
        let interval = self.config.agent.watch_interval;
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "cannot listen for SIGHUP ({e}); configuration changes are picked up from the files only"
                );
                None
            }
        };
        loop {
            let hup = async {
                #[cfg(unix)]
                if let Some(h) = hangup.as_mut() {
                    h.recv().await;
                    return;
                }
                std::future::pending::<()>().await
            };
            let tick = async {
                if interval.is_zero() {
                    std::future::pending::<()>().await
                }
                tokio::time::sleep(interval).await
            };
            let why = tokio::select! {
                _ = hup => "SIGHUP",
                _ = tick => {
                    if fingerprint(&self.config) == seen {
                        continue;
                    }
                    "the configuration files changed"
                }
                _ = stop.changed() => return,
            };
            self.reload(why).await;
            // Applied or rejected, these files have been read: wait for their next change.
            seen = fingerprint(&self.config);
        }
    }

    async fn reload(&mut self, why: &str) {
        let path = self.config.path.clone();
        tracing::info!(config = %path.display(), "{why}: reloading the configuration");
        let config = path.as_path();
        let result = self.try_reload().await;
        let finished = match &result {
            Ok(None) => ReloadFinished::Unchanged { config },
            Ok(Some(done)) => ReloadFinished::Applied { config, done },
            Err(errors) => ReloadFinished::Rejected { config, errors },
        };
        finished.emit(&self.shared.metrics);
    }

    /// `Ok(None)`: valid, but no model changed (the running configuration is replaced all
    /// the same, so comments and layout follow the file).
    async fn try_reload(&mut self) -> Result<Option<Reloaded>, Vec<String>> {
        let new = crate::adapters::config::load(&self.config.path)
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        if let Some(what) = needs_restart(&self.config, &new) {
            return Err(vec![format!("{what} changed: restart the agent to apply it")]);
        }
        let table = TopicTable::of(&new, self.feed).map_err(|e| vec![e])?;
        if table.topics != self.table.topics {
            return Err(vec![format!(
                "the topics read changed (from {:?} to {:?}): restart the agent to apply it",
                self.table.topics, table.topics
            )]);
        }
        let old_stamps: HashMap<&str, Option<(u64, SystemTime)>> =
            self.config.models.iter().map(|m| (m.id.as_str(), baseline_stamp(&m.baseline))).collect();
        let mut incoming = Vec::new();
        let mut changed = new.models.len() != self.config.models.len();
        for (i, m) in new.models.iter().enumerate() {
            let old = self.config.model(&m.id);
            let same_baseline = old.is_some_and(|o| o.baseline == m.baseline)
                && old_stamps.get(m.id.as_str()).is_some_and(|s| *s == baseline_stamp(&m.baseline));
            changed |= self.config.models.get(i).is_none_or(|o| o.id != m.id);
            incoming.push(match old {
                Some(o) if same_baseline && shape(o, true) == shape(m, true) => Incoming::Keep(m.id.clone()),
                Some(o) if same_baseline && shape(o, false) == shape(m, false) => {
                    changed = true;
                    Incoming::Rules(crate::runtime::setup::load_model(m).await.map_err(|e| vec![format!("{e:#}")])?)
                }
                _ => {
                    changed = true;
                    Incoming::Fresh(crate::runtime::setup::load_model(m).await.map_err(|e| vec![format!("{e:#}")])?)
                }
            });
        }
        if !changed {
            self.config = new;
            self.set_info();
            return Ok(None);
        }
        let queue = self.start_notifier(&new).map_err(|e| vec![format!("{e:#}")])?;
        let (reply, answer) = oneshot::channel();
        let request =
            ReloadRequest { incoming, table: table.clone(), max_event_bytes: self.max_event_bytes, queue, reply };
        self.requests.send(Input::Reload(request)).await.map_err(|_| vec!["the pipeline has stopped".to_string()])?;
        let done = tokio::time::timeout(Duration::from_secs(60), answer)
            .await
            .map_err(|_| vec!["the pipeline did not take the configuration within 60 s".to_string()])?
            .map_err(|_| vec!["the pipeline has stopped".to_string()])?
            .map_err(|e| vec![e.to_string()])?;
        self.config = new;
        self.table = table;
        self.set_info();
        Ok(Some(done))
    }

    /// Starts the notifier when the first rules arrive; its queue goes to the pipeline.
    fn start_notifier(&self, new: &Config) -> Result<Option<Queue>, NotifyError> {
        let mut slot = self.notifier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() || new.models.iter().all(|m| m.rules.is_empty()) {
            return Ok(None);
        }
        let mut notify = new.notify.clone();
        if let Some(dir) = &self.outbox {
            notify.outbox = dir.clone();
        }
        let (notifier, queue) = Notifier::start(&notify, self.shared.clone(), true)?;
        *slot = Some(notifier);
        Ok(Some(queue))
    }

    fn set_info(&self) {
        let info = &self.shared.metrics.config_info;
        info.reset();
        info.with_label_values(&[config_digest(&self.config).as_str()]).set(1);
    }
}

/// A configuration reload finished one way or the other.
pub(crate) enum ReloadFinished<'a> {
    /// Valid, but no model changed.
    Unchanged {
        config: &'a Path,
    },
    Applied {
        config: &'a Path,
        done: &'a Reloaded,
    },
    /// Invalid or unfit: every finding, and the running configuration stays.
    Rejected {
        config: &'a Path,
        errors: &'a [String],
    },
}

impl InternalEvent for ReloadFinished<'_> {
    fn emit(self, metrics: &Metrics) {
        let (result, ok) = match &self {
            ReloadFinished::Unchanged { .. } => (ReloadResult::Unchanged, 1),
            ReloadFinished::Applied { .. } => (ReloadResult::Applied, 1),
            ReloadFinished::Rejected { .. } => (ReloadResult::Rejected, 0),
        };
        metrics.count_reload(result);
        metrics.config_last_reload_ok.set(ok);
        match self {
            ReloadFinished::Unchanged { config } => {
                tracing::info!(config = %config.display(), "configuration reloaded: no model changed");
            }
            ReloadFinished::Applied { config, done } => tracing::info!(
                config = %config.display(),
                kept = ?done.kept,
                rules_changed = ?done.rules_changed,
                restarted = ?done.restarted,
                added = ?done.added,
                removed = ?done.removed,
                "configuration reloaded and applied"
            ),
            ReloadFinished::Rejected { config, errors } => {
                for e in errors {
                    tracing::error!(config = %config.display(), "reload rejected: {e}");
                }
                tracing::error!(
                    config = %config.display(),
                    errors = errors.len(),
                    "the configuration was not reloaded; the running one stays in effect"
                );
            }
        }
    }
}
