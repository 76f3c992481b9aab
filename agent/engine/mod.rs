//! The pure core: everything that turns events and a reference into verdicts, with no I/O.
//! No module here imports tokio, DataFusion, rdkafka, axum or lettre, nor anything of
//! [`crate::adapters`] or [`crate::runtime`]; time is always a parameter. The architecture
//! test (`agent/tests/architecture.rs`) holds that.

pub mod alert;
pub mod chunk;
pub mod decode;
pub mod detect;
pub mod evaluate;
pub mod frontier;
pub(crate) mod impact;
pub mod ingest;
pub(crate) mod json;
pub mod labels;
pub mod owner;
pub mod partial;
pub mod performance;
pub mod plan;
pub mod profile;
pub mod recent;
pub mod report;
pub mod rng;
pub mod rules;
pub mod stats;
pub mod text;
pub mod window;
