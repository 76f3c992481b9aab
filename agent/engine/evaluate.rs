//! Judging a window: the pure step between the windows and everything that publishes a
//! verdict. [`Judge::evaluate`] compares a closed window with the model's reference (and
//! each segment slice with its own), adds the window-level quality figures, the label-free
//! performance estimate and the drift-impact ranking, and steps the alert book;
//! [`Judge::realise`] does the same for a window whose labels are in. Neither reads a clock
//! nor touches shared state: the runtime times them and publishes the [`Evaluation`]
//! (metrics, status, log line, notices).

use std::collections::BTreeMap;

use crate::engine::alert::{Book, Notice, Outcome};
use crate::engine::impact::ImpactModel;
use crate::engine::performance::Cbpe;
use crate::engine::plan::{Plan, compare};
use crate::engine::profile::{Baseline, FeatureProfile};
use crate::engine::report::{Performance, Report};
use crate::engine::window::{ClosedWindow, WindowSpec};

/// A segment slice and its reference (`None`: the slice had no reference rows, so it is not
/// compared).
pub struct SliceSetup {
    pub name: String,
    pub baseline: Option<Baseline>,
}

/// Everything a model's windows are judged against, and the alert state they step.
pub struct Judge {
    pub model: String,
    pub baseline: Baseline,
    pub plan: Plan,
    /// The estimator, the index of the score feature among the baseline's features, and the
    /// decision threshold.
    pub cbpe: Option<(Cbpe, usize, f64)>,
    pub impact: Option<ImpactModel>,
    /// Segment slices, in the windows' slice order.
    pub slices: Vec<SliceSetup>,
    pub spec: WindowSpec,
    pub alerts: Book,
    /// End of the last window evaluated (this run or, from the checkpoint, the last): a
    /// window ending no later is evaluated again, not anew.
    pub evaluated_until: Option<i64>,
}

/// What became of a window: its verdict and the alert steps it caused.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub model: String,
    pub start: i64,
    pub end: i64,
    pub events: u64,
    /// `None` when the window had fewer than `min_events` events.
    pub report: Option<Report>,
    /// The window's report on each segment slice that had enough events and a reference.
    pub slices: Vec<(String, Report)>,
    /// The window was evaluated before (a crash fell after its close and before the
    /// checkpoint): shown again, but it steps no alert and no counter counts it twice.
    pub repeated: bool,
    /// Events that arrived for windows already closed since the previous window.
    pub late: u64,
    /// Seconds the close took (merging panes, testing); set by the runtime, which times it.
    pub close_seconds: f64,
    /// The alert book's answer (`None` when no rule read the window): alert states and
    /// transitions, each notice with its recipients.
    pub alerts: Option<Outcome>,
}

/// A window's verdict: the `verdict` of the status document and the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drift,
    NoDrift,
    InsufficientData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Drift => "drift",
            Verdict::NoDrift => "no_drift",
            Verdict::InsufficientData => "insufficient_data",
        }
    }
}

/// How a closed window is counted (`driftwatch_windows_total{verdict}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Evaluated,
    InsufficientData,
    Repeated,
}

impl Counted {
    pub const ALL: [Counted; 3] = [Counted::Evaluated, Counted::InsufficientData, Counted::Repeated];

    pub fn as_str(self) -> &'static str {
        match self {
            Counted::Evaluated => "evaluated",
            Counted::InsufficientData => "insufficient_data",
            Counted::Repeated => "repeated",
        }
    }
}

impl Evaluation {
    pub fn verdict(&self) -> Verdict {
        match &self.report {
            None => Verdict::InsufficientData,
            Some(r) if r.drift.detected => Verdict::Drift,
            Some(_) => Verdict::NoDrift,
        }
    }

    pub fn counted(&self) -> Counted {
        match (&self.report, self.repeated) {
            (_, true) => Counted::Repeated,
            (Some(_), false) => Counted::Evaluated,
            (None, false) => Counted::InsufficientData,
        }
    }

    /// The alert transitions of this window.
    pub fn notices(&self) -> Vec<&Notice> {
        self.alerts.iter().flat_map(|o| o.notices.iter().map(|(_, n)| n)).collect()
    }

