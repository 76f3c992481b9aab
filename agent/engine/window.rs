//! Event-time windows built from panes of mergeable profiles.
//!
//! A window covers `[start, start + size)` with starts on multiples of `slide` (tumbling when
//! `slide == size`). Rows go into *panes* of width gcd(size, slide); a window is the merge of
//! its panes when it closes, never a re-scan of events. Event time only grows within a
//! partition, not across partitions, so the watermark is taken per partition as in Flink:
//! the lowest, over the active partitions, of their newest event time, minus
//! `allowed_lateness`. A partition is active while it has sent this model an event within
//! `idle_timeout`; an assigned partition that has sent nothing yet holds the watermark back
//! until it does or `idle_timeout` passes (so a consumer catching up one partition at a time
//! does not close windows the other partitions still feed). A window closes once the
//! watermark reaches its end, or when the pipeline calls [`Windows::flush`] (idle timeout,
//! shutdown). An event whose every
//! window has closed is *late*: it is counted and dropped. Events inside the lateness bound
//! still land in the windows that are open.
//!
//! Memory: one profile per pane, each bounded by features × (bins + `max_samples`) values,
//! and at most `size / pane + lateness / pane + 1` panes, whatever the event rate.
//!
//! Each pane holds, in the [`CommitFrontier`], the lowest offset of every partition it
//! contains, and releases it when the last window using the pane has closed. No clock here:
//! time comes in with the events and the caller's calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;

use crate::engine::decode::{Decoded, Issue};
use crate::engine::frontier::CommitFrontier;
use crate::engine::profile::{Profile, ProfileError, ProfileSpec};

/// The name of the whole window among its segment slices (the `slice` label of
/// whole-window series); no segment may take it.
pub const ALL_SLICE: &str = "all";

/// How a model's events are windowed.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowSpec {
    pub size: Duration,
    pub slide: Duration,
    pub allowed_lateness: Duration,
    /// Wall-clock time without events after which open windows are closed.
    pub idle_timeout: Duration,
    /// Windows with fewer events are reported as insufficient data, not tested.
    pub min_events: u64,
    /// Events a window normally holds; gives the window's `volume` (events / expected).
    pub expected_events: Option<u64>,
}

impl Default for WindowSpec {
    fn default() -> WindowSpec {
        let five = Duration::from_secs(300);
        WindowSpec {
            size: five,
            slide: five,
            allowed_lateness: Duration::ZERO,
            idle_timeout: five,
            min_events: 0,
            expected_events: None,
        }
    }
}

/// A closed window, ready for evaluation.
#[derive(Debug)]
pub struct ClosedWindow {
    /// Epoch milliseconds, inclusive.
    pub start: i64,
    /// Epoch milliseconds, exclusive.
    pub end: i64,
    pub profile: Profile,
    /// One profile per segment slice (see [`Windows::with_slices`]).
    pub slices: Vec<Profile>,
    /// The frontier holds (partition, lowest offset) of the panes this window was the last
    /// to use, released as it closed (a cluster's ingest holds them again until its partial
    /// is acknowledged).
    pub holds: Vec<(u32, i64)>,
}

impl ClosedWindow {
    pub fn events(&self) -> u64 {
        self.profile.rows()
    }
}

struct Pane {
    profile: Profile,
    slices: Vec<Profile>,
    /// Lowest offset held per partition.
    holds: Vec<(u32, i64)>,
}

/// Splits a batch's rows among a model's segment slices: `split(batch)[k]` holds the rows
/// of slice `k`. The runtime gives one compiled from the configured segments
/// (`adapters::derive::Slicer`); the core only calls it.
/// Why rows could not be split (the splitter's own error, boxed at the trait boundary).
pub type SplitError = Box<dyn std::error::Error + Send + Sync>;

pub trait Split: Send + Sync {
    fn split(&self, batch: &RecordBatch) -> Result<Vec<Vec<u32>>, SplitError>;
}

/// Segment slices of a model's windows: how rows are split and each slice's spec (its
/// bins come from its own reference).
struct Slices {
    slicer: Arc<dyn Split>,
    specs: Vec<ProfileSpec>,
    /// A split failed (warned once; the batch's rows are in no slice).
    failed: bool,
}

