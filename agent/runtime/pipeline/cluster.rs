//! The pipeline in a cluster (docs/cluster.md): each model's rows go to its ingest, whose
//! sealed panes are produced to the cluster topic (their source offsets held until the broker
//! acknowledges them); the models whose cluster partition this agent holds are judged from
//! the partials every agent sent, by their owner, with the same evaluation as one agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ModelKey, Pipeline};
use crate::engine::ingest::Ingest;
use crate::engine::owner::{Owner, Taken};
use crate::engine::partial::{Delivered, OwnerInput, Pending, Record, Snapshot, Source};
use crate::runtime::metrics::Metrics;
use crate::runtime::notify::{Batch, Queue};

/// Cluster-topic offsets the pipeline allows the owners' group to commit: partition → next
/// offset to read.
pub type OwnerCommits = Arc<std::sync::Mutex<BTreeMap<i32, i64>>>;

/// Why a record was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendRefused {
    /// The producer's queue is full: sent again with the next step.
    #[error("the producer's queue is full")]
    QueueFull,
    #[error("{0}")]
    Failed(String),
}

/// Where the pipeline's cluster records go (the cluster producer, `runtime::cluster`): each
/// record's delivery comes back as `Input::Acked` with its id.
pub trait RecordSink: Send + Sync {
    /// Queues a record; returns the bytes it takes on the wire.
    fn send(&self, id: u64, record: &Record) -> Result<usize, SendRefused>;
    /// The cluster-topic partition of a model.
    fn partition_of(&self, model: &str) -> i32;
}

/// The id of records whose acknowledgement nobody waits for.
pub const UNTRACKED: u64 = u64::MAX;

/// Heartbeats go out at least this often while partitions are held (and after every seal).
const BEAT: Duration = Duration::from_millis(500);

/// What the pipeline keeps of the cluster.
pub(crate) struct Link {
    producer: Arc<dyn RecordSink>,
    /// Per source topic index: its partition count (every partition is expected to report).
    topic_partitions: Vec<i32>,
    next_id: u64,
    /// Records sent and not yet acknowledged, with the source offsets they hold.
    inflight: HashMap<u64, (Record, Vec<(u32, i64)>)>,
    /// Records the producer could not take yet (its queue was full), in order.
    unsent: Vec<(Record, Vec<(u32, i64)>)>,
    last_beat: Option<Instant>,
    /// Cluster partitions owned: (backlog end at assignment, next offset to read).
    owned: BTreeMap<i32, (i64, i64)>,
    /// Per owned model: its notifications and snapshots.
    mail: HashMap<String, Mail>,
    commits: OwnerCommits,
}

/// An owned model's notifications (docs/cluster.md, "Notifications"). A batch is queued for
/// sending only once a snapshot listing it was acknowledged or read back, so whoever holds
/// the model next finds it; it leaves the list when the notifier's `Delivered` record is
/// read back. A successor sends what the newest snapshot lists and no `Delivered` followed.
#[derive(Default)]
struct Mail {
    /// Batches not yet known delivered, by id.
    pending: BTreeMap<u64, Outgoing>,
    /// Delivered ids and the offset of the record saying so.
    delivered: BTreeMap<u64, i64>,
    /// The newest snapshot read back: its offset and the ids it lists.
    snapshot: Option<(i64, Vec<u64>)>,
    /// When the model came to this agent, until its backlog was read.
    restoring: Option<Instant>,
}

/// A batch not yet known delivered.
struct Outgoing {
    batch: Batch,
    /// A snapshot acknowledged or read back lists it: safe to send.
    recorded: bool,
    /// Queued in this agent's outbox.
    queued: bool,
}

/// Delivered ids remembered per model (the oldest are forgotten first).
const DELIVERED_KEPT: usize = 4096;

impl Mail {
    /// The batches a snapshot lists are in the cluster topic.
    fn recorded(&mut self, listed: &[Pending]) {
        for p in listed {
            if let Some(o) = self.pending.get_mut(&p.id) {
                o.recorded = true;
            }
        }
    }

    fn delivered(&mut self, ids: &[u64], offset: i64) {
        for &id in ids {
            self.pending.remove(&id);
            self.delivered.insert(id, offset);
        }
        while self.delivered.len() > DELIVERED_KEPT {
            let oldest = self.delivered.iter().min_by_key(|&(_, &o)| o).map(|(&id, _)| id);
            if let Some(id) = oldest {
                self.delivered.remove(&id);
            }
        }
    }

