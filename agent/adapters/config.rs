//! The agent configuration file: `[[model]]` tables, each naming a baseline, its features,
//! tests and thresholds. Every field is documented in `docs/configuration.md`.
//!
//! Validation runs in phases and reports every error it finds at once, each as
//! `file:line:col: message`, with a suggestion where one exists:
//! 1. TOML syntax (all syntax errors the parser can recover from);
//! 2. structure: unknown keys anywhere (`did you mean "drift_share"?`), then field types;
//! 3. meaning: test names, threshold ranges, bins, duplicate model ids and features;
//! 4. optionally, against the baselines themselves: the files open, the SQL filter is a
//!    valid query, and every named feature is a column (`did you mean "income"?`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use std::time::Duration;

use crate::engine::decode::{FieldPath, TimestampFormat};
use crate::engine::profile::FeatureKind;
use crate::engine::stats::{KsMethod, TestChoice, TestKind, TestOptions};
use crate::engine::text::did_you_mean;
use crate::engine::window::WindowSpec;

mod alerts;
mod document;
mod quality;
mod segments;
pub use alerts::{DEFAULT_OUTBOX, Notify, RuleSource, Smtp, SmtpTls};
pub use quality::{ModelLabels, ModelQuality, Required};
pub use segments::{DerivedFeature, MAX_SEGMENT_VALUES, Segment, SegmentBy};

/// The agent file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Process-wide settings of `driftwatch run`.
    pub agent: Option<AgentSection>,
    /// Where events come from (`driftwatch run` needs one).
    pub source: Option<SourceConfig>,
    /// The monitored models.
    #[serde(default)]
    pub model: Vec<ModelConfig>,
    /// Where alert digests go.
    pub notify: Option<alerts::NotifyConfig>,
}

/// `[agent]`: process-wide settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Address of the HTTP server (`/metrics`, `/healthz`, `/readyz`, `/api/v1/status`).
    pub listen: Option<Spanned<String>>,
    /// How long a graceful shutdown may take before the agent exits anyway (default "30s").
    pub shutdown_timeout: Option<Spanned<String>>,
    /// Rule files (`[[rule]]` tables with `model`), relative to this file.
    #[serde(default)]
    pub rule_files: Vec<Spanned<String>>,
    /// How often the configuration's files are checked for changes (default "2s"; "0s": only
    /// SIGHUP reloads).
    pub watch_interval: Option<Spanned<String>>,
}

/// `[source]`: a Kafka consumer group or a replay of NDJSON events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `kafka` or `replay`.
    pub kind: Spanned<String>,
    /// Kafka: bootstrap servers, `host:port[,host:port]`.
    pub brokers: Option<Spanned<String>>,
    /// Kafka: consumer group (default "driftwatch").
    pub group_id: Option<Spanned<String>>,
    /// Kafka: client id (default "driftwatch").
    pub client_id: Option<Spanned<String>>,
    /// Kafka: this agent's static group member id (`group.instance.id`): a restarted agent
    /// takes its partitions back at once instead of after the session timeout. Default: the
    /// `DRIFTWATCH_INSTANCE_ID` environment variable (the DaemonSet sets the node name);
    /// without either, membership is dynamic. Unique per agent of a group.
    pub instance_id: Option<Spanned<String>>,
    /// Kafka: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<Spanned<String>>,
    /// Kafka: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<Spanned<String>>,
    /// Kafka: SASL user name.
    pub sasl_username: Option<Spanned<String>>,
    /// Kafka: environment variable holding the SASL password.
    pub sasl_password_env: Option<Spanned<String>>,
    /// Kafka: file holding the SASL password (a mounted Secret).
    pub sasl_password_file: Option<Spanned<String>>,
    /// Kafka: CA certificate file (PEM).
    pub ssl_ca: Option<Spanned<String>>,
    /// Kafka: client certificate file (PEM), for mutual TLS.
    pub ssl_cert: Option<Spanned<String>>,
    /// Kafka: client key file (PEM), for mutual TLS.
    pub ssl_key: Option<Spanned<String>>,
    /// Kafka: topic that receives bad events with the reason in the `driftwatch-reason` header.
    pub dead_letter_topic: Option<Spanned<String>>,
    /// Kafka: further librdkafka properties, passed through as written.
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<String>>,
    /// Replay: NDJSON file to read, or "-" for standard input.
    pub path: Option<Spanned<String>>,
    /// Replay: 0 reads as fast as possible; otherwise event time runs this many times faster
    /// than wall-clock time.
    pub speed: Option<Spanned<f64>>,
    /// Events decoded into one Arrow batch at most (default 8192).
    pub batch_rows: Option<Spanned<i64>>,
    /// Longest wait for a batch to fill before it is processed anyway (default "100ms").
    pub linger: Option<Spanned<String>>,
    /// Events larger than this many bytes are rejected as `too_large` (default 1 MiB).
    pub max_event_bytes: Option<Spanned<i64>>,
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

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
    }
}

