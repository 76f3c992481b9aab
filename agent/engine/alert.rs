//! The alert state machine, one per (model, rule, feature): inactive → pending → firing →
//! resolved (inactive again). Plain synchronous code driven by window readings; time is the
//! event-time end of each window, so there are no clocks and no sleeps.
//!
//! - A breaching window moves an inactive alert to pending; `for` consecutive breaching
//!   windows fire it. A window that does not breach sends a pending alert back to inactive.
//! - A firing alert resolves only when a reading is clear of the rule's `resolve` threshold
//!   (hysteresis): values between `resolve` and the thresholds keep it firing.
//! - After a resolution the alert cannot fire again for `cooldown` (it waits as pending).
//! - A firing alert that gets worse (warning → critical) notifies again (`escalated`); one
//!   that stays firing notifies again every `renotify` (`repeat`). Nothing else notifies.
//! - A window without a reading (too few samples, insufficient data) changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::engine::detect::{Adwin, PageHinkley, Side};
use crate::engine::impact::Impact;
use crate::engine::profile::FeatureProfile;
use crate::engine::report::Report;
use crate::engine::rules::{DetectorSpec, Direction, Reading, Rule, Severity, Summary};

/// Where an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

impl Phase {
    /// The value of `driftwatch_alert_state`.
    pub fn gauge(self) -> i64 {
        match self {
            Phase::Inactive => 0,
            Phase::Pending => 1,
            Phase::Firing => 2,
        }
    }
}

/// A change that is worth a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Firing,
    Escalated,
    Repeat,
    Resolved,
}

impl Transition {
    pub const ALL: [Transition; 4] =
        [Transition::Firing, Transition::Escalated, Transition::Repeat, Transition::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Firing => "firing",
            Transition::Escalated => "escalated",
            Transition::Repeat => "repeat",
            Transition::Resolved => "resolved",
        }
    }
}

/// The timing settings of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub for_windows: u32,
    pub cooldown_ms: i64,
    pub renotify_ms: Option<i64>,
}

impl Policy {
    pub fn of(rule: &Rule) -> Policy {
        Policy { for_windows: rule.for_windows.max(1), cooldown_ms: rule.cooldown_ms, renotify_ms: rule.renotify_ms }
    }
}

/// One alert's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// End of the last window that stepped it: a window is stepped once, however often it
    /// is evaluated (a window evaluated again after a crash changes nothing).
    #[serde(default = "never")]
    pub stepped_until: i64,
    pub phase: Phase,
    pub severity: Severity,
    /// Consecutive breaching windows so far.
    pub breaches: u32,
    /// Event time the alert fired (while firing).
    pub since: i64,
    last_sent: i64,
    /// No firing before this event time (cooldown after a resolution).
    quiet_until: i64,
}

fn never() -> i64 {
    i64::MIN
}

impl Default for AlertState {
    fn default() -> AlertState {
        AlertState {
            stepped_until: i64::MIN,
            phase: Phase::Inactive,
            severity: Severity::Warning,
            breaches: 0,
            since: 0,
            last_sent: 0,
            quiet_until: i64::MIN,
        }
    }
}

impl AlertState {
    /// Feeds one window's reading, `at` being the window's end (event time, ms).
    pub fn step(&mut self, policy: Policy, level: Option<Severity>, clear: bool, at: i64) -> Option<Transition> {
        match self.phase {
            Phase::Inactive | Phase::Pending => match level {
                None => {
                    self.phase = Phase::Inactive;
                    self.breaches = 0;
                    None
                }
                Some(severity) => {
                    self.breaches = self.breaches.saturating_add(1);
                    self.severity = severity;
                    if self.breaches >= policy.for_windows.max(1) && at >= self.quiet_until {
                        self.phase = Phase::Firing;
                        self.since = at;
                        self.last_sent = at;
                        Some(Transition::Firing)
                    } else {
                        self.phase = Phase::Pending;
                        None
                    }
                }
            },
            Phase::Firing => {
                if clear && level.is_none() {
                    self.phase = Phase::Inactive;
                    self.breaches = 0;
                    self.quiet_until = at.saturating_add(policy.cooldown_ms);
                    return Some(Transition::Resolved);
                }
                match level {
                    Some(Severity::Critical) if self.severity == Severity::Warning => {
                        self.severity = Severity::Critical;
                        self.last_sent = at;
                        return Some(Transition::Escalated);
                    }
                    Some(Severity::Warning) => self.severity = Severity::Warning,
                    _ => {}
                }
                match policy.renotify_ms {
                    Some(every) if at.saturating_sub(self.last_sent) >= every => {
                        self.last_sent = at;
                        Some(Transition::Repeat)
                    }
                    _ => None,
                }
            }
        }
    }

