//! Derived features (SQL expressions compiled once, evaluated on every live batch) and
//! segments: the window gives what `check` gives on the same events, feature for feature.

use std::path::Path;

use driftwatch::check::{self, Plan};
use driftwatch::config;

use crate::agent::{credit_events, root, run_pipeline};

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let baseline = root().join("fixtures/credit/reference.csv");
    let text = format!(
        "[source]\nkind = \"replay\"\npath = \"events.ndjson\"\n\n[[model]]\nid = \"credit-risk\"\nbaseline = {:?}\n\
         exclude = [\"event_id\"]\ntests = [\"ks\", \"psi\", \"chisquare\"]\n\n[model.window]\nsize = \"1h\"\n\n{extra}",
        baseline.display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn check(config_path: &Path, current: &str) -> check::Report {
    let cfg = config::load(config_path).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(check::run(&cfg.models[0].baseline, &root().join(current), &Plan::from_model(&cfg.models[0])))
        .expect("check")
}

#[test]
fn derived_features_are_computed_on_windows_exactly_as_on_batch_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(
        dir.path(),
        "[[model.derived]]\nname = \"income_per_account\"\nsql = \"income / (open_accounts + 1)\"\n\n\
         [[model.derived]]\nname = \"region\"\nsql = \"CASE WHEN country IN ('DE', 'NL') THEN 'north' ELSE 'south' END\"\n",
    );
    let events = credit_events("fixtures/credit/current_drift.csv", "credit-risk");
    let (evaluations, metrics) = run_pipeline(&config, &events);
    assert_eq!(evaluations.len(), 1);
    let window = evaluations[0].report.as_ref().expect("report");
    let checked = check(&config, "fixtures/credit/current_drift.csv");
    let names = |r: &check::Report| r.features.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert!(names(window).contains(&"income_per_account".to_string()), "{:?}", names(window));
    assert_eq!(names(window), names(&checked));
    for (w, c) in window.features.iter().zip(&checked.features) {
        assert_eq!(w.kind, c.kind, "{}", w.name);
        assert_eq!(w.tests, c.tests, "{}: window and check agree on the derived feature too", w.name);
    }
    let region = window.features.iter().find(|f| f.name == "region").expect("region");
    assert_eq!(region.kind, driftwatch::profile::FeatureKind::Categorical);
    assert!(
        metrics.contains(
            r#"driftwatch_drift_statistic{feature="income_per_account",model="credit-risk",slice="all",test="ks"}"#
        ),
        "{metrics}"
    );
}

#[test]
fn a_derived_feature_over_an_unknown_column_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path(), "[[model.derived]]\nname = \"bad\"\nsql = \"incme * 2\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["check", "--config"])
        .arg(&config)
        .args(["--model", "credit-risk", "--current"])
        .arg(root().join("fixtures/credit/current_ok.csv"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("incme"), "{err}");
}
