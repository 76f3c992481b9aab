//! Checkpoints: what a restarted agent needs to carry on exactly where the last run stopped.
//!
//! Open windows are not saved: their events are read again from Kafka, because the
//! committed offset of a partition never passes an event that an open window holds (see
//! `frontier`). What Kafka cannot say is which of the events read again were already used
//! by the last run: those of windows it closed and evaluated, late ones it counted, bad
//! ones it rejected and dead-lettered. The checkpoint says it, per model and per partition:
//!
//! * per model: the start of its earliest window not yet closed (the *cursor*; an event
//!   before it belongs to a closed window) and the end of the last window evaluated;
//! * per partition: the offset committed and one past the highest offset the run had seen.
//!
//! On the next start, an event read again below a partition's `seen` mark is used only if
//! it belongs to a window still open at the checkpoint (it is added to that window again,
//! but not counted again in the event counters); anything else below the mark was used
//! already and is passed over. A window closed after the checkpoint and before a crash is
//! evaluated again from the same events: it keeps its id (model and start), its verdict is
//! marked `repeated`, and it steps no alert and counts in no window counter a second time.
//!
//! The pipeline writes the checkpoint before it publishes the offsets it covers, so the
//! group's committed offsets are never newer than the checkpoint on disk. A checkpoint is
//! used for a partition only when the group's committed offset lies within what it
//! describes (another member may have moved the partition on since); one for another
//! broker list or group, or another window size, is ignored. The file lives in the agent's
//! state directory (the outbox directory), one per broker list and group, written to a
//! temporary name, fsynced and renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format's version; another version is ignored (with a warning).
pub const VERSION: u32 = 1;

/// A model's marks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMark {
    /// Window size and slide (ms) the marks were taken with.
    pub window: (i64, i64),
    /// Start of the earliest window not yet closed (`None`: none has closed).
    pub cursor: Option<i64>,
    /// End of the last window evaluated.
    pub evaluated_until: Option<i64>,
}

/// A partition's marks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionMark {
    pub topic: String,
    pub partition: i32,
    /// The offset committed with this checkpoint.
    pub committed: i64,
    /// One past the highest offset seen.
    pub seen: i64,
}

/// One checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// The source it describes: broker list and group.
    pub source: String,
    pub models: BTreeMap<String, ModelMark>,
    pub partitions: Vec<PartitionMark>,
}

/// Where the checkpoints of one source are kept.
pub struct Store {
    path: PathBuf,
    source: String,
}

impl Store {
    /// The checkpoint of `source` (broker list and group) in `dir`.
    pub fn new(dir: &Path, source: &str) -> Store {
        use sha2::{Digest, Sha256};
        let hash = format!("{:x}", Sha256::digest(source.as_bytes()));
        Store { path: dir.join(format!("checkpoint-{}.json", &hash[..16])), source: source.to_string() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last checkpoint of this source (`None`: there is none, or it cannot be used,
    /// which is logged).
    pub fn load(&self) -> Option<Checkpoint> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "cannot read the checkpoint, starting without it: {e}");
                return None;
            }
        };
        match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(c) if c.version == VERSION && c.source == self.source => Some(c),
            Ok(c) if c.version != VERSION => {
                tracing::warn!(file = %self.path.display(), version = c.version, "checkpoint of another format version, ignored");
                None
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "checkpoint unreadable, ignored: {e}");
                None
            }
        }
    }

    /// Writes a checkpoint durably, replacing the last one.
    pub fn save(&self, mut checkpoint: Checkpoint) -> std::io::Result<()> {
        checkpoint.version = VERSION;
        checkpoint.source = self.source.clone();
        let bytes = serde_json::to_vec(&checkpoint).map_err(std::io::Error::other)?;
        crate::runtime::notify::outbox::replace_durably(&self.path, &bytes)
    }
}

impl Checkpoint {
    /// The marks of a partition, if the group's committed offset (`committed`) is one this
    /// checkpoint explains: at most its `seen` mark (one below the mark it committed means
    /// a commit that never arrived, which reading again from there makes good; one past
    /// the `seen` mark means another member went on reading).
    pub fn partition(&self, topic: &str, partition: i32, committed: Option<i64>) -> Option<&PartitionMark> {
        let mark = self.partitions.iter().find(|m| m.topic == topic && m.partition == partition)?;
        let committed = committed?;
        (committed <= mark.seen).then_some(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_belongs_to_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "127.0.0.1:9092/driftwatch");
        assert_eq!(store.load(), None);
        let mut c = Checkpoint::default();
        c.models.insert(
            "m".into(),
            ModelMark { window: (60_000, 60_000), cursor: Some(120_000), evaluated_until: Some(120_000) },
        );
        c.partitions.push(PartitionMark { topic: "t".into(), partition: 0, committed: 10, seen: 15 });
        store.save(c.clone()).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.models, c.models);
        assert_eq!(back.partition("t", 0, Some(12)).map(|m| m.seen), Some(15));
        // The group moved on past what the checkpoint saw: another member read it.
        assert_eq!(back.partition("t", 0, Some(16)), None);
        // A fresh group (no committed offset) is not this checkpoint's.
        assert_eq!(back.partition("t", 0, None), None);
        // Another source's file is another file.
        assert_eq!(Store::new(dir.path(), "127.0.0.1:9093/driftwatch").load(), None);
    }
}
