//! Performance metrics against their references: realised metrics against scikit-learn 1.9
//! (1e-9), CBPE estimates against NannyML 0.13 (issue: within 0.005; asserted tighter where
//! the computation is the same), on the data in `fixtures/performance/cases.json` (made by
//! `fixtures/performance/generate.py`).

use driftwatch::performance::{self, Cbpe};
use serde_json::Value;

fn cases() -> Value {
    let text = std::fs::read_to_string(crate::agent::root().join("fixtures/performance/cases.json")).expect("cases");
    serde_json::from_str(&text).expect("JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("0/1") == 1).collect()
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

#[test]
fn realised_metrics_match_scikit_learn() {
    let c = cases();
    let mut checked = 0;
    for e in c["edge_cases"].as_array().expect("edges") {
        let got = performance::classification(&bools(&e["label"]), &bools(&e["prediction"]), &floats(&e["score"]));
        for (name, want) in e["metrics"].as_object().expect("metrics") {
            let g = got.get(name.as_str()).copied().flatten();
            match want.as_f64() {
                None => assert_eq!(g, None, "{} {name}", e["name"]),
                Some(w) => assert!(g.is_some_and(|g| close(g, w, 1e-9)), "{} {name}: {g:?} vs {w}", e["name"]),
            }
            checked += 1;
        }
    }
    for case in c["cbpe"].as_array().expect("cbpe") {
        let a = &case["analysis"];
        let (s, p, y) = (floats(&a["score"]), bools(&a["prediction"]), bools(&a["label"]));
        for chunk in case["chunks"].as_array().expect("chunks") {
            let (lo, hi) =
                (chunk["start"].as_u64().expect("start") as usize, chunk["end"].as_u64().expect("end") as usize);
            let got = performance::classification(&y[lo..hi], &p[lo..hi], &s[lo..hi]);
            for m in performance::ESTIMATED {
                let want = chunk[m]["realized"].as_f64().expect("realised");
                let g = got[m].expect("defined");
                assert!(close(g, want, 1e-9), "{} {m} [{lo}, {hi}): {g} vs {want}", case["name"]);
                checked += 1;
            }
        }
    }
    let r = &c["regression"];
    let got = performance::regression(&floats(&r["actual"]), &floats(&r["predicted"]));
    for (name, want) in r["metrics"].as_object().expect("metrics") {
        let (g, w) = (got[name.as_str()].expect("defined"), want.as_f64().expect("number"));
        assert!(close(g, w, 1e-9), "{name}: {g} vs {w}");
        checked += 1;
    }
    assert!(checked >= 80, "{checked}");
}

#[test]
fn cbpe_estimates_match_nannyml() {
    let c = cases();
    for case in c["cbpe"].as_array().expect("cbpe") {
        let name = case["name"].as_str().expect("name");
        let r = &case["reference"];
        let (rs, rp, ry) = (floats(&r["score"]), bools(&r["prediction"]), bools(&r["label"]));
        let nannyml_calibrates = case["needs_calibration"].as_bool().expect("bool");
        // With NannyML's calibration decision: the same numbers.
        let cbpe = Cbpe::fit_calibrated(&rs, &rp, &ry, nannyml_calibrates);
        let a = &case["analysis"];
        let (s, p) = (floats(&a["score"]), bools(&a["prediction"]));
        let ours = Cbpe::fit(&rs, &rp, &ry);
        for chunk in case["chunks"].as_array().expect("chunks") {
            let (lo, hi) =
                (chunk["start"].as_u64().expect("start") as usize, chunk["end"].as_u64().expect("end") as usize);
            let got = cbpe.estimate(&s[lo..hi], &p[lo..hi]);
            let own = ours.estimate(&s[lo..hi], &p[lo..hi]);
            for m in performance::ESTIMATED {
                let want = chunk[m]["estimated"].as_f64().expect("estimate");
                let g = got[m].value;
                assert!((g - want).abs() <= 1e-9, "{name} {m} [{lo}, {hi}): {g} vs NannyML {want}");
                let se = chunk[m]["sampling_error"].as_f64().expect("sampling error");
                let gs = got[m].sampling_error;
                // The ROC AUC's components rank tied scores in NumPy's (unstable) argsort order.
                let tol = if m == "roc_auc" { 1e-5 } else { 1e-9 };
                assert!((gs - se).abs() <= tol * se, "{name} {m} sampling error: {gs} vs {se}");
                // Our own decision: the same where calibration clearly helps.
                if ours.calibrator.is_some() == nannyml_calibrates {
                    assert!((own[m].value - want).abs() <= 0.005, "{name} {m}: {} vs {want}", own[m].value);
                }
            }
        }
    }
}

#[test]
fn cbpe_calibrates_overconfident_scores_and_not_calibrated_ones() {
    let c = cases();
    for (case, expected) in c["cbpe"].as_array().expect("cbpe").iter().zip([false, true]) {
        let r = &case["reference"];
        let cbpe = Cbpe::fit(&floats(&r["score"]), &bools(&r["prediction"]), &bools(&r["label"]));
        assert_eq!(cbpe.calibrator.is_some(), expected, "{}", case["name"]);
    }
    // NannyML agrees where it matters: the overconfident scores need calibration.
    assert_eq!(c["cbpe"][1]["needs_calibration"], true);
}

/// Writes columns as CSV.
fn write_csv(path: &std::path::Path, names: &[&str], columns: &[Vec<String>]) {
    let mut text = names.join(",") + "\n";
    for i in 0..columns[0].len() {
        let row: Vec<&str> = columns.iter().map(|c| c[i].as_str()).collect();
        text += &(row.join(",") + "\n");
    }
    std::fs::write(path, text).expect("csv");
}

/// A feature column, so that the check has something to compare besides the outputs.
fn feature(lo: usize, hi: usize) -> Vec<String> {
    (lo..hi).map(|i| ((i * 7919) % 100).to_string()).collect()
}

fn texts(v: &Value, lo: usize, hi: usize) -> Vec<String> {
    v.as_array().expect("array")[lo..hi].iter().map(|x| x.to_string()).collect()
}

#[test]
fn check_reports_realised_metrics_with_labels_and_nannyml_estimates_without() {
    let c = cases();
    let case = &c["cbpe"][1];
    assert_eq!(case["name"], "overconfident");
    let dir = tempfile::tempdir().expect("tmp");
    let (r, a) = (&case["reference"], &case["analysis"]);
    let n = r["score"].as_array().expect("scores").len();
    write_csv(
        &dir.path().join("reference.csv"),
        &["x", "score", "pred", "label"],
        &[feature(0, n), texts(&r["score"], 0, n), texts(&r["prediction"], 0, n), texts(&r["label"], 0, n)],
    );
    let chunk = &case["chunks"][3];
    let (lo, hi) = (chunk["start"].as_u64().expect("start") as usize, chunk["end"].as_u64().expect("end") as usize);
    write_csv(
        &dir.path().join("labelled.csv"),
        &["x", "score", "pred", "label"],
        &[feature(lo, hi), texts(&a["score"], lo, hi), texts(&a["prediction"], lo, hi), texts(&a["label"], lo, hi)],
    );
    write_csv(
        &dir.path().join("unlabelled.csv"),
        &["x", "score", "pred"],
        &[feature(lo, hi), texts(&a["score"], lo, hi), texts(&a["prediction"], lo, hi)],
    );
    let run = |current: &str| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["check", "--format", "json", "--label-column", "label", "--score-column", "score"])
            .args(["--prediction-column", "pred", "--reference"])
            .arg(dir.path().join("reference.csv"))
            .arg("--current")
            .arg(dir.path().join(current))
            .output()
            .expect("driftwatch runs");
        assert!(out.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        // The label, score and prediction are outputs, never drift features.
        assert!(
            report["features"].as_array().expect("features").is_empty() || report["features"][0]["name"] != "label"
        );
        report["performance"].clone()
    };
    let realised = run("labelled.csv");
    assert_eq!(realised["estimated"], false);
    assert_eq!(realised["rows"], (hi - lo) as u64);
    for m in performance::ESTIMATED {
        let want = chunk[m]["realized"].as_f64().expect("sklearn");
        assert!((realised[m].as_f64().expect(m) - want).abs() < 1e-9, "{m}: {realised} vs {want}");
    }
    for m in ["log_loss", "brier"] {
        assert!(realised[m].as_f64().is_some(), "{m} with scores: {realised}");
    }
    let estimated = run("unlabelled.csv");
    assert_eq!(estimated["estimated"], true);
    assert_eq!(estimated["calibrated"], true);
    for m in performance::ESTIMATED {
        let want = chunk[m]["estimated"].as_f64().expect("NannyML");
        assert!((estimated[m].as_f64().expect(m) - want).abs() < 1e-9, "{m}: {estimated} vs NannyML {want}");
        let se = chunk[m]["sampling_error"].as_f64().expect("NannyML");
        assert!((estimated["sampling_error"][m].as_f64().expect(m) - se).abs() < 1e-5 * se, "{m} sampling error");
    }
}

#[test]
fn check_reports_regression_metrics_and_refuses_non_binary_labels() {
    let c = cases();
    let r = &c["regression"];
    let n = r["actual"].as_array().expect("actual").len();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("data.csv");
    write_csv(&path, &["x", "y", "yhat"], &[feature(0, n), texts(&r["actual"], 0, n), texts(&r["predicted"], 0, n)]);
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["check", "--format", "json", "--reference"])
            .arg(&path)
            .arg("--current")
            .arg(&path)
            .args(extra)
            .output()
            .expect("driftwatch runs")
    };
    let out = run(&["--task", "regression", "--label-column", "y", "--prediction-column", "yhat"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for (name, want) in r["metrics"].as_object().expect("metrics") {
        let got = report["performance"][name].as_f64().expect(name);
        let want = want.as_f64().expect("number");
        assert!(close(got, want, 1e-9), "{name}: {got} vs {want}");
    }
    // Numbers are not classes: a clear error, exit 2.
    let out = run(&["--label-column", "y", "--prediction-column", "yhat"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("binary classification needs 0/1") && err.contains("--task regression"), "{err}");
}

/// The credit reference with a label drawn from its score (P(label = 1) = score²: the
/// scores are overconfident, so calibration matters), deterministic per row.
pub fn labelled_reference(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(crate::agent::root().join("fixtures/credit/reference.csv")).expect("csv");
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out += &format!("{line},label\n");
            continue;
        }
        let score: f64 = line.rsplit(',').next().and_then(|s| s.parse().ok()).expect("score");
        let mut state = i as u64;
        let u = driftwatch::rng::splitmix(&mut state) as f64 / u64::MAX as f64;
        out += &format!("{line},{}\n", u8::from(u < score * score));
    }
    let path = dir.join("reference_labelled.csv");
    std::fs::write(&path, out).expect("write");
    path
}

