//! Every Prometheus metric the agent exposes, registered in one place (DESIGN section 7).
//!
//! Label values come only from the configuration, the baseline and fixed vocabularies
//! (tests, outcomes, quality checks), so the number of series is bounded by construction.
//! `slice` is `all` for the whole window (per-segment slices arrive with segments).
//! [`NAMES`] lists every metric family; dashboards and alert rules are tested against it.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::collections::HashMap;

use crate::engine::decode::Reason;
use crate::engine::report::Report;
use crate::engine::window::ALL_SLICE;

/// Every `reason` of `driftwatch_notification_failures_total`.
pub const FAILURE_REASONS: [&str; 9] =
    ["tls", "timeout", "auth", "rejected", "transient", "protocol", "connection", "config", "outbox"];

/// The `outcome` of `driftwatch_events_total`: taken into a window, dropped as a repeated
/// event id, or not used for a [`Reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    Accepted,
    Duplicate,
    Dropped(Reason),
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Accepted => "accepted",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Dropped(reason) => reason.as_str(),
        }
    }
}

/// The `result` of `driftwatch_config_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Applied,
    Unchanged,
    Rejected,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 3] = [ReloadResult::Applied, ReloadResult::Unchanged, ReloadResult::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Rejected => "rejected",
        }
    }
}

/// The `outcome` of `driftwatch_notifications_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    Queued,
    Sent,
    Failed,
}

impl NotificationOutcome {
    pub const ALL: [NotificationOutcome; 3] =
        [NotificationOutcome::Queued, NotificationOutcome::Sent, NotificationOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationOutcome::Queued => "queued",
            NotificationOutcome::Sent => "sent",
            NotificationOutcome::Failed => "failed",
        }
    }
}

/// The `side` of `driftwatch_labels_pending`: what waits for its other half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    Predictions,
    Labels,
}

impl Pending {
    pub fn as_str(self) -> &'static str {
        match self {
            Pending::Predictions => "predictions",
            Pending::Labels => "labels",
        }
    }
}

/// Every metric family name, for tests of dashboards and rules.
pub const NAMES: &[&str] = &[
    "driftwatch_build_info",
    "driftwatch_events_total",
    "driftwatch_events_replayed_total",
    "driftwatch_dead_letters_total",
    "driftwatch_drift_statistic",
    "driftwatch_drift_p_value",
    "driftwatch_drift_threshold",
    "driftwatch_drift_detected",
    "driftwatch_feature_drift_detected",
    "driftwatch_dataset_drift_detected",
    "driftwatch_dataset_drift_share",
    "driftwatch_quality_ratio",
    "driftwatch_window_events",
    "driftwatch_window_end_timestamp_seconds",
    "driftwatch_windows_total",
    "driftwatch_open_windows",
    "driftwatch_window_close_seconds",
    "driftwatch_kafka_consumer_lag",
    "driftwatch_commit_offset",
    "driftwatch_baseline_info",
    "driftwatch_baseline_rows",
    "driftwatch_alert_state",
    "driftwatch_alert_transitions_total",
    "driftwatch_notifications_total",
    "driftwatch_notification_failures_total",
    "driftwatch_notifications_queued",
    "driftwatch_notifications_retrying",
    "driftwatch_performance",
    "driftwatch_performance_sampling_error",
    "driftwatch_labels_total",
    "driftwatch_labels_pending",
    "driftwatch_performance_window_end_timestamp_seconds",
    "driftwatch_alert_threshold",
    "driftwatch_config_reloads_total",
    "driftwatch_config_info",
    "driftwatch_config_last_reload_successful",
    "driftwatch_cluster_owned_models",
    "driftwatch_cluster_records_total",
    "driftwatch_cluster_bytes_total",
    "driftwatch_cluster_partials_total",
    "driftwatch_cluster_owner_lag_seconds",
    "driftwatch_cluster_handovers_total",
    "driftwatch_cluster_restore_seconds",
];

