//! Property tests of the invariants the engine relies on.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use driftwatch::profile::{FeatureKind, FeatureSpec, Profile, ProfileSpec, sort_f64};
use driftwatch::stats::binned::{self, Proportions};
use proptest::prelude::*;

fn spec() -> ProfileSpec {
    ProfileSpec {
        features: vec![
            FeatureSpec::new("x", FeatureKind::Numerical, vec![-1.0, 0.0, 2.5]),
            FeatureSpec::new("c", FeatureKind::Categorical, vec![]),
        ],
        bins: 4,
        max_samples: 10_000,
        max_categories: 5,
    }
}

fn profile_of(rows: &[(Option<f64>, Option<u8>)]) -> Profile {
    let schema =
        Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true), Field::new("c", DataType::Utf8, true)]));
    let x: ArrayRef = Arc::new(Float64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()));
    let c: ArrayRef =
        Arc::new(StringArray::from(rows.iter().map(|r| r.1.map(|v| format!("k{v}"))).collect::<Vec<_>>()));
    let batch = RecordBatch::try_new(schema, vec![x, c]).expect("batch");
    let spec = spec();
    let mut p = Profile::new(&spec);
    p.observe(&spec, &batch).expect("observe");
    p
}

/// Everything but floating-point sums must be equal; the sample as a multiset.
fn assert_same(mut a: Profile, mut b: Profile) {
    for (fa, fb) in a.features.iter_mut().zip(b.features.iter_mut()) {
        assert_eq!((fa.rows, fa.nulls, fa.non_finite), (fb.rows, fb.nulls, fb.non_finite));
        assert_eq!((fa.min, fa.max), (fb.min, fb.max));
        assert!((fa.sum - fb.sum).abs() <= 1e-9 * (1.0 + fa.sum.abs()));
        assert_eq!(fa.histogram, fb.histogram);
        assert_eq!(fa.categories, fb.categories);
        assert_eq!(fa.category_level, fb.category_level);
        // And what a comparison reads: the most frequent, capped.
        fa.cap_categories(5);
        fb.cap_categories(5);
        assert_eq!(fa.categories, fb.categories);
        assert_eq!(fa.sample.seen, fb.sample.seen);
        assert_eq!(fa.sample.sorted(), fb.sample.sorted());
    }
}

fn value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        8 => (-5.0f64..5.0).prop_map(Some),
        1 => Just(None),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)].prop_map(Some),
    ]
}

/// Few categories, or more than the 50 a profile tracks exactly (5 × TRACK_FACTOR), so that
/// the hash-sampled regime is merged and compared too.
fn rows() -> impl Strategy<Value = Vec<(Option<f64>, Option<u8>)>> {
    prop_oneof![
        prop::collection::vec((value(), prop::option::weighted(0.9, 0u8..4)), 0..60),
        prop::collection::vec((value(), prop::option::weighted(0.9, 0u8..=255)), 0..200),
    ]
}

proptest! {
    #[test]
    fn merge_is_associative_commutative_and_equals_one_pass(a in rows(), b in rows(), c in rows()) {
        let spec = spec();
        let (pa, pb, pc) = (profile_of(&a), profile_of(&b), profile_of(&c));
        let mut left = pa.clone();
        left.merge(&pb, &spec);
        left.merge(&pc, &spec);
        let mut bc = pb.clone();
        bc.merge(&pc, &spec);
        let mut right = pa.clone();
        right.merge(&bc, &spec);
        let mut swapped = pc.clone();
        swapped.merge(&pb, &spec);
        swapped.merge(&pa, &spec);
        let all: Vec<_> = a.iter().chain(&b).chain(&c).cloned().collect();
        // The order rows arrive in changes nothing either.
        let reversed: Vec<_> = all.iter().rev().cloned().collect();
        assert_same(profile_of(&reversed), profile_of(&all));
        assert_same(left.clone(), right);
        assert_same(left.clone(), swapped);
        assert_same(left, profile_of(&all));
    }

    #[test]
    fn distances_are_zero_on_identical_and_never_negative(
        r in prop::collection::vec(0u64..50, 1..12),
        scale in 1u64..5,
        c in prop::collection::vec(0u64..50, 1..12),
    ) {
        prop_assume!(r.iter().sum::<u64>() > 0);
        let same: Vec<u64> = r.iter().map(|v| v * scale).collect();
        let p = Proportions::from_counts(&r, &same).expect("non-empty");
        for o in [binned::psi(&p), binned::kl(&p), binned::hellinger(&p), binned::jensenshannon(&p)] {
            prop_assert!(o.statistic.abs() < 1e-12, "{o:?}");
        }
        let mut c = c;
        c.resize(r.len(), 0);
        prop_assume!(c.iter().sum::<u64>() > 0);
        let p = Proportions::from_counts(&r, &c).expect("non-empty");
        for o in [binned::psi(&p), binned::kl(&p), binned::hellinger(&p), binned::jensenshannon(&p), binned::tvd(&p)] {
            prop_assert!(o.statistic >= 0.0 && o.statistic.is_finite(), "{o:?}");
        }
        prop_assert!(binned::jensenshannon(&p).statistic <= std::f64::consts::LN_2.sqrt() + 1e-12);
    }

    #[test]
    fn radix_sort_agrees_with_comparison_sort(mut v in prop::collection::vec(-1e300f64..1e300, 4096..6000)) {
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_f64(&mut v);
        prop_assert_eq!(v, expected);
    }
}

