//! Alert notifications: the pipeline queues a batch of notices per model and window in the
//! durable outbox (`outbox.rs`); the notifier thread groups what is queued into one digest per
//! model and recipient list (`email.rs`), waiting `group_wait` for the first notice's
//! companions and at least `group_interval` between two digests of a model, and delivers it
//! by SMTP (lettre) or, with no server configured, as an `.eml` file in the outbox. A batch
//! leaves the outbox only once its digest was accepted; failures are retried with capped
//! exponential backoff and counted by reason. Delivery runs on its own thread and never
//! blocks evaluation or ingestion.

pub(crate) mod email;
pub(crate) mod outbox;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::Transport as _;
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use serde::{Deserialize, Serialize};

use crate::adapters::config::{Notify, SecretError, Smtp, SmtpTls, read_secret};
use crate::engine::alert::Notice;
use crate::runtime::internal_events::{DigestDelivered, DigestFailed, InternalEvent, NotificationQueued};
use crate::runtime::status::Shared;
use email::MessageError;
pub(crate) use outbox::Outbox;
use outbox::OutboxError;

/// What the pipeline queues: the notices of one model and window for one recipient list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Wall-clock time it was queued (ms since the epoch).
    pub created_ms: i64,
    pub model: String,
    /// Empty: the `[notify] to` list.
    pub recipients: Vec<String>,
    pub notices: Vec<Notice>,
}

impl Batch {
    /// The same on every agent for the same notices (not their queueing time): how a cluster
    /// tells a batch it sent from one a successor would send again.
    pub fn id(&self) -> u64 {
        let text = serde_json::to_vec(&(&self.model, &self.recipients, &self.notices)).unwrap_or_default();
        crate::engine::partial::stable_hash(&text)
    }
}

/// Told, on the notifier's thread, which batches of a model the mail server accepted.
pub(crate) type OnDelivered = Arc<dyn Fn(&str, Vec<u64>) + Send + Sync>;

/// Why a delivery failed (the `reason` label of `driftwatch_notification_failures_total`).
pub(crate) fn failure_reason(e: &lettre::transport::smtp::Error) -> &'static str {
    // A failed STARTTLS or SMTPS handshake reaches us as a connection error.
    let text = e.to_string().to_ascii_lowercase();
    if e.is_tls() || text.contains("certificate") || text.contains("ssl routines") || text.contains("handshake") {
        "tls"
    } else if e.is_timeout() {
        "timeout"
    } else if let Some(code) = e.status() {
        match code.to_string().as_str() {
            "530" | "534" | "535" | "538" | "454" => "auth",
            _ if e.is_permanent() => "rejected",
            _ => "transient",
        }
    } else if e.is_response() || e.is_client() {
        "protocol"
    } else {
        "connection"
    }
}

/// lettre's messages repeat their sources (`a: b: b: b`); keep each part once.
fn dedup_chain(text: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if !seen.contains(&part) {
            seen.push(part);
        }
    }
    seen.join(": ")
}

fn hint(reason: &str) -> &'static str {
    match reason {
        "auth" => " — the server refused the user name or password (see username and password_env/password_file)",
        "tls" => {
            " — the TLS handshake failed: is the server's certificate valid for `host`, and its CA trusted (system roots or `ca`)?"
        }
        "connection" | "timeout" => " — is the server up and reachable at host:port?",
        _ => "",
    }
}

/// Why the notifier cannot start or a digest cannot go out.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("cannot read the SMTP CA file {}: {source}", path.display())]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("{} is not a PEM certificate: {source}", path.display())]
    Certificate { path: PathBuf, source: lettre::transport::smtp::Error },
    #[error("cannot set up TLS for SMTP: {0}")]
    Tls(lettre::transport::smtp::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("[notify.smtp] username needs password_env or password_file")]
    NoPassword,
    #[error("cannot start the notifier thread: {0}")]
    Thread(std::io::Error),
    #[error("no recipients: set `to` in [notify] or `recipients` in the rule")]
    NoRecipients,
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The SMTP server's answer, with what to check.
    #[error("{0}")]
    Smtp(String),
}

/// Where digests go.
enum Delivery {
    Smtp(Box<SmtpTransport>),
    Files,
}

impl Delivery {
    fn new(smtp: Option<&Smtp>) -> Result<Delivery, NotifyError> {
        let Some(s) = smtp else {
            return Ok(Delivery::Files);
        };
        let mut builder = SmtpTransport::builder_dangerous(s.host.as_str()).port(s.port).timeout(Some(s.timeout));
        if s.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(s.host.clone());
            if let Some(ca) = &s.ca {
                let pem = std::fs::read(ca).map_err(|source| NotifyError::CaFile { path: ca.clone(), source })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|source| NotifyError::Certificate { path: ca.clone(), source })?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build().map_err(NotifyError::Tls)?;
            builder =
                builder.tls(if s.tls == SmtpTls::Implicit { Tls::Wrapper(params) } else { Tls::Required(params) });
        }
        if let Some(user) = &s.username {
            let password =
                read_secret("[notify.smtp] password", s.password_env.as_deref(), s.password_file.as_deref())?
                    .ok_or(NotifyError::NoPassword)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Delivery::Smtp(Box::new(builder.build())))
    }
}

