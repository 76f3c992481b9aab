//! Sources: where event payloads come from. Each source fills [`Chunk`]s — up to
//! `batch_rows` records, or fewer once `linger` has passed since the first — and sends them
//! through a bounded channel to the pipeline, so a slow pipeline slows the source down
//! (backpressure) instead of growing memory. Every stage after the source is shared.
//!
//! * [`kafka`]: a consumer group (offsets stored late, see `frontier`).
//! * [`replay`]: NDJSON from a file or standard input, as fast as possible or paced.

pub mod kafka;
pub mod replay;

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
        &self.data[r.start as usize..(r.start + r.len) as usize]
    }

    pub fn push(&mut self, topic: u16, partition: i32, offset: i64, timestamp: Option<i64>, payload: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(payload);
        self.records.push(Record { topic, partition, offset, timestamp, start, len: payload.len() as u32 });
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
        self.records.push(Record { topic, partition, offset, timestamp, start: start as u32, len: len as u32 });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
