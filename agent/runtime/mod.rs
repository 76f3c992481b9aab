//! The runtime shell: threads, sockets, signals and clocks around the pure core — the
//! Kafka and replay sources, the pipeline thread, checkpoints, metrics, the HTTP server and
//! its HTML report, the notifier, reload, and the `run`, `demo` and `check` commands.

pub mod check;
pub mod checkpoint;
pub mod demo;
pub mod html;
pub mod http;
pub mod input;
pub mod internal_events;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod reload;
pub mod run;
pub mod setup;
pub mod source;
pub mod status;
pub mod throttle;
pub mod validate;
