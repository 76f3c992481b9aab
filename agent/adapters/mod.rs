//! Adapters: what reads the outside world's files into the core's types — the agent
//! configuration (TOML with spans), the reference data and baseline artefacts (DataFusion),
//! and derived features and segment predicates (DataFusion expressions). They may use the
//! core; they never use the runtime.

pub mod baseline;
pub mod config;
pub mod derive;
pub(crate) mod reference;