/// Orders findings for people: the agent file first, then the rule files by name, each by
/// line and column.
pub fn sort_diagnostics(found: &mut [Diagnostic], main: &Path) {
    found.sort_by(|a, b| (a.file != main, &a.file, a.line, a.col).cmp(&(b.file != main, &b.file, b.line, b.col)));
}

/// Every problem found, in file order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects diagnostics with positions computed from byte spans.
struct Reporter<'a> {
    file: &'a Path,
    text: &'a str,
    out: Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn pos(&self, span: Range<usize>) -> Pos {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Pos { line, col }
    }

    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let Pos { line, col } = self.pos(span);
        self.out.push(Diagnostic { file: self.file.into(), line, col, message: message.into() });
    }
}

fn suggestion(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(s) => format!("; did you mean \"{s}\"?"),
        None => format!("; expected one of: {}", candidates.join(", ")),
    }
}

/// Where something was written in the configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
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

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub agent: Agent,
    /// `None` when the file has no `[source]` (enough for `check` and `validate`).
    pub source: Option<Source>,
    pub models: Vec<Model>,
    pub notify: Notify,
}

/// `[agent]` after validation.
#[derive(Clone, Debug)]
pub struct Agent {
    pub listen: std::net::SocketAddr,
    pub shutdown_timeout: Duration,
    pub rule_files: Vec<PathBuf>,
    /// Zero: the files are not watched (SIGHUP still reloads).
    pub watch_interval: Duration,
}

/// Default address of the HTTP server (the OpenTelemetry Prometheus exporter's port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

impl Default for Agent {
    fn default() -> Agent {
        Agent {
            listen: DEFAULT_LISTEN.parse().unwrap_or(([127, 0, 0, 1], 9464).into()),
            shutdown_timeout: Duration::from_secs(30),
            rule_files: Vec::new(),
            watch_interval: Duration::from_secs(2),
        }
    }
}

/// `[source]` after validation.
#[derive(Clone, Debug)]
pub struct Source {
    pub kind: SourceKind,
    pub batch_rows: usize,
    pub linger: Duration,
    pub max_event_bytes: usize,
}

#[derive(Clone, Debug)]
pub enum SourceKind {
    Kafka(Kafka),
    Replay(Replay),
}

