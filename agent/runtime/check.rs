//! `driftwatch check`: one comparison of a batch (Parquet, CSV or NDJSON) with a baseline,
//! and its renderings — JSON (the contract pipelines consume, DESIGN section 7) or a table
//! for people (drifted features first, colour on a terminal); HTML is [`crate::runtime::html`].
//!
//! The reference and current data go through the same profile code as the streaming agent;
//! features are compared in parallel.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::adapters::baseline::{BaselineError, Format, read_schema};
use crate::adapters::reference::{
    CheckError, ReferenceColumns, join, load_baseline, performance, read_and_profile, read_reference,
};
use crate::engine::plan::Plan;
use crate::engine::plan::compare;
use crate::engine::profile::Baseline;
use crate::engine::report::{FeatureReport, Report};
use crate::engine::text::{fmt_num, truncate};

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

/// The report as pretty JSON.
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A table for people: verdict first, drifted features first, one line per test.
pub fn to_table(report: &Report, colour: bool) -> String {
    let paint = |code: &str, s: &str| {
        if colour { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    };
    let mut out = String::new();
    let d = &report.drift;
    let verdict = if d.detected { paint("1;31", "DATASET DRIFT") } else { paint("1;32", "no dataset drift") };
    let _ = writeln!(
        out,
        "{}: {verdict} — {} of {} features drifted ({:.1}%, threshold {:.0}%)",
        report.model,
        d.drifted_features,
        d.total_features,
        d.share * 100.0,
        d.drift_share * 100.0
    );
    let _ = writeln!(out, "reference {} rows, current {} rows\n", report.reference.rows, report.current.rows);
    let header = format!(
        "{:<24} {:<12} {:<14} {:>12} {:>11} {:>9} {:>7}  {}",
        "feature", "type", "test", "statistic", "p-value", "threshold", "nulls", "verdict"
    );
    let _ = writeln!(out, "{}", paint("1", &header));
    let mut order: Vec<&FeatureReport> = report.features.iter().collect();
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
    let p = &report.performance;
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
