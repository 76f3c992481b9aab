//! One rate limiter for log lines that would otherwise repeat with every poll or every
//! chunk (a broker that stays away, late events that keep coming): a line is due when its
//! subject changed or when `period` has passed since the last one. What it stands for is
//! counted in metrics either way; the limiter only keeps the log readable.

use std::time::{Duration, Instant};

/// At most one line per `period` for the same subject `K`.
#[derive(Debug)]
pub(crate) struct Throttle<K> {
    period: Duration,
    last: Option<(K, Instant)>,
}

/// Once a minute: the period of every throttled line of the agent.
pub(crate) const MINUTE: Duration = Duration::from_secs(60);

impl<K: PartialEq> Throttle<K> {
    pub(crate) fn new(period: Duration) -> Throttle<K> {
        Throttle { period, last: None }
    }

    /// Whether a line about `subject` is due at `now`; when it is, it counts as said.
    pub(crate) fn due(&mut self, subject: K, now: Instant) -> bool {
        let due =
            self.last.as_ref().is_none_or(|(k, at)| *k != subject || now.saturating_duration_since(*at) >= self.period);
        if due {
            self.last = Some((subject, now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_subject() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = Throttle::new(MINUTE);
        assert!(t.due("down", at(0)));
        assert!(!t.due("down", at(30)));
        assert!(t.due("refused", at(31)), "another subject is said at once");
        assert!(!t.due("refused", at(90)));
        assert!(t.due("refused", at(91)));
    }
}
