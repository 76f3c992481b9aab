//! Drift → impact: which drifted features most plausibly moved the estimated performance.
//!
//! On the reference, every row's chance of being right is known from its calibrated score
//! (CBPE: `p` when the model predicts 1, `1 − p` when it predicts 0). [`ImpactModel::fit`]
//! averages that chance per bin of each feature (the reference's bins: numerical quantile
//! bins, categories). In a window, a feature's impact is the change in expected accuracy its
//! shift alone would cause if accuracy given the feature stayed as on the reference:
//!
//! impact(f) = Σ_b (q_window(b) − q_reference(b)) · accuracy_reference(b)
//!
//! It needs only the window's distribution of the feature, so it costs nothing per event.
//! Negative impact: the traffic moved towards values where the model is less often right.
//! Drifted features are ranked by it, most harmful first.

use std::collections::HashMap;

use serde::Serialize;

use crate::engine::profile::{FeatureKind, FeatureProfile, FeatureSpec};

/// One drifted feature's share of the expected accuracy change.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Impact {
    pub feature: String,
    /// Expected change in accuracy from this feature's shift alone.
    pub accuracy_change: f64,
}

/// Reference accuracy per bin of one feature.
#[derive(Clone, Debug, Default)]
struct Bins {
    /// Numerical: per bin over the spec's edges (bin k = number of edges ≤ x).
    numeric: Vec<(f64, u64)>,
    categories: HashMap<String, (f64, u64)>,
    /// Rows with the value missing.
    missing: (f64, u64),
}

/// Reference accuracy given each feature's value.
#[derive(Clone, Debug)]
pub struct ImpactModel {
    features: Vec<Bins>,
    overall: f64,
}

