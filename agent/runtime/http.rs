//! The HTTP face of the agent: `/metrics` (Prometheus text format), `/healthz` (the process
//! serves requests), `/readyz` (baselines loaded and, for Kafka, partitions assigned) and
//! `/api/v1/status` (JSON: models, open windows, last verdicts).
//!
//! The pipeline writes into [`Shared`] (`status.rs`); the server only reads it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::runtime::status::Shared;

/// The routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/report/{model}", get(report))
        .with_state(shared)
}

/// Binds the listener (so a bad address fails at start, not later).
/// The HTTP server could not listen (pick another address).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source} (set [agent] listen or --listen)")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })
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
            let context = format!("window {} – {}, {} events", w.head.start, w.head.end, w.head.events);
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::runtime::html::render(r, &context))
                .into_response()
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
