//! The drift engine: compares a feature's window profile with its reference profile using
//! the tests of DESIGN section 4, each matching SciPy's definition and default p-value.
//!
//! * [`continuous`]: tests on two sorted numerical samples (ks, wasserstein, energy,
//!   anderson, cvm, mannwhitney, ttest);
//! * [`binned`]: tests on two count vectors over the same bins (psi, kl, hellinger,
//!   jensenshannon, tvd, chisquare, ztest);
//! * [`mmd`]: maximum mean discrepancy between two sets of rows (multivariate);
//! * [`kolmogorov`], [`special`]: the distributions statrs lacks;
//! * this module: test names and defaults, Evidently's `auto` choice, applying thresholds,
//!   and the Benjamini–Hochberg correction across features.
//!
//! Degenerate inputs never produce NaN: a test that is undefined on its input (an empty
//! side, a constant sample for a rank test, too few values) yields a result with null
//! statistic and p-value, `drift = false`, and a reason.

pub mod binned;
pub mod continuous;
pub mod kolmogorov;
pub mod mmd;
pub mod special;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::profile::{FeatureKind, FeatureProfile, FeatureSpec};
pub use continuous::KsMethod;

/// A statistical test, by its canonical name (used in TOML, JSON and metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    Ks,
    Wasserstein,
    Psi,
    JensenShannon,
    Kl,
    Hellinger,
    ChiSquare,
    Tvd,
    ZTest,
    Anderson,
    Cvm,
    MannWhitney,
    TTest,
    Energy,
}

impl TestKind {
    pub const ALL: [TestKind; 14] = [
        TestKind::Ks,
        TestKind::Wasserstein,
        TestKind::Psi,
        TestKind::JensenShannon,
        TestKind::Kl,
        TestKind::Hellinger,
        TestKind::ChiSquare,
        TestKind::Tvd,
        TestKind::ZTest,
        TestKind::Anderson,
        TestKind::Cvm,
        TestKind::MannWhitney,
        TestKind::TTest,
        TestKind::Energy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TestKind::Ks => "ks",
            TestKind::Wasserstein => "wasserstein",
            TestKind::Psi => "psi",
            TestKind::JensenShannon => "jensenshannon",
            TestKind::Kl => "kl",
            TestKind::Hellinger => "hellinger",
            TestKind::ChiSquare => "chisquare",
            TestKind::Tvd => "tvd",
            TestKind::ZTest => "ztest",
            TestKind::Anderson => "anderson",
            TestKind::Cvm => "cvm",
            TestKind::MannWhitney => "mannwhitney",
            TestKind::TTest => "ttest",
            TestKind::Energy => "energy",
        }
    }

    pub fn parse(name: &str) -> Option<TestKind> {
        TestKind::ALL.into_iter().find(|t| t.name() == name)
    }

    /// True when the test reports a p-value and drift means p < threshold; otherwise drift
    /// means statistic >= threshold.
    pub fn uses_p_value(self) -> bool {
        matches!(
            self,
            TestKind::Ks
                | TestKind::ChiSquare
                | TestKind::ZTest
                | TestKind::Anderson
                | TestKind::Cvm
                | TestKind::MannWhitney
                | TestKind::TTest
        )
    }

    pub fn default_threshold(self) -> f64 {
        if self.uses_p_value() { 0.05 } else { 0.1 }
    }

    pub fn applies_to(self, kind: FeatureKind) -> bool {
        use TestKind::*;
        match self {
            Psi | JensenShannon | Kl | Hellinger => true,
            ChiSquare | Tvd | ZTest => kind == FeatureKind::Categorical,
            Ks | Wasserstein | Anderson | Cvm | MannWhitney | TTest | Energy => kind == FeatureKind::Numerical,
        }
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a user asks for: a named test, or `auto` (Evidently's size-and-type rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestChoice {
    Auto,
    Test(TestKind),
}

impl TestChoice {
    pub fn parse(name: &str) -> Option<TestChoice> {
        if name == "auto" { Some(TestChoice::Auto) } else { TestKind::parse(name).map(TestChoice::Test) }
    }

    /// Every accepted name, for error messages and `--help`.
    pub fn names() -> Vec<&'static str> {
        std::iter::once("auto").chain(TestKind::ALL.iter().map(|t| t.name())).collect()
    }
}

