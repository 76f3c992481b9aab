//! Per-batch costs of the stream stages added on top of decoding: derived features and
//! segment slicing (DataFusion physical expressions on an 8192-row batch), duplicate
//! detection and the ground-truth join (per event).
//!
//! Run: `cargo bench --bench streams`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use driftwatch::derive::{Compiled, Derive, Dimension, Slicer};
use driftwatch::labels::LabelJoin;
use driftwatch::recent::{RecentIds, id_hash};
use driftwatch::window::Split as _;

const ROWS: usize = 8192;

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("income", DataType::Float64, true),
        Field::new("open_accounts", DataType::Float64, true),
        Field::new("country", DataType::Utf8, true),
    ]));
    let countries = ["DE", "FR", "NL", "ES", "PL", "IT"];
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Float64Array::from(
                (0..ROWS).map(|i| 20_000.0 + (i * 37 % 1000) as f64 * 90.0).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from((0..ROWS).map(|i| (i % 7) as f64).collect::<Vec<_>>())),
            Arc::new(StringArray::from((0..ROWS).map(|i| countries[i % 6]).collect::<Vec<_>>())),
        ],
    )
    .expect("batch")
}

fn expressions(c: &mut Criterion) {
    let b = batch();
    let mut g = c.benchmark_group("expressions");
    g.throughput(Throughput::Elements(ROWS as u64));
    let derive = Derive::new(
        &[("per_account".into(), "income / (open_accounts + 1)".into(), DataType::Float64)],
        b.schema_ref(),
    )
    .expect("derive");
    g.bench_function("derive one numerical feature, 8192 rows", |x| x.iter(|| derive.apply(&b).expect("apply")));
    let slicer = Slicer::new(vec![
        Dimension::Column {
            name: "country".into(),
            column: "country".into(),
            values: vec!["DE".into(), "FR".into(), "NL".into()],
        },
        Dimension::Predicate {
            name: "rich".into(),
            predicate: Compiled::new("income > 80000", b.schema_ref()).expect("sql"),
        },
    ]);
    g.bench_function("split into 5 segment slices, 8192 rows", |x| x.iter(|| slicer.split(&b).expect("split")));
    g.finish();
}

fn per_event(c: &mut Criterion) {
    let ids: Vec<u64> = (0..100_000u64).map(|i| id_hash(format!("ev-{i:08}").as_bytes())).collect();
    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("duplicate check, 100 k ids", |x| {
        x.iter(|| {
            let mut r = RecentIds::new(600_000, 1_000_000);
            ids.iter().enumerate().filter(|(i, id)| r.repeated(**id, *i as i64, (0, *i as i64))).count()
        })
    });
    g.bench_function("label join, 100 k predictions and labels", |x| {
        x.iter(|| {
            let mut j = LabelJoin::new(3_600_000, 1_000_000, 60_000, 60_000);
            for (i, id) in ids.iter().enumerate() {
                j.prediction(*id, i as i64, Some(0.5));
            }
            for (i, id) in ids.iter().enumerate() {
                j.label(*id, i as i64, Some(f64::from(u8::from(i % 3 == 0))));
            }
            j.flush().len()
        })
    });
    g.finish();
}

criterion_group!(benches, expressions, per_event);
criterion_main!(benches);
