//! `driftwatch run` (and `driftwatch demo`): the long-running agent.
//!
//! Start-up loads every model's baseline, binds the HTTP server and starts the source, with
//! the pipeline on a thread of its own behind a bounded channel. A Kafka source resumes from
//! its checkpoint (see `checkpoint`). Shutdown (SIGTERM, SIGINT, the end of a replay, or
//! `--duration`) goes in order: the source stops reading; the pipeline drains the channel;
//! a replay (or the demo) has ended, so its open windows are closed and evaluated, while a
//! Kafka source leaves them open: their events stay uncommitted and the next run (or the
//! member that takes the partitions over) reads them again and evaluates each window once,
//! whole. The pipeline writes its checkpoint, the Kafka source commits the final frontier
//! synchronously, then the HTTP server stops. A shutdown that takes longer than
//! `shutdown_timeout` ends the process anyway, with an error.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::adapters::config::{Cluster, Config, Kafka, SourceKind};
use crate::engine::chunk::SourceState;
use crate::runtime::checkpoint::Store;
use crate::runtime::cluster::{ClusterError, OwnerFeed, PartialProducer, ensure_topic};
use crate::runtime::http::{self, BindError};
use crate::runtime::input::{self, Input, ReloadRequest};
use crate::runtime::metrics::Metrics;
use crate::runtime::notify::{Notifier, NotifyError};
use crate::runtime::pipeline::OwnerCommits;
use crate::runtime::pipeline::{ModelSetup, Observer, Pipeline, PipelineError};
use crate::runtime::reload::Watcher;
use crate::runtime::setup::{Feed, SetupError, TopicTable, load_models};
use crate::runtime::source::kafka::{Commits, DeadLetterProducer, KafkaError, KafkaSource};
use crate::runtime::source::replay::{self, ReplayOptions};
use crate::runtime::status::{Shared, Status};

/// A source of chunks written in Rust (the demo's generator): it gets the channel and a
/// stop flag, and returns when done or stopped.
pub type Generator = Box<dyn FnOnce(mpsc::Sender<Input>, Arc<AtomicBool>) + Send>;

/// Why the agent could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{0}: no [source] table; add one with kind = \"kafka\" (brokers, topics per model) or kind = \"replay\" (path)"
    )]
    NoSource(PathBuf),
    /// A configuration that validates but cannot run as a whole (topics that carry both
    /// predictions and labels).
    #[error("{0}: {1}")]
    Config(PathBuf, String),
    #[error("{0}: {1}")]
    Pipeline(PathBuf, PipelineError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("reading the replay: {0}")]
    Replay(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a task of the agent failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the pipeline thread stopped unexpectedly (see the message above)")]
    PipelineStopped,
    #[error("shutdown took longer than shutdown_timeout ({0:?}); open windows were not all evaluated")]
    ShutdownTimeout(Duration),
}

