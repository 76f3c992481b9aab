//! The ingest half of a cluster (docs/cluster.md) for one model: each source partition keeps
//! its own panes, sealed by that partition's own watermark (its newest event time minus
//! `allowed_lateness`), and each sealed pane becomes a [`PanePartial`] for the model's owner.
//!
//! An event whose pane its partition has sealed is late. Whether it is depends only on the
//! order of events within its partition, never on how partitions interleave or how many
//! agents read them. A partition silent for `idle_timeout` seals what it holds. The panes are
//! [`Windows`] one pane wide, so decoding, quality counts, slices and the commit frontier's
//! holds work exactly as for one agent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::decode::Decoded;
use crate::engine::frontier::CommitFrontier;
use crate::engine::partial::{Heartbeat, PanePartial, Source};
use crate::engine::profile::{ProfileError, ProfileSpec};
use crate::engine::window::{Split, WindowSpec, Windows};

/// One source partition's panes.
struct Partition {
    source: Source,
    panes: Windows,
    last_event: Instant,
}

/// A sealed pane, and the frontier holds it keeps until the broker acknowledges it (give
/// them to [`CommitFrontier::release`] then).
pub struct Sealed {
    pub partial: PanePartial,
    pub holds: Vec<(u32, i64)>,
}

/// The ingest state of one model.
pub struct Ingest {
    model: String,
    /// One pane wide, with the model's lateness and idle timeout.
    pane: WindowSpec,
    spec: ProfileSpec,
    slices: Option<(Arc<dyn Split>, Vec<ProfileSpec>)>,
    partitions: BTreeMap<u32, Partition>,
}

impl Ingest {
    /// `pane_width` comes from the owner's windows (gcd of size and slide, milliseconds).
    pub fn new(model: &str, window: &WindowSpec, pane_width: i64, spec: ProfileSpec) -> Ingest {
        let width = Duration::from_millis(u64::try_from(pane_width.max(1)).unwrap_or(1));
        let pane = WindowSpec { size: width, slide: width, ..window.clone() };
        Ingest { model: model.to_string(), pane, spec, slices: None, partitions: BTreeMap::new() }
    }

    /// Also profiles each segment slice (see [`Windows::with_slices`]).
    pub fn with_slices(mut self, slicer: Arc<dyn Split>, specs: Vec<ProfileSpec>) -> Ingest {
        self.slices = Some((slicer, specs));
        self
    }

    /// Source partition `part` (interned, as in [`Decoded`] positions) is read from now on.
    pub fn assign(&mut self, part: u32, source: Source, now: Instant) {
        let (spec, pane, slices) = (&self.spec, &self.pane, &self.slices);
        self.partitions.entry(part).or_insert_with(|| {
            let mut panes = Windows::new(pane, spec.clone());
            if let Some((slicer, specs)) = slices {
                panes = panes.with_slices(slicer.clone(), specs.clone());
            }
            panes.expect_partition(part, now);
            Partition { source, panes, last_event: now }
        });
    }

    /// Partition `part` was taken away: its open panes are dropped unsent (whoever reads it
    /// next reads their events again from the committed offset, which they still hold).
    pub fn revoke(&mut self, part: u32) {
        self.partitions.remove(&part);
    }

    /// The source is behind on `part` or unreachable: not hearing from it is not idleness.
    pub fn touch(&mut self, part: u32, now: Instant) {
        if let Some(p) = self.partitions.get_mut(&part) {
            p.last_event = now;
            p.panes.touch(part, now);
        }
    }

    pub fn insert(
        &mut self,
        rows: &Decoded,
        frontier: &mut CommitFrontier,
        now: Instant,
    ) -> Result<Vec<usize>, ProfileError> {
        let mut late = Vec::new();
        let parts = rows.partitions();
        let whole = parts.len() == 1;
        for (k, (part, map)) in parts.into_iter().enumerate() {
            let Some(p) = self.partitions.get_mut(&part) else {
                late.extend(map.iter().map(|&i| i as usize));
                continue;
            };
            let taken;
            let decoded = if whole {
                rows
            } else {
                taken = rows.select(&map, k == 0).map_err(|e| ProfileError::MissingColumn(e.to_string()))?;
                &taken
            };
            if !decoded.times.is_empty() {
                p.last_event = now;
            }
            for i in p.panes.insert(decoded, frontier, now)? {
                late.push(map[i] as usize);
            }
        }
        late.sort_unstable();
        Ok(late)
    }

    /// Seals the panes each partition's watermark has passed, and every pane of a partition
    /// silent for `idle_timeout`. Each sealed pane keeps holding its lowest offset in the
    /// frontier until its partial is acknowledged.
    pub fn seal(&mut self, frontier: &mut CommitFrontier, now: Instant) -> Vec<Sealed> {
        let mut out = Vec::new();
        for p in self.partitions.values_mut() {
            let idle = now.saturating_duration_since(p.last_event) >= self.pane.idle_timeout;
            let sealed = if idle { p.panes.flush(frontier) } else { p.panes.advance(frontier, now) };
            for pane in sealed {
                for &(part, offset) in &pane.holds {
                    frontier.hold(part, offset);
                }
                let partial = PanePartial {
                    model: self.model.clone(),
                    source: p.source.clone(),
                    pane: pane.start,
                    profile: pane.profile,
                    slices: pane.slices,
                };
                out.push(Sealed { partial, holds: pane.holds });
            }
        }
        out
    }

    /// Each assigned partition's progress at `now`, for the owner: sent after the panes
    /// [`Ingest::seal`] gave, never before them.
    pub fn heartbeats(&self, now: Instant) -> Vec<Heartbeat> {
        self.partitions
            .values()
            .map(|p| Heartbeat {
                model: self.model.clone(),
                source: p.source.clone(),
                newest: p.panes.newest(),
                quiet: now.saturating_duration_since(p.last_event) >= self.pane.idle_timeout,
            })
            .collect()
    }
}
