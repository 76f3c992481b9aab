//! The report model: what one comparison of current data with a reference found — per
//! feature tests, quality and distributions, the data set's verdict, performance and
//! advice ([`crate::engine::plan::compare`] makes it from two profiles and a plan). Its JSON form
//! is the contract of DESIGN section 7; the renderers (table, HTML, email, metrics) read
//! it and nothing here knows them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::impact::Impact;
use crate::engine::performance::Cbpe;
use crate::engine::profile::{FeatureKind, FeatureProfile, FeatureSpec, OTHER_CATEGORY};
use crate::engine::stats::TestResult;
use crate::engine::text::fmt_compact;

/// Bins of a numerical plot.
const BINS: usize = 24;
/// Categories drawn; the rest are summed into one bar.
const TOP_CATEGORIES: usize = 15;

/// The result of a check; its JSON form is the contract of DESIGN section 7.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub reference: Rows,
    pub current: Rows,
    pub drift: DatasetDrift,
    pub features: Vec<FeatureReport>,
    /// Performance metrics: realised from labels, or estimated from scores (CBPE); empty
    /// when no label, score or prediction column is given.
    pub performance: Performance,
    /// Quality of the whole window (agent only): `schema_error_rate`, `duplicate_rate`,
    /// `late_rate`, `freshness_seconds`, `volume`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quality: BTreeMap<String, f64>,
    /// Advice about the input (for example an identifier-like column), for people.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Windows with performance estimation: the drifted features ranked by their likely
    /// effect on accuracy, most harmful first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub impact: Vec<Impact>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rows {
    pub rows: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetDrift {
    pub detected: bool,
    pub share: f64,
    pub drifted_features: usize,
    pub total_features: usize,
    /// The share at or above which the data set counts as drifted.
    pub drift_share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FeatureReport {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeatureKind,
    pub drift: bool,
    pub tests: Vec<TestResult>,
    pub quality: Quality,
    /// Reference and current shares over common bins, for the HTML report's plots.
    #[serde(skip)]
    pub distribution: Option<Distribution>,
}

/// Data-quality ratios of the current data for one feature, each over its rows; null where
/// the check does not apply or there are no rows.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Quality {
    pub null_rate: Option<f64>,
    pub non_finite_rate: Option<f64>,
    /// Values of the wrong JSON type (live events; 0 for typed files).
    pub type_error_rate: Option<f64>,
    /// Outside the declared range, or else the reference's min/max (numerical).
    pub out_of_range_rate: Option<f64>,
    pub new_category_rate: Option<f64>,
    /// Breaking a declared constraint (categorical features that declare one).
    pub constraint_violation_rate: Option<f64>,
}

impl Quality {
    /// Every ratio, in the order of the JSON fields.
    pub fn rates(&self) -> [Option<f64>; 6] {
        [
            self.null_rate, self.non_finite_rate, self.type_error_rate, self.out_of_range_rate, self.new_category_rate,
            self.constraint_violation_rate,
        ]
    }

    pub fn of(spec: &FeatureSpec, reference: &mut FeatureProfile, current: &mut FeatureProfile) -> Quality {
        let rows = current.rows;
        let rate = |n: u64| (rows > 0).then(|| n as f64 / rows as f64);
        let declared = spec.declared.as_deref();
        match spec.kind {
            FeatureKind::Numerical => {
                let out_of_range_rate = match declared {
                    // Declared: counted on every value as it was observed.
                    Some(d) if d.has_range() => rate(current.violations),
                    _ => {
                        let (lo, hi) = (reference.min, reference.max);
                        let valid = current.valid();
                        let sample = current.sample.sorted();
                        // Counted on the sample, scaled to all valid values (exact while the
                        // sample is).
                        let outside = if sample.is_empty() || lo > hi {
                            0.0
                        } else {
                            let below = sample.partition_point(|v| *v < lo);
                            let above = sample.len() - sample.partition_point(|v| *v <= hi);
                            (below + above) as f64 / sample.len() as f64 * valid as f64
                        };
                        (rows > 0 && lo <= hi).then(|| outside / rows as f64)
                    }
                };
                Quality {
                    null_rate: rate(current.nulls),
                    non_finite_rate: rate(current.non_finite),
                    type_error_rate: rate(current.type_errors),
                    out_of_range_rate,
                    new_category_rate: None,
                    constraint_violation_rate: None,
                }
            }
            FeatureKind::Categorical => {
                let new: u64 = current
                    .categories
                    .iter()
                    .filter(|(k, _)| !reference.categories.contains_key(*k))
                    .map(|(_, v)| v)
                    .sum();
                Quality {
                    null_rate: rate(current.nulls),
                    non_finite_rate: None,
                    type_error_rate: rate(current.type_errors),
                    out_of_range_rate: None,
                    new_category_rate: rate(new),
                    constraint_violation_rate: if declared.is_some_and(|d| d.has_text_rules()) {
                        rate(current.violations)
                    } else {
                        None
                    },
                }
            }
        }
    }
}

