//! The integration-test binary: golden statistics, properties, configuration fixtures and
//! the command line.
mod cli;
mod config_fixtures;
mod golden;
mod properties;
