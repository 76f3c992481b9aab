//! Alert rules: which value of a closed window a rule watches, on which features, and how
//! that value stands against the rule's thresholds. Pure functions of a window's report and
//! summaries; the alert state machine (`alert.rs`) turns the readings into alerts.
//!
//! A rule watches one target on the features it selects:
//! - `test`: a drift test's p-value (tests that have one) or statistic (`value = "statistic"`);
//! - `quality`: a data-quality ratio of the window (`null_rate`, …);
//! - `dataset`: a model-wide figure (`drift_share`), reported under feature `_all`.
//!
//! Noise controls, all optional: `min_samples` (a feature with fewer valid values in the
//! window gives no reading, so the alert neither advances nor resets), an effect-size floor
//! (a breach counts only when another test's statistic also reaches a minimum, e.g. KS
//! p-value and normalised Wasserstein ≥ 0.05), and Benjamini–Hochberg adjustment of the rule's
//! p-values across the features it selects in the window.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::profile::{FeatureKind, FeatureProfile};
use crate::engine::report::{FeatureReport, Report};
use crate::engine::stats::{TestChoice, TestKind};

/// Feature label of model-wide (dataset) readings.
pub const DATASET_FEATURE: &str = "_all";

/// Which features a rule reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    All,
    Kind(FeatureKind),
    Names(Vec<String>),
}

impl Selector {
    pub fn matches(&self, name: &str, kind: FeatureKind) -> bool {
        match self {
            Selector::All => true,
            Selector::Kind(k) => *k == kind,
            Selector::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

/// Which side of a threshold is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Bad when the value is at or above the threshold (distances, rates).
    Above,
    /// Bad when the value is below the threshold (p-values, performance).
    Below,
}

impl Direction {
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Direction::Above => value >= threshold,
            Direction::Below => value < threshold,
        }
    }
}

/// The data-quality checks a rule can watch (DESIGN section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QualityCheck {
    NullRate,
    NonFiniteRate,
    TypeErrorRate,
    OutOfRangeRate,
    NewCategoryRate,
    ConstraintViolationRate,
    /// Per model: events with a missing required feature or an unknown field / events.
    SchemaErrorRate,
    /// Per model: repeated event ids / (events + duplicates).
    DuplicateRate,
    /// Per model: late events / (events + late events) since the previous window closed.
    LateRate,
    /// Per model: mean seconds between an event's time and when the agent read it.
    FreshnessSeconds,
    /// Per model: events in the window / `expected_events`.
    Volume,
}

impl QualityCheck {
    pub const ALL: [QualityCheck; 11] = [
        QualityCheck::NullRate,
        QualityCheck::NonFiniteRate,
        QualityCheck::TypeErrorRate,
        QualityCheck::OutOfRangeRate,
        QualityCheck::NewCategoryRate,
        QualityCheck::ConstraintViolationRate,
        QualityCheck::SchemaErrorRate,
        QualityCheck::DuplicateRate,
        QualityCheck::LateRate,
        QualityCheck::FreshnessSeconds,
        QualityCheck::Volume,
    ];

    /// Checks of the whole model's window rather than of a feature.
    pub fn model_level(self) -> bool {
        matches!(
            self,
            QualityCheck::SchemaErrorRate
                | QualityCheck::DuplicateRate
                | QualityCheck::LateRate
                | QualityCheck::FreshnessSeconds
                | QualityCheck::Volume
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            QualityCheck::NullRate => "null_rate",
            QualityCheck::NonFiniteRate => "non_finite_rate",
            QualityCheck::TypeErrorRate => "type_error_rate",
            QualityCheck::OutOfRangeRate => "out_of_range_rate",
            QualityCheck::NewCategoryRate => "new_category_rate",
            QualityCheck::ConstraintViolationRate => "constraint_violation_rate",
            QualityCheck::SchemaErrorRate => "schema_error_rate",
            QualityCheck::DuplicateRate => "duplicate_rate",
            QualityCheck::LateRate => "late_rate",
            QualityCheck::FreshnessSeconds => "freshness_seconds",
            QualityCheck::Volume => "volume",
        }
    }