/// A feature's values on the reference rows, for fitting.
pub enum Column<'a> {
    Numbers(&'a [Option<f64>]),
    Texts(&'a [Option<String>]),
}

impl ImpactModel {
    /// `correct[i]`: the chance reference row `i` is predicted right; `columns[f]` the
    /// values of spec feature `f` on the same rows.
    pub fn fit(specs: &[FeatureSpec], columns: &[Column], correct: &[f64]) -> ImpactModel {
        let overall = correct.iter().sum::<f64>() / correct.len().max(1) as f64;
        let features = specs
            .iter()
            .zip(columns)
            .map(|(spec, column)| {
                let mut bins = Bins { numeric: vec![(0.0, 0); spec.edges.len() + 1], ..Bins::default() };
                let add = |slot: &mut (f64, u64), c: f64| {
                    slot.0 += c;
                    slot.1 += 1;
                };
                match column {
                    Column::Numbers(values) => {
                        for (v, &c) in values.iter().zip(correct) {
                            match v.filter(|x| x.is_finite()) {
                                Some(x) => add(&mut bins.numeric[spec.edges.partition_point(|e| *e <= x)], c),
                                None => add(&mut bins.missing, c),
                            }
                        }
                    }
                    Column::Texts(values) => {
                        for (v, &c) in values.iter().zip(correct) {
                            match v {
                                Some(t) => add(bins.categories.entry(t.clone()).or_default(), c),
                                None => add(&mut bins.missing, c),
                            }
                        }
                    }
                }
                bins
            })
            .collect();
        ImpactModel { features, overall }
    }

    /// The impact of each named feature's shift, most harmful first. `reference` and
    /// `current` are the profiles in spec order; `current` samples are sorted as needed.
    pub fn rank(
        &self,
        names: &[&str],
        specs: &[FeatureSpec],
        reference: &[FeatureProfile],
        current: &mut [FeatureProfile],
    ) -> Vec<Impact> {
        let mut out = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if !names.contains(&spec.name.as_str()) {
                continue;
            }
            let (Some(bins), Some(r), Some(c)) = (self.features.get(i), reference.get(i), current.get_mut(i)) else {
                continue;
            };
            let accuracy = |slot: &(f64, u64)| if slot.1 > 0 { slot.0 / slot.1 as f64 } else { self.overall };
            let mut change = 0.0;
            let (rn, cn) = (r.rows.max(1) as f64, c.rows.max(1) as f64);
            change += (c.nulls as f64 / cn - r.nulls as f64 / rn) * accuracy(&bins.missing);
            match spec.kind {
                FeatureKind::Numerical => {
                    // The baseline's histogram is over these edges already.
                    let reference_counts = &r.histogram;
                    let current_counts = crate::engine::stats::histogram_of_sorted(c.sample.sorted(), &spec.edges);
                    // Histograms cover the valid values; scale them to all rows.
                    let (rv, cv) = (r.valid() as f64 / rn, c.valid() as f64 / cn);
                    let (rs, cs) = (
                        reference_counts.iter().sum::<u64>().max(1) as f64,
                        current_counts.iter().sum::<u64>().max(1) as f64,
                    );
                    for (b, slot) in bins.numeric.iter().enumerate() {
                        let q_ref = reference_counts.get(b).copied().unwrap_or(0) as f64 / rs * rv;
                        let q_cur = current_counts.get(b).copied().unwrap_or(0) as f64 / cs * cv;
                        change += (q_cur - q_ref) * accuracy(slot);
                    }
                }
                FeatureKind::Categorical => {
                    let mut keys: Vec<&String> = r.categories.keys().chain(c.categories.keys()).collect();
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        let q_ref = r.categories.get(k).copied().unwrap_or(0) as f64 / rn;
                        let q_cur = c.categories.get(k).copied().unwrap_or(0) as f64 / cn;
                        let slot = bins.categories.get(k).copied().unwrap_or((0.0, 0));
                        change += (q_cur - q_ref) * accuracy(&slot);
                    }
                }
            }
            out.push(Impact { feature: spec.name.clone(), accuracy_change: change });
        }
        out.sort_by(|a, b| a.accuracy_change.total_cmp(&b.accuracy_change));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::profile::{Profile, ProfileSpec};
    use arrow::array::{Float64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn profile(spec: &ProfileSpec, x: &[f64], c: &[&str]) -> Profile {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("c", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Float64Array::from(x.to_vec())), Arc::new(StringArray::from(c.to_vec()))],
        )
        .unwrap();
        let mut p = Profile::new(spec);
        p.observe(spec, &batch).unwrap();
        p
    }

    #[test]
    fn a_shift_towards_values_the_model_gets_wrong_ranks_first() {
        // The model is right on x < 5 and wrong above.
        let spec = ProfileSpec {
            features: vec![
                FeatureSpec::new("x", FeatureKind::Numerical, vec![5.0]),
                FeatureSpec::new("c", FeatureKind::Categorical, vec![]),
            ],
            bins: 2,
            max_samples: 1000,
            max_categories: 10,
        };
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let c = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"];
        let correct: Vec<f64> = x.iter().map(|v| if *v < 5.0 { 1.0 } else { 0.0 }).collect();
        let xs: Vec<Option<f64>> = x.iter().map(|v| Some(*v)).collect();
        let cs: Vec<Option<String>> = c.iter().map(|v| Some(v.to_string())).collect();
        let model = ImpactModel::fit(&spec.features, &[Column::Numbers(&xs), Column::Texts(&cs)], &correct);
        let mut reference = profile(&spec, &x, &c);
        reference.features[0].sample.sorted();
        // Now 80 % of x is above 5 (was 50 %), and "c" moved to all "a".
        let moved = [1.0, 2.0, 6.0, 6.0, 7.0, 7.0, 8.0, 8.0, 9.0, 9.0];
        let mut current = profile(&spec, &moved, &["a"; 10]);
        let ranked = model.rank(&["x", "c"], &spec.features, &reference.features, &mut current.features);
        assert_eq!(ranked[0].feature, "x");
        assert!((ranked[0].accuracy_change - (-0.3)).abs() < 1e-12, "{ranked:?}");
        // "c" = a is right 3 times in 5, b twice: all "a" is worth +0.1.
        assert!((ranked[1].accuracy_change - 0.1).abs() < 1e-12, "{ranked:?}");
    }
}
