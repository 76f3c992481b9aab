//! `[[model]]`: one monitored model — its baseline, features, tests and thresholds, the
//! event paths it reads, its window and its performance settings.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::alerts::{self, RuleSource};
use super::quality::{self, ModelLabels, ModelQuality};
use super::segments::{self, DerivedFeature, Segment};
use super::{Pos, Reporter, duration_of, positive_of, suggestion};
use crate::engine::decode::{FieldPath, TimestampFormat};
use crate::engine::profile::FeatureKind;
use crate::engine::rules::Rule;
use crate::engine::stats::{KsMethod, TestChoice, TestKind, TestOptions};
use crate::engine::window::WindowSpec;

/// One monitored model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model identifier, as in the events' `model_id`; also the `model` metric label.
    pub id: Spanned<String>,
    /// Reference data: a Parquet, CSV or NDJSON file, or a baseline artefact built with
    /// `driftwatch baseline build`. Relative paths are relative to this file.
    pub baseline: Spanned<String>,
    /// Optional SQL query over the table `reference` that selects or derives the reference
    /// rows, e.g. `SELECT * FROM reference WHERE country <> 'XX'`. Only queries are allowed.
    pub filter: Option<Spanned<String>>,
    /// Tests run on every feature they apply to (default `["auto"]`).
    pub tests: Option<Spanned<Vec<Spanned<String>>>>,
    /// Thresholds per test name, replacing the defaults (p-value tests 0.05, distances 0.1).
    #[serde(default)]
    pub thresholds: BTreeMap<Spanned<String>, Spanned<f64>>,
    /// Bins for binned tests on numerical features (reference quantiles; default 10).
    pub bins: Option<Spanned<i64>>,
    /// Share of drifted features at or above which the data set has drifted (default 0.5).
    pub drift_share: Option<Spanned<f64>>,
    /// Benjamini–Hochberg false-discovery rate applied across features' p-values (off by
    /// default).
    pub fdr: Option<Spanned<f64>>,
    /// KS p-value method: `auto` (exact up to 10 000 values per side), `exact` or `asymp`.
    pub ks_method: Option<KsMethod>,
    /// Columns of the baseline that are never features (ids, timestamps).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Values kept per feature before the sample becomes a uniform reservoir (default 2 000 000).
    pub max_samples: Option<Spanned<i64>>,
    /// Distinct categories tracked per feature before the rest count as `__other__`
    /// (default 1000).
    pub max_categories: Option<Spanned<i64>>,
    /// Features to monitor. When absent, every baseline column except `exclude`.
    #[serde(default)]
    pub feature: Vec<FeatureConfig>,
    /// Kafka topics carrying this model's events.
    #[serde(default)]
    pub topics: Vec<Spanned<String>>,
    /// Field paths in the events.
    pub events: Option<EventsConfig>,
    /// Event-time windows.
    pub window: Option<WindowConfig>,
    /// Alert rules.
    #[serde(default)]
    pub rule: Vec<alerts::RuleConfig>,
    /// Label-free performance estimation from the model's scores.
    pub performance: Option<PerformanceConfig>,
    /// Event-level quality checks.
    pub quality: Option<quality::QualityConfig>,
    /// Ground truth on its own topics.
    pub labels: Option<quality::LabelsConfig>,
    /// Features computed by SQL expressions.
    #[serde(default)]
    pub derived: Vec<segments::DerivedConfig>,
    /// Slices of the traffic monitored on their own.
    #[serde(default)]
    pub segment: Vec<segments::SegmentConfig>,
}

