//! The cluster's Kafka half (docs/cluster.md): the internal topic and the producer that
//! carries partials, heartbeats and snapshots to each model's partition of it.
//!
//! The producer is idempotent with `acks=all` and lz4 batches, so a record is written once
//! and in order per partition; each record's acknowledgement (or failure) is reported by id,
//! and only an acknowledged partial lets its source offsets be committed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::adapters::config::{Cluster, Kafka};
use crate::engine::partial::{self, PartialError, Record};
use crate::runtime::source::kafka::client_config;

pub use crate::engine::partial::{OwnerInput, OwnerRecord};
use crate::runtime::pipeline::{OwnerCommits, RecordSink, SendRefused, UNTRACKED};
pub use crate::runtime::source::kafka::KafkaError;

/// The cluster topic could not be set up or written to.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("creating the cluster topic \"{topic}\": {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
    #[error("the cluster topic \"{0}\" has no partitions (is it readable by this agent?)")]
    NoPartitions(String),
    #[error("{what}: {source}")]
    Client { what: &'static str, source: rdkafka::error::KafkaError },
    #[error(transparent)]
    Encode(#[from] PartialError),
    #[error("the producer's queue is full; the record is sent again with the next step")]
    QueueFull,
}

fn client(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> ClusterError {
    move |source| ClusterError::Client { what, source }
}

/// Creates the cluster topic when absent (with `cluster.partitions`, replication 1 unless
/// the broker says otherwise) and returns its partition count, which decides where each
/// model's records go: an existing topic keeps its own.
pub async fn ensure_topic(kafka: &Kafka, cluster: &Cluster) -> Result<i32, ClusterError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka, false)?.create().map_err(client("cannot create the admin client"))?;
    let topic = NewTopic::new(&cluster.topic, cluster.partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
        .await
        .map_err(client("cannot create the cluster topic"))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic = %cluster.topic, partitions = cluster.partitions, "cluster topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ClusterError::Create { topic, code }),
        }
    }
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&cluster.topic), Duration::from_secs(30))
        .map_err(client("cannot read the cluster topic's metadata"))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    match i32::try_from(partitions) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ClusterError::NoPartitions(cluster.topic.clone())),
    }
}

/// Told, per record id, whether the broker acknowledged it.
pub type OnAck = Box<dyn Fn(u64, bool) + Send + Sync>;

/// Reports each record's delivery by the id it was sent with, once every frame of it is
/// acknowledged (or one failed).
pub struct Acks {
    on_ack: OnAck,
    /// Per record id: frames not yet reported, and whether all reported so far were ok.
    waiting: std::sync::Mutex<std::collections::HashMap<u64, (usize, bool)>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<u64>) {
        let done = self.waiting.lock().ok().and_then(|mut waiting| {
            let entry = waiting.get_mut(&id)?;
            entry.0 = entry.0.saturating_sub(1);
            entry.1 &= result.is_ok();
            let (left, ok) = *entry;
            if left == 0 {
                waiting.remove(&id);
                Some(ok)
            } else {
                None
            }
        });
        if let Some(ok) = done {
            (self.on_ack)(*id, ok);
        }
    }
}

/// Writes records to the cluster topic, each model's to its own partition.
pub struct PartialProducer {
    producer: ThreadedProducer<Acks>,
    topic: String,
    partitions: i32,
}

impl PartialProducer {
    pub fn new(kafka: &Kafka, cluster: &Cluster, partitions: i32, on_ack: OnAck) -> Result<Self, ClusterError> {
        let mut cfg = client_config(kafka, false)?;
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            // One record a produce request: Tansu 0.6 gives a multi-record batch wrong end
            // offsets (its high watermark counts the batch as one record), and the owners'
            // backlog is read up to that end.
            .set("batch.num.messages", "1")
            // Delivery is retried for as long as the broker may be away; a record is
            // failed (and its offsets stay uncommitted) only after this.
            .set("message.timeout.ms", "300000");
        let acks = Acks { on_ack, waiting: Default::default() };
        let producer = cfg.create_with_context(acks).map_err(client("cannot create the cluster producer"))?;
        Ok(PartialProducer { producer, topic: cluster.topic.clone(), partitions })
    }

