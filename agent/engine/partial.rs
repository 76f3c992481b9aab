//! Partials: what ingest ships to a model's owner through the cluster topic
//! (docs/cluster.md). A [`Record`] is the sealed pane of one source partition — its profile
//! and its segment slices' —, a heartbeat carrying the partition's progress, an owner's
//! snapshot, or word that notifications were delivered.
//!
//! On the wire: `"DWP"`, one version byte, then the record in postcard, compressed with
//! zstd. Decoding checks the magic and the version and never panics on damaged bytes.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::engine::alert::SavedAlert;
use crate::engine::profile::Profile;

/// The wire format's version; a record of another version is refused (and counted).
pub const VERSION: u8 = 2;
const MAGIC: &[u8; 3] = b"DWP";
/// zstd level: partials are small and produced once a pane, so favour size a little.
const LEVEL: i32 = 3;

/// One source partition of a model's topics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
}

/// The sealed pane `[pane, pane + width)` of one source partition: every event of the model
/// that partition carried in it (none arrives later: they would be late).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PanePartial {
    pub model: String,
    pub source: Source,
    /// Pane start, epoch milliseconds.
    pub pane: i64,
    pub profile: Profile,
    /// One profile per segment slice, in the model's slice order.
    pub slices: Vec<Profile>,
}

/// A source partition's progress for a model: its newest event time (`None`: nothing yet).
/// Only heartbeats move the owner's watermark, and ingest sends one after the panes it
/// sealed: a pane partial carries no progress, since the panes sealed in one step may
/// arrive interleaved with other partitions' records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub model: String,
    pub source: Source,
    pub newest: Option<i64>,
    /// The partition has sent the model nothing for `idle_timeout`: it no longer holds the
    /// owner's watermark back (as a silent partition does not for one agent).
    pub quiet: bool,
}

/// What a model's owner must hand on: written to the model's own partition after it closes
/// windows, read by a successor that takes the partition over (docs/cluster.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub model: String,
    /// Start of the earliest window not yet closed.
    pub cursor: Option<i64>,
    /// End of the last window evaluated.
    pub evaluated_until: Option<i64>,
    pub alerts: Vec<SavedAlert>,
    /// Notifications queued and not yet known delivered: a successor sends them.
    pub pending: Vec<Pending>,
}

/// One notification batch of an owner, opaque here (the notifier's JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Stable over agents: the same windows give the same batch and id.
    pub id: u64,
    pub batch: Vec<u8>,
}

/// The owner's notifier had these batches of a model accepted by the mail server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    pub model: String,
    pub ids: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Pane(PanePartial),
    Heartbeat(Heartbeat),
    Snapshot(Snapshot),
    Delivered(Delivered),
}

impl Record {
    pub fn model(&self) -> &str {
        match self {
            Record::Pane(p) => &p.model,
            Record::Heartbeat(h) => &h.model,
            Record::Snapshot(s) => &s.model,
            Record::Delivered(d) => &d.model,
        }
    }

    /// `pane`, `heartbeat`, `snapshot` or `delivered` (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Pane(_) => "pane",
            Record::Heartbeat(_) => "heartbeat",
            Record::Snapshot(_) => "snapshot",
            Record::Delivered(_) => "delivered",
        }
    }
}

/// A record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    #[error("not a driftwatch partial (no \"DWP\" header)")]
    NotAPartial,
    #[error("partial format version {0}, this agent reads version {VERSION}: run one version in a cluster")]
    Version(u8),
    #[error("damaged partial: {0}")]
    Compression(std::io::Error),
    #[error("damaged partial: {0}")]
    Encoding(#[from] postcard::Error),
}

/// The record's bytes on the wire.
pub fn encode(record: &Record) -> Result<Vec<u8>, PartialError> {
    let plain = postcard::to_stdvec(record)?;
    let packed = zstd::bulk::compress(&plain, LEVEL).map_err(PartialError::Compression)?;
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + packed.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&packed);
    Ok(out)
}

/// At most this many bytes once decompressed (a pane is bounded by `max_samples` values per
/// feature; this guards against a damaged length, not against real partials).
const MAX_DECODED: usize = 256 << 20;

/// Reads a record back from its bytes on the wire.
pub fn decode(bytes: &[u8]) -> Result<Record, PartialError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(PartialError::NotAPartial)?;
    let (&version, packed) = rest.split_first().ok_or(PartialError::NotAPartial)?;
    if version != VERSION {
        return Err(PartialError::Version(version));
    }
    let plain =
        zstd::stream::decode_all(std::io::Read::take(packed, MAX_DECODED as u64)).map_err(PartialError::Compression)?;
    Ok(postcard::from_bytes(&plain)?)
}

