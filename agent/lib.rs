//! driftwatch: a streaming drift, data-quality and performance monitor for ML models.
//!
//! Data flows one way through the stages (DESIGN.md section 3):
//!
//! ```text
//! baseline ──DataFusion──► ProfileSpec + reference Profile          (baseline)
//! current batch ──────────► Profile (same summaries, same code)       (profile)
//! compare(window, reference) → TestResult per feature × test          (stats)
//! thresholds, drift share, FDR → Report → table | JSON               (check)
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

pub mod baseline;
pub mod check;
pub mod config;
pub mod profile;
pub mod stats;