    /// How many partitions `topic` has (0 when the broker does not say).
    pub fn partitions_of(&self, topic: &str) -> i32 {
        self.producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .ok()
            .and_then(|m| m.topics().first().map(|t| t.partitions().len() as i32))
            .unwrap_or(0)
    }

    /// The partition `model`'s records go to.
    pub fn partition_of(&self, model: &str) -> i32 {
        partial::partition_of(model, self.partitions)
    }

    /// Queues a record (in frames when it is large: [`partial::frames`]); its delivery is
    /// reported to `on_ack` with `id` once every frame is acknowledged (never for
    /// [`UNTRACKED`]). Returns the bytes queued.
    pub fn send(&self, id: u64, record: &Record) -> Result<usize, ClusterError> {
        let frames = partial::frames(partial::encode(record)?);
        let model = record.model();
        let partition = self.partition_of(model);
        if id != UNTRACKED
            && let Ok(mut waiting) = self.producer.context().waiting.lock()
        {
            waiting.insert(id, (frames.len(), true));
        }
        for frame in &frames {
            let out =
                BaseRecord::with_opaque_to(&self.topic, Box::new(id)).key(model).partition(partition).payload(frame);
            if let Err((e, _)) = self.producer.send(out) {
                // The frames queued so far still report; the record counts as failed.
                if let Ok(mut waiting) = self.producer.context().waiting.lock()
                    && let Some(entry) = waiting.get_mut(&id)
                {
                    entry.1 = false;
                }
                return Err(match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => ClusterError::QueueFull,
                    _ => ClusterError::Client { what: "cannot queue a cluster record", source: e },
                });
            }
        }
        Ok(frames.iter().map(Vec::len).sum())
    }

    /// Waits up to `timeout` for every queued record's delivery.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.producer.flush(timeout).map_err(client("flushing the cluster producer"))
    }
}

impl RecordSink for PartialProducer {
    fn send(&self, id: u64, record: &Record) -> Result<usize, SendRefused> {
        PartialProducer::send(self, id, record).map_err(|e| match e {
            ClusterError::QueueFull => SendRefused::QueueFull,
            other => SendRefused::Failed(other.to_string()),
        })
    }

    fn partition_of(&self, model: &str) -> i32 {
        PartialProducer::partition_of(self, model)
    }
}

/// Shared so the pipeline thread and shutdown can both reach it.
pub type SharedProducer = Arc<PartialProducer>;

/// The owners' group's side of a rebalance, kept until the read loop sends it on.
struct OwnerContext {
    topic: String,
    commits: OwnerCommits,
    pending: std::sync::Mutex<Option<Vec<(i32, i64)>>>,
}

impl OwnerContext {
    fn allowed(&self, only: &rdkafka::TopicPartitionList) -> rdkafka::TopicPartitionList {
        let mut tpl = rdkafka::TopicPartitionList::new();
        if let Ok(commits) = self.commits.lock() {
            for (&p, &o) in commits.iter() {
                if only.find_partition(&self.topic, p).is_some() {
                    let _ = tpl.add_partition_offset(&self.topic, p, rdkafka::Offset::Offset(o));
                }
            }
        }
        tpl
    }
}

impl ClientContext for OwnerContext {}

impl rdkafka::consumer::ConsumerContext for OwnerContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::{CommitMode, Consumer, Rebalance};
        if let Rebalance::Revoke(revoked) = rebalance {
            let tpl = self.allowed(revoked);
            if tpl.count() > 0
                && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
            {
                tracing::warn!("commit of owned partitions on revoke failed: {e}");
            }
        }
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::{Consumer, Rebalance};
        // From the rebalance itself: asking the consumer for its assignment here deadlocks
        // while it closes (the revoke at shutdown runs inside its destructor).
        let owned: Vec<(i32, i64)> = match rebalance {
            Rebalance::Assign(tpl) => tpl
                .elements()
                .iter()
                .map(|e| {
                    let end = consumer
                        .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
                        .map_or(0, |(_, high)| high);
                    (e.partition(), end)
                })
                .collect(),
            Rebalance::Revoke(_) => Vec::new(),
            Rebalance::Error(_) => return,
        };
        tracing::info!(partitions = ?owned.iter().map(|(p, _)| p).collect::<Vec<_>>(), "cluster partitions owned");
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(owned);
        }
    }
}

