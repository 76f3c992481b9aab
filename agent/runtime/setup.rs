//! What a model needs before its first event: its baseline loaded (or profiled) with the
//! plan's filter and derived features, its segment slices' references, the start-up fits
//! (CBPE, drift impact, learned rule bands), and which topics the configuration reads and
//! which models read each. `run` calls it at start-up, `reload` for each changed model.

use std::time::Instant;

use crate::adapters::config::{Config, Model};
use crate::adapters::reference::{CheckError, fit_cbpe, fit_impact, learn_bands, load_baseline, reference_rows};
use crate::engine::evaluate::SliceSetup;
use crate::engine::plan::{PerformanceSpec, Plan};
use crate::runtime::pipeline::ModelSetup;

/// A model could not be made ready (fix its baseline, filter, columns or segments).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("model \"{model}\"{part}: {source}")]
    Reference { model: String, part: &'static str, source: CheckError },
    #[error(
        "model \"{model}\": [[model.segment]]: segment \"{segment}\": column \"{column}\" must be a categorical feature of the model (declare its type, or slice with `where`)"
    )]
    SegmentColumn { model: String, segment: String, column: String },
    #[error("model \"{model}\": [[model.segment]]: slice \"{slice}\": {source}")]
    Slice { model: String, slice: String, source: CheckError },
}

/// A reference error of model `m`, in the part of its setup that `part` names.
fn failed(m: &Model, part: &'static str) -> impl FnOnce(CheckError) -> SetupError {
    let model = m.id.clone();
    move |source| SetupError::Reference { model, part, source }
}

/// Loads the baseline of every model.
pub async fn load_models(config: &Config) -> Result<Vec<ModelSetup>, SetupError> {
    let mut setups = Vec::new();
    for m in &config.models {
        setups.push(load_model(m).await?);
    }
    Ok(setups)
}

/// Loads a model's baseline and fits what is fitted on it (performance estimation, drift
/// impact, segment references, learned rule bands).
pub async fn load_model(m: &Model) -> Result<ModelSetup, SetupError> {
    let plan = Plan::from_model(m);
    let started = Instant::now();
    let baseline = load_baseline(&m.baseline, &plan).await.map_err(failed(m, ""))?;
    tracing::info!(
        model = %m.id,
        baseline = %m.baseline.display(),
        rows = baseline.profile.rows(),
        features = baseline.spec.features.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "baseline loaded"
    );
    let cbpe = match &m.performance {
        Some(p) if p.task == crate::engine::plan::Task::Classification => {
            let spec = PerformanceSpec::from_model(p);
            let cbpe =
                fit_cbpe(&m.baseline, m.filter.as_deref(), &spec).await.map_err(failed(m, ": [model.performance]"))?;
            tracing::info!(
                model = %m.id,
                calibrated = cbpe.calibrator.is_some(),
                "performance estimation fitted on the baseline's scores and labels"
            );
            Some(cbpe)
        }
        _ => None,
    };
    let (segment_values, slices) = load_slices(m, &plan, &baseline).await?;
    // The fits that need the reference's rows share one read of them.
    let learns_quality =
        m.rules.iter().any(|r| r.learn.is_some() && matches!(r.target, crate::engine::rules::Target::Quality(_)));
    let rows = if cbpe.is_some() || learns_quality {
        reference_rows(&m.baseline, &plan).await.map_err(failed(m, ""))?
    } else {
        Vec::new()
    };
    let impact = match (&cbpe, &m.performance) {
        (Some(c), Some(p)) => Some(
            fit_impact(&m.baseline, &rows, &baseline.spec, c, &p.score, p.threshold)
                .map_err(failed(m, ": drift impact on the baseline"))?,
        ),
        _ => None,
    };
    let mut model = m.clone();
    let mut baseline = baseline;
    learn_bands(&mut model.rules, &m.baseline, &rows, &plan, &mut baseline, m.performance.as_ref())
        .await
        .map_err(failed(m, ": learning rule bands from the baseline"))?;
    Ok(ModelSetup { model, baseline, plan, cbpe, impact, segment_values, slices })
}

