//! `driftwatch check`: one comparison of a batch (Parquet, CSV or NDJSON) with a baseline,
//! and the report it produces — JSON (the contract pipelines consume, DESIGN section 7) or a
//! table for people (drifted features first, colour on a terminal).
//!
//! The reference and current data go through the same profile code as the streaming agent;
//! features are compared in parallel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;

use crate::adapters::baseline::{
    Baseline, BaselineError, BuildOptions, FeatureSelection, Format, profile_file, read_numbers, read_rows, read_schema,
};
use crate::adapters::config::Model;
use crate::engine::impact::{Column as ImpactColumn, ImpactModel};
use crate::engine::performance::Cbpe;
use crate::engine::profile::{Declared, FeatureKind, FeatureProfile, FeatureSpec, Profile, ProfileSpec};
use crate::engine::stats::{FeaturePair, TestChoice, TestOptions, TestResult, benjamini_hochberg};

/// Input problems a check reports (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Data(#[from] BaselineError),
    #[error("{path}: has no rows to compare")]
    EmptyCurrent { path: PathBuf },
    #[error("{path}: the reference has no rows (check the file and the SQL filter)")]
    EmptyReference { path: PathBuf },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Usage(String),
    #[error(
        "{path}: column \"{column}\" is missing; the reference {reference} has it (exclude it with --exclude, or add it to the data)"
    )]
    MissingInCurrent { path: PathBuf, column: String, reference: PathBuf },
    #[error("{path}: column \"{column}\" is not in the reference {reference} (exclude it with --exclude {column})")]
    MissingInReference { path: PathBuf, column: String, reference: PathBuf },
    #[error(
        "{path}: column \"{column}\" is {found} here but {expected} in the reference {reference}; declare its type with --numerical/--categorical if that is intended"
    )]
    TypeDiffers { path: PathBuf, column: String, found: String, expected: &'static str, reference: PathBuf },
    #[error(
        "{path}: this baseline artefact was built with {built} bins; rebuild it with --bins {asked} or drop --bins"
    )]
    BinsDiffer { path: PathBuf, built: usize, asked: usize },
}

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
    pub rules: Vec<crate::engine::rules::Rule>,
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

