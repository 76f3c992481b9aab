//! Hot reload of the agent binary: its configuration in a directory laid out as Kubernetes
//! mounts a ConfigMap (`agent.toml -> ..data/agent.toml`, `..data -> ..2026_N`, swapped by
//! renaming a new `..data` symlink over the old one), events from standard input. Valid
//! changes are applied without losing the open windows of unchanged models; invalid ones and
//! ones that need a restart are rejected, logged and counted while the old configuration runs
//! on; SIGHUP reloads when watching is off.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::agent::{Reaper, credit_events, free_port, http_get, root, wait_for};

/// A ConfigMap-style folder: each version in its own `..<name>` folder, `..data` pointing at
/// the current one, `agent.toml` a symlink through `..data`.
struct ConfigMap {
    dir: PathBuf,
    versions: usize,
}

impl ConfigMap {
    fn new(dir: &Path, text: &str) -> ConfigMap {
        std::fs::create_dir_all(dir).expect("dir");
        let mut cm = ConfigMap { dir: dir.to_path_buf(), versions: 0 };
        cm.swap(text);
        std::os::unix::fs::symlink("..data/agent.toml", dir.join("agent.toml")).expect("symlink");
        cm
    }

    /// Writes a new version and points `..data` at it in one rename, as the kubelet does.
    fn swap(&mut self, text: &str) {
        self.versions += 1;
        let version = format!("..2026_11_28_{:02}", self.versions);
        std::fs::create_dir(self.dir.join(&version)).expect("version dir");
        std::fs::write(self.dir.join(&version).join("agent.toml"), text).expect("write");
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("rename over ..data");
    }

    fn path(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }
}

fn model(id: &str, extra: &str) -> String {
    let baseline = root().join("fixtures/credit/reference.csv");
    format!(
        "[[model]]\nid = \"{id}\"\nbaseline = {:?}\nexclude = [\"event_id\", \"score\"]\n{extra}\n\
         [model.window]\nsize = \"10m\"\nidle_timeout = \"1h\"\n\n",
        baseline.display().to_string()
    )
}

fn config(port: u16, watch: &str, models: &[String]) -> String {
    format!(
        "[agent]\nlisten = \"127.0.0.1:{port}\"\nwatch_interval = \"{watch}\"\n\n[source]\nkind = \"replay\"\npath = \"-\"\n\n{}\n[notify]\noutbox = \"/tmp/driftwatch-reload-outbox-{port}\"\n",
        models.concat()
    )
}

const INCOME_RULE: &str =
    "[[model.rule]]\nname = \"income-drift\"\nfeatures = [\"income\"]\ntest = \"ks\"\nwarn = 0.05\n";

