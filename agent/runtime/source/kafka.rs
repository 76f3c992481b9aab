//! The Kafka source: one consumer of the agent's consumer group, through librdkafka.
//!
//! Offsets are committed late (DESIGN section 6) and only by us: auto-commit is off (so
//! librdkafka can never write back an older offset, at close or on its timer), and the
//! source commits what the pipeline's commit frontier allows, asynchronously every
//! `linger` when it moved, synchronously on a partition revoke and at shutdown. The
//! pipeline publishes an offset only after the checkpoint that covers it is on disk (see
//! `checkpoint`), so a commit never runs ahead of the state that explains it.
//!
//! Static group membership: with `group.instance.id` (the `[source] instance_id` key, or
//! the `DRIFTWATCH_INSTANCE_ID` environment variable, which the DaemonSet sets to the node
//! name) a restarted agent takes its partitions back at once instead of after the session
//! timeout.
//!
//! Health: librdkafka's statistics (every second) say whether the leader of every assigned
//! partition is connected and whether each partition has unread events; a consumer error
//! marks the source unhealthy until the next report. The pipeline never lets a window close
//! for idleness while the source is unhealthy or behind (an outage is not silence).
//! Consumer lag per partition comes from the same statistics. Broker outages are
//! librdkafka's to ride out: errors are logged and the consumer keeps polling, reconnecting
//! by itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::adapters::config::Kafka;
use crate::engine::chunk::{Chunk, SourceState};
use crate::engine::decode::Rejected;
use crate::runtime::input::{Assigned, Input};
use crate::runtime::internal_events::{DeadLettered, InternalEvent};
use crate::runtime::status::Shared;
use crate::runtime::throttle::{MINUTE, Throttle};

/// Offsets the pipeline allows to be stored: (topic index, partition) → next offset.
pub(crate) type Commits = Arc<Mutex<BTreeMap<(u16, i32), i64>>>;

/// The latest assignment, from the rebalance callback (which cannot wait) until the read
/// loop sends it on, in order with the records. The flag lets the loop ask after every
/// record without taking the lock.
#[derive(Default)]
struct Assignment {
    pending: AtomicBool,
    latest: Mutex<Option<Assigned>>,
}

impl Assignment {
    fn put(&self, assigned: Assigned) {
        if let Ok(mut a) = self.latest.lock() {
            *a = Some(assigned);
            self.pending.store(true, Ordering::Release);
        }
    }

    fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<Assigned> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.latest.lock().ok().and_then(|mut a| a.take())
    }
}

/// Environment variable naming this agent's static group member (`group.instance.id`)
/// when the configuration does not.
pub(crate) const INSTANCE_ID_ENV: &str = "DRIFTWATCH_INSTANCE_ID";

