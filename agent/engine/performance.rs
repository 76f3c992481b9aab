//! Model performance: realised metrics from ground truth (binary classification and
//! regression, as scikit-learn computes them) and confidence-based performance estimation
//! (CBPE) of the classification metrics from calibrated scores, as NannyML 0.13 computes
//! them — so degradation is visible before labels arrive.
//!
//! Classification inputs are the label (0/1), the predicted class and, for `roc_auc`,
//! `log_loss`, `brier` and every estimate, the score (probability of class 1). A metric that
//! is undefined on its input (ROC AUC with one class, precision with no positive
//! prediction) is `None`, never a made-up number.

use std::collections::BTreeMap;

/// Classification metric names, as in metric labels and JSON.
pub const CLASSIFICATION: [&str; 7] = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"];
/// Regression metric names.
pub const REGRESSION: [&str; 4] = ["mae", "rmse", "mape", "r2"];
/// Metrics CBPE estimates.
pub const ESTIMATED: [&str; 5] = ["accuracy", "precision", "recall", "f1", "roc_auc"];

/// Counts of the confusion matrix: (true positives, false positives, false negatives, true
/// negatives).
fn confusion(labels: &[bool], predicted: &[bool]) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for (&y, &p) in labels.iter().zip(predicted) {
        match (y, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    (tp, fp, fn_, tn)
}

/// Indices of `scores` in ascending order (stable: equal scores keep their order).
fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order
}

/// Realised binary-classification metrics. `scores` may be empty (then `roc_auc`,
/// `log_loss` and `brier` are absent).
pub fn classification(labels: &[bool], predicted: &[bool], scores: &[f64]) -> BTreeMap<&'static str, Option<f64>> {
    let n = labels.len();
    let mut out = BTreeMap::new();
    if n == 0 {
        return out;
    }
    let (tp, fp, fn_, tn) = confusion(labels, predicted);
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    out.insert("accuracy", ratio(tp + tn, n as u64));
    out.insert("precision", ratio(tp, tp + fp));
    out.insert("recall", ratio(tp, tp + fn_));
    out.insert("f1", ratio(2 * tp, 2 * tp + fp + fn_));
    if scores.len() == n {
        out.insert("roc_auc", roc_auc(labels, scores));
        // scikit-learn clips probabilities to [eps, 1 - eps].
        let eps = f64::EPSILON;
        let mut loss = 0.0;
        let mut brier = 0.0;
        for (&y, &s) in labels.iter().zip(scores) {
            let p = s.clamp(eps, 1.0 - eps);
            loss -= if y { p.ln() } else { (1.0 - p).ln() };
            let t = if y { 1.0 } else { 0.0 };
            brier += (s - t) * (s - t);
        }
        out.insert("log_loss", Some(loss / n as f64));
        out.insert("brier", Some(brier / n as f64));
    }
    out
}

/// Area under the ROC curve: the Mann–Whitney probability that a positive outranks a
/// negative, ties counting one half (equal to scikit-learn's trapezoids over distinct
/// thresholds). `None` without both classes.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let order = ascending(scores);
    let positives = labels.iter().filter(|&&y| y).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum of the (average) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        let pos = order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        rank_sum += mid * pos;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Realised regression metrics (MAPE divides by max(|actual|, machine epsilon), as
/// scikit-learn does; R² is 1 for a perfect fit of constant data and 0 for an imperfect one).
pub fn regression(actual: &[f64], predicted: &[f64]) -> BTreeMap<&'static str, Option<f64>> {
    let n = actual.len();
    let mut out = BTreeMap::new();
    if n == 0 {
        return out;
    }
    let nf = n as f64;
    let (mut abs, mut sq, mut pct) = (0.0, 0.0, 0.0);
    for (&y, &p) in actual.iter().zip(predicted) {
        let e = y - p;
        abs += e.abs();
        sq += e * e;
        pct += e.abs() / y.abs().max(f64::EPSILON);
    }
    let mean = actual.iter().sum::<f64>() / nf;
    let total: f64 = actual.iter().map(|y| (y - mean) * (y - mean)).sum();
    let r2 = if total != 0.0 {
        1.0 - sq / total
    } else if sq == 0.0 {
        1.0
    } else {
        0.0
    };
    out.insert("mae", Some(abs / nf));
    out.insert("rmse", Some((sq / nf).sqrt()));
    out.insert("mape", Some(pct / nf));
    out.insert("r2", Some(r2));
    out
}

