//! Tests on binned data: two count vectors over the same bins (reference-quantile bins of a
//! numerical feature, or the union of categories of a categorical one).
//!
//! Proportions are count / non-null n. `psi`, `kl` and `hellinger` replace a zero proportion
//! by 1e-4 without renormalising (DESIGN section 4); `jensenshannon` and `tvd` use the raw
//! proportions (0·ln 0 = 0).

use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::erf::erfc;

use super::special::Sum;
use super::{Outcome, Undefined};

const ZERO_FILL: f64 = 1e-4;

/// Reference and current proportions over the same bins.
#[derive(Clone, Debug)]
pub struct Proportions {
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

impl Proportions {
    pub fn from_counts(reference: &[u64], current: &[u64]) -> Result<Self, Undefined> {
        let nr: u64 = reference.iter().sum();
        let nc: u64 = current.iter().sum();
        if nr == 0 {
            return Err(Undefined::EmptyReference);
        }
        if nc == 0 {
            return Err(Undefined::EmptyCurrent);
        }
        Ok(Proportions {
            reference: reference.iter().map(|&c| c as f64 / nr as f64).collect(),
            current: current.iter().map(|&c| c as f64 / nc as f64).collect(),
        })
    }

    fn pairs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.reference.iter().copied().zip(self.current.iter().copied())
    }

    fn smoothed(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let fill = |p: f64| if p == 0.0 { ZERO_FILL } else { p };
        self.pairs().map(move |(r, c)| (fill(r), fill(c)))
    }
}

/// Population stability index Σ (c − r)·ln(c / r).
pub fn psi(p: &Proportions) -> Outcome {
    // Every term is >= 0: (c − r) and ln(c / r) share their sign.
    let s: Sum = p.smoothed().map(|(r, c)| (c - r) * (c / r).ln()).collect();
    Outcome::distance(s.value())
}

/// Kullback–Leibler divergence KL(reference ‖ current) = Σ r·ln(r / c). Zero-filling without
/// renormalisation can push the sum a hair below 0 when the only difference is a bin that is
/// empty in the current window; that is reported as 0.
pub fn kl(p: &Proportions) -> Outcome {
    let s: Sum = p.smoothed().map(|(r, c)| r * (r / c).ln()).collect();
    Outcome::distance(s.value().max(0.0))
}

/// Hellinger distance √(½ Σ (√r − √c)²), on the zero-filled proportions. Written as a sum
/// of squares it is never negative and exactly 0 for identical inputs.
pub fn hellinger(p: &Proportions) -> Outcome {
    let s: Sum = p.smoothed().map(|(r, c)| (r.sqrt() - c.sqrt()).powi(2)).collect();
    Outcome::distance((s.value() / 2.0).sqrt())
}

/// Jensen–Shannon distance with natural log: √(½ KL(r‖m) + ½ KL(c‖m)), m = (r + c)/2,
/// in [0, √ln 2]. Inputs are normalised to sum 1 first, as SciPy's `jensenshannon`.
pub fn jensenshannon(p: &Proportions) -> Outcome {
    let sr: f64 = p.reference.iter().sum();
    let sc: f64 = p.current.iter().sum();
    let rel_entr = |x: f64, y: f64| if x == 0.0 { 0.0 } else { x * (x / y).ln() };
    let mut left = Sum::default();
    let mut right = Sum::default();
    for (r, c) in p.pairs() {
        let (r, c) = (r / sr, c / sc);
        let m = (r + c) / 2.0;
        left.add(rel_entr(r, m));
        right.add(rel_entr(c, m));
    }
    let js = left.value() + right.value();
    Outcome::distance((js / 2.0).max(0.0).sqrt())
}

/// Total variation distance ½ Σ |r − c|.
pub fn tvd(p: &Proportions) -> Outcome {
    let s: Sum = p.pairs().map(|(r, c)| (r - c).abs()).collect();
    Outcome::distance(s.value() / 2.0)
}

/// Pearson χ² test of homogeneity on the 2×K table (reference row, current row), no
/// continuity correction: SciPy `chi2_contingency(correction=False)`. Categories that are
/// empty on both sides are dropped first; a single category gives χ² = 0, p = 1.
pub fn chisquare(reference: &[u64], current: &[u64]) -> Result<Outcome, Undefined> {
    let cols: Vec<(f64, f64)> =
        reference.iter().zip(current).filter(|(r, c)| **r + **c > 0).map(|(r, c)| (*r as f64, *c as f64)).collect();
    let nr: f64 = cols.iter().map(|c| c.0).sum();
    let nc: f64 = cols.iter().map(|c| c.1).sum();
    if nr == 0.0 {
        return Err(Undefined::EmptyReference);
    }
    if nc == 0.0 {
        return Err(Undefined::EmptyCurrent);
    }
    if cols.len() < 2 {
        return Ok(Outcome::with_p(0.0, 1.0));
    }
    let n = nr + nc;
    let mut stat = Sum::default();
    for (r, c) in &cols {
        let col = r + c;
        let (er, ec) = (nr * col / n, nc * col / n);
        stat.add((r - er).powi(2) / er);
        stat.add((c - ec).powi(2) / ec);
    }
    let stat = stat.value();
    let df = (cols.len() - 1) as f64;
    let dist = ChiSquared::new(df).map_err(|_| Undefined::Constant)?;
    Ok(Outcome::with_p(stat, dist.sf(stat).clamp(0.0, 1.0)))
}

/// Two-proportion z-test with pooled variance. The first bin is "0" and every other bin
/// "1" (the caller orders categories so the first is the smallest value). The p-value is
/// 2·Φ(−|z|), evaluated with erfc so that it stays accurate far in the tail. Both samples
/// holding one and the same value gives z = 0, p = 1.
pub fn ztest(reference: &[u64], current: &[u64]) -> Result<Outcome, Undefined> {
    let n1: u64 = reference.iter().sum();
    let n2: u64 = current.iter().sum();
    if n1 == 0 {
        return Err(Undefined::EmptyReference);
    }
    if n2 == 0 {
        return Err(Undefined::EmptyCurrent);
    }
    let ones = |c: &[u64]| c.iter().skip(1).sum::<u64>() as f64;
    let (n1, n2) = (n1 as f64, n2 as f64);
    let (p1, p2) = (ones(reference) / n1, ones(current) / n2);
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if var <= 0.0 {
        return Ok(Outcome::with_p(0.0, 1.0));
    }
    let z = (p1 - p2) / var.sqrt();
    let p = erfc(z.abs() / std::f64::consts::SQRT_2);
    Ok(Outcome::with_p(z, p.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_vanish_on_identical_counts() {
        let p = Proportions::from_counts(&[5, 0, 3], &[10, 0, 6]).unwrap();
        assert_eq!(psi(&p).statistic, 0.0);
        assert_eq!(kl(&p).statistic, 0.0);
        assert_eq!(hellinger(&p).statistic, 0.0);
        assert_eq!(tvd(&p).statistic, 0.0);
        assert!(jensenshannon(&p).statistic.abs() < 1e-12);
    }

    #[test]
    fn jensenshannon_is_bounded_by_sqrt_ln2() {
        let p = Proportions::from_counts(&[1, 0], &[0, 1]).unwrap();
        assert!((jensenshannon(&p).statistic - std::f64::consts::LN_2.sqrt()).abs() < 1e-15);
        assert_eq!(tvd(&p).statistic, 1.0);
    }

    #[test]
    fn chisquare_single_category_is_not_drift() {
        let o = chisquare(&[10], &[4]).unwrap();
        assert_eq!((o.statistic, o.p_value), (0.0, Some(1.0)));
    }
}