    pub fn parse(name: &str) -> Option<QualityCheck> {
        QualityCheck::ALL.into_iter().find(|q| q.name() == name)
    }

    /// The feature's value of a per-feature check.
    pub fn of(self, f: &FeatureReport) -> Option<f64> {
        self.value(&f.quality)
    }

    /// The value of a per-feature check in a feature's quality figures.
    pub fn value(self, q: &crate::engine::report::Quality) -> Option<f64> {
        match self {
            QualityCheck::NullRate => q.null_rate,
            QualityCheck::NonFiniteRate => q.non_finite_rate,
            QualityCheck::TypeErrorRate => q.type_error_rate,
            QualityCheck::OutOfRangeRate => q.out_of_range_rate,
            QualityCheck::NewCategoryRate => q.new_category_rate,
            QualityCheck::ConstraintViolationRate => q.constraint_violation_rate,
            _ => None,
        }
    }
}

/// What a rule watches.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A drift test: its p-value when `p_value` (and the test has one), else its statistic.
    Test {
        test: TestKind,
        p_value: bool,
    },
    Quality(QualityCheck),
    /// The share of drifted features of the model.
    DriftShare,
    /// A performance metric of the window (estimated without labels, or realised).
    Performance {
        metric: String,
        /// Realised from joined labels (once a window's labels are in) rather than
        /// estimated (CBPE) when the window closes.
        realised: bool,
    },
}

impl Target {
    /// The bad side of this target's thresholds.
    pub fn direction(&self) -> Direction {
        match self {
            Target::Test { p_value: true, .. } => Direction::Below,
            // Too few events is the failure volume watches.
            Target::Quality(QualityCheck::Volume) => Direction::Below,
            Target::Performance { metric: m, .. }
                if !matches!(m.as_str(), "log_loss" | "brier" | "mae" | "rmse" | "mape") =>
            {
                Direction::Below
            }
            _ => Direction::Above,
        }
    }

    /// The test, quality check or performance metric watched (the `target` label).
    pub fn label(&self) -> &str {
        match self {
            Target::Test { test, .. } => test.name(),
            Target::Quality(q) => q.name(),
            Target::DriftShare => "drift_share",
            Target::Performance { metric, .. } => metric,
        }
    }

    /// Short name for messages and the email: `ks p-value`, `psi`, `null_rate`, `drift_share`.
    pub fn describe(&self) -> String {
        match self {
            Target::Test { test, p_value: true } => format!("{test} p-value"),
            Target::Test { test, p_value: false } => format!("{test} statistic"),
            Target::Quality(q) => q.name().to_string(),
            Target::DriftShare => "drift_share".to_string(),
            Target::Performance { metric, realised: false } => metric.clone(),
            Target::Performance { metric, realised: true } => format!("{metric} (realised)"),
        }
    }
}

/// A breach of another test's statistic that must accompany the rule's own.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectFloor {
    pub test: TestKind,
    pub min: f64,
}

/// Alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 2] = [Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub target: Target,
    pub features: Selector,
    /// Thresholds; at least one is set.
    pub warn: Option<f64>,
    pub critical: Option<f64>,
    /// The value must come back past this to resolve a firing alert (hysteresis); defaults
    /// to the lower of the two thresholds in the direction of the breach.
    pub resolve: f64,
    /// Consecutive breaching windows before the alert fires (at least 1).
    pub for_windows: u32,
    /// Event time after a resolution during which the alert does not fire again (ms).
    pub cooldown_ms: i64,
    /// Event time after which a firing alert is sent again (ms); `None`: never.
    pub renotify_ms: Option<i64>,
    pub min_samples: u64,
    pub effect: Option<EffectFloor>,
    /// Adjust the rule's p-values with Benjamini–Hochberg across the selected features.
    pub fdr: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Addresses of this rule's alerts; empty: the `[notify]` default.
    pub recipients: Vec<String>,
    /// A change detector on the rule's per-window series: its signal is a warning breach.
    pub detector: Option<DetectorSpec>,
    /// The warning band is learned from the baseline's chunks.
    pub learn: Option<Learn>,
    /// Learned bands per feature (`_all` for performance): values outside are warnings.
    pub bands: BTreeMap<String, (f64, f64)>,
    /// Performance: `warn` is the baseline's value made worse by this margin (set when the
    /// baseline is loaded).
    pub margin: Option<f64>,
}