    /// The lowest offset a successor must read from to know what was delivered: the newest
    /// snapshot, or a `Delivered` before it of a batch it still lists.
    fn read_from(&self) -> Option<i64> {
        let (at, ids) = self.snapshot.as_ref()?;
        Some(ids.iter().filter_map(|id| self.delivered.get(id)).fold(*at, |a, &d| a.min(d)))
    }
}

impl Link {
    fn caught_up(&self, partition: i32) -> bool {
        self.owned.get(&partition).is_some_and(|&(end, next)| next >= end)
    }
}

impl Pipeline {
    /// Runs the models in a cluster: `topic_partitions[t]` is source topic `t`'s partition
    /// count. Every model gets an ingest; ownership comes with [`Pipeline::owner_input`].
    pub(crate) fn set_cluster(
        &mut self,
        producer: Arc<dyn RecordSink>,
        topic_partitions: Vec<i32>,
        commits: OwnerCommits,
    ) {
        for m in self.models.values_mut() {
            m.ingest = Some(ingest_for(m));
        }
        self.cluster = Some(Link {
            producer,
            topic_partitions,
            next_id: 0,
            inflight: HashMap::new(),
            unsent: Vec::new(),
            last_beat: None,
            owned: BTreeMap::new(),
            mail: HashMap::new(),
            commits,
        });
    }

    /// Source partitions assigned (`part` interned) or revoked, for the ingests.
    pub(super) fn cluster_assign(&mut self, assigned: &[(u16, i32)], now: Instant) {
        if self.cluster.is_none() {
            return;
        }
        for &(topic, partition) in assigned {
            let part = self.intern(topic, partition);
            let Some(name) = self.topic_names.get(topic as usize).cloned() else { continue };
            let Some(reader) = self.decoders.get(topic as usize).filter(|r| !r.labels) else { continue };
            for k in reader.models.clone() {
                if let Some(ingest) = self.models.get_mut(&k).and_then(|m| m.ingest.as_mut()) {
                    ingest.assign(part, Source { topic: name.clone(), partition }, now);
                }
            }
        }
        // A partition taken away loses its open panes and what this run saw of it: when it
        // comes back its events are read again from the committed offset, and used again.
        let keys = self.partition_keys.clone();
        for (i, key) in keys.iter().enumerate() {
            if !assigned.contains(key) {
                for m in self.models.values_mut() {
                    if let Some(ingest) = &mut m.ingest {
                        ingest.revoke(i as u32);
                    }
                }
                self.frontier.forget(i as u32);
                if let Some(r) = self.reread.get_mut(i) {
                    *r = super::Reread::default();
                }
            }
        }
    }

    /// After a chunk or a tick: seals panes and sends them with heartbeats, then judges the
    /// owned models whose watermark moved.
    pub(super) fn cluster_step(&mut self, now: Instant) {
        let Some(link) = &mut self.cluster else { return };
        let mut out: Vec<(Record, Vec<(u32, i64)>)> = std::mem::take(&mut link.unsent);
        for m in self.models.values_mut() {
            if let Some(ingest) = &mut m.ingest {
                for sealed in ingest.seal(&mut self.frontier, now) {
                    tracing::debug!(model = %m.id, partition = sealed.partial.source.partition, pane = sealed.partial.pane, rows = sealed.partial.profile.rows(), "pane sealed");
                    out.push((Record::Pane(sealed.partial), sealed.holds));
                }
            }
        }
        let beat = !out.is_empty() || link.last_beat.is_none_or(|t| now.saturating_duration_since(t) >= BEAT);
        if beat {
            link.last_beat = Some(now);
            for m in self.models.values() {
                for h in m.ingest.iter().flat_map(|i| i.heartbeats(now)) {
                    out.push((Record::Heartbeat(h), Vec::new()));
                }
            }
        }
        for (record, holds) in out {
            send(link, &self.shared.metrics, record, holds);
        }
        self.judge_owned(now);
    }

