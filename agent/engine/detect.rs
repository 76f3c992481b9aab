//! Change detectors on a per-window metric series (one value per closed window): the
//! Page-Hinkley test (as River implements it) and ADWIN (adaptive windowing, Bifet and
//! Gavaldà 2007, in its exact form: every split of the kept window is tested). Rules use them
//! to alert on a change in a series rather than on a fixed threshold.

use std::collections::VecDeque;

/// Which way of a change matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Up,
    Down,
    Both,
}

/// The Page-Hinkley test: cumulative deviations from the running mean, minus a tolerance
/// `delta`, forgotten at rate `alpha`; a change is signalled when the cumulative sum moves
/// more than `threshold` away from its extreme, after `min_instances` values. It restarts
/// after a signal.
#[derive(Clone, Debug, PartialEq)]
pub struct PageHinkley {
    pub min_instances: u64,
    pub delta: f64,
    pub threshold: f64,
    pub alpha: f64,
    pub side: Side,
    n: u64,
    mean: f64,
    sum_increase: f64,
    sum_decrease: f64,
    min_increase: f64,
    max_decrease: f64,
    detected: bool,
}

impl PageHinkley {
    pub fn new(min_instances: u64, delta: f64, threshold: f64, alpha: f64, side: Side) -> PageHinkley {
        PageHinkley {
            min_instances,
            delta,
            threshold,
            alpha,
            side,
            n: 0,
            mean: 0.0,
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: f64::INFINITY,
            // River starts it at -1, not -inf (kept for parity).
            max_decrease: -1.0,
            detected: false,
        }
    }

    fn reset(&mut self) {
        *self = PageHinkley::new(self.min_instances, self.delta, self.threshold, self.alpha, self.side);
    }

    /// Adds a value; true when it completes a change.
    pub fn update(&mut self, x: f64) -> bool {
        if self.detected {
            self.reset();
        }
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        let dev = x - self.mean;
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta;
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta;
        self.min_increase = self.min_increase.min(self.sum_increase);
        self.max_decrease = self.max_decrease.max(self.sum_decrease);
        if self.n >= self.min_instances {
            let up = self.sum_increase - self.min_increase > self.threshold;
            let down = self.max_decrease - self.sum_decrease > self.threshold;
            self.detected = match self.side {
                Side::Up => up,
                Side::Down => down,
                Side::Both => up || down,
            };
        }
        self.detected
    }
}

/// ADWIN: keeps the longest recent window in which no split into an older and a newer part
/// shows means that differ by more than the paper's variance-based bound
/// ε = sqrt(2/m · σ² · ln(2/δ')) + 2/(3m) · ln(2/δ'), with m the harmonic mean of the two
/// lengths, σ² the window's variance and δ' = δ / ln n; dropping the older part signals a
/// change. `max_len` caps the window (one value per closed window: hundreds at most).
#[derive(Clone, Debug, PartialEq)]
pub struct Adwin {
    pub delta: f64,
    pub max_len: usize,
    pub min_len: usize,
    window: VecDeque<f64>,
}

impl Adwin {
    pub fn new(delta: f64) -> Adwin {
        Adwin { delta, max_len: 1000, min_len: 5, window: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Adds a value; true when the window shrank because its older part differs, with
    /// `side` telling whether the change must be a rise or a fall of the mean to count.
    pub fn update(&mut self, x: f64, side: Side) -> bool {
        self.window.push_back(x);
        if self.window.len() > self.max_len {
            self.window.pop_front();
        }
        let mut changed = false;
        // Drop the oldest values while some split shows a difference.
        while let Some(cut) = self.cut(side) {
            self.window.drain(..cut);
            changed = true;
        }
        changed
    }

    /// The first split (oldest part length) whose two parts differ beyond the bound.
    fn cut(&self, side: Side) -> Option<usize> {
        let n = self.window.len();
        if n < 2 * self.min_len {
            return None;
        }
        let total: f64 = self.window.iter().sum();
        let mean = total / n as f64;
        let variance = self.window.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        let ln = (2.0 * (n as f64).ln() / self.delta).ln();
        let mut head = 0.0;
        for (i, v) in self.window.iter().enumerate().take(n - self.min_len) {
            head += v;
            let n0 = i + 1;
            if n0 < self.min_len {
                continue;
            }
            let n1 = n - n0;
            let (m0, m1) = (head / n0 as f64, (total - head) / n1 as f64);
            let m = 1.0 / (1.0 / n0 as f64 + 1.0 / n1 as f64);
            let eps = (2.0 / m * variance * ln).sqrt() + 2.0 / (3.0 * m) * ln;
            let diff = m1 - m0;
            let counts = match side {
                Side::Up => diff > eps,
                Side::Down => -diff > eps,
                Side::Both => diff.abs() > eps,
            };
            if counts {
                return Some(n0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adwin_finds_a_step_and_forgets_the_old_level() {
        let mut a = Adwin::new(0.002);
        let mut fired = Vec::new();
        for i in 0..200 {
            let x = if i < 100 { 0.9 } else { 0.6 };
            if a.update(x, Side::Down) {
                fired.push(i);
            }
        }
        assert!(!fired.is_empty() && fired[0] >= 100 && fired[0] < 160, "{fired:?}");
        assert!(a.len() <= 100, "the old level is dropped: {}", a.len());
        // A rise does not count when only falls matter.
        let mut b = Adwin::new(0.002);
        assert!(!(0..200).any(|i| b.update(if i < 100 { 0.6 } else { 0.9 }, Side::Down)));
    }

    #[test]
    fn page_hinkley_signals_a_drop_after_its_minimum_instances() {
        let mut ph = PageHinkley::new(30, 0.005, 0.5, 1.0 - 1e-4, Side::Down);
        let fired: Vec<usize> = (0..120).filter(|&i| ph.update(if i < 60 { 0.9 } else { 0.8 })).collect();
        assert!(!fired.is_empty() && fired[0] > 60, "{fired:?}");
        let mut quiet = PageHinkley::new(30, 0.005, 0.5, 1.0 - 1e-4, Side::Down);
        assert!(!(0..120).any(|_| quiet.update(0.9)));
    }
}