/// Isotonic (non-decreasing) regression of labels on scores, predicting by linear
/// interpolation between the fitted points and clipping outside them — scikit-learn's
/// `IsotonicRegression(out_of_bounds="clip")`.
#[derive(Clone, Debug, PartialEq)]
pub struct Isotonic {
    x: Vec<f64>,
    y: Vec<f64>,
}

impl Isotonic {
    pub fn fit(scores: &[f64], labels: &[bool]) -> Isotonic {
        let order = ascending(scores);
        // Equal scores become one point: the mean label, weighted by their count.
        let mut x: Vec<f64> = Vec::new();
        let mut y: Vec<f64> = Vec::new();
        let mut w: Vec<f64> = Vec::new();
        for &i in &order {
            let t = if labels[i] { 1.0 } else { 0.0 };
            match x.last() {
                Some(&last) if last == scores[i] => {
                    let k = y.len() - 1;
                    y[k] = (y[k] * w[k] + t) / (w[k] + 1.0);
                    w[k] += 1.0;
                }
                _ => {
                    x.push(scores[i]);
                    y.push(t);
                    w.push(1.0);
                }
            }
        }
        // Pool adjacent violators.
        let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(x.len()); // (mean, weight, points)
        for (&v, &wt) in y.iter().zip(&w) {
            blocks.push((v, wt, 1));
            while blocks.len() > 1 {
                let (m2, w2, c2) = blocks[blocks.len() - 1];
                let (m1, w1, c1) = blocks[blocks.len() - 2];
                if m1 <= m2 {
                    break;
                }
                blocks.pop();
                let merged = (m1 * w1 + m2 * w2) / (w1 + w2);
                let last = blocks.len() - 1;
                blocks[last] = (merged, w1 + w2, c1 + c2);
            }
        }
        let fitted: Vec<f64> = blocks.iter().flat_map(|&(m, _, c)| std::iter::repeat_n(m, c)).collect();
        Isotonic { x, y: fitted }
    }

    pub fn predict(&self, score: f64) -> f64 {
        let (x, y) = (&self.x, &self.y);
        if x.is_empty() {
            return score;
        }
        if score <= x[0] {
            return y[0];
        }
        if score >= x[x.len() - 1] {
            return y[y.len() - 1];
        }
        let k = x.partition_point(|&v| v <= score);
        let (x0, x1, y0, y1) = (x[k - 1], x[k], y[k - 1], y[k]);
        y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    }
}

/// Expected calibration error over `bins` equal-count bins of the sorted scores (NannyML's
/// definition).
fn calibration_error(scores: &[f64], labels: &[bool], bins: usize) -> f64 {
    let n = scores.len();
    let order = ascending(scores);
    let bins = if n <= 2 * bins { (n / 2).max(1) } else { bins };
    let width = (n / bins).max(1);
    let mut edges: Vec<usize> = (0..=n).step_by(width).collect();
    if let Some(last) = edges.last_mut() {
        *last = n;
    }
    edges.dedup();
    let mut total = 0.0;
    for pair in edges.windows(2) {
        let (lo, hi) = (pair[0], pair[1]);
        let idx = &order[lo..hi];
        let mean_p = idx.iter().map(|&i| scores[i]).sum::<f64>() / idx.len() as f64;
        let mean_y = idx.iter().filter(|&&i| labels[i]).count() as f64 / idx.len() as f64;
        total += idx.len() as f64 / n as f64 * (mean_p - mean_y).abs();
    }
    total
}

/// Sampling-error components of one metric, derived from the reference (NannyML's
/// "modified standard error of the mean"): the standard error of a chunk of `n` rows is
/// `std / sqrt(n · fraction)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingError {
    pub std: f64,
    pub fraction: f64,
}

impl SamplingError {
    pub fn for_rows(&self, n: usize) -> f64 {
        self.std / (n as f64 * self.fraction).sqrt()
    }
}

fn population_std(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// A CBPE estimator fitted on reference data with labels.
#[derive(Clone, Debug)]
pub struct Cbpe {
    /// Present when isotonic calibration lowers the expected calibration error.
    pub calibrator: Option<Isotonic>,
    pub sampling: BTreeMap<&'static str, SamplingError>,
}

/// One estimated metric with its sampling error (the band is ±3 of it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub sampling_error: f64,
}

impl Cbpe {
    /// Fits on the reference: decides on calibration by 10-fold cross-validation of the
    /// expected calibration error (folds by position modulo 10 within each class, so the
    /// decision is deterministic; NannyML draws ten random 90/10 splits instead, so on
    /// scores that are already calibrated the two may decide differently), then fits the
    /// calibrator on the whole reference and derives the sampling-error components.
    pub fn fit(scores: &[f64], predicted: &[bool], labels: &[bool]) -> Cbpe {
        Cbpe::fit_calibrated(scores, predicted, labels, needs_calibration(scores, labels))
    }

