//! The agent binary against a real Kafka-wire broker (Tansu, started per test on a free
//! loopback port by `scripts/start-tansu.sh`): routing of two models over three-partition
//! topics, exact window counts, drift found where it was put, `/metrics`, committed offsets,
//! a killed agent, bad events with a dead-letter topic, a broker restart, and labels on their
//! own topic joined to predictions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::agent::{Reaper, T0, credit_events, free_port, http_get, wait_for};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Tansu broker in a temporary folder; killed when dropped.
pub(crate) struct Broker {
    dir: tempfile::TempDir,
    engine: &'static str,
    port: u16,
    pid: u32,
}

impl Broker {
    pub(crate) fn start(engine: &'static str) -> Broker {
        let dir = tempfile::tempdir().expect("tmp");
        let (port, pid) = start_tansu(dir.path(), engine, None);
        Broker { dir, engine, port, pid }
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        // Wait until the port is free again.
        wait_for("the broker to stop", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err().then_some(())
        });
    }

    fn restart(&mut self) {
        self.stop_for(Duration::ZERO);
    }

    /// Kills the broker and starts it again on the same port, with its data, after `down`.
    pub(crate) fn stop_for(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        let (_, pid) = start_tansu(self.dir.path(), self.engine, Some(self.port));
        self.pid = pid;
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new("tansu")
            .args(["topic", "create", name, "--partitions", &partitions.to_string(), "--broker"])
            .arg(format!("tcp://{}", self.addr()))
            .output()
            .expect("tansu topic create");
        assert!(out.status.success(), "topic create: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
    }
}

fn start_tansu(dir: &Path, engine: &str, port: Option<u16>) -> (u16, u32) {
    let mut cmd = Command::new(root().join("scripts/start-tansu.sh"));
    cmd.arg(dir).arg(engine);
    if let Some(p) = port {
        cmd.arg(p.to_string());
    }
    let out = cmd.output().expect("start-tansu.sh");
    assert!(out.status.success(), "tansu did not start: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let port = it.next().and_then(|p| p.parse().ok()).expect("port");
    let pid = it.next().and_then(|p| p.parse().ok()).expect("pid");
    (port, pid)
}

/// Sends (topic, partition, payload) records and waits until the broker has them all.
/// One record per batch: Tansu 0.6 cannot serve a fetch that starts inside a record batch
/// (it skips the rest of that batch and repeats the next one; seen with its memory engine),
/// and a restarted consumer starts wherever its group committed.
pub(crate) fn produce(brokers: &str, records: &[(&str, i32, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "60000")
        .set("linger.ms", "1")
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    for (topic, partition, payload) in records {
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(*partition).payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(50));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("all records delivered");
}

/// The credit rows `range` as events of `model` at `T0 + minute·60 s` plus 150 ms apart, in
/// the nested (default) shape.
pub(crate) fn nested(csv: &str, model: &str, range: std::ops::Range<usize>, minute: i64) -> Vec<Vec<u8>> {
    let events = credit_events(csv, model);
    let base = chrono::DateTime::from_timestamp_millis(T0).expect("t0");
    events[range]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut v: Value = serde_json::from_str(e).expect("json");
            let t = base + chrono::Duration::milliseconds(minute * 60_000 + i as i64 * 150);
            v["timestamp"] = Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            serde_json::to_vec(&v).expect("json")
        })
        .collect()
}

/// The same, flat: features at the top level and epoch-millisecond time in `ts`.
fn flat(csv: &str, model: &str, range: std::ops::Range<usize>, minute: i64) -> Vec<Vec<u8>> {
    nested(csv, model, range, minute)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let v: Value = serde_json::from_slice(&e).expect("json");
            let mut out = v["features"].clone();
            out["model_id"] = v["model_id"].clone();
            out["ts"] = Value::from(T0 + minute * 60_000 + i as i64 * 150);
            serde_json::to_vec(&out).expect("json")
        })
        .collect()
}