/// The largest record sent as one Kafka message: a broker takes 1 MiB by default
/// (`message.max.bytes`), so larger records go as several frames.
pub const MAX_FRAME: usize = 900 * 1024;
const FRAME_MAGIC: &[u8; 3] = b"DWF";
const FRAME_HEADER: usize = 3 + 1 + 8 + 4 + 4;

/// The Kafka messages that carry an encoded record: itself when it fits in [`MAX_FRAME`],
/// otherwise frames `"DWF" | version | id | index | count | slice`, where `id` names the
/// record (a hash of its bytes). Send them in order to one partition.
pub fn frames(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    if bytes.len() <= MAX_FRAME {
        return vec![bytes];
    }
    let id = stable_hash(&bytes);
    let chunks: Vec<&[u8]> = bytes.chunks(MAX_FRAME - FRAME_HEADER).collect();
    let count = chunks.len() as u32;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut frame = Vec::with_capacity(FRAME_HEADER + chunk.len());
            frame.extend_from_slice(FRAME_MAGIC);
            frame.push(VERSION);
            frame.extend_from_slice(&id.to_le_bytes());
            frame.extend_from_slice(&(i as u32).to_le_bytes());
            frame.extend_from_slice(&count.to_le_bytes());
            frame.extend_from_slice(chunk);
            frame
        })
        .collect()
}

/// A record some of whose frames have arrived.
struct Partly {
    first_offset: i64,
    parts: Vec<Option<Vec<u8>>>,
}

/// Puts framed records back together, message by message, in one partition's order.
/// Frames of a record whose sender died midway are dropped once [`Reassembler::LIMIT`]
/// other records are in progress (a new sender sends the whole record again).
#[derive(Default)]
pub struct Reassembler {
    partly: BTreeMap<u64, Partly>,
    order: VecDeque<u64>,
}

impl Reassembler {
    pub const LIMIT: usize = 16;

    /// The message at `offset`: a whole record (with the offset of its first message) once
    /// all of it is here, or `None` while frames are missing.
    pub fn push(&mut self, offset: i64, bytes: &[u8]) -> Option<(i64, Result<Record, PartialError>)> {
        let Some(rest) = bytes.strip_prefix(FRAME_MAGIC.as_slice()) else {
            return Some((offset, decode(bytes)));
        };
        if rest.len() < FRAME_HEADER - 3 {
            return Some((offset, Err(PartialError::NotAPartial)));
        }
        if rest[0] != VERSION {
            return Some((offset, Err(PartialError::Version(rest[0]))));
        }
        let word = |at: usize, n: usize| rest[at..at + n].iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let (id, index, count) = (word(1, 8), word(9, 4) as usize, word(13, 4) as usize);
        if count == 0 || index >= count || count > 1 << 16 {
            return Some((offset, Err(PartialError::NotAPartial)));
        }
        let entry = self.partly.entry(id).or_insert_with(|| {
            self.order.push_back(id);
            Partly { first_offset: offset, parts: vec![None; count] }
        });
        if entry.parts.len() != count {
            return Some((offset, Err(PartialError::NotAPartial)));
        }
        if index == 0 {
            entry.first_offset = offset;
        }
        entry.parts[index] = Some(rest[FRAME_HEADER - 3..].to_vec());
        if entry.parts.iter().any(Option::is_none) {
            while self.order.len() > Self::LIMIT {
                if let Some(old) = self.order.pop_front() {
                    self.partly.remove(&old);
                }
            }
            return None;
        }
        let done = self.partly.remove(&id)?;
        self.order.retain(|&x| x != id);
        let whole: Vec<u8> = done.parts.into_iter().flatten().flatten().collect();
        Some((done.first_offset, decode(&whole)))
    }
}

/// FNV-1a: the same on every agent, build and platform.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cluster topic's partition of a model: FNV-1a of its id, so every agent (whatever its
/// Kafka client) sends a model's partials to the same partition.
pub fn partition_of(model: &str, partitions: i32) -> i32 {
    (stable_hash(model.as_bytes()) % partitions.max(1) as u64) as i32
}

/// What the owners' group hands the pipeline, in order.
#[derive(Debug)]
pub enum OwnerInput {
    /// The cluster-topic partitions this agent holds now, each with its end offset at the
    /// assignment: the records below it are the backlog a successor reads before it
    /// evaluates anything (docs/cluster.md).
    Owned(Vec<(i32, i64)>),
    /// Records read, in order within each partition.
    Records(Vec<OwnerRecord>),
}