    /// Feeds a reading; `None` readings (no value) change nothing, and neither does a
    /// window that ends no later than one already stepped.
    pub fn observe(&mut self, policy: Policy, reading: &Reading, at: i64) -> Option<Transition> {
        reading.value?;
        if at <= self.stepped_until {
            return None;
        }
        self.stepped_until = at;
        self.step(policy, reading.level, reading.clear, at)
    }
}

/// The current state of one alert, for `/metrics` and the status document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertView {
    pub rule: String,
    pub feature: String,
    pub phase: Phase,
    pub severity: Severity,
    pub value: Option<f64>,
    /// Event time the alert fired, RFC 3339 (firing alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// The rules of one model and the state of each (rule, feature) alert.
#[derive(Default)]
pub struct Book {
    rules: Vec<Rule>,
    states: HashMap<(usize, String), AlertState>,
    detectors: HashMap<(usize, String), Detector>,
}

/// A running change detector of one (rule, feature) series.
enum Detector {
    PageHinkley(PageHinkley),
    Adwin(Adwin),
}

impl Detector {
    fn new(spec: DetectorSpec, side: Side) -> Detector {
        match spec {
            DetectorSpec::PageHinkley { min_windows, delta, threshold } => {
                Detector::PageHinkley(PageHinkley::new(min_windows, delta, threshold, 1.0 - 1e-4, side))
            }
            DetectorSpec::Adwin { delta } => Detector::Adwin(Adwin::new(delta)),
        }
    }

    fn update(&mut self, x: f64, side: Side) -> bool {
        match self {
            Detector::PageHinkley(d) => d.update(x),
            Detector::Adwin(d) => d.update(x, side),
        }
    }
}

/// One alert's state as kept across restarts (by rule name: rules may be reordered).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedAlert {
    pub rule: String,
    pub feature: String,
    pub state: AlertState,
}

/// What one window did to a model's alerts.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Transitions worth a notification, with their rule's recipients.
    pub notices: Vec<(Vec<String>, Notice)>,
    /// Every alert that had a reading, after the window.
    pub alerts: Vec<AlertView>,
    /// Some alert changed phase or severity (its state is worth saving).
    pub changed: bool,
}