/// How this run differs from what the configuration file says.
#[derive(Default)]
pub struct RunOptions {
    pub listen: Option<SocketAddr>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    pub observers: Vec<Observer>,
    /// Replaces the configured source (the demo).
    pub generator: Option<Generator>,
    /// Replaces `[notify] outbox`.
    pub outbox: Option<std::path::PathBuf>,
    /// Stops the agent when it completes, instead of SIGTERM, SIGINT or `duration` (to drive
    /// a run in process).
    pub stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Runs the agent until its source ends or a signal arrives.
pub async fn run(config: &Config, mut options: RunOptions) -> Result<(), RunError> {
    let source = config.source.clone();
    let (feed, batch_rows, linger, max_event_bytes) = match (&source, &options.generator) {
        (_, Some(_)) => (Feed::Demo, 8192, Duration::from_millis(100), 1 << 20),
        (Some(s), None) => {
            let feed = if matches!(s.kind, SourceKind::Kafka(_)) { Feed::Kafka } else { Feed::Replay };
            (feed, s.batch_rows, s.linger, s.max_event_bytes)
        }
        (None, None) => {
            return Err(RunError::NoSource(config.path.clone()));
        }
    };
    let setups = load_models(config).await?;
    let invalid = |e: String| RunError::Config(config.path.clone(), e);
    let table = TopicTable::of(config, feed).map_err(invalid)?;
    if feed != Feed::Kafka
        && let Some(m) = config.models.iter().find(|m| m.labels.is_some())
    {
        tracing::warn!(model = %m.id, "[model.labels] needs a kafka source: no labels are read, performance is estimated only");
    }
    let topics = table.topics.clone();

    let shared = shared_state(config, feed, &setups)?;
    let (http_stop, server) = serve(options.listen.unwrap_or(config.agent.listen), &shared).await?;

    let unfit = |e| RunError::Pipeline(config.path.clone(), e);
    let mut pipeline = Pipeline::new(setups, &table.readers, max_event_bytes, shared.clone()).map_err(unfit)?;
    for models in &table.label_readers {
        pipeline.read_labels(models, max_event_bytes).map_err(unfit)?;
    }
    for o in options.observers {
        pipeline.observe(o);
    }
    let kafka = match (&source, &options.generator) {
        (Some(s), None) => match &s.kind {
            SourceKind::Kafka(k) => Some(k.clone()),
            SourceKind::Replay(_) => None,
        },
        _ => None,
    };
    let (tx, rx) = mpsc::channel::<Input>(input::CAPACITY);
    // In a cluster: the topic, and the producer whose acknowledgements go to the pipeline
    // (before `resume`: a cluster keeps no local checkpoint).
    let cluster = match (&config.cluster, &kafka) {
        (Some(c), Some(k)) => Some(start_cluster(c, k, &topics, &tx, &mut pipeline).await?),
        _ => None,
    };
    // (Before the alert states are restored: see `Pipeline::set_notify`.)
    let store = kafka.as_ref().map(|k| checkpoint_store(k, options.outbox.as_ref().unwrap_or(&config.notify.outbox)));
    pipeline.resume(store.as_ref().and_then(Store::load), &topics);
    if let Some(store) = &store {
        tracing::info!(file = %store.path().display(), "checkpoints of open windows and offsets");
    }
    let notifier = Arc::new(Mutex::new(start_notifier(config, options.outbox.as_ref(), &shared, &mut pipeline)?));
    let dead_letter = match &kafka {
        Some(k) => match &k.dead_letter_topic {
            Some(t) => Some(Arc::new(DeadLetterProducer::new(k, t.clone(), topics.clone(), shared.clone())?)),
            None => None,
        },
        None => None,
    };
    if let Some(dl) = &dead_letter {
        let dl = dl.clone();
        pipeline.set_dead_letter(Box::new(move |topic, payload, rejected| dl.send(topic, payload, rejected)));
    }
    let stop = Stop::spawn(options.stop.take(), options.duration);
    let (stop_rx, stop_flag) = (stop.rx.clone(), stop.flag.clone());
    // The owners' group of a cluster: which models are judged here, and their partials.
    if let (Some((_, owner_commits)), Some(c), Some(k)) = (&cluster, &config.cluster, &kafka) {
        let feed = OwnerFeed::new(k, c, owner_commits.clone())?;
        let (owner_tx, mut owner_rx) = mpsc::channel(16);
        let owner_stop = stop_rx.clone();
        tokio::spawn(async move { feed.read(owner_tx, owner_stop).await });
        let to_pipeline = tx.clone();
        tokio::spawn(async move {
            while let Some(input) = owner_rx.recv().await {
                if to_pipeline.send(Input::Owner(input)).await.is_err() {
                    break;
                }
            }
        });
    }

    // The pipeline thread.
    let commits: Commits = Arc::new(Mutex::new(BTreeMap::new()));
    // Replay and demo have one partition from the start; Kafka reports its assignments.
    if feed != Feed::Kafka {
        tx.send(Input::Assigned(vec![(0, 0, None)])).await.map_err(|_| RunError::PipelineStopped)?;
    }
    // Kafka reports its health; replay and the demo are always caught up.
    let source_state = Arc::new(Mutex::new(if feed == Feed::Kafka {
        SourceState { healthy: false, behind: Vec::new(), at: None }
    } else {
        SourceState::settled()
    }));
    // Idle timeouts are checked four times within the shortest.
    let tick = config
        .models
        .iter()
        .map(|m| m.window.idle_timeout / 4)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let (done_tx, done_rx) = oneshot::channel::<()>();
    {
        let (commits, shared, topics, state) = (commits.clone(), shared.clone(), topics.clone(), source_state.clone());
        let handle = tokio::runtime::Handle::current();
        let finish = feed != Feed::Kafka;
        std::thread::Builder::new().name("pipeline".into()).spawn(move || {
            let links = Links {
                commits: &commits,
                state: &state,
                store: store.as_ref(),
                finish,
                shared: &shared,
                topics: &topics,
            };
            drive(pipeline, rx, &links, &handle, tick);
            let _ = done_tx.send(());
        })?;
    }

    // Reloads: SIGHUP and changes in the configuration's files (not for the demo's
    // built-in configuration).
    if options.generator.is_none() {
        let watcher = Watcher {
            config: config.clone(),
            feed,
            table: table.clone(),
            max_event_bytes,
            shared: shared.clone(),
            requests: tx.clone(),
            notifier: notifier.clone(),
            outbox: options.outbox.clone(),
        };
        tokio::spawn(watcher.run(stop_rx.clone()));
    }

    // The source runs in this task until it ends or is stopped.
    let mut kafka_source = None;
    let end = tx.clone();
    match (&source, options.generator) {
        (_, Some(generator)) => {
            let flag = stop_flag.clone();
            tokio::task::spawn_blocking(move || generator(tx, flag)).await?;
        }
        (Some(s), None) => match &s.kind {
            SourceKind::Kafka(k) => {
                let consumer =
                    KafkaSource::new(k, topics.clone(), commits.clone(), source_state.clone(), shared.clone())?;
                consumer.read(tx, stop_rx.clone(), batch_rows, linger, max_event_bytes).await;
                kafka_source = Some(consumer);
            }
            SourceKind::Replay(r) => {
                let time_field = config.models.first().map(|m| m.events.timestamp.clone()).unwrap_or_default();
                let opts =
                    ReplayOptions { path: r.path.clone(), speed: r.speed, time_field, batch_rows, max_event_bytes };
                let flag = stop_flag.clone();
                let lines = tokio::task::spawn_blocking(move || replay::run(opts, tx, flag))
                    .await?
                    .map_err(RunError::Replay)?;
                tracing::info!(lines, "replay finished");
            }
        },
        (None, None) => unreachable!("checked above"),
    }
    // The watcher keeps a sender for reloads: the end is said, not inferred.
    let _ = end.send(Input::End).await;
    drop(end);

    // Drain: the pipeline closes its windows once the channel is empty and closed.
    let deadline = stop.since() + config.agent.shutdown_timeout;
    match tokio::time::timeout_at(deadline.into(), done_rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(RunError::PipelineStopped),
        Err(_) => return Err(RunError::ShutdownTimeout(config.agent.shutdown_timeout)),
    }
    if let Some(consumer) = &kafka_source {
        match consumer.commit() {
            Ok(offsets) => tracing::info!(%offsets, "final offsets committed"),
            Err(e) => tracing::error!("final commit failed: {e:#}"),
        }
    }
    if let Some(dl) = &dead_letter {
        dl.flush(deadline.saturating_duration_since(Instant::now()));
    }
    if let Some((producer, _)) = cluster {
        let left = deadline.saturating_duration_since(Instant::now());
        // Off the runtime's threads: flushing may report deliveries, which block to send.
        let flushed = tokio::task::spawn_blocking(move || producer.flush(left)).await?;
        if let Err(e) = flushed {
            tracing::warn!("cluster records not all delivered at shutdown: {e}");
        }
    }
    if let Some(n) = notifier.lock().ok().and_then(|mut n| n.take()) {
        // One last delivery attempt; what fails stays in the outbox for the next start.
        tokio::task::spawn_blocking(move || n.stop()).await?;
    }
    let _ = http_stop.send(());
    let _ = server.await;
    Ok(())
}

/// The agent's shared state at start: its metrics and the status document, each model
/// announced with its baseline.
fn shared_state(config: &Config, feed: Feed, setups: &[ModelSetup]) -> Result<Arc<Shared>, prometheus::Error> {
    let metrics = Metrics::new()?;
    metrics.config_info.with_label_values(&[crate::runtime::reload::config_digest(config).as_str()]).set(1);
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        source: feed.as_str().to_string(),
        started_at: crate::engine::text::rfc3339(chrono::Utc::now().timestamp_millis()),
        models: setups.iter().map(|s| crate::runtime::pipeline::announce(s, &metrics)).collect(),
    };
    let shared = Arc::new(Shared::new(metrics, status));
    shared.baselines_loaded.store(true, Ordering::Relaxed);
    if feed != Feed::Kafka {
        shared.partitions_assigned.store(true, Ordering::Relaxed);
    }
    Ok(shared)
}

