//! The pipeline core: chunk of payloads → decode → windows → evaluate → metrics and status.
//!
//! Synchronous and single-threaded (evaluation fans out over rayon); wall-clock time comes
//! in as a parameter. For every chunk: decode each payload (rejects are counted by reason and
//! optionally forwarded to a dead-letter sink), add the decoded rows to their model's panes,
//! mark every offset of the chunk seen, close the windows the watermark passed and evaluate
//! them with the same `compare` as `driftwatch check`. The commit frontier then tells the
//! source which offsets may be stored.

mod cluster;
pub use cluster::{OwnerCommits, RecordSink, SendRefused, UNTRACKED};

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use std::sync::Arc;
use std::time::Instant;

use crate::adapters::config::Model;
use crate::adapters::derive::{Compiled, Derive, DeriveError, Dimension, Slicer};
use crate::engine::alert::{AlertView, Book, Outcome as AlertOutcome, Phase};
use crate::engine::chunk::{Chunk, SourceState};
use crate::engine::decode::{FieldError, FieldPath, ModelFields, Position, Reason, Rejected, TopicDecoder};
use crate::engine::evaluate::{Evaluation, Judge, SliceSetup};
use crate::engine::frontier::CommitFrontier;
use crate::engine::impact::ImpactModel;
use crate::engine::labels::{LabelJoin, Labelled, parse_label};
use crate::engine::performance::Cbpe;
use crate::engine::plan::Plan;
use crate::engine::profile::Baseline;
use crate::engine::profile::{FeatureKind, ProfileSpec};
use crate::engine::rules::Severity;
use crate::engine::text::rfc3339;
use crate::engine::window::{ClosedWindow, Windows, millis};
use crate::runtime::checkpoint::{Checkpoint, ModelMark, PartitionMark};
use crate::runtime::internal_events::{AlertTransition, EventRejected, InternalEvent, WindowClosed};
use crate::runtime::metrics::{EventOutcome, Pending};
use crate::runtime::notify::{Batch, Queue};
use crate::runtime::status::{
    BaselineStatus, LabelledSummary, LastWindow, ModelStatus, RECENT_WINDOWS, Shared, SliceSummary, WindowHead,
    WindowStatus, WindowSummary,
};
use crate::runtime::throttle::{MINUTE, Throttle};

/// One model, ready to run: its validated configuration, loaded baseline and check plan.
pub struct ModelSetup {
    pub model: Model,
    pub baseline: Baseline,
    pub plan: Plan,
    /// Label-free performance estimation, fitted on the baseline's scores and labels.
    pub cbpe: Option<Cbpe>,
    /// Reference accuracy per feature bin, to rank drifted features by impact.
    pub impact: Option<ImpactModel>,
    /// Per `[[model.segment]]`: the values a column segment keeps apart (empty for
    /// predicates).
    pub segment_values: Vec<Vec<String>>,
    /// One reference per segment slice, in [`Slicer`] order (`None`: the slice had no
    /// reference rows, so it is not compared).
    pub slices: Vec<SliceSetup>,
}

/// The pipeline cannot take a configuration (the models' fields, derived features or
/// segments do not fit together); nothing of it is applied.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Fields(#[from] FieldError),
    #[error("model \"{model}\": {source}")]
    Derive { model: String, source: DeriveError },
    /// `what` says `segment "name" where SQL`.
    #[error("model \"{model}\": {what}: {source}")]
    Segment { model: String, what: String, source: DeriveError },
    #[error("model \"{0}\": segment slices and their references disagree")]
    Slices(String),
    #[error("model \"{0}\" is not running, so it cannot be kept")]
    NotRunning(String),
    #[error("model \"{0}\" has no [model.labels]")]
    NoLabels(String),
}

/// Receives every evaluation (logs, the demo's terminal summary, tests).
pub type Observer = Box<dyn FnMut(&Evaluation) + Send>;

/// Receives every rejected event: topic index, payload, why.
pub type DeadLetter = Box<dyn FnMut(u16, &[u8], &Rejected) + Send>;

struct ModelRuntime {
    id: String,
    /// What its windows are judged against, and its alert state.
    judge: Judge,
    windows: Windows,
    last_event: Option<Instant>,
    /// Late events since the last window closed (for `late_rate`).
    late_since_close: u64,
    /// Late events not yet said in the log (at most one line a minute per model).
    late_unreported: u64,
    late_log: Throttle<()>,
    truth: Option<GroundTruth>,
    /// Derived features, appended to every decoded batch.
    derive: Derive,
    /// A derived feature failed on a batch (warned once; its values are null).
    derive_failed: bool,
    /// What the model reads from prediction events (to rebuild topic decoders on reload).
    fields: ModelFields,
    /// The shape of its windows' profiles (whole, per slice) and its slicer, for a cluster's
    /// ingest and owner.
    shape: Shape,
    /// In a cluster: the panes of the source partitions this agent reads.
    ingest: Option<crate::engine::ingest::Ingest>,
    /// In a cluster, while this agent owns the model: its windows.
    owner: Option<crate::engine::owner::Owner>,
}

/// What a model's windows summarise: the profile spec, one per slice, and the slicer.
#[derive(Clone)]
struct Shape {
    spec: ProfileSpec,
    slices: Vec<ProfileSpec>,
    slicer: Option<Arc<dyn crate::engine::window::Split>>,
}

/// Ground truth of a model (`[model.labels]`): the join, how its pairs become metrics and
/// what a label event is read as.
struct GroundTruth {
    join: LabelJoin,
    /// The score (classification) or predicted value (regression) feature.
    score: String,
    threshold: f64,
    /// Labels are values, not classes.
    regression: bool,
    fields: ModelFields,
}

impl GroundTruth {
    fn of(s: &ModelSetup) -> Option<GroundTruth> {
        let (labels, p) = (s.model.labels.as_ref()?, s.model.performance.as_ref()?);
        let events = &s.model.events;
        let mut fields =
            ModelFields::new(&s.model.id, events.model_id.clone(), events.timestamp.clone(), events.timestamp_format);
        fields.features = vec![("label".into(), labels.field.clone(), FeatureKind::Categorical)];
        fields.event_id = Some(events.event_id.clone());
        let window = &s.model.window;
        Some(GroundTruth {
            join: LabelJoin::new(millis(labels.horizon), labels.max_pending, millis(window.size), millis(window.slide)),
            score: p.score.clone(),
            threshold: p.threshold,
            regression: p.task == crate::engine::plan::Task::Regression,
            fields,
        })
    }

    /// The realised metrics of a window's pairs.
    fn metrics(&self, w: &Labelled) -> std::collections::BTreeMap<&'static str, Option<f64>> {
        if self.regression {
            return crate::engine::performance::regression(&w.labels, &w.scores);
        }
        let labels: Vec<bool> = w.labels.iter().map(|y| *y >= 0.5).collect();
        let predicted: Vec<bool> = w.scores.iter().map(|s| *s >= self.threshold).collect();
        crate::engine::performance::classification(&labels, &predicted, &w.scores)
    }
}