/// Spreads events round-robin over the partitions of a topic.
pub(crate) fn spread(topic: &str, events: Vec<Vec<u8>>) -> Vec<(&str, i32, Vec<u8>)> {
    events.into_iter().enumerate().map(|(i, e)| (topic, (i % 3) as i32, e)).collect()
}

pub(crate) fn agent_config(dir: &Path, brokers: &str, http: u16, extra_source: &str, models: &str) -> PathBuf {
    let text = format!(
        "[agent]\nlisten = \"127.0.0.1:{http}\"\nshutdown_timeout = \"30s\"\n\n\
         [source]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ngroup_id = \"driftwatch-test\"\nlinger = \"50ms\"\n{extra_source}\n\n{models}"
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("config");
    path
}

pub(crate) fn credit_model(id: &str, topics: &str, events: &str) -> String {
    let baseline = root().join("fixtures/credit/reference.csv");
    format!(
        "[[model]]\nid = \"{id}\"\nbaseline = {:?}\nexclude = [\"event_id\", \"score\"]\ntopics = {topics}\n{events}\n\
         [model.window]\nsize = \"1m\"\nidle_timeout = \"3s\"\n\n",
        baseline.display().to_string()
    )
}

/// A running agent; its log is kept in the test folder.
pub(crate) struct Agent {
    child: Reaper,
    http: u16,
    log: PathBuf,
}

impl Agent {
    pub(crate) fn start(config: &Path, http: u16) -> Agent {
        let log = config
            .with_extension(format!("{}.log", std::time::SystemTime::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos())));
        let child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["run", "--config"])
            .arg(config)
            .env("DRIFTWATCH_LOG", std::env::var("TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("agent starts");
        let agent = Agent { child: Reaper(child), http, log };
        agent.wait(Duration::from_secs(60), "partitions assigned (/readyz)", |a| {
            http_get(a.http, "/readyz").filter(|r| r.0 == 200).map(|_| ())
        });
        agent
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    pub(crate) fn wait<T>(&self, timeout: Duration, what: &str, mut f: impl FnMut(&Agent) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; agent log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn status(&self) -> Option<Value> {
        http_get(self.http, "/api/v1/status").and_then(|(_, body)| serde_json::from_str(&body).ok())
    }

    pub(crate) fn metrics(&self) -> String {
        http_get(self.http, "/metrics").map(|r| r.1).unwrap_or_default()
    }

    /// (minutes after T0, events, drifted features) of each closed window of a model.
    pub(crate) fn windows(&self, model: &str) -> Vec<(i64, u64, Vec<String>)> {
        let Some(status) = self.status() else { return Vec::new() };
        let Some(models) = status["models"].as_array() else { return Vec::new() };
        let Some(m) = models.iter().find(|m| m["id"] == model) else { return Vec::new() };
        m["recent_windows"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .map(|w| {
                        let start = chrono::DateTime::parse_from_rfc3339(w["start"].as_str().unwrap_or(""))
                            .map_or(-1, |t| (t.timestamp_millis() - T0) / 60_000);
                        let drifted = w["drifted_features"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
                            .unwrap_or_default();
                        (start, w["events"].as_u64().unwrap_or(0), drifted)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.0.id().to_string()]).status();
        self.child.0.wait().expect("agent exits")
    }

    /// `kill -9`.
    pub(crate) fn kill(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }
}

/// The consumer group's committed offsets for the partitions of `topics`.
fn committed(brokers: &str, topics: &[&str]) -> BTreeMap<(String, i32), i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "driftwatch-test")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..3 {
            tpl.add_partition(t, p);
        }
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(20)).expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            ((e.topic().to_string(), e.partition()), o)
        })
        .collect()
}

pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

pub(crate) const OK: &str = "fixtures/credit/current_ok.csv";
pub(crate) const DRIFT: &str = "fixtures/credit/current_drift.csv";