/// Rows of one numerical column "x" at the given (partition, offset, time).
fn decoded(rows: &[(u32, i64, i64)]) -> driftwatch::decode::Decoded {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let x: ArrayRef = Arc::new(Float64Array::from(rows.iter().map(|r| r.2 as f64).collect::<Vec<_>>()));
    driftwatch::decode::Decoded::plain(
        RecordBatch::try_new(schema, vec![x]).expect("batch"),
        rows.iter().map(|r| r.2).collect(),
        rows.iter().map(|r| driftwatch::decode::Position { partition: r.0, offset: r.1 }).collect(),
    )
}

proptest! {
    /// The commit frontier never passes an offset that an open window still holds, never
    /// goes back, and once everything is flushed reaches one past the last offset.
    #[test]
    fn commit_frontier_never_passes_an_open_window(
        events in prop::collection::vec((0u32..3, 0i64..120_000), 1..300),
        batch in 1usize..40,
        sliding in any::<bool>(),
        lateness in 0u64..20,
    ) {
        use driftwatch::frontier::CommitFrontier;
        use driftwatch::window::{WindowSpec, Windows};
        use std::time::{Duration, Instant};
        let spec = ProfileSpec {
            features: vec![FeatureSpec::new("x", FeatureKind::Numerical, vec![])],
            bins: 10,
            max_samples: 1000,
            max_categories: 10,
        };
        let window = WindowSpec {
            size: Duration::from_secs(10),
            slide: Duration::from_secs(if sliding { 5 } else { 10 }),
            allowed_lateness: Duration::from_secs(lateness),
            idle_timeout: Duration::from_secs(3600),
            min_events: 0,
            expected_events: None,
        };
        let mut windows = Windows::new(&window, spec);
        let mut frontier = CommitFrontier::default();
        let mut next_offset = [0i64; 3];
        // Rows accepted into panes: (partition, offset, time).
        let mut accepted: Vec<(u32, i64, i64)> = Vec::new();
        let mut last = [None::<i64>; 3];
        let now = Instant::now();
        for part in events.chunks(batch) {
            let rows: Vec<(u32, i64, i64)> = part
                .iter()
                .map(|&(p, t)| {
                    next_offset[p as usize] += 1;
                    (p, next_offset[p as usize] - 1, t)
                })
                .collect();
            let late = windows.insert(&decoded(&rows), &mut frontier, now).expect("insert");
            for (i, r) in rows.iter().enumerate() {
                if !late.contains(&i) {
                    accepted.push(*r);
                }
                frontier.seen(r.0, r.1);
            }
            windows.advance(&mut frontier, now);
            let cursor = windows.cursor();
            for p in 0..3u32 {
                let Some(c) = frontier.committable(p) else { continue };
                // Every row still in an open pane is at or after the frontier.
                for &(rp, offset, t) in &accepted {
                    let open = cursor.is_none_or(|cur| windows.pane_of(t) >= cur);
                    if rp == p && open {
                        prop_assert!(c <= offset, "frontier {c} passed offset {offset} (time {t}) of an open pane");
                    }
                }
                if let Some(prev) = last[p as usize] {
                    prop_assert!(c >= prev, "frontier went back from {prev} to {c}");
                }
                last[p as usize] = Some(c);
            }
        }
        windows.flush(&mut frontier);
        for p in 0..3u32 {
            if next_offset[p as usize] > 0 {
                prop_assert_eq!(frontier.committable(p), Some(next_offset[p as usize]));
            }
        }
    }
}

/// One window's reading for an alert: a value seen against a rule with warn = 0.1,
/// critical = 0.3 and resolve = 0.05 (distance-like: higher is worse), or no reading.
fn readings() -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(prop_oneof![1 => Just(None), 6 => (0.0f64..0.5).prop_map(Some)], 0..80)
}

mod alert_props {
    use driftwatch::alert::{AlertState, Phase, Policy, Transition};
    use driftwatch::rules::{Direction, Severity};

    pub const WARN: f64 = 0.1;
    pub const CRITICAL: f64 = 0.3;
    pub const RESOLVE: f64 = 0.05;