/// Kafka settings. Secrets are named here (variable or file) and read when the agent starts.
#[derive(Clone, Debug, Default)]
pub struct Kafka {
    /// librdkafka properties, all but the secret ones.
    pub properties: BTreeMap<String, String>,
    pub sasl_password_env: Option<String>,
    pub sasl_password_file: Option<PathBuf>,
    pub dead_letter_topic: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Replay {
    /// `None` reads standard input.
    pub path: Option<PathBuf>,
    /// 0: as fast as possible; otherwise event time runs `speed` times wall-clock time.
    pub speed: f64,
}

impl Config {
    pub fn model(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// Reads and validates a configuration file (phases 1–3; see the module doc).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.into(),
            line: 1,
            col: 1,
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Validates configuration text; `path` is used in messages and to resolve relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    match parse_partial(path, text) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// Every validation finding up to phase 3 for a whole file (phase 4, [`check_baselines`],
/// needs the baselines), sorted by position, plus the models as far as they could be read:
/// `None` only when syntax or value types leave nothing to build on.
pub fn validate_file(path: &Path) -> (Option<Config>, Vec<Diagnostic>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_partial(path, &text),
        Err(e) => {
            let d = Diagnostic { file: path.into(), line: 1, col: 1, message: format!("cannot read the file: {e}") };
            (None, vec![d])
        }
    }
}

fn parse_partial(path: &Path, text: &str) -> (Option<Config>, Vec<Diagnostic>) {
    let mut r = Reporter { file: path, text, out: Vec::new() };

    // Phase 1: syntax.
    let (table, syntax) = DeTable::parse_recoverable(text);
    for e in &syntax {
        r.at(e.span().unwrap_or(0..0), document::first_line(e.message()));
    }
    if !r.out.is_empty() {
        return (None, r.out);
    }

    // Phase 2: unknown keys everywhere, then types (see `document`).
    let Some(raw) = document::read::<AgentConfig>(&mut r, table.get_ref(), text, "") else {
        return (None, r.out);
    };

    // Phase 3: meaning.
    let base = path.parent().unwrap_or(Path::new("."));
    let mut ids = HashSet::new();
    let mut models = Vec::new();
    if raw.model.is_empty() {
        r.at(0..0, "no [[model]] table: add one with at least `id` and `baseline`");
    }
    for m in &raw.model {
        if !ids.insert(m.id.get_ref().clone()) {
            r.at(m.id.span(), format!("model id \"{}\" is used twice; ids must be unique", m.id.get_ref()));
        }
        if m.id.get_ref().trim().is_empty() {
            r.at(m.id.span(), "model id must not be empty");
        }
        let tests = tests_of(&mut r, m.tests.as_ref()).unwrap_or_else(|| vec![TestChoice::Auto]);
        let options = TestOptions {
            thresholds: thresholds_of(&mut r, &m.thresholds),
            ks_method: m.ks_method.unwrap_or_default(),
        };
        let bins = m.bins.as_ref().map(|b| bins_of(&mut r, b)).unwrap_or(crate::engine::profile::DEFAULT_BINS);
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
        let max_samples =
            positive_of(&mut r, &m.max_samples, "max_samples", crate::engine::profile::DEFAULT_MAX_SAMPLES);
        let max_categories =
            positive_of(&mut r, &m.max_categories, "max_categories", crate::engine::profile::DEFAULT_MAX_CATEGORIES);
        if let Some(f) = &m.filter
            && f.get_ref().trim().is_empty()
        {
            r.at(f.span(), "filter is empty: remove it or write a query such as `SELECT * FROM reference`");
        }
        let mut names = HashSet::new();
        let mut features = Vec::new();
        for f in &m.feature {
            if !names.insert(f.name.get_ref().clone()) {
                r.at(f.name.span(), format!("feature \"{}\" is listed twice", f.name.get_ref()));
            }
            if m.exclude.iter().any(|e| e.get_ref() == f.name.get_ref()) {
                r.at(f.name.span(), format!("feature \"{}\" is also in `exclude`", f.name.get_ref()));
            }
            let kind = kind_of(&mut r, f.kind.as_ref());
            let ftests = tests_of(&mut r, f.tests.as_ref());
            let mut fopts = options.clone();
            fopts.thresholds.extend(thresholds_of(&mut r, &f.thresholds));
            let fbins = f.bins.as_ref().map(|b| bins_of(&mut r, b));
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
                field: f.field.as_ref().map(|p| path_of(&mut r, p)),
                declared: quality::declared_of(&mut r, f, kind),
            });
        }
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
            let (rule, names) = alerts::rule_of(&mut r, rc, &known);
            if let (crate::engine::rules::Target::Performance { .. }, None, Some(v)) =
                (&rule.target, &m.performance, &rc.performance)
            {
                r.at(
                    v.span(),
                    "a performance rule needs [model.performance] (the score feature and the baseline's label)",
                );
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
        let performance = m.performance.as_ref().map(|p| {
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
                    format!(
                        "the label \"{}\" is ground truth, not a feature: remove its [[model.feature]]",
                        p.label.get_ref()
                    ),
                );
            }
            let task = match p.task.as_ref().map(|t| (t, t.get_ref().as_str())) {
                None | Some((_, "classification")) => crate::engine::plan::Task::Classification,
                Some((_, "regression")) => crate::engine::plan::Task::Regression,
                Some((t, other)) => {
                    r.at(
                        t.span(),
                        format!("unknown task \"{other}\"{}", suggestion(other, &["classification", "regression"])),
                    );
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
        });
        let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
        let quality = quality::quality_of(&mut r, m.quality.as_ref(), &names);
        let labels = m.labels.as_ref().map(|l| quality::labels_of(&mut r, l, m.performance.is_some()));
        let derived = segments::derived_of(&mut r, &m.derived, &names);
        let mut with_derived = names.clone();
        if !names.is_empty() {
            with_derived.extend(derived.iter().map(|d| d.name.clone()));
        }
        let segments = segments::segments_of(&mut r, &m.segment, &with_derived);
        let events = events_of(&mut r, m.events.as_ref());
        let window = window_of(&mut r, m.window.as_ref());
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
        models.push(Model {
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
        });
    }
    let agent = agent_of(&mut r, raw.agent.as_ref(), base);
    let notify = alerts::notify_of(&mut r, raw.notify.as_ref(), base);
    let source = raw.source.as_ref().map(|s| source_of(&mut r, s, base));
    if let Some(Source { kind: SourceKind::Kafka(_), .. }) = &source {
        let spans: Vec<_> = raw.model.iter().filter(|m| m.topics.is_empty()).map(|m| m.id.span()).collect();
        for span in spans {
            r.at(span, "with a kafka source every model needs `topics = [\"...\"]`");
        }
    }
    r.out.sort_by_key(|d| (d.line, d.col));
    let mut out = r.out;
    // Rule files: each validated on its own text, its rules joined to their models.
    let catalogue: Vec<_> =
        models.iter().map(|m| (m.id.clone(), m.features.iter().map(|f| (f.name.clone(), f.kind)).collect())).collect();
    for file in &agent.rule_files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                let message = format!("cannot read the rule file: {e}");
                out.push(Diagnostic { file: file.clone(), line: 1, col: 1, message });
                continue;
            }
        };
        let mut found = Vec::new();
        for (id, rule, names) in alerts::parse_rule_file(file, &text, &catalogue, &mut found) {
            if let Some(m) = models.iter_mut().find(|m| m.id == id) {
                if m.rules.iter().any(|x| x.name == rule.name) {
                    let pos = names.first().map(|(_, p)| p.clone()).unwrap_or_default();
                    let message = format!("rule \"{}\" of model \"{id}\" is defined twice", rule.name);
                    found.push(Diagnostic { file: file.clone(), line: pos.line.max(1), col: pos.col.max(1), message });
                }
                m.rules.push(rule);
                m.rule_sources.push(RuleSource { file: file.clone(), names });
            }
        }
        found.sort_by_key(|d| (d.line, d.col));
        out.extend(found);
    }
    (Some(Config { path: path.into(), agent, source, models, notify }), out)
}