/// The open panes of one model.
pub struct Windows {
    spec: ProfileSpec,
    size: i64,
    slide: i64,
    pane: i64,
    panes: BTreeMap<i64, Pane>,
    /// Start of the earliest window not yet closed (`None` before any window closed).
    cursor: Option<i64>,
    partitions: Progress<u32>,
    slices: Option<Slices>,
}

/// How far the partitions feeding a stage have come in event time, and the watermark that
/// allows (see the module doc). The windows of one agent key it by interned partition, a
/// cluster owner by source partition.
#[derive(Clone, Debug)]
pub struct Progress<K> {
    /// Per partition: newest event time (`None`: assigned, nothing yet), and when (wall
    /// clock) it was assigned or last heard of.
    sources: BTreeMap<K, (Option<i64>, Instant)>,
    idle: Duration,
    lateness: i64,
}

impl<K: Ord> Progress<K> {
    pub fn new(window: &WindowSpec) -> Progress<K> {
        Progress {
            sources: BTreeMap::new(),
            idle: window.idle_timeout,
            lateness: i64::try_from(window.allowed_lateness.as_millis()).unwrap_or(0),
        }
    }

    /// A partition that may send events was assigned at `now`.
    pub fn expect(&mut self, key: K, now: Instant) {
        self.sources.entry(key).or_insert((None, now));
    }

    /// The partition's newest event time is at least `newest`, as of `now`.
    pub fn saw(&mut self, key: K, newest: Option<i64>, now: Instant) {
        let entry = self.sources.entry(key).or_insert((newest, now));
        *entry = (entry.0.max(newest), now);
    }

    /// The partition reports its newest event time: it counts as heard from at `now` only if
    /// that moved on (a report that repeats itself is silence).
    pub fn heard(&mut self, key: K, newest: Option<i64>, now: Instant) {
        let entry = self.sources.entry(key).or_insert((None, now));
        if newest > entry.0 {
            *entry = (newest, now);
        }
    }

    /// The newest event time any partition has sent.
    pub fn newest(&self) -> Option<i64> {
        self.sources.values().filter_map(|(t, _)| *t).max()
    }

    /// The watermark every partition allows, silent or not (`None` while any has sent
    /// nothing).
    pub fn strict_watermark(&self) -> Option<i64> {
        let newest = self.sources.values().map(|(t, _)| *t).collect::<Option<Vec<i64>>>()?.into_iter().min()?;
        Some(newest.saturating_sub(self.lateness))
    }

    /// Every partition has been silent for at least `quiet` at `now`.
    pub fn all_quiet(&self, now: Instant, quiet: Duration) -> bool {
        self.sources.values().all(|(_, seen)| now.saturating_duration_since(*seen) >= quiet)
    }

    /// The partition is not silent at `now` though it sent nothing (its source is behind or
    /// unreachable): it stays active and keeps holding the watermark.
    pub fn touch(&mut self, key: &K, now: Instant) {
        if let Some((_, seen)) = self.sources.get_mut(key) {
            *seen = now;
        }
    }

    /// The partition no longer holds the watermark.
    pub fn forget(&mut self, key: &K) {
        self.sources.remove(key);
    }

    /// The watermark at `now`: the lowest newest event time over the active partitions
    /// (an active one that has sent nothing holds it back), or the newest anywhere when all
    /// are quiet, minus the allowed lateness; `None` while held back or before any event.
    pub fn watermark(&self, now: Instant) -> Option<i64> {
        let active: Vec<Option<i64>> = self
            .sources
            .values()
            .filter(|(_, seen)| now.saturating_duration_since(*seen) < self.idle)
            .map(|(t, _)| *t)
            .collect();
        let newest = if active.is_empty() {
            self.sources.values().filter_map(|(t, _)| *t).max()?
        } else {
            active.into_iter().collect::<Option<Vec<i64>>>()?.into_iter().min()?
        };
        Some(newest.saturating_sub(self.lateness))
    }
}