/// One monitored feature.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Column name in the baseline.
    pub name: Spanned<String>,
    /// `numerical` or `categorical`; inferred from the baseline's column type when absent.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Tests for this feature, replacing the model's list.
    pub tests: Option<Spanned<Vec<Spanned<String>>>>,
    /// Thresholds for this feature, on top of the model's.
    #[serde(default)]
    pub thresholds: BTreeMap<Spanned<String>, Spanned<f64>>,
    /// Bins for this feature's binned tests, replacing the model's.
    pub bins: Option<Spanned<i64>>,
    /// Path of this feature in an event (default: the model's `events.features` object, then
    /// `name`), e.g. `"payload.income"`.
    pub field: Option<Spanned<String>>,
    /// Declared valid range (numerical): values outside count towards `out_of_range_rate`
    /// instead of the reference's min/max.
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    /// Declared constraints (categorical): values breaking one count towards
    /// `constraint_violation_rate`.
    pub allowed: Option<Spanned<Vec<Spanned<String>>>>,
    /// A regular expression the whole value must match.
    pub pattern: Option<Spanned<String>>,
    pub min_length: Option<Spanned<i64>>,
    pub max_length: Option<Spanned<i64>>,
}

/// `[model.events]`: where an event keeps its fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Path of the model id (default "model_id").
    pub model_id: Option<Spanned<String>>,
    /// Path of the event time (default "timestamp").
    pub timestamp: Option<Spanned<String>>,
    /// `auto` (RFC 3339 string or epoch milliseconds), `rfc3339`, `epoch_ms`, `epoch_s`, or
    /// `kafka` (the message timestamp only).
    pub timestamp_format: Option<Spanned<String>>,
    /// Object holding the features (default "features"; "" for top-level fields).
    pub features: Option<Spanned<String>>,
    /// Path of the event id (default "event_id"): duplicates and the ground-truth join.
    pub event_id: Option<Spanned<String>>,
}

/// `[model.window]`: event-time windows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length (default "5m").
    pub size: Option<Spanned<String>>,
    /// Distance between window starts (default: `size`, tumbling windows).
    pub slide: Option<Spanned<String>>,
    /// How far behind the newest event a window stays open for late events (default "0s").
    pub allowed_lateness: Option<Spanned<String>>,
    /// Wall-clock time without events after which open windows close (default: `size`).
    pub idle_timeout: Option<Spanned<String>>,
    /// Windows with fewer events are reported as `insufficient_data`, not tested (default 0).
    pub min_events: Option<Spanned<i64>>,
    /// Events a window normally holds: its `volume` quality is events / expected_events.
    pub expected_events: Option<Spanned<i64>>,
}

/// `[model.performance]`: estimate classification performance per window without labels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceConfig {
    /// The score feature (probability of class 1): a numerical feature of the model, read
    /// from events like any feature and, with `label`, from the baseline to calibrate.
    pub score: Spanned<String>,
    /// Baseline column with the ground truth (0/1) the scores are calibrated against.
    pub label: Spanned<String>,
    /// Score at or above which the model predicts class 1 (default 0.5).
    pub threshold: Option<Spanned<f64>>,
    /// `classification` (default) or `regression`: then `score` is the predicted value and
    /// `label` the true one; performance is realised from labels only (no estimation).
    pub task: Option<Spanned<String>>,
}

/// A model after validation, with everything resolved and typed.
#[derive(Clone, Debug)]
pub struct Model {
    pub id: String,
    pub baseline: PathBuf,
    pub baseline_pos: Pos,
    pub filter_pos: Pos,
    pub filter: Option<String>,
    pub tests: Vec<TestChoice>,
    pub options: TestOptions,
    pub bins: usize,
    pub drift_share: f64,
    pub fdr: Option<f64>,
    pub exclude: Vec<(String, Pos)>,
    pub max_samples: usize,
    pub max_categories: usize,
    /// Explicit features; empty means all baseline columns except `exclude`.
    pub features: Vec<Feature>,
    pub topics: Vec<String>,
    pub events: Events,
    pub window: WindowSpec,
    /// Alert rules, from `[[model.rule]]` and the rule files.
    pub rules: Vec<crate::engine::rules::Rule>,
    /// Where each rule was written (same order as `rules`).
    pub rule_sources: Vec<RuleSource>,
    pub performance: Option<ModelPerformance>,
    pub quality: ModelQuality,
    pub labels: Option<ModelLabels>,
    pub derived: Vec<DerivedFeature>,
    pub segments: Vec<Segment>,
}

