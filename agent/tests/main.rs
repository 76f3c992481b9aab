//! The integration-test binary: the crate's architecture, golden statistics, properties, configuration fixtures and
//! the command line, the streaming agent, alerts with real SMTP, Prometheus and Alertmanager.
mod agent;
mod alerts;
mod architecture;
mod cli;
mod cluster;
mod config_fixtures;
mod dashboards;
mod deploy;
mod golden;
mod kafka;
mod performance;
mod properties;
mod quality;
mod reload;
mod report;
mod restarts;
mod sasl;
mod security;
mod segments;