impl Book {
    pub fn new(rules: Vec<Rule>) -> Book {
        Book { rules, states: HashMap::new(), detectors: HashMap::new() }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Alerts that are not inactive, or that are in a cooldown (what a restart must not lose).
    pub fn snapshot(&self) -> Vec<SavedAlert> {
        let mut out: Vec<SavedAlert> = self
            .states
            .iter()
            .filter(|(_, s)| s.phase != Phase::Inactive || s.quiet_until != i64::MIN)
            .map(|((ri, feature), state)| SavedAlert {
                rule: self.rules[*ri].name.clone(),
                feature: feature.clone(),
                state: state.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.rule, &a.feature).cmp(&(&b.rule, &b.feature)));
        out
    }

    /// Takes back saved states; those of rules that no longer exist are dropped.
    pub fn restore(&mut self, saved: Vec<SavedAlert>) -> usize {
        let mut n = 0;
        for s in saved {
            if let Some(ri) = self.rules.iter().position(|r| r.name == s.rule) {
                self.states.insert((ri, s.feature), s.state);
                n += 1;
            }
        }
        n
    }

    /// Feeds a closed window: `current` and `reference` are the feature profiles in report order.
    pub fn observe(
        &mut self,
        report: &Report,
        current: &[FeatureProfile],
        reference: &[FeatureProfile],
        window: (i64, i64),
    ) -> Outcome {
        let mut out = Outcome::default();
        for (ri, rule) in self.rules.iter().enumerate() {
            let policy = Policy::of(rule);
            for mut reading in rule.read(report, current) {
                if let (Some(spec), Some(value)) = (rule.detector, reading.value) {
                    // The detector's signal, in the rule's bad direction, is a warning breach.
                    let side = match rule.direction() {
                        Direction::Below => Side::Down,
                        Direction::Above => Side::Up,
                    };
                    let d = self
                        .detectors
                        .entry((ri, reading.feature.clone()))
                        .or_insert_with(|| Detector::new(spec, side));
                    if d.update(value, side) {
                        reading.level = reading.level.max(Some(Severity::Warning));
                        reading.clear = false;
                    }
                }
                let state = self.states.entry((ri, reading.feature.clone())).or_default();
                let before = (state.phase, state.severity, state.breaches, state.stepped_until);
                let transition = state.observe(policy, &reading, window.1);
                out.changed |= before != (state.phase, state.severity, state.breaches, state.stepped_until)
                    || transition.is_some();
                out.alerts.push(AlertView {
                    rule: rule.name.clone(),
                    feature: reading.feature.clone(),
                    phase: state.phase,
                    severity: state.severity,
                    value: reading.value,
                    since: (state.phase == Phase::Firing).then(|| crate::engine::text::rfc3339(state.since)),
                });
                let Some(transition) = transition else {
                    continue;
                };
                let index = report.features.iter().position(|f| f.name == reading.feature);
                let summaries = index.map(|i| {
                    let kind = report.features[i].kind;
                    (Summary::of(kind, &reference[i]), Summary::of(kind, &current[i]))
                });
                let notice = notice(rule, &reading, state, transition, report, window, summaries);
                out.notices.push((rule.recipients.clone(), notice));
            }
        }
        out
    }
}

fn notice(
    rule: &Rule,
    reading: &Reading,
    state: &AlertState,
    transition: Transition,
    report: &Report,
    window: (i64, i64),
    summaries: Option<(Summary, Summary)>,
) -> Notice {
    let severity = state.severity;
    let reference_samples = summaries.as_ref().map_or(report.reference.rows, |(r, _)| r.valid);
    let (reference, current) = match summaries {
        Some((r, c)) => (Some(r), Some(c)),
        None => (None, None),
    };
    let (threshold, direction_below, resolve) = rule.shown_threshold(&reading.feature, severity, reading.value);
    Notice {
        model: report.model.clone(),
        rule: rule.name.clone(),
        feature: reading.feature.clone(),
        transition,
        severity,
        target: rule.target.describe(),
        value: reading.value,
        raw: reading.raw,
        adjusted: reading.adjusted,
        statistic: reading.statistic,
        threshold,
        direction_below,
        resolve,
        effect: reading.effect.map(|(t, s)| (t.name().to_string(), s)),
        effect_floor: rule.effect.as_ref().map(|e| e.min),
        window_start: window.0,
        window_end: window.1,
        since: state.since,
        samples: reading.samples,
        reference_samples,
        reference,
        current,
        labels: rule.labels.clone(),
        annotations: rule.annotations.clone(),
        impact: Vec::new(),
    }
}

/// One alert transition, with everything a person needs to judge it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub model: String,
    pub rule: String,
    pub feature: String,
    pub transition: Transition,
    pub severity: Severity,
    /// What the rule watches, e.g. `ks p-value`.
    pub target: String,
    pub value: Option<f64>,
    pub raw: Option<f64>,
    pub adjusted: Option<f64>,
    pub statistic: Option<f64>,
    pub threshold: Option<f64>,
    /// True when values below the threshold are bad (p-values).
    pub direction_below: bool,
    pub resolve: f64,
    pub effect: Option<(String, Option<f64>)>,
    pub effect_floor: Option<f64>,
    /// Event-time bounds of the window (ms).
    pub window_start: i64,
    pub window_end: i64,
    /// When the alert fired (event time, ms).
    pub since: i64,
    pub samples: u64,
    pub reference_samples: u64,
    pub reference: Option<Summary>,
    pub current: Option<Summary>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The window's drifted features ranked by their likely effect on accuracy (most
    /// harmful first; see `impact`).
    #[serde(default)]
    pub impact: Vec<Impact>,
}