    /// As [`Cbpe::fit`], with the calibration decision given.
    pub fn fit_calibrated(scores: &[f64], predicted: &[bool], labels: &[bool], calibrate: bool) -> Cbpe {
        let calibrator = calibrate.then(|| Isotonic::fit(scores, labels));
        let mut sampling = BTreeMap::new();
        let n = labels.len() as f64;
        let positives = labels.iter().filter(|&&y| y).count() as f64;
        // accuracy: std of "correct", fraction 1.
        let correct: Vec<f64> = labels.iter().zip(predicted).map(|(y, p)| f64::from(u8::from(y == p))).collect();
        sampling.insert("accuracy", SamplingError { std: population_std(&correct), fraction: 1.0 });
        let (tp, fp, fn_, _) = confusion(labels, predicted);
        let (tp, fp, fn_) = (tp as usize, fp as usize, fn_ as usize);
        let ones_zeros = |ones: usize, zeros: usize| -> Vec<f64> {
            std::iter::repeat_n(1.0, ones).chain(std::iter::repeat_n(0.0, zeros)).collect()
        };
        let precision = ones_zeros(tp, fp);
        if !precision.is_empty() {
            let fraction = (tp + fp) as f64 / n;
            sampling.insert("precision", SamplingError { std: population_std(&precision), fraction });
        }
        let recall = ones_zeros(tp, fn_);
        if !recall.is_empty() {
            sampling.insert("recall", SamplingError { std: population_std(&recall), fraction: positives / n });
        }
        let all = tp + fp + fn_;
        if all > 0 {
            let correcting = all as f64 / ((fn_ + fp) as f64 * 0.5 + tp as f64);
            let f1: Vec<f64> = ones_zeros(tp, fn_ + fp).iter().map(|v| v * correcting).collect();
            sampling.insert("f1", SamplingError { std: population_std(&f1), fraction: all as f64 / n });
        }
        if let Some(e) = auroc_sampling(scores, labels) {
            sampling.insert("roc_auc", e);
        }
        Cbpe { calibrator, sampling }
    }

    /// Calibrated probabilities of `scores`.
    pub fn calibrate(&self, scores: &[f64]) -> Vec<f64> {
        match &self.calibrator {
            Some(c) => scores.iter().map(|&s| c.predict(s)).collect(),
            None => scores.to_vec(),
        }
    }

    /// Estimates the classification metrics of a chunk from its scores and predictions.
    pub fn estimate(&self, scores: &[f64], predicted: &[bool]) -> BTreeMap<&'static str, Estimate> {
        let mut out = BTreeMap::new();
        let n = scores.len();
        if n == 0 {
            return out;
        }
        let p = self.calibrate(scores);
        let (mut tp, mut fp, mut fn_, mut tn) = (0.0, 0.0, 0.0, 0.0);
        for (&q, &yhat) in p.iter().zip(predicted) {
            if yhat {
                tp += q;
                fp += 1.0 - q;
            } else {
                fn_ += q;
                tn += 1.0 - q;
            }
        }
        let guarded = |num: f64, den: f64| if den != 0.0 { num / den } else { 0.0 };
        let values = [
            ("accuracy", (tp + tn) / n as f64),
            ("precision", guarded(tp, tp + fp)),
            ("recall", guarded(tp, tp + fn_)),
            ("f1", guarded(tp, tp + 0.5 * (fp + fn_))),
            ("roc_auc", estimate_roc_auc(&p, scores)),
        ];
        for (name, value) in values {
            let sampling_error = self.sampling.get(name).map_or(f64::NAN, |s| s.for_rows(n));
            out.insert(name, Estimate { value, sampling_error });
        }
        out
    }
}

