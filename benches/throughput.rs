//! End-to-end throughput of the streaming agent: 25-feature prediction events (20
//! numerical, 5 categorical, about 600 bytes of JSON each) through decode → windows →
//! evaluate, with one-minute windows of 100 000 events.
//!
//! Stages, each reported in events per second of wall time and per CPU-second:
//! 1. `decode`: payload → Arrow batches only (in process);
//! 2. `pipeline`: decode + panes + window close + every test (in process), with window
//!    close times (merge + tests for 25 features × 100 k samples);
//! 3. `replay`: the `driftwatch run` binary reading an NDJSON file (replay source);
//! 4. `rss` (with `--rss-minutes M`): the binary fed endlessly on stdin for M minutes,
//!    resident memory sampled every second;
//! 5. `tansu` (with `--tansu`): the binary consuming from a Tansu broker (three partitions),
//!    started by `scripts/start-tansu.sh`; reported separately since the broker is slower
//!    than Apache Kafka.
//! 6. `cluster` (with `--tansu-cluster`): the binary with `[cluster]` consuming from a Tansu
//!    broker (six partitions), one agent then two in one group: aggregate events/s and
//!    events per CPU-second of the agents (the broker's CPU reported beside them).
//! 7. `soak` (with `--soak-minutes M [--rate R]`): the binary fed on stdin at a fixed R
//!    events/s (default 20 000) for M minutes, two models, a segment each, duplicate
//!    detection on (1 % of events repeated); resident memory sampled every second, first
//!    and last quarter compared. Runs alone (the other stages are skipped).
//!
//! Run: `cargo bench --bench throughput -- [--events N] [--rss-minutes M] [--tansu] [--tansu-cluster] [--soak-minutes M]`
//! (`--only decode|pipeline` stops after that stage, for profiling).
//! Needs nothing but the repository (the reference data is generated here).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use driftwatch::chunk::Chunk;
use driftwatch::config;
use driftwatch::decode::{ModelFields, Position, TopicDecoder};
use driftwatch::metrics::Metrics;
use driftwatch::pipeline::Pipeline;
use driftwatch::rng::SplitMix64 as Rng;
use driftwatch::setup::load_models;
use driftwatch::status::{Shared, Status};

const NUMERICAL: usize = 20;
const CATEGORICAL: usize = 5;
const PER_WINDOW: i64 = 100_000;
const T0: i64 = 1_795_737_600_000;

fn value(rng: &mut Rng, j: usize, shift: f64) -> f64 {
    (j as f64) + (1.0 + j as f64 / 10.0) * rng.normal() + shift
}

fn category(rng: &mut Rng) -> String {
    format!("c{}", (rng.open_unit() * rng.open_unit() * 12.0) as u32)
}