/// Offsets of one partition that are read again. Below `held`, events are in this run's
/// state already (the partition was revoked and assigned back, and librdkafka reads again
/// from the committed offset): passed over whole. Below `used`, the last run used them (see
/// `checkpoint`): only those of windows still open at the checkpoint are taken again.
#[derive(Clone, Copy)]
struct Reread {
    held: i64,
    used: i64,
}

impl Default for Reread {
    fn default() -> Reread {
        Reread { held: i64::MIN, used: i64::MIN }
    }
}

/// The decoder of one topic and the models reading it (predictions, or labels), in the
/// decoder's order.
struct TopicReader {
    decoder: TopicDecoder,
    models: Vec<ModelKey>,
    labels: bool,
}

/// A model's key in the pipeline: given when the model starts (or restarts with a new
/// configuration), never renumbered or reused, so whatever holds one (a topic's readers, a
/// warning's memory) stays right through reloads that add or remove other models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ModelKey(u32);

/// Decode, window and evaluate; see the module doc. Status updates find a model's entry in
/// the status document by its id, whatever the order of either list.
pub struct Pipeline {
    /// The running models by key (so in the order they started).
    models: BTreeMap<ModelKey, ModelRuntime>,
    next_key: u32,
    /// Per topic: its decoder and the models reading it.
    decoders: Vec<TopicReader>,
    partitions: HashMap<(u16, i32), u32>,
    partition_keys: Vec<(u16, i32)>,
    frontier: CommitFrontier,
    shared: Arc<Shared>,
    observers: Vec<Observer>,
    dead_letter: Option<DeadLetter>,
    warned: HashSet<(Option<ModelKey>, Reason)>,
    notify: Option<Queue>,
    /// The partitions assigned now (models added by a reload expect them too).
    assigned: Vec<(u16, i32)>,
    /// Per interned partition: what is read again (see [`Reread`]).
    reread: Vec<Reread>,
    /// Some partition has a `used` mark (rows must be checked against it).
    rereading: bool,
    /// The checkpoint the run started from, applied to each partition when it is assigned.
    resumed: Option<Checkpoint>,
    /// Topic names by index (the checkpoint names partitions by topic).
    topic_names: Vec<String>,
    /// A window closed since the last checkpoint.
    closed_since_checkpoint: bool,
    /// In a cluster (`[cluster]`): the producer, the owned partitions, what is in flight.
    cluster: Option<cluster::Link>,
}

/// A model of a reloaded configuration (see [`Pipeline::reload`]).
pub enum Incoming {
    /// Unchanged: keeps everything (windows, duplicate memory, label join, alerts).
    Keep(String),
    /// Only its rules changed: keeps its windows; alert states carry over by rule name.
    Rules(ModelSetup),
    /// New, or changed beyond its rules: a running model's open windows are evaluated under
    /// the old configuration first, then its windows start afresh; alert states carry over.
    Fresh(ModelSetup),
}

impl Incoming {
    fn id(&self) -> &str {
        match self {
            Incoming::Keep(id) => id,
            Incoming::Rules(s) | Incoming::Fresh(s) => &s.model.id,
        }
    }
}

