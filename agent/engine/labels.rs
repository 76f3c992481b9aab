//! Ground truth: joins labels to the predictions they belong to (by event id, within a
//! horizon of event time) and gives each window its realised performance once every label
//! that may still come for it has had its chance.
//!
//! A prediction waits `horizon` (measured against the newest prediction time) for its label;
//! a label that arrives first waits as long for its prediction. Matched pairs go to every
//! window their prediction fell in. A window is complete when the newest prediction time
//! has passed its end by `horizon`: its pairs then give the realised metrics and are
//! dropped. What expires unmatched is counted. Memory: at most `max_pending` waiting
//! predictions and as many waiting labels (the oldest are dropped early, counted as
//! `evicted`), plus the pairs of windows not yet complete.

use std::collections::BTreeMap;

use crate::engine::recent::TimedIds;

/// What became of a label or prediction, the `outcome` of `driftwatch_labels_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A label met its prediction.
    Matched,
    /// A prediction whose label never came within the horizon.
    PredictionExpired,
    /// A label whose prediction never came within the horizon.
    LabelExpired,
    /// Dropped before the horizon to keep memory bounded.
    Evicted,
    /// A second label for an event already labelled or waiting.
    DuplicateLabel,
    /// A label that is not 0/1 (or true/false), or has no event id.
    InvalidLabel,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Matched,
        Outcome::PredictionExpired,
        Outcome::LabelExpired,
        Outcome::Evicted,
        Outcome::DuplicateLabel,
        Outcome::InvalidLabel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::PredictionExpired => "prediction_expired",
            Outcome::LabelExpired => "label_expired",
            Outcome::Evicted => "evicted",
            Outcome::DuplicateLabel => "duplicate_label",
            Outcome::InvalidLabel => "invalid_label",
        }
    }
}

/// Realised labels of one window, ready for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    pub start: i64,
    pub end: i64,
    /// True values: 0/1 for classification.
    pub labels: Vec<f64>,
    /// The model's score (classification) or predicted value (regression).
    pub scores: Vec<f64>,
}