/// A feature after validation.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: String,
    pub pos: Pos,
    pub kind: Option<FeatureKind>,
    pub tests: Option<Vec<TestChoice>>,
    pub options: TestOptions,
    pub bins: Option<usize>,
    /// Explicit path in the event, replacing `events.features` + `name`.
    pub field: Option<FieldPath>,
    pub declared: Option<crate::engine::profile::Declared>,
}

/// Where a model's events keep their fields.
#[derive(Clone, Debug)]
pub struct Events {
    pub model_id: FieldPath,
    pub timestamp: FieldPath,
    pub timestamp_format: TimestampFormat,
    /// Prefix of feature paths (empty: top level).
    pub features: FieldPath,
    pub event_id: FieldPath,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            model_id: FieldPath::parse("model_id"),
            timestamp: FieldPath::parse("timestamp"),
            timestamp_format: TimestampFormat::Auto,
            features: FieldPath::parse("features"),
            event_id: FieldPath::parse("event_id"),
        }
    }
}

/// `[model.performance]` after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPerformance {
    pub score: String,
    pub label: String,
    pub threshold: f64,
    pub task: crate::engine::plan::Task,
    pub pos: Pos,
    pub label_pos: Pos,
}

/// A feature's declared `type`, if given and valid.
pub(super) fn kind_of(r: &mut Reporter, k: Option<&Spanned<String>>) -> Option<FeatureKind> {
    let k = k?;
    match k.get_ref().as_str() {
        "numerical" => Some(FeatureKind::Numerical),
        "categorical" => Some(FeatureKind::Categorical),
        other => {
            let hint = suggestion(other, &["numerical", "categorical"]);
            r.at(k.span(), format!("unknown feature type \"{other}\"{hint}"));
            None
        }
    }
}

pub(super) fn tests_of(r: &mut Reporter, spanned: Option<&Spanned<Vec<Spanned<String>>>>) -> Option<Vec<TestChoice>> {
    let spanned = spanned?;
    let list = spanned.get_ref();
    let names = TestChoice::names();
    let mut out = Vec::new();
    for s in list {
        match TestChoice::parse(s.get_ref()) {
            Some(t) => out.push(t),
            None => r.at(s.span(), format!("unknown test \"{}\"{}", s.get_ref(), suggestion(s.get_ref(), &names))),
        }
    }
    if list.is_empty() {
        // An empty list would silently monitor nothing.
        r.at(spanned.span(), "the `tests` list is empty; remove it to use the default [\"auto\"]");
    }
    Some(out)
}

pub(super) fn thresholds_of(
    r: &mut Reporter,
    map: &BTreeMap<Spanned<String>, Spanned<f64>>,
) -> BTreeMap<TestKind, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        // Unknown names were reported with the other unknown keys.
        let Some(test) = TestKind::parse(k.get_ref()) else {
            continue;
        };
        let value = *v.get_ref();
        let ok = if test.uses_p_value() { value > 0.0 && value < 1.0 } else { value.is_finite() && value > 0.0 };
        if !ok {
            let valid = if test.uses_p_value() { "a p-value threshold in (0, 1)" } else { "a positive distance" };
            r.at(v.span(), format!("threshold for \"{test}\" must be {valid}, got {value}"));
        }
        out.insert(test, value);
    }
    out
}

pub(super) fn bins_of(r: &mut Reporter, b: &Spanned<i64>) -> usize {
    let v = *b.get_ref();
    if !(2..=1000).contains(&v) {
        r.at(b.span(), format!("bins must be between 2 and 1000, got {v}"));
        return crate::engine::profile::DEFAULT_BINS;
    }
    v as usize
}

pub(super) fn path_of(r: &mut Reporter, value: &Spanned<String>) -> FieldPath {
    let path = FieldPath::parse(value.get_ref());
    if path.segments().iter().any(|s| s.is_empty()) && !value.get_ref().is_empty() {
        r.at(
            value.span(),
            format!(
                "\"{}\" is not a field path; write names joined by dots, e.g. \"features.income\"",
                value.get_ref()
            ),
        );
    }
    path
}