/// Adds one pane's profile and slice profiles to the window being merged (the first pane
/// starts it, copied). Shared by one agent's windows and a cluster owner's.
pub(crate) fn merge_pane(
    window: &mut Option<(Profile, Vec<Profile>)>,
    profile: &Profile,
    slices: &[Profile],
    spec: &ProfileSpec,
    slice_specs: &[ProfileSpec],
) {
    match window {
        None => *window = Some((profile.clone(), slices.to_vec())),
        Some((merged, merged_slices)) => {
            merged.merge(profile, spec);
            for ((a, b), spec) in merged_slices.iter_mut().zip(slices).zip(slice_specs) {
                a.merge(b, spec);
            }
        }
    }
}

/// The pane width of windows of `size` sliding by `slide` (milliseconds).
pub fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The earliest window not yet closed that holds the pane starting at `first`, given the
/// cursor (start of the earliest window not yet closed): (start, end).
pub fn earliest_window(first: i64, cursor: Option<i64>, size: i64, slide: i64) -> (i64, i64) {
    let earliest = ((first - size).div_euclid(slide) + 1) * slide;
    let start = cursor.map_or(earliest, |c| c.max(earliest));
    (start, start + size)
}

/// A duration in milliseconds, saturating far below `i64::MAX` (times are added to it).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn ms(d: Duration) -> i64 {
    millis(d).max(1)
}

impl Windows {
    pub fn new(window: &WindowSpec, spec: ProfileSpec) -> Windows {
        let (size, slide) = (ms(window.size), ms(window.slide).min(ms(window.size)));
        Windows {
            spec,
            size,
            slide,
            pane: gcd(size, slide),
            panes: BTreeMap::new(),
            cursor: None,
            partitions: Progress::new(window),
            slices: None,
        }
    }

    /// Also profiles each segment slice: `specs[k]` is slice `k`'s (see [`Split`]).
    pub fn with_slices(mut self, slicer: Arc<dyn Split>, specs: Vec<ProfileSpec>) -> Windows {
        self.slices = Some(Slices { slicer, specs, failed: false });
        self
    }

