//! A model's owner in a cluster (docs/cluster.md): the sealed panes every source partition
//! sends become the model's windows, each closed once for the whole cluster.
//!
//! Per pane the owner keeps the *first* partial of each source partition and ignores later
//! ones (an ingest that took a partition over may send a pane again, complete or not: the
//! first one sent was complete). A window closes when the watermark over the model's source
//! partitions ([`Progress`], as for one agent) passes its end; its panes are merged in a
//! fixed order — pane, then topic and partition — so the report does not depend on the
//! order partials arrived in. Memory: open panes × source partitions × one bounded profile.
//! No clock: time comes in with the calls.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::engine::partial::{Heartbeat, PanePartial, Source};
use crate::engine::profile::{Profile, ProfileSpec};
use crate::engine::window::{ClosedWindow, Progress, WindowSpec, earliest_window, gcd, merge_pane, millis};

/// What became of a partial given to [`Owner::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Kept for its windows.
    Kept,
    /// The pane already has this source partition's partial (sent again after a takeover).
    Repeated,
    /// Every window holding the pane has closed.
    Late,
    /// Its profiles do not fit the model's spec (another configuration sent it).
    Unfit,
}

impl Taken {
    /// `kept`, `repeated`, `late` or `unfit` (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Taken::Kept => "kept",
            Taken::Repeated => "repeated",
            Taken::Late => "late",
            Taken::Unfit => "unfit",
        }
    }
}

/// One source partition's share of a pane.
struct Part {
    profile: Profile,
    slices: Vec<Profile>,
    /// Where the partial stands in the cluster topic (the owner may commit past it once
    /// every window holding the pane has closed).
    offset: i64,
}

/// The open windows of one owned model.
pub struct Owner {
    spec: ProfileSpec,
    slice_specs: Vec<ProfileSpec>,
    size: i64,
    slide: i64,
    pane: i64,
    panes: BTreeMap<i64, BTreeMap<Source, Part>>,
    /// Start of the earliest window not yet closed (`None` before any window closed).
    cursor: Option<i64>,
    progress: Progress<Source>,
    idle: std::time::Duration,
    /// A watermark that excuses silent partitions, and since when it has held.
    excused: Option<(i64, Instant)>,
}

impl Owner {
    /// `slice_specs[k]` is segment slice `k`'s spec, as for the model's windows.
    pub fn new(window: &WindowSpec, spec: ProfileSpec, slice_specs: Vec<ProfileSpec>) -> Owner {
        let size = millis(window.size).max(1);
        let slide = millis(window.slide).max(1).min(size);
        Owner {
            spec,
            slice_specs,
            size,
            slide,
            pane: gcd(size, slide),
            panes: BTreeMap::new(),
            cursor: None,
            progress: Progress::new(window),
            idle: window.idle_timeout,
            excused: None,
        }
    }

    /// Width of the panes the model's ingest must seal (milliseconds).
    pub fn pane_width(&self) -> i64 {
        self.pane
    }

    /// A source partition of the model's topics exists: it holds the watermark until it
    /// reports (or stays silent for `idle_timeout`).
    pub fn expect(&mut self, source: Source, now: Instant) {
        self.progress.expect(source, now);
    }

    /// Takes back a snapshot's cursor: windows starting before it closed already.
    pub fn resume(&mut self, cursor: i64) {
        let cursor = cursor.div_euclid(self.slide) * self.slide;
        self.cursor = Some(self.cursor.map_or(cursor, |c| c.max(cursor)));
        self.panes = self.panes.split_off(&cursor);
    }

    /// A sealed pane of one source partition, read at `offset` of the cluster topic. It
    /// does not move the watermark: the partition's next heartbeat does.
    pub fn take(&mut self, partial: PanePartial, offset: i64) -> Taken {
        let fits = |p: &Profile, spec: &ProfileSpec| p.features.len() == spec.features.len();
        if !fits(&partial.profile, &self.spec)
            || partial.slices.len() != self.slice_specs.len()
            || partial.slices.iter().zip(&self.slice_specs).any(|(p, s)| !fits(p, s))
        {
            return Taken::Unfit;
        }
        let pane = partial.pane.div_euclid(self.pane) * self.pane;
        if self.cursor.is_some_and(|c| pane < c) {
            return Taken::Late;
        }
        let parts = self.panes.entry(pane).or_default();
        if parts.contains_key(&partial.source) {
            return Taken::Repeated;
        }
        parts.insert(partial.source, Part { profile: partial.profile, slices: partial.slices, offset });
        Taken::Kept
    }

    /// A source partition's progress without a pane.
    pub fn heartbeat(&mut self, beat: &Heartbeat, now: Instant) {
        if beat.quiet {
            self.progress.heard(beat.source.clone(), beat.newest, now);
        } else {
            self.progress.saw(beat.source.clone(), beat.newest, now);
        }
    }

    /// No source partition has been active for twice `idle_timeout` (each reports itself
    /// quiet after one, having sealed what it held), so the open windows may close.
    pub fn quiet(&self, now: Instant) -> bool {
        self.progress.all_quiet(now, self.idle * 2)
    }

    /// The newest event time any source partition reported.
    pub fn newest(&self) -> Option<i64> {
        self.progress.newest()
    }

    /// The watermark at `now` (see [`Progress::watermark`]).
    pub fn watermark(&self, now: Instant) -> Option<i64> {
        self.progress.watermark(now)
    }