/// Statistic and p-value of a test that was defined on its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub statistic: f64,
    pub p_value: Option<f64>,
}

impl Outcome {
    pub fn with_p(statistic: f64, p: f64) -> Outcome {
        Outcome { statistic, p_value: Some(p) }
    }

    pub fn distance(statistic: f64) -> Outcome {
        Outcome { statistic, p_value: None }
    }
}

/// Why a test has no value on some input.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Undefined {
    #[error("the reference has no non-missing values")]
    EmptyReference,
    #[error("the current data has no non-missing values")]
    EmptyCurrent,
    #[error("all values are identical, so the test has no spread to compare")]
    Constant,
    #[error("{0}")]
    TooFewValues(&'static str),
    #[error("ztest needs at most 2 distinct values, found {0}")]
    NotBinary(usize),
}

/// One test's verdict on one feature.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestResult {
    pub test: TestKind,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drift: bool,
    /// Benjamini–Hochberg adjusted p-value, when `--fdr` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    /// Why statistic and p-value are null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How tests run: thresholds per test (defaults from [`TestKind::default_threshold`]) and the
/// KS p-value method.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    pub thresholds: BTreeMap<TestKind, f64>,
    pub ks_method: KsMethod,
}

impl TestOptions {
    pub fn threshold(&self, test: TestKind) -> f64 {
        self.thresholds.get(&test).copied().unwrap_or_else(|| test.default_threshold())
    }
}

/// The two sides of one feature, prepared for testing.
pub struct FeaturePair<'a> {
    pub spec: &'a FeatureSpec,
    pub reference: &'a mut FeatureProfile,
    pub current: &'a mut FeatureProfile,
}

impl FeaturePair<'_> {
    /// Runs the chosen tests; tests that do not fit the feature's kind are skipped.
    pub fn run(&mut self, choices: &[TestChoice], options: &TestOptions) -> Vec<TestResult> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for choice in choices {
            let test = match choice {
                TestChoice::Auto => self.auto_test(),
                TestChoice::Test(t) if t.applies_to(self.spec.kind) => *t,
                TestChoice::Test(_) => continue,
            };
            if !seen.insert(test) {
                continue;
            }
            let value_bins = matches!(choice, TestChoice::Auto) && self.spec.kind == FeatureKind::Numerical;
            let outcome = self.outcome(test, value_bins, options);
            out.push(verdict(test, outcome, options.threshold(test)));
        }
        out
    }

    /// Evidently's default test for this feature (on non-missing values): numerical with more
    /// than 5 distinct values → `ks` if the reference has at most 1000 values, else
    /// `wasserstein`; otherwise `ztest` (at most 2 values) or `chisquare` if the reference has
    /// at most 1000 values, else `jensenshannon` over value counts.
    pub fn auto_test(&mut self) -> TestKind {
        let small = self.reference.valid() <= 1000;
        let distinct = match self.spec.kind {
            FeatureKind::Numerical => {
                let (r, c) = (self.reference.sample.sorted(), self.current.sample.sorted());
                distinct_at_most(r, c, 6)
            }
            FeatureKind::Categorical => union_keys(&self.reference.categories, &self.current.categories).len(),
        };
        if self.spec.kind == FeatureKind::Numerical && distinct > 5 {
            return if small { TestKind::Ks } else { TestKind::Wasserstein };
        }
        match (small, distinct <= 2) {
            (true, true) => TestKind::ZTest,
            (true, false) => TestKind::ChiSquare,
            (false, _) => TestKind::JensenShannon,
        }
    }

    fn outcome(&mut self, test: TestKind, value_bins: bool, o: &TestOptions) -> Result<Outcome, Undefined> {
        use TestKind::*;
        if self.spec.kind == FeatureKind::Numerical
            && !matches!(test, Psi | JensenShannon | Kl | Hellinger | ChiSquare | Tvd | ZTest)
        {
            let (r, c) = (self.reference.sample.sorted(), self.current.sample.sorted());
            return match test {
                Ks => continuous::ks(r, c, o.ks_method),
                Wasserstein => continuous::wasserstein(r, c),
                Energy => continuous::energy(r, c),
                Anderson => continuous::anderson(r, c),
                Cvm => continuous::cvm(r, c),
                MannWhitney => continuous::mannwhitney(r, c),
                TTest => continuous::ttest(r, c),
                _ => unreachable!("binned tests handled below"),
            };
        }
        let (rc, cc) = self.bin_counts(value_bins);
        let proportions = || binned::Proportions::from_counts(&rc, &cc);
        match test {
            Psi => proportions().map(|p| binned::psi(&p)),
            Kl => proportions().map(|p| binned::kl(&p)),
            Hellinger => proportions().map(|p| binned::hellinger(&p)),
            JensenShannon => proportions().map(|p| binned::jensenshannon(&p)),
            Tvd => proportions().map(|p| binned::tvd(&p)),
            ChiSquare => binned::chisquare(&rc, &cc),
            ZTest => {
                let distinct = rc.iter().zip(&cc).filter(|(a, b)| **a + **b > 0).count();
                if distinct > 2 {
                    return Err(Undefined::NotBinary(distinct));
                }
                binned::ztest(&rc, &cc)
            }
            _ => unreachable!("numerical tests handled above"),
        }
    }

    /// Reference and current counts over the same bins: the spec's quantile bins for a
    /// numerical feature (or one bin per distinct value when `value_bins`), the sorted union
    /// of categories for a categorical one.
    fn bin_counts(&mut self, value_bins: bool) -> (Vec<u64>, Vec<u64>) {
        match self.spec.kind {
            FeatureKind::Categorical => {
                let keys = union_keys(&self.reference.categories, &self.current.categories);
                let get = |m: &crate::engine::profile::CategoryCounts, k: &str| m.get(k).copied().unwrap_or(0);
                keys.iter().map(|k| (get(&self.reference.categories, k), get(&self.current.categories, k))).unzip()
            }
            FeatureKind::Numerical if value_bins => {
                value_counts(self.reference.sample.sorted(), self.current.sample.sorted())
            }
            FeatureKind::Numerical => {
                let edges = &self.spec.edges;
                let counts = |p: &mut FeatureProfile| {
                    if p.histogram.len() == edges.len() + 1 {
                        p.histogram.clone()
                    } else {
                        histogram_of_sorted(p.sample.sorted(), edges)
                    }
                };
                (counts(self.reference), counts(self.current))
            }
        }
    }
}