    /// Adds decoded rows that arrived at `now`; returns the indices of late rows (dropped).
    pub fn insert(
        &mut self,
        rows: &Decoded,
        frontier: &mut CommitFrontier,
        now: Instant,
    ) -> Result<Vec<usize>, ProfileError> {
        let mut late = Vec::new();
        // Per row only small linear lists (a batch mostly holds one pane and few partitions);
        // the maps are touched once per batch.
        let mut newest: Vec<(u32, i64)> = Vec::new();
        let mut by_pane: Vec<(i64, Vec<u32>)> = Vec::new();
        for (i, (&t, p)) in rows.times.iter().zip(&rows.positions).enumerate() {
            if self.cursor.is_some_and(|c| t.div_euclid(self.slide) * self.slide < c) {
                late.push(i);
                continue;
            }
            match newest.iter_mut().find(|(q, _)| *q == p.partition) {
                Some((_, m)) => *m = (*m).max(t),
                None => newest.push((p.partition, t)),
            }
            let start = t.div_euclid(self.pane) * self.pane;
            match by_pane.iter_mut().rev().find(|(s, _)| *s == start) {
                Some((_, indices)) => indices.push(i as u32),
                None => by_pane.push((start, vec![i as u32])),
            }
        }
        for (partition, t) in newest {
            self.partitions.saw(partition, Some(t), now);
        }
        let whole = by_pane.len() == 1 && late.is_empty();
        for (start, indices) in by_pane {
            let (spec, slices) = (&self.spec, &self.slices);
            let pane = self.panes.entry(start).or_insert_with(|| Pane {
                profile: Profile::new(spec),
                slices: slices.as_ref().map_or(Vec::new(), |s| s.specs.iter().map(Profile::new).collect()),
                holds: Vec::new(),
            });
            let taken;
            let batch = if whole {
                &rows.batch
            } else {
                taken = take_record_batch(&rows.batch, &UInt32Array::from(indices.clone()))
                    .map_err(|e| ProfileError::MissingColumn(e.to_string()))?;
                &taken
            };
            pane.profile.observe(&self.spec, batch)?;
            if let Some(slices) = &mut self.slices {
                match slices.slicer.split(batch) {
                    Ok(parts) => {
                        for ((part, spec), profile) in parts.into_iter().zip(&slices.specs).zip(&mut pane.slices) {
                            if part.is_empty() {
                                continue;
                            }
                            let rows = take_record_batch(batch, &UInt32Array::from(part))
                                .map_err(|e| ProfileError::MissingColumn(e.to_string()))?;
                            profile.observe(spec, &rows)?;
                        }
                    }
                    Err(e) if !slices.failed => {
                        tracing::warn!("cannot split rows into segments: {e} (further failures at debug)");
                        slices.failed = true;
                    }
                    Err(e) => tracing::debug!("cannot split rows into segments: {e}"),
                }
            }
            if let Some(received) = rows.received_ms {
                let delay_ms: i64 = indices.iter().map(|&i| received - rows.times[i as usize]).sum();
                pane.profile.events.delay_seconds += delay_ms as f64 / 1000.0;
            }
            for &i in &indices {
                let p = rows.positions[i as usize];
                match pane.holds.iter_mut().find(|(part, _)| *part == p.partition) {
                    Some((_, held)) if p.offset < *held => {
                        frontier.release(p.partition, *held);
                        frontier.hold(p.partition, p.offset);
                        *held = p.offset;
                    }
                    Some(_) => {}
                    None => {
                        frontier.hold(p.partition, p.offset);
                        pane.holds.push((p.partition, p.offset));
                    }
                }
            }
        }
        // Value and schema problems go to the pane their row went to (late rows went nowhere).
        for issue in &rows.issues {
            let (Issue::TypeError { row, .. } | Issue::Schema { row }) = *issue;
            if late.binary_search(&(row as usize)).is_ok() {
                continue;
            }
            let Some(pane) = self.panes.get_mut(&self.pane_of(rows.times[row as usize])) else {
                continue;
            };
            match *issue {
                Issue::TypeError { feature, .. } => {
                    // `feature` is the batch column; the spec may order (and derive) others.
                    let name = rows.batch.schema_ref().field(feature as usize).name();
                    let at = self.spec.features.iter().position(|f| f.name == *name);
                    if let Some(f) = at.and_then(|i| pane.profile.features.get_mut(i)) {
                        f.retype_null_as_error();
                    }
                }
                Issue::Schema { .. } => pane.profile.events.schema_errors += 1,
            }
        }
        // A duplicate counts in the pane its original went to, while that pane is open.
        for &t in &rows.duplicates {
            let start = self.pane_of(t);
            if let Some(pane) = self.panes.get_mut(&start) {
                pane.profile.events.duplicates += 1;
            }
        }
        Ok(late)
    }

    /// A partition this model may get events from was assigned at `now`.
    pub fn expect_partition(&mut self, partition: u32, now: Instant) {
        self.partitions.expect(partition, now);
    }

    /// The partition is not silent at `now` though it sent nothing (its source is behind or
    /// unreachable): it stays active and keeps holding the watermark.
    pub fn touch(&mut self, partition: u32, now: Instant) {
        self.partitions.touch(&partition, now);
    }

    /// Takes back the cursor of a checkpoint: windows starting before `cursor` have closed
    /// (their events are late, or were used by the last run).
    pub fn resume(&mut self, cursor: i64) {
        let cursor = cursor.div_euclid(self.slide) * self.slide;
        self.cursor = Some(self.cursor.map_or(cursor, |c| c.max(cursor)));
    }

    /// A partition was revoked: it no longer holds the watermark.
    pub fn forget_partition(&mut self, partition: u32) {
        self.partitions.forget(&partition);
    }

    /// The watermark at `now` (see the module doc); `None` while it is held back or before
    /// any event.
    pub fn watermark(&self, now: Instant) -> Option<i64> {
        self.partitions.watermark(now)
    }

    /// Closes the windows the watermark has passed.
    pub fn advance(&mut self, frontier: &mut CommitFrontier, now: Instant) -> Vec<ClosedWindow> {
        match self.watermark(now) {
            Some(w) => self.close_until(Some(w), frontier),
            None => Vec::new(),
        }
    }

    /// Closes every window that holds data (idle timeout, shutdown).
    pub fn flush(&mut self, frontier: &mut CommitFrontier) -> Vec<ClosedWindow> {
        self.close_until(None, frontier)
    }

