//! Restarts, kills and broker outages against a real Kafka-wire broker (Tansu): whatever
//! happens to the agent or the broker, every window is evaluated whole, nothing is counted
//! twice, and alerts step once per window. Truth is what was produced; the agent's own log
//! lines ("window closed", one per evaluation, across every run) are checked against it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::agent::{T0, free_port};
use super::kafka::{Agent, Broker, DRIFT, OK, agent_config, credit_model, metric, nested, produce};

/// One evaluation read from a log: (minute after T0, events, repeated).
pub(crate) type Evaluated = (i64, u64, bool);

/// Every "window closed" line of a log.
pub(crate) fn evaluated(log: &str) -> Vec<Evaluated> {
    log.lines()
        .filter(|l| l.contains("window closed"))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .map(|v| v.trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            let start = chrono::DateTime::parse_from_rfc3339(&field("start")).map_or(-1, |t| t.timestamp_millis());
            ((start - T0) / 60_000, field("events").parse().unwrap_or(0), field("repeated") == "true")
        })
        .collect()
}

/// Evaluations per minute, across runs.
fn by_minute(all: &[Evaluated]) -> BTreeMap<i64, Vec<(u64, bool)>> {
    let mut out: BTreeMap<i64, Vec<(u64, bool)>> = BTreeMap::new();
    for &(minute, events, repeated) in all {
        out.entry(minute).or_default().push((events, repeated));
    }
    out
}

/// The credit model with a drift rule on income that fires on one drifted window.
fn model() -> String {
    let mut m = credit_model("credit-risk", "[\"predictions\"]", "");
    m.push_str(
        "[[model.rule]]\nname = \"income-drift\"\nfeatures = [\"income\"]\ntest = \"ks\"\nwarn = 0.001\nfor = 1\n\n",
    );
    m
}

fn config(dir: &Path, broker: &Broker, http: u16, source: &str) -> std::path::PathBuf {
    let outbox =
        format!("[notify]\nto = [\"oncall@example.com\"]\noutbox = {:?}\n", dir.join("outbox").display().to_string());
    agent_config(dir, &broker.addr(), http, source, &(model() + &outbox))
}

/// Minute `m` of the stream: clean, except minutes 2 and 3, which drift; every event has
/// its own id (duplicate detection is on by default).
fn minute(m: i64) -> Vec<Vec<u8>> {
    let csv = if m == 2 || m == 3 { DRIFT } else { OK };
    let base = m as usize * 300;
    nested(csv, "credit-risk", base..base + 300, m)
}

/// Produces half of minute `m` (`first` or second half), spread over the three partitions.
fn produce_half(broker: &Broker, m: i64, first: bool) {
    let events = minute(m);
    let half: Vec<Vec<u8>> = if first { events[..150].to_vec() } else { events[150..].to_vec() };
    let offset = if first { 0 } else { 150 };
    let records: Vec<(&str, i32, Vec<u8>)> =
        half.into_iter().enumerate().map(|(i, e)| ("predictions", ((i + offset) % 3) as i32, e)).collect();
    produce(&broker.addr(), &records);
}

fn drift_notices(outbox: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "eml") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            // The header as one line (long headers are folded onto indented lines).
            let mut lines = text.lines().skip_while(|l| !l.starts_with("Subject:"));
            if let Some(first) = lines.next() {
                let rest: Vec<&str> = lines.take_while(|l| l.starts_with([' ', '\t'])).map(str::trim).collect();
                out.push(std::iter::once(first).chain(rest).collect::<Vec<_>>().join(" "));
            }
        }
    }
    out.sort();
    out
}

/// How the agent is stopped while a window is open.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Term,
    Kill,
}