/// How a rule learns its warning band from the baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learn {
    pub chunks: usize,
    pub sigmas: f64,
}

impl Learn {
    /// The band mean ± sigmas·σ of the chunk values (population σ, as NumPy's default);
    /// `None` without values.
    pub fn band(&self, values: &[f64]) -> Option<(f64, f64)> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let sd = (finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        Some((mean - self.sigmas * sd, mean + self.sigmas * sd))
    }
}

/// Which change detector a rule runs on its series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DetectorSpec {
    PageHinkley { min_windows: u64, delta: f64, threshold: f64 },
    Adwin { delta: f64 },
}

impl Rule {
    /// A rule named "r" on every feature: warn at 0.05, nothing else set (for tests of what
    /// reads rules).
    #[cfg(test)]
    pub(crate) fn for_tests(target: Target) -> Rule {
        Rule {
            name: "r".into(),
            target,
            features: Selector::All,
            warn: Some(0.05),
            critical: None,
            resolve: 0.05,
            for_windows: 1,
            cooldown_ms: 0,
            renotify_ms: None,
            min_samples: 0,
            effect: None,
            fdr: false,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            recipients: Vec::new(),
            detector: None,
            learn: None,
            bands: BTreeMap::new(),
            margin: None,
        }
    }

    pub fn direction(&self) -> Direction {
        self.target.direction()
    }