    fn close_until(&mut self, watermark: Option<i64>, frontier: &mut CommitFrontier) -> Vec<ClosedWindow> {
        let mut closed = Vec::new();
        while let Some((&first, _)) = self.panes.first_key_value() {
            let (start, end) = earliest_window(first, self.cursor, self.size, self.slide);
            if watermark.is_some_and(|w| end > w) {
                break;
            }
            // Panes before the next window's start are used for the last time: they are
            // taken out and merged by value (a tumbling window moves its one pane, no copy);
            // the panes the next windows share are merged by reference.
            let cursor = start + self.slide;
            self.cursor = Some(cursor);
            let mut profile: Option<(Profile, Vec<Profile>)> = None;
            let mut holds = Vec::new();
            let specs = self.slices.as_ref().map_or(&[][..], |s| &s.specs[..]);
            while let Some(entry) = self.panes.first_entry() {
                if *entry.key() >= cursor {
                    break;
                }
                let pane = entry.remove();
                for &(part, offset) in &pane.holds {
                    frontier.release(part, offset);
                }
                holds.extend_from_slice(&pane.holds);
                match profile {
                    None => profile = Some((pane.profile, pane.slices)),
                    Some(_) => merge_pane(&mut profile, &pane.profile, &pane.slices, &self.spec, specs),
                }
            }
            for (_, pane) in self.panes.range(cursor..end) {
                merge_pane(&mut profile, &pane.profile, &pane.slices, &self.spec, specs);
            }
            if let Some((profile, slices)) = profile {
                closed.push(ClosedWindow { start, end, profile, slices, holds });
            }
        }
        closed
    }

    /// Windows that hold data and have not closed.
    pub fn open_windows(&self) -> usize {
        let (Some((&first, _)), Some((&last, _))) = (self.panes.first_key_value(), self.panes.last_key_value()) else {
            return 0;
        };
        let (start, _) = earliest_window(first, self.cursor, self.size, self.slide);
        (last.div_euclid(self.slide) * self.slide - start) as usize / self.slide as usize + 1
    }

    /// The newest event time of the rows taken (late rows excluded).
    pub fn newest(&self) -> Option<i64> {
        self.partitions.newest()
    }

    /// Start of the earliest window that has not closed (rows before it are late).
    pub fn cursor(&self) -> Option<i64> {
        self.cursor
    }

    /// Rows in open panes.
    pub fn open_rows(&self) -> u64 {
        self.panes.values().map(|p| p.profile.rows()).sum()
    }