/// The librdkafka configuration for a consumer (or, without the group settings, a producer).
/// The broker client could not be set up (check the `[source]` settings and secrets).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(transparent)]
    Secret(#[from] crate::adapters::config::SecretError),
    #[error("{what}: {source}")]
    Client { what: &'static str, source: rdkafka::error::KafkaError },
}

/// A Kafka error, saying what was being done.
fn client(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    move |source| KafkaError::Client { what, source }
}

pub(crate) fn client_config(kafka: &Kafka, consumer: bool) -> Result<ClientConfig, KafkaError> {
    let mut cfg = ClientConfig::new();
    for (k, v) in &kafka.properties {
        if !consumer && matches!(k.as_str(), "group.id") {
            continue;
        }
        cfg.set(k, v);
    }
    let password = crate::adapters::config::read_secret(
        "[source] sasl_password",
        kafka.sasl_password_env.as_deref(),
        kafka.sasl_password_file.as_deref(),
    )?;
    if let Some(password) = password {
        cfg.set("sasl.password", password);
    }
    if consumer {
        if !kafka.properties.contains_key("group.id") {
            cfg.set("group.id", "driftwatch");
        }
        if !kafka.properties.contains_key("client.id") {
            cfg.set("client.id", "driftwatch");
        }
        if !kafka.properties.contains_key("group.instance.id")
            && let Some(id) = std::env::var(INSTANCE_ID_ENV).ok().filter(|v| !v.trim().is_empty())
        {
            cfg.set("group.instance.id", id.trim());
        }
        // Offsets are committed by the source alone (see the module doc), whatever the
        // properties say.
        cfg.set("enable.auto.offset.store", "false");
        cfg.set("enable.auto.commit", "false");
        cfg.set_if_absent("auto.offset.reset", "earliest");
        // The statistics say whether the source is healthy and caught up; without them no
        // window would ever close for idleness.
        if cfg.get("statistics.interval.ms").is_none_or(|v| v.trim() == "0") {
            cfg.set("statistics.interval.ms", "1000");
        }
    }
    Ok(cfg)
}

trait SetIfAbsent {
    fn set_if_absent(&mut self, key: &str, value: &str);
}

impl SetIfAbsent for ClientConfig {
    fn set_if_absent(&mut self, key: &str, value: &str) {
        if self.get(key).is_none() {
            self.set(key, value);
        }
    }
}

struct Context {
    topics: Vec<String>,
    commits: Commits,
    assignment: Assignment,
    state: Arc<Mutex<SourceState>>,
    /// Assigned partitions by topic name (for the statistics).
    assigned: Mutex<Vec<(String, i32)>>,
    shared: Arc<Shared>,
}

impl Context {
    fn list(&self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let Ok(commits) = self.commits.lock() else {
            return tpl;
        };
        for (&(t, p), &o) in commits.iter() {
            let topic = &self.topics[t as usize];
            if only.is_none_or(|l| l.find_partition(topic, p).is_some()) {
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
            }
        }
        tpl
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.shared
                        .metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), partition.to_string().as_str()])
                        .set(p.consumer_lag);
                }
            }
        }
        let assigned = self.assigned.lock().map(|a| a.clone()).unwrap_or_default();
        let (healthy, behind) = health(&statistics, &assigned);
        let behind = behind
            .into_iter()
            .filter_map(|(topic, p)| Some((self.topics.iter().position(|t| *t == topic)? as u16, p)))
            .collect();
        if let Ok(mut s) = self.state.lock() {
            *s = SourceState { healthy, behind, at: Some(std::time::Instant::now()) };
        }
    }
}

/// From one statistics report: whether the leader of every assigned partition is
/// connected, and the assigned partitions with events not yet handed to the agent.
fn health(statistics: &Statistics, assigned: &[(String, i32)]) -> (bool, Vec<(String, i32)>) {
    let mut healthy = true;
    let mut behind = Vec::new();
    for (topic, partition) in assigned {
        let Some(p) = statistics.topics.get(topic).and_then(|t| t.partitions.get(partition)) else {
            healthy = false;
            continue;
        };
        let leader_up = p.leader >= 0 && statistics.brokers.values().any(|b| b.nodeid == p.leader && b.state == "UP");
        healthy &= leader_up;
        // The next offset the agent will see: one past the last one handed over, or where
        // fetching starts when nothing was handed over yet.
        let next = if p.app_offset >= 0 { p.app_offset } else { p.committed_offset.max(p.next_offset) };
        let caught_up = p.fetch_state == "active" && p.hi_offset >= 0 && p.fetchq_cnt == 0 && next >= p.hi_offset;
        if !leader_up || !caught_up {
            behind.push((topic.clone(), *partition));
        }
    }
    (healthy, behind)
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let tpl = self.list(Some(revoked));
            if tpl.count() > 0 {
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => tracing::info!(partitions = tpl.count(), "committed offsets of revoked partitions"),
                    Err(e) => tracing::warn!("commit on revoke failed: {e}"),
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = tpl.count(), "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
        // From the rebalance itself (eager: an assignment is the whole new one, a revoke takes
        // everything): asking the consumer for its assignment here deadlocks while it closes,
        // since the revoke at shutdown runs inside its destructor.
        let current = match rebalance {
            Rebalance::Assign(tpl) => (*tpl).clone(),
            _ => TopicPartitionList::new(),
        };
        // The group's committed offsets tell the pipeline whether its checkpoint still
        // describes a partition (another member may have moved it on).
        let committed = match rebalance {
            Rebalance::Assign(_) if current.count() > 0 => {
                match consumer.committed_offsets(current.clone(), Duration::from_secs(10)) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("cannot read the committed offsets of the assignment: {e}");
                        TopicPartitionList::new()
                    }
                }
            }
            _ => TopicPartitionList::new(),
        };
        let assigned: Vec<(u16, i32, Option<i64>)> = current
            .elements()
            .iter()
            .filter_map(|e| {
                let t = self.topics.iter().position(|t| t == e.topic())?;
                let offset = committed.find_partition(e.topic(), e.partition()).and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
                Some((t as u16, e.partition(), offset))
            })
            .collect();
        if let Ok(mut a) = self.assigned.lock() {
            *a = current.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        }
        self.shared.partitions_assigned.store(!assigned.is_empty(), Ordering::Relaxed);
        self.assignment.put(assigned);
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!("committing offsets: {e} (committed again with the next change)");
        }
    }
}