/// The pipeline's side: queue a batch, wake the notifier.
#[derive(Clone)]
pub struct Queue {
    outbox: Arc<Outbox>,
    wake: mpsc::Sender<()>,
    shared: Arc<Shared>,
    delivered: Arc<Mutex<Option<OnDelivered>>>,
}

impl Queue {
    /// Writes `batch` to the outbox. A failure is logged and counted: the alert state still
    /// moves on (evaluation never stops for the mail path).
    pub fn push(&self, batch: &Batch) {
        let result = self.outbox.enqueue(batch).map(|_| ());
        if result.is_ok() {
            let _ = self.wake.send(());
        }
        NotificationQueued { model: &batch.model, result }.emit(&self.shared.metrics);
    }

    /// Writes `batch` to the outbox unless it is queued already (a cluster's owner queues
    /// what its snapshots list, perhaps again after a restart).
    pub fn push_once(&self, batch: &Batch) {
        let result = self.outbox.enqueue_once(batch);
        if matches!(result, Ok(false)) {
            return;
        }
        if result.is_ok() {
            let _ = self.wake.send(());
        }
        NotificationQueued { model: &batch.model, result: result.map(|_| ()) }.emit(&self.shared.metrics);
    }

    /// Takes a model's queued batches out of the outbox (its new owner sends them).
    pub fn drop_queued(&self, model: &str) -> usize {
        self.outbox.drop_queued(|b| b.model == model)
    }

    /// Calls `f` with each delivered digest's batch ids.
    pub(crate) fn on_delivered(&self, f: OnDelivered) {
        if let Ok(mut d) = self.delivered.lock() {
            *d = Some(f);
        }
    }
}

impl Queue {
    /// Saves every model's alert states; a failure is logged (the alerts go on in memory).
    pub fn save_alerts(&self, alerts: &BTreeMap<String, Vec<crate::engine::alert::SavedAlert>>) {
        if let Err(e) = self.outbox.save_alerts(alerts) {
            tracing::error!("cannot save the alert states: {e:#}");
        }
    }

    /// The alert states an earlier run saved.
    pub fn load_alerts(&self) -> BTreeMap<String, Vec<crate::engine::alert::SavedAlert>> {
        self.outbox.load_alerts().unwrap_or_else(|e| {
            tracing::error!("alert states of the last run are lost, alerts start inactive: {e:#}");
            BTreeMap::new()
        })
    }
}

/// Handle of the notifier thread.
pub(crate) struct Notifier {
    /// The outbox directory (absolute).
    pub outbox: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stopping: Arc<Mutex<bool>>,
}