fn needs_calibration(scores: &[f64], labels: &[bool]) -> bool {
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == labels.len() {
        return false;
    }
    if roc_auc(labels, scores).is_some_and(|a| a > 0.999) {
        return false;
    }
    // Ten folds, stratified: the k-th positive and the k-th negative go to fold k mod 10.
    const FOLDS: usize = 10;
    let mut fold = vec![0usize; labels.len()];
    let (mut pos, mut neg) = (0usize, 0usize);
    for (i, &y) in labels.iter().enumerate() {
        let k = if y { &mut pos } else { &mut neg };
        fold[i] = *k % FOLDS;
        *k += 1;
    }
    let (mut truth, mut raw, mut calibrated) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..FOLDS {
        let train: Vec<usize> = (0..labels.len()).filter(|&i| fold[i] != f).collect();
        let test: Vec<usize> = (0..labels.len()).filter(|&i| fold[i] == f).collect();
        let iso = Isotonic::fit(
            &train.iter().map(|&i| scores[i]).collect::<Vec<_>>(),
            &train.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
        );
        for &i in &test {
            truth.push(labels[i]);
            raw.push(scores[i]);
            calibrated.push(iso.predict(scores[i]));
        }
    }
    calibration_error(&raw, &truth, 10) > calibration_error(&calibrated, &truth, 10)
}

/// NannyML's ROC AUC estimate: scores ranked by the model's (uncalibrated) score, expected
/// true and false positives accumulated from the calibrated probabilities, rounded to 5
/// decimals, and the trapezoids under the resulting curve.
fn estimate_roc_auc(calibrated: &[f64], scores: &[f64]) -> f64 {
    // Descending; NumPy reverses an ascending argsort, so equal scores come last-first. A
    // window's scores arrive sorted (from its sample): then the stable sort is not needed.
    let mut order = if scores.is_sorted() { (0..scores.len()).collect() } else { ascending(scores) };
    order.reverse();
    let round5 = |v: f64| (v * 1e5).round() / 1e5;
    let mut tps = Vec::with_capacity(order.len() + 1);
    let mut fps = Vec::with_capacity(order.len() + 1);
    tps.push(0.0);
    fps.push(0.0);
    let mut cum = 0.0;
    for (k, &i) in order.iter().enumerate() {
        cum += calibrated[i];
        tps.push(cum);
        fps.push(1.0 + k as f64 - cum);
    }
    let tps: Vec<f64> = tps.into_iter().map(round5).collect();
    let fps: Vec<f64> = fps.into_iter().map(round5).collect();
    let (tmax, fmax) = (tps[tps.len() - 1], fps[fps.len() - 1]);
    let mut area = 0.0;
    for k in 1..tps.len() {
        let (x0, x1) = (fps[k - 1] / fmax, fps[k] / fmax);
        let (y0, y1) = (tps[k - 1] / tmax, tps[k] / tmax);
        area += (x1 - x0) * (y0 + y1) / 2.0;
    }
    area
}

/// NannyML's AUROC sampling-error components (the Mann–Whitney formulation).
fn auroc_sampling(scores: &[f64], labels: &[bool]) -> Option<SamplingError> {
    let n = labels.len();
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == n {
        return None;
    }
    // The minority class is the "positive" one.
    let flip = positives as f64 / n as f64 > 0.5;
    let (y, s): (Vec<bool>, Vec<f64>) =
        labels.iter().zip(scores).map(|(&y, &s)| if flip { (!y, 1.0 - s) } else { (y, s) }).unzip();
    let order = ascending(&s);
    let n_pos = y.iter().filter(|&&v| v).count();
    let n_neg = (n - n_pos) as f64;
    // Ranks (0-based) of the positives, in order; the first one (rank 0) is dropped, as
    // NumPy's unique()[1:] does.
    let mut ranks: Vec<usize> = order.iter().enumerate().filter(|(_, i)| y[**i]).map(|(r, _)| r).collect();
    ranks.dedup();
    if ranks.first() == Some(&0) {
        ranks.remove(0);
    }
    let ser: Vec<f64> = ranks.iter().enumerate().map(|(i, &r)| (r - i) as f64 / n_neg).collect();
    if ser.is_empty() {
        return None;
    }
    Some(SamplingError { std: population_std(&ser), fraction: n_pos as f64 / n as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_interpolates() {
        let iso = Isotonic::fit(&[0.1, 0.2, 0.3, 0.4], &[false, true, false, true]);
        // 0.2 and 0.3 pool to 0.5.
        assert_eq!(iso.predict(0.1), 0.0);
        assert_eq!(iso.predict(0.25), 0.5);
        assert_eq!(iso.predict(0.4), 1.0);
        assert!((iso.predict(0.35) - 0.75).abs() < 1e-15);
        assert_eq!(iso.predict(-1.0), 0.0, "clipped");
        assert_eq!(iso.predict(2.0), 1.0, "clipped");
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(roc_auc(&[false, true], &[0.5, 0.5]), Some(0.5));
        assert_eq!(roc_auc(&[false, true], &[0.2, 0.8]), Some(1.0));
        assert_eq!(roc_auc(&[true, true], &[0.2, 0.8]), None);
    }
}
