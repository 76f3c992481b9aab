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

/// Reports each delivery by the id the record was sent with.
pub struct Acks(OnAck);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<u64>) {
        (self.0)(*id, result.is_ok());
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
            // Delivery is retried for as long as the broker may be away; a record is
            // failed (and its offsets stay uncommitted) only after this.
            .set("message.timeout.ms", "300000");
        let producer = cfg.create_with_context(Acks(on_ack)).map_err(client("cannot create the cluster producer"))?;
        Ok(PartialProducer { producer, topic: cluster.topic.clone(), partitions })
    }

    /// The partition `model`'s records go to.
    pub fn partition_of(&self, model: &str) -> i32 {
        partial::partition_of(model, self.partitions)
    }

    /// Queues a record; its delivery is reported to `on_ack` with `id`.
    pub fn send(&self, id: u64, record: &Record) -> Result<(), ClusterError> {
        let bytes = partial::encode(record)?;
        let model = record.model();
        let out = BaseRecord::with_opaque_to(&self.topic, Box::new(id))
            .key(model)
            .partition(self.partition_of(model))
            .payload(&bytes);
        self.producer.send(out).map_err(|(e, _)| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => ClusterError::QueueFull,
            _ => ClusterError::Client { what: "cannot queue a cluster record", source: e },
        })
    }

    /// Waits up to `timeout` for every queued record's delivery.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.producer.flush(timeout).map_err(client("flushing the cluster producer"))
    }
}

/// Shared so the pipeline thread and shutdown can both reach it.
pub type SharedProducer = Arc<PartialProducer>;
