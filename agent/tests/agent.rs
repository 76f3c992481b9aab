//! The streaming pipeline in process (decode → windows → evaluate) against `driftwatch
//! check`, and the agent binary's HTTP interface checked by promtool.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch::check::{self};

use driftwatch::chunk::Chunk;
use driftwatch::config;
use driftwatch::evaluate::Evaluation;
use driftwatch::metrics::Metrics;
use driftwatch::pipeline::Pipeline;
use driftwatch::plan::Plan;
use driftwatch::setup::load_models;
use driftwatch::status::{Shared, Status};

/// 2026-11-27T00:00:00Z, a whole hour.
pub const T0: i64 = 1_795_737_600_000;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The credit CSV rows as prediction events, one second apart from `T0`, in the default
/// event shape (features nested, RFC 3339 time).
pub fn credit_events(csv: &str, model: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(csv)).expect("csv");
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let c: Vec<&str> = line.split(',').collect();
            let num = |s: &str| if s.is_empty() { "null".to_string() } else { s.to_string() };
            let time = chrono::DateTime::from_timestamp_millis(T0 + i as i64 * 1000)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            format!(
                r#"{{"model_id":"{model}","event_id":"{}","timestamp":"{time}","features":{{"age":{},"income":{},"debt_ratio":{},"country":"{}","open_accounts":{},"score":{}}},"prediction":{{"score":{}}}}}"#,
                c[0],
                num(c[1]),
                num(c[2]),
                num(c[3]),
                c[4],
                c[5],
                c[6],
                c[6]
            )
        })
        .collect()
}

