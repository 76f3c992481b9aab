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
//! The crate has three rooms, in one direction (`agent/tests/architecture.rs` holds it):
//!
//! * `engine/` — the pure core: no I/O, no clock, no DataFusion, Kafka, HTTP or SMTP.
//!   [`profile`] (mergeable per-feature summaries), [`stats`] (the tests, matching SciPy),
//!   [`plan`] (what decides a comparison, and `compare`), [`report`] (the report model),
//!   [`performance`] (realised metrics, CBPE), `impact`, [`detect`] (change detectors),
//!   [`rules`] (what a rule reads and how it stands), [`alert`] (the alert state machine),
//!   [`evaluate`] (a closed window judged: report, slices, alert steps), [`window`] and
//!   [`frontier`] (event-time windows, committable offsets), [`chunk`] (what sources hand
//!   over), [`decode`] and `json` (payloads → Arrow batches, rejections by reason),
//!   [`labels`] (ground truth joined to predictions), [`recent`] (duplicate ids), [`rng`],
//!   [`text`].
//! * `adapters/` — files into the core's types: [`config`] (the agent TOML, validated with
//!   `file:line:col` errors; one file per part: `model`, `source`, `notify`, `alerts`,
//!   `quality`, `segments`, and `document`, which finds unknown keys from the serde structs
//!   themselves), [`baseline`] (DataFusion reads, the baseline artefact),
//!   `reference` (baselines and fits as the agent and `check` load them), [`derive`]
//!   (derived features and segment predicates as DataFusion expressions).
//! * `runtime/` — the shell: `source` (Kafka, replay), `input` (the pipeline thread's one
//!   channel), [`pipeline`] (decode → window → evaluate → publish, one thread), [`setup`],
//!   `reload`, [`checkpoint`], [`metrics`] and `internal_events` (each occurrence logged and
//!   counted by one type), [`status`], `http`, [`html`], `notify` (outbox, digests, SMTP),
//!   [`run`], [`demo`], [`check`] and [`validate`] (the commands).
//!
//! The public API below is what the binary, the integration tests and the benches use.

// Outside data never meets a panic: clippy (not a hand count) keeps `unwrap`/`expect` to tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(unsafe_code)]
// `pub` means the public API below; whatever no outside caller can reach is `pub(crate)`, so
// the dead-code lint sees it.
#![deny(unreachable_pub)]

mod adapters;
mod engine;
mod runtime;

pub use adapters::{baseline, config, derive};
pub use engine::{
    alert, chunk, decode, detect, evaluate, frontier, ingest, labels, owner, partial, performance, plan, profile,
    recent, report, rng, rules, stats, text, window,
};
pub use runtime::{check, checkpoint, cluster, demo, html, metrics, pipeline, run, setup, status, validate};
