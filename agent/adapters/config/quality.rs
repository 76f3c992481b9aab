//! `[model.quality]` (event-level checks) and the declared constraints of `[[model.feature]]`.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::model::FeatureConfig;
use super::{Reporter, duration_of, positive_of};
use crate::engine::profile::{Declared, FeatureKind};

/// `[model.quality]`: what makes an event malformed or repeated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Features whose field must be present in every event (`["*"]`: all of them); an event
    /// without one counts towards `schema_error_rate`.
    #[serde(default)]
    pub required: Vec<Spanned<String>>,
    /// Count events with fields in the features object that the model neither reads nor
    /// excludes as schema errors (default false).
    pub unknown_fields: Option<Spanned<bool>>,
    /// Event time within which a repeated event id is a duplicate (default "10m"; "0s": off).
    pub duplicate_horizon: Option<Spanned<String>>,
    /// Event ids remembered at most (default 1 000 000); the oldest are forgotten first.
    pub max_tracked_ids: Option<Spanned<i64>>,
}

/// Default of `duplicate_horizon`.
pub(super) const DEFAULT_DUPLICATE_HORIZON: Duration = Duration::from_secs(600);
/// Default of `max_tracked_ids`.
pub(super) const DEFAULT_MAX_TRACKED_IDS: usize = 1_000_000;

/// `[model.quality]` after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelQuality {
    /// Required features; `None` in the list's place means every feature.
    pub required: Required,
    pub unknown_fields: bool,
    /// `None`: duplicates are not looked for.
    pub duplicate_horizon: Option<Duration>,
    pub max_tracked_ids: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Required {
    All,
    Names(Vec<String>),
}

impl Required {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Required::All => true,
            Required::Names(n) => n.iter().any(|x| x == name),
        }
    }
}

impl Default for ModelQuality {
    fn default() -> ModelQuality {
        ModelQuality {
            required: Required::Names(Vec::new()),
            unknown_fields: false,
            duplicate_horizon: Some(DEFAULT_DUPLICATE_HORIZON),
            max_tracked_ids: DEFAULT_MAX_TRACKED_IDS,
        }
    }
}

/// Validates `[model.quality]`; `features` are the configured names (empty: checked against
/// the baseline when it is loaded).
pub(super) fn quality_of(r: &mut Reporter, q: Option<&QualityConfig>, features: &[String]) -> ModelQuality {
    let mut out = ModelQuality::default();
    let Some(q) = q else {
        return out;
    };
    if q.required.iter().any(|n| n.get_ref() == "*") {
        if q.required.len() > 1 {
            r.at(q.required[0].span(), "required is either [\"*\"] (every feature) or a list of feature names");
        }
        out.required = Required::All;
    } else {
        for n in &q.required {
            if !features.is_empty() && !features.iter().any(|f| f == n.get_ref()) {
                let known: Vec<&str> = features.iter().map(String::as_str).collect();
                r.at(
                    n.span(),
                    format!(
                        "required feature \"{}\" is not a feature{}",
                        n.get_ref(),
                        super::suggestion(n.get_ref(), &known)
                    ),
                );
            }
        }
        out.required = Required::Names(q.required.iter().map(|n| n.get_ref().clone()).collect());
    }
    out.unknown_fields = q.unknown_fields.as_ref().is_some_and(|v| *v.get_ref());
    let horizon = duration_of(r, q.duplicate_horizon.as_ref(), DEFAULT_DUPLICATE_HORIZON);
    out.duplicate_horizon = (!horizon.is_zero()).then_some(horizon);
    out.max_tracked_ids = positive_of(r, &q.max_tracked_ids, "max_tracked_ids", DEFAULT_MAX_TRACKED_IDS);
    out
}

