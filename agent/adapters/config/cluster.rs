//! `[cluster]`: agents sharing a model's windows through Kafka (docs/cluster.md). Present,
//! the agent ingests the source partitions it holds into partials on `topic` and owns the
//! models whose partition of `topic` it holds; absent, one agent judges what it reads.

use serde::Deserialize;
use toml::Spanned;

use super::Reporter;

/// The internal topic's name when none is given.
pub const DEFAULT_TOPIC: &str = "driftwatch-partials";
/// Partitions of the internal topic when the agent creates it (the most agents that can
/// own models at once).
pub const DEFAULT_PARTITIONS: i32 = 12;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The internal topic carrying partials, heartbeats and owner snapshots.
    pub topic: Option<Spanned<String>>,
    /// Its partitions, when the agent creates it.
    pub partitions: Option<Spanned<i64>>,
}

/// `[cluster]` after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub topic: String,
    pub partitions: i32,
}

pub(super) fn cluster_of(r: &mut Reporter, c: &ClusterConfig) -> Cluster {
    let topic = match &c.topic {
        Some(t) if t.get_ref().trim().is_empty() => {
            r.at(t.span(), "topic must not be empty; the default is \"driftwatch-partials\"");
            DEFAULT_TOPIC.to_string()
        }
        Some(t) => t.get_ref().clone(),
        None => DEFAULT_TOPIC.to_string(),
    };
    let partitions = match &c.partitions {
        Some(p) if !(1..=10_000).contains(p.get_ref()) => {
            r.at(p.span(), format!("partitions must be between 1 and 10000, got {}", p.get_ref()));
            DEFAULT_PARTITIONS
        }
        Some(p) => *p.get_ref() as i32,
        None => DEFAULT_PARTITIONS,
    };
    Cluster { topic, partitions }
}
