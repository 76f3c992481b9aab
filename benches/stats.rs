//! Cost of each statistical test at 1 k, 100 k and 1 M values per side (both sides sorted,
//! as the engine hands them over), of the binned tests including binning, of sorting, and of
//! performance estimation (CBPE fit on a reference, estimate on a window of scores).
//! Run: `cargo bench --bench stats` (add `-- ks` to filter).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::profile::{quantile_edges, sort_f64};
use driftwatch::stats::binned::{self, Proportions};
use driftwatch::stats::continuous::{self, KsMethod};
use driftwatch::stats::histogram_of_sorted;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Deterministic approximately normal values (Irwin–Hall), shifted by `shift`.
fn sample(n: usize, seed: u64, shift: f64) -> Vec<f64> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 * 2f64.powi(-53)
    };
    (0..n).map(|_| (0..12).map(|_| next()).sum::<f64>() - 6.0 + shift).collect()
}

fn sorted(n: usize, seed: u64, shift: f64) -> Vec<f64> {
    let mut v = sample(n, seed, shift);
    sort_f64(&mut v);
    v
}

fn numerical(c: &mut Criterion) {
    type Test = fn(&[f64], &[f64]) -> Result<driftwatch::stats::Outcome, driftwatch::stats::Undefined>;
    let tests: [(&str, Test); 7] = [
        ("ks", |a, b| continuous::ks(a, b, KsMethod::Auto)),
        ("wasserstein", continuous::wasserstein),
        ("energy", continuous::energy),
        ("anderson", continuous::anderson),
        ("cvm", continuous::cvm),
        ("mannwhitney", continuous::mannwhitney),
        ("ttest", continuous::ttest),
    ];
    for (name, test) in tests {
        let mut group = c.benchmark_group(format!("numerical/{name}"));
        group.sample_size(10);
        for n in SIZES {
            let (a, b) = (sorted(n, 1, 0.0), sorted(n, 2, 0.05));
            group.throughput(Throughput::Elements(2 * n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| bench.iter(|| test(&a, &b)));
        }
        group.finish();
    }
    let mut group = c.benchmark_group("numerical/ks_exact");
    group.sample_size(10);
    let (a, b) = (sorted(10_000, 1, 0.0), sorted(10_000, 2, 0.05));
    group.bench_function("10000", |bench| bench.iter(|| continuous::ks(&a, &b, KsMethod::Exact)));
    group.finish();
}

fn binned_tests(c: &mut Criterion) {
    type Test = fn(&Proportions) -> driftwatch::stats::Outcome;
    let tests: [(&str, Test); 5] = [
        ("psi", binned::psi),
        ("kl", binned::kl),
        ("hellinger", binned::hellinger),
        ("jensenshannon", binned::jensenshannon),
        ("tvd", binned::tvd),
    ];
    for (name, test) in tests {
        let mut group = c.benchmark_group(format!("binned/{name}"));
        group.sample_size(10);
        for n in SIZES {
            let (a, b) = (sorted(n, 1, 0.0), sorted(n, 2, 0.05));
            let edges = quantile_edges(&a, 10);
            group.throughput(Throughput::Elements(2 * n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
                bench.iter(|| {
                    let p =
                        Proportions::from_counts(&histogram_of_sorted(&a, &edges), &histogram_of_sorted(&b, &edges));
                    p.map(|p| test(&p))
                })
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("binned/chisquare_ztest");
    let (r, k): (Vec<u64>, Vec<u64>) = (0..1000).map(|i| (100 + i % 17, 90 + i % 23)).unzip();
    group.bench_function("chisquare_1000_categories", |bench| bench.iter(|| binned::chisquare(&r, &k)));
    group.bench_function("ztest", |bench| bench.iter(|| binned::ztest(&[400, 600], &[450, 550])));
    group.finish();
}

fn sorting(c: &mut Criterion) {
    let mut group = c.benchmark_group("sort_f64");
    group.sample_size(10);
    for n in SIZES {
        let data = sample(n, 3, 0.0);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter_batched_ref(|| data.clone(), |v| sort_f64(v), criterion::BatchSize::LargeInput)
        });
    }
    group.finish();
}

fn performance(c: &mut Criterion) {
    use driftwatch::performance::Cbpe;
    let mut group = c.benchmark_group("cbpe");
    group.sample_size(10);
    // Scores in [0, 1]; overconfident labels (P = score²) so that calibration is used.
    let scores = |n: usize, seed: u64| -> Vec<f64> {
        sample(n, seed, 0.0).into_iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
    };
    let reference = scores(100_000, 5);
    let uniform = scores(100_000, 6);
    let labels: Vec<bool> = reference.iter().zip(&uniform).map(|(s, u)| *u < s * s).collect();
    let predicted: Vec<bool> = reference.iter().map(|s| *s >= 0.5).collect();
    group.bench_function("fit_100000", |bench| bench.iter(|| Cbpe::fit(&reference, &predicted, &labels)));
    let cbpe = Cbpe::fit(&reference, &predicted, &labels);
    for n in [1_000, 100_000] {
        // Sorted, as a window's sample hands them over.
        let mut window = scores(n, 7);
        sort_f64(&mut window);
        let window_predicted: Vec<bool> = window.iter().map(|s| *s >= 0.5).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("estimate", n), &n, |bench, _| {
            bench.iter(|| cbpe.estimate(&window, &window_predicted))
        });
    }
    group.finish();
}

criterion_group!(benches, numerical, binned_tests, sorting, performance);
criterion_main!(benches);
