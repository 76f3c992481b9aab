//! The alerting part of the configuration: `[[model.rule]]` tables, rule files listed by
//! `[agent] rule_files` (`[[rule]]` tables naming their `model`), and `[notify]` with its
//! `[notify.smtp]`. Validated like the rest of the file (positions, suggestions, all errors
//! at once); secrets are named here (a variable or a file) and read when the agent starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::{Diagnostic, Reporter, duration_of, suggestion};
use crate::engine::profile::FeatureKind;
use crate::engine::rules::{DetectorSpec, EffectFloor, QualityCheck, Rule, Selector, Target};
use crate::engine::stats::TestKind;

/// One `[[model.rule]]` (or `[[rule]]` in a rule file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Rule name: the `rule` label and the alert's title.
    pub name: Spanned<String>,
    /// Rule files only: the model the rule watches.
    pub model: Option<Spanned<String>>,
    /// `"*"` (default), `"numerical"`, `"categorical"`, a feature name or a list of names.
    pub features: Option<Spanned<toml::Value>>,
    /// Target: a drift test.
    pub test: Option<Spanned<String>>,
    /// With `test`: `p_value` (default for tests that have one) or `statistic`.
    pub value: Option<Spanned<String>>,
    /// Target: a data-quality ratio.
    pub quality: Option<Spanned<String>>,
    /// Target: a model-wide figure (`drift_share`).
    pub dataset: Option<Spanned<String>>,
    /// Target: a performance metric (needs ground truth or CBPE).
    pub performance: Option<Spanned<String>>,
    pub warn: Option<Spanned<f64>>,
    pub critical: Option<Spanned<f64>>,
    /// Threshold a firing alert must come back past to resolve (hysteresis).
    pub resolve: Option<Spanned<f64>>,
    /// Consecutive breaching windows before firing (default 1).
    #[serde(rename = "for")]
    pub for_windows: Option<Spanned<i64>>,
    /// Event time after a resolution during which the alert does not fire again.
    pub cooldown: Option<Spanned<String>>,
    /// Event time after which a firing alert is notified again.
    pub renotify: Option<Spanned<String>>,
    /// Fewer valid values in the window give no reading (default 0).
    pub min_samples: Option<Spanned<i64>>,
    /// `{ test = "wasserstein", min = 0.05 }`: that test's statistic must also reach `min`.
    pub effect_size: Option<EffectConfig>,
    /// Benjamini–Hochberg adjustment of the rule's p-values across its features.
    pub fdr: Option<Spanned<bool>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub recipients: Vec<Spanned<String>>,
    /// `{ kind = "page_hinkley", threshold = 1.0 }` or `{ kind = "adwin", delta = 0.002 }`:
    /// a change in the series of window values is a warning breach.
    pub detector: Option<DetectorConfig>,
    /// `{ chunks = 10, sigmas = 3 }`: the warning band is learned from the baseline — split
    /// into `chunks`, the band is the mean ± `sigmas` standard deviations of the chunks' values.
    pub learn: Option<LearnConfig>,
    /// Performance rules: warn when the metric is this much worse than on the baseline
    /// (computed from the baseline's labels and scores), instead of a fixed `warn`.
    pub baseline_margin: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnConfig {
    /// Chunks the baseline is split into, in row order (default 10, at least 2).
    pub chunks: Option<Spanned<i64>>,
    /// Width of the band in standard deviations of the chunk values (default 3).
    pub sigmas: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// `page_hinkley` or `adwin`.
    pub kind: Spanned<String>,
    /// Page-Hinkley: the cumulative deviation that signals a change (default 1.0).
    pub threshold: Option<Spanned<f64>>,
    /// Page-Hinkley: the tolerated drift per window (default 0.005); ADWIN: the confidence
    /// (default 0.002).
    pub delta: Option<Spanned<f64>>,
    /// Page-Hinkley: windows before it may signal (default 30).
    pub min_windows: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectConfig {
    pub test: Spanned<String>,
    pub min: Spanned<f64>,
}

/// A rule file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleConfig>,
}

/// A rule with where it was written, for checks against the baseline (phase 4).
#[derive(Clone, Debug)]
pub struct RuleSource {
    pub file: PathBuf,
    /// Named features and their positions.
    pub names: Vec<(String, super::Pos)>,
}