/// What a reload did to each model.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub kept: Vec<String>,
    pub rules_changed: Vec<String>,
    pub restarted: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Pipeline {
    /// `topics[i]` lists the ids of the models reading predictions from topic `i`; label
    /// topics follow, numbered from `topics.len()` (see [`Pipeline::read_labels`]).
    pub fn new(
        models: Vec<ModelSetup>,
        topics: &[Vec<String>],
        max_event_bytes: usize,
        shared: Arc<Shared>,
    ) -> Result<Pipeline, PipelineError> {
        let mut built = Vec::new();
        for s in models {
            let derive = derive_of(&s)?;
            let slicer = slicer_of(&s, derive.schema())?;
            built.push(runtime(s, derive, slicer, &shared));
        }
        let mut pipeline = Pipeline {
            models: BTreeMap::new(),
            next_key: 0,
            decoders: Vec::new(),
            partitions: HashMap::new(),
            partition_keys: Vec::new(),
            frontier: CommitFrontier::default(),
            shared,
            observers: Vec::new(),
            dead_letter: None,
            warned: HashSet::new(),
            notify: None,
            assigned: Vec::new(),
            reread: Vec::new(),
            rereading: false,
            resumed: None,
            topic_names: Vec::new(),
            closed_since_checkpoint: false,
            cluster: None,
        };
        for m in built {
            pipeline.start(m);
        }
        for readers in topics {
            let models = pipeline.keys_of(readers)?;
            let fields = models.iter().map(|k| pipeline.models[k].fields.clone()).collect();
            let decoder = TopicDecoder::new(fields, max_event_bytes)?;
            pipeline.decoders.push(TopicReader { decoder, models, labels: false });
        }
        Ok(pipeline)
    }

    /// Adds a running model under a new key.
    fn start(&mut self, m: ModelRuntime) -> ModelKey {
        let key = ModelKey(self.next_key);
        self.next_key += 1;
        self.models.insert(key, m);
        key
    }

    /// The key of the running model `id`.
    fn key_of(&self, id: &str) -> Option<ModelKey> {
        self.models.iter().find(|(_, m)| m.id == id).map(|(&k, _)| k)
    }

    fn keys_of(&self, ids: &[String]) -> Result<Vec<ModelKey>, PipelineError> {
        ids.iter().map(|id| self.key_of(id).ok_or_else(|| PipelineError::NotRunning(id.clone()))).collect()
    }

    /// The running models' keys, to visit each while the pipeline is borrowed mutably.
    fn keys(&self) -> Vec<ModelKey> {
        self.models.keys().copied().collect()
    }

    /// Applies a reloaded configuration between two chunks; `incoming` is its models in
    /// order, `topics` and `label_topics` who reads what (as for [`Pipeline::new`] and
    /// [`Pipeline::read_labels`]; the topics themselves cannot change without a restart).
    /// Everything that can fail is built first: on an error nothing has changed. A topic
    /// whose readers are all unchanged keeps its decoder (and so its duplicate memory).
    pub fn reload(
        &mut self,
        incoming: Vec<Incoming>,
        topics: &[Vec<String>],
        label_topics: &[Vec<String>],
        max_event_bytes: usize,
        now: Instant,
    ) -> Result<Reloaded, PipelineError> {
        // 1. What can fail: compiled expressions, decoders.
        let mut fields: HashMap<&str, (ModelFields, Option<ModelFields>)> = HashMap::new();
        let mut built = Vec::new();
        for inc in &incoming {
            match (inc, self.key_of(inc.id())) {
                (Incoming::Fresh(s), _) => {
                    let derive = derive_of(s)?;
                    let slicer = slicer_of(s, derive.schema())?;
                    fields.insert(inc.id(), (model_fields(s), GroundTruth::of(s).map(|t| t.fields)));
                    built.push(Some((derive, slicer)));
                }
                (_, Some(k)) => {
                    let m = &self.models[&k];
                    fields.insert(inc.id(), (m.fields.clone(), m.truth.as_ref().map(|t| t.fields.clone())));
                    built.push(None);
                }
                (_, None) => return Err(PipelineError::NotRunning(inc.id().to_string())),
            }
        }
        let fresh: HashSet<&str> =
            incoming.iter().filter(|inc| matches!(inc, Incoming::Fresh(_))).map(Incoming::id).collect();
        // A topic read by the same running models, none of them restarting, keeps its decoder.
        let unchanged = |t: usize, readers: &[String], labels: bool| {
            self.decoders.get(t).is_some_and(|old| {
                old.labels == labels
                    && old.models.len() == readers.len()
                    && old
                        .models
                        .iter()
                        .zip(readers)
                        .all(|(k, id)| self.models[k].id == *id && !fresh.contains(id.as_str()))
            })
        };
        let every_topic = topics.iter().map(|r| (r, false)).chain(label_topics.iter().map(|r| (r, true)));
        let mut decoders = Vec::new();
        for (t, (readers, labels)) in every_topic.enumerate() {
            if unchanged(t, readers, labels) {
                decoders.push(None);
                continue;
            }
            let mut f = Vec::new();
            for id in readers {
                let (prediction, truth) =
                    fields.get(id.as_str()).ok_or_else(|| PipelineError::NotRunning(id.clone()))?;
                f.push(match (labels, truth) {
                    (false, _) => prediction.clone(),
                    (true, Some(truth)) => truth.clone(),
                    (true, None) => return Err(PipelineError::NoLabels(id.clone())),
                });
            }
            decoders.push(Some(TopicDecoder::new(f, max_event_bytes)?));
        }
        let wanted: HashSet<String> = incoming.iter().map(|inc| inc.id().to_string()).collect();
        let kept: HashSet<String> =
            incoming.iter().filter(|inc| !matches!(inc, Incoming::Fresh(_))).map(|inc| inc.id().to_string()).collect();

        // 2. Models that stop or restart: their open windows and labelled windows are
        // evaluated under the configuration they were opened with (their offsets are released).
        for k in self.keys() {
            if !kept.contains(&self.models[&k].id) {
                self.close_all(k);
            }
        }

        // 3. Models change in place, restart under a new key or start; the status document
        // follows the configuration's order.
        let mut done = Reloaded::default();
        let mut old_status = self.shared.status.lock().map(|mut st| std::mem::take(&mut st.models)).unwrap_or_default();
        let mut statuses = Vec::new();
        for (inc, parts) in incoming.into_iter().zip(built) {
            let id = inc.id().to_string();
            let key = self.key_of(&id);
            let status = old_status.iter().position(|st| st.id == id).map(|i| old_status.swap_remove(i));
            let metrics = &self.shared.metrics;
            match (inc, key, parts) {
                (Incoming::Keep(_), Some(_), _) => {
                    done.kept.push(id);
                    statuses.push(status.unwrap_or_default());
                }
                (Incoming::Rules(s), Some(k), _) => {
                    let Some(m) = self.models.get_mut(&k) else { continue };
                    let saved = m.judge.alerts.snapshot();
                    m.judge.alerts = Book::new(s.model.rules.clone());
                    m.judge.alerts.restore(saved);
                    forget_stale(metrics, m);
                    m.judge.baseline = s.baseline;
                    done.rules_changed.push(id);
                    statuses.push(status.unwrap_or_default());
                }
                (Incoming::Fresh(s), previous, Some((derive, slicer))) => {
                    let mut fresh = announce(&s, metrics);
                    let mut m = runtime(s, derive, slicer, &self.shared);
                    for &(topic, partition) in &self.assigned {
                        let part = self.partitions.get(&(topic, partition)).copied();
                        let reads = topics.get(topic as usize).is_some_and(|r| r.contains(&id));
                        if let (Some(part), true) = (part, reads) {
                            m.windows.expect_partition(part, now);
                        }
                    }
                    // In a cluster a fresh model ingests too, from the partitions held now.
                    if self.cluster.is_some() {
                        let mut ingest = cluster::ingest_for(&m);
                        for &(topic, partition) in &self.assigned {
                            let part = self.partitions.get(&(topic, partition)).copied();
                            let reads = topics.get(topic as usize).is_some_and(|r| r.contains(&id));
                            if let (Some(part), true, Some(name)) = (part, reads, self.topic_names.get(topic as usize))
                            {
                                ingest.assign(
                                    part,
                                    crate::engine::partial::Source { topic: name.clone(), partition },
                                    now,
                                );
                            }
                        }
                        m.ingest = Some(ingest);
                    }
                    match previous.and_then(|k| self.models.remove(&k)) {
                        Some(p) => {
                            m.judge.alerts.restore(p.judge.alerts.snapshot());
                            forget_stale(metrics, &m);
                            // Its counts and window history go on.
                            if let Some(st) = status {
                                fresh.events = st.events;
                                fresh.windows_closed = st.windows_closed;
                                fresh.last_window = st.last_window;
                                fresh.last_labelled = st.last_labelled;
                                fresh.recent_windows = st.recent_windows;
                            }
                            done.restarted.push(id);
                        }
                        None => done.added.push(id),
                    }
                    self.start(m);
                    statuses.push(fresh);
                }
                // Step 1 found every kept model running and built every fresh one.
                _ => {}
            }
        }
        for k in self.keys() {
            if !wanted.contains(&self.models[&k].id)
                && let Some(m) = self.models.remove(&k)
            {
                self.shared.metrics.forget(&m.id, |_, _| true);
                done.removed.push(m.id);
            }
        }
        // A kept decoder keeps its readers' keys: none of them changed.
        let readers = topics.iter().chain(label_topics);
        for (t, (decoder, readers)) in decoders.into_iter().zip(readers).enumerate() {
            let Some(decoder) = decoder else { continue };
            // Every reader is running now (step 1 found or built each).
            let models = readers.iter().filter_map(|id| self.key_of(id)).collect();
            let reader = TopicReader { decoder, models, labels: t >= topics.len() };
            match self.decoders.get_mut(t) {
                Some(slot) => *slot = reader,
                None => self.decoders.push(reader),
            }
        }
        self.decoders.truncate(topics.len() + label_topics.len());
        self.shared.update_status(|st| st.models = statuses);
        self.warned.clear();
        self.publish();
        Ok(done)
    }

    /// Closes and evaluates every open window and labelled window of model `k`.
    fn close_all(&mut self, k: ModelKey) {
        let started = Instant::now();
        let Some(m) = self.models.get_mut(&k) else { return };
        let closed = m.windows.flush(&mut self.frontier);
        let labelled = m.truth.as_mut().map(|t| t.join.flush()).unwrap_or_default();
        self.evaluate_all(k, closed, started);
        self.realise_all(k, labelled);
    }

    /// Adds a topic of ground truth for `models` (each with `[model.labels]`); label events
    /// carry the model id, event id and time at the model's event paths and the label at
    /// its `field`. The topic's index is the number of topics before it.
    pub fn read_labels(&mut self, readers: &[String], max_event_bytes: usize) -> Result<(), PipelineError> {
        let models = self.keys_of(readers)?;
        let mut fields = Vec::new();
        for k in &models {
            let m = &self.models[k];
            let truth = m.truth.as_ref().ok_or_else(|| PipelineError::NoLabels(m.id.clone()))?;
            fields.push(truth.fields.clone());
        }
        let decoder = TopicDecoder::new(fields, max_event_bytes)?;
        self.decoders.push(TopicReader { decoder, models, labels: true });
        Ok(())
    }

    pub fn observe(&mut self, observer: Observer) {
        self.observers.push(observer);
    }

    pub fn set_dead_letter(&mut self, sink: DeadLetter) {
        self.dead_letter = Some(sink);
    }

    /// Where alert notifications are queued (without it, alerts are tracked and exported
    /// but not sent).
    /// The alert states saved by the last run are taken back first.
    pub fn set_notify(&mut self, queue: Queue) {
        if self.cluster.is_some() {
            // The owners' snapshots hold the alert states and what is to be sent.
            self.cluster_notify(&queue);
            self.notify = Some(queue);
            return;
        }
        let mut saved = queue.load_alerts();
        if self.resumed.is_none() {
            // Without a checkpoint (a replay, the demo, a first start) nothing tells a window
            // evaluated again from a new one of the same time span: every window steps.
            for states in saved.values_mut() {
                for s in states.iter_mut() {
                    s.state.stepped_until = i64::MIN;
                }
            }
        }
        for m in self.models.values_mut() {
            if let Some(states) = saved.remove(&m.id) {
                let n = m.judge.alerts.restore(states);
                if n > 0 {
                    tracing::info!(model = %m.id, alerts = n, "alert states of the last run restored");
                }
            }
        }
        self.notify = Some(queue);
    }

    fn save_alerts(&self) {
        if let Some(q) = self.notify.as_ref().filter(|_| self.cluster.is_none()) {
            let all = self.models.values().map(|m| (m.id.clone(), m.judge.alerts.snapshot())).collect();
            q.save_alerts(&all);
        }
    }

    fn intern(&mut self, topic: u16, partition: i32) -> u32 {
        *self.partitions.entry((topic, partition)).or_insert_with(|| {
            self.partition_keys.push((topic, partition));
            (self.partition_keys.len() - 1) as u32
        })
    }

    /// Runs one chunk through every stage.
    pub fn process(&mut self, chunk: &Chunk, now: Instant) {
        let mut parts = Vec::with_capacity(chunk.records.len());
        // Consecutive records mostly share a partition: look it up once per run.
        let mut last: Option<((u16, i32), u32, Reread)> = None;
        for r in &chunk.records {
            let (part, reread) = match last {
                Some((key, part, reread)) if key == (r.topic, r.partition) => (part, reread),
                _ => {
                    let part = self.intern(r.topic, r.partition);
                    let reread = self.reread.get(part as usize).copied().unwrap_or_default();
                    last = Some(((r.topic, r.partition), part, reread));
                    (part, reread)
                }
            };
            parts.push(part);
            if r.offset < reread.held {
                continue;
            }
            let Some(reader) = self.decoders.get_mut(r.topic as usize) else {
                continue;
            };
            let payload = chunk.payload(r);
            let position = Position { partition: part, offset: r.offset };
            // Read again after a restart: what the last run did with it (counted, dead-
            // lettered) is not done twice.
            let replayed = r.offset < reread.used;
            match reader.decoder.push(payload, r.timestamp, position) {
                Ok(_) => {
                    let misshapen = reader.decoder.take_misshapen();
                    if let (Some(misshapen), Some(sink), false) = (misshapen, &mut self.dead_letter, replayed) {
                        sink(r.topic, payload, &misshapen);
                    }
                }
                Err(rejected) if replayed => {
                    tracing::debug!(
                        reason = rejected.reason.as_str(),
                        offset = r.offset,
                        "bad event read again, passed over: {}",
                        rejected.message
                    );
                }
                Err(rejected) => {
                    let model = rejected.model.and_then(|m| reader.models.get(m).copied());
                    self.reject(model, r.topic, payload, &rejected);
                }
            }
        }
        let shared = self.shared.clone();
        let received_ms = chrono::Utc::now().timestamp_millis();
        for reader in &mut self.decoders {
            for (local, key) in reader.models.iter().enumerate() {
                let Some(mut rows) = reader.decoder.flush(local) else {
                    continue;
                };
                let Some(m) = self.models.get_mut(key) else { continue };
                if reader.labels {
                    if let Some(t) = &mut m.truth {
                        let labels = rows.batch.column(0).as_string::<i32>();
                        for (i, (&id, &time)) in rows.ids.iter().zip(&rows.times).enumerate() {
                            let label =
                                labels.is_valid(i).then(|| parse_label(labels.value(i), t.regression)).flatten();
                            t.join.label(id, time, label);
                        }
                    }
                    continue;
                }
                rows.received_ms = Some(received_ms);
                if !m.derive.is_empty() {
                    rows.batch = match m.derive.apply(&rows.batch) {
                        Ok(b) => b,
                        Err(e) => {
                            if !m.derive_failed {
                                tracing::warn!(model = %m.id, "{e}; its values are null in this batch (further failures at debug)");
                                m.derive_failed = true;
                            } else {
                                tracing::debug!(model = %m.id, "{e}");
                            }
                            m.derive.nulls(&rows.batch)
                        }
                    };
                }
                m.last_event = Some(now);
                if !rows.duplicates.is_empty() {
                    let n = rows.duplicates.len() as u64;
                    shared.metrics.count_events(&m.id, EventOutcome::Duplicate, n);
                    shared.update_model(&m.id, |ms| ms.events.duplicate += n);
                }
                let inserted = match &mut m.ingest {
                    Some(ingest) => ingest.insert(&rows, &mut self.frontier, now),
                    None => m.windows.insert(&rows, &mut self.frontier, now),
                };
                match inserted {
                    Ok(late) => {
                        // Rows the last run used already: late ones were counted then (they
                        // are passed over), the others are back in their open windows.
                        let reread = &self.reread;
                        let replayed = |i: usize| {
                            let p = rows.positions[i];
                            reread.get(p.partition as usize).is_some_and(|m| p.offset < m.used)
                        };
                        // Only while some partition is read again does a row need the check.
                        let (late_replayed, again) = if self.rereading {
                            let late_replayed = late.iter().filter(|&&i| replayed(i)).count();
                            (late_replayed, (0..rows.times.len()).filter(|&i| replayed(i)).count() - late_replayed)
                        } else {
                            (0, 0)
                        };
                        if late_replayed > 0 {
                            tracing::debug!(model = %m.id, events = late_replayed, "events read again of windows the last run closed, passed over");
                        }
                        if let Some(t) = &mut m.truth {
                            let scores =
                                rows.batch.column_by_name(&t.score).and_then(|c| c.as_primitive_opt::<Float64Type>());
                            if let Some(scores) = scores {
                                let mut late_rows = late.iter().peekable();
                                for (i, (&id, &time)) in rows.ids.iter().zip(&rows.times).enumerate() {
                                    if late_rows.next_if(|&&l| l == i).is_some() {
                                        continue;
                                    }
                                    t.join.prediction(id, time, scores.is_valid(i).then(|| scores.value(i)));
                                }
                            }
                        }
                        let accepted = rows.times.len() - late.len() - again;
                        let late_new = late.len() - late_replayed;
                        shared.metrics.count_events(&m.id, EventOutcome::Accepted, accepted as u64);
                        if again > 0 {
                            shared.metrics.replayed.with_label_values(&[m.id.as_str()]).inc_by(again as u64);
                        }
                        if late_new > 0 {
                            m.late_since_close += late_new as u64;
                            m.late_unreported += late_new as u64;
                            shared.metrics.count_events(&m.id, EventOutcome::Dropped(Reason::Late), late_new as u64);
                        }
                        shared.update_model(&m.id, |ms| {
                            ms.events.accepted += accepted as u64;
                            ms.events.late += late_new as u64;
                        });
                    }
                    Err(e) => tracing::error!(model = %m.id, "cannot add rows to the window: {e}"),
                }
            }
        }
        for (r, part) in chunk.records.iter().zip(parts) {
            self.frontier.seen(part, r.offset);
        }
        for m in self.models.values_mut() {
            report_late(m, now, false);
        }
        self.cluster_step(now);
        for k in self.keys() {
            self.advance_model(k, now);
            let labelled = self.models.get_mut(&k).and_then(|m| m.truth.as_mut()).map(|t| t.join.advance());
            self.realise_all(k, labelled.unwrap_or_default());
        }
        self.publish();
    }

    /// Time passes without events: quiet partitions stop holding the watermark back, and
    /// models that have seen no event for their idle timeout close their open windows.
    pub fn tick(&mut self, now: Instant) {
        let mut any = false;
        for m in self.models.values_mut() {
            report_late(m, now, false);
        }
        self.cluster_step(now);
        for k in self.keys() {
            any |= self.advance_model(k, now);
            let Some(m) = self.models.get_mut(&k) else { continue };
            let idle = m.last_event.is_some_and(|t| now.duration_since(t) >= m.judge.spec.idle_timeout);
            if idle && m.windows.open_rows() > 0 {
                tracing::info!(model = %m.id, "no events for {:?}: closing open windows", m.judge.spec.idle_timeout);
                let started = Instant::now();
                let closed = m.windows.flush(&mut self.frontier);
                self.evaluate_all(k, closed, started);
                any = true;
            }
        }
        if any {
            self.publish();
        }
    }

    /// Closes and evaluates model `k`'s windows the watermark has passed; says whether any.
    fn advance_model(&mut self, k: ModelKey, now: Instant) -> bool {
        let started = Instant::now();
        let Some(m) = self.models.get_mut(&k) else { return false };
        let closed = m.windows.advance(&mut self.frontier, now);
        let any = !closed.is_empty();
        self.evaluate_all(k, closed, started);
        any
    }

    /// What the source says about itself: while it is unhealthy (a broker outage) or a
    /// partition has events it has not handed over yet, that is not silence, so the
    /// partitions concerned (all of them while unhealthy) count as active at `now` and
    /// their models are not idle. Call it before [`Pipeline::tick`].
    pub fn source_state(&mut self, state: &SourceState, now: Instant) {
        let healthy = state.healthy_at(now);
        for (i, key) in self.partition_keys.iter().enumerate() {
            if healthy && !state.behind.contains(key) {
                continue;
            }
            let Some(reader) = self.decoders.get(key.0 as usize).filter(|r| !r.labels) else {
                continue;
            };
            for k in &reader.models {
                if let Some(m) = self.models.get_mut(k) {
                    m.windows.touch(i as u32, now);
                    m.last_event = m.last_event.map(|_| now);
                    if let Some(ingest) = &mut m.ingest {
                        ingest.touch(i as u32, now);
                    }
                }
            }
        }
        if !healthy {
            for m in self.models.values_mut() {
                m.last_event = m.last_event.map(|_| now);
            }
        }
    }

    /// Stops without closing open windows (a Kafka source: their events are read again
    /// from the committed offsets by the next run, which evaluates them whole).
    pub fn stop(&mut self, now: Instant) {
        for m in self.models.values_mut() {
            report_late(m, now, true);
            if m.windows.open_rows() > 0 {
                tracing::info!(
                    model = %m.id,
                    windows = m.windows.open_windows(),
                    events = m.windows.open_rows(),
                    "open windows left open: the next run reads their events again and evaluates them whole"
                );
            }
        }
        self.publish();
    }

    /// Closes and evaluates every open window (the end of a replay, or a demo).
    pub fn finish(&mut self) {
        for k in self.keys() {
            self.close_all(k);
        }
        self.publish();
    }

    /// Offsets that may be stored: (topic index, partition, next offset to consume).
    pub fn committable(&self) -> Vec<(u16, i32, i64)> {
        self.partition_keys
            .iter()
            .enumerate()
            .filter_map(|(i, &(t, p))| self.frontier.committable(i as u32).map(|o| (t, p, o)))
            .collect()
    }

    /// The source's partitions changed: assigned ones hold the watermarks of the models
    /// reading their topic until they speak (or idle), revoked ones no longer do.
    pub fn assign(&mut self, assigned: &[(u16, i32, Option<i64>)], now: Instant) {
        for &(topic, partition, committed) in assigned {
            let Some(name) = self.topic_names.get(topic as usize).cloned() else { continue };
            let mark = self.resumed.as_ref().and_then(|c| c.partition(&name, partition, committed)).map(|m| m.seen);
            let part = self.intern(topic, partition) as usize;
            if self.reread.len() <= part {
                self.reread.resize(part + 1, Reread::default());
            }
            // Assigned back after a revoke (a rebalance, a broker restart): what this run read
            // is in its windows or was counted, and will be read again from the committed offset.
            if let Some(seen) = self.frontier.seen_until(part as u32) {
                self.reread[part].held = seen;
            }
            if let Some(seen) = mark.filter(|&s| s > self.reread[part].used) {
                tracing::info!(topic = %name, partition, committed = ?committed, seen, "events below the checkpoint's mark are read again only to rebuild the windows open at the checkpoint");
                self.reread[part].used = seen;
                self.rereading = true;
            }
        }
        let assigned: Vec<(u16, i32)> = assigned.iter().map(|&(t, p, _)| (t, p)).collect();
        self.cluster_assign(&assigned, now);
        let assigned = &assigned[..];
        self.assigned = assigned.to_vec();
        let known: Vec<(u16, i32)> = self.partition_keys.clone();
        for key in known {
            if !assigned.contains(&key) {
                let part = self.intern(key.0, key.1);
                for m in self.models.values_mut() {
                    m.windows.forget_partition(part);
                }
            }
        }
        for &(topic, partition) in assigned {
            let part = self.intern(topic, partition);
            if let Some(reader) = self.decoders.get(topic as usize).filter(|r| !r.labels) {
                for k in &reader.models {
                    if let Some(m) = self.models.get_mut(k) {
                        m.windows.expect_partition(part, now);
                    }
                }
            }
        }
    }

    /// Starts from the last run's checkpoint (see `checkpoint`): models take back their
    /// cursor and last evaluated window where their window shape is unchanged; partitions
    /// take back their marks when they are assigned. `topics` names the topic indices.
    pub fn resume(&mut self, checkpoint: Option<Checkpoint>, topics: &[String]) {
        self.topic_names = topics.to_vec();
        // In a cluster, ingest needs no state of its own and owners restore from the
        // cluster topic (docs/cluster.md).
        let Some(checkpoint) = checkpoint.filter(|_| self.cluster.is_none()) else { return };
        for m in self.models.values_mut() {
            let Some(mark) = checkpoint.models.get(&m.id) else { continue };
            if mark.window != (millis(m.judge.spec.size), millis(m.judge.spec.slide)) {
                tracing::warn!(model = %m.id, "the window size or slide changed since the checkpoint: windows start afresh");
                continue;
            }
            if let Some(cursor) = mark.cursor {
                m.windows.resume(cursor);
            }
            m.judge.evaluated_until = mark.evaluated_until;
            tracing::info!(model = %m.id, cursor = ?mark.cursor.map(rfc3339), evaluated_until = ?mark.evaluated_until.map(rfc3339), "resumed from the checkpoint");
        }
        self.resumed = Some(checkpoint);
    }

    /// The checkpoint of now: each model's cursor and last evaluated window, each
    /// partition's committable offset and how far it was seen. Taking it resets
    /// [`Pipeline::closed_since_checkpoint`].
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.closed_since_checkpoint = false;
        let models = self
            .models
            .values()
            .map(|m| {
                let mark = ModelMark {
                    window: (millis(m.judge.spec.size), millis(m.judge.spec.slide)),
                    cursor: m.windows.cursor(),
                    evaluated_until: m.judge.evaluated_until,
                };
                (m.id.clone(), mark)
            })
            .collect();
        let mut partitions = Vec::new();
        for (i, &(t, p)) in self.partition_keys.iter().enumerate() {
            let (Some(topic), Some(committed), Some(seen)) = (
                self.topic_names.get(t as usize),
                self.frontier.committable(i as u32),
                self.frontier.seen_until(i as u32),
            ) else {
                continue;
            };
            // What the last run had seen stays seen until this run passes it.
            let seen = seen.max(self.reread.get(i).map_or(i64::MIN, |m| m.used));
            partitions.push(PartitionMark { topic: topic.clone(), partition: p, committed, seen });
        }
        // Partitions this run has not read yet keep their marks.
        if let Some(old) = &self.resumed {
            for mark in &old.partitions {
                if !partitions.iter().any(|m| m.topic == mark.topic && m.partition == mark.partition) {
                    partitions.push(mark.clone());
                }
            }
        }
        Checkpoint { models, partitions, ..Checkpoint::default() }
    }

    /// A window closed since the last [`Pipeline::checkpoint`].
    pub fn closed_since_checkpoint(&self) -> bool {
        self.closed_since_checkpoint
    }

    fn reject(&mut self, model: Option<ModelKey>, topic: u16, payload: &[u8], rejected: &Rejected) {
        let label = model.and_then(|k| self.models.get(&k)).map_or("_unknown", |m| m.id.as_str());
        let first = self.warned.insert((model, rejected.reason));
        EventRejected { model: label, reason: rejected.reason, message: &rejected.message, first }
            .emit(&self.shared.metrics);
        if let Some(m) = model.and_then(|k| self.models.get(&k)) {
            self.shared.update_model(&m.id, |ms| ms.events.rejected += 1);
        }
        if let Some(sink) = &mut self.dead_letter {
            sink(topic, payload, rejected);
        }
    }

    fn evaluate_all(&mut self, k: ModelKey, closed: Vec<ClosedWindow>, started: Instant) {
        if closed.is_empty() {
            return;
        }
        // Merging the panes happened in `advance`/`flush`: share that time among the windows.
        let merge = started.elapsed().as_secs_f64() / closed.len() as f64;
        for window in closed {
            let started = Instant::now();
            let Some(m) = self.models.get_mut(&k) else { return };
            let late = std::mem::take(&mut m.late_since_close);
            let mut evaluation = m.judge.evaluate(window, late);
            evaluation.close_seconds = merge + started.elapsed().as_secs_f64();
            self.closed_since_checkpoint = true;
            self.publish_window(&evaluation);
            self.queue_notices(&evaluation);
            for o in &mut self.observers {
                o(&evaluation);
            }
        }
    }

    /// Everything a closed window's evaluation changes outside the pipeline: alert
    /// publication, the status document, then its metrics and log line.
    fn publish_window(&self, e: &Evaluation) {
        let id = e.model.as_str();
        let active = e.alerts.as_ref().map(|outcome| self.publish_alerts(id, outcome));
        let verdict = e.verdict().as_str();
        let head = WindowHead {
            id: format!("{id}/{}", rfc3339(e.start)),
            repeated: e.repeated,
            start: rfc3339(e.start),
            end: rfc3339(e.end),
            events: e.events,
            verdict,
        };
        let summary = WindowSummary { head: head.clone(), drifted_features: e.drifted_features() };
        let last = LastWindow {
            head,
            close_seconds: e.close_seconds,
            report: e.report.clone(),
            slices: e
                .slices
                .iter()
                .map(|(name, r)| SliceSummary {
                    slice: name.clone(),
                    events: r.current.rows,
                    drift: r.drift.detected,
                    drift_share: r.drift.share,
                    drifted_features: r.features.iter().filter(|f| f.drift).map(|f| f.name.clone()).collect(),
                })
                .collect(),
        };
        self.shared.update_model(id, |ms| {
            ms.windows_closed += u64::from(!e.repeated);
            ms.last_window = Some(last);
            if ms.recent_windows.len() == RECENT_WINDOWS {
                ms.recent_windows.remove(0);
            }
            ms.recent_windows.push(summary);
            if let Some(active) = active {
                ms.alerts = active;
            }
        });
        WindowClosed { evaluation: e }.emit(&self.shared.metrics);
        if e.alerts.as_ref().is_some_and(|o| o.changed) {
            self.save_alerts();
        }
    }

    /// Publishes what the alert book made of a window: alert-state gauges, transition
    /// counters and logs. Returns the alerts still pending or firing.
    fn publish_alerts(&self, id: &str, outcome: &AlertOutcome) -> Vec<AlertView> {
        let metrics = &self.shared.metrics;
        for a in &outcome.alerts {
            for severity in Severity::ALL {
                let value = if severity == a.severity { a.phase.gauge() } else { 0 };
                metrics.alert_state.with_label_values(&[id, &a.rule, &a.feature, severity.as_str()]).set(value);
            }
        }
        for (_, notice) in &outcome.notices {
            AlertTransition { model: id, notice }.emit(metrics);
        }
        outcome.alerts.iter().filter(|a| a.phase != Phase::Inactive).cloned().collect()
    }

    /// An evaluation's notices, one batch per recipient list (a digest never reaches people a
    /// rule did not name): to the outbox, or in a cluster to the owner's next snapshot.
    fn queue_notices(&mut self, e: &Evaluation) {
        let Some(outcome) = &e.alerts else { return };
        let mut batches: Vec<Batch> = Vec::new();
        for (recipients, notice) in &outcome.notices {
            match batches.iter_mut().find(|b| b.recipients == *recipients) {
                Some(b) => b.notices.push(notice.clone()),
                None => batches.push(Batch {
                    created_ms: chrono::Utc::now().timestamp_millis(),
                    model: e.model.clone(),
                    recipients: recipients.clone(),
                    notices: vec![notice.clone()],
                }),
            }
        }
        if self.cluster.is_some() {
            self.hold_for_snapshot(batches);
        } else if let Some(q) = &self.notify {
            for b in &batches {
                q.push(b);
            }
        }
    }

    /// Windows whose labels are in: realised performance, exported beside the estimates and
    /// read by the rules with `value = "realised"`.
    fn realise_all(&mut self, k: ModelKey, labelled: Vec<Labelled>) {
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        let Some(m) = self.models.get_mut(&k) else { return };
        let Some(truth) = &mut m.truth else {
            return;
        };
        for (outcome, n) in truth.join.take_counts() {
            metrics.labels.with_label_values(&[m.id.as_str(), outcome.as_str()]).inc_by(n);
        }
        let (predictions, labels) = truth.join.pending();
        metrics.set_pending(&m.id, Pending::Predictions, predictions);
        metrics.set_pending(&m.id, Pending::Labels, labels);
        for w in labelled {
            let Some(m) = self.models.get_mut(&k) else { return };
            let realised = m.truth.as_ref().map(|t| t.metrics(&w)).unwrap_or_default();
            let evaluation = m.judge.realise((w.start, w.end), w.labels.len(), realised);
            self.publish_labelled(&evaluation);
            self.queue_notices(&evaluation);
            for o in &mut self.observers {
                o(&evaluation);
            }
        }
    }

    /// Everything a labelled window's evaluation changes outside the pipeline.
    fn publish_labelled(&self, e: &Evaluation) {
        let metrics = &self.shared.metrics;
        let id = e.model.as_str();
        let Some(report) = &e.report else {
            return;
        };
        metrics.record_performance(id, &report.performance, crate::engine::window::ALL_SLICE);
        metrics.performance_window_end.with_label_values(&[id]).set(e.end as f64 / 1000.0);
        tracing::info!(
            model = id,
            start = %rfc3339(e.start),
            end = %rfc3339(e.end),
            labelled = e.events,
            accuracy = ?report.performance.metrics.get("accuracy").copied().flatten(),
            "window labelled"
        );
        let active = e.alerts.as_ref().map(|o| self.publish_alerts(id, o)).unwrap_or_default();
        let summary = LabelledSummary {
            start: rfc3339(e.start),
            end: rfc3339(e.end),
            labelled: e.events,
            performance: report.performance.clone(),
        };
        self.shared.update_model(id, |ms| {
            ms.last_labelled = Some(summary);
            // Only the alerts read on labels are replaced.
            ms.alerts.retain(|a| !active.iter().any(|b| b.rule == a.rule && b.feature == a.feature));
            ms.alerts.extend(active);
        });
        if e.alerts.as_ref().is_some_and(|o| o.changed) {
            self.save_alerts();
        }
    }

    fn publish(&self) {
        for m in self.models.values() {
            let (windows, rows) = (m.windows.open_windows(), m.windows.open_rows());
            self.shared.metrics.open_windows.with_label_values(&[m.id.as_str()]).set(windows as i64);
            self.shared.update_model(&m.id, |ms| {
                ms.open_windows = windows;
                ms.open_events = rows;
            });
        }
    }
}

