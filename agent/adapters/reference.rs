//! Reading the reference and current data for a comparison through DataFusion: baselines
//! as the agent keeps them, current files profiled with the reference's spec, the rows the
//! start-up fits need (CBPE, drift impact, learned rule bands), and realised or estimated
//! performance of a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;

use crate::adapters::baseline::{BaselineError, Format, TABLE, profile_file, read_numbers, read_rows, read_schema};
use crate::adapters::config::{Model, ModelPerformance};
use crate::engine::impact::{Column as ImpactColumn, ImpactModel};
use crate::engine::performance::Cbpe;
use crate::engine::plan::{BuildOptions, FeatureSelection, PerformanceSpec, Plan, Task};
use crate::engine::profile::{Baseline, FeatureKind, Profile, ProfileSpec};
use crate::engine::report::{Performance, Quality};

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

impl Plan {
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
        let inner = self.filter.clone().unwrap_or_else(|| format!("SELECT * FROM {}", TABLE));
        Some(format!("SELECT *, {} FROM ({inner}) AS {}", self.derived_columns(), TABLE))
    }

    /// The query current data is read through: the derived features added as columns.
    pub fn current_sql(&self) -> Option<String> {
        (!self.derived.is_empty()).then(|| format!("SELECT *, {} FROM {}", self.derived_columns(), TABLE))
    }

    fn derived_columns(&self) -> String {
        self.derived
            .iter()
            .map(|(name, sql)| format!("({sql}) AS \"{}\"", name.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl PerformanceSpec {
    /// `[model.performance]`: the score feature (classification) or predicted value
    /// (regression) and the baseline's label.
    pub fn from_model(p: &ModelPerformance) -> PerformanceSpec {
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
pub(crate) async fn reference_rows(reference: &Path, plan: &Plan) -> Result<Vec<RecordBatch>, CheckError> {
    Ok(read_rows(reference, plan.reference_sql().as_deref()).await?)
}

/// Fits the drift → impact model on the reference's rows (`batches`, from
/// [`reference_rows`]): each row's chance of being predicted right, from its calibrated
/// score, per bin of every feature of `spec`. Rows without a finite score are left out.
pub(crate) fn fit_impact(
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
pub(crate) async fn learn_bands(
    rules: &mut [crate::engine::rules::Rule],
    reference: &Path,
    batches: &[RecordBatch],
    plan: &Plan,
    baseline: &mut Baseline,
    performance: Option<&ModelPerformance>,
) -> Result<(), CheckError> {
    use crate::engine::rules::{DATASET_FEATURE, Target};
    if rules.iter().all(|r| r.learn.is_none() && r.margin.is_none()) {
        return Ok(());
    }
    let from_labels = |r: &crate::engine::rules::Rule| {
        (r.learn.is_some() || r.margin.is_some()) && matches!(r.target, Target::Performance { .. })
    };
    if let Some(rule) = rules.iter().find(|r| from_labels(r))
        && performance.is_some_and(|p| p.task == Task::Regression)
    {
        return Err(CheckError::Usage(format!(
            "rule \"{}\": `learn` and `baseline_margin` on regression metrics are not supported; give `warn`",
            rule.name
        )));
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
                let worse =
                    if rule.direction() == crate::engine::rules::Direction::Below { v - margin } else { v + margin };
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
pub(crate) async fn fit_cbpe(
    reference: &Path,
    filter: Option<&str>,
    spec: &PerformanceSpec,
) -> Result<Cbpe, CheckError> {
    let r = read_outputs(reference, filter, spec, true).await?;
    if r.labels.is_empty() {
        return Err(CheckError::Data(BaselineError::Read {
            path: reference.into(),
            message: format!("no rows with both a score and a label (\"{}\")", spec.label),
        }));
    }
    Ok(Cbpe::fit(&r.scores, &r.predicted, &r.labels))
}

/// The `performance` object: realised metrics when the current data has the label column,
/// CBPE estimates (fitted on the reference's labels and scores) when it has not.
pub(crate) async fn performance(
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
pub(crate) async fn load_baseline(path: &Path, plan: &Plan) -> Result<Baseline, CheckError> {
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

pub(crate) async fn join<T>(handle: tokio::task::JoinHandle<Result<T, CheckError>>) -> Result<T, CheckError> {
    handle.await.unwrap_or_else(|e| Err(CheckError::Internal(e.to_string())))
}

pub(crate) async fn read_reference(
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
pub(crate) struct ReferenceColumns {
    pub path: PathBuf,
    pub columns: Vec<String>,
}

pub(crate) async fn read_and_profile(
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
