//! driftwatch: a streaming drift, data-quality and performance monitor for ML models.
//!
//! Data flows one way through the stages (DESIGN.md section 3):
//!
//! ```text
//! baseline ──DataFusion──► ProfileSpec + reference Profile          (baseline)
//! current batch ──────────► Profile (same summaries, same code)       (profile)
//! compare(window, reference) → TestResult per feature × test          (stats)
//! thresholds, drift share, FDR → Report → table | JSON               (check)
//!
//! source (Kafka | replay) ─Chunk─► decode → RecordBatch per model    (source, decode)
//!   → event-time panes → closed windows → compare → metrics, status   (window, pipeline)
//!   → commit frontier → offsets stored late                           (frontier)
//!   → rules → readings → alert state → notices on transitions         (rules, alert)
//!   → durable outbox → digest per model → SMTP or .eml                (notify)
//! ```
//!
//! Modules:
//! * [`config`]: the agent TOML (`[[model]]` tables), parsed with spans and validated in two
//!   phases, every error reported as `file:line:col: message`.
//! * [`baseline`]: reads Parquet/CSV/NDJSON through one DataFusion `SessionContext`, infers
//!   feature types, builds the spec and reference profile, and reads and writes the
//!   versioned baseline artefact.
//! * [`profile`]: mergeable per-feature summaries (counts, histogram, categories, sample).
//! * [`stats`]: the statistical tests, matching SciPy.
//! * [`check`]: one-shot comparison of a batch with a baseline, and its report formats.
//! * [`source`]: Kafka consumer group and NDJSON replay, filling bounded chunks.
//! * [`decode`]: JSON payloads → Arrow batches per model; bad events rejected by reason.
//! * [`json`]: the validating scanner that pulls watched fields out of a payload.
//! * [`window`]: tumbling and sliding event-time windows over panes of mergeable profiles.
//! * [`frontier`]: which offsets may be committed (at-least-once).
//! * [`checkpoint`]: what a restarted agent must know to neither lose nor repeat a window.
//! * [`pipeline`]: decode → window → evaluate, synchronous, one thread.
//! * [`rules`]: alert rules — what a rule reads from a window and how it stands against its
//!   thresholds (effect-size floor, Benjamini–Hochberg, `min_samples`).
//! * [`alert`]: the alert state machine per (model, rule, feature), driven by window end times.
//! * [`notify`]: the durable outbox, email digests and their delivery thread (lettre).
//! * [`metrics`], [`http`]: every Prometheus metric; `/metrics`, health, readiness, status.
//! * [`run`]: `driftwatch run` — start-up, signals and orderly shutdown; [`demo`]: `driftwatch demo`.

// Outside data never meets a panic: clippy (not a hand count) keeps `unwrap`/`expect` to tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(unsafe_code)]

mod adapters;
mod engine;
mod runtime;

pub use adapters::reference;
pub use adapters::{baseline, config, derive};
pub use engine::{
    alert, chunk, decode, detect, evaluate, frontier, impact, json, labels, performance, plan, profile, recent, report,
    rng, rules, stats, text, window,
};
pub use runtime::{
    check, checkpoint, demo, html, http, input, metrics, notify, pipeline, reload, run, setup, source, status,
};