/// Validates one rule. `features` are the model's configured feature names with their kinds
/// when known (an empty list: every baseline column, checked in phase 4).
pub(super) fn rule_of(
    r: &mut Reporter,
    rc: &RuleConfig,
    features: &[(String, Option<FeatureKind>)],
) -> (Rule, Vec<(String, super::Pos)>) {
    let name = rc.name.get_ref().clone();
    if name.trim().is_empty() {
        r.at(rc.name.span(), "rule name must not be empty");
    }
    // The target: exactly one of test, quality, dataset, performance.
    let given: Vec<(&str, &Spanned<String>)> =
        [("test", &rc.test), ("quality", &rc.quality), ("dataset", &rc.dataset), ("performance", &rc.performance)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
    if given.is_empty() {
        r.at(
            rc.name.span(),
            format!("rule \"{name}\" watches nothing: give `test` (e.g. \"ks\"), `quality` (e.g. \"null_rate\") or `dataset = \"drift_share\"`"),
        );
    }
    for (k, v) in given.iter().skip(1) {
        r.at(
            v.span(),
            format!("a rule watches one target; `{k}` cannot join `{}`: split it into two rules", given[0].0),
        );
    }
    let target = match given.first() {
        Some(("test", v)) => match TestKind::parse(v.get_ref()) {
            Some(test) => {
                let p_value = match rc.value.as_ref().map(|x| (x, x.get_ref().as_str())) {
                    None => test.uses_p_value(),
                    Some((_, "statistic")) => false,
                    Some((x, "p_value")) => {
                        if !test.uses_p_value() {
                            r.at(
                                x.span(),
                                format!("test \"{test}\" has no p-value; remove `value` to watch its statistic"),
                            );
                        }
                        test.uses_p_value()
                    }
                    Some((x, other)) => {
                        r.at(
                            x.span(),
                            format!("unknown value \"{other}\"{}", suggestion(other, &["p_value", "statistic"])),
                        );
                        test.uses_p_value()
                    }
                };
                Target::Test { test, p_value }
            }
            None => {
                let names: Vec<&str> = TestKind::ALL.iter().map(|t| t.name()).collect();
                r.at(v.span(), format!("unknown test \"{}\"{}", v.get_ref(), suggestion(v.get_ref(), &names)));
                Target::Test { test: TestKind::Ks, p_value: true }
            }
        },
        Some(("quality", v)) => match QualityCheck::parse(v.get_ref()) {
            Some(q) => Target::Quality(q),
            None => {
                let names: Vec<&str> = QualityCheck::ALL.iter().map(|q| q.name()).collect();
                r.at(v.span(), format!("unknown quality check \"{}\"{}", v.get_ref(), suggestion(v.get_ref(), &names)));
                Target::Quality(QualityCheck::NullRate)
            }
        },
        Some(("dataset", v)) => {
            if v.get_ref() != "drift_share" {
                r.at(v.span(), format!("unknown dataset figure \"{}\"; expected \"drift_share\"", v.get_ref()));
            }
            Target::DriftShare
        }
        Some((_, v)) => {
            let metric = v.get_ref().as_str();
            let known: Vec<&str> = crate::engine::performance::CLASSIFICATION
                .iter()
                .chain(&crate::engine::performance::REGRESSION)
                .copied()
                .collect();
            if !known.contains(&metric) {
                r.at(v.span(), format!("unknown performance metric \"{metric}\"{}", suggestion(metric, &known)));
            }
            let realised = match rc.value.as_ref().map(|x| (x, x.get_ref().as_str())) {
                None | Some((_, "estimated")) => false,
                Some((_, "realised")) => true,
                Some((x, other)) => {
                    r.at(
                        x.span(),
                        format!("unknown value \"{other}\"{}", suggestion(other, &["estimated", "realised"])),
                    );
                    false
                }
            };
            Target::Performance { metric: metric.to_string(), realised }
        }
        None => Target::DriftShare,
    };
    if rc.value.is_some() && rc.test.is_none() && rc.performance.is_none() {
        let span = rc.value.as_ref().map(|v| v.span()).unwrap_or(0..0);
        r.at(
            span,
            "`value` applies to test rules (p_value, statistic) and performance rules (estimated, realised) only",
        );
    }

    // Thresholds and hysteresis.
    let d = target.direction();
    let p_like = matches!(target, Target::Test { p_value: true, .. });
    let bounded = |m: &str| matches!(m, "accuracy" | "precision" | "recall" | "f1" | "roc_auc" | "brier");
    let unit_range = p_like
        || matches!(&target, Target::Quality(q) if !matches!(q, QualityCheck::Volume | QualityCheck::FreshnessSeconds))
        || matches!(&target, Target::DriftShare)
        || matches!(&target, Target::Performance { metric, .. } if bounded(metric));
    let mut check = |v: &Option<Spanned<f64>>, what: &str| -> Option<f64> {
        let v = v.as_ref()?;
        let x = *v.get_ref();
        let ok = if p_like {
            x > 0.0 && x < 1.0
        } else if unit_range {
            (0.0..=1.0).contains(&x)
        } else {
            x.is_finite() && x >= 0.0
        };
        if !ok {
            let valid = if p_like {
                "a p-value in (0, 1)"
            } else if unit_range {
                "a share in [0, 1]"
            } else {
                "a finite value of 0 or more"
            };
            r.at(v.span(), format!("{what} must be {valid}, got {x}"));
        }
        Some(x)
    };
    let warn = check(&rc.warn, "warn");
    let critical = check(&rc.critical, "critical");
    let resolve = check(&rc.resolve, "resolve");
    let detector = rc.detector.as_ref().and_then(|d| detector_of(r, d));
    let learn = rc.learn.as_ref().map(|l| learn_of(r, l, &target, rc));
    let margin = rc.baseline_margin.as_ref().map(|m| {
        let v = *m.get_ref();
        if !(v.is_finite() && v >= 0.0) {
            r.at(m.span(), format!("baseline_margin must be 0 or more, got {v}"));
        }
        if !matches!(target, Target::Performance { .. }) {
            r.at(m.span(), "baseline_margin applies to performance rules");
        }
        if rc.warn.is_some() || rc.learn.is_some() {
            r.at(m.span(), "baseline_margin sets the warning threshold; remove `warn` and `learn`");
        }
        v
    });
    if warn.is_none() && critical.is_none() && rc.detector.is_none() && learn.is_none() && margin.is_none() {
        r.at(rc.name.span(), format!("rule \"{name}\" needs `warn`, `critical`, `detector`, `learn` or a combination"));
    }
    if let (Some(w), Some(c), Some(cs)) = (warn, critical, rc.critical.as_ref())
        && d.breaches(w, c)
        && w != c
    {
        let rel = if d == crate::engine::rules::Direction::Below { "below" } else { "above" };
        r.at(cs.span(), format!("critical ({c}) must be {rel} warn ({w}): a critical breach is the worse one"));
    }
    // The mildest threshold: the first value that breaches.
    let mildest = match (warn, critical) {
        (Some(w), _) => w,
        (None, Some(c)) => c,
        (None, None) => 0.0,
    };
    let resolve = match (resolve, rc.resolve.as_ref()) {
        (Some(x), Some(s)) => {
            if d.breaches(x, mildest) {
                let side = if d == crate::engine::rules::Direction::Below { "at or above" } else { "below" };
                r.at(s.span(), format!("resolve ({x}) must be {side} the threshold ({mildest}) so that a resolved alert is out of breach"));
            }
            x
        }
        _ => mildest,
    };

    let features_sel = selector_of(r, rc, &target, features);
    let for_windows = match &rc.for_windows {
        Some(v) if *v.get_ref() < 1 || *v.get_ref() > 10_000 => {
            r.at(v.span(), format!("for counts windows and must be between 1 and 10000, got {}", v.get_ref()));
            1
        }
        Some(v) => *v.get_ref() as u32,
        None => 1,
    };
    let cooldown_ms = duration_of(r, rc.cooldown.as_ref(), Duration::ZERO).as_millis() as i64;
    let renotify = duration_of(r, rc.renotify.as_ref(), Duration::ZERO);
    let min_samples = match &rc.min_samples {
        Some(v) if *v.get_ref() < 0 => {
            r.at(v.span(), format!("min_samples must be 0 or more, got {}", v.get_ref()));
            0
        }
        Some(v) => *v.get_ref() as u64,
        None => 0,
    };
    let effect = rc.effect_size.as_ref().and_then(|e| {
        let min = *e.min.get_ref();
        if !(min.is_finite() && min > 0.0) {
            r.at(e.min.span(), format!("effect_size.min must be a positive statistic, got {min}"));
        }
        if rc.test.is_none() {
            r.at(e.test.span(), "effect_size applies to test rules only");
        }
        match TestKind::parse(e.test.get_ref()) {
            Some(test) => Some(EffectFloor { test, min }),
            None => {
                let names: Vec<&str> = TestKind::ALL.iter().map(|t| t.name()).collect();
                r.at(
                    e.test.span(),
                    format!("unknown test \"{}\"{}", e.test.get_ref(), suggestion(e.test.get_ref(), &names)),
                );
                None
            }
        }
    });
    let fdr = rc.fdr.as_ref().is_some_and(|f| {
        if *f.get_ref() && !p_like {
            r.at(f.span(), "fdr adjusts p-values: use it with a test that has one (ks, chisquare, …)");
        }
        *f.get_ref()
    });
    let mut labels = BTreeMap::new();
    for (k, v) in &rc.labels {
        let valid = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || k.starts_with("__") {
            r.at(
                v.span(),
                format!("label name \"{k}\" is not valid; use letters, digits and _ (not starting with a digit or __)"),
            );
        }
        labels.insert(k.clone(), v.get_ref().clone());
    }
    let annotations = rc.annotations.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect();
    for v in &rc.recipients {
        super::notify::check_address(r, v);
    }
    let recipients = rc.recipients.iter().map(|v| v.get_ref().clone()).collect();
    let names = match &features_sel {
        Selector::Names(n) => {
            let pos = rc.features.as_ref().map(|f| r.pos(f.span())).unwrap_or_default();
            n.iter().map(|x| (x.clone(), pos.clone())).collect()
        }
        _ => Vec::new(),
    };
    let rule = Rule {
        name,
        target,
        features: features_sel,
        warn,
        critical,
        resolve,
        for_windows,
        cooldown_ms,
        renotify_ms: (!renotify.is_zero()).then_some(renotify.as_millis() as i64),
        min_samples,
        effect,
        fdr,
        labels,
        annotations,
        recipients,
        detector,
        learn,
        bands: std::collections::BTreeMap::new(),
        margin,
    };
    (rule, names)
}

fn learn_of(r: &mut Reporter, l: &LearnConfig, target: &Target, rc: &RuleConfig) -> crate::engine::rules::Learn {
    let span = rc.name.span();
    match target {
        Target::Quality(q) if !q.model_level() => {}
        Target::Performance { .. } => {}
        Target::Quality(q) => r.at(
            span,
            format!("`learn` needs a figure the baseline has; {} exists only on a stream: give `warn`", q.name()),
        ),
        _ => r.at(
            span,
            "`learn` applies to quality and performance rules; test and drift-share thresholds are fixed by statistics",
        ),
    }
    if let Some(w) = &rc.warn {
        r.at(w.span(), "`learn` sets the warning band; remove `warn` (a fixed `critical` may stay)");
    }
    let chunks = match &l.chunks {
        Some(c) if *c.get_ref() < 2 || *c.get_ref() > 1000 => {
            r.at(c.span(), format!("chunks must be 2 to 1000, got {}", c.get_ref()));
            10
        }
        Some(c) => *c.get_ref() as usize,
        None => 10,
    };
    let sigmas = match &l.sigmas {
        Some(s) if !(s.get_ref().is_finite() && *s.get_ref() > 0.0) => {
            r.at(s.span(), format!("sigmas must be positive, got {}", s.get_ref()));
            3.0
        }
        Some(s) => *s.get_ref(),
        None => 3.0,
    };
    crate::engine::rules::Learn { chunks, sigmas }
}

fn detector_of(r: &mut Reporter, d: &DetectorConfig) -> Option<DetectorSpec> {
    let positive = |r: &mut Reporter, v: &Option<Spanned<f64>>, name: &str, default: f64| match v {
        Some(x) if !(x.get_ref().is_finite() && *x.get_ref() > 0.0) => {
            r.at(x.span(), format!("detector {name} must be positive, got {}", x.get_ref()));
            default
        }
        Some(x) => *x.get_ref(),
        None => default,
    };
    match d.kind.get_ref().as_str() {
        "page_hinkley" => {
            let min_windows = match &d.min_windows {
                Some(v) if *v.get_ref() < 1 => {
                    r.at(v.span(), format!("min_windows must be at least 1, got {}", v.get_ref()));
                    30
                }
                Some(v) => *v.get_ref() as u64,
                None => 30,
            };
            let threshold = positive(r, &d.threshold, "threshold", 1.0);
            let delta = positive(r, &d.delta, "delta", 0.005);
            Some(DetectorSpec::PageHinkley { min_windows, delta, threshold })
        }
        "adwin" => {
            for (v, name) in [
                (d.threshold.as_ref().map(|v| v.span()), "threshold"),
                (d.min_windows.as_ref().map(|v| v.span()), "min_windows"),
            ] {
                if let Some(span) = v {
                    r.at(span, format!("`{name}` belongs to page_hinkley; adwin takes `delta` only"));
                }
            }
            let delta = positive(r, &d.delta, "delta", 0.002);
            if delta >= 1.0
                && let Some(v) = &d.delta
            {
                r.at(v.span(), "adwin delta is a confidence in (0, 1), e.g. 0.002");
            }
            Some(DetectorSpec::Adwin { delta: delta.min(0.5) })
        }
        other => {
            r.at(
                d.kind.span(),
                format!("unknown detector \"{other}\"{}", suggestion(other, &["page_hinkley", "adwin"])),
            );
            None
        }
    }
}

fn selector_of(
    r: &mut Reporter,
    rc: &RuleConfig,
    target: &Target,
    features: &[(String, Option<FeatureKind>)],
) -> Selector {
    let Some(v) = &rc.features else {
        return Selector::All;
    };
    let whole = matches!(target, Target::Quality(q) if q.model_level());
    if whole || matches!(target, Target::DriftShare | Target::Performance { .. }) {
        r.at(v.span(), "a dataset or performance rule watches the whole model; remove `features`");
        return Selector::All;
    }
    let names: Vec<String> = match v.get_ref() {
        toml::Value::String(s) => match s.as_str() {
            "*" => return Selector::All,
            "numerical" => return Selector::Kind(FeatureKind::Numerical),
            "categorical" => return Selector::Kind(FeatureKind::Categorical),
            _ => vec![s.clone()],
        },
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => r.at(v.span(), "features lists feature names as strings"),
                }
            }
            if out.is_empty() {
                r.at(v.span(), "the features list is empty; remove it to watch every feature");
            }
            out
        }
        _ => {
            r.at(v.span(), "features must be \"*\", \"numerical\", \"categorical\", a feature name or a list of names");
            return Selector::All;
        }
    };
    // Against the configured features (when the model lists them; else in phase 4).
    if !features.is_empty() {
        let known: Vec<&str> = features.iter().map(|(n, _)| n.as_str()).collect();
        for n in &names {
            if !known.contains(&n.as_str()) {
                r.at(
                    v.span(),
                    format!(
                        "rule \"{}\": no feature \"{n}\" in this model{}",
                        rc.name.get_ref(),
                        suggestion(n, &known)
                    ),
                );
            }
        }
    }
    Selector::Names(names)
}

