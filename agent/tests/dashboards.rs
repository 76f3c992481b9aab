//! The shipped Grafana dashboards against a real Prometheus that scrapes a real agent: the
//! agent reads a drifting stream with labels from a Tansu broker, Prometheus scrapes it every
//! second, and every panel query — with its dashboard's variables resolved through
//! `label_values` against that Prometheus, as Grafana would — must return a series with a
//! value. Every metric a dashboard reads must be one the agent registers.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::agent::{free_port, http_get, root, start_prometheus, wait_for};
use super::kafka::{Agent, Broker, DRIFT, OK, agent_config, credit_model, metric, nested, produce, spread};

const DASHBOARDS: [&str; 3] = ["driftwatch-overview", "driftwatch-model", "driftwatch-agent"];

fn dashboard(name: &str) -> Value {
    let path = root().join(format!("dashboards/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("dashboard JSON")
}

/// Every panel (rows hold none here, but a collapsed row would keep its own).
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, expression) of every query.
fn queries(d: &Value) -> Vec<(String, String)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().expect("every target has a PromQL expr").to_string()))
        })
        .collect()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn prometheus_api(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path).expect("Prometheus answers");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!((code, v["status"].as_str()), (200, Some("success")), "{path}: {body}");
    v
}

fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr.replace("$__rate_interval", "15s").replace("$__range", "10m").replace("$__interval", "1s");
    // Longer names first, so $model never eats the start of a $models.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${{{name}}}"), &vars[name]).replace(&format!("${name}"), &vars[name]);
    }
    out
}

/// The dashboard's variables, resolved in order as Grafana does: each `label_values(selector,
/// label)` through Prometheus's label-values API, choosing the first value — "All" (its
/// `allValue`) where the variable offers it, since that comes first.
fn resolve(d: &Value, prom: u16) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for v in d["templating"]["list"].as_array().expect("templating") {
        let name = v["name"].as_str().expect("name").to_string();
        if v["type"] == "datasource" {
            continue;
        }
        if v["includeAll"] == true {
            vars.insert(name, v["allValue"].as_str().unwrap_or(".*").to_string());
            continue;
        }
        assert_eq!(v["type"], "query", "variable {name}");
        let query = substitute(v["query"]["query"].as_str().expect("a Prometheus variable query"), &vars);
        let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values(...)");
        let (selector, label) = inner.rsplit_once(',').map_or(("", inner), |(s, l)| (s, l));
        let mut path = format!("/api/v1/label/{}/values", label.trim());
        if !selector.is_empty() {
            path += &format!("?match[]={}", encode(selector.trim()));
        }
        let values = prometheus_api(prom, &path);
        let first = values["data"][0].as_str().unwrap_or_else(|| panic!("variable {name}: {query} has no values"));
        vars.insert(name, first.to_string());
    }
    vars
}

/// The metric families an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = bytes[i..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        if word > 0 {
            let w = &expr[i..i + word];
            let boundary =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'$');
            if boundary && (w.starts_with("driftwatch_") || w.starts_with("process_")) {
                out.push(w.to_string());
            }
            i += word;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn dashboards_are_provisioning_json_and_read_only_agent_metrics() {
    let mut uids = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        assert!(d.get("__inputs").is_none(), "{name}: provisioning form has no __inputs");
        assert_eq!(d["uid"], name);
        uids.push(d["uid"].as_str().expect("uid").to_string());
        let defined: Vec<&str> =
            d["templating"]["list"].as_array().expect("vars").iter().filter_map(|v| v["name"].as_str()).collect();
        assert!(defined.contains(&"datasource"), "{name}: a Prometheus data-source variable");
        for p in panels(&d) {
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: panel {}", p["title"]);
                assert!(
                    p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                    "{name}: panel {} has no query",
                    p["title"]
                );
            }
        }
        let all = queries(&d);
        assert!(all.len() >= 10, "{name}: {} queries", all.len());
        for (title, expr) in all {
            for word in expr.split('$').skip(1) {
                let var: String = word.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(
                    var.starts_with("__") || defined.contains(&var.as_str()),
                    "{name}: panel {title} uses ${var}, which the dashboard does not define"
                );
            }
            for m in metric_names(&expr) {
                let family =
                    ["_bucket", "_sum", "_count"].iter().fold(m.as_str(), |m, s| m.strip_suffix(s).unwrap_or(m));
                assert!(
                    driftwatch::metrics::NAMES.contains(&family)
                        || driftwatch::metrics::PROCESS_NAMES.contains(&family),
                    "{name}: panel {title} reads {m}, which the agent does not export"
                );
            }
        }
    }
    // The links between them and the alert email's dashboard link name these uids.
    assert_eq!(uids, DASHBOARDS);
    let provider = std::fs::read_to_string(root().join("dashboards/provisioning/dashboards.yaml")).expect("provider");
    assert!(provider.contains("type: file") && provider.contains("apiVersion: 1"), "{provider}");
}