/// The declared constraints of a feature, if any; `kind` is the configured type (`None`:
/// inferred from the baseline later, so kind-specific keys are checked then).
pub(super) fn declared_of(r: &mut Reporter, f: &FeatureConfig, kind: Option<FeatureKind>) -> Option<Declared> {
    let mut d = Declared {
        min: f.min.as_ref().map(|v| *v.get_ref()),
        max: f.max.as_ref().map(|v| *v.get_ref()),
        ..Declared::default()
    };
    if let (Some(lo), Some(hi)) = (&f.min, &f.max)
        && lo.get_ref() > hi.get_ref()
    {
        r.at(hi.span(), format!("max ({}) is below min ({})", hi.get_ref(), lo.get_ref()));
    }
    for v in [&f.min, &f.max].into_iter().flatten() {
        if !v.get_ref().is_finite() {
            r.at(v.span(), "a bound must be a finite number");
        }
    }
    if let Some(list) = &f.allowed {
        if list.get_ref().is_empty() {
            r.at(list.span(), "allowed is empty: no value could pass; remove it or list the valid values");
        }
        d.allowed = Some(list.get_ref().iter().map(|v| v.get_ref().clone()).collect());
    }
    if let Some(p) = &f.pattern {
        match regex::Regex::new(&format!("^(?:{})$", p.get_ref())) {
            Ok(re) => d.pattern = Some(re),
            Err(e) => {
                // regex explains on its last line ("error: unclosed character class").
                let text = e.to_string();
                let why = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                r.at(p.span(), format!("pattern is not a regular expression: {}", why.trim_start_matches("error: ")))
            }
        }
    }
    for (v, name) in [(&f.min_length, "min_length"), (&f.max_length, "max_length")] {
        if let Some(v) = v
            && *v.get_ref() < 0
        {
            r.at(v.span(), format!("{name} must be 0 or more, got {}", v.get_ref()));
        }
    }
    d.min_length = f.min_length.as_ref().map(|v| (*v.get_ref()).max(0) as usize);
    d.max_length = f.max_length.as_ref().map(|v| (*v.get_ref()).max(0) as usize);
    if let (Some(lo), Some(hi)) = (&f.min_length, &f.max_length)
        && lo.get_ref() > hi.get_ref()
    {
        r.at(hi.span(), format!("max_length ({}) is below min_length ({})", hi.get_ref(), lo.get_ref()));
    }
    match kind {
        Some(FeatureKind::Categorical) if d.has_range() => {
            let v = f.min.as_ref().or(f.max.as_ref()).map(|v| v.span()).unwrap_or_default();
            r.at(v, "min and max are a numerical feature's range; a categorical feature takes allowed, pattern, min_length and max_length");
        }
        Some(FeatureKind::Numerical) if d.has_text_rules() => {
            let span = [f.allowed.as_ref().map(|v| v.span()), f.pattern.as_ref().map(|v| v.span())]
                .into_iter()
                .flatten()
                .next()
                .or_else(|| f.min_length.as_ref().or(f.max_length.as_ref()).map(|v| v.span()))
                .unwrap_or_default();
            r.at(span, "allowed, pattern, min_length and max_length apply to categorical features; a numerical feature takes min and max");
        }
        _ => {}
    }
    (d.has_range() || d.has_text_rules()).then_some(d)
}

/// `[model.labels]`: ground truth arriving on its own topics, joined by event id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Kafka topics carrying label events (`model_id`, `event_id` and `timestamp` at the
    /// model's `[model.events]` paths).
    pub topics: Spanned<Vec<Spanned<String>>>,
    /// Path of the label (0/1 or true/false) in a label event (default "label").
    pub field: Option<Spanned<String>>,
    /// How long (event time) a prediction waits for its label and a label for its
    /// prediction (default "1h").
    pub horizon: Option<Spanned<String>>,
    /// Predictions (and early labels) waiting at most (default 1 000 000).
    pub max_pending: Option<Spanned<i64>>,
}

/// `[model.labels]` after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelLabels {
    pub topics: Vec<String>,
    pub field: crate::engine::decode::FieldPath,
    pub horizon: Duration,
    pub max_pending: usize,
}

pub(super) fn labels_of(r: &mut Reporter, l: &LabelsConfig, has_performance: bool) -> ModelLabels {
    if l.topics.get_ref().is_empty() {
        r.at(l.topics_span(), "`topics` is empty: name the topics that carry this model's labels");
    }
    for t in l.topics.get_ref() {
        if t.get_ref().trim().is_empty() {
            r.at(t.span(), "topic names must not be empty");
        }
    }
    if !has_performance {
        r.at(
            l.topics_span(),
            "[model.labels] needs [model.performance] (the score feature and its decision threshold)",
        );
    }
    let field = match &l.field {
        Some(f) if f.get_ref().is_empty() => {
            r.at(f.span(), "the path must not be empty");
            crate::engine::decode::FieldPath::parse("label")
        }
        Some(f) => super::model::path_of(r, f),
        None => crate::engine::decode::FieldPath::parse("label"),
    };
    ModelLabels {
        topics: l.topics.get_ref().iter().map(|t| t.get_ref().clone()).collect(),
        field,
        horizon: duration_of(r, l.horizon.as_ref(), Duration::from_secs(3600)),
        max_pending: positive_of(r, &l.max_pending, "max_pending", DEFAULT_MAX_TRACKED_IDS),
    }
}

impl LabelsConfig {
    fn topics_span(&self) -> std::ops::Range<usize> {
        self.topics.span()
    }
}
