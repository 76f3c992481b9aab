//! The commit frontier: per partition, the offset up to which every event has been fully
//! used — in a closed, evaluated window, or rejected and counted — so that storing it as the
//! consumer group's offset loses nothing (DESIGN section 6, at-least-once).
//!
//! Open window panes *hold* the lowest offset of each partition they contain; the pipeline
//! marks an offset *seen* only after its event reached a pane or was rejected. The
//! committable offset of a partition is the lowest held offset, or one past the highest seen
//! offset when nothing is held. It never passes an offset that an open pane still holds
//! (property-tested in `agent/tests/properties.rs`).

use std::collections::BTreeMap;

/// Offsets per interned partition (the pipeline numbers (topic, partition) pairs).
#[derive(Debug, Default)]
pub struct CommitFrontier {
    parts: Vec<Part>,
}

#[derive(Debug, Default)]
struct Part {
    /// One past the highest offset seen.
    next: Option<i64>,
    /// Held offsets with the number of panes holding each.
    holds: BTreeMap<i64, u32>,
}

impl CommitFrontier {
    fn part(&mut self, partition: u32) -> &mut Part {
        let i = partition as usize;
        if self.parts.len() <= i {
            self.parts.resize_with(i + 1, Part::default);
        }
        &mut self.parts[i]
    }

    /// The event at `offset` has been used (it is in a pane, or was rejected).
    pub fn seen(&mut self, partition: u32, offset: i64) {
        let p = self.part(partition);
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A pane holds events from `offset` on.
    pub fn hold(&mut self, partition: u32, offset: i64) {
        *self.part(partition).holds.entry(offset).or_insert(0) += 1;
    }

    /// A pane that held `offset` is gone.
    pub fn release(&mut self, partition: u32, offset: i64) {
        let p = self.part(partition);
        if let Some(n) = p.holds.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                p.holds.remove(&offset);
            }
        }
    }

    /// The partition was taken away with what it held: nothing is seen or held any more
    /// (its events are read again from the committed offset by whoever holds it next).
    pub fn forget(&mut self, partition: u32) {
        if let Some(p) = self.parts.get_mut(partition as usize) {
            *p = Part::default();
        }
    }

    /// One past the highest offset seen, if any.
    pub fn seen_until(&self, partition: u32) -> Option<i64> {
        self.parts.get(partition as usize)?.next
    }

    /// The offset to commit (the next one to consume), if any event was seen.
    pub fn committable(&self, partition: u32) -> Option<i64> {
        let p = self.parts.get(partition as usize)?;
        let next = p.next?;
        Some(p.holds.first_key_value().map_or(next, |(h, _)| (*h).min(next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_offsets_stop_the_frontier() {
        let mut f = CommitFrontier::default();
        assert_eq!(f.committable(0), None);
        f.hold(0, 10);
        for o in 10..20 {
            f.seen(0, o);
        }
        assert_eq!(f.committable(0), Some(10));
        f.hold(0, 15);
        f.release(0, 10);
        assert_eq!(f.committable(0), Some(15));
        f.release(0, 15);
        assert_eq!(f.committable(0), Some(20));
        assert_eq!(f.committable(3), None);
    }
}