impl Notifier {
    /// Opens the outbox and starts the notifier thread; returns it with the pipeline's queue.
    /// Without `leftovers`, what an earlier run left queued is dropped, not sent (in a
    /// cluster the models' owners send what their snapshots list).
    pub(crate) fn start(
        config: &Notify,
        shared: Arc<Shared>,
        leftovers: bool,
    ) -> Result<(Notifier, Queue), NotifyError> {
        let outbox = Arc::new(Outbox::open(&config.outbox)?);
        if !leftovers {
            let n = outbox.drop_queued(|_| true);
            if n > 0 {
                tracing::info!(batches = n, "notifications left from an earlier run are left to the models' owners");
            }
        }
        let delivery = Delivery::new(config.smtp.as_ref())?;
        shared.metrics.register_notifications();
        let (wake, woken) = mpsc::channel();
        let stopping = Arc::new(Mutex::new(false));
        let delivered = Arc::new(Mutex::new(None));
        let queue =
            Queue { outbox: outbox.clone(), wake: wake.clone(), shared: shared.clone(), delivered: delivered.clone() };
        let mut worker = Worker {
            outbox,
            delivered,
            delivery,
            config: config.clone(),
            shared,
            last_sent: HashMap::new(),
            retry: HashMap::new(),
            stopping: stopping.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("notifier".into())
            .spawn(move || worker.run(woken))
            .map_err(NotifyError::Thread)?;
        let outbox = queue.outbox.dir().to_path_buf();
        Ok((Notifier { outbox, stop: Some(wake), thread: Some(thread), stopping }, queue))
    }

    /// Sends what is queued once more, without waiting for grouping, then stops. Whatever is
    /// not delivered stays in the outbox for the next start.
    pub(crate) fn stop(mut self) {
        if let Ok(mut s) = self.stopping.lock() {
            *s = true;
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Retry state of one digest key.
struct Retry {
    at: Instant,
    delay: Duration,
}

type Key = (String, Vec<String>);

struct Worker {
    outbox: Arc<Outbox>,
    delivered: Arc<Mutex<Option<OnDelivered>>>,
    delivery: Delivery,
    config: Notify,
    shared: Arc<Shared>,
    last_sent: HashMap<Key, Instant>,
    retry: HashMap<Key, Retry>,
    stopping: Arc<Mutex<bool>>,
}

impl Worker {
    fn run(&mut self, woken: mpsc::Receiver<()>) {
        let queued = self.outbox.queued().len();
        if queued > 0 {
            tracing::info!(batches = queued, outbox = %self.outbox.dir().display(), "notifications left from an earlier run are queued");
        }
        loop {
            let stopping = self.stopping.lock().map(|s| *s).unwrap_or(true);
            let next = self.pass(stopping);
            if stopping {
                return;
            }
            let wait = next.map_or(Duration::from_secs(60), |t| t.saturating_duration_since(Instant::now()));
            match woken.recv_timeout(wait.max(Duration::from_millis(5))) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Delivers every digest that is due; returns when the next one will be.
    fn pass(&mut self, flush: bool) -> Option<Instant> {
        let queued = self.outbox.queued();
        let mut remaining = queued.len();
        self.shared.metrics.notifications_queued.set(remaining as i64);
        let mut groups: BTreeMap<Key, Vec<outbox::Queued>> = BTreeMap::new();
        for q in queued {
            let mut to =
                if q.batch.recipients.is_empty() { self.config.to.clone() } else { q.batch.recipients.clone() };
            to.sort();
            to.dedup();
            groups.entry((q.batch.model.clone(), to)).or_default().push(q);
        }
        let now = Instant::now();
        let wall = chrono::Utc::now().timestamp_millis();
        let mut next: Option<Instant> = None;
        for (key, items) in groups {
            let oldest = items.iter().map(|q| q.batch.created_ms).min().unwrap_or(wall);
            let waited = Duration::from_millis(wall.saturating_sub(oldest).max(0) as u64);
            let mut due = now + self.config.group_wait.saturating_sub(waited);
            if let Some(t) = self.last_sent.get(&key) {
                due = due.max(*t + self.config.group_interval);
            }
            if let Some(r) = self.retry.get(&key) {
                due = due.max(r.at);
            }
            if due > now && !flush {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            match self.deliver(&key, &items) {
                Ok(()) => {
                    remaining -= items.len();
                    self.retry.remove(&key);
                    self.last_sent.insert(key, Instant::now());
                }
                Err((reason, error)) => {
                    let delay = self
                        .retry
                        .get(&key)
                        .map_or(self.config.retry_initial, |r| (r.delay * 2).min(self.config.retry_max));
                    DigestFailed { model: &key.0, reason, retry_in: delay, error }.emit(&self.shared.metrics);
                    let at = Instant::now() + delay;
                    self.retry.insert(key, Retry { at, delay });
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        self.shared.metrics.notifications_retrying.set(self.retry.len() as i64);
        self.shared.metrics.notifications_queued.set(remaining as i64);
        next
    }

    fn deliver(&mut self, key: &Key, items: &[outbox::Queued]) -> Result<(), (&'static str, NotifyError)> {
        let notices: Vec<Notice> = items.iter().flat_map(|q| q.batch.notices.iter().cloned()).collect();
        let (model, to) = key;
        if to.is_empty() && matches!(self.delivery, Delivery::Smtp(_)) {
            return Err(("config", NotifyError::NoRecipients));
        }
        let digest = email::digest(model, &notices, to.clone(), self.config.dashboard_url.as_deref());
        let message = email::message(&digest, &self.config.from).map_err(|e| ("config", e.into()))?;
        match &self.delivery {
            Delivery::Smtp(transport) => {
                transport.send(&message).map_err(|e| {
                    let reason = failure_reason(&e);
                    (reason, NotifyError::Smtp(format!("{}{}", dedup_chain(&e.to_string()), hint(reason))))
                })?;
            }
            Delivery::Files => {
                let name = format!(
                    "{}-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                    model
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                        .collect::<String>()
                );
                let path = self.outbox.write_eml(&name, &message.formatted()).map_err(|e| ("outbox", e.into()))?;
                tracing::info!(model = %model, file = %path.display(), "alert digest written");
            }
        }
        let paths: Vec<&Path> = items.iter().map(|q| q.path.as_path()).collect();
        // Accepted: from here a crash can only cause one duplicate.
        if let Err(e) = self.outbox.remove(&paths) {
            tracing::error!("{e:#}");
        }
        DigestDelivered { model, alerts: notices.len(), subject: &digest.subject }.emit(&self.shared.metrics);
        if let Some(f) = self.delivered.lock().ok().and_then(|d| d.clone()) {
            f(model, items.iter().map(|q| q.batch.id()).collect());
        }
        Ok(())
    }
}