impl Report {
    /// The report of a window whose labels are in: realised performance over `rows`
    /// labelled predictions, nothing else.
    pub fn realised(
        model: &str,
        reference_rows: u64,
        rows: usize,
        metrics: BTreeMap<&'static str, Option<f64>>,
    ) -> Report {
        Report {
            model: model.into(),
            reference: Rows { rows: reference_rows },
            current: Rows { rows: rows as u64 },
            drift: DatasetDrift {
                detected: false,
                share: 0.0,
                drifted_features: 0,
                total_features: 0,
                drift_share: 0.0,
            },
            features: Vec::new(),
            performance: Performance::realised(rows, metrics),
            quality: BTreeMap::new(),
            notes: Vec::new(),
            impact: Vec::new(),
        }
    }

    /// A report of `features` over 1000 reference and 1000 current rows, nothing drifted
    /// (for tests of what reads reports).
    #[cfg(test)]
    pub(crate) fn for_tests(features: Vec<FeatureReport>) -> Report {
        Report {
            model: "m".into(),
            reference: Rows { rows: 1000 },
            current: Rows { rows: 1000 },
            drift: DatasetDrift {
                detected: false,
                share: 0.0,
                drifted_features: 0,
                total_features: features.len(),
                drift_share: 0.5,
            },
            features,
            performance: Performance::default(),
            quality: BTreeMap::new(),
            notes: Vec::new(),
            impact: Vec::new(),
        }
    }

    /// Exit code of `check`: 1 when the data set drifted, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.drift.detected)
    }
}

/// The `performance` object of a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Performance {
    /// `false`: realised from the labels; `true`: estimated without labels (CBPE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated: Option<bool>,
    /// Rows the metrics are computed on (rows missing a needed value are left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Metric name → value; null where the metric is undefined on the data.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, Option<f64>>,
    /// Standard error of each estimate; the band is ±3 of it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sampling_error: BTreeMap<String, f64>,
    /// Estimates: whether the scores were calibrated (isotonic) on the reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<bool>,
}

impl Performance {
    pub(crate) fn realised(rows: usize, metrics: BTreeMap<&'static str, Option<f64>>) -> Performance {
        Performance {
            estimated: Some(false),
            rows: Some(rows as u64),
            metrics: metrics.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Performance::default()
        }
    }

    /// CBPE's estimates for `scores` and their predicted classes.
    pub fn estimated(cbpe: &Cbpe, scores: &[f64], predicted: &[bool]) -> Performance {
        let mut out = Performance {
            estimated: Some(true),
            rows: Some(scores.len() as u64),
            calibrated: Some(cbpe.calibrator.is_some()),
            ..Performance::default()
        };
        for (name, e) in cbpe.estimate(scores, predicted) {
            out.metrics.insert(name.to_string(), Some(e.value).filter(|v| v.is_finite()));
            if e.sampling_error.is_finite() {
                out.sampling_error.insert(name.to_string(), e.sampling_error);
            }
        }
        out
    }
}

/// Reference and current shares over common bins, for a plot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    /// Bar labels: categories, or `[lo, hi)` ranges of numerical bins.
    pub labels: Vec<String>,
    /// Numerical: the lowest and highest edge.
    pub range: Option<(f64, f64)>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

