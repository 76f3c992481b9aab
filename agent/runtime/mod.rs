//! The runtime shell: threads, sockets, signals and clocks around the pure core — the
//! Kafka and replay sources, the pipeline thread, checkpoints, metrics, the HTTP server and
//! its HTML report, the notifier, reload, and the `run`, `demo` and `check` commands.

pub mod check;
pub mod checkpoint;
pub mod cluster;
pub mod demo;
pub mod html;
pub(crate) mod http;
pub(crate) mod input;
pub(crate) mod internal_events;
pub mod metrics;
pub(crate) mod notify;
pub mod pipeline;
pub(crate) mod reload;
pub mod run;
pub mod setup;
pub(crate) mod source;
pub mod status;
pub(crate) mod throttle;
pub mod validate;