#[test]
fn two_models_over_three_partitions_exact_windows_metrics_and_offsets() {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    broker.create_topic("loans", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let models = credit_model("credit-risk", "[\"predictions\"]", "")
        + &credit_model(
            "loans",
            "[\"predictions\", \"loans\"]",
            "[model.events]\nfeatures = \"\"\ntimestamp = \"ts\"\ntimestamp_format = \"epoch_ms\"\n",
        );
    let config = agent_config(dir.path(), &broker.addr(), http, "", &models);
    let agent = Agent::start(&config, http);

    // credit-risk: a clean minute, then a drifted one; loans: two clean minutes, its events
    // split over both topics, in its own flat shape.
    let mut records = spread("predictions", nested(OK, "credit-risk", 0..300, 0));
    records.extend(spread("predictions", nested(DRIFT, "credit-risk", 0..300, 1)));
    for (minute, range) in [(0, 300..600), (1, 600..900)] {
        for (i, e) in flat(OK, "loans", range, minute).into_iter().enumerate() {
            records.push((if i % 2 == 0 { "predictions" } else { "loans" }, (i % 3) as i32, e));
        }
    }
    produce(&broker.addr(), &records);

    let credit = agent.wait(Duration::from_secs(60), "two credit-risk windows", |a| {
        Some(a.windows("credit-risk")).filter(|w| w.len() >= 2)
    });
    let loans =
        agent.wait(Duration::from_secs(30), "two loans windows", |a| Some(a.windows("loans")).filter(|w| w.len() >= 2));
    assert_eq!(
        credit.iter().map(|w| (w.0, w.1)).collect::<Vec<_>>(),
        vec![(0, 300), (1, 300)],
        "{credit:?}\n{}",
        agent.log()
    );
    assert_eq!(loans.iter().map(|w| (w.0, w.1)).collect::<Vec<_>>(), vec![(0, 300), (1, 300)], "{loans:?}");
    for f in ["age", "income", "country"] {
        assert!(credit[1].2.contains(&f.to_string()), "{f} drifted in minute 1: {credit:?}");
    }
    assert!(credit[0].2.len() < 2 && loans.iter().all(|w| w.2.len() < 2), "clean windows: {credit:?} {loans:?}");

    let m = agent.metrics();
    assert_eq!(metric(&m, r#"driftwatch_events_total{model="credit-risk",outcome="accepted"}"#), Some(600.0), "{m}");
    assert_eq!(metric(&m, r#"driftwatch_events_total{model="loans",outcome="accepted"}"#), Some(600.0), "{m}");
    assert_eq!(metric(&m, r#"driftwatch_dataset_drift_detected{model="credit-risk",slice="all"}"#), Some(1.0), "{m}");
    assert_eq!(metric(&m, r#"driftwatch_dataset_drift_detected{model="loans",slice="all"}"#), Some(0.0), "{m}");
    assert_eq!(metric(&m, r#"driftwatch_window_events{model="credit-risk"}"#), Some(300.0), "{m}");
    assert!(m.contains("driftwatch_commit_offset{partition=\"2\",topic=\"loans\"}"), "{m}");

    // Consumer lag comes from librdkafka's statistics (every 5 s): a report from before the
    // agent caught up may still show some lag; once caught up, it is zero.
    let lag = agent.wait(Duration::from_secs(30), "consumer lag of zero from statistics", |a| {
        metric(&a.metrics(), r#"driftwatch_kafka_consumer_lag{partition="1",topic="loans"}"#).filter(|v| *v == 0.0)
    });
    assert_eq!(lag, 0.0);

    let exit = agent.stop();
    assert!(exit.success(), "graceful stop: {exit:?}");
    // Every event was in a closed, evaluated window: offsets are committed to the end.
    let offsets = committed(&broker.addr(), &["predictions", "loans"]);
    let mut expected = BTreeMap::new();
    for (topic, partition, _) in &records {
        *expected.entry((topic.to_string(), *partition)).or_insert(0i64) += 1;
    }
    assert_eq!(offsets, expected);
}

#[test]
fn a_killed_agent_loses_no_event_of_a_closed_window() {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    // A static member: the restarted agent takes its partitions back at once.
    let config = agent_config(
        dir.path(),
        &broker.addr(),
        http,
        "instance_id = \"killed-agent\"",
        &credit_model("credit-risk", "[\"predictions\"]", ""),
    );
    let mut first = spread("predictions", nested(OK, "credit-risk", 0..300, 0));
    first.extend(spread("predictions", nested(OK, "credit-risk", 300..600, 1)));
    produce(&broker.addr(), &first);

    let agent = Agent::start(&config, http);
    let before = agent
        .wait(Duration::from_secs(60), "minute 0 closed", |a| Some(a.windows("credit-risk")).filter(|w| !w.is_empty()));
    // Minute 1 is open (nothing newer has arrived): kill -9 mid-stream.
    agent.kill();
    produce(&broker.addr(), &spread("predictions", nested(DRIFT, "credit-risk", 0..300, 2)));

    let agent = Agent::start(&config, http);
    let after = agent.wait(Duration::from_secs(60), "minutes 1 and 2 closed", |a| {
        Some(a.windows("credit-risk")).filter(|w| w.iter().any(|x| x.0 == 2))
    });
    let log = agent.log();
    assert!(agent.stop().success());
    // No event of any window is lost: each minute was evaluated whole in one of the runs.
    // The window open at the kill is read again whole (its offsets were never committed);
    // a window closed before the kill may be evaluated again (at least once), possibly in
    // part, where its offsets were committed on some partitions and not yet on others.
    let all: Vec<(i64, u64)> = before.iter().chain(&after).map(|w| (w.0, w.1)).collect();
    for minute in 0..3 {
        assert!(all.contains(&(minute, 300)), "minute {minute} whole in {all:?}\n{log}");
    }
    let closed_before: Vec<i64> = before.iter().map(|w| w.0).collect();
    for w in &after {
        if !closed_before.contains(&w.0) {
            assert_eq!(w.1, 300, "minute {} was open at the kill: read again whole: {all:?}", w.0);
        }
        assert!(w.1 <= 300, "nothing counted twice in one window: {all:?}");
    }
}

#[test]
fn bad_events_are_counted_dead_lettered_and_never_stall_a_partition() {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    broker.create_topic("dlq", 1);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let config = agent_config(
        dir.path(),
        &broker.addr(),
        http,
        "dead_letter_topic = \"dlq\"\nmax_event_bytes = 4096",
        // Two models share the topic, so an event must say which one it is for.
        &(credit_model("credit-risk", "[\"predictions\"]", "") + &credit_model("loans", "[\"predictions\"]", "")),
    );
    let agent = Agent::start(&config, http);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"{\"model_id\": \"credit-risk\", oops".to_vec()),
        ("not_json", Vec::new()),
        (
            "wrong_type",
            br#"{"model_id":["credit-risk"],"timestamp":"2026-11-27T00:00:01Z","features":{"income":1}}"#.to_vec(),
        ),
        ("missing_field", br#"{"timestamp":"2026-11-27T00:00:01Z","features":{}}"#.to_vec()),
        ("unknown_model", br#"{"model_id":"fraud","timestamp":"2026-11-27T00:00:01Z"}"#.to_vec()),
        ("bad_timestamp", br#"{"model_id":"credit-risk","timestamp":"27/11/2026"}"#.to_vec()),
        ("too_large", format!(r#"{{"model_id":"credit-risk","pad":"{}"}}"#, "x".repeat(5000)).into_bytes()),
        // Kept as a schema error with its features missing, and a copy dead-lettered.
        (
            "schema_error",
            br#"{"model_id":"credit-risk","timestamp":"2026-11-27T00:00:01Z","features":[1,2,3]}"#.to_vec(),
        ),
    ];
    let mut records = Vec::new();
    for (i, e) in nested(OK, "credit-risk", 0..300, 0).into_iter().enumerate() {
        records.push(("predictions", (i % 3) as i32, e));
        // A bad event of every kind on every partition, between the good ones.
        if i % 40 == 7 && i / 40 < bad.len() {
            for p in 0..3 {
                records.push(("predictions", p, bad[i / 40].1.clone()));
            }
        }
    }
    produce(&broker.addr(), &records);
    let windows =
        agent.wait(Duration::from_secs(60), "the window", |a| Some(a.windows("credit-risk")).filter(|w| !w.is_empty()));
    let m = agent.metrics();
    // Events that cannot be told apart by model count under "_unknown".
    for (model, reason, count) in [
        ("_unknown", "not_json", 6.0),
        ("_unknown", "too_large", 3.0),
        ("_unknown", "missing_field", 3.0),
        ("_unknown", "unknown_model", 3.0),
        ("_unknown", "wrong_type", 3.0),
        ("credit-risk", "bad_timestamp", 3.0),
    ] {
        let series = format!("driftwatch_events_total{{model=\"{model}\",outcome=\"{reason}\"}}");
        assert_eq!(metric(&m, &series), Some(count), "{series}\n{m}");
    }
    assert_eq!(windows[0].1, 303, "every good event is in the window, and the 3 misshapen ones: {windows:?}");
    let status = agent.status().expect("status");
    let schema = &status["models"][0]["last_window"]["report"]["quality"]["schema_error_rate"];
    assert_eq!(schema.as_f64(), Some(3.0 / 303.0), "{status}");
    assert!(agent.stop().success());

    // The dead-letter topic holds every bad event with its reason.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["dlq"]).expect("subscribe");
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reasons.values().sum::<usize>() < 3 * bad.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(500)) {
            let reason = msg
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.key == "driftwatch-reason")
                        .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                })
                .unwrap_or_default();
            *reasons.entry(reason).or_default() += 1;
        }
    }
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for (reason, _) in &bad {
        *expected.entry(reason.to_string()).or_default() += 3;
    }
    assert_eq!(reasons, expected);
}

#[test]
fn the_agent_rides_out_a_broker_restart_without_losing_events() {
    let mut broker = Broker::start("sqlite");
    broker.create_topic("predictions", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let config =
        agent_config(dir.path(), &broker.addr(), http, "", &credit_model("credit-risk", "[\"predictions\"]", ""));
    let agent = Agent::start(&config, http);
    let minute1 = nested(OK, "credit-risk", 300..600, 1);
    let mut records = spread("predictions", nested(OK, "credit-risk", 0..300, 0));
    records.extend(spread("predictions", minute1[..150].to_vec()));
    produce(&broker.addr(), &records);
    agent
        .wait(Duration::from_secs(60), "minute 0 closed", |a| Some(a.windows("credit-risk")).filter(|w| !w.is_empty()));

    // The broker goes away mid-window and comes back on the same port with its data.
    broker.restart();
    let rest: Vec<Vec<u8>> = minute1[150..].to_vec();
    let mut records: Vec<(&str, i32, Vec<u8>)> =
        rest.into_iter().enumerate().map(|(i, e)| ("predictions", ((i + 150) % 3) as i32, e)).collect();
    records.extend(spread("predictions", nested(DRIFT, "credit-risk", 0..300, 2)));
    produce(&broker.addr(), &records);

    let windows = agent.wait(Duration::from_secs(90), "minutes 1 and 2 closed", |a| {
        Some(a.windows("credit-risk")).filter(|w| w.iter().any(|x| x.0 == 2))
    });
    let counts: Vec<(i64, u64)> = windows.iter().map(|w| (w.0, w.1)).collect();
    assert_eq!(counts, vec![(0, 300), (1, 300), (2, 300)], "log:\n{}", agent.log());
    assert!(agent.stop().success());
}

#[test]
fn labels_on_their_own_topic_give_realised_performance_per_window() {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    broker.create_topic("labels", 2);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let reference = super::performance::labelled_reference(dir.path());
    let model = format!(
        "[[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\", \"label\"]\ntopics = [\"predictions\"]\n\
         [model.window]\nsize = \"1m\"\nidle_timeout = \"3s\"\n\
         [model.performance]\nscore = \"score\"\nlabel = \"label\"\n\
         [model.labels]\ntopics = [\"labels\"]\nhorizon = \"2m\"\n\
         [[model.rule]]\nname = \"realised-accuracy\"\nperformance = \"accuracy\"\nvalue = \"realised\"\nwarn = 0.9\n",
        reference.display().to_string()
    );
    let outbox = format!("[notify]\noutbox = {:?}\n", dir.path().join("outbox").display().to_string());
    let config = agent_config(dir.path(), &broker.addr(), http, "", &(model + &outbox));
    let agent = Agent::start(&config, http);

    // Minute 0: every label agrees with the prediction; minute 1: every other one does not.
    let mut predictions = nested(OK, "credit-risk", 0..300, 0);
    predictions.extend(nested(OK, "credit-risk", 300..600, 1));
    let mut labels = Vec::new();
    for (i, p) in predictions.iter().enumerate() {
        let v: Value = serde_json::from_slice(p).expect("json");
        let score = v["features"]["score"].as_f64().expect("score");
        let label = u8::from((score >= 0.5) != (i >= 300 && i % 2 == 0));
        let time =
            chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().expect("t")).expect("t").timestamp_millis();
        let label_event = serde_json::json!({"model_id": "credit-risk", "event_id": v["event_id"], "timestamp": time + 30_000, "label": label});
        labels.push(("labels", (i % 2) as i32, serde_json::to_vec(&label_event).expect("json")));
    }
    produce(&broker.addr(), &spread("predictions", predictions));
    produce(&broker.addr(), &labels);
    agent.wait(Duration::from_secs(60), "600 labels matched", |a| {
        metric(&a.metrics(), r#"driftwatch_labels_total{model="credit-risk",outcome="matched"}"#)
            .filter(|v| *v == 600.0)
    });
    // Predictions of minute 4 move event time past both windows' horizon (end + 2 min).
    produce(&broker.addr(), &spread("predictions", nested(OK, "credit-risk", 600..650, 4)));
    let realised = agent.wait(Duration::from_secs(60), "the realised accuracy of minute 1", |a| {
        let m = a.metrics();
        let end = metric(&m, r#"driftwatch_performance_window_end_timestamp_seconds{model="credit-risk"}"#)?;
        (end == (T0 + 120_000) as f64 / 1000.0)
            .then(|| {
                metric(
                    &m,
                    r#"driftwatch_performance{estimated="false",metric="accuracy",model="credit-risk",slice="all"}"#,
                )
            })
            .flatten()
    });
    assert_eq!(realised, 0.5);
    let status = agent.status().expect("status");
    let last = &status["models"][0]["last_labelled"];
    assert_eq!(last["labelled"], 300, "{status}");
    assert_eq!(last["performance"]["estimated"], false);
    let m = agent.metrics();
    assert_eq!(
        metric(
            &m,
            r#"driftwatch_alert_state{feature="_all",model="credit-risk",rule="realised-accuracy",severity="warning"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(metric(&m, r#"driftwatch_labels_total{model="credit-risk",outcome="prediction_expired"}"#), Some(0.0));
    assert!(agent.stop().success());
    // Label offsets are committed like any other.
    let offsets = committed(&broker.addr(), &["labels"]);
    assert_eq!((offsets[&("labels".to_string(), 0)], offsets[&("labels".to_string(), 1)]), (300, 300), "{offsets:?}");
}
