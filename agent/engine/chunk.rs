//! What sources hand to the pipeline: chunks of raw records (payload bytes with their
//! topic, partition, offset and broker time, in one buffer), and what a source says about
//! its own health. Plain data; the sources that fill them live in `runtime/source`.

/// What the source says about itself, so that the pipeline can tell silence from an outage:
/// windows close for idleness only while the source is healthy and caught up.
#[derive(Clone, Debug)]
pub struct SourceState {
    /// The source can read (for Kafka: the leader of every assigned partition is connected).
    pub healthy: bool,
    /// Partitions (topic index, partition) with events not yet handed to the pipeline.
    pub behind: Vec<(u16, i32)>,
    /// When this was last reported (`None`: never, which counts as unhealthy for Kafka).
    pub at: Option<std::time::Instant>,
}

impl SourceState {
    /// A report older than this no longer counts (the source is taken as unhealthy).
    pub const STALE: std::time::Duration = std::time::Duration::from_secs(5);

    /// The source reported itself healthy, recently enough.
    pub fn healthy_at(&self, now: std::time::Instant) -> bool {
        self.healthy && self.at.is_none_or(|at| now.saturating_duration_since(at) < Self::STALE)
    }

    /// A source that is always caught up (replay, the demo): what it has not sent yet, it
    /// has not read yet.
    pub fn settled() -> SourceState {
        SourceState { healthy: true, behind: Vec::new(), at: None }
    }
}

/// A chunk is sent on once its payloads reach this many bytes (whatever its record count),
/// which keeps payload offsets far inside `u32` and a chunk's memory bounded.
pub const MAX_CHUNK_BYTES: usize = 64 << 20;

/// One event in a chunk; its payload is `data[start..start + len]`.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Index into the source's topic list.
    pub topic: u16,
    pub partition: i32,
    pub offset: i64,
    /// Message timestamp (epoch ms), the fallback event time.
    pub timestamp: Option<i64>,
    pub start: u32,
    pub len: u32,
}

/// Records with their payloads in one buffer.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<Record>,
    pub data: Vec<u8>,
}

impl Chunk {
    pub fn with_capacity(records: usize) -> Chunk {
        Chunk { records: Vec::with_capacity(records), data: Vec::with_capacity(records * 256) }
    }

    pub fn payload(&self, r: &Record) -> &[u8] {
        let start = r.start as usize;
        self.data.get(start..start + r.len as usize).unwrap_or_default()
    }

    /// Adds a record with a copy of its payload, of which at most `keep` bytes are kept (a
    /// payload over the event size limit needs no more to be rejected). Callers send the
    /// chunk on once [`Chunk::is_full`].
    pub fn push(&mut self, topic: u16, partition: i32, offset: i64, timestamp: Option<i64>, payload: &[u8]) {
        let start = self.data.len();
        let payload = &payload[..payload.len().min(MAX_CHUNK_BYTES)];
        self.data.extend_from_slice(payload);
        self.push_stored(topic, partition, offset, timestamp, start, payload.len());
    }

    /// The chunk holds `rows` records or [`MAX_CHUNK_BYTES`] of payload.
    pub fn is_full(&self, rows: usize) -> bool {
        self.records.len() >= rows || self.data.len() >= MAX_CHUNK_BYTES
    }

    /// Adds a record whose payload is already in `data` at `start..start + len`.
    pub fn push_stored(
        &mut self,
        topic: u16,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        start: usize,
        len: usize,
    ) {
        debug_assert!(start + len <= self.data.len());
        // Chunks are sent on at MAX_CHUNK_BYTES, each payload is cut to it: both fit in u32.
        let (start, len) = (u32::try_from(start).unwrap_or(u32::MAX), u32::try_from(len).unwrap_or(0));
        self.records.push(Record { topic, partition, offset, timestamp, start, len });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