    /// The broker acknowledged record `id` (or gave up on it: then it is sent again).
    pub(crate) fn acked(&mut self, id: u64, ok: bool) {
        let Some(link) = &mut self.cluster else { return };
        let Some((record, holds)) = link.inflight.remove(&id) else { return };
        if ok {
            for (part, offset) in holds {
                self.frontier.release(part, offset);
            }
            if let Record::Snapshot(s) = &record
                && let Some(mail) = link.mail.get_mut(&s.model)
            {
                mail.recorded(&s.pending);
            }
        } else {
            tracing::warn!(model = record.model(), "a cluster record was not delivered; it is sent again");
            send(link, &self.shared.metrics, record, holds);
        }
    }

    /// What the owners' group says: the cluster partitions held now, or records read.
    pub(crate) fn owner_input(&mut self, input: OwnerInput, now: Instant) {
        let Some(link) = &mut self.cluster else { return };
        match input {
            OwnerInput::Owned(owned) => {
                let before = std::mem::take(&mut link.owned);
                for (p, end) in owned {
                    let next = before.get(&p).map_or(0, |&(_, next)| next);
                    link.owned.insert(p, (end, next));
                }
                let producer = link.producer.clone();
                let topic_partitions = link.topic_partitions.clone();
                let owned: Vec<i32> = link.owned.keys().copied().collect();
                let mut changed: Vec<(String, bool)> = Vec::new();
                for k in self.keys() {
                    let Some(m) = self.models.get_mut(&k) else { continue };
                    let mine = owned.contains(&producer.partition_of(&m.id));
                    self.shared.update_model(&m.id, |ms| ms.owner = Some(if mine { "here" } else { "elsewhere" }));
                    match (mine, m.owner.is_some()) {
                        (true, false) => {
                            let mut owner = Owner::new(&m.judge.spec, m.shape.spec.clone(), m.shape.slices.clone());
                            let topics =
                                self.decoders.iter().enumerate().filter(|(_, r)| !r.labels && r.models.contains(&k));
                            for (t, _) in topics {
                                let Some(name) = self.topic_names.get(t) else { continue };
                                for partition in 0..topic_partitions.get(t).copied().unwrap_or(0) {
                                    owner.expect(Source { topic: name.clone(), partition }, now);
                                }
                            }
                            tracing::info!(model = %m.id, "model owned: its windows are judged here");
                            m.owner = Some(owner);
                            changed.push((m.id.clone(), true));
                        }
                        (false, true) => {
                            tracing::info!(model = %m.id, "model handed over: another agent judges its windows");
                            m.owner = None;
                            changed.push((m.id.clone(), false));
                        }
                        _ => {}
                    }
                }
                let Some(link) = &mut self.cluster else { return };
                let metrics = &self.shared.metrics;
                for (id, gained) in changed {
                    metrics
                        .cluster_handovers
                        .with_label_values(&[id.as_str(), if gained { "gained" } else { "lost" }])
                        .inc();
                    if gained {
                        link.mail.insert(id, Mail { restoring: Some(now), ..Mail::default() });
                    } else {
                        link.mail.remove(&id);
                        if let Some(q) = &self.notify {
                            q.drop_queued(&id);
                        }
                    }
                }
            }
            OwnerInput::Records(records) => {
                for r in records {
                    if let Ok(record) = &r.record {
                        count(&self.shared.metrics, "received", record.kind(), r.bytes);
                    }
                    if let Some(entry) = link.owned.get_mut(&r.partition) {
                        entry.1 = entry.1.max(r.offset + 1);
                    }
                    let record = match r.record {
                        Ok(record) => record,
                        Err(e) => {
                            tracing::warn!(partition = r.partition, offset = r.offset, "cluster record skipped: {e}");
                            continue;
                        }
                    };
                    let caught_up = link.caught_up(r.partition);
                    let Some(m) = self.models.values_mut().find(|m| m.id == record.model()) else { continue };
                    let Some(owner) = &mut m.owner else { continue };
                    match record {
                        Record::Pane(p) => {
                            let (source, pane) = (format!("{}/{}", p.source.topic, p.source.partition), p.pane);
                            let taken = owner.take(p, r.offset);
                            tracing::debug!(model = %m.id, %source, pane, offset = r.offset, ?taken, "partial");
                            self.shared
                                .metrics
                                .cluster_partials
                                .with_label_values(&[m.id.as_str(), taken.as_str()])
                                .inc();
                            if let Taken::Unfit = taken {
                                tracing::warn!(model = %m.id, "a partial of another configuration was skipped");
                            }
                        }
                        Record::Heartbeat(h) => owner.heartbeat(&h, now),
                        Record::Delivered(d) => {
                            if let Some(mail) = link.mail.get_mut(&d.model) {
                                mail.delivered(&d.ids, r.offset);
                            }
                        }
                        Record::Snapshot(s) => {
                            let mail = link.mail.entry(s.model.clone()).or_default();
                            mail.snapshot = Some((r.offset, s.pending.iter().map(|p| p.id).collect()));
                            mail.recorded(&s.pending);
                            // A successor catching up takes the last owner's state; its own
                            // snapshots read back change nothing.
                            if !caught_up {
                                if let Some(cursor) = s.cursor {
                                    owner.resume(cursor);
                                }
                                m.judge.evaluated_until = m.judge.evaluated_until.max(s.evaluated_until);
                                m.judge.alerts.restore(s.alerts);
                                mail.pending = s
                                    .pending
                                    .iter()
                                    .filter(|p| !mail.delivered.contains_key(&p.id))
                                    .filter_map(|p| {
                                        let batch = serde_json::from_slice(&p.batch).ok()?;
                                        Some((p.id, Outgoing { batch, recorded: true, queued: false }))
                                    })
                                    .collect();
                            }
                        }
                    }
                }
                self.judge_owned(now);
            }
        }
    }

