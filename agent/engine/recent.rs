//! Recent event ids: maps bounded by event time and by size ([`TimedIds`]), for duplicate
//! detection ([`RecentIds`]) and the label join.
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

/// The hash of an integer id: that of its decimal text (so `7` and `"7"` are one id),
/// formatted on the stack.
pub fn int_id_hash(v: i64) -> u64 {
    use std::io::Write;
    let mut buf = [0u8; 20];
    let mut out = std::io::Cursor::new(&mut buf[..]);
    // 20 bytes hold every i64 in decimal, sign included.
    let _ = write!(out, "{v}");
    let n = out.position() as usize;
    id_hash(&buf[..n])
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

/// Values keyed by id hash, each with an event time, oldest first out: the bounded state
/// of duplicate detection and of the label join.
pub struct TimedIds<T> {
    items: IdMap<(i64, T)>,
    /// Insertion order; entries removed or replaced since leave a stale slot here.
    order: VecDeque<(i64, u64)>,
}

impl<T> Default for TimedIds<T> {
    fn default() -> Self {
        TimedIds { items: IdMap::default(), order: VecDeque::new() }
    }
}

impl<T> TimedIds<T> {
    /// Adds (or replaces) an id's entry.
    pub fn insert(&mut self, id: u64, time: i64, value: T) {
        self.items.insert(id, (time, value));
        self.order.push_back((time, id));
    }

    pub fn get(&self, id: u64) -> Option<&(i64, T)> {
        self.items.get(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<(i64, T)> {
        self.items.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops the entries older than `before`, then the oldest while more than `cap` are
    /// left; returns how many of each (expired, evicted).
    pub fn expire(&mut self, before: i64, cap: usize) -> (u64, u64) {
        let (mut expired, mut evicted) = (0, 0);
        while let Some(&(t, id)) = self.order.front() {
            if t >= before && self.items.len() <= cap {
                break;
            }
            self.order.pop_front();
            // Only if the slot is current (a removed or replaced id left it stale).
            if let Entry::Occupied(e) = self.items.entry(id)
                && e.get().0 == t
            {
                e.remove();
                if t < before {
                    expired += 1;
                } else {
                    evicted += 1;
                }
            }
        }
        (expired, evicted)
    }
}

/// Ids seen within the horizon, with where each was first read.
pub struct RecentIds {
    horizon: i64,
    cap: usize,
    seen: TimedIds<(u32, i64)>,
    newest: i64,
}

impl RecentIds {
    pub fn new(horizon_ms: i64, cap: usize) -> RecentIds {
        RecentIds { horizon: horizon_ms, cap: cap.max(1), seen: TimedIds::default(), newest: i64::MIN }
    }

    /// Records an id seen at `time`, read at `at` (partition, offset); true when another
    /// record had it within the horizon. The same record read again (after a rebalance
    /// gave its partition back) is not its own duplicate.
    pub fn repeated(&mut self, id: u64, time: i64, at: (u32, i64)) -> bool {
        // One lookup per event (this is on the decode path).
        match self.seen.items.entry(id) {
            Entry::Occupied(e) if e.get().1 == at => return false,
            Entry::Occupied(e) if (time - e.get().0).abs() <= self.horizon => return true,
            Entry::Occupied(mut e) => {
                e.insert((time, at));
            }
            Entry::Vacant(e) => {
                e.insert((time, at));
            }
        }
        self.seen.order.push_back((time, id));
        self.newest = self.newest.max(time);
        self.seen.expire(self.newest.saturating_sub(self.horizon), self.cap);
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
        assert!(!r.repeated(1, 0, (0, 0)));
        assert!(r.repeated(1, 900, (0, 1)));
        assert!(!r.repeated(1, 0, (0, 0)), "the same record read again is no duplicate of itself");
        assert!(!r.repeated(2, 1_000, (0, 2)));
        // Time moves on past the horizon of id 1: it is forgotten.
        assert!(!r.repeated(3, 2_500, (0, 3)));
        assert!(!r.repeated(1, 2_600, (0, 4)));
        for id in 10..100 {
            assert!(!r.repeated(id, 2_600, (1, id as i64)));
            assert!(r.len() <= 3);
        }
        assert_ne!(id_hash(b"a"), id_hash(b"b"));
        assert_ne!(id_hash(b""), 0);
        assert_eq!(int_id_hash(-9_223_372_036_854_775_808), id_hash(b"-9223372036854775808"));
        assert_eq!(int_id_hash(7), id_hash(b"7"));
    }
}