/// Streams minutes 0–5 over three partitions to an agent that is stopped (`how`) once per
/// minute, just after the previous minute closed and while half of this one is in, then
/// started again after the other half is produced. Returns each run's log, the last run's
/// metrics, and the folder holding the outbox.
fn stream_with_restarts(how: Stop) -> (Vec<String>, String, tempfile::TempDir) {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let config = config(dir.path(), &broker, http, "instance_id = \"agent-a\"");
    produce_half(&broker, 0, true);
    produce_half(&broker, 0, false);
    let mut logs = Vec::new();
    let mut agent = Agent::start(&config, http);
    for m in 1..6 {
        produce_half(&broker, m, true);
        // Minute m − 1 closes once every partition is in minute m; minute m is open.
        agent.wait(Duration::from_secs(60), "the previous minute closed", |a| {
            evaluated(&a.log()).iter().any(|w| w.0 == m - 1).then_some(())
        });
        let log = agent.log_path();
        match how {
            Stop::Term => assert!(agent.stop().success(), "graceful stop"),
            Stop::Kill => agent.kill(),
        }
        logs.push(std::fs::read_to_string(log).unwrap_or_default());
        produce_half(&broker, m, false);
        agent = Agent::start(&config, http);
    }
    // The last minute closes for idleness once the agent has caught up.
    agent.wait(Duration::from_secs(60), "minute 5 closed", |a| {
        evaluated(&a.log()).iter().any(|w| w.0 == 5).then_some(())
    });
    let metrics = agent.metrics();
    let log = agent.log_path();
    assert!(agent.stop().success());
    logs.push(std::fs::read_to_string(log).unwrap_or_default());
    (logs, metrics, dir)
}