impl Distribution {
    /// Equal-width bins over both sides' range (numerical, from the samples: exact while
    /// they are), or the most frequent categories of both sides.
    pub fn of(kind: FeatureKind, reference: &mut FeatureProfile, current: &mut FeatureProfile) -> Distribution {
        match kind {
            FeatureKind::Numerical => {
                let (r, c) = (reference.sample.sorted(), current.sample.sorted());
                let lo = r.first().into_iter().chain(c.first()).fold(f64::INFINITY, |a, b| a.min(*b));
                let hi = r.last().into_iter().chain(c.last()).fold(f64::NEG_INFINITY, |a, b| a.max(*b));
                if !lo.is_finite() || !hi.is_finite() {
                    return Distribution::default();
                }
                let bins = if hi > lo { BINS } else { 1 };
                let width = (hi - lo) / bins as f64;
                let edges: Vec<f64> = (1..bins).map(|k| lo + width * k as f64).collect();
                let shares = |sorted: &[f64]| {
                    let n = sorted.len().max(1) as f64;
                    let mut cuts: Vec<usize> = edges.iter().map(|e| sorted.partition_point(|v| v < e)).collect();
                    cuts.insert(0, 0);
                    cuts.push(sorted.len());
                    cuts.windows(2).map(|w| (w[1] - w[0]) as f64 / n).collect::<Vec<f64>>()
                };
                let labels = (0..bins)
                    .map(|k| {
                        let a = lo + width * k as f64;
                        format!("[{}, {})", fmt_compact(a), fmt_compact(a + width))
                    })
                    .collect();
                Distribution { labels, range: Some((lo, hi)), reference: shares(r), current: shares(c) }
            }
            FeatureKind::Categorical => {
                let total = |p: &FeatureProfile| p.categories.values().sum::<u64>().max(1) as f64;
                let (rt, ct) = (total(reference), total(current));
                let share = |p: &FeatureProfile, t: f64, k: &str| p.categories.get(k).map_or(0.0, |n| *n as f64 / t);
                let mut keys: Vec<&String> = reference.categories.keys().chain(current.categories.keys()).collect();
                keys.sort();
                keys.dedup();
                keys.sort_by(|a, b| {
                    let w = |k: &str| share(reference, rt, k) + share(current, ct, k);
                    w(b).total_cmp(&w(a)).then_with(|| a.cmp(b))
                });
                let (shown, rest) = keys.split_at(keys.len().min(TOP_CATEGORIES));
                let mut d = Distribution {
                    labels: shown.iter().map(|k| k.to_string()).collect(),
                    range: None,
                    reference: shown.iter().map(|k| share(reference, rt, k)).collect(),
                    current: shown.iter().map(|k| share(current, ct, k)).collect(),
                };
                if !rest.is_empty() {
                    d.labels.push(format!("{} more", rest.len()));
                    d.reference.push(rest.iter().map(|k| share(reference, rt, k)).sum());
                    d.current.push(rest.iter().map(|k| share(current, ct, k)).sum());
                }
                if let Some(i) = d.labels.iter().position(|l| l == OTHER_CATEGORY) {
                    d.labels[i] = "(other values)".into();
                }
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::profile::Sample;

    fn profile(kind: FeatureKind) -> FeatureProfile {
        FeatureProfile::new(&crate::engine::profile::FeatureSpec::new("f", kind, vec![]))
    }

    fn numerical(values: &[f64]) -> FeatureProfile {
        let mut p = profile(FeatureKind::Numerical);
        p.sample = Sample::from_sorted(values.len() as u64, values.to_vec());
        p
    }

    #[test]
    fn numerical_shares_cover_both_ranges_and_sum_to_one() {
        let mut r = numerical(&[0.0, 1.0, 2.0, 3.0]);
        let mut c = numerical(&[10.0, 12.0]);
        let d = Distribution::of(FeatureKind::Numerical, &mut r, &mut c);
        assert_eq!(d.range, Some((0.0, 12.0)));
        assert_eq!(d.labels.len(), BINS);
        assert!((d.reference.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((d.current.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Bins are half a unit wide: 0 and 1 fall in bins 0 and 2; 12 (the top) in the last.
        assert_eq!((d.reference[0], d.reference[2]), (0.25, 0.25));
        assert_eq!(d.current[BINS - 1], 0.5);
    }

    #[test]
    fn categories_keep_the_most_frequent_and_sum_the_rest() {
        let mut r = profile(FeatureKind::Categorical);
        let mut c = profile(FeatureKind::Categorical);
        for k in 0..20u64 {
            r.categories.insert(format!("c{k:02}"), 20 - k);
        }
        c.categories.insert("new".into(), 50);
        let d = Distribution::of(FeatureKind::Categorical, &mut r, &mut c);
        assert_eq!(d.labels.len(), TOP_CATEGORIES + 1);
        assert_eq!(d.labels[0], "new");
        assert_eq!(d.current[0], 1.0);
        assert_eq!(d.labels[TOP_CATEGORIES], "6 more");
        assert!((d.reference.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