    /// The severity a value breaches, if any.
    pub fn level(&self, value: f64) -> Option<Severity> {
        let d = self.direction();
        if self.critical.is_some_and(|t| d.breaches(value, t)) {
            Some(Severity::Critical)
        } else if self.warn.is_some_and(|t| d.breaches(value, t)) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// The threshold a reading of `severity` was compared with.
    pub fn threshold(&self, severity: Severity) -> Option<f64> {
        match severity {
            Severity::Critical => self.critical,
            Severity::Warning => self.warn.or(self.critical),
        }
    }

    /// The threshold a notice shows for a reading of `severity`, whether breaching is being
    /// below it, and the resolve level: for a learned warning, the edge of the band the value
    /// crossed (the band is the resolve level too).
    pub fn shown_threshold(&self, feature: &str, severity: Severity, value: Option<f64>) -> (Option<f64>, bool, f64) {
        let below = self.direction() == Direction::Below;
        match (self.bands.get(feature), severity) {
            (Some(&(lo, hi)), Severity::Warning) => {
                let low = value.is_some_and(|v| v < lo);
                let edge = if low { lo } else { hi };
                (Some(edge), low, edge)
            }
            _ => (self.threshold(severity), below, self.resolve),
        }
    }

    /// Tests this rule needs on a feature of `kind` beyond the configured ones.
    pub fn tests_for(&self, name: &str, kind: FeatureKind) -> Vec<TestChoice> {
        if !self.features.matches(name, kind) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Target::Test { test, .. } = self.target
            && test.applies_to(kind)
        {
            out.push(TestChoice::Test(test));
        }
        if let Some(e) = &self.effect
            && e.test.applies_to(kind)
        {
            out.push(TestChoice::Test(e.test));
        }
        out
    }

    /// One reading per selected feature (or one `_all` reading for dataset targets).
    /// `current` holds the window's feature profiles in report order (for `min_samples`).
    pub fn read(&self, report: &Report, current: &[FeatureProfile]) -> Vec<Reading> {
        match &self.target {
            Target::Performance { metric, realised } => {
                let p = &report.performance;
                // Estimates come with closed windows, realised values once labels are in.
                if p.estimated != Some(!realised) {
                    return Vec::new();
                }
                let value = p.metrics.get(metric.as_str()).copied().flatten();
                let samples = p.rows.unwrap_or(0);
                let value = value.filter(|_| samples >= self.min_samples && samples > 0);
                vec![self.reading(DATASET_FEATURE, value, samples, None, None)]
            }
            Target::DriftShare => {
                let value = report.drift.share;
                let samples = report.current.rows;
                let enough = samples >= self.min_samples && report.drift.total_features > 0;
                vec![self.reading(DATASET_FEATURE, enough.then_some(value), samples, None, None)]
            }
            &Target::Quality(q) if q.model_level() => {
                let value = report.quality.get(q.name()).copied();
                let samples = report.current.rows;
                vec![self.reading(DATASET_FEATURE, value.filter(|_| samples >= self.min_samples), samples, None, None)]
            }
            &Target::Quality(q) => report
                .features
                .iter()
                .zip(current)
                .filter(|(f, _)| self.features.matches(&f.name, f.kind))
                .filter_map(|(f, p)| {
                    let value = q.of(f)?;
                    let enough = p.rows >= self.min_samples;
                    Some(self.reading(&f.name, enough.then_some(value), p.rows, None, None))
                })
                .collect(),
            &Target::Test { test, p_value } => {
                let mut rows: Vec<(usize, f64, Option<f64>, u64)> = Vec::new();
                for (i, (f, p)) in report.features.iter().zip(current).enumerate() {
                    if !self.features.matches(&f.name, f.kind) {
                        continue;
                    }
                    let Some(t) = f.tests.iter().find(|t| t.test == test) else {
                        continue;
                    };
                    let value = if p_value && test.uses_p_value() { t.p_value } else { t.statistic };
                    if let Some(v) = value.filter(|v| v.is_finite()) {
                        rows.push((i, v, t.statistic, p.valid()));
                    }
                }
                let adjusted = if self.fdr && p_value && test.uses_p_value() {
                    bh_adjust(&rows.iter().map(|r| r.1).collect::<Vec<_>>())
                } else {
                    rows.iter().map(|r| r.1).collect()
                };
                rows.iter()
                    .zip(adjusted)
                    .map(|(&(i, raw, statistic, samples), value)| {
                        let f = &report.features[i];
                        let enough = samples >= self.min_samples;
                        let effect = self.effect.as_ref().map(|e| {
                            let s = f.tests.iter().find(|t| t.test == e.test).and_then(|t| t.statistic);
                            (e.test, s, s.is_some_and(|s| s >= e.min))
                        });
                        let adjusted = (value != raw).then_some(value);
                        let mut r = self.reading(&f.name, enough.then_some(value), samples, statistic, effect);
                        r.raw = Some(raw);
                        r.adjusted = adjusted;
                        r
                    })
                    .collect()
            }
        }
    }

    fn reading(
        &self,
        feature: &str,
        value: Option<f64>,
        samples: u64,
        statistic: Option<f64>,
        effect: Option<(TestKind, Option<f64>, bool)>,
    ) -> Reading {
        let d = self.direction();
        let band = self.bands.get(feature).copied();
        // A learned rule reads only the features it has a band for.
        let compared = if self.learn.is_some() { value.filter(|_| band.is_some()) } else { value };
        let (level, clear) = match (compared, band) {
            (None, _) => (None, false),
            (Some(v), Some((lo, hi))) if self.learn.is_some() => {
                // Outside the baseline's band is a warning; a fixed critical still counts. A
                // quality ratio is bad only above its band; performance either way (an
                // unexplained jump is as suspect as a fall).
                let critical = self.critical.is_some_and(|t| d.breaches(v, t));
                let outside = v > hi || (d == Direction::Below && v < lo);
                let level = if critical { Some(Severity::Critical) } else { outside.then_some(Severity::Warning) };
                (level, !critical && !outside)
            }
            (Some(v), _) => {
                let floor_met = effect.is_none_or(|(_, _, met)| met);
                let level = if floor_met { self.level(v) } else { None };
                // Below the effect floor the difference is too small to matter: that is clear.
                // A rule with only a detector has no threshold to be past.
                let thresholds = self.warn.is_some() || self.critical.is_some();
                (level, !floor_met || !thresholds || !d.breaches(v, self.resolve))
            }
        };
        Reading {
            feature: feature.to_string(),
            value: compared,
            raw: value,
            adjusted: None,
            statistic,
            effect: effect.map(|(test, statistic, _)| (test, statistic)),
            samples,
            level,
            clear,
        }
    }
}

/// What a rule made of one feature in one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub feature: String,
    /// The value compared with the thresholds (BH-adjusted when the rule says so); `None`
    /// when there is no reading (too few samples), which leaves the alert as it was.
    pub value: Option<f64>,
    /// The value before adjustment.
    pub raw: Option<f64>,
    pub adjusted: Option<f64>,
    /// The test's statistic (test targets).
    pub statistic: Option<f64>,
    /// The effect-size test and its statistic, when the rule has a floor.
    pub effect: Option<(TestKind, Option<f64>)>,
    /// Valid values of the feature in the window (rows for dataset targets).
    pub samples: u64,
    /// The severity breached, if any (after the effect-size floor).
    pub level: Option<Severity>,
    /// On the good side of the resolve threshold: a firing alert may resolve.
    pub clear: bool,
}

