//! The `validate` command: every finding in a configuration, phases 1–3 from
//! [`config`](crate::adapters::config) and the last one here, each model against its
//! baseline (DataFusion reads, so not in the configuration's own module).

use std::path::Path;

use crate::adapters::config::{self, Config, Diagnostic, Pos};
use crate::engine::profile::FeatureKind;
use crate::engine::text::did_you_mean;

/// Validates the configuration at `path`, and with `baselines` each model against its
/// baseline; the findings come in file order (the agent file's first).
pub async fn validate(path: &Path, baselines: bool) -> (Option<Config>, Vec<Diagnostic>) {
    let (cfg, mut problems) = config::validate_file(path);
    if let (Some(cfg), true) = (&cfg, baselines) {
        problems.extend(check_baselines(cfg).await);
        config::sort_diagnostics(&mut problems, path);
    }
    (cfg, problems)
}

/// Phase 4: checks each model against its baseline — the file opens, the SQL filter is a
/// valid query, and every named feature and exclusion is a column with a fitting type.
async fn check_baselines(config: &Config) -> Vec<Diagnostic> {
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