/// Says in the log, at most once a minute per model (and at `last`), how many events arrived
/// after their windows had closed and were dropped; each is also counted in
/// `driftwatch_events_total{outcome="late"}` and in the next window's `late_rate`.
fn report_late(m: &mut ModelRuntime, now: Instant, last: bool) {
    if m.late_unreported == 0 {
        return;
    }
    if last || m.late_log.due((), now) {
        tracing::warn!(
            model = %m.id,
            late = m.late_unreported,
            "events arrived after their windows had closed (beyond allowed_lateness) and were dropped; counted in driftwatch_events_total{{outcome=\"late\"}}"
        );
        m.late_unreported = 0;
    }
}

/// A model's running state, from its setup.
fn runtime(s: ModelSetup, derive: Derive, slicer: Option<Slicer>, shared: &Shared) -> ModelRuntime {
    shared.metrics.register_model(&s.model.id);
    for rule in &s.model.rules {
        shared.metrics.register_rule(&s.model.id, rule);
    }
    let spec = window_spec(&s.baseline.spec, &s.plan);
    let mut windows = Windows::new(&s.model.window, spec.clone());
    let mut shape = Shape { spec, slices: Vec::new(), slicer: None };
    if let Some(slicer) = slicer {
        let specs: Vec<ProfileSpec> =
            s.slices.iter().map(|x| window_spec(&x.baseline.as_ref().unwrap_or(&s.baseline).spec, &s.plan)).collect();
        let slicer: Arc<dyn crate::engine::window::Split> = Arc::new(slicer);
        windows = windows.with_slices(slicer.clone(), specs.clone());
        shape.slices = specs;
        shape.slicer = Some(slicer);
    }
    let truth = GroundTruth::of(&s);
    if truth.is_some() {
        shared.metrics.register_labels(&s.model.id);
    }
    ModelRuntime {
        id: s.model.id.clone(),
        fields: model_fields(&s),
        windows,
        judge: Judge {
            model: s.model.id.clone(),
            spec: s.model.window.clone(),
            alerts: Book::new(s.model.rules.clone()),
            cbpe: match (s.cbpe, &s.model.performance) {
                (Some(c), Some(p)) => {
                    s.baseline.spec.features.iter().position(|f| f.name == p.score).map(|i| (c, i, p.threshold))
                }
                _ => None,
            },
            slices: s.slices,
            impact: s.impact,
            baseline: s.baseline,
            plan: s.plan,
            evaluated_until: None,
        },
        late_since_close: 0,
        late_unreported: 0,
        late_log: Throttle::new(MINUTE),
        truth,
        derive,
        derive_failed: false,
        last_event: None,
        shape,
        ingest: None,
        owner: None,
    }
}