/// The HTTP server on `listen`, until its sender is used (or dropped).
async fn serve(
    listen: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<(oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>), BindError> {
    let listener = http::bind(listen).await?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!("serving /metrics, /healthz, /readyz and /api/v1/status on http://{bound}");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, http::router(shared.clone()))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    Ok((stop, server))
}

/// A Kafka source checkpoints in the agent's state directory (the outbox's), one file per
/// broker list and consumer group.
fn checkpoint_store(kafka: &Kafka, dir: &std::path::Path) -> Store {
    let get = |key: &str| kafka.properties.get(key).map_or("", String::as_str);
    let group = if get("group.id").is_empty() { "driftwatch" } else { get("group.id") };
    Store::new(dir, &format!("{}/{group}", get("bootstrap.servers")))
}

/// A cluster's start: the topic (created when absent), the producer whose acknowledgements
/// reach the pipeline as inputs, and the pipeline set to ingest and own.
async fn start_cluster(
    cluster: &Cluster,
    kafka: &Kafka,
    topics: &[String],
    tx: &mpsc::Sender<Input>,
    pipeline: &mut Pipeline,
) -> Result<(Arc<PartialProducer>, OwnerCommits), ClusterError> {
    let partitions = ensure_topic(kafka, cluster).await?;
    let acks = tx.clone();
    let on_ack = Box::new(move |id, ok| {
        // On the producer's own thread (or a blocking one at shutdown), never the runtime's.
        let _ = acks.blocking_send(Input::Acked(id, ok));
    });
    let producer = Arc::new(PartialProducer::new(kafka, cluster, partitions, on_ack)?);
    let topic_partitions = topics.iter().map(|t| producer.partitions_of(t)).collect();
    let commits = OwnerCommits::default();
    pipeline.set_cluster(producer.clone(), topic_partitions, commits.clone());
    tracing::info!(topic = %cluster.topic, partitions, "in a cluster: partials go to the cluster topic, owned models are judged here");
    Ok((producer, commits))
}