/// A feature's declared `type`, if given and valid.
fn kind_of(r: &mut Reporter, k: Option<&Spanned<String>>) -> Option<FeatureKind> {
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

fn tests_of(r: &mut Reporter, spanned: Option<&Spanned<Vec<Spanned<String>>>>) -> Option<Vec<TestChoice>> {
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

fn thresholds_of(r: &mut Reporter, map: &BTreeMap<Spanned<String>, Spanned<f64>>) -> BTreeMap<TestKind, f64> {
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

/// A secret the configuration names could not be read (set the variable, mount the file).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{setting}_env: environment variable {var} is not set: {source}")]
    Env { setting: String, var: String, source: std::env::VarError },
    #[error("{setting}_file: cannot read {}: {source}", path.display())]
    File { setting: String, path: std::path::PathBuf, source: std::io::Error },
}

/// Reads a secret named by `{setting}_env` (an environment variable) or `{setting}_file` (a
/// file; trailing line breaks dropped), e.g. `read_secret("[source] sasl_password", …)`.
/// `None` when neither is set. Errors name the variable or file, never the value.
pub fn read_secret(setting: &str, env: Option<&str>, file: Option<&Path>) -> Result<Option<String>, SecretError> {
    if let Some(var) = env {
        let value = std::env::var(var).map_err(|source| SecretError::Env {
            setting: setting.to_string(),
            var: var.to_string(),
            source,
        })?;
        return Ok(Some(value));
    }
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                setting: setting.to_string(),
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
        None => Ok(None),
    }
}

/// Parses a duration as `humantime` writes it: `"250ms"`, `"30s"`, `"5m"`, `"1h30m"`,
/// `"1d"`, `"30 seconds"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use humantime::DurationError as E;
    let help = "write a duration such as \"250ms\", \"30s\", \"5m\", \"1h30m\" or \"1d\"";
    humantime::parse_duration(text.trim()).map_err(|e| match e {
        E::Empty => format!("empty duration; {help}"),
        E::UnknownUnit { unit, .. } if unit.is_empty() => format!("\"{text}\" has no unit; {help}"),
        E::UnknownUnit { unit, .. } => format!("unknown unit \"{unit}\" in \"{text}\"; {help}"),
        E::NumberOverflow => format!("\"{text}\" is too long"),
        E::InvalidCharacter(_) | E::NumberExpected(_) => format!("\"{text}\" is not a duration; {help}"),
    })
}

