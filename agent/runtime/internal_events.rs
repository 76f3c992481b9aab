//! Telemetry as named occurrences: one type per thing an operator can see happen, whose
//! [`InternalEvent::emit`] both writes its log line and counts it in its metric, so the two
//! never drift apart (in the spirit of Vector's `internal_events`). Label values are the
//! closed enums of [`metrics`](crate::runtime::metrics); call sites build no label strings.
//! An occurrence that carries a stage's own types is defined beside that stage instead
//! (`reload::ReloadFinished`), so this module depends on no stage.

use std::fmt::Display;
use std::time::Duration;

use crate::engine::alert::Notice;
use crate::engine::decode::Reason;
use crate::engine::evaluate::Evaluation;
use crate::engine::text::rfc3339;
use crate::runtime::metrics::{EventOutcome, Metrics, NotificationOutcome};

/// Something that happened inside the agent: said once in the log, counted once.
pub(crate) trait InternalEvent {
    fn emit(self, metrics: &Metrics);
}

/// A bad event was dropped (decoding, schema, size); `first` says whether this model and
/// reason are warned about (the first time) or only logged at debug.
pub(crate) struct EventRejected<'a> {
    pub model: &'a str,
    pub reason: Reason,
    pub message: &'a str,
    pub first: bool,
}

impl InternalEvent for EventRejected<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.count_events(self.model, EventOutcome::Dropped(self.reason), 1);
        let reason = self.reason.as_str();
        if self.first {
            tracing::warn!(
                model = self.model,
                reason,
                "bad event dropped: {} (further ones are counted in driftwatch_events_total, logged at debug)",
                self.message
            );
        } else {
            tracing::debug!(model = self.model, reason, "bad event dropped: {}", self.message);
        }
    }
}

/// An alert notification was written to the outbox, or could not be.
pub(crate) struct NotificationQueued<'a, E: Display> {
    pub model: &'a str,
    pub result: Result<(), E>,
}

impl<E: Display> InternalEvent for NotificationQueued<'_, E> {
    fn emit(self, metrics: &Metrics) {
        match self.result {
            Ok(()) => {
                metrics.count_notification(NotificationOutcome::Queued);
                tracing::debug!(model = self.model, "alert notification queued");
            }
            Err(e) => {
                metrics.notification_failures.with_label_values(&["outbox"]).inc();
                tracing::error!(model = self.model, "cannot queue an alert notification: {e:#}");
            }
        }
    }
}

/// A digest of alert notifications reached the SMTP server.
pub(crate) struct DigestDelivered<'a> {
    pub model: &'a str,
    pub alerts: usize,
    pub subject: &'a str,
}

impl InternalEvent for DigestDelivered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.count_notification(NotificationOutcome::Sent);
        tracing::info!(model = self.model, alerts = self.alerts, subject = self.subject, "alert digest delivered");
    }
}

/// A digest was not delivered; it stays in the outbox and is tried again after `retry_in`.
/// `reason` is one of [`FAILURE_REASONS`](crate::runtime::metrics::FAILURE_REASONS).
pub(crate) struct DigestFailed<'a, E: Display> {
    pub model: &'a str,
    pub reason: &'static str,
    pub retry_in: Duration,
    pub error: E,
}

impl<E: Display> InternalEvent for DigestFailed<'_, E> {
    fn emit(self, metrics: &Metrics) {
        metrics.notification_failures.with_label_values(&[self.reason]).inc();
        metrics.count_notification(NotificationOutcome::Failed);
        tracing::warn!(
            model = self.model,
            reason = self.reason,
            retry_in = ?self.retry_in,
            "alert digest not delivered, kept in the outbox: {:#}",
            self.error
        );
    }
}

/// A rejected event was handed to the dead-letter topic's producer, or the producer's queue
/// refused it (full: the event is counted as failed, never waited for).
pub(crate) struct DeadLettered<'a> {
    pub source_topic: &'a str,
    pub sent: bool,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.dead_letters.with_label_values(&[if self.sent { "sent" } else { "failed" }]).inc();
        if !self.sent {
            tracing::debug!(topic = self.source_topic, "the dead-letter producer refused an event");
        }
    }
}

/// A window closed and was evaluated: its timing, size and report are exported and it is
/// said in one log line.
pub(crate) struct WindowClosed<'a> {
    pub evaluation: &'a Evaluation,
}

impl InternalEvent for WindowClosed<'_> {
    fn emit(self, metrics: &Metrics) {
        let e = self.evaluation;
        let id = e.model.as_str();
        metrics.window_close.with_label_values(&[id]).observe(e.close_seconds);
        metrics.window_events.with_label_values(&[id]).set(e.events as i64);
        metrics.window_end.with_label_values(&[id]).set(e.end as f64 / 1000.0);
        metrics.windows.with_label_values(&[id, e.counted().as_str()]).inc();
        if let Some(r) = &e.report {
            metrics.record(r);
        }
        for (slice, r) in &e.slices {
            metrics.record_slice(r, slice);
        }
        tracing::info!(
            model = id,
            start = %rfc3339(e.start),
            end = %rfc3339(e.end),
            events = e.events,
            verdict = e.verdict().as_str(),
            drifted = e.report.as_ref().map_or(0, |r| r.drift.drifted_features),
            late = e.late,
            repeated = e.repeated,
            close_ms = e.close_seconds * 1000.0,
            "window closed"
        );
    }
}

/// An alert of a model changed state (it fired, escalated, resolved…).
pub(crate) struct AlertTransition<'a> {
    pub model: &'a str,
    pub notice: &'a Notice,
}

impl InternalEvent for AlertTransition<'_> {
    fn emit(self, metrics: &Metrics) {
        let n = self.notice;
        metrics.alert_transitions.with_label_values(&[self.model, &n.rule, n.transition.as_str()]).inc();
        tracing::warn!(
            model = self.model,
            rule = %n.rule,
            feature = %n.feature,
            severity = n.severity.as_str(),
            transition = n.transition.as_str(),
            value = ?n.value,
            "alert"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metrics: &Metrics, name: &str) -> Option<f64> {
        metrics.encode().lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    }

    #[test]
    fn a_rejected_event_is_counted_under_its_reason_whether_warned_or_not() {
        let metrics = Metrics::new().expect("metrics");
        for first in [true, false] {
            EventRejected { model: "m", reason: Reason::WrongType, message: "income: a string", first }.emit(&metrics);
        }
        assert_eq!(series(&metrics, r#"driftwatch_events_total{model="m",outcome="wrong_type"}"#), Some(2.0));
    }

    #[test]
    fn a_failed_digest_counts_its_reason_and_the_failed_outcome() {
        let metrics = Metrics::new().expect("metrics");
        let failed = DigestFailed { model: "m", reason: "timeout", retry_in: Duration::from_secs(1), error: "slow" };
        failed.emit(&metrics);
        NotificationQueued::<&str> { model: "m", result: Err("disk full") }.emit(&metrics);
        assert_eq!(series(&metrics, r#"driftwatch_notification_failures_total{reason="timeout"}"#), Some(1.0));
        assert_eq!(series(&metrics, r#"driftwatch_notification_failures_total{reason="outbox"}"#), Some(1.0));
        assert_eq!(series(&metrics, r#"driftwatch_notifications_total{outcome="failed"}"#), Some(1.0));
        assert_eq!(series(&metrics, r#"driftwatch_notifications_total{outcome="queued"}"#), Some(0.0));
    }
}