/// Alerts: the outbox and its delivery thread, when any model has rules; the pipeline queues
/// its notices there. `outbox` replaces `[notify] outbox`.
fn start_notifier(
    config: &Config,
    outbox: Option<&PathBuf>,
    shared: &Arc<Shared>,
    pipeline: &mut Pipeline,
) -> Result<Option<Notifier>, NotifyError> {
    if config.models.iter().all(|m| m.rules.is_empty()) {
        return Ok(None);
    }
    let mut notify = config.notify.clone();
    if let Some(dir) = outbox {
        notify.outbox = dir.clone();
    }
    let (notifier, queue) = Notifier::start(&notify, shared.clone(), config.cluster.is_none())?;
    let rules: usize = config.models.iter().map(|m| m.rules.len()).sum();
    match &notify.smtp {
        Some(smtp) => tracing::info!(
            rules,
            outbox = %notifier.outbox.display(),
            "alert digests go to {}:{} (queued in the outbox first)",
            smtp.host,
            smtp.port
        ),
        None => tracing::info!(
            rules,
            outbox = %notifier.outbox.display(),
            "no [notify.smtp]: alert digests are written to the outbox as .eml files"
        ),
    }
    pipeline.set_notify(queue);
    Ok(Some(notifier))
}

/// The stop of a run: SIGTERM, SIGINT, `--duration` or the caller's future. Once it comes,
/// `rx` turns true, `flag` is set (for sources on blocking threads) and `since` says when.
struct Stop {
    rx: watch::Receiver<bool>,
    flag: Arc<AtomicBool>,
    at: Arc<Mutex<Option<Instant>>>,
}

impl Stop {
    fn spawn(caller: Option<Pin<Box<dyn Future<Output = ()> + Send>>>, duration: Option<Duration>) -> Stop {
        let (tx, rx) = watch::channel(false);
        let stop = Stop { rx, flag: Arc::new(AtomicBool::new(false)), at: Arc::new(Mutex::new(None)) };
        let (flag, at) = (stop.flag.clone(), stop.at.clone());
        tokio::spawn(async move {
            let why = match caller {
                Some(stop) => {
                    stop.await;
                    "asked to stop"
                }
                None => wait_for_stop(duration).await,
            };
            tracing::info!("{why}: stopping (the source stops, open windows are evaluated, offsets committed)");
            if let Ok(mut t) = at.lock() {
                *t = Some(Instant::now());
            }
            flag.store(true, Ordering::Relaxed);
            let _ = tx.send(true);
        });
        stop
    }