/// A member of the owners' group (`<group.id>.owners`) on the cluster topic: the models whose
/// partition it holds are its to judge.
pub struct OwnerFeed {
    consumer: rdkafka::consumer::StreamConsumer<OwnerContext>,
}

impl OwnerFeed {
    pub fn new(kafka: &Kafka, cluster: &Cluster, commits: OwnerCommits) -> Result<Self, ClusterError> {
        use rdkafka::consumer::Consumer;
        let mut cfg = client_config(kafka, true)?;
        let group = cfg.get("group.id").unwrap_or("driftwatch").to_string();
        cfg.set("group.id", format!("{group}.owners"));
        // The owners' consumer reports no statistics (the source's health is the source's).
        cfg.set("statistics.interval.ms", "0");
        // Each member of the owners' group is its own static member too.
        if let Some(id) = cfg.get("group.instance.id").map(str::to_string) {
            cfg.set("group.instance.id", format!("{id}.owners"));
        }
        let context = OwnerContext { topic: cluster.topic.clone(), commits, pending: std::sync::Mutex::new(None) };
        let consumer: rdkafka::consumer::StreamConsumer<OwnerContext> =
            cfg.create_with_context(context).map_err(client("cannot create the owners' consumer"))?;
        consumer.subscribe(&[&cluster.topic]).map_err(client("cannot subscribe to the cluster topic"))?;
        Ok(OwnerFeed { consumer })
    }

    /// Reads until `stop` turns true: each new assignment, then the records after it, in
    /// batches of what arrived within 50 ms; commits what the pipeline allows as it moves.
    pub async fn read(&self, tx: tokio::sync::mpsc::Sender<OwnerInput>, mut stop: tokio::sync::watch::Receiver<bool>) {
        use rdkafka::Message;
        use rdkafka::consumer::{CommitMode, Consumer};
        let mut batch: Vec<OwnerRecord> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut committed: Option<Vec<(i32, i64)>> = None;
        let mut frames: std::collections::BTreeMap<i32, (partial::Reassembler, usize)> =
            std::collections::BTreeMap::new();
        loop {
            let owned = self.consumer.context().pending.lock().ok().and_then(|mut p| p.take());
            if let Some(owned) = owned {
                if !batch.is_empty() && tx.send(OwnerInput::Records(std::mem::take(&mut batch))).await.is_err() {
                    return;
                }
                if tx.send(OwnerInput::Owned(owned)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    if !batch.is_empty() && tx.send(OwnerInput::Records(std::mem::take(&mut batch))).await.is_err() {
                        return;
                    }
                    let assignment = self.consumer.assignment().unwrap_or_default();
                    let tpl = self.consumer.context().allowed(&assignment);
                    let now: Vec<(i32, i64)> = tpl
                        .elements()
                        .iter()
                        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
                        .collect();
                    if tpl.count() > 0 && committed.as_ref() != Some(&now) {
                        match self.consumer.commit(&tpl, CommitMode::Async) {
                            Ok(()) => committed = Some(now),
                            Err(e) => tracing::debug!("committing owned offsets: {e}"),
                        }
                    }
                }
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let payload = m.payload().unwrap_or_default();
                        let (parts, bytes) = frames.entry(m.partition()).or_default();
                        *bytes += payload.len();
                        if let Some((offset, record)) = parts.push(m.offset(), payload) {
                            let bytes = std::mem::take(bytes);
                            batch.push(OwnerRecord { partition: m.partition(), offset, bytes, record });
                        }
                    }
                    Err(e) => {
                        tracing::debug!("cluster topic: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(OwnerInput::Records(batch)).await;
        }
    }
}
