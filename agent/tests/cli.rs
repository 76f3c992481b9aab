//! The `driftwatch` binary as a user runs it: exit codes, the JSON contract, artefacts, and a
//! clear message naming the file and column for every kind of bad input.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use serde_json::Value;

const REFERENCE: &str = "fixtures/credit/reference.csv";
const CURRENT_OK: &str = "fixtures/credit/current_ok.csv";
const CURRENT_DRIFT: &str = "fixtures/credit/current_drift.csv";

fn driftwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftwatch")).args(args).output().expect("driftwatch runs")
}

/// `check` of a credit batch against the credit reference, event ids excluded, plus `extra`.
fn check_credit(current: &str, extra: &[&str]) -> Output {
    let mut args = vec!["check", "--reference", REFERENCE, "--current", current, "--exclude", "event_id"];
    args.extend_from_slice(extra);
    driftwatch(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn write_parquet(file: &Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).expect("batch");
    let mut w = ArrowWriter::try_new(std::fs::File::create(file).expect("create"), schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn zero_config_check_exit_codes_follow_dataset_drift() {
    let ok = check_credit(CURRENT_OK, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let drift = check_credit(CURRENT_DRIFT, &[]);
    assert_eq!(drift.status.code(), Some(1), "{}", stderr(&drift));
    let table = String::from_utf8_lossy(&drift.stdout);
    assert!(table.contains("DATASET DRIFT"), "{table}");
    assert!(!table.contains('\x1b'), "no colour when piped: {table}");
    // Drifted features are listed first.
    let first = table.lines().nth(4).unwrap_or_default();
    assert!(first.ends_with("DRIFT"), "first feature row should be a drifted one: {first}");
}

#[test]
fn json_report_has_the_contract_shape() {
    let o = check_credit(CURRENT_DRIFT, &["--format", "json", "--test", "ks,psi", "--threshold", "psi=0.2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["model"], "reference");
    assert_eq!(r["reference"]["rows"], 5000);
    assert_eq!(r["current"]["rows"], 2000);
    assert_eq!(r["drift"]["total_features"], 6);
    assert_eq!(r["drift"]["detected"], true);
    let share = r["drift"]["share"].as_f64().expect("share");
    assert_eq!(share, r["drift"]["drifted_features"].as_f64().expect("count") / 6.0);
    let features = r["features"].as_array().expect("features");
    let income = features.iter().find(|f| f["name"] == "income").expect("income");
    assert_eq!(income["type"], "numerical");
    let tests: Vec<&str> =
        income["tests"].as_array().expect("tests").iter().map(|t| t["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["ks", "psi"]);
    let psi = &income["tests"][1];
    assert_eq!(psi["threshold"], 0.2);
    assert!(psi["p_value"].is_null());
    assert_eq!(psi["drift"], psi["statistic"].as_f64().unwrap() >= 0.2);
    let ks = &income["tests"][0];
    assert_eq!(ks["drift"], ks["p_value"].as_f64().unwrap() < 0.05);
    // income has 8 % missing values in the drifted batch (see fixtures/credit/generate.py).
    let nulls = income["quality"]["null_rate"].as_f64().unwrap();
    assert!((0.05..0.11).contains(&nulls), "{nulls}");
    assert!(income["quality"]["new_category_rate"].is_null());
    // ks and psi do not both fit country: only psi runs there.
    let country = features.iter().find(|f| f["name"] == "country").expect("country");
    assert_eq!(country["tests"].as_array().unwrap().len(), 1);
    assert!(country["quality"]["new_category_rate"].as_f64().is_some());
}

#[test]
fn fdr_replaces_per_test_thresholds_for_p_values() {
    let o = check_credit(CURRENT_DRIFT, &["--format", "json", "--test", "ks,cvm", "--fdr", "0.01"]);
    let r = json(&o);
    // country is listed, but no numerical test fits it, so it does not count in the share.
    assert_eq!(r["features"].as_array().unwrap().len(), 6);
    assert_eq!(r["drift"]["total_features"], 5);
    for f in r["features"].as_array().unwrap() {
        for t in f["tests"].as_array().unwrap() {
            let adjusted = t["p_adjusted"].as_f64().expect("adjusted p-value with --fdr");
            assert!(adjusted >= t["p_value"].as_f64().unwrap());
            assert_eq!(t["drift"], adjusted < 0.01);
        }
    }
}

#[test]
fn artefact_gives_the_same_report_as_the_training_data() {
    let dir = tmp();
    let artefact = path(dir.path(), "credit.dwb");
    let built =
        driftwatch(&["baseline", "build", "--reference", REFERENCE, "--output", &artefact, "--exclude", "event_id"]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let out = String::from_utf8_lossy(&built.stdout);
    assert!(out.contains("sha256 ") && out.contains("5000 rows"), "{out}");
    let all_tests = "ks,wasserstein,psi,jensenshannon,kl,hellinger,chisquare,tvd,anderson,cvm,mannwhitney,ttest,energy";
    let run = |reference: &str| {
        let o = driftwatch(&[
            "check", "--reference", reference, "--current", CURRENT_DRIFT, "--exclude", "event_id", "--format", "json",
            "--test", all_tests,
        ]);
        let mut r = json(&o);
        r["model"] = Value::Null; // the name is taken from the file name
        r
    };
    assert_eq!(run(REFERENCE), run(&artefact));

    // A damaged artefact is refused with the reason.
    let mut bytes = std::fs::read(&artefact).expect("artefact");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x55;
    let damaged = path(dir.path(), "damaged.dwb");
    std::fs::write(&damaged, bytes).expect("write");
    let o = driftwatch(&["check", "--reference", &damaged, "--current", CURRENT_OK, "--exclude", "event_id"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("damaged.dwb"), "{}", stderr(&o));
}

#[test]
fn configured_form_uses_the_models_features_and_tests() {
    let o = driftwatch(&[
        "check", "--config", "rules/agent.toml", "--model", "credit-risk", "--current", CURRENT_DRIFT, "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["model"], "credit-risk");
    let names: Vec<&str> = r["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["age", "income", "debt_ratio", "country", "open_accounts"]);
    let income = &r["features"][1];
    let tests: Vec<&str> = income["tests"].as_array().unwrap().iter().map(|t| t["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["ks", "psi", "wasserstein"]);
    assert_eq!(income["tests"][0]["threshold"], 0.01);
    let accounts = &r["features"][4];
    assert_eq!(accounts["type"], "categorical");

    let unknown =
        driftwatch(&["check", "--config", "rules/agent.toml", "--model", "credit-risc", "--current", CURRENT_OK]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("did you mean \"credit-risk\"?"), "{}", stderr(&unknown));
}

#[test]
fn parquet_and_ndjson_inputs_with_declared_types() {
    let dir = tmp();
    let reference = path(dir.path(), "ref.parquet");
    let current = path(dir.path(), "cur.ndjson");
    let labels: Vec<i64> = (0..400).map(|i| i % 3).collect();
    let values: Vec<f64> = (0..400).map(|i| (i as f64 * 0.37).sin()).collect();
    write_parquet(
        Path::new(&reference),
        vec![
            ("label", Arc::new(Int64Array::from(labels)) as ArrayRef),
            ("value", Arc::new(Float64Array::from(values)) as ArrayRef),
        ],
    );
    let mut nd = String::new();
    for i in 0..300 {
        nd.push_str(&format!("{{\"label\": {}, \"value\": {}}}\n", (i % 4).min(2), (i as f64 * 0.37).sin() + 0.5));
    }
    std::fs::write(&current, nd).expect("write");
    let o = driftwatch(&[
        "check", "--reference", &reference, "--current", &current, "--categorical", "label", "--format", "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json(&o);
    let label = &r["features"][0];
    assert_eq!(label["type"], "categorical");
    assert_eq!(label["tests"][0]["test"], "chisquare");
    let value = &r["features"][1];
    assert_eq!(value["tests"][0]["test"], "ks");
    assert_eq!(value["drift"], true);
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let dir = tmp();
    let cases: Vec<(Vec<String>, Vec<&str>)> = {
        let not_parquet = path(dir.path(), "broken.parquet");
        std::fs::write(&not_parquet, "this is not parquet").expect("write");
        let empty = path(dir.path(), "empty.csv");
        std::fs::write(&empty, "event_id,age,income,debt_ratio,country,open_accounts,score\n").expect("write");
        let extra = path(dir.path(), "extra.csv");
        std::fs::write(&extra, "age,income,debt_ratio,country,open_accounts,score,segment\n40,1.0,0.1,DE,2,0.5,x\n")
            .expect("write");
        let missing = path(dir.path(), "missing.csv");
        std::fs::write(&missing, "age,debt_ratio,country,open_accounts,score\n40,0.1,DE,2,0.5\n").expect("write");
        let retyped = path(dir.path(), "retyped.csv");
        std::fs::write(&retyped, "age,income,debt_ratio,country,open_accounts,score\nforty,1.0,0.1,DE,2,0.5\n")
            .expect("write");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        vec![
            (s(&["--current", "no/such/file.csv"]), vec!["no/such/file.csv", "cannot read"]),
            (s(&["--current", &not_parquet]), vec!["broken.parquet", "not a Parquet file"]),
            (s(&["--current", &empty]), vec!["empty.csv", "no rows"]),
            (s(&["--current", &extra]), vec!["extra.csv", "\"segment\"", "not in the reference"]),
            (s(&["--current", &missing]), vec!["missing.csv", "\"income\"", "is missing"]),
            (s(&["--current", &retyped]), vec!["retyped.csv", "\"age\"", "categorical here but numerical"]),
            (s(&["--current", CURRENT_OK, "--test", "psy"]), vec!["did you mean \"psi\"?"]),
            (s(&["--current", CURRENT_OK, "--threshold", "ks=2"]), vec!["ks=2", "(0, 1)"]),
            (s(&["--current", CURRENT_OK, "--columns", "incme"]), vec!["\"incme\"", "did you mean \"income\"?"]),
        ]
    };
    for (extra_args, needles) in cases {
        let mut args = vec!["check", "--reference", REFERENCE, "--exclude", "event_id"];
        args.extend(extra_args.iter().map(String::as_str));
        let o = driftwatch(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: expected {n:?} in {err}");
        }
    }
}

#[test]
fn degenerate_columns_give_null_with_a_reason_never_nan() {
    let dir = tmp();
    let reference = path(dir.path(), "ref.csv");
    let current = path(dir.path(), "cur.csv");
    std::fs::write(&reference, "constant,empty\n1,\n1,\n1,\n1,\n").expect("write");
    std::fs::write(&current, "constant,empty\n1,\n1,\n1,\n").expect("write");
    let o = driftwatch(&[
        "check", "--reference", &reference, "--current", &current, "--numerical", "constant,empty", "--test",
        "ks,anderson,ttest,psi", "--format", "json",
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(!text.contains("NaN") && !text.contains("nan"), "{text}");
    let r = json(&o);
    let constant = &r["features"][0]["tests"];
    assert_eq!(constant[0]["statistic"], 0.0); // ks on identical constants
    assert!(constant[1]["statistic"].is_null() && constant[1]["reason"].as_str().is_some()); // anderson
    let empty = &r["features"][1]["tests"];
    for t in empty.as_array().unwrap() {
        assert!(t["statistic"].is_null(), "{t}");
        assert_eq!(t["drift"], false);
        assert!(t["reason"].as_str().unwrap().contains("no non-missing values"), "{t}");
    }
    assert_eq!(r["features"][1]["quality"]["null_rate"], 1.0);
}

#[test]
fn help_explains_the_commands() {
    let o = driftwatch(&["check", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in ["--reference", "--current", "--threshold", "--fdr", "exit 0 no drift"] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn columns_of_other_types_are_skipped_with_a_note() {
    let dir = tmp();
    let (reference, current) = (path(dir.path(), "ref.ndjson"), path(dir.path(), "cur.ndjson"));
    let rows = |shift: f64| -> String {
        (0..50).map(|i| format!("{{\"x\": {}, \"tags\": [1, 2]}}\n", i as f64 + shift)).collect()
    };
    std::fs::write(&reference, rows(0.0)).expect("write");
    std::fs::write(&current, rows(0.5)).expect("write");
    let o = driftwatch(&["check", "--reference", &reference, "--current", &current, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("column \"tags\" is not compared"), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["drift"]["total_features"], 1);
    assert!(r["notes"][0].as_str().unwrap().contains("tags"));
}

#[test]
fn html_report_is_a_self_contained_page() {
    let dir = tmp();
    let page = path(dir.path(), "report.html");
    let o = check_credit(CURRENT_DRIFT, &["--format", "html", "--output", &page]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "the report goes to --output");
    let html = std::fs::read_to_string(&page).expect("page written");
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("DATASET DRIFT") && html.contains(">income</a></td>"), "{html}");
    // Its one script (table sorting) is inline; nothing is loaded from elsewhere.
    assert!(!html.contains("src=") && !html.contains("<link") && !html.contains("href=\"http"), "external resources");
    assert_eq!(html.matches("<tr class=").count(), 6, "one row per feature and test");
}

/// A replay configuration over the credit rows as events, in a temporary folder.
fn replay_config(dir: &Path, events: &[String], extra: &str) -> String {
    std::fs::write(dir.join("events.ndjson"), events.join("\n") + "\n").expect("events");
    let baseline = std::fs::canonicalize(REFERENCE).expect("reference");
    let text = format!(
        "[agent]\nlisten = \"127.0.0.1:0\"\n\n[source]\nkind = \"replay\"\npath = \"events.ndjson\"\n\n\
         [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\", \"score\"]\n{extra}\n",
        baseline.display().to_string()
    );
    let config = dir.join("agent.toml");
    std::fs::write(&config, text).expect("config");
    config.to_string_lossy().into_owned()
}

#[test]
fn run_replays_a_file_evaluates_every_window_and_exits() {
    let dir = tmp();
    let events = super::agent::credit_events(CURRENT_DRIFT, "credit-risk");
    let config = replay_config(dir.path(), &events, "[model.window]\nsize = \"10m\"\n");
    let out = driftwatch(&["run", "--config", &config]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(!log.contains('\x1b'), "no terminal colours in a log file: {log}");
    let closed: Vec<&str> = log.lines().filter(|l| l.contains("window closed")).collect();
    assert_eq!(closed.len(), 4, "{log}");
    for (line, events) in closed.iter().zip(["events=600", "events=600", "events=600", "events=200"]) {
        assert!(line.contains(events) && line.contains("verdict=\"drift\""), "{line}");
    }
    assert!(log.contains("replay finished lines=2000"), "{log}");
}

#[test]
fn run_explains_what_is_missing() {
    let out = driftwatch(&["run", "--config", "rules/agent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no [source] table; add one with kind = \"kafka\""), "{}", stderr(&out));
    let out = driftwatch(&["run", "--config", "fixtures/config/invalid/streaming.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("streaming.toml:6:8: a kafka source needs `brokers`"), "{}", stderr(&out));
    // A bad event never stops a replay: it is counted and the rest goes on.
    let dir = tmp();
    let mut events = super::agent::credit_events(CURRENT_OK, "credit-risk");
    events.insert(10, "{not json".into());
    let config = replay_config(dir.path(), &events, "[model.window]\nsize = \"1h\"\n");
    let out = driftwatch(&["run", "--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("reason=\"not_json\""), "{}", stderr(&out));
    assert!(stderr(&out).contains("events=2000"), "{}", stderr(&out));
}

#[test]
fn a_paced_replay_follows_event_time() {
    let dir = tmp();
    // Four seconds of event time at speed 4: about one second of wall-clock time.
    let mut events = super::agent::credit_events(CURRENT_OK, "credit-risk");
    events.truncate(5);
    let config = replay_config(dir.path(), &events, "[model.window]\nsize = \"1m\"\n");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("path = \"events.ndjson\"", "path = \"events.ndjson\"\nspeed = 4.0");
    std::fs::write(&config, text).expect("config");
    let started = std::time::Instant::now();
    let out = driftwatch(&["run", "--config", &config]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(took >= std::time::Duration::from_millis(950), "paced: {took:?}");
    assert!(took < std::time::Duration::from_secs(10), "paced: {took:?}");
    assert!(stderr(&out).contains("events=5"), "{}", stderr(&out));
}
