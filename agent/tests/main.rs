//! The integration-test binary: golden statistics, properties, the command line.
mod golden;