    /// The names of the drifted features (none without a report).
    pub fn drifted_features(&self) -> Vec<String> {
        self.report
            .as_ref()
            .map(|r| r.features.iter().filter(|f| f.drift).map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }
}

impl Judge {
    /// Judges a closed window; `late` events arrived for closed windows since the last one.
    pub fn evaluate(&mut self, window: ClosedWindow, late: u64) -> Evaluation {
        let events = window.events();
        let repeated = self.evaluated_until.is_some_and(|e| window.end <= e);
        self.evaluated_until = Some(self.evaluated_until.map_or(window.end, |e| e.max(window.end)));
        let mut alerts = None;
        let report = if events == 0 || events < self.spec.min_events {
            None
        } else {
            let quality = window.profile.events;
            let mut features = window.profile.features;
            let mut report = compare(&mut self.baseline, &mut features, events, &self.plan);
            report.quality.insert("schema_error_rate".into(), quality.schema_errors as f64 / events as f64);
            let seen = events + quality.duplicates;
            report.quality.insert("duplicate_rate".into(), quality.duplicates as f64 / seen as f64);
            report.quality.insert("freshness_seconds".into(), quality.delay_seconds / events as f64);
            if let Some(p) = estimate(&self.cbpe, &mut features) {
                report.performance = p;
            }
            if let Some(impact) = &self.impact {
                let drifted: Vec<&str> = report.features.iter().filter(|f| f.drift).map(|f| f.name.as_str()).collect();
                if !drifted.is_empty() {
                    report.impact = impact
                        .rank(&drifted, &self.baseline.spec.features, &self.baseline.profile.features, &mut features);
                }
            }
            report.quality.insert("late_rate".into(), late as f64 / (events as f64 + late as f64));
            if let Some(expected) = self.spec.expected_events {
                report.quality.insert("volume".into(), events as f64 / expected as f64);
            }
            if !self.alerts.rules().is_empty() && !repeated {
                let span = (window.start, window.end);
                let mut outcome = self.alerts.observe(&report, &features, &self.baseline.profile.features, span);
                for (_, notice) in &mut outcome.notices {
                    notice.impact = report.impact.clone();
                }
                alerts = Some(outcome);
            }
            Some(report)
        };
        let mut slices = Vec::new();
        for (slice, mut profile) in self.slices.iter_mut().zip(window.slices) {
            let n = profile.rows();
            let Some(reference) = slice.baseline.as_mut().filter(|_| n > 0 && n >= self.spec.min_events) else {
                continue;
            };
            let mut report = compare(reference, &mut profile.features, n, &self.plan);
            if let Some(p) = estimate(&self.cbpe, &mut profile.features) {
                report.performance = p;
            }
            slices.push((slice.name.clone(), report));
        }
        Evaluation {
            model: self.model.clone(),
            start: window.start,
            end: window.end,
            events,
            report,
            slices,
            repeated,
            late,
            close_seconds: 0.0,
            alerts,
        }
    }

