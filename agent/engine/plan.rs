//! What decides how a comparison runs: the tests per feature, thresholds, drift share and
//! FDR, the rules, the profile caps and which columns become features — the same for a
//! `check` and for every window of a model — and [`compare`], which applies it to two profiles.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::engine::profile::{
    Baseline, Declared, FeatureKind, FeatureProfile, FeatureSpec, OTHER_CATEGORY, ProfileSpec,
};
use crate::engine::report::{DatasetDrift, Distribution, FeatureReport, Performance, Quality, Report, Rows};
use crate::engine::rules::Rule;
use crate::engine::stats::{FeaturePair, TestChoice, TestOptions, TestResult, benjamini_hochberg};

/// Everything that decides how a check runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Name reported as `model`.
    pub model: String,
    pub tests: Vec<TestChoice>,
    pub options: TestOptions,
    /// Per-feature replacements of tests and options.
    pub per_feature: BTreeMap<String, (Option<Vec<TestChoice>>, TestOptions)>,
    pub drift_share: f64,
    pub fdr: Option<f64>,
    pub build: BuildOptions,
    /// Bins per feature, where they differ from `build.bins`.
    pub feature_bins: BTreeMap<String, usize>,
    pub selection: FeatureSelection,
    /// SQL filter applied to the reference (configured form).
    pub filter: Option<String>,
    /// True when `build.bins` was asked for explicitly (checked against artefacts).
    pub bins_explicit: bool,
    /// Zero-config form: the current data's columns must match the reference's.
    pub strict_columns: bool,
    /// Alert rules: the tests they read run on the features they select.
    pub rules: Vec<Rule>,
    /// Label, score and prediction columns, for the `performance` object.
    pub performance: Option<PerformanceSpec>,
    /// Declared constraints per feature (attached to the spec by [`Plan::constrain`]).
    pub declared: BTreeMap<String, Arc<Declared>>,
    /// Derived features: (name, SQL expression), computed on the reference and the current
    /// data alike.
    pub derived: Vec<(String, String)>,
}

/// Classification (0/1 labels, scores, predicted classes) or regression (numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Task {
    #[default]
    Classification,
    Regression,
}

/// Where ground truth, scores and predictions are.
#[derive(Clone, Debug, PartialEq)]
pub struct PerformanceSpec {
    pub task: Task,
    /// Label column: in the current data for realised metrics; in the reference for CBPE.
    pub label: String,
    /// Score column: probability of class 1.
    pub score: Option<String>,
    /// Predicted class (classification) or value (regression); for classification
    /// `score >= threshold` when absent.
    pub prediction: Option<String>,
    pub threshold: f64,
}

/// Caps and binning for building a baseline.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    pub bins: usize,
    pub max_samples: usize,
    pub max_categories: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            bins: crate::engine::profile::DEFAULT_BINS,
            max_samples: crate::engine::profile::DEFAULT_MAX_SAMPLES,
            max_categories: crate::engine::profile::DEFAULT_MAX_CATEGORIES,
        }
    }
}

/// Which columns become features and with which kind.
#[derive(Clone, Debug, Default)]
pub struct FeatureSelection {
    /// Only these columns (all when empty).
    pub columns: Vec<String>,
    /// Never these columns.
    pub exclude: Vec<String>,
    /// Declared kinds, overriding inference.
    pub declared: BTreeMap<String, FeatureKind>,
}

impl Plan {
    /// The zero-config plan: `auto` on every feature the selection gives, default thresholds,
    /// drift share 0.5, and the current data's columns must match the reference's.
    pub fn zero_config(model: String, selection: FeatureSelection) -> Plan {
        Plan {
            model,
            tests: vec![TestChoice::Auto],
            options: TestOptions::default(),
            per_feature: BTreeMap::new(),
            drift_share: 0.5,
            fdr: None,
            build: BuildOptions::default(),
            feature_bins: BTreeMap::new(),
            selection,
            filter: None,
            bins_explicit: false,
            strict_columns: true,
            rules: Vec::new(),
            performance: None,
            declared: BTreeMap::new(),
            derived: Vec::new(),
        }
    }

