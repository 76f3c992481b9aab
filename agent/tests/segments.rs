//! Derived features (SQL expressions compiled once, evaluated on every live batch) and
//! segments: the window gives what `check` gives on the same events, feature for feature.

use std::path::Path;

use driftwatch::check;
use driftwatch::report::Report;

use driftwatch::config;
use driftwatch::plan::Plan;

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

fn check(config_path: &Path, current: &str) -> Report {
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
    let names = |r: &Report| r.features.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
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

#[test]
fn a_segment_that_drifts_while_the_whole_does_not_is_found_in_its_slice() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(
        dir.path(),
        "[[model.feature]]\nname = \"income\"\n[[model.feature]]\nname = \"age\"\n\
         [[model.feature]]\nname = \"country\"\ntype = \"categorical\"\n\n\
         [[model.segment]]\nname = \"country\"\ncolumn = \"country\"\nmax_values = 3\n\n\
         [[model.segment]]\nname = \"young\"\nwhere = \"age < 30\"\n",
    );
    // The same incomes, dealt out again: Polish applicants get the highest ones. The whole
    // sees the very same values; Poland does not.
    let mut events: Vec<serde_json::Value> = credit_events("fixtures/credit/current_ok.csv", "credit-risk")
        .iter()
        .map(|e| serde_json::from_str(e).expect("json"))
        .collect();
    let mut incomes: Vec<f64> = events.iter().filter_map(|e| e["features"]["income"].as_f64()).collect();
    incomes.sort_by(|a, b| b.total_cmp(a));
    let polish =
        events.iter().filter(|e| e["features"]["country"] == "PL" && !e["features"]["income"].is_null()).count();
    let (mut top, mut rest) = (incomes[..polish].iter().copied(), incomes[polish..].iter().copied());
    for e in &mut events {
        if e["features"]["income"].is_null() {
            continue;
        }
        let v = if e["features"]["country"] == "PL" { top.next() } else { rest.next() };
        e["features"]["income"] = serde_json::json!(v.expect("value"));
    }
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let clean = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    let (evaluations, metrics) = run_pipeline(&config, &events);
    let (clean_evaluations, _) = run_pipeline(&config, &clean);
    assert_eq!(evaluations.len(), 1);
    let e = &evaluations[0];
    let whole = e.report.as_ref().expect("report");
    let income = |r: &Report| r.features.iter().find(|f| f.name == "income").cloned().expect("income");
    // The whole is untouched, value for value.
    assert_eq!(income(whole).tests, income(clean_evaluations[0].report.as_ref().expect("report")).tests);
    assert!(!income(whole).drift);
    // Slices: the three most frequent countries of the baseline, the rest, and the predicate.
    let names: Vec<&str> = e.slices.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["country=DE", "country=FR", "country=NL", "country=__other__", "young"]);
    let other = &e.slices[3].1;
    assert!(income(other).drift, "Poland is in __other__ and its incomes moved: {:?}", income(other).tests);
    let slice_events: u64 = e.slices[..4].iter().map(|(_, r)| r.current.rows).sum();
    assert_eq!(slice_events, 2000, "each event is in one country slice");
    assert!(
        metrics.contains(
            r#"driftwatch_drift_detected{feature="income",model="credit-risk",slice="country=__other__",test="ks"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"driftwatch_drift_detected{feature="income",model="credit-risk",slice="all",test="ks"} 0"#)
    );
    assert!(
        metrics
            .contains(r#"driftwatch_quality_ratio{check="null_rate",feature="age",model="credit-risk",slice="young"}"#)
    );
}

/// The values a segment keeps apart are the key's true most frequent values, the same on
/// every load, though the baseline (over DataFusion's 10 MB repartitioning threshold) is read
/// in parallel and the key has far more distinct values than the category cap.
#[test]
fn segment_values_are_the_true_top_values_on_every_load() {
    use std::fmt::Write as _;
    let dir = tempfile::tempdir().expect("tmp");
    let baseline = dir.path().join("baseline.csv");
    let mut text = String::from("key,x,pad\n");
    let pad = "p".repeat(100);
    // 120 000 keys seen once, and 12 heavy ones (h00 … h11) 3 to 14 times each, spread
    // through the file; the segment keeps the top 10 apart.
    let heavy: Vec<(String, usize)> = (0..12).map(|i| (format!("h{i:02}"), 3 + i)).collect();
    let mut heavy_rows: Vec<&str> = heavy.iter().flat_map(|(k, n)| std::iter::repeat_n(k.as_str(), *n)).collect();
    heavy_rows.reverse();
    for i in 0..120_000 {
        let _ = writeln!(text, "k{i},{},{pad}", i % 97);
        if i % 90 == 0
            && let Some(k) = heavy_rows.pop()
        {
            let _ = writeln!(text, "{k},{},{pad}", i % 89);
        }
    }
    for k in heavy_rows {
        let _ = writeln!(text, "{k},1,{pad}");
    }
    std::fs::write(&baseline, text).expect("baseline");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[model]]\nid = \"m\"\nbaseline = {:?}\nexclude = [\"pad\"]\n\
             [[model.feature]]\nname = \"key\"\ntype = \"categorical\"\n\
             [[model.segment]]\nname = \"key\"\ncolumn = \"key\"\nmax_values = 10\n",
            baseline.display().to_string()
        ),
    )
    .expect("config");
    let cfg = config::load(&config).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut expected: Vec<String> = heavy.iter().rev().map(|(k, _)| k.clone()).collect();
    expected.truncate(10);
    for run in 0..3 {
        let setup = rt.block_on(driftwatch::setup::load_model(&cfg.models[0])).expect("model");
        assert_eq!(setup.segment_values[0], expected, "load {run}");
        let key = setup.baseline.spec.features.iter().position(|f| f.name == "key").expect("key");
        let counts = &setup.baseline.profile.features[key].categories;
        assert_eq!(counts.get("h11"), Some(&14), "exact count of the top value, load {run}");
        assert_eq!(counts.values().sum::<u64>(), 120_000 + heavy.iter().map(|h| h.1 as u64).sum::<u64>());
    }
}