/// A model's entry in the status document, with its baseline's metrics.
pub fn announce(s: &ModelSetup, metrics: &crate::runtime::metrics::Metrics) -> ModelStatus {
    let sha = sha256_file(&s.model.baseline);
    let path = s.model.baseline.display().to_string();
    let id = s.model.id.as_str();
    metrics.forget(id, |family, _| family == "driftwatch_baseline_info");
    metrics.baseline_info.with_label_values(&[id, path.as_str(), sha.as_str()]).set(1);
    metrics.baseline_rows.with_label_values(&[id]).set(s.baseline.profile.rows() as i64);
    let w = &s.model.window;
    ModelStatus {
        id: s.model.id.clone(),
        topics: s.model.topics.clone(),
        baseline: BaselineStatus {
            path,
            sha256: sha,
            rows: s.baseline.profile.rows(),
            features: s.baseline.spec.features.len(),
        },
        window: WindowStatus {
            size_seconds: w.size.as_secs_f64(),
            slide_seconds: w.slide.as_secs_f64(),
            allowed_lateness_seconds: w.allowed_lateness.as_secs_f64(),
            idle_timeout_seconds: w.idle_timeout.as_secs_f64(),
            min_events: w.min_events,
        },
        ..ModelStatus::default()
    }
}

fn sha256_file(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    match std::fs::read(path) {
        Ok(bytes) => format!("{:x}", Sha256::digest(&bytes)),
        Err(_) => String::new(),
    }
}

