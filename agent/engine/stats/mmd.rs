//! Maximum mean discrepancy (MMD), a two-sample test on whole rows (vectors): does a window's
//! joint distribution differ from the reference's, whatever single column shows it?
//!
//! * Statistic: the unbiased MMD² (Gretton et al., 2012, eq. 3) with a Gaussian kernel
//!   `k(a, b) = exp(-|a - b|² / (2 σ²))`.
//! * Bandwidth: the median heuristic, `σ = sqrt(median / 2)` (alibi-detect's `sigma_median`,
//!   so the kernel is `exp(-|a - b|² / median)`), with the median taken over the squared
//!   distances of every pair of pooled rows rather than alibi-detect's reference × window
//!   pairs: it then does not depend on which rows are the reference, and the permutation test
//!   is exact.
//! * p-value: a permutation test on the pooled rows, with the kernel matrix computed once and
//!   the bandwidth kept, `(1 + #{MMD²_perm ≥ MMD²}) / (1 + permutations)` (Phipson and Smyth's
//!   exact form, never 0); permutations drawn from a seeded SplitMix64, so runs repeat.
//!
//! Cost: the pooled kernel matrix, `(m + n)²` entries, and `permutations × (m + n)²` sums;
//! callers cap the rows they pass (a window's joint row sample is bounded).
//! No NaN leaves this module: degenerate input gives `None`.

use crate::engine::rng::SplitMix64;

/// The outcome of [`mmd`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mmd {
    /// Unbiased MMD² (may be slightly negative when the samples agree).
    pub statistic: f64,
    pub p_value: f64,
    /// The kernel bandwidth σ used.
    pub sigma: f64,
}

/// Squared Euclidean distance.
fn distance2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The median heuristic's σ over every pair of `pooled` rows; `None` when every pair is
/// equal.
pub fn median_sigma(pooled: &[&Vec<f64>]) -> Option<f64> {
    let mut d: Vec<f64> = Vec::with_capacity(pooled.len() * pooled.len().saturating_sub(1) / 2);
    for (i, a) in pooled.iter().enumerate() {
        for b in &pooled[i + 1..] {
            d.push(distance2(a, b));
        }
    }
    if d.is_empty() {
        return None;
    }
    let n = d.len();
    // NumPy's median: the mean of the two middle values for an even count.
    let (_, &mut hi, _) = d.select_nth_unstable_by(n / 2, f64::total_cmp);
    let median = if n % 2 == 1 {
        hi
    } else {
        let lo = d[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    };
    (median > 0.0 && median.is_finite()).then(|| (median / 2.0).sqrt())
}

/// Unbiased MMD² of the first `m` pooled rows against the rest, from the pooled kernel matrix
/// `k` (row-major, `p × p`) read through `order`.
fn unbiased(k: &[f64], p: usize, order: &[usize], m: usize) -> f64 {
    let n = p - m;
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for (i, &a) in order.iter().enumerate() {
        let row = &k[a * p..(a + 1) * p];
        for (j, &b) in order.iter().enumerate().skip(i + 1) {
            let v = row[b];
            match (i < m, j < m) {
                (true, true) => xx += v,
                (false, false) => yy += v,
                _ => xy += v,
            }
        }
    }
    // Off-diagonal sums counted once above; each appears twice in the full sums.
    let (m, n) = (m as f64, n as f64);
    2.0 * xx / (m * (m - 1.0)) + 2.0 * yy / (n * (n - 1.0)) - 2.0 * xy / (m * n)
}

/// MMD test of `x` (reference rows) against `y` (window rows): every row as long as the
/// first. `None` with fewer than two rows a side, rows of unequal length, a non-finite value
/// or all rows equal (no bandwidth).
pub fn mmd(x: &[Vec<f64>], y: &[Vec<f64>], permutations: usize, seed: u64) -> Option<Mmd> {
    let dim = x.first()?.len();
    let rows_ok = |s: &[Vec<f64>]| s.len() >= 2 && s.iter().all(|r| r.len() == dim && r.iter().all(|v| v.is_finite()));
    if dim == 0 || !rows_ok(x) || !rows_ok(y) {
        return None;
    }
    let pooled: Vec<&Vec<f64>> = x.iter().chain(y).collect();
    let sigma = median_sigma(&pooled)?;
    let p = pooled.len();
    let gamma = 1.0 / (2.0 * sigma * sigma);
    let mut k = vec![0.0; p * p];
    for i in 0..p {
        k[i * p + i] = 1.0;
        for j in i + 1..p {
            let v = (-gamma * distance2(pooled[i], pooled[j])).exp();
            k[i * p + j] = v;
            k[j * p + i] = v;
        }
    }
    let mut order: Vec<usize> = (0..p).collect();
    let statistic = unbiased(&k, p, &order, x.len());
    let mut rng = SplitMix64(seed);
    let mut at_least = 0usize;
    for _ in 0..permutations {
        for i in (1..p).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        if unbiased(&k, p, &order, x.len()) >= statistic {
            at_least += 1;
        }
    }
    let p_value = (1 + at_least) as f64 / (1 + permutations) as f64;
    Some(Mmd { statistic, p_value, sigma })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(rng: &mut SplitMix64, n: usize, dim: usize, shift: f64) -> Vec<Vec<f64>> {
        (0..n).map(|_| (0..dim).map(|_| rng.normal() + shift).collect()).collect()
    }

    #[test]
    fn a_shift_is_found_and_equal_samples_are_not() {
        let mut rng = SplitMix64(7);
        let x = rows(&mut rng, 60, 4, 0.0);
        let y = rows(&mut rng, 60, 4, 1.0);
        let shifted = mmd(&x, &y, 200, 1).expect("defined");
        assert!(shifted.p_value < 0.01 && shifted.statistic > 0.0, "{shifted:?}");
        let same = mmd(&x, &x, 200, 1).expect("defined");
        assert!(same.p_value > 0.5, "{same:?}");
    }

    #[test]
    fn degenerate_input_has_no_result() {
        let one = vec![vec![1.0, 2.0]];
        let two = vec![vec![1.0, 2.0], vec![1.0, 2.0]];
        assert!(mmd(&one, &two, 10, 1).is_none(), "one row");
        assert!(mmd(&two, &two, 10, 1).is_none(), "all rows equal: no bandwidth");
        assert!(mmd(&two, &[vec![1.0], vec![2.0]], 10, 1).is_none(), "unequal lengths");
        assert!(mmd(&two, &[vec![1.0, f64::NAN], vec![2.0, 0.0]], 10, 1).is_none(), "NaN");
    }
}
