//! Golden data-quality scenarios: streams with a known number of type errors, schema
//! errors, duplicates, out-of-range values and constraint violations give exactly those
//! ratios per window, in the report, in `/metrics` and to the rules.

use std::path::Path;

use driftwatch::check::{self};

use driftwatch::config;
use driftwatch::plan::Plan;

use crate::agent::{credit_events, root, run_pipeline};

/// A model with declared constraints, required fields, unknown-field and duplicate checks,
/// and quality rules; ten-minute windows.
fn quality_config(dir: &Path) -> std::path::PathBuf {
    let baseline = root().join("fixtures/credit/reference.csv");
    let text = format!(
        r#"[source]
kind = "replay"
path = "events.ndjson"

[[model]]
id = "credit-risk"
baseline = {baseline:?}
exclude = ["event_id", "debt_ratio", "open_accounts", "score"]

[[model.feature]]
name = "age"
min = 18
max = 100

[[model.feature]]
name = "income"

[[model.feature]]
name = "country"
type = "categorical"
allowed = ["DE", "ES", "FR", "NL", "PL"]
pattern = "[A-Z]{{2}}"

[model.quality]
required = ["age"]
unknown_fields = true
duplicate_horizon = "1h"

[model.window]
size = "10m"

[[model.rule]]
name = "duplicates"
quality = "duplicate_rate"
warn = 0.01

[[model.rule]]
name = "wrong-types"
quality = "type_error_rate"
warn = 0.01

[[model.rule]]
name = "invalid-country"
quality = "constraint_violation_rate"
features = "country"
warn = 0.01
"#,
        baseline = baseline.display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn set(event: &str, from: &str, to: &str) -> String {
    assert!(event.contains(from), "{from} not in {event}");
    event.replacen(from, to, 1)
}

/// Replaces the value of `"key":` up to the next `,` or `}`.
fn replace_value(event: &str, key: &str, value: &str) -> String {
    let at = event.find(&format!("\"{key}\":")).expect("key") + key.len() + 3;
    let end = at + event[at..].find([',', '}']).expect("end");
    format!("{}{value}{}", &event[..at], &event[end..])
}

#[test]
fn golden_quality_scenario_gives_exact_ratios_per_window() {
    let mut events = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    // Window 0 (rows 0..600) gets every kind of problem, in disjoint rows; window 1 none.
    for e in &mut events[10..40] {
        *e = replace_value(e, "age", "\"old\"");
    }
    for e in &mut events[50..62] {
        let without = replace_value(e, "age", "0");
        *e = set(&without, "\"age\":0,", "");
    }
    for e in &mut events[70..76] {
        *e = set(e, "\"features\":{", "\"features\":{\"colour\":\"red\",");
    }
    for e in &mut events[80..95] {
        *e = replace_value(e, "age", "150");
    }
    for e in &mut events[100..109] {
        *e = replace_value(e, "country", "\"de\"");
    }
    // Twenty events sent twice (a producer retry), within the same window.
    let repeats: Vec<String> = events[200..220].to_vec();
    events.splice(301..301, repeats);

    let dir = tempfile::tempdir().expect("tmp");
    let (evaluations, metrics) = run_pipeline(&quality_config(dir.path()), &events);
    let counts: Vec<u64> = evaluations.iter().map(|e| e.events).collect();
    assert_eq!(counts, vec![600, 600, 600, 200], "duplicates are not events");

    let w0 = evaluations[0].report.as_ref().expect("report");
    let feature = |r: &driftwatch::report::Report, name: &str| {
        r.features.iter().find(|f| f.name == name).cloned().expect("feature")
    };
    let age = feature(w0, "age");
    assert_eq!(age.quality.type_error_rate, Some(30.0 / 600.0));
    // Absent ages are nulls (and schema errors); wrong-typed ones are not nulls.
    assert_eq!(age.quality.null_rate, Some(12.0 / 600.0));
    assert_eq!(age.quality.out_of_range_rate, Some(15.0 / 600.0), "outside the declared 18..100");
    let country = feature(w0, "country");
    assert_eq!(country.quality.constraint_violation_rate, Some(9.0 / 600.0));
    assert_eq!(country.quality.new_category_rate, Some(9.0 / 600.0));
    assert_eq!(feature(w0, "income").quality.constraint_violation_rate, None, "nothing declared");
    assert_eq!(w0.quality["schema_error_rate"], 18.0 / 600.0);
    assert_eq!(w0.quality["duplicate_rate"], 20.0 / 620.0);

    let w1 = evaluations[1].report.as_ref().expect("report");
    let age1 = feature(w1, "age");
    assert_eq!(
        (age1.quality.type_error_rate, age1.quality.null_rate, age1.quality.out_of_range_rate),
        (Some(0.0), Some(0.0), Some(0.0))
    );
    assert_eq!((w1.quality["schema_error_rate"], w1.quality["duplicate_rate"]), (0.0, 0.0));

    // The rules fire on window 0 and resolve on window 1.
    let transitions = |i: usize| -> Vec<(String, String, String)> {
        let mut t: Vec<_> = evaluations[i]
            .notices()
            .iter()
            .map(|n| (n.rule.clone(), n.feature.clone(), n.transition.as_str().to_string()))
            .collect();
        t.sort();
        t
    };
    let fired = |rule: &str, feature: &str, t: &str| (rule.to_string(), feature.to_string(), t.to_string());
    assert_eq!(
        transitions(0),
        vec![
            fired("duplicates", "_all", "firing"),
            fired("invalid-country", "country", "firing"),
            fired("wrong-types", "age", "firing"),
        ]
    );
    assert_eq!(
        transitions(1),
        vec![
            fired("duplicates", "_all", "resolved"),
            fired("invalid-country", "country", "resolved"),
            fired("wrong-types", "age", "resolved"),
        ]
    );

    // The last window's values are exported; every drop is counted by reason.
    assert!(metrics.contains(r#"driftwatch_events_total{model="credit-risk",outcome="duplicate"} 20"#), "{metrics}");
    assert!(metrics.contains(r#"driftwatch_events_total{model="credit-risk",outcome="accepted"} 2000"#), "{metrics}");
    for check in ["type_error_rate", "null_rate", "out_of_range_rate"] {
        let line =
            format!(r#"driftwatch_quality_ratio{{check="{check}",feature="age",model="credit-risk",slice="all"}} 0"#);
        assert!(metrics.contains(&line), "missing {line}");
    }
    for check in ["schema_error_rate", "duplicate_rate"] {
        let line =
            format!(r#"driftwatch_quality_ratio{{check="{check}",feature="_all",model="credit-risk",slice="all"}} 0"#);
        assert!(metrics.contains(&line), "missing {line}");
    }
    assert!(metrics.contains(r#"check="freshness_seconds",feature="_all""#));
}

#[test]
fn check_reports_declared_constraints_for_batch_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config::load(&quality_config(dir.path())).expect("config");
    let current = dir.path().join("current.csv");
    let text = std::fs::read_to_string(root().join("fixtures/credit/current_ok.csv")).expect("csv");
    // Four rows: one age outside 18..100, one country outside the allowed list.
    let rows: Vec<String> = text.lines().take(5).map(str::to_string).collect();
    let mut rows = rows;
    rows[1] =
        rows[1].splitn(3, ',').enumerate().map(|(i, c)| if i == 1 { "140" } else { c }).collect::<Vec<_>>().join(",");
    rows[2] = rows[2]
        .replacen(",DE,", ",Deutschland,", 1)
        .replacen(",FR,", ",Deutschland,", 1)
        .replacen(",NL,", ",Deutschland,", 1)
        .replacen(",ES,", ",Deutschland,", 1)
        .replacen(",PL,", ",Deutschland,", 1);
    std::fs::write(&current, rows.join("\n") + "\n").expect("write");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let report =
        rt.block_on(check::run(&cfg.models[0].baseline, &current, &Plan::from_model(&cfg.models[0]))).expect("check");
    let json: serde_json::Value = serde_json::to_value(&report).expect("json");
    let quality = |name: &str| {
        json["features"].as_array().expect("features").iter().find(|f| f["name"] == name).expect("feature")["quality"]
            .clone()
    };
    assert_eq!(quality("age")["out_of_range_rate"], 0.25);
    assert_eq!(quality("age")["type_error_rate"], 0.0);
    assert_eq!(quality("country")["constraint_violation_rate"], 0.25);
    assert_eq!(quality("country")["new_category_rate"], 0.25);
    assert!(quality("income")["constraint_violation_rate"].is_null());
}

#[test]
fn learned_bands_come_from_baseline_chunks_and_flag_a_null_spike() {
    let dir = tempfile::tempdir().expect("tmp");
    // The reference with debt_ratio missing in every 20th row, and every 10th row of
    // rows 2000..2500: chunk null rates vary around 5.5 %.
    let text = std::fs::read_to_string(root().join("fixtures/credit/reference.csv")).expect("csv");
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let row = i.wrapping_sub(1);
        let blank = i > 0 && (row % 20 == 0 || ((2000..2500).contains(&row) && row % 10 == 0));
        if blank {
            let mut c: Vec<&str> = line.split(',').collect();
            c[3] = "";
            out += &(c.join(",") + "\n");
        } else {
            out += &(line.to_string() + "\n");
        }
    }
    let reference = dir.path().join("reference.csv");
    std::fs::write(&reference, out).expect("write");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\"]\n\
             [model.window]\nsize = \"10m\"\n\
             [[model.rule]]\nname = \"unusual-nulls\"\nquality = \"null_rate\"\nlearn = {{ chunks = 10, sigmas = 3 }}\n",
            reference.display().to_string()
        ),
    )
    .expect("config");
    // The band, computed here from the chunks' null rates (population standard deviation).
    let rates: Vec<f64> = (0..10)
        .map(|c| {
            let blank =
                (c * 500..(c + 1) * 500).filter(|r| r % 20 == 0 || ((2000..2500).contains(r) && r % 10 == 0)).count();
            blank as f64 / 500.0
        })
        .collect();
    let mean = rates.iter().sum::<f64>() / 10.0;
    let sd = (rates.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / 10.0).sqrt();
    let setups = crate::agent::load_setups(&config);
    let bands = &setups[0].model.rules[0].bands;
    let (lo, hi) = bands["debt_ratio"];
    assert!((lo - (mean - 3.0 * sd)).abs() < 1e-12 && (hi - (mean + 3.0 * sd)).abs() < 1e-12, "{bands:?}");
    assert_eq!(bands["age"], (0.0, 0.0), "no nulls in any chunk");

    // Window 0: no nulls (below the band is fine for a rate); window 1: 30 % nulls.
    let mut events = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    for (i, e) in events.iter_mut().enumerate().skip(600).take(600) {
        if i % 10 < 3 {
            *e = replace_value(e, "debt_ratio", "null");
        }
    }
    let (evaluations, _) = run_pipeline(&config, &events);
    let fired: Vec<(usize, String, String)> = evaluations
        .iter()
        .enumerate()
        .flat_map(|(w, e)| {
            e.notices().into_iter().map(move |n| (w, n.feature.clone(), n.transition.as_str().to_string()))
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            (1, "debt_ratio".to_string(), "firing".to_string()),
            (2, "debt_ratio".to_string(), "resolved".to_string())
        ]
    );
    let notice = &evaluations[1].notices()[0];
    assert_eq!(notice.threshold, Some(hi), "the notice shows the band's edge");
}

#[test]
fn a_schema_break_shows_as_schema_errors_and_nulls_from_the_window_it_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let baseline = root().join("fixtures/credit/reference.csv");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\"]\n\
             [model.quality]\nrequired = [\"*\"]\nunknown_fields = true\n[model.window]\nsize = \"10m\"\n\
             [[model.rule]]\nname = \"schema\"\nquality = \"schema_error_rate\"\nwarn = 0.01\ncritical = 0.5\n",
            baseline.display().to_string()
        ),
    )
    .expect("config");
    // From the second window on, the producer renames income to annual_income.
    let mut events = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    for e in events.iter_mut().skip(600) {
        *e = set(e, "\"income\":", "\"annual_income\":");
    }
    let (evaluations, _) = run_pipeline(&config, &events);
    let rate = |w: usize, check: &str| evaluations[w].report.as_ref().expect("report").quality[check];
    let income_nulls = |w: usize| {
        let r = evaluations[w].report.as_ref().expect("report");
        r.features.iter().find(|f| f.name == "income").expect("income").quality.null_rate
    };
    // Before: a few null incomes (present, so no schema error).
    assert_eq!(rate(0, "schema_error_rate"), 0.0);
    assert!(income_nulls(0).is_some_and(|r| r > 0.0 && r < 0.02));
    for w in 1..4 {
        assert_eq!((rate(w, "schema_error_rate"), income_nulls(w)), (1.0, Some(1.0)), "window {w}");
    }
    let n = &evaluations[1].notices();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].severity, n[0].transition.as_str()), (driftwatch::rules::Severity::Critical, "firing"));
}