/// Reads a label's text (a categorical cell): 1/0 or true/false for classification, any
/// finite number for regression.
pub fn parse_label(text: &str, regression: bool) -> Option<f64> {
    match text.trim() {
        "1" | "true" | "1.0" => Some(1.0),
        "0" | "false" | "0.0" => Some(0.0),
        t if regression => t.parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

/// The join state of one model.
pub struct LabelJoin {
    horizon: i64,
    cap: usize,
    size: i64,
    slide: i64,
    predictions: TimedIds<f64>,
    labels: TimedIds<f64>,
    /// Window start → matched (label, score) pairs.
    windows: BTreeMap<i64, (Vec<f64>, Vec<f64>)>,
    newest: Option<i64>,
    counts: BTreeMap<Outcome, u64>,
}

impl LabelJoin {
    /// `size` and `slide` are the model's windows (ms).
    pub fn new(horizon_ms: i64, max_pending: usize, size: i64, slide: i64) -> LabelJoin {
        LabelJoin {
            horizon: horizon_ms,
            cap: max_pending.max(1),
            size: size.max(1),
            slide: slide.clamp(1, size.max(1)),
            predictions: TimedIds::default(),
            labels: TimedIds::default(),
            windows: BTreeMap::new(),
            newest: None,
            counts: BTreeMap::new(),
        }
    }

    fn count(&mut self, outcome: Outcome, n: u64) {
        if n > 0 {
            *self.counts.entry(outcome).or_default() += n;
        }
    }

    /// Counts since the last call, by outcome.
    pub fn take_counts(&mut self) -> BTreeMap<Outcome, u64> {
        std::mem::take(&mut self.counts)
    }

    /// A prediction with its event id hash (0: none), event time and score.
    pub fn prediction(&mut self, id: u64, time: i64, score: Option<f64>) {
        let Some(score) = score.filter(|s| s.is_finite()) else {
            return;
        };
        if id == 0 {
            return;
        }
        self.newest = Some(self.newest.map_or(time, |n| n.max(time)));
        match self.labels.remove(id) {
            Some((_, label)) => self.matched(time, label, score),
            None => self.predictions.insert(id, time, score),
        }
    }

    /// A label for an event id hash (0: none); `label` is `None` when unreadable.
    pub fn label(&mut self, id: u64, time: i64, label: Option<f64>) {
        let Some(label) = label.filter(|_| id != 0) else {
            self.count(Outcome::InvalidLabel, 1);
            return;
        };
        if self.labels.get(id).is_some() {
            self.count(Outcome::DuplicateLabel, 1);
            return;
        }
        match self.predictions.remove(id) {
            Some((t, score)) => self.matched(t, label, score),
            None => self.labels.insert(id, time, label),
        }
    }

    fn matched(&mut self, time: i64, label: f64, score: f64) {
        self.count(Outcome::Matched, 1);
        // Every window holding `time`: starts in (time - size, time], on the slide grid.
        let last = time.div_euclid(self.slide) * self.slide;
        let mut start = last;
        while start > time - self.size {
            let w = self.windows.entry(start).or_default();
            w.0.push(label);
            w.1.push(score);
            start -= self.slide;
        }
    }

    /// Expires what waited too long and returns the windows that are complete.
    pub fn advance(&mut self) -> Vec<Labelled> {
        let Some(newest) = self.newest else {
            return Vec::new();
        };
        let before = newest.saturating_sub(self.horizon);
        let (expired, evicted) = self.predictions.expire(before, self.cap);
        self.count(Outcome::PredictionExpired, expired);
        self.count(Outcome::Evicted, evicted);
        let (expired, evicted) = self.labels.expire(before, self.cap);
        self.count(Outcome::LabelExpired, expired);
        self.count(Outcome::Evicted, evicted);
        let mut out = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            let start = *entry.key();
            if start + self.size > before {
                break;
            }
            let (labels, scores) = entry.remove();
            out.push(Labelled { start, end: start + self.size, labels, scores });
        }
        out
    }

    /// Every window with pairs, complete or not (shutdown).
    pub fn flush(&mut self) -> Vec<Labelled> {
        std::mem::take(&mut self.windows)
            .into_iter()
            .map(|(start, (labels, scores))| Labelled { start, end: start + self.size, labels, scores })
            .collect()
    }

    /// Predictions and labels waiting.
    pub fn pending(&self) -> (usize, usize) {
        (self.predictions.len(), self.labels.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_meet_predictions_in_either_order_within_the_horizon() {
        let mut j = LabelJoin::new(1_000, 100, 500, 500);
        j.prediction(1, 100, Some(0.9));
        j.label(2, 150, Some(0.0)); // before its prediction
        j.prediction(2, 200, Some(0.2));
        j.label(1, 900, Some(1.0));
        j.label(1, 950, Some(1.0)); // matched already: waits as a label, expires
        j.prediction(3, 600, Some(0.4)); // never labelled
        j.label(0, 700, Some(1.0)); // no id
        j.label(4, 700, None); // unreadable
        assert!(j.advance().is_empty(), "window [0, 500) waits until 1500");
        j.prediction(5, 1600, Some(0.5));
        let done = j.advance();
        assert_eq!(done, vec![Labelled { start: 0, end: 500, labels: vec![0.0, 1.0], scores: vec![0.2, 0.9] }]);
        let counts = j.take_counts();
        assert_eq!(counts[&Outcome::Matched], 2);
        assert_eq!(counts[&Outcome::InvalidLabel], 2);
        assert_eq!(counts.get(&Outcome::PredictionExpired), None, "3 at 600 expires only before 600");
        j.prediction(6, 2700, Some(0.5));
        j.advance();
        let counts = j.take_counts();
        assert_eq!(counts[&Outcome::PredictionExpired], 2, "3 and 5");
        assert_eq!(counts[&Outcome::LabelExpired], 1);
        assert_eq!(j.pending(), (1, 0));
    }

    #[test]
    fn memory_stays_bounded_whatever_goes_unmatched() {
        let mut j = LabelJoin::new(i64::MAX / 4, 50, 1_000, 1_000);
        for id in 1..10_000u64 {
            j.prediction(id, id as i64, Some(0.5));
            j.label(id + 1_000_000, id as i64, Some(1.0));
            j.advance();
            let (p, l) = j.pending();
            assert!(p <= 50 && l <= 50);
        }
        assert!(j.take_counts()[&Outcome::Evicted] > 19_000);
    }

    #[test]
    fn sliding_windows_get_every_pair_they_hold() {
        let mut j = LabelJoin::new(0, 10, 1_000, 500);
        j.prediction(1, 1_200, Some(0.7));
        j.label(1, 1_300, Some(1.0));
        let all = j.flush();
        let starts: Vec<i64> = all.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![500, 1_000]);
        assert_eq!(parse_label(" true", false), Some(1.0));
        assert_eq!(parse_label("2", false), None);
        assert_eq!(parse_label("2.5", true), Some(2.5));
    }
}