#[test]
fn windows_carry_label_free_performance_estimates_and_performance_rules_fire() {
    let dir = tempfile::tempdir().expect("tmp");
    let reference = labelled_reference(dir.path());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[model]]
id = "credit-risk"
baseline = {:?}
exclude = ["event_id", "label"]

[model.window]
size = "10m"

[model.performance]
score = "score"
label = "label"

[[model.rule]]
name = "accuracy-drop"
performance = "accuracy"
warn = 0.99
critical = 0.5
"#,
            reference.display().to_string()
        ),
    )
    .expect("config");
    let events = crate::agent::credit_events("fixtures/credit/current_drift.csv", "credit-risk");
    let (evaluations, metrics) = crate::agent::run_pipeline(&config, &events);
    assert_eq!(evaluations.len(), 4);

    // The same estimate, computed directly from the baseline and the window's scores.
    let text = std::fs::read_to_string(&reference).expect("csv");
    let (mut rs, mut ry) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        rs.push(c[6].parse::<f64>().expect("score"));
        ry.push(c[7] == "1");
    }
    let rp: Vec<bool> = rs.iter().map(|s| *s >= 0.5).collect();
    let cbpe = Cbpe::fit(&rs, &rp, &ry);
    assert!(cbpe.calibrator.is_some(), "overconfident scores are calibrated");
    let current = std::fs::read_to_string(crate::agent::root().join("fixtures/credit/current_drift.csv")).expect("csv");
    let scores: Vec<f64> =
        current.lines().skip(1).take(600).map(|l| l.rsplit(',').next().expect("s").parse().expect("f")).collect();
    let want = cbpe.estimate(&scores, &scores.iter().map(|s| *s >= 0.5).collect::<Vec<_>>());
    let first = &evaluations[0].report.as_ref().expect("evaluated").performance;
    assert_eq!(first.estimated, Some(true));
    assert_eq!(first.rows, Some(600));
    for m in performance::ESTIMATED {
        let got = first.metrics[m].expect(m);
        assert!((got - want[m].value).abs() < 1e-12, "{m}: {got} vs {}", want[m].value);
        assert!((first.sampling_error[m] - want[m].sampling_error).abs() < 1e-12);
    }
    let line = format!(
        "driftwatch_performance{{estimated=\"true\",metric=\"accuracy\",model=\"credit-risk\",slice=\"all\"}} {}",
        first.metrics["accuracy"].expect("accuracy")
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("driftwatch_performance{") && l.contains("metric=\"accuracy\"")),
        "{metrics}"
    );
    let _ = line;
    assert!(
        metrics
            .contains("driftwatch_performance_sampling_error{metric=\"roc_auc\",model=\"credit-risk\",slice=\"all\"}"),
        "{metrics}"
    );
    // Drifted features are ranked by their likely effect on accuracy, most harmful first,
    // and the alert carries the ranking.
    let report = evaluations[0].report.as_ref().expect("evaluated");
    let mut drifted: Vec<&str> = report.features.iter().filter(|f| f.drift).map(|f| f.name.as_str()).collect();
    let mut ranked: Vec<&str> = report.impact.iter().map(|i| i.feature.as_str()).collect();
    assert!(!drifted.is_empty(), "the fixture drifts");
    drifted.sort();
    ranked.sort();
    assert_eq!(ranked, drifted);
    assert!(report.impact.windows(2).all(|w| w[0].accuracy_change <= w[1].accuracy_change), "{:?}", report.impact);
    assert!(report.impact.iter().all(|i| i.accuracy_change.is_finite() && i.accuracy_change.abs() < 1.0));
    assert_eq!(evaluations[0].notices()[0].impact, report.impact);
    // Estimated accuracy below 0.99 in the first window: the rule fires once, as a warning.
    let fired: Vec<_> = evaluations.iter().flat_map(|e| e.notices()).collect();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].rule.as_str(), fired[0].feature.as_str()), ("accuracy-drop", "_all"));
    assert_eq!(fired[0].target, "accuracy");
    assert!(
        metrics.contains(
            r#"driftwatch_alert_state{feature="_all",model="credit-risk",rule="accuracy-drop",severity="warning"} 2"#
        ),
        "{metrics}"
    );
}

