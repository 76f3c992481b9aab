//! The pipeline thread's one input: everything it is told arrives, in order, through one
//! bounded channel of [`Input`]s — chunks and assignments from the source (an assignment
//! always before the first record of its partitions, because the source sends both), reload
//! requests from the watcher, and the end of the source.

use tokio::sync::oneshot;

use crate::engine::chunk::Chunk;
use crate::runtime::notify::Queue;
use crate::runtime::pipeline::{Incoming, PipelineError, Reloaded};
use crate::runtime::setup::TopicTable;

/// An assignment: (topic index, partition, the group's committed offset when it has one)
/// for every partition held now.
pub(crate) type Assigned = Vec<(u16, i32, Option<i64>)>;

pub enum Input {
    /// Records to decode.
    Chunk(Chunk),
    /// The partitions held from now on (those no longer listed are revoked).
    Assigned(Assigned),
    /// A validated new configuration to apply between two chunks.
    Reload(ReloadRequest),
    /// The source has stopped for good: close up (replay, demo) or leave windows open (Kafka).
    End,
    /// The broker acknowledged a cluster record (or gave up on it).
    Acked(u64, bool),
    /// The owners' group: partitions owned, or records of the cluster topic.
    Owner(crate::engine::partial::OwnerInput),
}

/// How many inputs may wait for the pipeline before senders wait (backpressure).
pub(crate) const CAPACITY: usize = 4;

/// A validated, loaded configuration for the pipeline thread to apply.
pub struct ReloadRequest {
    pub incoming: Vec<Incoming>,
    pub table: TopicTable,
    pub max_event_bytes: usize,
    /// The alert queue, when this reload starts the notifier (the first rules).
    pub queue: Option<Queue>,
    pub reply: oneshot::Sender<Result<Reloaded, PipelineError>>,
}