    /// The tests a feature runs, with their options: its own list (or the model's), plus the
    /// tests the rules selecting it read.
    pub fn tests_for(&self, spec: &FeatureSpec) -> (Vec<TestChoice>, &TestOptions) {
        let (tests, options) = match self.per_feature.get(&spec.name) {
            Some((tests, options)) => (tests.as_deref().unwrap_or(&self.tests), options),
            None => (self.tests.as_slice(), &self.options),
        };
        let mut tests = tests.to_vec();
        for rule in &self.rules {
            for t in rule.tests_for(&spec.name, spec.kind) {
                if !tests.contains(&t) {
                    tests.push(t);
                }
            }
        }
        (tests, options)
    }

    /// Attaches the declared constraints to the features of a spec. A constraint of the other
    /// kind than the baseline gave the feature (possible only when its type was inferred) is
    /// left out, with a warning.
    pub fn constrain(&self, spec: &mut ProfileSpec) {
        for f in &mut spec.features {
            let Some(d) = self.declared.get(&f.name) else {
                continue;
            };
            let fits = match f.kind {
                FeatureKind::Numerical => !d.has_text_rules(),
                FeatureKind::Categorical => !d.has_range(),
            };
            if fits {
                f.declared = Some(d.clone());
            } else {
                tracing::warn!(
                    model = %self.model,
                    feature = %f.name,
                    "the declared constraints do not fit a {} feature (min/max are numerical; allowed, pattern and lengths categorical): not checked",
                    f.kind.as_str()
                );
            }
        }
    }
}

/// Compares a current profile with the baseline and applies the plan's decisions.
pub fn compare(baseline: &mut Baseline, current: &mut [FeatureProfile], current_rows: u64, plan: &Plan) -> Report {
    // Both sides keep their `max_categories` most frequent categories (see `profile`).
    let max_categories = baseline.spec.max_categories;
    for f in baseline.profile.features.iter_mut().chain(current.iter_mut()) {
        f.cap_categories(max_categories);
    }
    let reference_rows = baseline.profile.rows();
    let mut features: Vec<FeatureReport> = baseline
        .spec
        .features
        .par_iter()
        .zip(baseline.profile.features.par_iter_mut())
        .zip(current.par_iter_mut())
        .map(|((spec, reference), current)| {
            let (tests, options) = plan.tests_for(spec);
            let quality = Quality::of(spec, reference, current);
            let tests = FeaturePair { spec, reference, current }.run(&tests, options);
            let distribution = Some(Distribution::of(spec.kind, reference, current));
            FeatureReport { name: spec.name.clone(), kind: spec.kind, drift: false, tests, quality, distribution }
        })
        .collect();
    if let Some(q) = plan.fdr {
        let mut all: Vec<&mut TestResult> = features.iter_mut().flat_map(|f| f.tests.iter_mut()).collect();
        benjamini_hochberg(&mut all, q);
    }
    for f in &mut features {
        f.drift = f.tests.iter().any(|t| t.drift);
    }
    let notes: Vec<String> = baseline
        .spec
        .features
        .iter()
        .zip(&baseline.profile.features)
        .filter(|(_, p)| p.categories.contains_key(OTHER_CATEGORY))
        .map(|(f, _)| {
            format!(
                "feature \"{}\" has more than {} distinct values in the reference (an identifier?); \
                 exclude it, or raise max_categories if the categories matter",
                f.name, baseline.spec.max_categories
            )
        })
        .collect();
    // Features that no chosen test fits (say `--test ks` on a categorical column) are listed
    // but do not dilute the share.
    let total = features.iter().filter(|f| !f.tests.is_empty()).count();
    let drifted = features.iter().filter(|f| f.drift).count();
    let share = if total == 0 { 0.0 } else { drifted as f64 / total as f64 };
    Report {
        model: plan.model.clone(),
        reference: Rows { rows: reference_rows },
        current: Rows { rows: current_rows },
        drift: DatasetDrift {
            detected: total > 0 && share >= plan.drift_share,
            share,
            drifted_features: drifted,
            total_features: total,
            drift_share: plan.drift_share,
        },
        features,
        performance: Performance::default(),
        quality: BTreeMap::new(),
        notes,
        impact: Vec::new(),
    }
}
