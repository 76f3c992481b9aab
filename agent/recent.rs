//! Recent event ids: a set bounded by event time and by size, for duplicate detection.
//!
//! An id is remembered for `horizon` of event time after it was first seen (measured
//! against the newest time seen so far) and at most `cap` ids are kept; the oldest go first.
//! Ids are 64-bit hashes of the id text: two different ids collide with a probability of
//! about n²/2⁶⁵ (3·10⁻⁸ for a million ids), which would count one event as a duplicate.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The hash an event id is kept as (never 0, which means "no id").
pub fn id_hash(text: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x1D5).hash_one(text).max(1)
}

/// Keys that are hashes already pass through unchanged.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map keyed by id hashes.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Ids seen within the horizon.
pub struct RecentIds {
    horizon: i64,
    cap: usize,
    seen: IdMap<i64>,
    order: VecDeque<(i64, u64)>,
    newest: i64,
}

impl RecentIds {
    pub fn new(horizon_ms: i64, cap: usize) -> RecentIds {
        RecentIds {
            horizon: horizon_ms,
            cap: cap.max(1),
            seen: IdMap::default(),
            order: VecDeque::new(),
            newest: i64::MIN,
        }
    }

    /// Records an id seen at `time`; true when it was seen before within the horizon.
    pub fn repeated(&mut self, id: u64, time: i64) -> bool {
        match self.seen.entry(id) {
            Entry::Occupied(e) if (time - *e.get()).abs() <= self.horizon => return true,
            Entry::Occupied(mut e) => {
                e.insert(time);
            }
            Entry::Vacant(e) => {
                e.insert(time);
            }
        }
        self.order.push_back((time, id));
        self.newest = self.newest.max(time);
        while let Some(&(t, old)) = self.order.front() {
            if self.order.len() <= self.cap && t >= self.newest.saturating_sub(self.horizon) {
                break;
            }
            self.order.pop_front();
            // The id may have been seen again since (then its entry is newer): keep that.
            if let Entry::Occupied(e) = self.seen.entry(old) {
                if *e.get() == t {
                    e.remove();
                }
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_horizon_only_and_stays_bounded() {
        let mut r = RecentIds::new(1_000, 3);
        assert!(!r.repeated(1, 0));
        assert!(r.repeated(1, 900));
        assert!(!r.repeated(2, 1_000));
        // Time moves on past the horizon of id 1: it is forgotten.
        assert!(!r.repeated(3, 2_500));
        assert!(!r.repeated(1, 2_600));
        for id in 10..100 {
            assert!(!r.repeated(id, 2_600));
            assert!(r.len() <= 3);
        }
        assert_ne!(id_hash(b"a"), id_hash(b"b"));
        assert_ne!(id_hash(b""), 0);
    }
}