    /// Closes and evaluates the owned models' windows the watermark passed (once their
    /// partition's backlog is read), snapshots them, and says what may be committed.
    fn judge_owned(&mut self, now: Instant) {
        let Some(link) = &self.cluster else { return };
        let producer = link.producer.clone();
        let ready: Vec<(ModelKey, bool)> = self
            .models
            .iter()
            .filter(|(_, m)| m.owner.is_some())
            .map(|(&k, m)| (k, link.caught_up(producer.partition_of(&m.id))))
            .collect();
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        metrics.cluster_owned.set(ready.len() as i64);
        for (k, caught_up) in ready {
            if !caught_up {
                continue;
            }
            self.restored(k, now);
            let started = Instant::now();
            let Some(m) = self.models.get_mut(&k) else { continue };
            let Some(owner) = m.owner.as_mut() else { continue };
            if let (Some(newest), Some(watermark)) = (owner.newest(), owner.watermark(now)) {
                let lag = (newest - watermark).max(0) as f64 / 1000.0;
                metrics.cluster_owner_lag.with_label_values(&[m.id.as_str()]).set(lag);
            }
            let closed = if owner.quiet(now) && owner.open_rows() > 0 { owner.flush() } else { owner.advance(now) };
            if !closed.is_empty() {
                self.evaluate_all(k, closed, started);
                self.snapshot(k);
            }
            self.send_recorded(k);
        }
        self.owner_commits();
    }

    /// The first time an owned model's backlog has been read: the takeover is done.
    fn restored(&mut self, k: ModelKey, now: Instant) {
        let (Some(m), Some(link)) = (self.models.get(&k), &mut self.cluster) else { return };
        let Some(since) = link.mail.get_mut(&m.id).and_then(|mail| mail.restoring.take()) else { return };
        let seconds = now.saturating_duration_since(since).as_secs_f64();
        self.shared.metrics.cluster_restore.with_label_values(&[m.id.as_str()]).set(seconds);
        tracing::info!(model = %m.id, seconds, cursor = ?m.owner.as_ref().and_then(Owner::cursor), "model restored from the cluster topic: judging its windows");
    }

    /// Notification batches of windows just evaluated: they go out once a snapshot lists them.
    pub(super) fn hold_for_snapshot(&mut self, batches: Vec<Batch>) {
        let Some(link) = &mut self.cluster else { return };
        for batch in batches {
            let mail = link.mail.entry(batch.model.clone()).or_default();
            mail.pending.entry(batch.id()).or_insert(Outgoing { batch, recorded: false, queued: false });
        }
    }

    /// Writes an owned model's snapshot, with the notifications not yet known delivered.
    fn snapshot(&mut self, k: ModelKey) {
        let (Some(m), Some(link)) = (self.models.get(&k), &mut self.cluster) else { return };
        let mail = link.mail.entry(m.id.clone()).or_default();
        let pending = mail
            .pending
            .iter()
            .map(|(&id, o)| Pending { id, batch: serde_json::to_vec(&o.batch).unwrap_or_default() })
            .collect();
        let snapshot = Snapshot {
            model: m.id.clone(),
            cursor: m.owner.as_ref().and_then(Owner::cursor),
            evaluated_until: m.judge.evaluated_until,
            alerts: m.judge.alerts.snapshot(),
            pending,
        };
        send(link, &self.shared.metrics, Record::Snapshot(snapshot), Vec::new());
    }