fn verdict(test: TestKind, outcome: Result<Outcome, Undefined>, threshold: f64) -> TestResult {
    match outcome {
        Ok(o) => {
            let drift = match o.p_value {
                Some(p) if test.uses_p_value() => p < threshold,
                _ => o.statistic >= threshold,
            };
            TestResult {
                test,
                statistic: Some(o.statistic),
                p_value: o.p_value,
                threshold,
                drift,
                p_adjusted: None,
                reason: None,
            }
        }
        Err(why) => TestResult {
            test,
            statistic: None,
            p_value: None,
            threshold,
            drift: false,
            p_adjusted: None,
            reason: Some(why.to_string()),
        },
    }
}

/// Counts per bin of a sorted sample: bin k holds the values with exactly k edges <= value.
pub fn histogram_of_sorted(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut start = 0;
    for e in edges {
        let end = start + sorted[start..].partition_point(|v| v < e);
        out.push((end - start) as u64);
        start = end;
    }
    out.push((sorted.len() - start) as u64);
    out
}

/// Counts per distinct value of the union of two sorted samples.
fn value_counts(a: &[f64], b: &[f64]) -> (Vec<u64>, Vec<u64>) {
    continuous::groups(a, b).map(|g| (g.a, g.b)).unzip()
}

/// Distinct values of the union of two sorted samples, counting no further than `limit`.
fn distinct_at_most(a: &[f64], b: &[f64], limit: usize) -> usize {
    let mut seen: Vec<f64> = Vec::with_capacity(limit);
    for v in a.iter().chain(b) {
        if !seen.contains(v) {
            seen.push(*v);
            if seen.len() >= limit {
                break;
            }
        }
    }
    seen.len()
}

fn union_keys<'m>(
    a: &'m crate::engine::profile::CategoryCounts,
    b: &'m crate::engine::profile::CategoryCounts,
) -> BTreeSet<&'m str> {
    a.keys().chain(b.keys()).map(String::as_str).collect()
}

