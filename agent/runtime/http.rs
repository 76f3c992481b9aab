//! The HTTP face of the agent: `/metrics` (Prometheus text format), `/healthz` (the process
//! serves requests), `/readyz` (baselines loaded and, for Kafka, partitions assigned) and
//! `/api/v1/status` (JSON: models, open windows, last verdicts).
//!
//! The pipeline writes into [`Shared`]; the server only reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::runtime::check::Report;
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
}

/// Closed windows kept per model in the status document.
pub const RECENT_WINDOWS: usize = 50;

/// One line of a model's window history.
#[derive(Clone, Debug, Serialize)]
pub struct WindowSummary {
    /// `model/start`: the same window has the same id wherever and however often it is
    /// evaluated.
    pub id: String,
    /// Evaluated again after a crash (see `checkpoint`): already counted and alerted on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    pub start: String,
    pub end: String,
    pub events: u64,
    pub verdict: &'static str,
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
    pub performance: crate::runtime::check::Performance,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastWindow {
    /// `model/start` (see [`WindowSummary::id`]).
    pub id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    pub start: String,
    pub end: String,
    pub events: u64,
    /// `drift`, `no_drift` or `insufficient_data`.
    pub verdict: &'static str,
    pub close_seconds: f64,
    /// The same document as `driftwatch check --format json` (absent for insufficient data).
    pub report: Option<Report>,
    /// The verdict on each segment slice (its full figures are on `/metrics`, `slice` label).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceSummary>,
}

/// Epoch milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/report/{model}", get(report))
        .with_state(shared)
}

/// Binds the listener (so a bad address fails at start, not later).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e} (set [agent] listen or --listen)"))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.encode()).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let mut missing = Vec::new();
    if !shared.baselines_loaded.load(Ordering::Relaxed) {
        missing.push("baselines not loaded");
    }
    if !shared.partitions_assigned.load(Ordering::Relaxed) {
        missing.push("no partitions assigned");
    }
    if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_string()).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", missing.join(", "))).into_response()
    }
}

/// The last evaluated window of a model as the HTML report of `driftwatch check`.
async fn report(State(shared): State<Arc<Shared>>, Path(model): Path<String>) -> Response {
    let Ok(status) = shared.status.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response();
    };
    let Some(m) = status.models.iter().find(|m| m.id == model) else {
        let ids: Vec<&str> = status.models.iter().map(|m| m.id.as_str()).collect();
        return (StatusCode::NOT_FOUND, format!("no model \"{model}\"; models are: {}\n", ids.join(", ")))
            .into_response();
    };
    match m.last_window.as_ref().and_then(|w| w.report.as_ref().map(|r| (w, r))) {
        Some((w, r)) => {
            let context = format!("window {} – {}, {} events", w.start, w.end, w.events);
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::runtime::html::render(r, &context)).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("model \"{model}\" has no evaluated window yet\n")).into_response(),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.status.lock() {
        Ok(s) => axum::Json(s.clone()).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response(),
    }
}