pub(super) fn events_of(r: &mut Reporter, e: Option<&EventsConfig>) -> Events {
    let mut out = Events::default();
    let Some(e) = e else {
        return out;
    };
    for (value, slot) in
        [(&e.model_id, &mut out.model_id), (&e.timestamp, &mut out.timestamp), (&e.event_id, &mut out.event_id)]
    {
        if let Some(v) = value {
            if v.get_ref().is_empty() {
                r.at(v.span(), "the path must not be empty");
            }
            *slot = path_of(r, v);
        }
    }
    if let Some(v) = &e.features {
        out.features = if v.get_ref().is_empty() { FieldPath::default() } else { path_of(r, v) };
    }
    if let Some(v) = &e.timestamp_format {
        match TimestampFormat::parse(v.get_ref()) {
            Some(f) => out.timestamp_format = f,
            None => r.at(
                v.span(),
                format!(
                    "unknown timestamp_format \"{}\"{}",
                    v.get_ref(),
                    suggestion(v.get_ref(), TimestampFormat::NAMES)
                ),
            ),
        }
    }
    out
}

pub(super) fn window_of(r: &mut Reporter, w: Option<&WindowConfig>) -> WindowSpec {
    let mut spec = WindowSpec::default();
    let Some(w) = w else {
        return spec;
    };
    let size = duration_of(r, w.size.as_ref(), spec.size);
    if let Some(v) = &w.size
        && size.as_millis() == 0
    {
        r.at(v.span(), "window size must be at least 1ms");
    }
    spec.size = size.max(Duration::from_millis(1));
    spec.slide = duration_of(r, w.slide.as_ref(), spec.size);
    if let Some(v) = &w.slide
        && (spec.slide.as_millis() == 0 || spec.slide > spec.size)
    {
        r.at(
            v.span(),
            format!(
                "slide must be between 1ms and the window size ({})",
                w.size.as_ref().map_or("5m", |s| s.get_ref())
            ),
        );
        spec.slide = spec.size;
    }
    spec.allowed_lateness = duration_of(r, w.allowed_lateness.as_ref(), spec.allowed_lateness);
    spec.idle_timeout = duration_of(r, w.idle_timeout.as_ref(), spec.size);
    if let Some(v) = &w.min_events {
        if *v.get_ref() < 0 {
            r.at(v.span(), format!("min_events must be 0 or more, got {}", v.get_ref()));
        }
        spec.min_events = (*v.get_ref()).max(0) as u64;
    }
    if w.expected_events.is_some() {
        spec.expected_events = Some(positive_of(r, &w.expected_events, "expected_events", 1) as u64);
    }
    spec
}