#[cfg(test)]
impl Notice {
    pub(crate) fn example(model: &str, feature: &str) -> Notice {
        Notice {
            model: model.into(),
            rule: "income-drift".into(),
            feature: feature.into(),
            transition: Transition::Firing,
            severity: Severity::Critical,
            target: "ks p-value".into(),
            value: Some(1e-12),
            raw: Some(1e-12),
            adjusted: None,
            statistic: Some(0.31),
            threshold: Some(0.001),
            direction_below: true,
            resolve: 0.1,
            effect: None,
            effect_floor: None,
            window_start: 0,
            window_end: 60_000,
            since: 60_000,
            samples: 1000,
            reference_samples: 5000,
            reference: None,
            current: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            impact: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy { for_windows: 2, cooldown_ms: 0, renotify_ms: None };
    const W: Option<Severity> = Some(Severity::Warning);
    const C: Option<Severity> = Some(Severity::Critical);

    fn run(policy: Policy, steps: &[(Option<Severity>, bool)]) -> Vec<Option<Transition>> {
        let mut s = AlertState::default();
        steps.iter().enumerate().map(|(i, &(level, clear))| s.step(policy, level, clear, i as i64 * 60_000)).collect()
    }

    #[test]
    fn fires_after_for_windows_and_resolves_once_clear() {
        use Transition::*;
        let got = run(P, &[(W, false), (W, false), (W, false), (None, true), (None, true)]);
        assert_eq!(got, vec![None, Some(Firing), None, Some(Resolved), None]);
    }

    #[test]
    fn a_quiet_window_resets_pending() {
        let got = run(P, &[(W, false), (None, true), (W, false), (None, true)]);
        assert!(got.iter().all(Option::is_none), "{got:?}");
    }

    #[test]
    fn hysteresis_keeps_it_firing_between_resolve_and_threshold() {
        use Transition::*;
        let one = Policy { for_windows: 1, ..P };
        let got = run(one, &[(W, false), (None, false), (None, false), (None, true)]);
        assert_eq!(got, vec![Some(Firing), None, None, Some(Resolved)]);
    }

    #[test]
    fn escalation_and_repeat_notify_again() {
        use Transition::*;
        let p = Policy { for_windows: 1, cooldown_ms: 0, renotify_ms: Some(120_000) };
        let got = run(p, &[(W, false), (C, false), (C, false), (C, false), (W, false), (C, false)]);
        // 0 fires, 1 escalates (sent at 1), 3 is two windows after: repeat; 4 de-escalates
        // quietly; 5 escalates again.
        assert_eq!(got, vec![Some(Firing), Some(Escalated), None, Some(Repeat), None, Some(Escalated)]);
    }

    /// A window report that carries only an estimated accuracy.
    fn accuracy_window(accuracy: f64) -> Report {
        let mut report = Report::for_tests(Vec::new());
        report.performance.estimated = Some(true);
        report.performance.rows = Some(1000);
        report.performance.metrics.insert("accuracy".into(), Some(accuracy));
        report
    }

    #[test]
    fn a_detector_rule_fires_on_a_change_in_the_series_and_resolves_after_it() {
        use crate::engine::rules::{DetectorSpec, Rule, Target};
        let rule = Rule {
            name: "accuracy-change".into(),
            warn: None,
            resolve: 0.0,
            detector: Some(DetectorSpec::PageHinkley { min_windows: 5, delta: 0.005, threshold: 0.1 }),
            ..Rule::for_tests(Target::Performance { metric: "accuracy".into(), realised: false })
        };
        let mut book = Book::new(vec![rule]);
        let mut transitions = Vec::new();
        // Ten windows at 0.90 (noise-free), then a drop to 0.80.
        for w in 0..20 {
            let accuracy = if w < 10 { 0.9 } else { 0.8 };
            let out = book.observe(&accuracy_window(accuracy), &[], &[], (w * 60_000, (w + 1) * 60_000));
            transitions.extend(out.notices.into_iter().map(|(_, n)| (w, n.transition)));
        }
        assert_eq!(transitions.first().map(|t| t.1), Some(Transition::Firing), "{transitions:?}");
        let fired_at = transitions[0].0;
        assert!((10..14).contains(&fired_at), "fires soon after the drop: {transitions:?}");
        assert_eq!(transitions.get(1).map(|t| t.1), Some(Transition::Resolved), "{transitions:?}");
    }

    #[test]
    fn a_window_evaluated_again_steps_no_alert_twice() {
        use crate::engine::rules::{Reading, Severity};
        let p = Policy { for_windows: 2, cooldown_ms: 0, renotify_ms: None };
        let breach = Reading {
            feature: "x".into(),
            value: Some(1.0),
            raw: Some(1.0),
            adjusted: None,
            statistic: None,
            effect: None,
            samples: 100,
            level: Some(Severity::Warning),
            clear: false,
        };
        let mut s = AlertState::default();
        assert_eq!(s.observe(p, &breach, 60_000), None);
        // The same window again (a crash before the checkpoint): `for` does not count it.
        assert_eq!(s.observe(p, &breach, 60_000), None);
        assert_eq!((s.phase, s.breaches), (Phase::Pending, 1));
        assert_eq!(s.observe(p, &breach, 120_000), Some(Transition::Firing));
        // Saved and restored, it still knows.
        let mut back: AlertState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.observe(p, &breach, 120_000), None);
        assert_eq!(back, s);
    }

    #[test]
    fn cooldown_holds_a_new_firing_back() {
        use Transition::*;
        let p = Policy { for_windows: 1, cooldown_ms: 180_000, renotify_ms: None };
        // Resolved at t = 1 min; quiet until 4 min: breaches at 2 and 3 wait, 4 fires.
        let got = run(p, &[(W, false), (None, true), (W, false), (W, false), (W, false)]);
        assert_eq!(got, vec![Some(Firing), Some(Resolved), None, None, Some(Firing)]);
    }
}