    /// Queues the owned model's batches a snapshot has recorded and this agent has not
    /// queued yet.
    fn send_recorded(&mut self, k: ModelKey) {
        let (Some(m), Some(link), Some(queue)) = (self.models.get(&k), &mut self.cluster, &self.notify) else { return };
        let Some(mail) = link.mail.get_mut(&m.id) else { return };
        for o in mail.pending.values_mut().filter(|o| o.recorded && !o.queued) {
            queue.push_once(&o.batch);
            o.queued = true;
        }
    }

    /// A new notifier queue in a cluster: what was queued is queued again there, and its
    /// deliveries are written to the cluster topic for a successor to read.
    pub(super) fn cluster_notify(&mut self, queue: &Queue) {
        let Some(link) = &mut self.cluster else { return };
        for o in link.mail.values_mut().flat_map(|mail| mail.pending.values_mut()) {
            o.queued = false;
        }
        let producer = link.producer.clone();
        let shared = self.shared.clone();
        queue.on_delivered(Arc::new(move |model: &str, ids: Vec<u64>| {
            let record = Record::Delivered(Delivered { model: model.to_string(), ids });
            // Not tracked: a lost one costs at most one repeated digest after a takeover.
            for _ in 0..20 {
                match producer.send(UNTRACKED, &record) {
                    Err(SendRefused::QueueFull) => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => {
                        tracing::warn!(model, "cannot record a delivered digest in the cluster topic: {e}");
                        break;
                    }
                    Ok(bytes) => {
                        count(&shared.metrics, "sent", record.kind(), bytes);
                        break;
                    }
                }
            }
        }));
    }

    /// Per owned partition: the lowest offset a successor must read from — the oldest partial
    /// still held and each model's last snapshot — or where reading stands.
    fn owner_commits(&self) {
        let Some(link) = &self.cluster else { return };
        let mut allowed: BTreeMap<i32, i64> = link.owned.iter().map(|(&p, &(_, next))| (p, next)).collect();
        for m in self.models.values() {
            let Some(owner) = &m.owner else { continue };
            let p = link.producer.partition_of(&m.id);
            let Some(at) = allowed.get_mut(&p) else { continue };
            if let Some(held) = owner.held_from() {
                *at = (*at).min(held);
            }
            if let Some(from) = link.mail.get(&m.id).and_then(Mail::read_from) {
                *at = (*at).min(from);
            }
        }
        if let Ok(mut commits) = link.commits.lock() {
            *commits = allowed;
        }
    }
}

fn count(metrics: &Metrics, direction: &str, kind: &str, bytes: usize) {
    metrics.cluster_records.with_label_values(&[direction, kind]).inc();
    metrics.cluster_bytes.with_label_values(&[direction]).inc_by(bytes as u64);
}

/// A model's ingest: panes as wide as its owner's, its slices too.
pub(super) fn ingest_for(m: &super::ModelRuntime) -> Ingest {
    let pane = Owner::new(&m.judge.spec, m.shape.spec.clone(), m.shape.slices.clone()).pane_width();
    let ingest = Ingest::new(&m.id, &m.judge.spec, pane, m.shape.spec.clone());
    match &m.shape.slicer {
        Some(slicer) => ingest.with_slices(slicer.clone(), m.shape.slices.clone()),
        None => ingest,
    }
}

/// Queues a record on the producer, keeping it (and its holds) until it is acknowledged.
fn send(link: &mut Link, metrics: &Metrics, record: Record, holds: Vec<(u32, i64)>) {
    let id = link.next_id;
    link.next_id += 1;
    match link.producer.send(id, &record) {
        Ok(bytes) => {
            count(metrics, "sent", record.kind(), bytes);
            link.inflight.insert(id, (record, holds));
        }
        Err(SendRefused::QueueFull) => link.unsent.push((record, holds)),
        Err(e) => {
            tracing::warn!(model = record.model(), "cannot send a cluster record: {e}; it is sent again later");
            link.unsent.push((record, holds));
        }
    }
}