    /// When the stop came (now, if the source ended by itself).
    fn since(&self) -> Instant {
        self.at.lock().ok().and_then(|t| *t).unwrap_or_else(Instant::now)
    }
}

async fn wait_for_stop(duration: Option<Duration>) -> &'static str {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = timer => "duration reached",
            },
            Err(_) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = timer => "duration reached",
            },
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = timer => "duration reached",
    }
}

/// What the pipeline thread shares with the rest of the agent.
struct Links<'a> {
    commits: &'a Commits,
    state: &'a Mutex<SourceState>,
    /// Where checkpoints go (a Kafka source).
    store: Option<&'a Store>,
    /// Close and evaluate open windows at the end (the source has ended for good).
    finish: bool,
    shared: &'a Shared,
    topics: &'a [String],
}

/// The pipeline thread: inputs in, in order, idle ticks between them, committable offsets
/// out.
fn drive(
    mut pipeline: Pipeline,
    mut rx: mpsc::Receiver<Input>,
    links: &Links,
    handle: &tokio::runtime::Handle,
    tick: Duration,
) {
    let mut last_tick = Instant::now();
    let mut published = Published::default();
    loop {
        match handle.block_on(async { tokio::time::timeout(tick, rx.recv()).await }) {
            Ok(Some(Input::Chunk(chunk))) => pipeline.process(&chunk, Instant::now()),
            Ok(Some(Input::Assigned(assigned))) => pipeline.assign(&assigned, Instant::now()),
            Ok(Some(Input::Reload(request))) => reload(&mut pipeline, request),
            Ok(Some(Input::Acked(id, ok))) => pipeline.acked(id, ok),
            Ok(Some(Input::Owner(input))) => pipeline.owner_input(input, Instant::now()),
            Ok(Some(Input::End) | None) => break,
            Err(_) => {}
        }
        if last_tick.elapsed() >= tick {
            if let Ok(state) = links.state.lock() {
                pipeline.source_state(&state, Instant::now());
            }
            pipeline.tick(Instant::now());
            last_tick = Instant::now();
        }
        publish(&mut pipeline, links, &mut published, false);
    }
    if links.finish {
        pipeline.finish();
    } else {
        pipeline.stop(Instant::now());
    }
    publish(&mut pipeline, links, &mut published, true);
}

/// Applies a reload between two inputs and answers the watcher.
fn reload(pipeline: &mut Pipeline, request: ReloadRequest) {
    if let Some(queue) = request.queue {
        pipeline.set_notify(queue);
    }
    let table = &request.table;
    let done = pipeline.reload(
        request.incoming,
        &table.readers,
        &table.label_readers,
        request.max_event_bytes,
        Instant::now(),
    );
    let _ = request.reply.send(done);
}

/// The offsets last handed to the source and when the last checkpoint was written.
#[derive(Default)]
struct Published {
    offsets: Vec<(u16, i32, i64)>,
    checkpoint_at: Option<Instant>,
}

/// Hands the committable offsets to the source, after writing the checkpoint that covers
/// them (see `checkpoint`): at once when a window closed (or `now`), otherwise at most once
/// a second.
fn publish(pipeline: &mut Pipeline, links: &Links, published: &mut Published, now: bool) {
    let allowed = pipeline.committable();
    let closed = pipeline.closed_since_checkpoint();
    if allowed == published.offsets && !closed && !now {
        return;
    }
    if let Some(store) = links.store {
        let due = now || closed || published.checkpoint_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if !due {
            return;
        }
        if let Err(e) = store.save(pipeline.checkpoint()) {
            // Without it nothing is committed: the next run reads more again, loses nothing.
            tracing::error!(file = %store.path().display(), "cannot write the checkpoint, offsets are not committed: {e}");
            return;
        }
        published.checkpoint_at = Some(Instant::now());
    }
    for &(t, p, o) in &allowed {
        let topic = links.topics.get(t as usize).map_or("", String::as_str);
        links.shared.metrics.commit_offset.with_label_values(&[topic, p.to_string().as_str()]).set(o);
    }
    if let Ok(mut c) = links.commits.lock() {
        for &(t, p, o) in &allowed {
            c.insert((t, p), o);
        }
    }
    published.offsets = allowed;
}