/// After a reload changed a model: series of rules, features and slices it no longer has
/// are removed; its thresholds are exported afresh.
fn forget_stale(metrics: &crate::runtime::metrics::Metrics, m: &ModelRuntime) {
    let rules: HashSet<&str> = m.judge.alerts.rules().iter().map(|r| r.name.as_str()).collect();
    let features: HashSet<&str> = m.judge.baseline.spec.features.iter().map(|f| f.name.as_str()).collect();
    let slices: HashSet<&str> = m.judge.slices.iter().map(|x| x.name.as_str()).collect();
    metrics.forget(&m.id, |family, labels| {
        let gone = |label: &str, known: &HashSet<&str>, always: &str| {
            labels.get(label).is_some_and(|v| *v != always && !known.contains(v))
        };
        family == "driftwatch_alert_threshold"
            || gone("rule", &rules, "")
            || gone("feature", &features, crate::engine::rules::DATASET_FEATURE)
            || gone("slice", &slices, crate::engine::window::ALL_SLICE)
    });
    for rule in m.judge.alerts.rules() {
        metrics.register_rule(&m.id, rule);
    }
}

/// The spec windows are profiled with: the baseline's, less the bin edges of numerical
/// features that no binned test reads (their histograms would cost every event a bin search
/// and never be used; a binned test on such a feature would still bin the sorted sample).
fn window_spec(baseline: &ProfileSpec, plan: &Plan) -> ProfileSpec {
    use crate::engine::stats::{TestChoice, TestKind::*};
    let mut spec = baseline.clone();
    for f in &mut spec.features {
        let (tests, _) = plan.tests_for(f);
        let binned = tests
            .iter()
            .any(|t| matches!(t, TestChoice::Test(Psi | Kl | Hellinger | JensenShannon | ChiSquare | Tvd | ZTest)));
        if !binned {
            f.edges.clear();
        }
    }
    spec
}