/// Benjamini–Hochberg step-up over every p-value test in `results`: sets each one's adjusted
/// p-value (min over j ≥ i of m/j · p_(j), capped at 1) and `drift = p_adjusted < q`.
pub fn benjamini_hochberg(results: &mut [&mut TestResult], q: f64) {
    let mut idx: Vec<usize> =
        (0..results.len()).filter(|&i| results[i].test.uses_p_value() && results[i].p_value.is_some()).collect();
    idx.sort_by(|&a, &b| results[a].p_value.unwrap_or(1.0).total_cmp(&results[b].p_value.unwrap_or(1.0)));
    let m = idx.len() as f64;
    let mut running = 1.0_f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let p = results[i].p_value.unwrap_or(1.0);
        running = running.min(p * m / (rank + 1) as f64).min(1.0);
        results[i].p_adjusted = Some(running);
        results[i].threshold = q;
        results[i].drift = running < q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numerical_profile(values: &[f64]) -> FeatureProfile {
        let spec = crate::engine::profile::ProfileSpec::single_numerical(1 << 20);
        crate::engine::profile::Profile::of_numbers(&spec, values).features.remove(0)
    }

    fn auto_for(kind: FeatureKind, reference: &[f64], current: &[f64]) -> TestKind {
        let spec = FeatureSpec::new("x", kind, vec![]);
        let (mut r, mut c) = (numerical_profile(reference), numerical_profile(current));
        if kind == FeatureKind::Categorical {
            for (p, values) in [(&mut r, reference), (&mut c, current)] {
                for v in values {
                    *p.categories.entry(v.to_string()).or_insert(0) += 1;
                }
            }
        }
        FeaturePair { spec: &spec, reference: &mut r, current: &mut c }.auto_test()
    }

    #[test]
    fn auto_follows_evidently_size_and_type_rule() {
        let many = |n: usize| (0..n).map(|i| (i % 97) as f64).collect::<Vec<_>>();
        let few = |n: usize, k: usize| (0..n).map(|i| (i % k) as f64).collect::<Vec<_>>();
        use FeatureKind::*;
        assert_eq!(auto_for(Numerical, &many(1000), &many(50)), TestKind::Ks);
        assert_eq!(auto_for(Numerical, &many(1001), &many(50)), TestKind::Wasserstein);
        assert_eq!(auto_for(Numerical, &few(500, 2), &few(50, 2)), TestKind::ZTest);
        assert_eq!(auto_for(Numerical, &few(500, 5), &few(50, 5)), TestKind::ChiSquare);
        assert_eq!(auto_for(Numerical, &few(5000, 5), &few(50, 5)), TestKind::JensenShannon);
        // Distinct values count reference and current together: 5 + 1 new value > 5.
        assert_eq!(auto_for(Numerical, &few(500, 5), &[7.0]), TestKind::Ks);
        assert_eq!(auto_for(Categorical, &many(500), &many(50)), TestKind::ChiSquare);
        assert_eq!(auto_for(Categorical, &few(500, 2), &few(50, 2)), TestKind::ZTest);
        assert_eq!(auto_for(Categorical, &many(2000), &many(50)), TestKind::JensenShannon);
    }

    #[test]
    fn histogram_counts_values_by_edges_at_or_below() {
        // edges [1, 2]: x < 1 → 0, 1 <= x < 2 → 1, x >= 2 → 2
        assert_eq!(histogram_of_sorted(&[0.5, 1.0, 1.5, 2.0, 9.0], &[1.0, 2.0]), vec![1, 2, 2]);
    }

    #[test]
    fn bh_adjusts_like_statsmodels() {
        // statsmodels multipletests([0.01, 0.04, 0.03, 0.2], method="fdr_bh")[1]
        // == [0.04, 0.05333333, 0.05333333, 0.2]
        let mk = |p: f64| verdict(TestKind::Ks, Ok(Outcome::with_p(0.1, p)), 0.05);
        let mut rs = [mk(0.01), mk(0.04), mk(0.03), mk(0.2)];
        let mut refs: Vec<&mut TestResult> = rs.iter_mut().collect();
        benjamini_hochberg(&mut refs, 0.05);
        let adj: Vec<f64> = rs.iter().map(|r| r.p_adjusted.unwrap()).collect();
        assert!((adj[0] - 0.04).abs() < 1e-15 && (adj[1] - 0.16 / 3.0).abs() < 1e-15);
        assert!((adj[2] - 0.16 / 3.0).abs() < 1e-15 && (adj[3] - 0.2).abs() < 1e-15);
        assert_eq!(rs.iter().map(|r| r.drift).collect::<Vec<_>>(), vec![true, false, false, false]);
    }
}