/// SIGTERM during every window: no window is evaluated in part or twice.
#[test]
fn graceful_restarts_evaluate_every_window_once_and_whole() {
    let (logs, m, dir) = stream_with_restarts(Stop::Term);
    let all: Vec<Evaluated> = logs.iter().flat_map(|l| evaluated(l)).collect();
    let expected: BTreeMap<i64, Vec<(u64, bool)>> = (0..6).map(|m| (m, vec![(300, false)])).collect();
    assert_eq!(by_minute(&all), expected, "each minute once, whole, across 5 SIGTERMs:\n{}", logs.join("\n----\n"));
    assert_eq!(metric(&m, r#"driftwatch_events_total{model="credit-risk",outcome="late"}"#), Some(0.0), "{m}");
    // The drift of minutes 2 and 3 fired once, and resolved once in minute 4.
    let notices = drift_notices(&dir.path().join("outbox"));
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices.iter().filter(|s| s.contains("income-drift (income) firing")).count() == 1, "{notices:?}");
    assert!(notices.iter().filter(|s| s.contains("income-drift (income) resolved")).count() == 1, "{notices:?}");
}

/// `kill -9` at the worst moments (just after a window closed): nothing is lost; a window
/// evaluated again is whole, marked repeated, and steps no alert twice.
#[test]
fn killed_agents_lose_nothing_and_repeat_no_effect() {
    let (logs, _, dir) = stream_with_restarts(Stop::Kill);
    let all: Vec<Evaluated> = logs.iter().flat_map(|l| evaluated(l)).collect();
    let minutes = by_minute(&all);
    assert_eq!(minutes.keys().copied().collect::<Vec<_>>(), (0..6).collect::<Vec<_>>(), "{minutes:?}");
    for (m, evaluations) in &minutes {
        assert!(evaluations.iter().all(|e| e.0 == 300), "minute {m} whole every time: {minutes:?}");
        assert!(!evaluations[0].1, "minute {m}: the first evaluation is not a repeat: {minutes:?}");
        assert!(evaluations[1..].iter().all(|e| e.1), "minute {m}: evaluated again = repeated: {minutes:?}");
    }
    // Each alert transition stepped once across all runs (the log says each step once)...
    let steps = |t: &str| logs.iter().map(|l| l.matches(&format!("transition=\"{t}\"")).count()).sum::<usize>();
    assert_eq!((steps("firing"), steps("resolved")), (1, 1), "{}", logs.join("\n----\n"));
    // ... and was mailed once: digests written after a kill fold what was queued before it.
    let notices = drift_notices(&dir.path().join("outbox"));
    let mailed = |t: &str| notices.iter().filter(|s| s.contains(t)).count();
    assert!(mailed("firing") <= 1 && mailed("resolved") == 1, "{notices:?}");
}

/// A broker outage longer than `idle_timeout` in the middle of a window is not silence.
#[test]
fn a_broker_outage_longer_than_the_idle_timeout_loses_no_event() {
    let mut broker = Broker::start("sqlite");
    broker.create_topic("predictions", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let config = config(dir.path(), &broker, http, "");
    let agent = Agent::start(&config, http);
    for m in 0..3 {
        produce_half(&broker, m, true);
        if m > 0 {
            agent.wait(Duration::from_secs(60), "the previous minute closed", |a| {
                a.windows("credit-risk").iter().any(|w| w.0 == m - 1).then_some(())
            });
        }
        // Down for twice the idle timeout (3 s) once the agent has read minute m's first half.
        let read = (300 * m + 150) as f64;
        agent.wait(Duration::from_secs(30), "the first half of the minute read", |a| {
            let accepted = metric(&a.metrics(), r#"driftwatch_events_total{model="credit-risk",outcome="accepted"}"#);
            accepted.filter(|&n| n >= read).map(|_| ())
        });
        broker.stop_for(Duration::from_secs(6));
        produce_half(&broker, m, false);
    }
    let windows = agent.wait(Duration::from_secs(90), "minute 2 closed", |a| {
        Some(a.windows("credit-risk")).filter(|w| w.iter().any(|x| x.0 == 2))
    });
    let counts: Vec<(i64, u64)> = windows.iter().map(|w| (w.0, w.1)).collect();
    assert_eq!(counts, vec![(0, 300), (1, 300), (2, 300)], "log:\n{}", agent.log());
    let m = agent.metrics();
    assert_eq!(metric(&m, r#"driftwatch_events_total{model="credit-risk",outcome="late"}"#), Some(0.0), "{m}");
    assert!(agent.stop().success());
}

/// A static member (`instance_id`) killed and started again takes its partitions back at
/// once, not after the 45 s session timeout.
#[test]
fn a_restarted_static_member_rejoins_at_once() {
    let broker = Broker::start("memory");
    broker.create_topic("predictions", 3);
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let config = config(dir.path(), &broker, http, "instance_id = \"agent-r\"");
    for _ in 0..2 {
        let agent = Agent::start(&config, http);
        agent.kill();
        let started = Instant::now();
        let agent = Agent::start(&config, http);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(15), "rejoined after {took:?}; log:\n{}", agent.log());
        agent.kill();
    }
}

/// Replay never reads an oversized line whole: 40 lines of 10 MiB and one of 300 MiB on
/// standard input keep the agent's memory far below their size; each is counted as
/// `too_large` and the good events after them are all evaluated.
#[test]
fn oversized_lines_are_skipped_while_reading_with_bounded_memory() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let baseline = super::agent::root().join("fixtures/credit/reference.csv");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{http}\"\n[source]\nkind = \"replay\"\npath = \"-\"\nmax_event_bytes = 65536\n\n\
             [[model]]\nid = \"credit-risk\"\nbaseline = {:?}\nexclude = [\"event_id\", \"score\"]\n[model.window]\nsize = \"1m\"\n",
            baseline.display().to_string()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DRIFTWATCH_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let pad = vec![b'x'; 10 << 20];
    for _ in 0..40 {
        stdin.write_all(br#"{"model_id":"credit-risk","pad":""#).expect("write");
        stdin.write_all(&pad).expect("write");
        stdin.write_all(b"\"}\n").expect("write");
    }
    // One line of 300 MiB, written in pieces.
    for _ in 0..30 {
        stdin.write_all(&pad).expect("write");
    }
    stdin.write_all(b"\n").expect("write");
    for e in nested(OK, "credit-risk", 0..300, 0) {
        stdin.write_all(&e).expect("write");
        stdin.write_all(b"\n").expect("write");
    }
    stdin.flush().expect("flush");
    let peak_kib = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    // Wait until the agent has taken every line (its counters say so), then read its peak.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = super::agent::http_get(http, "/metrics").map(|r| r.1).unwrap_or_default();
        let too_large = metric(&m, r#"driftwatch_events_total{model="credit-risk",outcome="too_large"}"#);
        let accepted = metric(&m, r#"driftwatch_events_total{model="credit-risk",outcome="accepted"}"#);
        if too_large == Some(41.0) && accepted == Some(300.0) {
            break;
        }
        assert!(Instant::now() < deadline, "not all lines were taken: {too_large:?} too large, {accepted:?} accepted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let peak_mib = peak_kib() / 1024;
    drop(stdin);
    let out = child.wait_with_output().expect("exit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    let windows = evaluated(&log);
    assert_eq!(windows, vec![(0, 300, false)], "{log}");
    // 700 MiB went in; what stays is the baseline, the runtime and bounded buffers.
    assert!(peak_mib < 250, "peak resident memory {peak_mib} MiB");
}

/// A pipeline started from a checkpoint, in process: what the last run used is passed over,
/// what it held in open windows is taken back, and a window it evaluated is evaluated again
/// as a repeat (same id, no alert step, no second count).
mod resume {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use driftwatch::checkpoint::{Checkpoint, ModelMark, PartitionMark};
    use driftwatch::chunk::Chunk;
    use driftwatch::evaluate::Evaluation;
    use driftwatch::metrics::Metrics;
    use driftwatch::pipeline::{Pipeline, announce};
    use driftwatch::status::{Shared, Status};

    use super::super::agent::{T0, load_setups};
    use super::super::kafka::{DRIFT, OK, credit_model, metric, nested};

    const MINUTE: i64 = 60_000;

    fn pipeline(dir: &std::path::Path, checkpoint: Checkpoint) -> (Pipeline, Arc<Shared>, Arc<Mutex<Vec<Evaluation>>>) {
        let config = dir.join("agent.toml");
        let model = credit_model("credit-risk", "[\"predictions\"]", "").replace("idle_timeout = \"3s\"", "")
            + "[[model.rule]]\nname = \"income-drift\"\nfeatures = [\"income\"]\ntest = \"ks\"\nwarn = 0.001\nfor = 1\n";
        std::fs::write(&config, model).expect("config");
        let setups = load_setups(&config);
        let metrics = Metrics::new().expect("metrics");
        let status = Status { models: setups.iter().map(|s| announce(s, &metrics)).collect(), ..Status::default() };
        let shared = Arc::new(Shared::new(metrics, status));
        let readers = vec![setups.iter().map(|s| s.model.id.clone()).collect()];
        let mut p = Pipeline::new(setups, &readers, 1 << 20, shared.clone()).expect("pipeline");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        p.observe(Box::new(move |e| sink.lock().expect("lock").push(e.clone())));
        p.resume(Some(checkpoint), &["predictions".to_string()]);
        p.assign(&[(0, 0, Some(0))], Instant::now());
        (p, shared, seen)
    }

    fn chunk(events: &[Vec<u8>], first_offset: i64) -> Chunk {
        let mut chunk = Chunk::default();
        for (i, e) in events.iter().enumerate() {
            chunk.push(0, 0, first_offset + i as i64, None, e);
        }
        chunk
    }

    fn checkpoint(cursor: Option<i64>, evaluated_until: Option<i64>, seen: i64) -> Checkpoint {
        let mut c = Checkpoint::default();
        c.models.insert("credit-risk".into(), ModelMark { window: (MINUTE, MINUTE), cursor, evaluated_until });
        c.partitions.push(PartitionMark { topic: "predictions".into(), partition: 0, committed: 0, seen });
        c
    }

    #[test]
    fn events_the_last_run_used_are_passed_over_and_open_windows_rebuilt() {
        let dir = tempfile::tempdir().expect("tmp");
        // The last run closed minute 0 (offsets 0..300), had read 150 events of minute 1
        // (open) and stopped; it committed offset 0 (say, a commit that never arrived).
        let (mut p, shared, seen) = pipeline(dir.path(), checkpoint(Some(T0 + MINUTE), Some(T0 + MINUTE), 450));
        let mut events = nested(OK, "credit-risk", 0..300, 0);
        events.extend(nested(OK, "credit-risk", 300..600, 1));
        events.extend(nested(OK, "credit-risk", 600..601, 2));
        p.process(&chunk(&events, 0), Instant::now());
        let evaluations = seen.lock().expect("lock").clone();
        let windows: Vec<(i64, u64)> = evaluations.iter().map(|e| ((e.start - T0) / MINUTE, e.events)).collect();
        assert_eq!(windows, vec![(1, 300)], "minute 0 is not evaluated again; minute 1 whole");
        let m = shared.metrics.encode();
        let series = |outcome: &str| {
            metric(&m, &format!("driftwatch_events_total{{model=\"credit-risk\",outcome=\"{outcome}\"}}"))
        };
        assert_eq!(series("accepted"), Some(151.0), "150 new events of minute 1, 1 of minute 2\n{m}");
        assert_eq!(series("late"), Some(0.0), "minute 0 was used, not late\n{m}");
        assert_eq!(metric(&m, r#"driftwatch_events_replayed_total{model="credit-risk"}"#), Some(150.0), "{m}");
        // Committable: minute 2's event holds offset 600.
        assert_eq!(p.committable(), vec![(0, 0, 600)]);
    }

    #[test]
    fn a_window_evaluated_before_a_crash_is_a_repeat_that_steps_no_alert() {
        let dir = tempfile::tempdir().expect("tmp");
        // The last run evaluated minute 0 (a drifted one) and died before its checkpoint
        // moved the cursor: the events come again.
        let (mut p, shared, seen) = pipeline(dir.path(), checkpoint(None, Some(T0 + MINUTE), 0));
        let mut events = nested(DRIFT, "credit-risk", 0..300, 0);
        events.extend(nested(DRIFT, "credit-risk", 300..600, 1));
        events.extend(nested(OK, "credit-risk", 0..1, 2));
        p.process(&chunk(&events, 0), Instant::now());
        let evaluations = seen.lock().expect("lock").clone();
        let windows: Vec<(i64, u64, usize)> =
            evaluations.iter().map(|e| ((e.start - T0) / MINUTE, e.events, e.notices().len())).collect();
        // Minute 0 again: no notice; minute 1 is new and fires.
        assert_eq!(windows, vec![(0, 300, 0), (1, 300, 1)]);
        let m = shared.metrics.encode();
        let verdict =
            |v: &str| metric(&m, &format!("driftwatch_windows_total{{model=\"credit-risk\",verdict=\"{v}\"}}"));
        assert_eq!((verdict("repeated"), verdict("evaluated")), (Some(1.0), Some(1.0)), "{m}");
        let status = shared.status.lock().expect("status");
        let recent = &status.models[0].recent_windows;
        assert_eq!(
            recent.iter().map(|w| (w.head.id.clone(), w.head.repeated)).collect::<Vec<_>>(),
            vec![
                ("credit-risk/2026-11-27T00:00:00.000Z".to_string(), true),
                ("credit-risk/2026-11-27T00:01:00.000Z".to_string(), false),
            ]
        );
        assert_eq!(status.models[0].windows_closed, 1, "a repeat is not a new window");
    }
}
