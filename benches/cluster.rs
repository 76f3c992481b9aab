//! The cluster's costs (docs/cluster.md), in process: the size of a sealed pane's partial on
//! the wire per event and feature, encode and decode times, and the owner's merge time for
//! a window made of six source partitions' panes.
//!
//! `cargo bench --bench cluster` prints one line per pane size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use driftwatch::owner::Owner;
use driftwatch::partial::{self, Heartbeat, PanePartial, Record, Source};
use driftwatch::profile::{
    DEFAULT_MAX_CATEGORIES, DEFAULT_MAX_SAMPLES, FeatureKind, FeatureSpec, Profile, ProfileSpec,
};
use driftwatch::rng::splitmix;
use driftwatch::window::WindowSpec;

const NUMERICAL: usize = 20;
const CATEGORICAL: usize = 5;
const SOURCES: i32 = 6;

fn spec() -> ProfileSpec {
    let mut features: Vec<FeatureSpec> = (0..NUMERICAL)
        .map(|i| FeatureSpec::new(format!("n{i}"), FeatureKind::Numerical, (1..10).map(|k| k as f64 * 10.0).collect()))
        .collect();
    features.extend((0..CATEGORICAL).map(|i| FeatureSpec::new(format!("c{i}"), FeatureKind::Categorical, Vec::new())));
    ProfileSpec { features, bins: 10, max_samples: DEFAULT_MAX_SAMPLES, max_categories: DEFAULT_MAX_CATEGORIES }
}

/// One source partition's pane of `rows` events.
fn pane_profile(spec: &ProfileSpec, rows: usize, seed: u64) -> Profile {
    let mut rng = seed;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for i in 0..NUMERICAL {
        fields.push(Field::new(format!("n{i}"), DataType::Float64, true));
        let values: Vec<f64> = (0..rows).map(|_| (splitmix(&mut rng) % 1_000_000) as f64 / 10_000.0).collect();
        columns.push(Arc::new(Float64Array::from(values)));
    }
    for i in 0..CATEGORICAL {
        fields.push(Field::new(format!("c{i}"), DataType::Utf8, true));
        let values: Vec<String> = (0..rows).map(|_| format!("v{}", splitmix(&mut rng) % 40)).collect();
        columns.push(Arc::new(StringArray::from(values)));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
    let mut profile = Profile::new(spec);
    profile.observe(spec, &batch).expect("observe");
    profile
}

fn main() {
    let spec = spec();
    let window = WindowSpec {
        size: Duration::from_secs(60),
        slide: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(3600),
        ..WindowSpec::default()
    };
    println!(
        "driftwatch cluster: {NUMERICAL} numerical + {CATEGORICAL} categorical features, {SOURCES} source partitions"
    );
    for events_per_window in [6_000usize, 60_000, 600_000] {
        let rows = events_per_window / SOURCES as usize;
        let panes: Vec<PanePartial> = (0..SOURCES)
            .map(|p| PanePartial {
                model: "credit-risk".into(),
                source: Source { topic: "predictions".into(), partition: p },
                pane: 0,
                profile: pane_profile(&spec, rows, p as u64 + 1),
                slices: Vec::new(),
            })
            .collect();
        let started = Instant::now();
        let encoded: Vec<Vec<u8>> =
            panes.iter().map(|p| partial::encode(&Record::Pane(p.clone())).expect("encode")).collect();
        let encode_ms = started.elapsed().as_secs_f64() * 1000.0 / SOURCES as f64;
        let started = Instant::now();
        let decoded: Vec<Record> = encoded.iter().map(|b| partial::decode(b).expect("decode")).collect();
        let decode_ms = started.elapsed().as_secs_f64() * 1000.0 / SOURCES as f64;
        let bytes = encoded.iter().map(Vec::len).sum::<usize>() / SOURCES as usize;

        let now = Instant::now();
        let mut owner = Owner::new(&window, spec.clone(), Vec::new());
        for (offset, record) in decoded.into_iter().enumerate() {
            if let Record::Pane(p) = record {
                owner.take(p, offset as i64);
            }
        }
        for p in 0..SOURCES {
            let source = Source { topic: "predictions".into(), partition: p };
            owner
                .heartbeat(&Heartbeat { model: "credit-risk".into(), source, newest: Some(60_000), quiet: false }, now);
        }
        let started = Instant::now();
        let closed = owner.advance(now);
        let merge_ms = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].events(), (rows * SOURCES as usize) as u64);
        println!(
            "window of {events_per_window:>7} events: partial {:>10} bytes per pane ({:.2} bytes per event and feature), \
             encode {encode_ms:.1} ms, decode {decode_ms:.1} ms per pane, owner merge {merge_ms:.1} ms per window",
            bytes,
            bytes as f64 / rows as f64 / (NUMERICAL + CATEGORICAL) as f64,
        );
    }
}
