//! The integration-test binary: golden statistics, properties, configuration fixtures and
//! the command line, the streaming agent.
mod agent;
mod cli;
mod config_fixtures;
mod golden;
mod kafka;
mod properties;