/// The segment slicer of a model (`None` without segments), its predicates compiled
/// against the batches the windows see (`schema`: decoded plus derived features).
fn slicer_of(s: &ModelSetup, schema: &Schema) -> Result<Option<Slicer>, PipelineError> {
    use crate::adapters::config::SegmentBy;
    if s.model.segments.is_empty() {
        return Ok(None);
    }
    let mut dimensions = Vec::new();
    for (segment, values) in s.model.segments.iter().zip(&s.segment_values) {
        dimensions.push(match &segment.by {
            SegmentBy::Column { column, .. } => {
                Dimension::Column { name: segment.name.clone(), column: column.clone(), values: values.clone() }
            }
            SegmentBy::Predicate(sql) => Dimension::Predicate {
                name: segment.name.clone(),
                predicate: Compiled::new(sql, schema).map_err(|source| PipelineError::Segment {
                    model: s.model.id.clone(),
                    what: format!("segment \"{}\" where {sql}", segment.name),
                    source,
                })?,
            },
        });
    }
    let slicer = Slicer::new(dimensions);
    if slicer.names().len() != s.slices.len() {
        return Err(PipelineError::Slices(s.model.id.clone()));
    }
    Ok(Some(slicer))
}

/// The derived features of a model, compiled against its decoded batches.
fn derive_of(s: &ModelSetup) -> Result<Derive, PipelineError> {
    let fields = model_fields(s);
    let schema = Schema::new(
        fields.features.iter().map(|(name, _, kind)| Field::new(name, kind.live_type(), true)).collect::<Vec<_>>(),
    );
    let defs: Vec<(String, String, DataType)> = s
        .model
        .derived
        .iter()
        .filter_map(|d| {
            let spec = s.baseline.spec.features.iter().find(|f| f.name == d.name)?;
            Some((d.name.clone(), d.sql.clone(), spec.kind.live_type()))
        })
        .collect();
    Derive::new(&defs, &schema).map_err(|source| PipelineError::Derive { model: s.model.id.clone(), source })
}

