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