/// Type-checks each dashboard against Grafana's own dashboard types (npm `@grafana/schema`)
/// with `tsc --strict`: unknown keys, wrong types and invalid enum values are errors.
#[test]
fn dashboards_type_check_against_grafana_schema() {
    let tools = std::env::var_os("DRIFTWATCH_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/driftwatch-tools")
        })
        .join("npm/node_modules");
    assert!(tools.join(".bin/tsc").exists(), "{} is missing: run scripts/install-deps.sh", tools.display());
    let dir = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink(&tools, dir.path().join("node_modules")).expect("node_modules");
    let mut files = Vec::new();
    for name in DASHBOARDS {
        let json = std::fs::read_to_string(root().join(format!("dashboards/{name}.json"))).expect("dashboard");
        // JSON gives enum members as their values: `Json<T>` lets a value stand for its member.
        let ts = format!(
            "import type {{ Dashboard }} from \"@grafana/schema\";\n\
             type Json<T> = T extends string ? `${{T}}` : T extends object ? {{ [K in keyof T]: Json<T[K]> }} : T;\n\
             export const dashboard: Json<Dashboard> = {json};\n"
        );
        std::fs::write(dir.path().join(format!("{name}.ts")), ts).expect("ts");
        files.push(format!("\"{name}.ts\""));
    }
    std::fs::write(
        dir.path().join("tsconfig.json"),
        format!(
            "{{\"compilerOptions\": {{\"strict\": true, \"noEmit\": true, \"module\": \"esnext\", \"moduleResolution\": \"bundler\", \
             \"target\": \"es2022\", \"skipLibCheck\": true}}, \"files\": [{}]}}",
            files.join(", ")
        ),
    )
    .expect("tsconfig");
    let out = Command::new(tools.join(".bin/tsc"))
        .args(["-p", "tsconfig.json"])
        .current_dir(dir.path())
        .output()
        .expect("tsc runs (node is installed by scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "tsc found errors:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_panel_query_returns_series_from_a_real_prometheus_scraping_the_agent() {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    broker.create_topic("labels", 2);
    broker.create_topic("dead-letters", 1);
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let http = free_port();
    let reference = super::performance::labelled_reference(d);
    let model = format!(
        r#"[[model]]
id = "credit-risk"
baseline = {:?}
exclude = ["event_id", "label"]
topics = ["predictions"]
tests = ["ks", "chisquare", "psi"]

[model.window]
size = "1m"
idle_timeout = "3s"
expected_events = 300

[model.performance]
score = "score"
label = "label"

[model.labels]
topics = ["labels"]
horizon = "2m"

[[model.segment]]
name = "country"
column = "country"
max_values = 3

[[model.rule]]
name = "income-drift"
features = ["income"]
test = "ks"
warn = 0.05
critical = 0.001

[[model.rule]]
name = "accuracy-band"
performance = "accuracy"
learn = {{ chunks = 10, sigmas = 3 }}

[[model.rule]]
name = "null-spike"
quality = "null_rate"
learn = {{ chunks = 10, sigmas = 3 }}

[notify]
outbox = {:?}
"#,
        reference.display().to_string(),
        d.join("outbox").display().to_string()
    );
    let config = agent_config(d, &broker.addr(), http, "dead_letter_topic = \"dead-letters\"", &model);
    let agent = Agent::start(&config, http);
    // A second agent, alone in a cluster, for the cluster panels (its model sorts after
    // credit-risk, which the model dashboard shows first).
    broker.create_topic("shared", 3);
    let shared_dir = d.join("cluster");
    std::fs::create_dir_all(&shared_dir).expect("dir");
    let shared_http = free_port();
    let shared_model = format!("[cluster]\npartitions = 1\n\n{}", credit_model("credit-shared", "[\"shared\"]", ""));
    let shared_config = agent_config(&shared_dir, &broker.addr(), shared_http, "", &shared_model);
    let text =
        std::fs::read_to_string(&shared_config).expect("config").replace("driftwatch-test", "driftwatch-cluster");
    std::fs::write(&shared_config, text).expect("config");
    let shared_agent = Agent::start(&shared_config, shared_http);

    let started = chrono::Utc::now().timestamp();
    let (prom, _prometheus) = start_prometheus(
        d,
        &format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: driftwatch\n    static_configs:\n      - targets: ['127.0.0.1:{http}', '127.0.0.1:{shared_http}']\n"
        ),
    );
    // Traffic starts once Prometheus scrapes the agent, as in a running deployment.
    wait_for("Prometheus's first scrape of the agent", Duration::from_secs(60), || {
        let v = prometheus_api(prom, &format!("/api/v1/query?query={}", encode("up == 1")));
        v["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|_| ())
    });

    // Two clean minutes, then two drifting ones, all with labels; a few events that are not
    // JSON. The last window closes when the stream has been idle for idle_timeout.
    let mut predictions = nested(OK, "credit-risk", 0..300, 0);
    predictions.extend(nested(OK, "credit-risk", 300..600, 1));
    predictions.extend(nested(DRIFT, "credit-risk", 0..300, 2));
    predictions.extend(nested(DRIFT, "credit-risk", 300..600, 3));
    let labels: Vec<(&str, i32, Vec<u8>)> = predictions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let v: Value = serde_json::from_slice(p).expect("json");
            let score = v["features"]["score"].as_f64().expect("score");
            let time = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().expect("t")).expect("t");
            let label = u8::from((score >= 0.5) != (i % 7 == 0));
            let e = serde_json::json!({"model_id": "credit-risk", "event_id": v["event_id"],
                "timestamp": time.timestamp_millis() + 20_000, "label": label});
            ("labels", (i % 2) as i32, serde_json::to_vec(&e).expect("json"))
        })
        .collect();
    let shared: Vec<Vec<u8>> = (0..4)
        .flat_map(|minute| nested(if minute < 2 { OK } else { DRIFT }, "credit-shared", 0..300, minute))
        .collect();
    produce(&broker.addr(), &spread("shared", shared));
    let mut records = spread("predictions", predictions);
    records.extend((0..5).map(|i| ("predictions", i % 3, b"not json".to_vec())));
    produce(&broker.addr(), &records);
    produce(&broker.addr(), &labels);
    agent.wait(Duration::from_secs(90), "realised performance and a firing drift alert", |a| {
        let m = a.metrics();
        let realised = metric(
            &m,
            r#"driftwatch_performance{estimated="false",metric="accuracy",model="credit-risk",slice="all"}"#,
        );
        let firing = metric(
            &m,
            r#"driftwatch_alert_state{feature="income",model="credit-risk",rule="income-drift",severity="critical"}"#,
        );
        let lag = m.contains("driftwatch_kafka_consumer_lag{");
        (realised.is_some() && firing == Some(2.0) && lag).then_some(())
    });
    shared_agent.wait(Duration::from_secs(90), "the cluster agent's windows", |a| {
        (a.windows("credit-shared").len() >= 2).then_some(())
    });
    // Prometheus has scraped what the agent shows, a few times (rate() needs two samples).
    wait_for("Prometheus to scrape realised performance", Duration::from_secs(60), || {
        let v = prometheus_api(
            prom,
            &format!("/api/v1/query?query={}", encode(r#"driftwatch_performance{estimated="false"}"#)),
        );
        v["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(4));

    let end = chrono::Utc::now().timestamp();
    let mut checked = 0;
    let mut empty = Vec::new();
    for name in DASHBOARDS {
        let dash = dashboard(name);
        let vars = resolve(&dash, prom);
        for (title, expr) in queries(&dash) {
            let q = substitute(&expr, &vars);
            let path = format!("/api/v1/query_range?query={}&start={started}&end={end}&step=1", encode(&q));
            let v = prometheus_api(prom, &path);
            let series = v["data"]["result"].as_array().expect("matrix");
            let has_value = series.iter().any(|s| {
                s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p[1].as_str().and_then(|x| x.parse::<f64>().ok()).is_some_and(f64::is_finite))
            });
            if !has_value {
                empty.push(format!("{name} / {title}: {q}"));
            }
            checked += 1;
        }
    }
    assert!(
        empty.is_empty(),
        "panel queries without a series ({} of {checked}):\n{}\nagent log:\n{}",
        empty.len(),
        empty.join("\n"),
        agent.log()
    );
    assert!(checked >= 40, "{checked} queries");
    assert!(agent.stop().success());
    assert!(shared_agent.stop().success());
}