    pub fn level(v: f64) -> Option<Severity> {
        if Direction::Above.breaches(v, CRITICAL) {
            Some(Severity::Critical)
        } else if Direction::Above.breaches(v, WARN) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// Runs the machine over one reading per minute; returns (time, value, transition, phase).
    pub fn run(policy: Policy, values: &[Option<f64>]) -> Vec<(i64, Option<f64>, Option<Transition>, Phase)> {
        let mut s = AlertState::default();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = i as i64 * 60_000;
                let t = match v {
                    None => None,
                    Some(v) => s.step(policy, level(*v), *v < RESOLVE, at),
                };
                (at, *v, t, s.phase)
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Only transitions notify, and they follow the machine: firing and resolved alternate
    /// (starting with firing), escalations and repeats happen only while firing, an alert
    /// fires only after `for` consecutive breaching readings (windows without a reading
    /// neither count nor reset), never within the cooldown after a resolution, resolves only
    /// on a reading below the resolve threshold, and repeats no more often than `renotify`.
    #[test]
    fn alert_state_machine_invariants(
        values in readings(),
        for_windows in 1u32..5,
        cooldown_min in 0i64..6,
        renotify_min in prop::option::of(1i64..6),
    ) {
        use alert_props::*;
        use driftwatch::alert::{Phase, Policy, Transition};
        let policy = Policy {
            for_windows,
            cooldown_ms: cooldown_min * 60_000,
            renotify_ms: renotify_min.map(|m| m * 60_000),
        };
        let steps = run(policy, &values);
        let mut firing = false;
        let mut last_resolved: Option<i64> = None;
        let mut last_sent: Option<i64> = None;
        for (i, &(at, value, transition, phase)) in steps.iter().enumerate() {
            if value.is_none() {
                prop_assert!(transition.is_none(), "no reading, no notification");
                let before = if i == 0 { Phase::Inactive } else { steps[i - 1].3 };
                prop_assert_eq!(phase, before, "no reading leaves the state as it was");
                continue;
            }
            let v = value.unwrap_or_default();
            match transition {
                Some(Transition::Firing) => {
                    prop_assert!(!firing, "fired twice without a resolution");
                    // The last `for` readings all breached.
                    let seen: Vec<f64> = steps[..=i].iter().filter_map(|s| s.1).collect();
                    let tail = &seen[seen.len() - for_windows as usize..];
                    prop_assert!(tail.iter().all(|v| level(*v).is_some()), "fired without {} breaches: {:?}", for_windows, tail);
                    if let Some(r) = last_resolved {
                        prop_assert!(at >= r + policy.cooldown_ms, "fired within the cooldown");
                    }
                    firing = true;
                    last_sent = Some(at);
                }
                Some(Transition::Resolved) => {
                    prop_assert!(firing, "resolved an alert that was not firing");
                    prop_assert!(v < RESOLVE, "resolved at {} above the resolve threshold", v);
                    firing = false;
                    last_resolved = Some(at);
                }
                Some(Transition::Escalated) => {
                    prop_assert!(firing);
                    prop_assert!(v >= CRITICAL);
                    last_sent = Some(at);
                }
                Some(Transition::Repeat) => {
                    prop_assert!(firing);
                    let every = policy.renotify_ms.expect("repeat needs renotify");
                    prop_assert!(at - last_sent.unwrap_or(i64::MIN / 2) >= every, "repeated too soon");
                    last_sent = Some(at);
                }
                None => {
                    if firing {
                        prop_assert!(v >= RESOLVE, "a firing alert below the resolve threshold must resolve");
                    }
                }
            }
            prop_assert_eq!(phase == Phase::Firing, firing, "phase agrees with the notifications");
        }
    }
}

proptest! {
    /// ADWIN never signals on a constant series, and finds a clean step of 0.2 or more in a
    /// [0, 1] series after 100 or more stable windows within 100 windows, whatever the levels.
    /// (Shorter histories need larger steps: its bound shrinks with the window lengths.)
    #[test]
    fn adwin_is_quiet_on_constants_and_finds_clean_steps(level in 0.0f64..1.0, step in 0.2f64..0.8, before in 100usize..300) {
        use driftwatch::detect::{Adwin, Side};
        let mut quiet = Adwin::new(0.002);
        prop_assert!(!(0..300).any(|_| quiet.update(level, Side::Both)));
        let (a, b) = if level + step <= 1.0 { (level, level + step) } else { (level, level - step) };
        prop_assume!((0.0..=1.0).contains(&b));
        let mut d = Adwin::new(0.002);
        for _ in 0..before {
            prop_assert!(!d.update(a, Side::Both));
        }
        prop_assert!((0..100).any(|_| d.update(b, Side::Both)), "no change found from {} to {}", a, b);
    }
}