/// Benjamini–Hochberg adjusted p-values, in input order (step-up, monotone, capped at 1).
pub fn bh_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        out[i] = running.min(1.0);
    }
    out
}

/// Summary of one side of a feature, for people reading an alert.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Rows, and valid (non-missing, finite) values among them.
    pub rows: u64,
    pub valid: u64,
    pub null_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max: Option<f64>,
    /// The most frequent categories with their shares (categorical).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub top: Vec<(String, f64)>,
}

impl Summary {
    pub fn of(kind: FeatureKind, p: &FeatureProfile) -> Summary {
        let valid = p.valid();
        let mut s = Summary {
            rows: p.rows,
            valid,
            null_rate: if p.rows == 0 { 0.0 } else { p.nulls as f64 / p.rows as f64 },
            ..Summary::default()
        };
        match kind {
            FeatureKind::Numerical if valid > 0 => {
                let n = valid as f64;
                let mean = p.sum / n;
                s.mean = Some(mean);
                s.std = Some((p.sum_sq / n - mean * mean).max(0.0).sqrt());
                s.min = Some(p.min);
                s.max = Some(p.max);
            }
            FeatureKind::Categorical if valid > 0 => {
                let mut top: Vec<(&String, &u64)> = p.categories.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                s.top = top.into_iter().take(5).map(|(k, v)| (k.clone(), *v as f64 / valid as f64)).collect();
            }
            _ => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_matches_the_textbook_example() {
        // statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]
        let p = [0.01, 0.04, 0.03, 0.005, 0.2];
        let want = [0.025, 0.05, 0.05, 0.025, 0.2];
        for (a, b) in bh_adjust(&p).iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert!(bh_adjust(&[]).is_empty());
    }

    /// A report of three numerical features with KS p-values and Wasserstein distances, and
    /// their current profiles with `valid` values each.
    fn window(ks: [f64; 3], wasserstein: [f64; 3], valid: [u64; 3]) -> (Report, Vec<FeatureProfile>) {
        use crate::engine::profile::FeatureSpec;
        use crate::engine::report::Quality;
        use crate::engine::stats::TestResult;
        let result = |test, statistic: f64, p: Option<f64>| TestResult {
            test,
            statistic: Some(statistic),
            p_value: p,
            threshold: 0.05,
            drift: false,
            p_adjusted: None,
            reason: None,
        };
        let mut features = Vec::new();
        let mut profiles = Vec::new();
        for i in 0..3 {
            let name = format!("f{i}");
            let spec = FeatureSpec::new(name.clone(), FeatureKind::Numerical, vec![]);
            let mut p = FeatureProfile::new(&spec);
            p.rows = valid[i] + 10;
            p.nulls = 10;
            profiles.push(p);
            features.push(FeatureReport {
                name,
                kind: FeatureKind::Numerical,
                drift: false,
                tests: vec![
                    result(TestKind::Ks, 0.2, Some(ks[i])),
                    result(TestKind::Wasserstein, wasserstein[i], None),
                ],
                distribution: None,
                quality: Quality {
                    null_rate: Some(0.0),
                    non_finite_rate: None,
                    type_error_rate: None,
                    out_of_range_rate: None,
                    new_category_rate: None,
                    constraint_violation_rate: None,
                },
            });
        }
        let report = Report::for_tests(features);
        (report, profiles)
    }

    #[test]
    fn effect_floor_min_samples_and_fdr_shape_the_readings() {
        let ks = Target::Test { test: TestKind::Ks, p_value: true };
        let (report, current) = window([0.001, 0.001, 0.2], [0.3, 0.01, 0.3], [500, 500, 50]);
        let levels = |r: &Rule| r.read(&report, &current).iter().map(|x| (x.level, x.clear)).collect::<Vec<_>>();
        let w = Some(Severity::Warning);

        // Plain: f0, f1 breach; f2 does not and is clear (p ≥ resolve).
        assert_eq!(levels(&Rule::for_tests(ks.clone())), vec![(w, false), (w, false), (None, true)]);

        // Effect floor: f1's difference is tiny (Wasserstein 0.01 < 0.05), so it does not count
        // and counts as clear.
        let mut r = Rule::for_tests(ks.clone());
        r.effect = Some(EffectFloor { test: TestKind::Wasserstein, min: 0.05 });
        assert_eq!(levels(&r), vec![(w, false), (None, true), (None, true)]);

        // min_samples: f2 has 50 valid values, below 100: no reading at all.
        let mut r = Rule::for_tests(ks.clone());
        r.min_samples = 100;
        let got = r.read(&report, &current);
        assert_eq!(got.iter().map(|x| x.value.is_some()).collect::<Vec<_>>(), vec![true, true, false]);
        assert_eq!(got[2].samples, 50);

        // FDR: the p-values are BH-adjusted across the three features: 0.001·3/2 = 0.0015.
        let mut r = Rule::for_tests(ks);
        r.fdr = true;
        r.warn = Some(0.0012);
        let got = r.read(&report, &current);
        assert_eq!(got[0].adjusted, Some(0.0015));
        assert_eq!(got[0].raw, Some(0.001));
        assert_eq!(got[0].level, None, "raw p would breach 0.0012, the adjusted one does not");

        // Selectors: names, kinds.
        let mut r = Rule::for_tests(Target::Test { test: TestKind::Wasserstein, p_value: false });
        r.warn = Some(0.1);
        r.features = Selector::Names(vec!["f1".into(), "f2".into()]);
        let got = r.read(&report, &current);
        assert_eq!(got.iter().map(|x| x.feature.as_str()).collect::<Vec<_>>(), vec!["f1", "f2"]);
        assert_eq!((got[0].level, got[1].level), (None, w));
        r.features = Selector::Kind(FeatureKind::Categorical);
        assert!(r.read(&report, &current).is_empty());
    }

    #[test]
    fn levels_follow_the_direction() {
        let mut rule = Rule::for_tests(Target::Test { test: TestKind::Ks, p_value: true });
        rule.critical = Some(0.001);
        assert_eq!(rule.level(0.0001), Some(Severity::Critical));
        assert_eq!(rule.level(0.01), Some(Severity::Warning));
        assert_eq!(rule.level(0.05), None);
        rule.target = Target::Test { test: TestKind::Psi, p_value: false };
        rule.warn = Some(0.1);
        rule.critical = Some(0.25);
        assert_eq!(rule.level(0.1), Some(Severity::Warning));
        assert_eq!(rule.level(0.3), Some(Severity::Critical));
        assert_eq!(rule.level(0.09), None);
    }
}