#[test]
fn page_hinkley_signals_where_river_does() {
    use driftwatch::detect::{PageHinkley, Side};
    let c = cases();
    let mut signals = 0;
    for case in c["page_hinkley"].as_array().expect("page_hinkley") {
        let side = match case["mode"].as_str().expect("mode") {
            "up" => Side::Up,
            "down" => Side::Down,
            _ => Side::Both,
        };
        let threshold = case["threshold"].as_f64().expect("threshold");
        let delta = case["delta"].as_f64().expect("delta");
        let mut ph = PageHinkley::new(30, delta, threshold, 1.0 - 1e-4, side);
        let got: Vec<u64> =
            floats(&case["values"]).iter().enumerate().filter(|(_, v)| ph.update(**v)).map(|(i, _)| i as u64).collect();
        let want: Vec<u64> =
            case["detected"].as_array().expect("detected").iter().map(|v| v.as_u64().expect("i")).collect();
        assert_eq!(got, want, "{} {} threshold {threshold} delta {delta}", case["series"], case["mode"]);
        signals += want.len();
    }
    assert!(signals >= 8, "the cases include changes: {signals}");
}

/// A pipeline for `setups` reading predictions from topic 0 and labels from topic 1; with
/// its shared state and every evaluation it makes.
#[allow(clippy::type_complexity)]
fn labelled_pipeline(
    setups: Vec<driftwatch::pipeline::ModelSetup>,
) -> (
    driftwatch::pipeline::Pipeline,
    std::sync::Arc<driftwatch::status::Shared>,
    std::sync::Arc<std::sync::Mutex<Vec<driftwatch::evaluate::Evaluation>>>,
) {
    use driftwatch::status::{Shared, Status};
    use std::sync::{Arc, Mutex};
    let shared = Arc::new(Shared::new(driftwatch::metrics::Metrics::new().expect("metrics"), Status::default()));
    let readers = vec![setups[0].model.id.clone()];
    let mut pipeline =
        driftwatch::pipeline::Pipeline::new(setups, std::slice::from_ref(&readers), 1 << 20, shared.clone())
            .expect("pipeline");
    pipeline.read_labels(&readers, 1 << 20).expect("labels");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    pipeline.observe(Box::new(move |e| sink.lock().expect("lock").push(e.clone())));
    (pipeline, shared, seen)
}