fn duration_of(r: &mut Reporter, value: Option<&Spanned<String>>, default: Duration) -> Duration {
    match value {
        None => default,
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
            r.at(v.span(), e);
            default
        }),
    }
}

fn path_of(r: &mut Reporter, value: &Spanned<String>) -> FieldPath {
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

fn events_of(r: &mut Reporter, e: Option<&EventsConfig>) -> Events {
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

fn window_of(r: &mut Reporter, w: Option<&WindowConfig>) -> WindowSpec {
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

fn agent_of(r: &mut Reporter, a: Option<&AgentSection>, base: &Path) -> Agent {
    let mut out = Agent::default();
    let Some(a) = a else {
        return out;
    };
    if let Some(v) = &a.listen {
        match v.get_ref().parse() {
            Ok(addr) => out.listen = addr,
            Err(_) => r.at(
                v.span(),
                format!(
                    "listen must be an address such as \"{DEFAULT_LISTEN}\" or \"0.0.0.0:9464\", got \"{}\"",
                    v.get_ref()
                ),
            ),
        }
    }
    out.shutdown_timeout = duration_of(r, a.shutdown_timeout.as_ref(), out.shutdown_timeout);
    out.rule_files = a.rule_files.iter().map(|f| base.join(f.get_ref())).collect();
    out.watch_interval = duration_of(r, a.watch_interval.as_ref(), out.watch_interval);
    out
}

/// An integer setting that must be at least 1 (reported, and the default used, if not).
fn positive_of(r: &mut Reporter, v: &Option<Spanned<i64>>, name: &str, default: usize) -> usize {
    match v {
        Some(x) if *x.get_ref() < 1 => {
            r.at(x.span(), format!("{name} must be at least 1, got {}", x.get_ref()));
            default
        }
        Some(x) => *x.get_ref() as usize,
        None => default,
    }
}

fn source_of(r: &mut Reporter, s: &SourceConfig, base: &Path) -> Source {
    let batch_rows = positive_of(r, &s.batch_rows, "batch_rows", 8192);
    let max_event_bytes = positive_of(r, &s.max_event_bytes, "max_event_bytes", 1 << 20);
    let linger = duration_of(r, s.linger.as_ref(), Duration::from_millis(100));
    let kind = match s.kind.get_ref().as_str() {
        "kafka" => {
            let mut k = Kafka::default();
            let mut set = |key: &str, v: &Option<Spanned<String>>| {
                if let Some(v) = v {
                    k.properties.insert(key.to_string(), v.get_ref().clone());
                }
            };
            set("bootstrap.servers", &s.brokers);
            set("group.id", &s.group_id);
            set("client.id", &s.client_id);
            set("group.instance.id", &s.instance_id);
            set("security.protocol", &s.security_protocol);
            set("sasl.mechanism", &s.sasl_mechanism);
            set("sasl.username", &s.sasl_username);
            for (key, v) in [
                ("ssl.ca.location", &s.ssl_ca),
                ("ssl.certificate.location", &s.ssl_cert),
                ("ssl.key.location", &s.ssl_key),
            ] {
                if let Some(v) = v {
                    k.properties.insert(key.to_string(), base.join(v.get_ref()).display().to_string());
                }
            }
            if s.brokers.is_none() {
                r.at(s.kind.span(), "a kafka source needs `brokers`, e.g. brokers = \"kafka:9092\"");
            }
            if let Some(v) = &s.security_protocol {
                const PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
                if !PROTOCOLS.contains(&v.get_ref().to_ascii_lowercase().as_str()) {
                    r.at(
                        v.span(),
                        format!("unknown security_protocol \"{}\"{}", v.get_ref(), suggestion(v.get_ref(), PROTOCOLS)),
                    );
                }
            }
            if let (Some(a), Some(_)) = (&s.sasl_password_env, &s.sasl_password_file) {
                r.at(a.span(), "give the SASL password by `sasl_password_env` or `sasl_password_file`, not both");
            }
            for (key, v) in &s.properties {
                if key.contains("password") || key.contains("secret") {
                    r.at(v.span(), format!("property \"{key}\" holds a secret: put it in a file or environment variable (sasl_password_file, sasl_password_env), never in the configuration"));
                } else if !key.contains('.') {
                    r.at(
                        v.span(),
                        format!("\"{key}\" is not a librdkafka property (they look like \"fetch.min.bytes\")"),
                    );
                }
                k.properties.insert(key.clone(), v.get_ref().clone());
            }
            k.sasl_password_env = s.sasl_password_env.as_ref().map(|v| v.get_ref().clone());
            k.sasl_password_file = s.sasl_password_file.as_ref().map(|v| base.join(v.get_ref()));
            k.dead_letter_topic = s.dead_letter_topic.as_ref().map(|v| v.get_ref().clone());
            for (name, v) in
                [("path", s.path.as_ref().map(|v| v.span())), ("speed", s.speed.as_ref().map(|v| v.span()))]
            {
                if let Some(span) = v {
                    r.at(span, format!("`{name}` belongs to a replay source, not to kind = \"kafka\""));
                }
            }
            SourceKind::Kafka(k)
        }
        "replay" => {
            let named: [(&str, Option<Range<usize>>); 13] = [
                ("brokers", s.brokers.as_ref().map(|v| v.span())),
                ("instance_id", s.instance_id.as_ref().map(|v| v.span())),
                ("group_id", s.group_id.as_ref().map(|v| v.span())),
                ("client_id", s.client_id.as_ref().map(|v| v.span())),
                ("security_protocol", s.security_protocol.as_ref().map(|v| v.span())),
                ("sasl_mechanism", s.sasl_mechanism.as_ref().map(|v| v.span())),
                ("sasl_username", s.sasl_username.as_ref().map(|v| v.span())),
                ("sasl_password_env", s.sasl_password_env.as_ref().map(|v| v.span())),
                ("sasl_password_file", s.sasl_password_file.as_ref().map(|v| v.span())),
                ("ssl_ca", s.ssl_ca.as_ref().map(|v| v.span())),
                ("ssl_cert", s.ssl_cert.as_ref().map(|v| v.span())),
                ("ssl_key", s.ssl_key.as_ref().map(|v| v.span())),
                ("dead_letter_topic", s.dead_letter_topic.as_ref().map(|v| v.span())),
            ];
            for (name, span) in named {
                if let Some(span) = span {
                    r.at(span, format!("`{name}` belongs to a kafka source, not to kind = \"replay\""));
                }
            }
            let speed = s.speed.as_ref().map_or(0.0, |v| {
                let x = *v.get_ref();
                if !(x >= 0.0 && x.is_finite()) {
                    r.at(v.span(), format!("speed must be 0 (as fast as possible) or a positive factor, got {x}"));
                }
                x.max(0.0)
            });
            let path = match &s.path {
                None => {
                    r.at(s.kind.span(), "a replay source needs `path`: an NDJSON file, or \"-\" for standard input");
                    None
                }
                Some(p) if p.get_ref() == "-" => None,
                Some(p) => Some(base.join(p.get_ref())),
            };
            SourceKind::Replay(Replay { path, speed })
        }
        other => {
            r.at(s.kind.span(), format!("unknown source kind \"{other}\"{}", suggestion(other, &["kafka", "replay"])));
            SourceKind::Replay(Replay { path: None, speed: 0.0 })
        }
    };
    Source { kind, batch_rows, linger, max_event_bytes }
}

fn bins_of(r: &mut Reporter, b: &Spanned<i64>) -> usize {
    let v = *b.get_ref();
    if !(2..=1000).contains(&v) {
        r.at(b.span(), format!("bins must be between 2 and 1000, got {v}"));
        return crate::engine::profile::DEFAULT_BINS;
    }
    v as usize
}

/// Phase 4: checks each model against its baseline — the file opens, the SQL filter is a
/// valid query, and every named feature and exclusion is a column with a fitting type.
pub async fn check_baselines(config: &Config) -> Vec<Diagnostic> {
    use datafusion::arrow::datatypes::DataType;
    let mut out = Vec::new();
    let mut rule_findings = Vec::new();
    let mut at = |pos: &Pos, message: String| {
        out.push(Diagnostic { file: config.path.clone(), line: pos.line, col: pos.col, message });
    };
    for m in &config.models {
        let schema = match crate::adapters::baseline::read_schema(&m.baseline, m.filter.as_deref()).await {
            Ok(s) => s,
            Err(e) => {
                let pos = if matches!(e, crate::adapters::baseline::BaselineError::Sql { .. }) {
                    &m.filter_pos
                } else {
                    &m.baseline_pos
                };
                at(pos, format!("model \"{}\": {e}", m.id));
                continue;
            }
        };
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let unknown = |name: &str| {
            let hint = did_you_mean(name, columns.iter().copied())
                .map(|s| format!("did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!("columns are: {}", columns.join(", ")));
            format!("model \"{}\": the baseline has no column \"{name}\"; {hint}", m.id)
        };
        for f in &m.features {
            match schema.field_with_name(&f.name) {
                Err(_) => at(&f.pos, unknown(&f.name)),
                Ok(field) => {
                    let inferred = FeatureKind::infer(field.data_type());
                    match (f.kind, inferred) {
                        (None, None) => at(
                            &f.pos,
                            format!(
                                "model \"{}\": column \"{}\" has type {}; declare `type = \"numerical\"` or `\"categorical\"`, or drop it",
                                m.id,
                                f.name,
                                field.data_type()
                            ),
                        ),
                        (Some(FeatureKind::Numerical), k)
                            if k != Some(FeatureKind::Numerical) && field.data_type() != &DataType::Null =>
                        {
                            at(
                                &f.pos,
                                format!(
                                    "model \"{}\": column \"{}\" has type {}, which cannot be read as numerical",
                                    m.id,
                                    f.name,
                                    field.data_type()
                                ),
                            )
                        }
                        _ => {}
                    }
                }
            }
        }
        for (name, pos) in &m.exclude {
            if schema.field_with_name(name).is_err() {
                at(pos, unknown(name));
            }
        }
        if let Some(p) = &m.performance {
            if schema.field_with_name(&p.label).is_err() {
                at(&p.label_pos, unknown(&p.label));
            } else if !m.exclude.iter().any(|(e, _)| e == &p.label) && m.features.is_empty() {
                at(
                    &p.label_pos,
                    format!(
                        "model \"{}\": add the label \"{}\" to `exclude`: ground truth is not a drift feature",
                        m.id, p.label
                    ),
                );
            }
            if schema.field_with_name(&p.score).is_err() {
                at(&p.pos, unknown(&p.score));
            }
        }
        // Rules name configured features (checked in phase 3) or, without a feature list,
        // baseline columns.
        if m.features.is_empty() {
            for source in &m.rule_sources {
                for (name, pos) in &source.names {
                    if schema.field_with_name(name).is_err() {
                        let message = unknown(name);
                        rule_findings.push(Diagnostic {
                            file: source.file.clone(),
                            line: pos.line,
                            col: pos.col,
                            message,
                        });
                    }
                }
            }
        }
    }
    out.extend(rule_findings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_close_names() {
        assert_eq!(did_you_mean("incme", ["age", "income", "country"]), Some("income"));
        assert_eq!(did_you_mean("zzz", ["age", "income"]), None);
    }

    #[test]
    fn every_listed_key_is_a_real_field() {
        let text = r#"
            [[model]]
            id = "m"
            baseline = "b.parquet"
            filter = "SELECT * FROM reference"
            tests = ["auto"]
            thresholds = { psi = 0.2 }
            bins = 10
            drift_share = 0.5
            fdr = 0.05
            ks_method = "asymp"
            exclude = ["x"]
            max_samples = 10
            max_categories = 10
            [[model.feature]]
            name = "a"
            type = "numerical"
            tests = ["ks"]
            thresholds = { ks = 0.01 }
            bins = 5
            min = 0
            max = 120
            [[model.feature]]
            name = "c"
            type = "categorical"
            allowed = ["DE", "FR"]
            pattern = "[A-Z]{2}"
            min_length = 2
            max_length = 2
            [model.quality]
            required = ["a"]
            unknown_fields = true
            duplicate_horizon = "1h"
            max_tracked_ids = 5000
        "#;
        let cfg = parse(Path::new("t.toml"), text).unwrap();
        let m = &cfg.models[0];
        assert_eq!(m.features[0].options.threshold(TestKind::Ks), 0.01);
        assert_eq!(m.options.ks_method, KsMethod::Asymp);
        let range = m.features[0].declared.as_ref().unwrap();
        assert!(range.out_of_range(121.0) && !range.out_of_range(120.0));
        let text_rules = m.features[1].declared.as_ref().unwrap();
        assert!(!text_rules.violated_by("DE"));
        assert!(text_rules.violated_by("ES") && text_rules.violated_by("de") && text_rules.violated_by("DEU"));
        assert_eq!(m.quality.required, Required::Names(vec!["a".into()]));
        assert!(m.quality.unknown_fields);
        assert_eq!(m.quality.duplicate_horizon, Some(Duration::from_secs(3600)));
        assert_eq!(m.quality.max_tracked_ids, 5000);
    }
}