/// The values each column segment keeps apart (the baseline's most frequent, `max_values`
/// of them) and one reference per segment slice, read through the model's query narrowed
/// to the slice's rows. A slice of values the baseline lacks (an empty `__other__`) has no
/// reference and is not compared; an empty predicate slice is an error.
async fn load_slices(
    m: &Model,
    plan: &Plan,
    baseline: &crate::engine::profile::Baseline,
) -> Result<(Vec<Vec<String>>, Vec<SliceSetup>), SetupError> {
    use crate::adapters::config::SegmentBy;
    let inner = plan.reference_sql().unwrap_or_else(|| format!("SELECT * FROM {}", crate::adapters::baseline::TABLE));
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let mut values_of = Vec::new();
    let mut slices = Vec::new();
    for segment in &m.segments {
        let mut conditions: Vec<(String, String, bool)> = Vec::new();
        match &segment.by {
            SegmentBy::Column { column, max_values } => {
                let at = baseline.spec.features.iter().position(|f| f.name == *column);
                let Some(i) =
                    at.filter(|&i| baseline.spec.features[i].kind == crate::engine::profile::FeatureKind::Categorical)
                else {
                    return Err(SetupError::SegmentColumn {
                        model: m.id.clone(),
                        segment: segment.name.clone(),
                        column: column.clone(),
                    });
                };
                let mut counts: Vec<(&String, &u64)> = baseline.profile.features[i]
                    .categories
                    .iter()
                    .filter(|(k, _)| k.as_str() != crate::engine::profile::OTHER_CATEGORY)
                    .collect();
                counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let values: Vec<String> = counts.into_iter().take(*max_values).map(|(k, _)| k.clone()).collect();
                let text = format!("CAST(\"{}\" AS VARCHAR)", column.replace('"', "\"\""));
                for v in &values {
                    conditions.push((format!("{}={v}", segment.name), format!("{text} = {}", quote(v)), true));
                }
                let listed = values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ");
                let other = if values.is_empty() {
                    "TRUE".to_string()
                } else {
                    format!("{text} IS NULL OR {text} NOT IN ({listed})")
                };
                conditions.push((format!("{}={}", segment.name, crate::engine::profile::OTHER_CATEGORY), other, false));
                values_of.push(values);
            }
            SegmentBy::Predicate(sql) => {
                conditions.push((segment.name.clone(), format!("({sql})"), true));
                values_of.push(Vec::new());
            }
        }
        for (name, condition, required) in conditions {
            let mut slice_plan = plan.clone();
            slice_plan.derived.clear();
            slice_plan.filter =
                Some(format!("SELECT * FROM ({inner}) AS {} WHERE {condition}", crate::adapters::baseline::TABLE));
            let reference = match load_baseline(&m.baseline, &slice_plan).await {
                Ok(b) => Some(b),
                Err(CheckError::EmptyReference { .. }) if !required => None,
                Err(source) => return Err(SetupError::Slice { model: m.id.clone(), slice: name, source }),
            };
            tracing::info!(model = %m.id, slice = %name, rows = reference.as_ref().map_or(0, |b| b.profile.rows()), "segment reference loaded");
            slices.push(SliceSetup { name, baseline: reference });
        }
    }
    Ok((values_of, slices))
}

/// Where a run's events come from; it decides the run's topics, whether partitions are
/// assigned by a broker and whether open windows close when the source ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    Kafka,
    Replay,
    Demo,
}

impl Feed {
    pub fn as_str(self) -> &'static str {
        match self {
            Feed::Kafka => "kafka",
            Feed::Replay => "replay",
            Feed::Demo => "demo",
        }
    }
}

/// The topics a configuration reads and who reads each: Kafka reads each model's topics,
/// then its label topics; replay and demo carry every model's predictions on one.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicTable {
    /// Prediction topics, then label topics.
    pub topics: Vec<String>,
    /// Per prediction topic: the ids of the models reading it.
    pub readers: Vec<Vec<String>>,
    /// Per label topic: the ids of the models reading it.
    pub label_readers: Vec<Vec<String>>,
}

impl TopicTable {
    pub fn of(config: &Config, feed: Feed) -> Result<TopicTable, String> {
        if feed != Feed::Kafka {
            return Ok(TopicTable {
                topics: vec![feed.as_str().to_string()],
                readers: vec![config.models.iter().map(|m| m.id.clone()).collect()],
                label_readers: Vec::new(),
            });
        }
        let (mut topics, readers) = topic_readers(config.models.iter().map(|m| (&m.id, m.topics.clone())));
        let (labels, label_readers) = topic_readers(
            config.models.iter().map(|m| (&m.id, m.labels.as_ref().map_or(Vec::new(), |l| l.topics.clone()))),
        );
        if let Some(t) = labels.iter().find(|t| topics.contains(t)) {
            return Err(format!("topic \"{t}\" carries both predictions and labels; labels need topics of their own"));
        }
        topics.extend(labels);
        Ok(TopicTable { topics, readers, label_readers })
    }
}

/// Distinct topics in first-seen order, each with the ids of the models that read it.
fn topic_readers<'a>(per_model: impl Iterator<Item = (&'a String, Vec<String>)>) -> (Vec<String>, Vec<Vec<String>>) {
    let mut topics: Vec<String> = Vec::new();
    let mut readers: Vec<Vec<String>> = Vec::new();
    for (id, list) in per_model {
        for t in list {
            match topics.iter().position(|x| *x == t) {
                Some(j) => readers[j].push(id.clone()),
                None => {
                    topics.push(t);
                    readers.push(vec![id.clone()]);
                }
            }
        }
    }
    (topics, readers)
}