/// The meaning of one `[[model]]` table: every value checked (findings go to `r`), defaults
/// filled in. `path` is the agent file: relative paths start beside it, and its own rules
/// are from it.
pub(super) fn model_of(r: &mut Reporter, m: &ModelConfig, path: &Path) -> Model {
    let base = path.parent().unwrap_or(Path::new("."));
    if m.id.get_ref().trim().is_empty() {
        r.at(m.id.span(), "model id must not be empty");
    }
    let tests = tests_of(r, m.tests.as_ref()).unwrap_or_else(|| vec![TestChoice::Auto]);
    let options =
        TestOptions { thresholds: thresholds_of(r, &m.thresholds), ks_method: m.ks_method.unwrap_or_default() };
    let bins = m.bins.as_ref().map(|b| bins_of(r, b)).unwrap_or(crate::engine::profile::DEFAULT_BINS);
    let drift_share = m.drift_share.as_ref().map_or(0.5, |s| {
        let v = *s.get_ref();
        if !(v > 0.0 && v <= 1.0) {
            r.at(s.span(), format!("drift_share must be in (0, 1], got {v}"));
        }
        v
    });
    let fdr = m.fdr.as_ref().map(|s| {
        let v = *s.get_ref();
        if !(v > 0.0 && v < 1.0) {
            r.at(s.span(), format!("fdr must be in (0, 1), got {v}"));
        }
        v
    });
    let max_samples = positive_of(r, &m.max_samples, "max_samples", crate::engine::profile::DEFAULT_MAX_SAMPLES);
    let max_categories =
        positive_of(r, &m.max_categories, "max_categories", crate::engine::profile::DEFAULT_MAX_CATEGORIES);
    if let Some(f) = &m.filter
        && f.get_ref().trim().is_empty()
    {
        r.at(f.span(), "filter is empty: remove it or write a query such as `SELECT * FROM reference`");
    }
    let features = features_of(r, m, &options);
    let (rules, rule_sources) = rules_of(r, m, &features, path);
    let performance = m.performance.as_ref().map(|p| performance_of(r, m, p, &features));
    let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
    let quality = quality::quality_of(r, m.quality.as_ref(), &names);
    let labels = m.labels.as_ref().map(|l| quality::labels_of(r, l, m.performance.is_some()));
    let derived = segments::derived_of(r, &m.derived, &names);
    let mut with_derived = names.clone();
    if !names.is_empty() {
        with_derived.extend(derived.iter().map(|d| d.name.clone()));
    }
    let segments = segments::segments_of(r, &m.segment, &with_derived);
    let events = events_of(r, m.events.as_ref());
    let window = window_of(r, m.window.as_ref());
    let mut topics = Vec::new();
    for t in &m.topics {
        if t.get_ref().trim().is_empty() {
            r.at(t.span(), "topic names must not be empty");
        }
        topics.push(t.get_ref().clone());
    }
    let baseline_pos = r.pos(m.baseline.span());
    let filter_pos = m.filter.as_ref().map(|f| r.pos(f.span())).unwrap_or_default();
    let exclude = m.exclude.iter().map(|e| (e.get_ref().clone(), r.pos(e.span()))).collect();
    Model {
        id: m.id.get_ref().clone(),
        baseline: base.join(m.baseline.get_ref()),
        baseline_pos,
        filter_pos,
        filter: m.filter.as_ref().map(|f| f.get_ref().clone()),
        tests,
        options,
        bins,
        drift_share,
        fdr,
        exclude,
        max_samples,
        max_categories,
        features,
        topics,
        events,
        window,
        rules,
        rule_sources,
        performance,
        quality,
        labels,
        derived,
        segments,
    }
}

/// The `[[model.feature]]` tables, each with the model's test options under its own.
fn features_of(r: &mut Reporter, m: &ModelConfig, options: &TestOptions) -> Vec<Feature> {
    let mut names = HashSet::new();
    let mut features = Vec::new();
    for f in &m.feature {
        if !names.insert(f.name.get_ref().clone()) {
            r.at(f.name.span(), format!("feature \"{}\" is listed twice", f.name.get_ref()));
        }
        if m.exclude.iter().any(|e| e.get_ref() == f.name.get_ref()) {
            r.at(f.name.span(), format!("feature \"{}\" is also in `exclude`", f.name.get_ref()));
        }
        let kind = kind_of(r, f.kind.as_ref());
        let ftests = tests_of(r, f.tests.as_ref());
        let mut fopts = options.clone();
        fopts.thresholds.extend(thresholds_of(r, &f.thresholds));
        let fbins = f.bins.as_ref().map(|b| bins_of(r, b));
        if let (Some(kind), Some(list)) = (kind, &ftests) {
            for (t, s) in list.iter().zip(f.tests.iter().flat_map(|l| l.get_ref())) {
                if let TestChoice::Test(t) = t
                    && !t.applies_to(kind)
                {
                    r.at(s.span(), format!("test \"{t}\" does not apply to a {} feature", kind.as_str()));
                }
            }
        }
        features.push(Feature {
            name: f.name.get_ref().clone(),
            pos: r.pos(f.name.span()),
            kind,
            tests: ftests,
            options: fopts,
            bins: fbins,
            field: f.field.as_ref().map(|p| path_of(r, p)),
            declared: quality::declared_of(r, f, kind),
        });
    }
    features
}