impl PerformanceSpec {
    /// `[model.performance]`: the score feature (classification) or predicted value
    /// (regression) and the baseline's label.
    pub fn from_model(p: &crate::adapters::config::ModelPerformance) -> PerformanceSpec {
        match p.task {
            Task::Classification => PerformanceSpec {
                task: Task::Classification,
                label: p.label.clone(),
                score: Some(p.score.clone()),
                prediction: None,
                threshold: p.threshold,
            },
            Task::Regression => PerformanceSpec {
                task: Task::Regression,
                label: p.label.clone(),
                score: None,
                prediction: Some(p.score.clone()),
                threshold: p.threshold,
            },
        }
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

    /// A plan for the configured form, from a validated model.
    pub fn from_model(m: &Model) -> Plan {
        let mut selection = FeatureSelection {
            exclude: m.exclude.iter().map(|(n, _)| n.clone()).collect(),
            ..FeatureSelection::default()
        };
        let mut per_feature = BTreeMap::new();
        let mut feature_bins = BTreeMap::new();
        let mut declared = BTreeMap::new();
        for d in &m.derived {
            if let Some(k) = d.kind {
                selection.declared.insert(d.name.clone(), k);
            }
        }
        for f in &m.features {
            selection.columns.push(f.name.clone());
            if let Some(k) = f.kind {
                selection.declared.insert(f.name.clone(), k);
            }
            per_feature.insert(f.name.clone(), (f.tests.clone(), f.options.clone()));
            if let Some(b) = f.bins {
                feature_bins.insert(f.name.clone(), b);
            }
            if let Some(d) = &f.declared {
                declared.insert(f.name.clone(), Arc::new(d.clone()));
            }
        }
        if !selection.columns.is_empty() {
            selection.columns.extend(m.derived.iter().map(|d| d.name.clone()));
        }
        Plan {
            model: m.id.clone(),
            tests: m.tests.clone(),
            options: m.options.clone(),
            per_feature,
            drift_share: m.drift_share,
            fdr: m.fdr,
            build: BuildOptions { bins: m.bins, max_samples: m.max_samples, max_categories: m.max_categories },
            feature_bins,
            selection,
            filter: m.filter.clone(),
            bins_explicit: false,
            strict_columns: false,
            rules: m.rules.clone(),
            performance: None,
            declared,
            derived: m.derived.iter().map(|d| (d.name.clone(), d.sql.clone())).collect(),
        }
    }

    /// The query the reference is read through: the SQL filter, with the derived features
    /// added as columns.
    pub fn reference_sql(&self) -> Option<String> {
        if self.derived.is_empty() {
            return self.filter.clone();
        }
        let inner = self.filter.clone().unwrap_or_else(|| format!("SELECT * FROM {}", crate::adapters::baseline::TABLE));
        Some(format!("SELECT *, {} FROM ({inner}) AS {}", self.derived_columns(), crate::adapters::baseline::TABLE))
    }

    /// The query current data is read through: the derived features added as columns.
    pub fn current_sql(&self) -> Option<String> {
        (!self.derived.is_empty())
            .then(|| format!("SELECT *, {} FROM {}", self.derived_columns(), crate::adapters::baseline::TABLE))
    }

    fn derived_columns(&self) -> String {
        self.derived
            .iter()
            .map(|(name, sql)| format!("({sql}) AS \"{}\"", name.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ")
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

/// Runs a whole check. A data reference and the current data are read and profiled at the
/// same time (the spec — names and kinds — comes from the reference schema first; bin
/// edges are fixed afterwards and the current histogram is taken from its sorted sample);
/// an artefact reference is loaded as stored and the current data profiled with its spec.
pub async fn run(reference: &Path, current: &Path, plan: &Plan) -> Result<Report, CheckError> {
    let ref_format = Format::detect(reference)?;
    let cur_format = Format::detect(current)?;
    if cur_format == Format::Artefact {
        return Err(CheckError::Data(BaselineError::Read {
            path: current.into(),
            message: "is a baseline artefact; the current data must be Parquet, CSV or NDJSON".into(),
        }));
    }
    let mut notes = Vec::new();
    let (mut baseline, mut current_profile, current_rows) = if ref_format == Format::Artefact {
        let baseline = load_baseline(reference, plan).await?;
        let spec = Arc::new(baseline.spec.clone());
        let columns = spec.features.iter().map(|f| f.name.clone()).collect();
        let side = ReferenceColumns { path: reference.into(), columns };
        let (profile, rows) = read_and_profile(current.into(), cur_format, spec, side, plan.clone()).await?;
        (baseline, profile, rows)
    } else {
        let schema = read_schema(reference, plan.reference_sql().as_deref()).await?;
        let (mut spec, skipped) = Baseline::spec_for(&schema, reference, &plan.selection, plan.build)?;
        plan.constrain(&mut spec);
        notes.extend(
            skipped
                .iter()
                .map(|c| format!("column \"{c}\" is not compared: its type is neither numerical nor categorical")),
        );
        let spec = Arc::new(spec);
        let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        let side = ReferenceColumns { path: reference.into(), columns };
        let reference_side =
            tokio::spawn(read_reference(reference.into(), ref_format, plan.reference_sql(), spec.clone()));
        let current_side = tokio::spawn(read_and_profile(current.into(), cur_format, spec.clone(), side, plan.clone()));
        let reference_profile = join(reference_side).await?;
        let (profile, rows) = join(current_side).await?;
        let spec = Arc::try_unwrap(spec).unwrap_or_else(|s| (*s).clone());
        (Baseline::from_profile(spec, reference_profile, reference, &plan.feature_bins), profile, rows)
    };
    let started = std::time::Instant::now();
    let mut report = compare(&mut baseline, &mut current_profile.features, current_rows, plan);
    report.notes.extend(notes);
    if let Some(spec) = &plan.performance {
        report.performance = performance(reference, current, plan.filter.as_deref(), spec).await?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "compared");
    Ok(report)
}

/// Rows whose every column has a value.
fn complete(columns: Vec<Vec<Option<f64>>>) -> Vec<Vec<f64>> {
    let n = columns.first().map_or(0, Vec::len);
    let keep: Vec<usize> = (0..n).filter(|&i| columns.iter().all(|c| c[i].is_some_and(f64::is_finite))).collect();
    columns.iter().map(|c| keep.iter().map(|&i| c[i].unwrap_or_default()).collect()).collect()
}

fn as_classes(values: &[f64], path: &Path, column: &str) -> Result<Vec<bool>, CheckError> {
    match values.iter().find(|v| **v != 0.0 && **v != 1.0) {
        Some(v) => Err(CheckError::Data(BaselineError::Read {
            path: path.into(),
            message: format!(
                "column \"{column}\" holds {v}; binary classification needs 0/1 or true/false (use --task regression for numeric targets)"
            ),
        })),
        None => Ok(values.iter().map(|v| *v == 1.0).collect()),
    }
}

/// Labels, scores and predicted classes of the rows that have every one asked for.
struct Outputs {
    labels: Vec<bool>,
    scores: Vec<f64>,
    predicted: Vec<bool>,
}

/// Reads the spec's output columns (the label only when `with_label`); the predicted class is
/// the prediction column, or score >= threshold without one.
async fn read_outputs(
    path: &Path,
    filter: Option<&str>,
    spec: &PerformanceSpec,
    with_label: bool,
) -> Result<Outputs, CheckError> {
    let mut names = Vec::new();
    if with_label {
        names.push(spec.label.as_str());
    }
    names.extend(spec.score.as_deref());
    names.extend(spec.prediction.as_deref());
    let mut columns = complete(read_numbers(path, filter, &names).await?).into_iter();
    let labels = match with_label {
        true => as_classes(&columns.next().unwrap_or_default(), path, &spec.label)?,
        false => Vec::new(),
    };
    let scores = match spec.score {
        Some(_) => columns.next().unwrap_or_default(),
        None => Vec::new(),
    };
    let predicted = match &spec.prediction {
        Some(p) => as_classes(&columns.next().unwrap_or_default(), path, p)?,
        None => scores.iter().map(|s| *s >= spec.threshold).collect(),
    };
    Ok(Outputs { labels, scores, predicted })
}

/// The reference's rows through the plan's query (filter and derived features), in memory:
/// for the start-up fits that need rows, not summaries.
pub async fn reference_rows(reference: &Path, plan: &Plan) -> Result<Vec<RecordBatch>, CheckError> {
    Ok(read_rows(reference, plan.reference_sql().as_deref()).await?)
}

/// Fits the drift → impact model on the reference's rows (`batches`, from
/// [`reference_rows`]): each row's chance of being predicted right, from its calibrated
/// score, per bin of every feature of `spec`. Rows without a finite score are left out.
pub fn fit_impact(
    reference: &Path,
    batches: &[RecordBatch],
    spec: &ProfileSpec,
    cbpe: &Cbpe,
    score: &str,
    threshold: f64,
) -> Result<ImpactModel, CheckError> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    let read_err = |message: String| CheckError::Data(BaselineError::Read { path: reference.into(), message });
    let mut scores = Vec::new();
    let mut numbers: Vec<Vec<Option<f64>>> = vec![Vec::new(); spec.features.len()];
    let mut texts: Vec<Vec<Option<String>>> = vec![Vec::new(); spec.features.len()];
    for batch in batches {
        let column = |name: &str, to: &DataType| {
            let c = batch.column_by_name(name).ok_or_else(|| read_err(format!("no column \"{name}\"")))?;
            cast(c, to).map_err(|e| read_err(format!("column \"{name}\": {e}")))
        };
        let s = column(score, &DataType::Float64)?;
        let s = s.as_primitive::<Float64Type>();
        let keep: Vec<usize> = (0..batch.num_rows()).filter(|&i| s.is_valid(i) && s.value(i).is_finite()).collect();
        scores.extend(keep.iter().map(|&i| s.value(i)));
        for (f, fspec) in spec.features.iter().enumerate() {
            match fspec.kind {
                FeatureKind::Numerical => {
                    let c = column(&fspec.name, &DataType::Float64)?;
                    let c = c.as_primitive::<Float64Type>();
                    numbers[f].extend(keep.iter().map(|&i| c.is_valid(i).then(|| c.value(i))));
                }
                FeatureKind::Categorical => {
                    let c = column(&fspec.name, &DataType::Utf8)?;
                    let c = c.as_string::<i32>();
                    texts[f].extend(keep.iter().map(|&i| c.is_valid(i).then(|| c.value(i).to_string())));
                }
            }
        }
    }
    let calibrated = cbpe.calibrate(&scores);
    let correct: Vec<f64> =
        scores.iter().zip(&calibrated).map(|(s, p)| if *s >= threshold { *p } else { 1.0 - p }).collect();
    let columns: Vec<ImpactColumn> = spec
        .features
        .iter()
        .enumerate()
        .map(|(f, fspec)| match fspec.kind {
            FeatureKind::Numerical => ImpactColumn::Numbers(&numbers[f]),
            FeatureKind::Categorical => ImpactColumn::Texts(&texts[f]),
        })
        .collect();
    Ok(ImpactModel::fit(&spec.features, &columns, &correct))
}

/// Sets the thresholds rules take from the baseline. `learn`: the baseline's rows
/// (`batches`, from [`reference_rows`]) are split in row order into the rule's number of
/// chunks; the band of each feature (quality rules) or of the model (performance rules, from
/// the labels and scores `performance` names) is the mean ± sigmas·σ of the chunks' values.
/// `baseline_margin`: `warn` is the metric on the whole baseline made worse by the margin.
pub async fn learn_bands(
    rules: &mut [crate::engine::rules::Rule],
    reference: &Path,
    batches: &[RecordBatch],
    plan: &Plan,
    baseline: &mut Baseline,
    performance: Option<&crate::adapters::config::ModelPerformance>,
) -> Result<(), CheckError> {
    use crate::engine::rules::{DATASET_FEATURE, Target};
    if rules.iter().all(|r| r.learn.is_none() && r.margin.is_none()) {
        return Ok(());
    }
    let from_labels = |r: &crate::engine::rules::Rule| {
        (r.learn.is_some() || r.margin.is_some()) && matches!(r.target, Target::Performance { .. })
    };
    if let Some(rule) = rules.iter().find(|r| from_labels(r)) {
        if performance.is_some_and(|p| p.task == Task::Regression) {
            return Err(CheckError::Usage(format!(
                "rule \"{}\": `learn` and `baseline_margin` on regression metrics are not supported; give `warn`",
                rule.name
            )));
        }
    }
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    // Rows [from, to) of the whole file as one profile.
    let chunk_profile = |from: usize, to: usize| -> Result<Profile, CheckError> {
        let mut p = Profile::new(&baseline.spec);
        let mut offset = 0;
        for b in batches {
            let (lo, hi) = (from.max(offset), to.min(offset + b.num_rows()));
            if lo < hi {
                p.observe(&baseline.spec, &b.slice(lo - offset, hi - lo))
                    .map_err(|e| CheckError::Internal(e.to_string()))?;
            }
            offset += b.num_rows();
        }
        Ok(p)
    };
    let labelled = match performance {
        Some(p) if rules.iter().any(from_labels) => {
            let spec = PerformanceSpec::from_model(p);
            Some(read_outputs(reference, plan.filter.as_deref(), &spec, true).await?)
        }
        _ => None,
    };
    for rule in rules.iter_mut() {
        if let (Some(margin), Target::Performance { metric, .. }, Some(o)) =
            (rule.margin, rule.target.clone(), &labelled)
        {
            let all = crate::engine::performance::classification(&o.labels, &o.predicted, &o.scores);
            if let Some(v) = all.get(metric.as_str()).copied().flatten() {
                let worse = if rule.direction() == crate::engine::rules::Direction::Below { v - margin } else { v + margin };
                rule.warn = Some(worse);
                rule.resolve = worse;
                tracing::info!(rule = %rule.name, baseline = v, warn = worse, "threshold set from the baseline");
            }
        }
        let Some(learn) = rule.learn else {
            continue;
        };
        let k = learn.chunks;
        match rule.target.clone() {
            Target::Quality(check) => {
                let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                for c in 0..k {
                    let mut chunk = chunk_profile(c * total / k, (c + 1) * total / k)?;
                    for ((spec, r), cur) in
                        baseline.spec.features.iter().zip(&mut baseline.profile.features).zip(&mut chunk.features)
                    {
                        if !rule.features.matches(&spec.name, spec.kind) || cur.rows == 0 {
                            continue;
                        }
                        if let Some(v) = check.value(&Quality::of(spec, r, cur)) {
                            values.entry(spec.name.clone()).or_default().push(v);
                        }
                    }
                }
                rule.bands = values.iter().filter_map(|(f, v)| Some((f.clone(), learn.band(v)?))).collect();
            }
            Target::Performance { metric, .. } => {
                let Some(o) = &labelled else {
                    continue;
                };
                let n = o.labels.len();
                let values: Vec<f64> = (0..k)
                    .filter_map(|c| {
                        let (lo, hi) = (c * n / k, (c + 1) * n / k);
                        let scores = if o.scores.is_empty() { &[][..] } else { &o.scores[lo..hi] };
                        crate::engine::performance::classification(&o.labels[lo..hi], &o.predicted[lo..hi], scores)
                            .get(metric.as_str())
                            .copied()
                            .flatten()
                    })
                    .collect();
                if let Some(band) = learn.band(&values) {
                    rule.bands.insert(DATASET_FEATURE.to_string(), band);
                }
            }
            _ => {}
        }
        tracing::info!(rule = %rule.name, bands = ?rule.bands, "warning bands learned from the baseline");
    }
    Ok(())
}

/// Fits CBPE on the reference's labels and scores (through the SQL filter).
pub async fn fit_cbpe(reference: &Path, filter: Option<&str>, spec: &PerformanceSpec) -> Result<Cbpe, CheckError> {
    let r = read_outputs(reference, filter, spec, true).await?;
    if r.labels.is_empty() {
        return Err(CheckError::Data(BaselineError::Read {
            path: reference.into(),
            message: format!("no rows with both a score and a label (\"{}\")", spec.label),
        }));
    }
    Ok(Cbpe::fit(&r.scores, &r.predicted, &r.labels))
}

impl Performance {
    fn realised(rows: usize, metrics: BTreeMap<&'static str, Option<f64>>) -> Performance {
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

/// The `performance` object: realised metrics when the current data has the label column,
/// CBPE estimates (fitted on the reference's labels and scores) when it has not.
pub async fn performance(
    reference: &Path,
    current: &Path,
    filter: Option<&str>,
    spec: &PerformanceSpec,
) -> Result<Performance, CheckError> {
    use crate::engine::performance as perf;
    if spec.task == Task::Regression {
        let prediction = spec
            .prediction
            .as_deref()
            .ok_or_else(|| CheckError::Usage("regression metrics need --prediction-column".into()))?;
        let cols = complete(read_numbers(current, None, &[spec.label.as_str(), prediction]).await?);
        return Ok(Performance::realised(cols[0].len(), perf::regression(&cols[0], &cols[1])));
    }
    if spec.score.is_none() && spec.prediction.is_none() {
        return Err(CheckError::Usage("classification metrics need --score-column or --prediction-column".into()));
    }
    if read_schema(current, None).await?.field_with_name(&spec.label).is_ok() {
        let c = read_outputs(current, None, spec, true).await?;
        return Ok(Performance::realised(c.labels.len(), perf::classification(&c.labels, &c.predicted, &c.scores)));
    }
    if spec.score.is_none() {
        return Err(CheckError::Data(BaselineError::Read {
            path: current.into(),
            message: format!(
                "has no label column \"{}\"; estimating performance without labels needs --score-column",
                spec.label
            ),
        }));
    }
    let cbpe = fit_cbpe(reference, filter, spec).await?;
    let c = read_outputs(current, None, spec, false).await?;
    Ok(Performance::estimated(&cbpe, &c.scores, &c.predicted))
}

/// Loads a baseline as the agent keeps it: an artefact as stored (its bins checked against
/// an explicit `--bins`, its features narrowed to the plan's selection), or a data file
/// profiled through the plan's SQL filter with bins fixed at its quantiles.
pub async fn load_baseline(path: &Path, plan: &Plan) -> Result<Baseline, CheckError> {
    let format = Format::detect(path)?;
    if format == Format::Artefact {
        let baseline = Baseline::read_artefact(path)?;
        if plan.bins_explicit && baseline.spec.bins != plan.build.bins {
            return Err(CheckError::BinsDiffer {
                path: path.into(),
                built: baseline.spec.bins,
                asked: plan.build.bins,
            });
        }
        let mut baseline = baseline.select(&plan.selection)?;
        plan.constrain(&mut baseline.spec);
        return Ok(baseline);
    }
    let schema = read_schema(path, plan.reference_sql().as_deref()).await?;
    let (mut spec, _) = Baseline::spec_for(&schema, path, &plan.selection, plan.build)?;
    plan.constrain(&mut spec);
    let profile = read_reference(path.into(), format, plan.reference_sql(), Arc::new(spec.clone())).await?;
    Ok(Baseline::from_profile(spec, profile, path, &plan.feature_bins))
}

async fn join<T>(handle: tokio::task::JoinHandle<Result<T, CheckError>>) -> Result<T, CheckError> {
    handle.await.unwrap_or_else(|e| Err(CheckError::Internal(e.to_string())))
}

async fn read_reference(
    path: PathBuf,
    format: Format,
    filter: Option<String>,
    spec: Arc<ProfileSpec>,
) -> Result<Profile, CheckError> {
    let started = std::time::Instant::now();
    let (profile, rows) = profile_file(&path, format, filter.as_deref(), &spec, |_| Ok::<_, CheckError>(())).await?;
    tracing::debug!(path = %path.display(), elapsed = ?started.elapsed(), "reference profiled");
    if rows == 0 {
        return Err(CheckError::EmptyReference { path });
    }
    Ok(profile)
}

/// The reference's file and all of its columns (features or not), for matching the current
/// data's columns against.
struct ReferenceColumns {
    path: PathBuf,
    columns: Vec<String>,
}

async fn read_and_profile(
    path: PathBuf,
    format: Format,
    spec: Arc<ProfileSpec>,
    reference: ReferenceColumns,
    plan: Plan,
) -> Result<(Profile, u64), CheckError> {
    let started = std::time::Instant::now();
    let validate = |schema: &Schema| check_columns(&spec, &reference, &path, schema, &plan);
    let sql = plan.current_sql();
    let (profile, rows) = profile_file(&path, format, sql.as_deref(), &spec, validate).await?;
    tracing::debug!(path = %path.display(), elapsed = ?started.elapsed(), "current profiled");
    if rows == 0 {
        return Err(CheckError::EmptyCurrent { path });
    }
    Ok((profile, rows))
}

fn check_columns(
    spec: &ProfileSpec,
    reference: &ReferenceColumns,
    path: &Path,
    schema: &Schema,
    plan: &Plan,
) -> Result<(), CheckError> {
    for f in &spec.features {
        let Some(field) = schema.fields().iter().find(|c| c.name() == &f.name) else {
            return Err(CheckError::MissingInCurrent {
                path: path.into(),
                column: f.name.clone(),
                reference: reference.path.clone(),
            });
        };
        let inferred = FeatureKind::infer(field.data_type());
        let declared = plan.selection.declared.contains_key(&f.name);
        if !declared && inferred != Some(f.kind) && field.data_type() != &datafusion::arrow::datatypes::DataType::Null {
            return Err(CheckError::TypeDiffers {
                path: path.into(),
                column: f.name.clone(),
                found: inferred.map_or_else(|| field.data_type().to_string(), |k| k.as_str().to_string()),
                expected: f.kind.as_str(),
                reference: reference.path.clone(),
            });
        }
    }
    if plan.strict_columns {
        for field in schema.fields() {
            let name = field.name();
            let excluded = plan.selection.exclude.contains(name)
                || (!plan.selection.columns.is_empty() && !plan.selection.columns.contains(name));
            if !excluded && !reference.columns.contains(name) {
                return Err(CheckError::MissingInReference {
                    path: path.into(),
                    column: name.clone(),
                    reference: reference.path.clone(),
                });
            }
        }
    }
    Ok(())
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
            let distribution = Some(crate::runtime::html::Distribution::of(spec.kind, reference, current));
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
        .filter(|(_, p)| p.categories.contains_key(crate::engine::profile::OTHER_CATEGORY))
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
    pub impact: Vec<crate::engine::impact::Impact>,
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
    pub distribution: Option<crate::runtime::html::Distribution>,
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

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A self-contained HTML page (see [`crate::runtime::html`]) for people and CI artefacts.
    pub fn to_html(&self) -> String {
        crate::runtime::html::render(self, "")
    }

    /// A table for people: verdict first, drifted features first, one line per test.
    pub fn to_table(&self, colour: bool) -> String {
        let paint = |code: &str, s: &str| {
            if colour { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
        };
        let mut out = String::new();
        let d = &self.drift;
        let verdict = if d.detected { paint("1;31", "DATASET DRIFT") } else { paint("1;32", "no dataset drift") };
        let _ = writeln!(
            out,
            "{}: {verdict} — {} of {} features drifted ({:.1}%, threshold {:.0}%)",
            self.model,
            d.drifted_features,
            d.total_features,
            d.share * 100.0,
            d.drift_share * 100.0
        );
        let _ = writeln!(out, "reference {} rows, current {} rows\n", self.reference.rows, self.current.rows);
        let header = format!(
            "{:<24} {:<12} {:<14} {:>12} {:>11} {:>9} {:>7}  {}",
            "feature", "type", "test", "statistic", "p-value", "threshold", "nulls", "verdict"
        );
        let _ = writeln!(out, "{}", paint("1", &header));
        let mut order: Vec<&FeatureReport> = self.features.iter().collect();
        order.sort_by_key(|f| !f.drift); // stable: drifted first, otherwise as in the data
        for f in order {
            let nulls = f.quality.null_rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
            if f.tests.is_empty() {
                let _ = writeln!(
                    out,
                    "{:<24} {:<12} {:<14} {:>12} {:>11} {:>9} {:>7}  {}",
                    f.name,
                    f.kind.as_str(),
                    "-",
                    "-",
                    "-",
                    "-",
                    nulls,
                    paint("2", "no test applies")
                );
            }
            for (i, t) in f.tests.iter().enumerate() {
                let name = if i == 0 { f.name.as_str() } else { "" };
                let kind = if i == 0 { f.kind.as_str() } else { "" };
                let stat = t.statistic.map_or("-".into(), fmt_num);
                let p = t.p_adjusted.or(t.p_value).map_or("-".into(), fmt_num);
                let verdict = match (&t.reason, t.drift) {
                    (Some(reason), _) => paint("2", &format!("skipped: {reason}")),
                    (None, true) => paint("1;31", "DRIFT"),
                    (None, false) => paint("32", "ok"),
                };
                let nulls = if i == 0 { nulls.as_str() } else { "" };
                let _ = writeln!(
                    out,
                    "{:<24} {:<12} {:<14} {:>12} {:>11} {:>9} {:>7}  {}",
                    truncate(name, 24),
                    kind,
                    t.test.name(),
                    stat,
                    p,
                    fmt_num(t.threshold),
                    nulls,
                    verdict
                );
            }
        }
        let p = &self.performance;
        if let Some(estimated) = p.estimated {
            let how = if estimated { "estimated without labels (CBPE, ±3 standard errors)" } else { "realised" };
            let _ = writeln!(out, "\n{} on {} rows, {how}", paint("1", "performance"), p.rows.unwrap_or(0));
            for (name, value) in &p.metrics {
                let value = value.map_or("undefined".to_string(), fmt_num);
                match p.sampling_error.get(name) {
                    Some(se) => {
                        let _ = writeln!(out, "  {name:<10} {value:>12}  ± {}", fmt_num(3.0 * se));
                    }
                    None => {
                        let _ = writeln!(out, "  {name:<10} {value:>12}");
                    }
                }
            }
        }
        out
    }
}

/// A number for people: 4 decimals, or scientific when tiny or huge.
pub(crate) fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) { format!("{x:.3e}") } else { format!("{x:.4}") }
}

/// At most `width` characters, the last one `…` when cut.
pub(crate) fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}
