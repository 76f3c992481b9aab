//! The agent's shared state: what the pipeline (the only writer) tells the HTTP server,
//! the notifier and the sources (readers) — the Prometheus registry, the status document
//! served as `/api/v1/status`, and the readiness flags.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::engine::report::Report;
use crate::runtime::metrics::Metrics;

/// State shared by the pipeline (writer) and the HTTP server (reader).
pub struct Shared {
    pub metrics: Metrics,
    pub status: Mutex<Status>,
    pub baselines_loaded: AtomicBool,
    pub partitions_assigned: AtomicBool,
}

impl Shared {
    pub fn new(metrics: Metrics, status: Status) -> Shared {
        Shared {
            metrics,
            status: Mutex::new(status),
            baselines_loaded: AtomicBool::new(false),
            partitions_assigned: AtomicBool::new(false),
        }
    }

    /// Applies a change to one model's entry (found by its id; none: nothing happens).
    pub fn update_model(&self, id: &str, f: impl FnOnce(&mut ModelStatus)) {
        self.update_status(|s| {
            if let Some(ms) = s.models.iter_mut().find(|m| m.id == id) {
                f(ms);
            }
        });
    }

    /// Applies a change to the status document.
    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

/// `/api/v1/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub version: &'static str,
    /// `kafka`, `replay` or `demo`.
    pub source: String,
    pub started_at: String,
    pub models: Vec<ModelStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelStatus {
    pub id: String,
    pub topics: Vec<String>,
    pub baseline: BaselineStatus,
    pub window: WindowStatus,
    pub open_windows: usize,
    pub open_events: u64,
    pub events: EventCounts,
    pub windows_closed: u64,
    pub last_window: Option<LastWindow>,
    /// The last window whose labels are in (models with `[model.labels]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_labelled: Option<LabelledSummary>,
    /// The latest closed windows, newest last (at most [`RECENT_WINDOWS`]).
    pub recent_windows: Vec<WindowSummary>,
    /// Pending and firing alerts after the last evaluated window.
    pub alerts: Vec<crate::engine::alert::AlertView>,
    /// In a cluster: `here` when this agent owns the model (judges its windows, runs its
    /// alerts), `elsewhere` when another agent does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<&'static str>,
}

/// Closed windows kept per model in the status document.
pub const RECENT_WINDOWS: usize = 50;

/// What every account of a closed window starts with.
#[derive(Clone, Debug, Serialize)]
pub struct WindowHead {
    /// `model/start`: the same window has the same id wherever and however often it is
    /// evaluated.
    pub id: String,
    /// Evaluated again after a crash (see `checkpoint`): already counted and alerted on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    pub start: String,
    pub end: String,
    pub events: u64,
    /// `drift`, `no_drift` or `insufficient_data`.
    pub verdict: &'static str,
}

/// One line of a model's window history.
#[derive(Clone, Debug, Serialize)]
pub struct WindowSummary {
    #[serde(flatten)]
    pub head: WindowHead,
    pub drifted_features: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BaselineStatus {
    pub path: String,
    pub sha256: String,
    pub rows: u64,
    pub features: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WindowStatus {
    pub size_seconds: f64,
    pub slide_seconds: f64,
    pub allowed_lateness_seconds: f64,
    pub idle_timeout_seconds: f64,
    pub min_events: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EventCounts {
    pub accepted: u64,
    pub late: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

/// A closed window's verdict on one segment slice.
#[derive(Clone, Debug, Serialize)]
pub struct SliceSummary {
    pub slice: String,
    pub events: u64,
    pub drift: bool,
    pub drift_share: f64,
    pub drifted_features: Vec<String>,
}

/// The last window whose labels are in: its realised performance.
#[derive(Clone, Debug, Serialize)]
pub struct LabelledSummary {
    pub start: String,
    pub end: String,
    /// Predictions of the window that met their label.
    pub labelled: u64,
    pub performance: crate::engine::report::Performance,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastWindow {
    #[serde(flatten)]
    pub head: WindowHead,
    pub close_seconds: f64,
    /// The same document as `driftwatch check --format json` (absent for insufficient data).
    pub report: Option<Report>,
    /// The verdict on each segment slice (its full figures are on `/metrics`, `slice` label).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceSummary>,
}