    /// Start of the pane a time falls in.
    pub fn pane_of(&self, time: i64) -> i64 {
        time.div_euclid(self.pane) * self.pane
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::decode::Position;
    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn spec() -> ProfileSpec {
        ProfileSpec::single_numerical(1000)
    }

    fn rows(times: &[i64], first_offset: i64) -> Decoded {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let x = Float64Array::from(times.iter().map(|t| *t as f64).collect::<Vec<_>>());
        Decoded::plain(
            RecordBatch::try_new(schema, vec![Arc::new(x)]).unwrap(),
            times.to_vec(),
            (0..times.len() as i64).map(|i| Position { partition: 0, offset: first_offset + i }).collect(),
        )
    }

    fn now() -> Instant {
        Instant::now()
    }

    fn seen(f: &mut CommitFrontier, d: &Decoded) {
        for p in &d.positions {
            f.seen(p.partition, p.offset);
        }
    }

    #[test]
    fn tumbling_windows_close_on_the_watermark() {
        let w = WindowSpec { size: Duration::from_secs(10), slide: Duration::from_secs(10), ..WindowSpec::default() };
        let mut win = Windows::new(&w, spec());
        let mut f = CommitFrontier::default();
        let d = rows(&[1_000, 5_000, 9_999, 12_000], 100);
        assert!(win.insert(&d, &mut f, now()).unwrap().is_empty());
        seen(&mut f, &d);
        let closed = win.advance(&mut f, now());
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].start, closed[0].end, closed[0].events()), (0, 10_000, 3));
        // The row at 12 s is still in an open window.
        assert_eq!(f.committable(0), Some(103));
        // An event for the closed window is late; one for the open window is not.
        let d = rows(&[9_000, 15_000], 104);
        assert_eq!(win.insert(&d, &mut f, now()).unwrap(), vec![0]);
        seen(&mut f, &d);
        let closed = win.flush(&mut f);
        assert_eq!((closed[0].start, closed[0].events()), (10_000, 2));
        assert_eq!(f.committable(0), Some(106));
    }

    #[test]
    fn sliding_windows_merge_their_panes() {
        let w = WindowSpec { size: Duration::from_secs(10), slide: Duration::from_secs(5), ..WindowSpec::default() };
        let mut win = Windows::new(&w, spec());
        let mut f = CommitFrontier::default();
        let d = rows(&[1_000, 6_000, 11_000, 16_000, 21_000], 0);
        win.insert(&d, &mut f, now()).unwrap();
        let closed = win.advance(&mut f, now());
        let got: Vec<(i64, u64)> = closed.iter().map(|c| (c.start, c.events())).collect();
        // Windows [-5,5) [0,10) [5,15) [10,20) have closed at watermark 21 s.
        assert_eq!(got, vec![(-5_000, 1), (0, 2), (5_000, 2), (10_000, 2)]);
        let got: Vec<(i64, u64)> = win.flush(&mut f).iter().map(|c| (c.start, c.events())).collect();
        assert_eq!(got, vec![(15_000, 2), (20_000, 1)]);
    }

    #[test]
    fn lateness_keeps_windows_open() {
        let w = WindowSpec {
            size: Duration::from_secs(10),
            slide: Duration::from_secs(10),
            allowed_lateness: Duration::from_secs(5),
            ..WindowSpec::default()
        };
        let mut win = Windows::new(&w, spec());
        let mut f = CommitFrontier::default();
        win.insert(&rows(&[1_000, 12_000], 0), &mut f, now()).unwrap();
        assert!(win.advance(&mut f, now()).is_empty());
        assert!(win.insert(&rows(&[3_000], 2), &mut f, now()).unwrap().is_empty());
        win.insert(&rows(&[16_000], 3), &mut f, now()).unwrap();
        let closed = win.advance(&mut f, now());
        assert_eq!(closed[0].events(), 2);
    }

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let w = WindowSpec { size: Duration::from_secs(10), slide: Duration::from_secs(10), ..WindowSpec::default() };
        let mut win = Windows::new(&w, spec());
        let mut f = CommitFrontier::default();
        let mut a = rows(&[1_000, 2_000], 0);
        let b = rows(&[11_000, 12_000], 0);
        a.positions.iter_mut().for_each(|p| p.partition = 1);
        let t0 = now();
        win.insert(&a, &mut f, t0).unwrap();
        win.insert(&b, &mut f, t0).unwrap();
        // Partition 1 is at 2 s: window [0, 10) stays open for its stragglers.
        assert!(win.advance(&mut f, t0).is_empty());
        assert!(win.insert(&rows(&[3_000], 2), &mut f, t0).unwrap().is_empty());
        // Once partition 1 has been quiet for the idle timeout, it no longer holds it back.
        let closed = win.advance(&mut f, t0 + w.idle_timeout);
        assert_eq!((closed[0].start, closed[0].events()), (0, 3));
    }

    #[test]
    fn an_assigned_partition_holds_the_watermark_until_it_speaks_or_idles() {
        let w = WindowSpec { size: Duration::from_secs(10), slide: Duration::from_secs(10), ..WindowSpec::default() };
        let mut win = Windows::new(&w, spec());
        let mut f = CommitFrontier::default();
        let t0 = now();
        win.expect_partition(1, t0);
        win.insert(&rows(&[1_000, 12_000], 0), &mut f, t0).unwrap();
        assert!(win.advance(&mut f, t0).is_empty(), "partition 1 has not spoken");
        let mut late_start = rows(&[2_000, 15_000], 0);
        late_start.positions.iter_mut().for_each(|p| p.partition = 1);
        assert!(win.insert(&late_start, &mut f, t0).unwrap().is_empty());
        let closed = win.advance(&mut f, t0);
        assert_eq!((closed[0].start, closed[0].events()), (0, 2));
    }
}