    /// Closes the windows every source partition has passed; and those only the active
    /// ones have passed (silent partitions excused, as for one agent) once that has held for
    /// `idle_timeout`: a partition another agent reads may lag this one's by less than that,
    /// so which agent reads first does not decide what a window holds.
    pub fn advance(&mut self, now: Instant) -> Vec<ClosedWindow> {
        let strict = self.progress.strict_watermark();
        let mut closed = strict.map(|w| self.close_until(Some(w))).unwrap_or_default();
        match self.watermark(now).filter(|&loose| strict.is_none_or(|s| loose > s)) {
            None => self.excused = None,
            Some(loose) => match self.excused {
                Some((w, since)) if w <= loose => {
                    if now.saturating_duration_since(since) >= self.idle {
                        closed.extend(self.close_until(Some(w)));
                        self.excused = (loose > w).then_some((loose, now));
                    }
                }
                _ => self.excused = Some((loose, now)),
            },
        }
        closed
    }

    /// Closes every window that holds data (idle timeout, end of a run without a broker).
    pub fn flush(&mut self) -> Vec<ClosedWindow> {
        self.close_until(None)
    }

    /// Start of the earliest window that has not closed.
    pub fn cursor(&self) -> Option<i64> {
        self.cursor
    }

    /// The lowest cluster-topic offset a successor must read again to rebuild the open
    /// windows (`None`: nothing held).
    pub fn held_from(&self) -> Option<i64> {
        self.panes.values().flat_map(|parts| parts.values().map(|p| p.offset)).min()
    }

    /// Events in open panes.
    pub fn open_rows(&self) -> u64 {
        self.panes.values().flat_map(|parts| parts.values().map(|p| p.profile.rows())).sum()
    }

    fn close_until(&mut self, watermark: Option<i64>) -> Vec<ClosedWindow> {
        let mut closed = Vec::new();
        while let Some((&first, _)) = self.panes.first_key_value() {
            let (start, end) = earliest_window(first, self.cursor, self.size, self.slide);
            if watermark.is_some_and(|w| end > w) {
                break;
            }
            let cursor = start + self.slide;
            self.cursor = Some(cursor);
            let mut merged: Option<(Profile, Vec<Profile>)> = None;
            for part in self.panes.range(start..end).flat_map(|(_, parts)| parts.values()) {
                merge_pane(&mut merged, &part.profile, &part.slices, &self.spec, &self.slice_specs);
            }
            // Panes before the next window's start are used for the last time.
            self.panes = self.panes.split_off(&cursor);
            if let Some((profile, slices)) = merged {
                closed.push(ClosedWindow { start, end, profile, slices, holds: Vec::new() });
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::profile::{FeatureKind, FeatureSpec};
    use std::time::Duration;

    fn spec() -> ProfileSpec {
        ProfileSpec {
            features: vec![FeatureSpec::new("x", FeatureKind::Numerical, Vec::new())],
            bins: 2,
            max_samples: 100,
            max_categories: 10,
        }
    }

    fn owner() -> Owner {
        let window =
            WindowSpec { size: Duration::from_secs(60), slide: Duration::from_secs(60), ..WindowSpec::default() };
        Owner::new(&window, spec(), Vec::new())
    }

    fn pane(p: i32, start: i64) -> PanePartial {
        PanePartial {
            model: "m".into(),
            source: Source { topic: "t".into(), partition: p },
            pane: start,
            profile: Profile::new(&spec()),
            slices: Vec::new(),
        }
    }

    fn beat(p: i32, newest: i64) -> Heartbeat {
        Heartbeat {
            model: "m".into(),
            source: Source { topic: "t".into(), partition: p },
            newest: Some(newest),
            quiet: false,
        }
    }

    #[test]
    fn a_window_closes_once_every_partition_has_passed_it_and_later_panes_are_late() {
        let now = Instant::now();
        let mut o = owner();
        o.expect(pane(0, 0).source, now);
        o.expect(pane(1, 0).source, now);
        assert_eq!(o.take(pane(0, 0), 10), Taken::Kept);
        assert_eq!(o.take(pane(0, 0), 11), Taken::Repeated);
        o.heartbeat(&beat(0, 70_000), now);
        assert!(o.advance(now).is_empty(), "partition 1 has not reported");
        assert_eq!(o.held_from(), Some(10));
        o.heartbeat(&beat(1, 65_000), now);
        let closed = o.advance(now);
        assert_eq!(closed.iter().map(|w| (w.start, w.end)).collect::<Vec<_>>(), vec![(0, 60_000)]);
        assert_eq!(o.held_from(), None);
        assert_eq!(o.take(pane(1, 0), 12), Taken::Late);
    }

    #[test]
    fn a_partial_of_another_shape_or_before_a_snapshots_cursor_is_not_taken() {
        let mut o = owner();
        let mut odd = pane(0, 0);
        odd.profile.features.clear();
        assert_eq!(o.take(odd, 0), Taken::Unfit);
        let mut sliced = pane(0, 0);
        sliced.slices.push(Profile::new(&spec()));
        assert_eq!(o.take(sliced, 0), Taken::Unfit);
        o.resume(120_000);
        assert_eq!(o.take(pane(0, 60_000), 1), Taken::Late);
        assert_eq!(o.take(pane(0, 120_000), 2), Taken::Kept);
    }
}
