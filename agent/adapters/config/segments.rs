//! `[[model.derived]]` (features computed by SQL expressions) and `[[model.segment]]`
//! (slices of the traffic monitored on their own).

use serde::Deserialize;
use toml::Spanned;

use super::{Pos, Reporter, suggestion};
use crate::engine::profile::FeatureKind;

/// Most values a column segment keeps apart (the rest are `__other__`), whatever is asked.
pub const MAX_SEGMENT_VALUES: usize = 50;

/// `[[model.derived]]`: a feature computed from others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedConfig {
    /// The feature's name (a new column).
    pub name: Spanned<String>,
    /// A SQL expression over the model's features, e.g. `income / (open_accounts + 1)`.
    pub sql: Spanned<String>,
    /// `numerical` or `categorical` (default: from the expression's type on the baseline).
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
}

/// `[[model.segment]]`: one dimension of slices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// The segment's name: the `slice` label is `name=value` (column) or `name` (predicate).
    pub name: Spanned<String>,
    /// Slice by this feature's value: the `max_values` most frequent values of the baseline
    /// each get a slice, the rest share `name=__other__`.
    pub column: Option<Spanned<String>>,
    /// With `column`: values kept apart (default 10, at most 50).
    pub max_values: Option<Spanned<i64>>,
    /// Or: a SQL predicate over the features; the rows where it holds form the slice.
    #[serde(rename = "where")]
    pub predicate: Option<Spanned<String>>,
}

/// A derived feature after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedFeature {
    pub name: String,
    pub sql: String,
    pub kind: Option<FeatureKind>,
    pub pos: Pos,
}

/// A segment after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub name: String,
    pub by: SegmentBy,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SegmentBy {
    Column { column: String, max_values: usize },
    Predicate(String),
}

pub(super) fn derived_of(r: &mut Reporter, list: &[DerivedConfig], features: &[String]) -> Vec<DerivedFeature> {
    let mut out: Vec<DerivedFeature> = Vec::new();
    for d in list {
        let name = d.name.get_ref();
        if name.trim().is_empty() {
            r.at(d.name.span(), "a derived feature needs a name");
        }
        if features.contains(name) || out.iter().any(|o| &o.name == name) {
            r.at(d.name.span(), format!("\"{name}\" is already a feature"));
        }
        if d.sql.get_ref().trim().is_empty() {
            r.at(d.sql.span(), "sql is empty: write an expression such as \"income / (open_accounts + 1)\"");
        }
        let kind = super::model::kind_of(r, d.kind.as_ref());
        out.push(DerivedFeature { name: name.clone(), sql: d.sql.get_ref().clone(), kind, pos: r.pos(d.name.span()) });
    }
    out
}

pub(super) fn segments_of(r: &mut Reporter, list: &[SegmentConfig], features: &[String]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for s in list {
        let name = s.name.get_ref();
        if name.trim().is_empty() || name.contains('=') || name == crate::engine::window::ALL_SLICE {
            r.at(s.name.span(), format!("segment name \"{name}\" must be non-empty, without '=', and not \"all\""));
        }
        if out.iter().any(|o| &o.name == name) {
            r.at(s.name.span(), format!("segment \"{name}\" is defined twice"));
        }
        let by = match (&s.column, &s.predicate) {
            (Some(c), None) => {
                if !features.is_empty() && !features.contains(c.get_ref()) {
                    let known: Vec<&str> = features.iter().map(String::as_str).collect();
                    r.at(
                        c.span(),
                        format!("column \"{}\" is not a feature{}", c.get_ref(), suggestion(c.get_ref(), &known)),
                    );
                }
                let max_values = match &s.max_values {
                    Some(v) if *v.get_ref() < 1 || *v.get_ref() as usize > MAX_SEGMENT_VALUES => {
                        r.at(
                            v.span(),
                            format!(
                                "max_values must be 1 to {MAX_SEGMENT_VALUES} (each value is a set of series), got {}",
                                v.get_ref()
                            ),
                        );
                        10
                    }
                    Some(v) => *v.get_ref() as usize,
                    None => 10,
                };
                SegmentBy::Column { column: c.get_ref().clone(), max_values }
            }
            (None, Some(p)) => {
                if let Some(v) = &s.max_values {
                    r.at(v.span(), "max_values applies to column segments");
                }
                if p.get_ref().trim().is_empty() {
                    r.at(p.span(), "where is empty: write a predicate such as \"income > 100000\"");
                }
                SegmentBy::Predicate(p.get_ref().clone())
            }
            (Some(c), Some(_)) => {
                r.at(c.span(), "a segment is either by `column` or by `where`, not both: split it into two");
                SegmentBy::Column { column: c.get_ref().clone(), max_values: 10 }
            }
            (None, None) => {
                r.at(s.name.span(), format!("segment \"{name}\" needs `column = \"...\"` or `where = \"...\"`"));
                SegmentBy::Predicate("true".into())
            }
        };
        out.push(Segment { name: name.clone(), by, pos: r.pos(s.name.span()) });
    }
    out
}
