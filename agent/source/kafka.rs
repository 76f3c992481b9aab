//! The Kafka source: one consumer of the agent's consumer group, through librdkafka.
//!
//! Offsets are stored late (DESIGN section 6): `enable.auto.offset.store=false`, and the
//! source stores only what the pipeline's commit frontier allows, every `linger` and after
//! each chunk; librdkafka's auto-commit sends stored offsets to the broker every second. On
//! a partition revoke and at shutdown the frontier is committed synchronously. Consumer lag
//! per partition comes from librdkafka's statistics (every 5 s). Broker outages are
//! librdkafka's to ride out: errors are logged and the consumer keeps polling, reconnecting
//! by itself.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::Chunk;
use crate::config::Kafka;
use crate::decode::Rejected;
use crate::http::Shared;

/// Offsets the pipeline allows to be stored: (topic index, partition) → next offset.
pub type Commits = Arc<Mutex<BTreeMap<(u16, i32), i64>>>;

/// The latest assignment, (topic index, partition), until the pipeline takes it.
pub type Assignment = Arc<Mutex<Option<Vec<(u16, i32)>>>>;

/// The librdkafka configuration for a consumer (or, without the group settings, a producer).
pub fn client_config(kafka: &Kafka, consumer: bool) -> anyhow::Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    for (k, v) in &kafka.properties {
        if !consumer && matches!(k.as_str(), "group.id") {
            continue;
        }
        cfg.set(k, v);
    }
    let password = crate::config::read_secret(
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
        cfg.set("enable.auto.offset.store", "false");
        cfg.set_if_absent("enable.auto.commit", "true");
        cfg.set_if_absent("auto.commit.interval.ms", "1000");
        cfg.set_if_absent("auto.offset.reset", "earliest");
        cfg.set_if_absent("statistics.interval.ms", "5000");
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
    }
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
        let assigned: Vec<(u16, i32)> = consumer
            .assignment()
            .map(|a| {
                a.elements()
                    .iter()
                    .filter_map(|e| {
                        let t = self.topics.iter().position(|t| t == e.topic())?;
                        Some((t as u16, e.partition()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.shared.partitions_assigned.store(!assigned.is_empty(), Ordering::Relaxed);
        if let Ok(mut a) = self.assignment.lock() {
            *a = Some(assigned);
        }
    }
}

/// A running consumer.
pub struct KafkaSource {
    consumer: StreamConsumer<Context>,
    topics: Vec<String>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes to `topics` (index = topic index in records).
    pub fn new(
        kafka: &Kafka,
        topics: Vec<String>,
        commits: Commits,
        assignment: Assignment,
        shared: Arc<Shared>,
    ) -> anyhow::Result<KafkaSource> {
        let context = Context { topics: topics.clone(), commits, assignment, shared };
        let consumer: StreamConsumer<Context> =
            client_config(kafka, true)?.create_with_context(context).context("cannot create the Kafka consumer")?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).context("cannot subscribe to the topics")?;
        Ok(KafkaSource { consumer, topics })
    }

    /// Reads until `stop` turns true, sending chunks of up to `batch_rows` events (or what
    /// arrived within `linger`), and storing allowed offsets as it goes.
    pub async fn read(
        &self,
        tx: mpsc::Sender<Chunk>,
        mut stop: watch::Receiver<bool>,
        batch_rows: usize,
        linger: Duration,
    ) {
        let index: BTreeMap<&str, u16> = self.topics.iter().enumerate().map(|(i, t)| (t.as_str(), i as u16)).collect();
        let mut chunk = Chunk::with_capacity(batch_rows);
        let mut last_error: Option<(String, std::time::Instant)> = None;
        let mut tick = tokio::time::interval(linger.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    if !chunk.is_empty() && tx.send(std::mem::replace(&mut chunk, Chunk::with_capacity(batch_rows))).await.is_err() {
                        break;
                    }
                    self.store();
                }
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let Some(&topic) = index.get(m.topic()) else { continue };
                        let ts = m.timestamp().to_millis();
                        chunk.push(topic, m.partition(), m.offset(), ts, m.payload().unwrap_or_default());
                        if chunk.len() >= batch_rows {
                            if tx.send(std::mem::replace(&mut chunk, Chunk::with_capacity(batch_rows))).await.is_err() {
                                break;
                            }
                            self.store();
                        }
                    }
                    Err(e) => {
                        // librdkafka reconnects by itself; say so once a minute per error, not
                        // once per poll.
                        let text = e.to_string();
                        if last_error.as_ref().is_none_or(|(t, at)| *t != text || at.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!("kafka: {text} (librdkafka retries by itself)");
                            last_error = Some((text, std::time::Instant::now()));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk).await;
        }
    }

    /// Stores the offsets the frontier allows (auto-commit sends them).
    pub fn store(&self) {
        let tpl = self.allowed();
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.store_offsets(&tpl) {
                tracing::debug!("storing offsets: {e}");
            }
        }
    }

    fn allowed(&self) -> TopicPartitionList {
        let assignment = self.consumer.assignment().ok();
        self.consumer.context().list(assignment.as_ref())
    }

    /// Commits the frontier synchronously (shutdown).
    pub fn commit(&self) -> anyhow::Result<usize> {
        let tpl = self.allowed();
        if tpl.count() == 0 {
            return Ok(0);
        }
        self.consumer.commit(&tpl, CommitMode::Sync).context("committing offsets")?;
        Ok(tpl.count())
    }
}

/// Forwards rejected events to a dead-letter topic, with the reason in headers.
pub struct DeadLetterProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    source_topics: Vec<String>,
    shared: Arc<Shared>,
}

impl DeadLetterProducer {
    pub fn new(kafka: &Kafka, topic: String, source_topics: Vec<String>, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let producer = client_config(kafka, false)?.create().context("cannot create the dead-letter producer")?;
        for result in ["sent", "failed"] {
            shared.metrics.dead_letters.with_label_values(&[result]);
        }
        Ok(DeadLetterProducer { producer, topic, source_topics, shared })
    }

    pub fn send(&self, topic: u16, payload: &[u8], rejected: &Rejected) {
        let source = self.source_topics.get(topic as usize).map_or("", String::as_str);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "driftwatch-reason", value: Some(rejected.reason.as_str()) })
            .insert(Header { key: "driftwatch-message", value: Some(rejected.message.as_str()) })
            .insert(Header { key: "driftwatch-source-topic", value: Some(source) });
        let record = BaseRecord::<(), [u8]>::to(&self.topic).payload(payload).headers(headers);
        let result = if self.producer.send(record).is_ok() { "sent" } else { "failed" };
        self.shared.metrics.dead_letters.with_label_values(&[result]).inc();
    }

    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!("dead-letter producer flush: {e}");
        }
    }
}