/// `rules/agent.toml` (a model with a filter, per-feature tests, bins and thresholds) with an
/// absolute baseline path, a window section and a replay source.
fn credit_config(dir: &Path, window: &str) -> PathBuf {
    let rules = std::fs::read_to_string(root().join("rules/agent.toml")).expect("rules");
    let baseline = root().join("fixtures/credit/reference.csv");
    let text = rules.replace("\"../fixtures/credit/reference.csv\"", &format!("{:?}", baseline.display().to_string()));
    let text = format!("[source]\nkind = \"replay\"\npath = \"events.ndjson\"\n\n{text}\n[model.window]\n{window}\n");
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The models of a configuration file, loaded as the agent loads them.
pub fn load_setups(config_path: &Path) -> Vec<driftwatch::pipeline::ModelSetup> {
    let cfg = config::load(config_path).expect("valid config");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(load_models(&cfg)).expect("baselines")
}

/// Runs events through a pipeline built from a configuration; returns every evaluation and
/// the metrics text.
pub fn run_pipeline(config_path: &Path, events: &[String]) -> (Vec<Evaluation>, String) {
    let cfg = config::load(config_path).expect("valid config");
    let setups = load_setups(config_path);
    let shared = Arc::new(Shared::new(Metrics::new().expect("metrics"), Status::default()));
    let readers: Vec<String> = cfg.models.iter().map(|m| m.id.clone()).collect();
    let mut pipeline = Pipeline::new(setups, &[readers], 1 << 20, shared.clone()).expect("pipeline");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    pipeline.observe(Box::new(move |e| sink.lock().expect("lock").push(e.clone())));
    // Several chunks, as a source would send them.
    for (n, part) in events.chunks(700).enumerate() {
        let mut chunk = Chunk::default();
        for (i, e) in part.iter().enumerate() {
            chunk.push(0, 0, (n * 700 + i) as i64, None, e.as_bytes());
        }
        pipeline.process(&chunk, Instant::now());
    }
    pipeline.finish();
    let evaluations = seen.lock().expect("lock").clone();
    (evaluations, shared.metrics.encode())
}

#[test]
fn a_window_gives_the_same_report_as_check_on_the_same_events() {
    let dir = tempfile::tempdir().expect("tmp");
    let config_path = credit_config(dir.path(), "size = \"1h\"");
    let events = credit_events("fixtures/credit/current_drift.csv", "credit-risk");
    let (evaluations, _) = run_pipeline(&config_path, &events);
    assert_eq!(evaluations.len(), 1, "2000 events one second apart fill one hour window");
    let window = evaluations[0].report.as_ref().expect("tested");
    assert_eq!((evaluations[0].start, evaluations[0].end), (T0, T0 + 3_600_000));

    let cfg = config::load(&config_path).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let checked = rt
        .block_on(check::run(
            &cfg.models[0].baseline,
            &root().join("fixtures/credit/current_drift.csv"),
            &Plan::from_model(&cfg.models[0]),
        ))
        .expect("check");
    assert!(checked.drift.detected, "the fixture drifts");
    // The window adds what only a stream has (schema, duplicates, lateness, freshness); the
    // rest is identical.
    let mut window_json: serde_json::Value = serde_json::to_value(window).expect("JSON");
    let mut extra = window_json.as_object_mut().expect("object").remove("quality").expect("window quality");
    // The events are from 2026-11-27, read now: their age is the time since then.
    let freshness = extra.as_object_mut().and_then(|q| q.remove("freshness_seconds")).and_then(|v| v.as_f64());
    let age = (chrono::Utc::now().timestamp_millis() - T0) as f64 / 1000.0;
    assert!(freshness.is_some_and(|f| f > age - 3700.0 && f < age), "{freshness:?} vs {age}");
    assert_eq!(extra, serde_json::json!({"late_rate": 0.0, "schema_error_rate": 0.0, "duplicate_rate": 0.0}));
    let checked_json: serde_json::Value = serde_json::to_value(&checked).expect("JSON");
    assert_eq!(window_json, checked_json, "window report = check report, value for value");
}

#[test]
fn tumbling_and_sliding_windows_hold_exact_event_counts() {
    let events = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    let dir = tempfile::tempdir().expect("tmp");
    // 2000 events, one a second: ten-minute windows hold 600, 600, 600, 200.
    let (evaluations, metrics) = run_pipeline(&credit_config(dir.path(), "size = \"10m\""), &events);
    let got: Vec<(i64, u64)> = evaluations.iter().map(|e| ((e.start - T0) / 60_000, e.events)).collect();
    assert_eq!(got, vec![(0, 600), (10, 600), (20, 600), (30, 200)]);
    assert!(metrics.contains("driftwatch_events_total{model=\"credit-risk\",outcome=\"accepted\"} 2000"), "{metrics}");
    // Sliding: 10-minute windows every 5 minutes, merged from 5-minute panes.
    let dir = tempfile::tempdir().expect("tmp");
    let (evaluations, _) = run_pipeline(&credit_config(dir.path(), "size = \"10m\"\nslide = \"5m\""), &events);
    let got: Vec<(i64, u64)> = evaluations.iter().map(|e| ((e.start - T0) / 60_000, e.events)).collect();
    assert_eq!(got, vec![(-5, 300), (0, 600), (5, 600), (10, 600), (15, 600), (20, 600), (25, 500), (30, 200)]);
    // A minimum window size turns the short last window into insufficient data.
    let dir = tempfile::tempdir().expect("tmp");
    let (evaluations, metrics) = run_pipeline(&credit_config(dir.path(), "size = \"10m\"\nmin_events = 300"), &events);
    assert!(evaluations[..3].iter().all(|e| e.report.is_some()));
    assert!(evaluations[3].report.is_none());
    assert!(
        metrics.contains(r#"driftwatch_windows_total{model="credit-risk",verdict="insufficient_data"} 1"#),
        "{metrics}"
    );
}

#[test]
fn bad_events_are_counted_by_reason_and_good_ones_all_kept() {
    let mut events = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    let bad = [
        ("not_json", "this is not json".to_string()),
        ("wrong_type", r#"{"model_id":7,"timestamp":"2026-11-27T00:00:01Z","features":{"age":3}}"#.into()),
        ("missing_field", r#"{"model_id":"credit-risk","features":{"age":3}}"#.into()),
        ("unknown_model", r#"{"model_id":"fraud","timestamp":"2026-11-27T00:00:01Z"}"#.into()),
        ("bad_timestamp", r#"{"model_id":"credit-risk","timestamp":"yesterday"}"#.into()),
        ("too_large", format!(r#"{{"model_id":"credit-risk","pad":"{}"}}"#, "x".repeat(2 << 20))),
    ];
    // Salt the stream: each kind of bad event three times, spread out.
    for (k, (_, e)) in bad.iter().enumerate() {
        for j in 0..3 {
            events.insert(100 + 600 * j + k * 7, e.clone());
        }
    }
    // An event for a window that has closed is late.
    events.push(events[0].clone());
    let dir = tempfile::tempdir().expect("tmp");
    let (evaluations, metrics) = run_pipeline(&credit_config(dir.path(), "size = \"10m\""), &events);
    for (reason, _) in &bad {
        // Only an unknown model id leaves the event without a model.
        let label = if *reason == "unknown_model" { "_unknown" } else { "credit-risk" };
        let line = format!("driftwatch_events_total{{model=\"{label}\",outcome=\"{reason}\"}} 3");
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    assert!(metrics.contains(r#"driftwatch_events_total{model="credit-risk",outcome="late"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"driftwatch_events_total{model="credit-risk",outcome="accepted"} 2000"#), "{metrics}");
    let counts: Vec<u64> = evaluations.iter().map(|e| e.events).collect();
    assert_eq!(counts, vec![600, 600, 600, 200], "every good event is in its window");
    // The late event counts in the late_rate of the first window to close after it arrived
    // (it came with the last chunk, which closed the third window): late / (events + late).
    let late: Vec<f64> = evaluations.iter().map(|e| e.report.as_ref().expect("tested").quality["late_rate"]).collect();
    assert_eq!(late, vec![0.0, 0.0, 1.0 / 601.0, 0.0]);
    let line = r#"driftwatch_quality_ratio{check="late_rate",feature="_all",model="credit-risk",slice="all"} 0"#;
    assert!(metrics.contains(line), "the last window's late_rate in\n{metrics}");
}

#[test]
fn volume_against_expected_events_feeds_a_quality_rule() {
    let events = credit_events("fixtures/credit/current_ok.csv", "credit-risk");
    let dir = tempfile::tempdir().expect("tmp");
    let window = "size = \"10m\"\nexpected_events = 600\n\n[[model.rule]]\nname = \"low-volume\"\nquality = \"volume\"\nwarn = 0.5\ncritical = 0.1";
    let (evaluations, metrics) = run_pipeline(&credit_config(dir.path(), window), &events);
    let volume: Vec<f64> = evaluations.iter().map(|e| e.report.as_ref().expect("tested").quality["volume"]).collect();
    assert_eq!(volume, vec![1.0, 1.0, 1.0, 200.0 / 600.0]);
    // Only the short last window is low: one warning on the whole model.
    let fired: Vec<_> = evaluations.iter().flat_map(|e| e.notices()).collect();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].rule.as_str(), fired[0].feature.as_str()), ("low-volume", "_all"));
    assert_eq!(fired[0].severity, driftwatch::rules::Severity::Warning);
    assert_eq!(fired[0].value, Some(200.0 / 600.0));
    assert!(
        metrics.contains(
            r#"driftwatch_alert_state{feature="_all",model="credit-risk",rule="low-volume",severity="warning"} 2"#
        ),
        "{metrics}"
    );
}

/// A Prometheus server on a free loopback port with `config` as its prometheus.yml, its data
/// and log in `dir`; ready when this returns. Killed when the Reaper drops.
pub fn start_prometheus(dir: &std::path::Path, config: &str) -> (u16, Reaper) {
    let port = free_port();
    std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
    let server = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prom-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus is installed by scripts/install-deps.sh");
    let reaper = Reaper(server);
    wait_for("Prometheus ready", Duration::from_secs(30), || http_get(port, "/-/ready").filter(|r| r.0 == 200));
    (port, reaper)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// GET over plain HTTP/1.1; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls until `f` gives a value or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills a child process when dropped (a failing test leaves nothing running).
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_serves_metrics_that_promtool_accepts_writes_alert_emails_and_stops_cleanly() {
    let port = free_port();
    let outbox = tempfile::tempdir().expect("tmp");
    let child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--duration", "6s", "--seconds-per-window", "0.3"])
        .arg("--outbox")
        .arg(outbox.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let mut child = Reaper(child);
    wait_for("/healthz", Duration::from_secs(20), || http_get(port, "/healthz").filter(|r| r.0 == 200));
    let metrics = wait_for("a closed window in /metrics", Duration::from_secs(20), || {
        http_get(port, "/metrics").map(|r| r.1).filter(|m| m.contains("driftwatch_drift_statistic{"))
    });
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/install-deps.sh");
    promtool.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in driftwatch::metrics::NAMES {
        let exposed = metrics.lines().any(|l| l.starts_with(&format!("# TYPE {name} ")));
        // Kafka-only families (a cluster too), performance and ground truth (the demo reads
        // no labels) have no series; all others must be there.
        let absent = ["kafka", "dead_letters", "performance", "labels", "cluster"];
        if !absent.iter().any(|a| name.contains(a)) {
            assert!(exposed, "{name} missing from /metrics");
        }
    }
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));
    let (code, status) = http_get(port, "/api/v1/status").expect("status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
    assert_eq!(status["models"][0]["id"], "credit-risk");
    assert!(status["models"][0]["windows_closed"].as_u64() > Some(0), "{status}");
    assert!(status["models"][0]["last_window"]["report"]["features"].is_array(), "{status}");

    let mut stdout = String::new();
    child.0.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read");
    let exit = child.0.wait().expect("exit");
    assert!(exit.success(), "demo exit {exit:?}");
    let windows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("window")).collect();
    assert!(windows.len() >= 10, "a window every 0.3 s for 6 s:\n{stdout}");
    assert!(windows[..3].iter().all(|l| l.contains(" ok ")), "the stream starts clean:\n{stdout}");
    assert!(stdout.contains("DRIFT") && stdout.contains("income wasserstein"), "then it drifts:\n{stdout}");
    // The drift fires the demo's rules; their digests are .eml files in the outbox.
    assert!(stdout.contains("alert firing") && stdout.contains("feature-drift on income"), "{stdout}");
    assert!(stdout.contains(&format!("alert emails are written to {}", outbox.path().display())), "{stdout}");
    let emails: Vec<String> = std::fs::read_dir(outbox.path())
        .expect("outbox")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read_to_string(e.path()).expect("eml"))
        .collect();
    assert!(!emails.is_empty(), "no .eml in the outbox:\n{stdout}");
    assert!(stdout.contains(&format!("{} alert email(s) in", emails.len())), "{stdout}");
    let all = emails.concat();
    assert!(all.contains("Subject: [") && all.contains("driftwatch: credit-risk"), "{all}");
    assert!(all.contains("To: ml-oncall@localhost"), "{all}");
    assert_eq!(std::fs::read_dir(outbox.path().join("queue")).expect("queue").count(), 0, "everything delivered");
}

#[test]
fn every_metric_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/metrics.md")).expect("docs/metrics.md");
    for name in driftwatch::metrics::NAMES {
        assert!(doc.contains(&format!("`{name}`")), "{name} is not in docs/metrics.md");
    }
}

/// `run` driven in process: the demo's generator as the source and a stop future that
/// completes once three windows were evaluated — no signal, no sleep. The windows are whole
/// and consecutive, and the run returns cleanly.
#[test]
fn run_stops_when_its_stop_future_completes() {
    use driftwatch::demo::{self, DemoFiles, DemoOptions};
    use driftwatch::run::{RunOptions, run};
    let files = DemoFiles::write().expect("demo files");
    let cfg = config::load(&files.config).expect("demo config");
    let outbox = tempfile::tempdir().expect("outbox");
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let mut seen_tx = Some(seen_tx);
    let windows = Arc::new(Mutex::new(Vec::new()));
    let sink = windows.clone();
    let observer = Box::new(move |e: &Evaluation| {
        let mut w = sink.lock().expect("lock");
        w.push((e.start, e.events));
        if w.len() == 3
            && let Some(tx) = seen_tx.take()
        {
            let _ = tx.send(());
        }
    });
    let options = RunOptions {
        listen: Some(format!("127.0.0.1:{}", free_port()).parse().expect("address")),
        observers: vec![observer],
        generator: Some(Box::new(|tx, stop| {
            demo::generate(DemoOptions { events_per_window: 500, seconds_per_window: 0.0 }, tx, stop)
        })),
        outbox: Some(outbox.path().to_path_buf()),
        stop: Some(Box::pin(async move {
            let _ = seen_rx.await;
        })),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(&cfg, options)).expect("the run ends cleanly");
    let w = windows.lock().expect("lock");
    assert!(w.len() >= 3, "{w:?}");
    assert!(w[..3].iter().all(|&(_, events)| events == 500), "{w:?}");
    assert!(w.windows(2).all(|p| p[1].0 - p[0].0 == 60_000), "consecutive minutes: {w:?}");
}