/// The reference: 100 000 rows as Parquet.
fn write_reference(path: &Path) {
    let mut rng = Rng(1);
    let n = 100_000;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for j in 0..NUMERICAL {
        fields.push(Field::new(format!("num_{j:02}"), DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from((0..n).map(|_| value(&mut rng, j, 0.0)).collect::<Vec<_>>())));
    }
    for j in 0..CATEGORICAL {
        fields.push(Field::new(format!("cat_{j}"), DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from((0..n).map(|_| category(&mut rng)).collect::<Vec<_>>())));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).expect("create"), schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// The feature part of event `i` (everything after the timestamp), drifting from the
/// middle of the stream on.
fn features(rng: &mut Rng, i: usize, n: usize) -> String {
    let shift = if i > n / 2 { 0.3 } else { 0.0 };
    let mut s = String::with_capacity(640);
    s.push_str(&format!(r#""event_id":"ev-{i:010}","features":{{"#));
    for j in 0..NUMERICAL {
        s.push_str(&format!(r#""num_{j:02}":{:.6},"#, value(rng, j, shift)));
    }
    for j in 0..CATEGORICAL {
        s.push_str(&format!(r#""cat_{j}":"{}"{}"#, category(rng), if j + 1 < CATEGORICAL { "," } else { "" }));
    }
    s.push_str(&format!(r#"}},"prediction":{{"score":{:.4}}}}}"#, rng.open_unit()));
    s
}

/// An event in DESIGN's default shape: RFC 3339 time, features nested.
fn event(time: i64, features: &str) -> String {
    let time = chrono::DateTime::from_timestamp_millis(time)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    format!(r#"{{"model_id":"bench","model_version":"1.0.0","timestamp":"{time}",{features}"#)
}

/// Event time of event `i`: `PER_WINDOW` events per minute.
fn time_of(i: usize) -> i64 {
    T0 + (i as i64 * 60_000) / PER_WINDOW
}

fn config_text(reference: &Path, source: &str, listen: u16) -> String {
    format!(
        "[agent]\nlisten = \"127.0.0.1:{listen}\"\n\n{source}\n\n[[model]]\nid = \"bench\"\nbaseline = {:?}\n\
         max_samples = 100000\n\n[model.window]\nsize = \"1m\"\nidle_timeout = \"2s\"\n",
        reference.display().to_string()
    )
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}

fn report(stage: &str, events: usize, wall: f64, cpu: f64) {
    println!(
        "{stage:<9} {events:>9} events  {wall:>7.3} s wall  {:>10.0} events/s  {cpu:>7.3} CPU-s  {:>10.0} events/CPU-s",
        events as f64 / wall,
        events as f64 / cpu.max(1e-9)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let n: usize = arg("--events").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rss_minutes: Option<f64> = arg("--rss-minutes").and_then(|v| v.parse().ok());
    let tansu = args.iter().any(|a| a == "--tansu");
    let tansu_cluster = args.iter().any(|a| a == "--tansu-cluster");
    // `--only decode` (or pipeline) stops after that stage, for profiling.
    let only = arg("--only");
    let dir = tempfile::tempdir().expect("tmp");
    let reference = dir.path().join("reference.parquet");
    write_reference(&reference);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("driftwatch throughput: {n} events, 25 features, windows of {PER_WINDOW} events, {cpus} CPUs");
    if let Some(minutes) = arg("--soak-minutes").and_then(|v| v.parse::<f64>().ok()) {
        let rate: f64 = arg("--rate").and_then(|v| v.parse().ok()).unwrap_or(20_000.0);
        let mut rng = Rng(2);
        let tails: Vec<String> = (0..200_000).map(|i| features(&mut rng, i, usize::MAX)).collect();
        soak_run(env!("CARGO_BIN_EXE_driftwatch"), &reference, &tails, minutes, rate);
        return;
    }

    let mut rng = Rng(2);
    let tails: Vec<String> = (0..n).map(|i| features(&mut rng, i, n)).collect();
    let mut chunks = Vec::new();
    let mut bytes = 0usize;
    for (c, part) in tails.chunks(8192).enumerate() {
        let mut chunk = Chunk::with_capacity(part.len());
        for (k, tail) in part.iter().enumerate() {
            let i = c * 8192 + k;
            let e = event(time_of(i), tail);
            bytes += e.len();
            chunk.push(0, 0, i as i64, None, e.as_bytes());
        }
        chunks.push(chunk);
    }
    println!("mean event size: {} bytes", bytes / n);

    // 1. Decode only.
    let cfg = config::parse(&dir.path().join("agent.toml"), &config_text(&reference, "", 0)).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let setups = rt.block_on(load_models(&cfg)).expect("baseline");
    let spec = &setups[0].baseline.spec;
    let events = &cfg.models[0].events;
    let mut fields =
        ModelFields::new("bench", events.model_id.clone(), events.timestamp.clone(), events.timestamp_format);
    fields.features = spec.features.iter().map(|f| (f.name.clone(), events.features.child(&f.name), f.kind)).collect();
    let mut decoder = TopicDecoder::new(vec![fields], 1 << 20).expect("decoder");
    if only.as_deref() == Some("utf8") {
        let t0 = Instant::now();
        let ok = chunks
            .iter()
            .flat_map(|c| c.records.iter().map(move |r| c.payload(r)))
            .filter(|p| std::str::from_utf8(p).is_ok())
            .count();
        report("utf8", ok, t0.elapsed().as_secs_f64(), t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let ok = chunks
            .iter()
            .flat_map(|c| c.records.iter().map(move |r| c.payload(r)))
            .filter(|p| serde_json::from_slice::<serde::de::IgnoredAny>(p).is_ok())
            .count();
        report("serde-ign", ok, t0.elapsed().as_secs_f64(), t0.elapsed().as_secs_f64());
        return;
    }
    let (cpu0, t0) = (cpu_seconds("self"), Instant::now());
    let mut rows = 0;
    for chunk in &chunks {
        for r in &chunk.records {
            decoder.push(chunk.payload(r), None, Position { partition: 0, offset: r.offset }).expect("valid");
        }
        rows += decoder.flush(0).map_or(0, |d| d.times.len());
    }
    assert_eq!(rows, n);
    report("decode", n, t0.elapsed().as_secs_f64(), cpu_seconds("self") - cpu0);
    if only.as_deref() == Some("decode") {
        return;
    }

    // 2. The whole pipeline in process.
    let shared = Arc::new(Shared::new(Metrics::new().expect("metrics"), Status::default()));
    let readers = vec![setups.iter().map(|s| s.model.id.clone()).collect()];
    let mut pipeline = Pipeline::new(setups, &readers, 1 << 20, shared).expect("pipeline");
    let closes = Arc::new(Mutex::new(Vec::new()));
    let sink = closes.clone();
    pipeline.observe(Box::new(move |e| sink.lock().expect("lock").push((e.events, e.close_seconds))));
    let (cpu0, t0) = (cpu_seconds("self"), Instant::now());
    for chunk in &chunks {
        pipeline.process(chunk, Instant::now());
    }
    pipeline.finish();
    report("pipeline", n, t0.elapsed().as_secs_f64(), cpu_seconds("self") - cpu0);
    let closes = closes.lock().expect("lock").clone();
    let mut full: Vec<f64> = closes.iter().filter(|(e, _)| *e == PER_WINDOW as u64).map(|(_, s)| s * 1000.0).collect();
    full.sort_by(f64::total_cmp);
    if !full.is_empty() {
        println!(
            "window close, 25 features × 100 k samples: median {:.1} ms, max {:.1} ms over {} windows",
            full[full.len() / 2],
            full[full.len() - 1],
            full.len()
        );
    }
    drop(chunks);
    if only.as_deref() == Some("pipeline") {
        return;
    }

    // 3. The binary, replay source.
    let events_file = dir.path().join("events.ndjson");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&events_file).expect("events"));
        for (i, tail) in tails.iter().enumerate() {
            writeln!(f, "{}", event(time_of(i), tail)).expect("write");
        }
    }
    let replay_cfg = dir.path().join("replay.toml");
    let source = format!("[source]\nkind = \"replay\"\npath = {:?}", events_file.display().to_string());
    std::fs::write(&replay_cfg, config_text(&reference, &source, free_port())).expect("config");
    let bin = env!("CARGO_BIN_EXE_driftwatch");
    let t0 = Instant::now();
    let child = spawn_agent(bin, &replay_cfg);
    let pid = child.id();
    let (mut peak, mut cpu) = (0.0f64, 0.0);
    let child = Arc::new(Mutex::new(child));
    loop {
        cpu = cpu_seconds(&pid.to_string()).max(cpu);
        peak = peak.max(rss_mib(pid).unwrap_or(0.0));
        if child.lock().expect("lock").try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t0.elapsed().as_secs_f64();
    report("replay", n, wall, cpu);
    println!("replay peak RSS {peak:.0} MiB (includes the 100 k-row baseline and start-up)");

    if let Some(minutes) = rss_minutes {
        rss_run(bin, &reference, &tails, minutes);
    }
    if tansu {
        tansu_run(bin, &reference, &tails);
    }
    if tansu_cluster {
        cluster_runs(bin, &reference, &tails);
    }
}

/// Starts a Tansu broker under `dir` with topic `bench` of `partitions` partitions and
/// produces the events into it, round-robin, `batch` records a request at most; returns the
/// broker's address and pid.
fn tansu_with_events(dir: &Path, partitions: i32, tails: &[String], batch: &str) -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/start-tansu.sh")).arg(dir).output().expect("tansu");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let (port, pid) = (it.next().unwrap_or("0").to_string(), it.next().unwrap_or("0").to_string());
    let brokers = format!("127.0.0.1:{port}");
    let ok = Command::new("tansu")
        .args(["topic", "create", "bench", "--partitions", &partitions.to_string(), "--broker"])
        .arg(format!("tcp://{brokers}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "topic create");
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", batch)
        .create()
        .expect("producer");
    let t0 = Instant::now();
    for (i, tail) in tails.iter().enumerate() {
        let e = event(time_of(i), tail);
        let mut record =
            BaseRecord::<(), str>::to("bench").partition((i % partitions as usize) as i32).payload(e.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(600)).expect("flush");
    let n = tails.len();
    println!(
        "tansu: produced {n} events into {partitions} partitions: {:.0} events/s",
        n as f64 / t0.elapsed().as_secs_f64()
    );
    (brokers, pid)
}

/// Produces events into a six-partition topic of a fresh Tansu broker, one record per
/// request (so a consumer may start at any committed offset), then times one and then two
/// agents with `[cluster]` consuming all of them, each run in its own group and cluster topic.
fn cluster_runs(bin: &str, reference: &Path, tails: &[String]) {
    let n = tails.len().min(100_000);
    let dir = reference.parent().expect("dir");
    let (brokers, tansu) = tansu_with_events(&dir.join("tansu-cluster"), 6, &tails[..n], "1");
    let series = "driftwatch_events_total{model=\"bench\",outcome=\"accepted\"} ";
    for agents in [1usize, 2] {
        let broker_cpu0 = cpu_seconds(&tansu);
        let t0 = Instant::now();
        let mut children = Vec::new();
        for a in 0..agents {
            let http = free_port();
            let cfg = dir.join(format!("cluster-{agents}-{a}.toml"));
            let source = format!(
                "[source]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ngroup_id = \"bench-{agents}\"\n\n\
                 [cluster]\ntopic = \"partials-{agents}\"\npartitions = 2"
            );
            let text = config_text(reference, &source, http)
                .replace("[[model]]\nid = \"bench\"\n", "[[model]]\nid = \"bench\"\ntopics = [\"bench\"]\n");
            std::fs::write(&cfg, text).expect("cfg");
            let child = spawn_agent(bin, &cfg);
            children.push((child, http, 0.0f64));
        }
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let mut done = 0.0;
            for (child, http, cpu) in &mut children {
                *cpu = cpu_seconds(&child.id().to_string()).max(*cpu);
                let m = scrape(*http);
                done += m
                    .lines()
                    .find_map(|l| l.strip_prefix(series))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
            if done as usize >= n || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu: f64 = children.iter().map(|c| c.2).sum();
        report(&format!("cluster×{agents}"), n, wall, cpu);
        println!("cluster×{agents}: the broker used {:.1} CPU-s meanwhile", cpu_seconds(&tansu) - broker_cpu0);
        for (mut child, _, _) in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = Command::new("kill").arg(&tansu).status();
}

/// `driftwatch run --config cfg`, logging warnings only.
fn spawn_agent(bin: &str, cfg: &Path) -> std::process::Child {
    Command::new(bin)
        .args(["run", "--config"])
        .arg(cfg)
        .env("DRIFTWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("driftwatch run")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts `driftwatch run` with a configuration that reads standard input.
fn run_on_stdin(bin: &str, cfg: &Path) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(cfg)
        .env("DRIFTWATCH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("driftwatch run");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

/// Samples a process's resident memory (MiB) every second until `end`.
fn sample_rss(pid: u32, end: Instant) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while Instant::now() < end {
            samples.extend(rss_mib(pid));
            std::thread::sleep(Duration::from_secs(1));
        }
        samples
    })
}

/// Mean of the first and of the last quarter of the samples, and the largest.
fn quarters(s: &[f64]) -> Option<(f64, f64, f64)> {
    let q = s.len() / 4;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (q > 0).then(|| (mean(&s[..q]), mean(&s[s.len() - q..]), s.iter().copied().fold(0.0, f64::max)))
}

/// Feeds the binary on stdin for `minutes`, sampling its resident memory every second.
fn rss_run(bin: &str, reference: &Path, tails: &[String], minutes: f64) {
    let dir = reference.parent().expect("dir");
    let cfg = dir.join("stdin.toml");
    std::fs::write(&cfg, config_text(reference, "[source]\nkind = \"replay\"\npath = \"-\"", free_port()))
        .expect("cfg");
    let (mut child, mut stdin) = run_on_stdin(bin, &cfg);
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let sampler = sample_rss(pid, end);
    let mut i = 0usize;
    let mut buf = String::new();
    while Instant::now() < end {
        buf.clear();
        for _ in 0..10_000 {
            buf.push_str(&event(time_of(i), &tails[i % tails.len()]));
            buf.push('\n');
            i += 1;
        }
        if stdin.write_all(buf.as_bytes()).is_err() {
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
    if let Some((first, last, max)) = quarters(&sampler.join().unwrap_or_default()) {
        println!(
            "rss over {minutes} min ({i} events): first quarter mean {first:.0} MiB, last quarter mean {last:.0} MiB, max {max:.0} MiB"
        );
    }
}

/// Feeds the binary on stdin at `rate` events/s for `minutes`: two models with a segment
/// each and duplicate detection, 1 % of events sent twice; resident memory every second.
fn soak_run(bin: &str, reference: &Path, tails: &[String], minutes: f64, rate: f64) {
    let dir = reference.parent().expect("dir");
    let cfg = dir.join("soak.toml");
    let mut text =
        format!("[agent]\nlisten = \"127.0.0.1:{}\"\n\n[source]\nkind = \"replay\"\npath = \"-\"\n\n", free_port());
    for id in ["bench", "bench2"] {
        text.push_str(&format!(
            "[[model]]\nid = \"{id}\"\nbaseline = {:?}\nmax_samples = 100000\n\
             [model.window]\nsize = \"1m\"\nidle_timeout = \"2s\"\n\
             [model.quality]\nduplicate_horizon = \"10m\"\nmax_tracked_ids = 1000000\n\
             [[model.segment]]\nname = \"cat0\"\ncolumn = \"cat_0\"\nmax_values = 5\n\n",
            reference.display().to_string()
        ));
    }
    std::fs::write(&cfg, text).expect("cfg");
    let (mut child, mut stdin) = run_on_stdin(bin, &cfg);
    let pid = child.id();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    let sampler = sample_rss(pid, end);
    let (mut i, mut sent) = (0usize, 0u64);
    let mut buf = String::new();
    while Instant::now() < end {
        // Paced in steps of 1/10 s.
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        buf.clear();
        while sent < due {
            let e = event(time_of(i), &tails[i % tails.len()]);
            let e = if i % 2 == 1 { e.replacen("\"bench\"", "\"bench2\"", 1) } else { e };
            buf.push_str(&e);
            buf.push('\n');
            if i % 100 == 7 {
                buf.push_str(&e);
                buf.push('\n');
                sent += 1;
            }
            i += 1;
            sent += 1;
        }
        if stdin.write_all(buf.as_bytes()).is_err() {
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
    if let Some((first, last, max)) = quarters(&sampler.join().unwrap_or_default()) {
        println!(
            "soak {minutes} min at {rate:.0} events/s ({sent} events, 2 models, segments, duplicates): RSS first quarter mean {first:.0} MiB, last quarter mean {last:.0} MiB ({:+.1} %), max {max:.0} MiB",
            (last / first - 1.0) * 100.0
        );
    }
}

/// Produces the events into Tansu (three partitions) and times the agent consuming them.
fn tansu_run(bin: &str, reference: &Path, tails: &[String]) {
    let n = tails.len().min(200_000);
    let dir = reference.parent().expect("dir");
    let (brokers, pid) = tansu_with_events(&dir.join("tansu"), 3, &tails[..n], "10000");
    let http = free_port();
    let cfg = dir.join("tansu.toml");
    let source = format!("[source]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ngroup_id = \"bench\"");
    let text = config_text(reference, &source, http)
        .replace("[[model]]\nid = \"bench\"\n", "[[model]]\nid = \"bench\"\ntopics = [\"bench\"]\n");
    std::fs::write(&cfg, text).expect("cfg");
    let t0 = Instant::now();
    let mut child = spawn_agent(bin, &cfg);
    let deadline = Instant::now() + Duration::from_secs(600);
    let series = "driftwatch_events_total{model=\"bench\",outcome=\"accepted\"} ";
    let mut cpu = 0.0;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            eprintln!("the agent exited early");
            break;
        }
        cpu = cpu_seconds(&child.id().to_string()).max(cpu);
        let m = scrape(http);
        let done = m.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse::<f64>().ok());
        if done.is_some_and(|d| d as usize >= n) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    report("tansu", n, t0.elapsed().as_secs_f64(), cpu);
    let _ = child.kill();
    let _ = Command::new("kill").arg(&pid).status();
}

fn scrape(port: u16) -> String {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