/// The model's own `[[model.rule]]` tables, checked against its features and its
/// performance settings; each with where its features were named.
fn rules_of(r: &mut Reporter, m: &ModelConfig, features: &[Feature], path: &Path) -> (Vec<Rule>, Vec<RuleSource>) {
    let known: Vec<(String, Option<FeatureKind>)> = features.iter().map(|f| (f.name.clone(), f.kind)).collect();
    let mut rules = Vec::new();
    let mut rule_sources = Vec::new();
    let mut rule_names = HashSet::new();
    for rc in &m.rule {
        if let Some(v) = &rc.model {
            r.at(v.span(), "`model` belongs in rule files; a [[model.rule]] watches the model it is in");
        }
        if !rule_names.insert(rc.name.get_ref().clone()) {
            r.at(rc.name.span(), format!("rule \"{}\" is defined twice in this model", rc.name.get_ref()));
        }
        let (rule, names) = alerts::rule_of(r, rc, &known);
        if let (crate::engine::rules::Target::Performance { .. }, None, Some(v)) =
            (&rule.target, &m.performance, &rc.performance)
        {
            r.at(v.span(), "a performance rule needs [model.performance] (the score feature and the baseline's label)");
        }
        let regression =
            m.performance.as_ref().and_then(|p| p.task.as_ref()).is_some_and(|t| t.get_ref() == "regression");
        if let (crate::engine::rules::Target::Performance { metric, realised }, Some(v)) =
            (&rule.target, &rc.performance)
        {
            let fits = if regression {
                crate::engine::performance::REGRESSION.contains(&metric.as_str())
            } else {
                crate::engine::performance::CLASSIFICATION.contains(&metric.as_str())
            };
            let known = crate::engine::performance::CLASSIFICATION
                .iter()
                .chain(&crate::engine::performance::REGRESSION)
                .any(|k| k == metric);
            if m.performance.is_some() && known && !fits {
                let task = if regression { "regression" } else { "classification" };
                r.at(v.span(), format!("\"{metric}\" is not a {task} metric of this model"));
            } else if regression && !realised {
                r.at(v.span(), "regression performance is realised from labels only: add `value = \"realised\"`");
            }
        }
        rules.push(rule);
        rule_sources.push(RuleSource { file: path.into(), names });
    }
    (rules, rule_sources)
}

/// `[model.performance]`: the score feature, the baseline's label, the decision threshold
/// and the task.
fn performance_of(r: &mut Reporter, m: &ModelConfig, p: &PerformanceConfig, features: &[Feature]) -> ModelPerformance {
    let threshold = p.threshold.as_ref().map_or(0.5, |t| {
        let v = *t.get_ref();
        if !(v > 0.0 && v < 1.0) {
            r.at(t.span(), format!("threshold must be a score in (0, 1), got {v}"));
        }
        v
    });
    if m.exclude.iter().any(|e| e.get_ref() == p.score.get_ref()) {
        r.at(
            p.score.span(),
            format!("the score \"{}\" is excluded; performance needs it as a feature", p.score.get_ref()),
        );
    }
    if !features.is_empty() && !features.iter().any(|f| &f.name == p.score.get_ref()) {
        r.at(
            p.score.span(),
            format!("the score \"{}\" must be one of the model's [[model.feature]]s", p.score.get_ref()),
        );
    }
    if features.iter().any(|f| &f.name == p.label.get_ref()) {
        r.at(
            p.label.span(),
            format!("the label \"{}\" is ground truth, not a feature: remove its [[model.feature]]", p.label.get_ref()),
        );
    }
    let task = match p.task.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "classification")) => crate::engine::plan::Task::Classification,
        Some((_, "regression")) => crate::engine::plan::Task::Regression,
        Some((t, other)) => {
            r.at(t.span(), format!("unknown task \"{other}\"{}", suggestion(other, &["classification", "regression"])));
            crate::engine::plan::Task::Classification
        }
    };
    ModelPerformance {
        task,
        score: p.score.get_ref().clone(),
        label: p.label.get_ref().clone(),
        threshold,
        pos: r.pos(p.score.span()),
        label_pos: r.pos(p.label.span()),
    }
}