/// One record of the cluster topic, decoded (or why it could not be).
#[derive(Debug)]
pub struct OwnerRecord {
    pub partition: i32,
    pub offset: i64,
    /// Bytes on the wire (every frame of it).
    pub bytes: usize,
    pub record: Result<Record, PartialError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::profile::{FeatureKind, FeatureSpec, ProfileSpec};
    use arrow::array::{Float64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn profile(rows: usize) -> (ProfileSpec, Profile) {
        profile_of(rows, |i| (i * 7 % 113) as f64 + 0.25)
    }

    /// A pane whose values do not compress (a large record).
    fn noisy_pane(rows: usize) -> Record {
        let mut rng = 7u64;
        let (_, p) = profile_of(rows, |_| crate::engine::rng::splitmix(&mut rng) as f64 / 1e9);
        Record::Pane(PanePartial {
            model: "m".into(),
            source: Source { topic: "t".into(), partition: 0 },
            pane: 0,
            slices: Vec::new(),
            profile: p,
        })
    }

    fn profile_of(rows: usize, mut value: impl FnMut(usize) -> f64) -> (ProfileSpec, Profile) {
        let spec = ProfileSpec {
            features: vec![
                FeatureSpec::new("income", FeatureKind::Numerical, vec![0.0, 10.0, 100.0]),
                FeatureSpec::new("country", FeatureKind::Categorical, Vec::new()),
            ],
            bins: 2,
            max_samples: crate::engine::profile::DEFAULT_MAX_SAMPLES,
            max_categories: crate::engine::profile::DEFAULT_MAX_CATEGORIES,
        };
        let schema = Schema::new(vec![
            Field::new("income", DataType::Float64, true),
            Field::new("country", DataType::Utf8, true),
        ]);
        let income: Vec<f64> = (0..rows).map(&mut value).collect();
        let country: Vec<&str> = (0..rows).map(|i| ["DE", "FR", "ES"][i % 3]).collect();
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Float64Array::from(income)), Arc::new(StringArray::from(country))],
        )
        .expect("batch");
        let mut p = Profile::new(&spec);
        p.observe(&spec, &batch).expect("observe");
        (spec, p)
    }

    fn pane(rows: usize) -> Record {
        let (_, p) = profile(rows);
        Record::Pane(PanePartial {
            model: "credit-risk".into(),
            source: Source { topic: "predictions".into(), partition: 2 },
            pane: 1_700_000_040_000,
            slices: vec![p.clone()],
            profile: p,
        })
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        for record in [
            pane(1000),
            Record::Heartbeat(Heartbeat {
                model: "m".into(),
                source: Source { topic: "t".into(), partition: 0 },
                newest: None,
                quiet: true,
            }),
            Record::Snapshot(Snapshot {
                model: "m".into(),
                cursor: Some(60_000),
                evaluated_until: Some(120_000),
                alerts: vec![SavedAlert {
                    rule: "income-drift".into(),
                    feature: "income".into(),
                    state: crate::engine::alert::AlertState::default(),
                }],
                pending: vec![Pending { id: 7, batch: b"{}".to_vec() }],
            }),
            Record::Delivered(Delivered { model: "m".into(), ids: vec![7, 8] }),
        ] {
            let bytes = encode(&record).expect("encode");
            assert_eq!(decode(&bytes).expect("decode"), record);
        }
    }

    #[test]
    fn damaged_or_foreign_bytes_are_refused_with_a_reason() {
        let bytes = encode(&pane(10)).expect("encode");
        assert!(matches!(decode(b"{\"model\":1}"), Err(PartialError::NotAPartial)));
        let mut other = bytes.clone();
        other[3] = 9;
        assert!(matches!(decode(&other), Err(PartialError::Version(9))));
        for cut in [4, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        assert!(decode(&flipped).is_err());
    }

    #[test]
    fn a_large_record_travels_in_frames_and_is_put_back_together() {
        let record = noisy_pane(300_000);
        let bytes = encode(&record).expect("encode");
        let frames = frames(bytes.clone());
        assert!(frames.len() > 1 && frames.iter().all(|f| f.len() <= MAX_FRAME), "{} bytes", bytes.len());
        let small = encode(&pane(10)).expect("encode");
        assert_eq!(super::frames(small.clone()), vec![small.clone()], "a small record is its own message");

        let mut r = Reassembler::default();
        // Another sender's half record (it died), then the whole record, then a small one.
        assert!(r.push(5, &frames[0]).is_none());
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            got.extend(r.push(10 + i as i64, f));
        }
        got.extend(r.push(99, &small));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 10, "a record stands at its first frame");
        assert_eq!(got[0].1.as_ref().expect("whole"), &record);
        assert_eq!(got[1].0, 99);
        let mut bad = frames[1].clone();
        bad[3] = 7;
        assert!(matches!(r.push(100, &bad), Some((100, Err(PartialError::Version(7))))));
    }

    #[test]
    fn a_model_always_goes_to_the_same_partition() {
        assert_eq!(partition_of("credit-risk", 6), partition_of("credit-risk", 6));
        let spread: std::collections::BTreeSet<i32> = (0..60).map(|i| partition_of(&format!("m{i}"), 6)).collect();
        assert_eq!(spread.len(), 6, "sixty models use every partition");
        assert_eq!(partition_of("x", 0), 0);
    }
}