/// A running consumer.
pub(crate) struct KafkaSource {
    consumer: StreamConsumer<Context>,
    topics: Vec<String>,
    /// What was committed last (asynchronous commits go out only on a change).
    last_commit: Mutex<Option<TopicPartitionList>>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes to `topics` (index = topic index in records).
    pub(crate) fn new(
        kafka: &Kafka,
        topics: Vec<String>,
        commits: Commits,
        state: Arc<Mutex<SourceState>>,
        shared: Arc<Shared>,
    ) -> Result<KafkaSource, KafkaError> {
        let assignment = Assignment::default();
        let context =
            Context { topics: topics.clone(), commits, assignment, state, assigned: Mutex::new(Vec::new()), shared };
        let consumer: StreamConsumer<Context> = client_config(kafka, true)?
            .create_with_context(context)
            .map_err(client("cannot create the Kafka consumer"))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(client("cannot subscribe to the topics"))?;
        Ok(KafkaSource { consumer, topics, last_commit: Mutex::new(None) })
    }

    /// Reads until `stop` turns true, sending chunks of up to `batch_rows` events (or what
    /// arrived within `linger`; payloads cut at `max_event_bytes + 1`), and committing
    /// allowed offsets as they move.
    pub(crate) async fn read(
        &self,
        tx: mpsc::Sender<Input>,
        mut stop: watch::Receiver<bool>,
        batch_rows: usize,
        linger: Duration,
        max_event_bytes: usize,
    ) {
        let index: BTreeMap<&str, u16> = self.topics.iter().enumerate().map(|(i, t)| (t.as_str(), i as u16)).collect();
        let keep = max_event_bytes.saturating_add(1);
        let mut chunk = Chunk::with_capacity(batch_rows);
        let mut error_log = Throttle::new(MINUTE);
        let mut tick = tokio::time::interval(linger.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sends what was read so far, then a new assignment if a rebalance happened: the
        // records of before the rebalance, the assignment, then the records after it.
        let flush = |chunk: &mut Chunk| {
            let full = (!chunk.is_empty()).then(|| std::mem::replace(chunk, Chunk::with_capacity(batch_rows)));
            let assigned = self.consumer.context().assignment.take();
            let tx = &tx;
            async move {
                if let Some(full) = full {
                    tx.send(Input::Chunk(full)).await?;
                }
                if let Some(assigned) = assigned {
                    tx.send(Input::Assigned(assigned)).await?;
                }
                Ok::<(), mpsc::error::SendError<Input>>(())
            }
        };
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    if flush(&mut chunk).await.is_err() {
                        break;
                    }
                    self.commit_async();
                }
                message = self.consumer.recv() => {
                    // A rebalance runs inside `recv`: what it assigned goes before this record.
                    if self.consumer.context().assignment.pending() && flush(&mut chunk).await.is_err() {
                        break;
                    }
                    match message {
                        Ok(m) => {
                            let Some(&topic) = index.get(m.topic()) else { continue };
                            let ts = m.timestamp().to_millis();
                            let payload = m.payload().unwrap_or_default();
                            chunk.push(topic, m.partition(), m.offset(), ts, &payload[..payload.len().min(keep)]);
                            if chunk.is_full(batch_rows) {
                                if flush(&mut chunk).await.is_err() {
                                    break;
                                }
                                self.commit_async();
                            }
                        }
                        Err(e) => {
                            // Until the next statistics report says otherwise, the source is not
                            // healthy: windows must not close for idleness meanwhile.
                            if let Ok(mut s) = self.consumer.context().state.lock() {
                                s.healthy = false;
                            }
                            // librdkafka reconnects by itself; say so once a minute per error, not
                            // once per poll.
                            let text = e.to_string();
                            if error_log.due(text.clone(), std::time::Instant::now()) {
                                tracing::warn!("kafka: {text} (librdkafka retries by itself)");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }
        let _ = flush(&mut chunk).await;
    }

    /// Commits the offsets the frontier allows, asynchronously, when they changed.
    fn commit_async(&self) {
        let tpl = self.allowed();
        if tpl.count() == 0 {
            return;
        }
        let Ok(mut last) = self.last_commit.lock() else { return };
        if last.as_ref().is_some_and(|l| same_offsets(l, &tpl)) {
            return;
        }
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => *last = Some(tpl),
            Err(e) => tracing::debug!("committing offsets: {e}"),
        }
    }

    fn allowed(&self) -> TopicPartitionList {
        let assignment = self.consumer.assignment().ok();
        self.consumer.context().list(assignment.as_ref())
    }

    /// Commits the frontier synchronously (shutdown); says what it committed.
    pub(crate) fn commit(&self) -> Result<String, KafkaError> {
        let tpl = self.allowed();
        let text = tpl
            .elements()
            .iter()
            .map(|e| format!("{}/{}@{}", e.topic(), e.partition(), e.offset().to_raw().unwrap_or(-1)))
            .collect::<Vec<_>>()
            .join(" ");
        if tpl.count() > 0 {
            self.consumer.commit(&tpl, CommitMode::Sync).map_err(client("committing offsets"))?;
        }
        Ok(text)
    }
}

fn same_offsets(a: &TopicPartitionList, b: &TopicPartitionList) -> bool {
    let key = |l: &TopicPartitionList| {
        l.elements().iter().map(|e| (e.topic().to_string(), e.partition(), e.offset())).collect::<Vec<_>>()
    };
    key(a) == key(b)
}

/// Forwards rejected events to a dead-letter topic, with the reason in headers.
pub(crate) struct DeadLetterProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    source_topics: Vec<String>,
    shared: Arc<Shared>,
}

impl DeadLetterProducer {
    pub(crate) fn new(
        kafka: &Kafka,
        topic: String,
        source_topics: Vec<String>,
        shared: Arc<Shared>,
    ) -> Result<Self, KafkaError> {
        let producer =
            client_config(kafka, false)?.create().map_err(client("cannot create the dead-letter producer"))?;
        for result in ["sent", "failed"] {
            shared.metrics.dead_letters.with_label_values(&[result]);
        }
        Ok(DeadLetterProducer { producer, topic, source_topics, shared })
    }

    pub(crate) fn send(&self, topic: u16, payload: &[u8], rejected: &Rejected) {
        let source = self.source_topics.get(topic as usize).map_or("", String::as_str);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "driftwatch-reason", value: Some(rejected.reason.as_str()) })
            .insert(Header { key: "driftwatch-message", value: Some(rejected.message.as_str()) })
            .insert(Header { key: "driftwatch-source-topic", value: Some(source) });
        let record = BaseRecord::<(), [u8]>::to(&self.topic).payload(payload).headers(headers);
        let sent = self.producer.send(record).is_ok();
        DeadLettered { source_topic: source, sent }.emit(&self.shared.metrics);
    }

    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!("dead-letter producer flush: {e}");
        }
    }
}