struct Agent {
    process: Reaper,
    stdin: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, port: u16, log: PathBuf) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["run", "--config"])
            .arg(config)
            .env("DRIFTWATCH_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("agent starts");
        let stdin = child.stdin.take();
        let agent = Agent { process: Reaper(child), stdin, port, log };
        wait_for("the agent's /readyz", Duration::from_secs(30), || http_get(port, "/readyz").filter(|r| r.0 == 200));
        agent
    }

    fn feed(&mut self, model: &str, rows: std::ops::Range<usize>) {
        let stdin = self.stdin.as_mut().expect("stdin");
        for e in &credit_events("fixtures/credit/current_ok.csv", model)[rows] {
            writeln!(stdin, "{e}").expect("write");
        }
        stdin.flush().expect("flush");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = http_get(self.port, "/metrics")?;
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    fn reloads(&self, result: &str) -> f64 {
        self.metric(&format!("driftwatch_config_reloads_total{{result=\"{result}\"}}")).unwrap_or(-1.0)
    }

    fn wait_reloads(&self, result: &str, n: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.reloads(result) < n {
            assert!(std::time::Instant::now() < deadline, "no {result} reload #{n}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status(&self) -> Value {
        let (_, body) = http_get(self.port, "/api/v1/status").expect("status");
        serde_json::from_str(&body).expect("json")
    }

    /// (id, open events, closed windows) per model, in status order.
    fn models(&self) -> Vec<(String, u64, u64)> {
        let status = self.status();
        status["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| {
                let id = m["id"].as_str().unwrap_or("").to_string();
                (id, m["open_events"].as_u64().unwrap_or(0), m["windows_closed"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    fn wait_open(&self, model: &str, events: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.models().iter().any(|(id, open, _)| id == model && *open == events) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{model} never held {events}: {:?}", self.models());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let status = self.process.0.wait().expect("exit");
        assert!(status.success(), "agent exit {status:?}:\n{}", self.log());
        self.log()
    }
}

#[test]
fn configmap_swaps_are_applied_keeping_window_state_and_bad_ones_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let credit = model("credit-risk", INCOME_RULE);
    let fraud = model("fraud", "");
    let mut cm = ConfigMap::new(&dir.path().join("config"), &config(port, "200ms", &[credit.clone(), fraud.clone()]));
    let mut agent = Agent::start(&cm.path(), port, dir.path().join("agent.log"));
    assert_eq!(agent.reloads("applied"), 0.0);

    agent.feed("credit-risk", 0..200);
    agent.feed("fraud", 0..100);
    agent.wait_open("credit-risk", 200);
    agent.wait_open("fraud", 100);

    // 1. fraud gains a rule (its windows stay), churn is added, credit-risk is untouched.
    let fraud_ruled = model("fraud", &INCOME_RULE.replace("income-drift", "fraud-income"));
    let churn = model("churn", "");
    cm.swap(&config(port, "200ms", &[credit.clone(), fraud_ruled.clone(), churn.clone()]));
    agent.wait_reloads("applied", 1.0);
    let models = agent.models();
    assert_eq!(
        models,
        vec![("credit-risk".into(), 200, 0), ("fraud".into(), 100, 0), ("churn".into(), 0, 0)],
        "{}",
        agent.log()
    );
    assert_eq!(
        agent.metric(
            r#"driftwatch_alert_threshold{bound="warn",feature="_all",model="fraud",rule="fraud-income",target="ks"}"#
        ),
        Some(0.05)
    );
    assert!(agent.log().contains("configuration reloaded and applied"), "{}", agent.log());

    // 2. An invalid version: rejected with its finding, counted; everything runs on.
    cm.swap(&config(port, "200ms", &[credit.replace("test = \"ks\"", "test = \"kss\""), fraud_ruled.clone()]));
    agent.wait_reloads("rejected", 1.0);
    let log = agent.log();
    assert!(log.contains("reload rejected") && log.contains("kss"), "{log}");
    assert!(log.contains("agent.toml:"), "the finding names the file and line:\n{log}");
    assert_eq!(agent.models().len(), 3, "the old configuration keeps running");
    assert_eq!(agent.metric("driftwatch_config_last_reload_successful "), Some(0.0));
    agent.feed("credit-risk", 200..250);
    agent.wait_open("credit-risk", 250);
    // The same files are not read again until they change.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(agent.reloads("rejected"), 1.0);

    // 3. A change that needs a restart ([source]) is rejected and says so.
    cm.swap(
        &config(port, "200ms", &[credit.clone(), fraud_ruled.clone(), churn.clone()])
            .replace("path = \"-\"", "path = \"-\"\nbatch_rows = 100"),
    );
    agent.wait_reloads("rejected", 2.0);
    assert!(agent.log().contains("[source] changed: restart the agent to apply it"), "{}", agent.log());

    // 4. fraud changes beyond its rules: its open window is evaluated under the old
    // configuration (100 events), then it starts afresh; churn is removed; credit-risk keeps
    // its 250 events.
    let fraud_ks =
        model("fraud", &format!("tests = [\"ks\"]\n{}", INCOME_RULE.replace("income-drift", "fraud-income")));
    cm.swap(&config(port, "200ms", &[credit.clone(), fraud_ks]));
    agent.wait_reloads("applied", 2.0);
    assert_eq!(agent.metric("driftwatch_config_last_reload_successful "), Some(1.0));
    assert_eq!(agent.models(), vec![("credit-risk".into(), 250, 0), ("fraud".into(), 0, 1)], "{}", agent.log());
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    assert!(!metrics.contains("model=\"churn\""), "a removed model's series are gone:\n{metrics}");
    assert!(metrics.contains("driftwatch_window_events{model=\"fraud\"} 100"), "{metrics}");

    // Nothing was lost: the end of the replay closes credit-risk's window with every event.
    let log = agent.stop();
    let closed = log
        .lines()
        .find(|l| l.contains("window closed") && l.contains("credit-risk"))
        .unwrap_or_else(|| panic!("no credit-risk window:\n{log}"));
    assert!(closed.contains("events=250"), "{closed}");
}

#[test]
fn sighup_reloads_when_the_files_are_not_watched() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config(port, "0s", &[model("credit-risk", "")])).expect("write");
    let mut agent = Agent::start(&path, port, dir.path().join("agent.log"));
    agent.feed("credit-risk", 0..120);
    agent.wait_open("credit-risk", 120);
    let sha = |a: &Agent| {
        let (_, m) = http_get(a.port, "/metrics").expect("metrics");
        m.lines().find(|l| l.starts_with("driftwatch_config_info{")).map(String::from).expect("config_info")
    };
    let before = sha(&agent);

    std::fs::write(&path, config(port, "0s", &[model("credit-risk", INCOME_RULE)])).expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(agent.reloads("applied"), 0.0, "watch_interval = \"0s\" does not watch the files");
    let pid = agent.process.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    agent.wait_reloads("applied", 1.0);
    assert_eq!(agent.models(), vec![("credit-risk".into(), 120, 0)], "rules changed: the window stays");
    assert_ne!(sha(&agent), before, "driftwatch_config_info follows the running files");
    // A second SIGHUP with nothing changed is counted as unchanged.
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    agent.wait_reloads("unchanged", 1.0);
    let log = agent.stop();
    assert!(log.contains("SIGHUP: reloading the configuration"), "{log}");
}

#[test]
fn a_reload_keeps_the_kafka_consumer_its_partitions_and_its_open_windows() {
    use super::kafka::{self, Broker, OK, produce, spread};
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    broker.create_topic("other", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let credit = kafka::credit_model("credit-risk", "[\"predictions\"]", "");
    let fraud = kafka::credit_model("fraud", "[\"other\"]", "");
    let config = kafka::agent_config(dir.path(), &broker.addr(), http, "", &(credit.clone() + &fraud));
    let agent = kafka::Agent::start(&config, http);
    produce(&broker.addr(), &spread("predictions", kafka::nested(OK, "credit-risk", 0..300, 0)));
    produce(&broker.addr(), &spread("other", kafka::nested(OK, "fraud", 0..200, 0)));
    agent.wait(Duration::from_secs(30), "minute 0's events in open windows", |a| {
        let s = a.status()?;
        (s["models"][0]["open_events"] == 300 && s["models"][1]["open_events"] == 200).then_some(())
    });

    // While minute 0's windows are open: credit-risk gains a rule, and churn (on the same
    // topic) comes in before fraud, which moves fraud's place among the models.
    kafka::agent_config(
        dir.path(),
        &broker.addr(),
        http,
        "",
        &(credit + INCOME_RULE + &kafka::credit_model("churn", "[\"predictions\"]", "") + &fraud),
    );
    agent.wait(Duration::from_secs(30), "the reload", |a| {
        kafka::metric(&a.metrics(), r#"driftwatch_config_reloads_total{result="applied"}"#).filter(|v| *v == 1.0)
    });
    produce(&broker.addr(), &spread("predictions", kafka::nested(OK, "credit-risk", 300..600, 1)));
    produce(&broker.addr(), &spread("other", kafka::nested(OK, "fraud", 200..400, 1)));
    let pairs = |w: Vec<(i64, u64, Vec<String>)>| w.into_iter().map(|w| (w.0, w.1)).collect::<Vec<_>>();
    let windows = agent.wait(Duration::from_secs(60), "both models' two windows", |a| {
        let (c, f) = (a.windows("credit-risk"), a.windows("fraud"));
        (c.len() == 2 && f.len() == 2).then(|| (pairs(c), pairs(f)))
    });
    assert_eq!(windows, (vec![(0, 300), (1, 300)], vec![(0, 200), (1, 200)]));
    assert!(agent.windows("churn").is_empty(), "churn read none of fraud's events");
    let log = agent.log();
    assert_eq!(log.matches("partitions assigned").count(), 1, "no rebalance:\n{log}");
    assert!(agent.stop().success());
}