    /// Judges a window whose labels are in: realised performance over `labelled` pairs
    /// (`metrics`), read by the rules with `value = "realised"`.
    pub fn realise(
        &mut self,
        (start, end): (i64, i64),
        labelled: usize,
        metrics: BTreeMap<&'static str, Option<f64>>,
    ) -> Evaluation {
        let report = Report::realised(&self.model, self.baseline.profile.rows(), labelled, metrics);
        let alerts = (!self.alerts.rules().is_empty())
            .then(|| self.alerts.observe(&report, &[], &self.baseline.profile.features, (start, end)));
        Evaluation {
            model: self.model.clone(),
            start,
            end,
            events: labelled as u64,
            report: Some(report),
            slices: Vec::new(),
            repeated: false,
            late: 0,
            close_seconds: 0.0,
            alerts,
        }
    }
}

/// CBPE's estimate for a window (or slice) from its score feature's sample, when the model
/// estimates performance.
fn estimate(cbpe: &Option<(Cbpe, usize, f64)>, features: &mut [FeatureProfile]) -> Option<Performance> {
    let (cbpe, score, threshold) = cbpe.as_ref()?;
    let scores = features.get_mut(*score)?.sample.sorted();
    let predicted: Vec<bool> = scores.iter().map(|s| *s >= *threshold).collect();
    Some(Performance::estimated(cbpe, scores, &predicted))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::engine::alert::Transition;
    use crate::engine::plan::FeatureSelection;
    use crate::engine::profile::{Profile, ProfileSpec};
    use crate::engine::rules::{Rule, Target};
    use crate::engine::stats::TestKind;

    fn spec() -> ProfileSpec {
        ProfileSpec::single_numerical(1 << 16)
    }

    /// A profile of `n` evenly spread values in [shift, shift + 1).
    fn profile(n: usize, shift: f64) -> Profile {
        let values: Vec<f64> = (0..n).map(|i| shift + (i as f64 + 0.5) / n as f64).collect();
        Profile::of_numbers(&spec(), &values)
    }

    /// A model on one feature whose KS p-value below 0.01 fires an alert after one window.
    fn judge(min_events: u64) -> Judge {
        let mut plan = Plan::zero_config("m".into(), FeatureSelection::default());
        let rule = Rule {
            warn: Some(0.01),
            resolve: 0.05,
            ..Rule::for_tests(Target::Test { test: TestKind::Ks, p_value: true })
        };
        plan.rules = vec![rule.clone()];
        Judge {
            model: "m".into(),
            baseline: Baseline {
                spec: spec(),
                profile: profile(2000, 0.0),
                source: PathBuf::from("reference.parquet"),
            },
            plan,
            cbpe: None,
            impact: None,
            slices: Vec::new(),
            spec: WindowSpec { min_events, ..WindowSpec::default() },
            alerts: Book::new(vec![rule]),
            evaluated_until: None,
        }
    }

    fn window(start: i64, n: usize, shift: f64) -> ClosedWindow {
        ClosedWindow { start, end: start + 60_000, profile: profile(n, shift), slices: Vec::new(), holds: Vec::new() }
    }

    #[test]
    fn a_drifted_window_is_reported_and_fires_its_alert() {
        let mut judge = judge(10);
        let quiet = judge.evaluate(window(0, 500, 0.0), 0);
        assert_eq!(
            (quiet.verdict(), quiet.counted(), quiet.notices().len()),
            (Verdict::NoDrift, Counted::Evaluated, 0)
        );
        let drifted = judge.evaluate(window(60_000, 500, 0.5), 25);
        assert_eq!(drifted.verdict(), Verdict::Drift);
        assert_eq!(drifted.drifted_features(), ["x"]);
        assert_eq!(drifted.notices().len(), 1);
        assert_eq!(drifted.notices()[0].transition, Transition::Firing);
        assert!(drifted.alerts.as_ref().is_some_and(|o| o.changed));
        let report = drifted.report.as_ref().unwrap();
        // 25 late events beside 500 on time.
        assert_eq!(report.quality["late_rate"], 25.0 / 525.0);
        assert_eq!((report.current.rows, report.reference.rows), (500, 2000));
    }

    #[test]
    fn a_window_below_min_events_is_insufficient_and_steps_nothing() {
        let mut judge = judge(1000);
        let e = judge.evaluate(window(0, 500, 0.5), 0);
        assert_eq!((e.verdict(), e.counted()), (Verdict::InsufficientData, Counted::InsufficientData));
        assert!(e.report.is_none() && e.alerts.is_none() && e.notices().is_empty());
    }

    #[test]
    fn a_window_evaluated_again_is_the_same_verdict_without_alert_steps() {
        let mut judge = judge(10);
        let first = judge.evaluate(window(0, 500, 0.5), 0);
        assert_eq!(first.notices().len(), 1);
        // A restart after a crash: the alert state as saved, the window read again.
        judge.evaluated_until = Some(60_000);
        let again = judge.evaluate(window(0, 500, 0.5), 0);
        assert_eq!((again.counted(), again.verdict()), (Counted::Repeated, Verdict::Drift));
        assert!(again.alerts.is_none() && again.notices().is_empty());
        let first_p = first.report.unwrap().features[0].tests[0].p_value;
        assert_eq!(again.report.unwrap().features[0].tests[0].p_value, first_p);
    }
}