/// What a model reads from its events: the baseline's features at their configured paths
/// (derived features are computed, not read).
fn model_fields(s: &ModelSetup) -> ModelFields {
    let events = &s.model.events;
    let features: Vec<(String, FieldPath, FeatureKind)> = s
        .baseline
        .spec
        .features
        .iter()
        .filter(|f| !s.model.derived.iter().any(|d| d.name == f.name))
        .map(|f| {
            let path = s
                .model
                .features
                .iter()
                .find(|c| c.name == f.name)
                .and_then(|c| c.field.clone())
                .unwrap_or_else(|| events.features.child(&f.name));
            (f.name.clone(), path, f.kind)
        })
        .collect();
    let quality = &s.model.quality;
    let mut fields =
        ModelFields::new(&s.model.id, events.model_id.clone(), events.timestamp.clone(), events.timestamp_format);
    fields.required = features.iter().map(|(name, _, _)| quality.required.contains(name)).collect();
    fields.features = features;
    fields.known_fields = quality.unknown_fields.then(|| events.features.clone());
    fields.also_known = s.model.exclude.iter().map(|(name, _)| events.features.child(name)).collect();
    // Event ids cost a hash per event: read them only for duplicates or the label join.
    fields.duplicates = quality.duplicate_horizon.map(|h| (millis(h), quality.max_tracked_ids));
    if fields.duplicates.is_some() || s.model.labels.is_some() {
        fields.event_id = Some(events.event_id.clone());
    }
    fields
}
