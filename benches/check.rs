//! End-to-end `check`: reference and current Parquet files with 25 feature columns (20
//! numerical, 5 categorical), 100 k + 100 k and 1 M + 1 M rows, default tests (`auto`),
//! read through DataFusion, profiled, compared. Generate the data first (not committed):
//!
//!   python3 fixtures/bench/generate.py target/bench-data
//!
//! or point DRIFTWATCH_BENCH_DATA at a folder that has it. Run: `cargo bench --bench check`.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use driftwatch::check::run;
use driftwatch::plan::FeatureSelection;
use driftwatch::plan::Plan;

fn data_dir() -> PathBuf {
    std::env::var_os("DRIFTWATCH_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"))
}

fn plan() -> Plan {
    Plan::zero_config("bench".into(), FeatureSelection::default())
}

fn check(c: &mut Criterion) {
    let dir = data_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("check_parquet_25_columns");
    group.sample_size(10);
    for tag in ["100k", "1m"] {
        let (reference, current) =
            (dir.join(format!("reference_{tag}.parquet")), dir.join(format!("current_{tag}.parquet")));
        if !reference.exists() || !current.exists() {
            eprintln!(
                "skipping {tag}: {} missing; run `python3 fixtures/bench/generate.py {}`",
                reference.display(),
                dir.display()
            );
            continue;
        }
        let plan = plan();
        group.bench_function(tag, |b| {
            b.iter(|| runtime.block_on(run(&reference, &current, &plan)).expect("check runs"));
        });
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