/// The process collector's families (Linux): memory, CPU, file descriptors, threads.
pub const PROCESS_NAMES: &[&str] = &[
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_virtual_memory_bytes",
    "process_resident_memory_bytes", "process_start_time_seconds", "process_threads",
];

/// The agent's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub build_info: IntGaugeVec,
    pub events: IntCounterVec,
    pub replayed: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub drift_statistic: GaugeVec,
    pub drift_p_value: GaugeVec,
    pub drift_threshold: GaugeVec,
    pub drift_detected: GaugeVec,
    pub feature_drift: GaugeVec,
    pub dataset_drift: GaugeVec,
    pub dataset_drift_share: GaugeVec,
    pub quality: GaugeVec,
    pub window_events: IntGaugeVec,
    pub window_end: GaugeVec,
    pub windows: IntCounterVec,
    pub open_windows: IntGaugeVec,
    pub window_close: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub commit_offset: IntGaugeVec,
    pub baseline_info: IntGaugeVec,
    pub baseline_rows: IntGaugeVec,
    pub alert_state: IntGaugeVec,
    pub alert_transitions: IntCounterVec,
    pub notifications: IntCounterVec,
    pub notification_failures: IntCounterVec,
    pub notifications_queued: IntGauge,
    pub notifications_retrying: IntGauge,
    pub performance: GaugeVec,
    pub performance_sampling_error: GaugeVec,
    pub labels: IntCounterVec,
    pub labels_pending: IntGaugeVec,
    pub performance_window_end: GaugeVec,
    pub alert_threshold: GaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_info: IntGaugeVec,
    pub config_last_reload_ok: IntGauge,
    pub cluster_owned: IntGauge,
    pub cluster_records: IntCounterVec,
    pub cluster_bytes: IntCounterVec,
    pub cluster_partials: IntCounterVec,
    pub cluster_owner_lag: GaugeVec,
    pub cluster_handovers: IntCounterVec,
    pub cluster_restore: GaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let drift = ["model", "feature", "test", "slice"];
        let m = Metrics {
            build_info: IntGaugeVec::new(
                opts("driftwatch_build_info", "Always 1; the agent's version."),
                &["version"],
            )?,
            events: IntCounterVec::new(
                opts(
                    "driftwatch_events_total",
                    "Events read, by outcome: accepted, late, or the reason a bad event was dropped.",
                ),
                &["model", "outcome"],
            )?,
            replayed: IntCounterVec::new(
                opts(
                    "driftwatch_events_replayed_total",
                    "Events read again after a restart that the last run had already used: added again to the windows still open then, and not counted again in driftwatch_events_total.",
                ),
                &["model"],
            )?,
            dead_letters: IntCounterVec::new(
                opts("driftwatch_dead_letters_total", "Bad events forwarded to the dead-letter topic, by result."),
                &["result"],
            )?,
            drift_statistic: GaugeVec::new(
                opts("driftwatch_drift_statistic", "Test statistic of the last closed window."),
                &drift,
            )?,
            drift_p_value: GaugeVec::new(
                opts("driftwatch_drift_p_value", "p-value of the last closed window (tests that have one)."),
                &drift,
            )?,
            drift_threshold: GaugeVec::new(
                opts("driftwatch_drift_threshold", "Threshold the statistic or p-value is compared with."),
                &drift,
            )?,
            drift_detected: GaugeVec::new(
                opts("driftwatch_drift_detected", "1 when the test found drift in the last closed window."),
                &drift,
            )?,
            feature_drift: GaugeVec::new(
                opts("driftwatch_feature_drift_detected", "1 when any test of the feature found drift."),
                &["model", "feature", "slice"],
            )?,
            dataset_drift: GaugeVec::new(
                opts(
                    "driftwatch_dataset_drift_detected",
                    "1 when the share of drifted features reached the model's drift_share.",
                ),
                &["model", "slice"],
            )?,
            dataset_drift_share: GaugeVec::new(
                opts("driftwatch_dataset_drift_share", "Share of tested features that drifted in the last window."),
                &["model", "slice"],
            )?,
            quality: GaugeVec::new(
                opts(
                    "driftwatch_quality_ratio",
                    "Data-quality ratios of the last closed window: null_rate, non_finite_rate, out_of_range_rate, new_category_rate.",
                ),
                &["model", "feature", "check", "slice"],
            )?,
            window_events: IntGaugeVec::new(
                opts("driftwatch_window_events", "Events in the last closed window."),
                &["model"],
            )?,
            window_end: GaugeVec::new(
                opts("driftwatch_window_end_timestamp_seconds", "Event-time end of the last closed window."),
                &["model"],
            )?,
            windows: IntCounterVec::new(
                opts(
                    "driftwatch_windows_total",
                    "Closed windows, by verdict: evaluated, insufficient_data, or repeated (a window evaluated again after a crash: same id, counted once above).",
                ),
                &["model", "verdict"],
            )?,
            open_windows: IntGaugeVec::new(
                opts("driftwatch_open_windows", "Windows holding events that have not closed."),
                &["model"],
            )?,
            window_close: HistogramVec::new(
                HistogramOpts::new(
                    "driftwatch_window_close_seconds",
                    "Time to merge a closed window's panes and run every test.",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                &["model"],
            )?,
            consumer_lag: IntGaugeVec::new(
                opts(
                    "driftwatch_kafka_consumer_lag",
                    "Messages behind the partition's end, from librdkafka statistics.",
                ),
                &["topic", "partition"],
            )?,
            commit_offset: IntGaugeVec::new(
                opts(
                    "driftwatch_commit_offset",
                    "Offset stored for commit: every earlier event is in a closed, evaluated window or was dropped.",
                ),
                &["topic", "partition"],
            )?,
            baseline_info: IntGaugeVec::new(
                opts("driftwatch_baseline_info", "Always 1; the baseline file and its SHA-256."),
                &["model", "path", "sha256"],
            )?,
            baseline_rows: IntGaugeVec::new(opts("driftwatch_baseline_rows", "Rows in the baseline."), &["model"])?,
            alert_state: IntGaugeVec::new(
                opts(
                    "driftwatch_alert_state",
                    "State of each alert of the agent's rules: 0 inactive, 1 pending, 2 firing; the series of the alert's current severity carries it, the other is 0.",
                ),
                &["model", "rule", "feature", "severity"],
            )?,
            alert_transitions: IntCounterVec::new(
                opts(
                    "driftwatch_alert_transitions_total",
                    "Alert notifications produced, by transition: firing, escalated, repeat, resolved.",
                ),
                &["model", "rule", "transition"],
            )?,
            notifications: IntCounterVec::new(
                opts(
                    "driftwatch_notifications_total",
                    "Alert notifications by outcome: queued (batches written to the outbox), sent (digests accepted), failed (delivery attempts that failed).",
                ),
                &["outcome"],
            )?,
            notification_failures: IntCounterVec::new(
                opts(
                    "driftwatch_notification_failures_total",
                    "Failed deliveries by reason: auth, tls, connection, timeout, rejected, transient, protocol, config, outbox.",
                ),
                &["reason"],
            )?,
            notifications_queued: IntGauge::with_opts(opts(
                "driftwatch_notifications_queued",
                "Notification batches in the outbox waiting for delivery.",
            ))?,
            notifications_retrying: IntGauge::with_opts(opts(
                "driftwatch_notifications_retrying",
                "Digests waiting to be retried after a failed delivery.",
            ))?,
            performance: GaugeVec::new(
                opts(
                    "driftwatch_performance",
                    "Model performance of the last window: realised (estimated=\"false\") or estimated without labels from the scores (estimated=\"true\", CBPE). No series without [model.performance].",
                ),
                &["model", "metric", "estimated", "slice"],
            )?,
            performance_sampling_error: GaugeVec::new(
                opts(
                    "driftwatch_performance_sampling_error",
                    "Standard error of the last window's performance estimate; the band is ±3 of it.",
                ),
                &["model", "metric", "slice"],
            )?,
            labels: IntCounterVec::new(
                opts(
                    "driftwatch_labels_total",
                    "Ground truth joined to predictions, by outcome: matched, prediction_expired (no label within the horizon), label_expired (no prediction), evicted (dropped early to bound memory), duplicate_label, invalid_label.",
                ),
                &["model", "outcome"],
            )?,
            labels_pending: IntGaugeVec::new(
                opts(
                    "driftwatch_labels_pending",
                    "Predictions waiting for their label, and labels waiting for their prediction.",
                ),
                &["model", "side"],
            )?,
            performance_window_end: GaugeVec::new(
                opts(
                    "driftwatch_performance_window_end_timestamp_seconds",
                    "End of the last window whose realised performance was computed (labels arrive later than predictions).",
                ),
                &["model"],
            )?,
            alert_threshold: GaugeVec::new(
                opts(
                    "driftwatch_alert_threshold",
                    "A rule's thresholds, for dashboards: bound warn, critical or resolve (fixed), band_lower and band_upper (learned from the baseline; per feature, _all for model-level targets). target is the test, quality check or performance metric.",
                ),
                &["model", "rule", "target", "feature", "bound"],
            )?,
            config_reloads: IntCounterVec::new(
                opts(
                    "driftwatch_config_reloads_total",
                    "Configuration reloads (SIGHUP or a change in the watched files), by result: applied, unchanged or rejected (the running configuration is kept).",
                ),
                &["result"],
            )?,
            config_info: IntGaugeVec::new(
                opts("driftwatch_config_info", "Always 1; the SHA-256 of the running configuration's files."),
                &["sha256"],
            )?,
            config_last_reload_ok: IntGauge::new(
                "driftwatch_config_last_reload_successful",
                "1 while the last configuration reload was applied (or none was tried); 0 after a rejected one, until a reload succeeds.",
            )?,
            registry,
            cluster_owned: IntGauge::with_opts(opts(
                "driftwatch_cluster_owned_models",
                "In a cluster: models whose windows this agent judges (it holds their cluster-topic partition).",
            ))?,
            cluster_records: IntCounterVec::new(
                opts(
                    "driftwatch_cluster_records_total",
                    "Cluster-topic records sent and received, by kind: pane, heartbeat, snapshot, delivered.",
                ),
                &["direction", "kind"],
            )?,
            cluster_bytes: IntCounterVec::new(
                opts("driftwatch_cluster_bytes_total", "Cluster-topic bytes sent and received (compressed records)."),
                &["direction"],
            )?,
            cluster_partials: IntCounterVec::new(
                opts(
                    "driftwatch_cluster_partials_total",
                    "Pane partials an owner read, by outcome: kept, repeated (sent again after a takeover; the first is kept), late (its windows had closed), unfit (another configuration).",
                ),
                &["model", "outcome"],
            )?,
            cluster_owner_lag: GaugeVec::new(
                opts(
                    "driftwatch_cluster_owner_lag_seconds",
                    "Event time between the newest event any source partition reported to the owner and the owner's watermark (what holds its windows open).",
                ),
                &["model"],
            )?,
            cluster_handovers: IntCounterVec::new(
                opts(
                    "driftwatch_cluster_handovers_total",
                    "Models this agent came to own (gained) or handed over (lost).",
                ),
                &["model", "change"],
            )?,
            cluster_restore: GaugeVec::new(
                opts(
                    "driftwatch_cluster_restore_seconds",
                    "Time the last takeover of a model took: from owning its partition to having read its backlog (snapshot and open partials).",
                ),
                &["model"],
            )?,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 43] = [
            Box::new(m.build_info.clone()),
            Box::new(m.events.clone()),
            Box::new(m.replayed.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.drift_statistic.clone()),
            Box::new(m.drift_p_value.clone()),
            Box::new(m.drift_threshold.clone()),
            Box::new(m.drift_detected.clone()),
            Box::new(m.feature_drift.clone()),
            Box::new(m.dataset_drift.clone()),
            Box::new(m.dataset_drift_share.clone()),
            Box::new(m.quality.clone()),
            Box::new(m.window_events.clone()),
            Box::new(m.window_end.clone()),
            Box::new(m.windows.clone()),
            Box::new(m.open_windows.clone()),
            Box::new(m.window_close.clone()),
            Box::new(m.consumer_lag.clone()),
            Box::new(m.commit_offset.clone()),
            Box::new(m.baseline_info.clone()),
            Box::new(m.baseline_rows.clone()),
            Box::new(m.alert_state.clone()),
            Box::new(m.alert_transitions.clone()),
            Box::new(m.notifications.clone()),
            Box::new(m.notification_failures.clone()),
            Box::new(m.notifications_queued.clone()),
            Box::new(m.notifications_retrying.clone()),
            Box::new(m.performance.clone()),
            Box::new(m.performance_sampling_error.clone()),
            Box::new(m.labels.clone()),
            Box::new(m.labels_pending.clone()),
            Box::new(m.performance_window_end.clone()),
            Box::new(m.alert_threshold.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.config_info.clone()),
            Box::new(m.config_last_reload_ok.clone()),
            Box::new(m.cluster_owned.clone()),
            Box::new(m.cluster_records.clone()),
            Box::new(m.cluster_bytes.clone()),
            Box::new(m.cluster_partials.clone()),
            Box::new(m.cluster_owner_lag.clone()),
            Box::new(m.cluster_handovers.clone()),
            Box::new(m.cluster_restore.clone()),
        ];
        for c in collectors {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        for result in ReloadResult::ALL {
            m.config_reloads.with_label_values(&[result.as_str()]);
        }
        m.config_last_reload_ok.set(1);
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for outcome in NotificationOutcome::ALL {
            m.notifications.with_label_values(&[outcome.as_str()]);
        }
        Ok(m)
    }

    /// Counts `n` events of a model with an outcome.
    pub fn count_events(&self, model: &str, outcome: EventOutcome, n: u64) {
        self.events.with_label_values(&[model, outcome.as_str()]).inc_by(n);
    }

    pub fn count_reload(&self, result: ReloadResult) {
        self.config_reloads.with_label_values(&[result.as_str()]).inc();
    }

    pub fn count_notification(&self, outcome: NotificationOutcome) {
        self.notifications.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Predictions or labels of a model waiting for their other half.
    pub fn set_pending(&self, model: &str, side: Pending, n: usize) {
        self.labels_pending.with_label_values(&[model, side.as_str()]).set(n as i64);
    }

    /// Series that exist from the start, so dashboards and rate() see zeros, not gaps.
    pub fn register_model(&self, model: &str) {
        for reason in crate::engine::decode::Reason::ALL {
            self.events.with_label_values(&[model, reason.as_str()]);
        }
        self.events.with_label_values(&[model, EventOutcome::Accepted.as_str()]);
        self.replayed.with_label_values(&[model]);
        for verdict in crate::engine::evaluate::Counted::ALL.map(|c| c.as_str()) {
            self.windows.with_label_values(&[model, verdict]);
        }
        self.open_windows.with_label_values(&[model]);
        // From the start, so that rates and quantiles over it have a sample before the
        // first window closes.
        self.window_close.with_label_values(&[model]);
    }

    /// Label-join counters of a model that reads ground truth, from the start.
    pub fn register_labels(&self, model: &str) {
        for outcome in crate::engine::labels::Outcome::ALL {
            self.labels.with_label_values(&[model, outcome.as_str()]);
        }
    }

    /// Transition counters of a rule, from the start, and its thresholds.
    pub fn register_rule(&self, model: &str, rule: &crate::engine::rules::Rule) {
        let name = rule.name.as_str();
        for transition in crate::engine::alert::Transition::ALL.map(|t| t.as_str()) {
            self.alert_transitions.with_label_values(&[model, name, transition]);
        }
        let target = rule.target.label();
        let fixed = [("warn", rule.warn), ("critical", rule.critical), ("resolve", Some(rule.resolve))];
        for (bound, value) in fixed {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                self.alert_threshold
                    .with_label_values(&[model, name, target, crate::engine::rules::DATASET_FEATURE, bound])
                    .set(v);
            }
        }
        for (feature, (lower, upper)) in &rule.bands {
            self.alert_threshold.with_label_values(&[model, name, target, feature, "band_lower"]).set(*lower);
            self.alert_threshold.with_label_values(&[model, name, target, feature, "band_upper"]).set(*upper);
        }
    }

    /// Delivery-failure counters by reason, from the start (with a notifier).
    pub fn register_notifications(&self) {
        for reason in FAILURE_REASONS {
            self.notification_failures.with_label_values(&[reason]);
        }
    }

    /// Publishes the verdict of a closed window.
    pub fn record(&self, report: &Report) {
        self.record_slice(report, ALL_SLICE);
    }

    /// Publishes the verdict of a closed window on one segment slice (`all`: the whole).
    pub fn record_slice(&self, report: &Report, slice: &str) {
        let model = report.model.as_str();
        for f in &report.features {
            let name = f.name.as_str();
            for t in &f.tests {
                let labels = [model, name, t.test.name(), slice];
                match t.statistic {
                    Some(s) => self.drift_statistic.with_label_values(&labels).set(s),
                    None => {
                        let _ = self.drift_statistic.remove_label_values(&labels);
                    }
                }
                match t.p_value {
                    Some(p) => self.drift_p_value.with_label_values(&labels).set(p),
                    None => {
                        let _ = self.drift_p_value.remove_label_values(&labels);
                    }
                }
                self.drift_threshold.with_label_values(&labels).set(t.threshold);
                self.drift_detected.with_label_values(&labels).set(f64::from(u8::from(t.drift)));
            }
            self.feature_drift.with_label_values(&[model, name, slice]).set(f64::from(u8::from(f.drift)));
            for check in crate::engine::rules::QualityCheck::ALL.into_iter().filter(|c| !c.model_level()) {
                if let Some(v) = check.of(f) {
                    self.quality.with_label_values(&[model, name, check.name(), slice]).set(v);
                }
            }
        }
        self.record_performance(model, &report.performance, slice);
        for (check, value) in &report.quality {
            self.quality.with_label_values(&[model, crate::engine::rules::DATASET_FEATURE, check, slice]).set(*value);
        }
        self.dataset_drift.with_label_values(&[model, slice]).set(f64::from(u8::from(report.drift.detected)));
        self.dataset_drift_share.with_label_values(&[model, slice]).set(report.drift.share);
    }

    /// Publishes performance figures: estimates of a closed window, or the realised values
    /// of a window whose labels are in.
    pub fn record_performance(&self, model: &str, performance: &crate::engine::report::Performance, slice: &str) {
        let estimated = if performance.estimated == Some(true) { "true" } else { "false" };
        for (name, value) in &performance.metrics {
            match value {
                Some(v) => self.performance.with_label_values(&[model, name, estimated, slice]).set(*v),
                None => {
                    let _ = self.performance.remove_label_values(&[model, name, estimated, slice]);
                }
            }
        }
        for (name, se) in &performance.sampling_error {
            self.performance_sampling_error.with_label_values(&[model, name, slice]).set(*se);
        }
    }

    /// Removes the series of `model` for which `drop(family, labels)` holds (a model removed
    /// or changed by a configuration reload), so nothing stale stays exported.
    pub fn forget(&self, model: &str, drop: impl Fn(&str, &HashMap<&str, &str>) -> bool) {
        for family in self.registry.gather() {
            let name = family.name();
            for metric in family.get_metric() {
                let labels: HashMap<&str, &str> = metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
                if labels.get("model") != Some(&model) || !drop(name, &labels) {
                    continue;
                }
                let _ = match name {
                    "driftwatch_events_total" => self.events.remove(&labels),
                    "driftwatch_events_replayed_total" => self.replayed.remove(&labels),
                    "driftwatch_drift_statistic" => self.drift_statistic.remove(&labels),
                    "driftwatch_drift_p_value" => self.drift_p_value.remove(&labels),
                    "driftwatch_drift_threshold" => self.drift_threshold.remove(&labels),
                    "driftwatch_drift_detected" => self.drift_detected.remove(&labels),
                    "driftwatch_feature_drift_detected" => self.feature_drift.remove(&labels),
                    "driftwatch_dataset_drift_detected" => self.dataset_drift.remove(&labels),
                    "driftwatch_dataset_drift_share" => self.dataset_drift_share.remove(&labels),
                    "driftwatch_quality_ratio" => self.quality.remove(&labels),
                    "driftwatch_window_events" => self.window_events.remove(&labels),
                    "driftwatch_window_end_timestamp_seconds" => self.window_end.remove(&labels),
                    "driftwatch_windows_total" => self.windows.remove(&labels),
                    "driftwatch_open_windows" => self.open_windows.remove(&labels),
                    "driftwatch_window_close_seconds" => self.window_close.remove(&labels),
                    "driftwatch_baseline_info" => self.baseline_info.remove(&labels),
                    "driftwatch_baseline_rows" => self.baseline_rows.remove(&labels),
                    "driftwatch_alert_state" => self.alert_state.remove(&labels),
                    "driftwatch_alert_transitions_total" => self.alert_transitions.remove(&labels),
                    "driftwatch_alert_threshold" => self.alert_threshold.remove(&labels),
                    "driftwatch_performance" => self.performance.remove(&labels),
                    "driftwatch_performance_sampling_error" => self.performance_sampling_error.remove(&labels),
                    "driftwatch_labels_total" => self.labels.remove(&labels),
                    "driftwatch_labels_pending" => self.labels_pending.remove(&labels),
                    "driftwatch_performance_window_end_timestamp_seconds" => {
                        self.performance_window_end.remove(&labels)
                    }
                    _ => Ok(()),
                };
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_from_the_configuration_are_escaped() {
        let m = Metrics::new().expect("metrics");
        // Model ids and rule names are free text in the TOML.
        let id = "credit \"risk\"\\v2\nnew";
        m.register_model(id);
        let text = m.encode();
        let line = r#"driftwatch_open_windows{model="credit \"risk\"\\v2\nnew"} 0"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        // Every sample line stays one line.
        assert!(!text.contains("credit \"risk\""), "an unescaped quote");
    }

    #[test]
    fn forget_removes_only_the_chosen_series_of_a_model() {
        let m = Metrics::new().expect("metrics");
        m.register_model("a");
        m.register_model("b");
        m.window_events.with_label_values(&["a"]).set(3);
        m.forget("a", |family, _| family == "driftwatch_window_events");
        let text = m.encode();
        assert!(!text.contains("driftwatch_window_events{model=\"a\"}"), "{text}");
        assert!(text.contains("driftwatch_open_windows{model=\"a\"} 0"), "{text}");
        m.forget("a", |_, _| true);
        let text = m.encode();
        assert!(!text.contains("model=\"a\""), "{text}");
        assert!(text.contains("driftwatch_open_windows{model=\"b\"} 0"), "{text}");
    }
}
