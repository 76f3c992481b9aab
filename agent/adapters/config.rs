//! The agent configuration file: `[[model]]` tables, each naming a baseline, its features,
//! tests and thresholds. Every field is documented in `docs/configuration.md`.
//!
//! Validation runs in phases and reports every error it finds at once, each as
//! `file:line:col: message`, with a suggestion where one exists:
//! 1. TOML syntax (all syntax errors the parser can recover from);
//! 2. structure: unknown keys anywhere (`did you mean "drift_share"?`, found from the serde
//!    structs by `document`), then field types;
//! 3. meaning: test names, threshold ranges, bins, duplicate model ids and features;
//! 4. optionally, against the baselines themselves (`runtime::validate`, which reads them
//!    through DataFusion): the files open, the SQL filter is a valid query, and every named
//!    feature is a column (`did you mean "income"?`).
//!
//! Each part of the file is read beside its stage: `model` (`[[model]]`), `source`,
//! `notify`, `alerts` (rules and rule files), `quality`, `segments`; this module holds the
//! top level, `[agent]` and the phases.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use std::time::Duration;

use crate::engine::text::did_you_mean;

mod alerts;
mod cluster;
mod document;
mod model;
mod notify;
mod quality;
mod segments;
mod source;
pub use alerts::RuleSource;
pub use cluster::{Cluster, DEFAULT_PARTITIONS, DEFAULT_TOPIC};
use model::ModelConfig;
pub use model::{Events, Feature, Model, ModelPerformance};
pub use notify::{DEFAULT_OUTBOX, Notify, Smtp, SmtpTls};
pub use quality::{ModelLabels, ModelQuality, Required};
pub use segments::{DerivedFeature, MAX_SEGMENT_VALUES, Segment, SegmentBy};
pub use source::{Kafka, Replay, Source, SourceKind};

/// The agent file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Process-wide settings of `driftwatch run`.
    pub agent: Option<AgentSection>,
    /// Where events come from (`driftwatch run` needs one).
    pub source: Option<source::SourceConfig>,
    /// The monitored models.
    #[serde(default)]
    pub model: Vec<ModelConfig>,
    /// Where alert digests go.
    pub notify: Option<notify::NotifyConfig>,
    /// Agents sharing models' windows through Kafka.
    pub cluster: Option<Spanned<cluster::ClusterConfig>>,
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

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub agent: Agent,
    /// `None` when the file has no `[source]` (enough for `check` and `validate`).
    pub source: Option<Source>,
    pub models: Vec<Model>,
    pub notify: Notify,
    /// `None`: one agent judges what it reads (no `[cluster]`).
    pub cluster: Option<Cluster>,
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
        models.push(model::model_of(&mut r, m, path));
    }
    let agent = agent_of(&mut r, raw.agent.as_ref(), base);
    let notify = notify::notify_of(&mut r, raw.notify.as_ref(), base);
    let source = raw.source.as_ref().map(|s| source::source_of(&mut r, s, base));
    if let Some(Source { kind: SourceKind::Kafka(_), .. }) = &source {
        let spans: Vec<_> = raw.model.iter().filter(|m| m.topics.is_empty()).map(|m| m.id.span()).collect();
        for span in spans {
            r.at(span, "with a kafka source every model needs `topics = [\"...\"]`");
        }
    }
    let cluster = raw.cluster.as_ref().map(|c| {
        if !matches!(&source, Some(Source { kind: SourceKind::Kafka(_), .. })) {
            r.at(c.span(), "[cluster] shares windows through Kafka: it needs a [source] of kind = \"kafka\"");
        }
        for m in raw.model.iter().filter(|m| m.labels.is_some()) {
            r.at(
                m.id.span(),
                "[model.labels] does not work with [cluster] yet (ground truth is joined where the predictions are read, and a cluster spreads them over agents): run models with labels on agents without [cluster]",
            );
        }
        cluster::cluster_of(&mut r, c.get_ref())
    });
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
    (Some(Config { path: path.into(), agent, source, models, notify, cluster }), out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::{KsMethod, TestKind};

    #[test]
    fn cluster_takes_defaults_and_needs_a_kafka_source() {
        let model = "[[model]]\nid = \"m\"\nbaseline = \"b.csv\"\ntopics = [\"t\"]\n";
        let kafka = "[source]\nkind = \"kafka\"\nbrokers = \"k:9092\"\ngroup_id = \"g\"\n";
        let cfg = parse(Path::new("t.toml"), &format!("{kafka}[cluster]\n{model}")).expect("valid");
        assert_eq!(cfg.cluster, Some(Cluster { topic: DEFAULT_TOPIC.into(), partitions: DEFAULT_PARTITIONS }));
        let (_, found) = parse_partial(Path::new("t.toml"), &format!("[cluster]\npartitions = 0\n{model}"));
        let messages: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "[cluster] shares windows through Kafka: it needs a [source] of kind = \"kafka\"",
                "partitions must be between 1 and 10000, got 0"
            ]
        );
    }

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