/// Validates a rule file's text: keys, types, then each rule (against `models`).
/// Each model's id with its features (name and declared kind): what rules are checked against.
pub(super) type Catalogue = [(String, Vec<(String, Option<FeatureKind>)>)];

/// The rules a rule file defines, each with its model and where its features were named.
pub(super) type RuleEntries = Vec<(String, Rule, Vec<(String, super::Pos)>)>;

pub(super) fn parse_rule_file(path: &Path, text: &str, models: &Catalogue, out: &mut Vec<Diagnostic>) -> RuleEntries {
    let mut r = Reporter { file: path, text, out: Vec::new() };
    let (table, syntax) = DeTable::parse_recoverable(text);
    for e in &syntax {
        r.at(e.span().unwrap_or(0..0), super::document::first_line(e.message()));
    }
    let mut result = Vec::new();
    if syntax.is_empty()
        && let Some(file) = super::document::read::<RuleFile>(&mut r, table.get_ref(), text, "rule file")
    {
        if file.rule.is_empty() {
            r.at(0..0, "no [[rule]] table in this rule file");
        }
        let ids: Vec<&str> = models.iter().map(|(id, _)| id.as_str()).collect();
        for rc in &file.rule {
            let Some(model) = &rc.model else {
                r.at(
                    rc.name.span(),
                    format!("rule \"{}\" needs `model`, one of: {}", rc.name.get_ref(), ids.join(", ")),
                );
                continue;
            };
            let Some((_, features)) = models.iter().find(|(id, _)| id == model.get_ref()) else {
                r.at(
                    model.span(),
                    format!("no model \"{}\" in the agent file{}", model.get_ref(), suggestion(model.get_ref(), &ids)),
                );
                continue;
            };
            let (rule, names) = rule_of(&mut r, rc, features);
            result.push((model.get_ref().clone(), rule, names));
        }
    }
    out.extend(r.out);
    result
}