#[test]
fn labels_joined_by_event_id_give_realised_metrics_per_window_and_realised_rules_fire() {
    use driftwatch::chunk::Chunk;

    let dir = tempfile::tempdir().expect("tmp");
    let reference = labelled_reference(dir.path());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[model]]
id = "credit-risk"
baseline = {:?}
exclude = ["event_id", "label"]

[model.window]
size = "10m"

[model.performance]
score = "score"
label = "label"

[model.labels]
topics = ["labels"]
horizon = "5m"

[[model.rule]]
name = "realised-accuracy"
performance = "accuracy"
value = "realised"
warn = 0.9
"#,
            reference.display().to_string()
        ),
    )
    .expect("config");
    let (mut pipeline, shared, seen) = labelled_pipeline(crate::agent::load_setups(&config));

    // Predictions one second apart; the label of event j arrives with prediction j + 200
    // (event time: then). Every 60th event is never labelled; in the third window 40 % of
    // the labels disagree with the prediction.
    let events = crate::agent::credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    let scores: Vec<f64> = std::fs::read_to_string(crate::agent::root().join("fixtures/credit/current_ok.csv"))
        .expect("csv")
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().expect("score").parse().expect("number"))
        .collect();
    let unlabelled = |j: usize| j % 60 == 7;
    let flipped = |j: usize| (1200..1800).contains(&j) && j % 5 < 2;
    let label_event = |j: usize| {
        let id = events[j].split("\"event_id\":\"").nth(1).and_then(|s| s.split('"').next()).expect("id");
        let label = u8::from((scores[j] >= 0.5) != flipped(j));
        let time = crate::agent::T0 + (j as i64 + 200) * 1000;
        format!(r#"{{"model_id":"credit-risk","event_id":"{id}","timestamp":{time},"label":{label}}}"#)
    };
    let n = events.len();
    let mut offsets = [0i64; 2];
    let mut push = |chunk: &mut Chunk, topic: u16, payload: &str| {
        chunk.push(topic, 0, offsets[topic as usize], None, payload.as_bytes());
        offsets[topic as usize] += 1;
    };
    for step in 0..(n + 200).div_ceil(100) {
        let mut chunk = Chunk::default();
        for event in events.iter().skip(step * 100).take(100) {
            push(&mut chunk, 0, event);
        }
        for i in step * 100..step * 100 + 100 {
            if i >= 200 && i - 200 < n && !unlabelled(i - 200) {
                push(&mut chunk, 1, &label_event(i - 200));
            }
        }
        if step == 0 {
            // Labels for predictions that never come.
            for k in 0..5 {
                let t = crate::agent::T0 + 100_000;
                push(
                    &mut chunk,
                    1,
                    &format!(r#"{{"model_id":"credit-risk","event_id":"ghost-{k}","timestamp":{t},"label":1}}"#),
                );
            }
            push(&mut chunk, 1, r#"{"model_id":"credit-risk","event_id":"x","timestamp":1,"label":"maybe"}"#);
        }
        pipeline.process(&chunk, std::time::Instant::now());
    }
    pipeline.finish();
    let evaluations = seen.lock().expect("lock").clone();
    let realised: Vec<_> = evaluations
        .iter()
        .filter(|e| e.report.as_ref().is_some_and(|r| r.performance.estimated == Some(false)))
        .collect();
    let starts: Vec<i64> = realised.iter().map(|e| (e.start - crate::agent::T0) / 60_000).collect();
    assert_eq!(starts, vec![0, 10, 20, 30]);
    for (w, e) in realised.iter().enumerate() {
        let range = w * 600..((w + 1) * 600).min(n);
        let labelled: Vec<usize> = range.filter(|&j| !unlabelled(j)).collect();
        let wrong = labelled.iter().filter(|&&j| flipped(j)).count();
        let p = &e.report.as_ref().expect("report").performance;
        assert_eq!(p.rows, Some(labelled.len() as u64), "window {w}");
        let accuracy = 1.0 - wrong as f64 / labelled.len() as f64;
        assert_eq!(p.metrics["accuracy"], Some(accuracy), "window {w}");
        // The same figures scikit-learn-parity code gives on the window's pairs.
        let labels: Vec<bool> = labelled.iter().map(|&j| (scores[j] >= 0.5) != flipped(j)).collect();
        let s: Vec<f64> = labelled.iter().map(|&j| scores[j]).collect();
        let want = performance::classification(&labels, &s.iter().map(|x| *x >= 0.5).collect::<Vec<_>>(), &s);
        for (name, value) in want {
            assert_eq!(p.metrics[name], value, "window {w} {name}");
        }
    }
    // The realised rule fires on the third window and resolves on the fourth.
    let transitions: Vec<(i64, &str)> = realised
        .iter()
        .flat_map(|e| {
            e.notices().into_iter().map(move |n| ((e.start - crate::agent::T0) / 60_000, n.transition.as_str()))
        })
        .collect();
    assert_eq!(transitions, vec![(20, "firing"), (30, "resolved")]);
    // Estimated windows never feed the realised rule.
    assert!(
        evaluations.iter().filter(|e| !realised.iter().any(|r| std::ptr::eq(*r, *e))).all(|e| e.notices().is_empty())
    );

    let metrics = shared.metrics.encode();
    let matched = (0..n).filter(|&j| !unlabelled(j)).count();
    // The newest prediction is at 1999 s: what is older than 1699 s and unlabelled expired.
    let expired = (0..1699).filter(|&j| unlabelled(j)).count();
    for (outcome, count) in [
        ("matched", matched),
        ("prediction_expired", expired),
        ("label_expired", 5),
        ("invalid_label", 1),
        ("evicted", 0),
    ] {
        let line = format!(r#"driftwatch_labels_total{{model="credit-risk",outcome="{outcome}"}} {count}"#);
        assert!(metrics.contains(&line), "missing {line}\n{metrics}");
    }
    assert!(
        metrics.contains(
            r#"driftwatch_performance{estimated="false",metric="accuracy",model="credit-risk",slice="all"} 1"#
        )
    );
    assert!(
        metrics
            .contains(r#"driftwatch_performance{estimated="true",metric="accuracy",model="credit-risk",slice="all"}"#)
    );
}

#[test]
fn regression_labels_give_realised_error_metrics_per_window() {
    use driftwatch::chunk::Chunk;

    let dir = tempfile::tempdir().expect("tmp");
    // The credit reference with a numeric target: the "score" column is the prediction.
    let text = std::fs::read_to_string(crate::agent::root().join("fixtures/credit/reference.csv")).expect("csv");
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let y = if i == 0 { "y".to_string() } else { line.rsplit(',').next().expect("s").to_string() };
        out += &format!("{line},{y}\n");
    }
    let reference = dir.path().join("reference.csv");
    std::fs::write(&reference, out).expect("write");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\", \"y\"]\n[model.window]\nsize = \"10m\"\n\
             [model.performance]\nscore = \"score\"\nlabel = \"y\"\ntask = \"regression\"\n\
             [model.labels]\ntopics = [\"labels\"]\nhorizon = \"5m\"\n\
             [[model.rule]]\nname = \"mae\"\nperformance = \"mae\"\nvalue = \"realised\"\nwarn = 0.05\n",
            reference.display().to_string()
        ),
    )
    .expect("config");
    let setups = crate::agent::load_setups(&config);
    assert!(setups[0].cbpe.is_none(), "no estimation for regression");
    let (mut pipeline, shared, seen) = labelled_pipeline(setups);

    // The truth is the prediction plus 0.01 in the first window, plus 0.1·(j mod 3) after.
    let events = crate::agent::credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    let predicted: Vec<f64> = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).expect("json")["features"]["score"].as_f64().expect("score"))
        .collect();
    let truth = |j: usize| predicted[j] + if j < 600 { 0.01 } else { 0.1 * (j % 3) as f64 };
    let mut chunk = Chunk::default();
    for (j, e) in events.iter().enumerate() {
        chunk.push(0, 0, j as i64, None, e.as_bytes());
        let id = format!("{}", serde_json::from_str::<Value>(e).expect("json")["event_id"]);
        let label = format!(r#"{{"model_id":"credit-risk","event_id":{id},"timestamp":1,"label":{}}}"#, truth(j));
        chunk.push(1, 0, j as i64, None, label.as_bytes());
    }
    pipeline.process(&chunk, std::time::Instant::now());
    pipeline.finish();
    let evaluations = seen.lock().expect("lock").clone();
    let realised: Vec<_> = evaluations
        .iter()
        .filter(|e| e.report.as_ref().is_some_and(|r| r.performance.estimated == Some(false)))
        .collect();
    assert_eq!(realised.len(), 4);
    for (w, e) in realised.iter().enumerate() {
        let range = w * 600..((w + 1) * 600).min(events.len());
        let actual: Vec<f64> = range.clone().map(truth).collect();
        let want = performance::regression(&actual, &predicted[range]);
        let got = &e.report.as_ref().expect("report").performance.metrics;
        for (name, value) in want {
            assert_eq!(got[name], value, "window {w} {name}");
        }
    }
    let transitions: Vec<&str> =
        realised.iter().flat_map(|e| e.notices().into_iter().map(|n| n.transition.as_str())).collect();
    assert_eq!(transitions, ["firing"], "MAE 0.01 then 0.1: fires on the second window and stays");
    let metrics = shared.metrics.encode();
    assert!(
        metrics.contains(r#"driftwatch_performance{estimated="false",metric="mae",model="credit-risk",slice="all"}"#)
    );
}

#[test]
fn a_margin_below_the_baseline_sets_the_threshold_from_the_baselines_labels() {
    let dir = tempfile::tempdir().expect("tmp");
    let reference = labelled_reference(dir.path());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\", \"label\"]\n\
             [model.performance]\nscore = \"score\"\nlabel = \"label\"\n\
             [[model.rule]]\nname = \"accuracy-drop\"\nperformance = \"accuracy\"\nbaseline_margin = 0.05\n\
             [[model.rule]]\nname = \"loss-rise\"\nperformance = \"log_loss\"\nvalue = \"realised\"\nbaseline_margin = 0.1\n",
            reference.display().to_string()
        ),
    )
    .expect("config");
    let text = std::fs::read_to_string(&reference).expect("csv");
    let (mut s, mut y) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        s.push(c[6].parse::<f64>().expect("score"));
        y.push(c[7] == "1");
    }
    let want = performance::classification(&y, &s.iter().map(|v| *v >= 0.5).collect::<Vec<_>>(), &s);
    let setups = crate::agent::load_setups(&config);
    let rules = &setups[0].model.rules;
    assert_eq!(rules[0].warn, Some(want["accuracy"].expect("accuracy") - 0.05));
    assert_eq!(rules[1].warn, Some(want["log_loss"].expect("log loss") + 0.1), "errors rise: the margin is added");
}
