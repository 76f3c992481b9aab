//! Two-sample tests on numerical data: each takes the reference and the current sample,
//! both sorted ascending and free of missing values, and walks them once in merged order.
//!
//! Conventions follow SciPy 1.17 defaults (DESIGN section 4); where SciPy would raise or
//! return NaN, these return [`Undefined`] with the reason.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::kolmogorov::{gcd, ks_2samp_exact_sf, kstwo_sf};
use super::special::{Sum, cvm_inf_cdf, quadratic_fit};
use super::{Outcome, Undefined};

/// How often one distinct value of the pooled sample occurs on each side.
pub(crate) struct Group {
    pub(crate) a: u64,
    pub(crate) b: u64,
}

/// Distinct values of two sorted samples in ascending order, with per-side multiplicities.
pub(crate) fn groups<'s>(a: &'s [f64], b: &'s [f64]) -> impl Iterator<Item = Group> + 's {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let value = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => return None,
        };
        let (i0, j0) = (i, j);
        while i < a.len() && a[i] == value {
            i += 1;
        }
        while j < b.len() && b[j] == value {
            j += 1;
        }
        Some(Group { a: (i - i0) as u64, b: (j - j0) as u64 })
    })
}

fn need_both(a: &[f64], b: &[f64]) -> Result<(), Undefined> {
    if a.is_empty() {
        return Err(Undefined::EmptyReference);
    }
    if b.is_empty() {
        return Err(Undefined::EmptyCurrent);
    }
    Ok(())
}

/// How the KS p-value is computed (SciPy's `method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KsMethod {
    /// Exact when both samples have at most 10 000 values, asymptotic otherwise.
    #[default]
    Auto,
    /// Always the exact lattice-path distribution (falls back to asymptotic on overflow).
    Exact,
    /// Always the one-sample Kolmogorov distribution at n = round(n·m/(n+m)): cheap.
    Asymp,
}

/// Two-sample Kolmogorov–Smirnov test: D = sup |F_ref − F_cur| and SciPy's `ks_2samp` p-value.
pub fn ks(reference: &[f64], current: &[f64], method: KsMethod) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    let (n1, n2) = (reference.len() as u64, current.len() as u64);
    let (fa, fb) = (n1 as f64, n2 as f64);
    let (mut ca, mut cb) = (0_u64, 0_u64);
    let mut d = 0.0_f64;
    for g in groups(reference, current) {
        ca += g.a;
        cb += g.b;
        d = d.max((ca as f64 / fa - cb as f64 / fb).abs());
    }
    let mut exact = match method {
        KsMethod::Auto => n1.max(n2) <= 10_000,
        KsMethod::Exact => {
            let g = gcd(n1, n2);
            ((n1 / g) as f64) < i32::MAX as f64 / (n2 / g) as f64
        }
        KsMethod::Asymp => false,
    };
    if exact {
        if let Some((d_lattice, p)) = ks_2samp_exact_sf(n1, n2, d) {
            return Ok(Outcome::with_p(d_lattice, p));
        }
        exact = false;
    }
    debug_assert!(!exact);
    let (m, n) = (fa.max(fb), fa.min(fb));
    let en = (m * n / (m + n)).round_ties_even() as u64;
    if en == 0 {
        // n = m = 1 rounds en = 0.5 to 0: the asymptotic distribution is undefined (SciPy: NaN).
        return Err(Undefined::TooFewValues("the asymptotic KS p-value needs n·m/(n+m) >= 1"));
    }
    Ok(Outcome::with_p(d, kstwo_sf(en, d)))
}

/// Σ over the pooled values of `f(F_ref − F_cur) · (next value − value)`: the integral of a
/// function of the ECDF gap, as SciPy's `_cdf_distance`. One merge of the two sorted
/// samples with a data-independent select instead of a branch; between tied values the width
/// is 0, so the gap there (which has not yet counted every tie) contributes nothing. Summed
/// in blocks of 256 terms with a compensated total: near one rounding at 10^6 terms.
fn cdf_gap_integral(a: &[f64], b: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let (n, m) = (a.len(), b.len());
    let (inv_n, inv_m) = (1.0 / n as f64, 1.0 / m as f64);
    let mut acc = BlockSum::default();
    // Take the first value, then close one interval per further value.
    let (mut i, mut j) = if a[0] <= b[0] { (1, 0) } else { (0, 1) };
    let mut prev = a[0].min(b[0]);
    let mut gap = i as f64 * inv_n - j as f64 * inv_m;
    while i < n && j < m {
        let (x, y) = (a[i], b[j]);
        let take_a = x <= y;
        let v = if take_a { x } else { y };
        acc.add(f(gap) * (v - prev));
        i += usize::from(take_a);
        j += usize::from(!take_a);
        gap = i as f64 * inv_n - j as f64 * inv_m;
        prev = v;
    }
    // One side is used up; the other's remaining values close the remaining intervals.
    for &v in &a[i..] {
        acc.add(f(gap) * (v - prev));
        i += 1;
        gap = i as f64 * inv_n - j as f64 * inv_m;
        prev = v;
    }
    for &v in &b[j..] {
        acc.add(f(gap) * (v - prev));
        j += 1;
        gap = i as f64 * inv_n - j as f64 * inv_m;
        prev = v;
    }
    acc.value()
}

/// Plain sums of 256 terms folded into a compensated total: the speed of a plain loop with
/// an error bound of about (256 + n/256) roundings.
#[derive(Default)]
struct BlockSum {
    total: Sum,
    block: f64,
    len: u32,
}

impl BlockSum {
    #[inline]
    fn add(&mut self, x: f64) {
        self.block += x;
        self.len += 1;
        if self.len == 256 {
            self.total.add(self.block);
            self.block = 0.0;
            self.len = 0;
        }
    }

    fn value(mut self) -> f64 {
        self.total.add(self.block);
        self.total.value()
    }
}

/// Population (ddof 0) standard deviation, two-pass like NumPy's `std`.
pub fn population_std(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().copied().collect::<Sum>().value() / n;
    let ss = x.iter().map(|v| (v - mean).powi(2)).collect::<Sum>().value();
    (ss / n).sqrt()
}

/// Wasserstein-1 distance divided by max(population std of the reference, 0.001)
/// (Evidently's normalisation).
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    let w1 = cdf_gap_integral(reference, current, f64::abs);
    Ok(Outcome::distance(w1 / population_std(reference).max(0.001)))
}

/// Energy distance √2 · √(∫ (F − G)²), SciPy's `energy_distance` (not scale-normalised).
pub fn energy(reference: &[f64], current: &[f64]) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    let integral = cdf_gap_integral(reference, current, |g| g * g);
    Ok(Outcome::distance(std::f64::consts::SQRT_2 * integral.sqrt()))
}

/// Anderson–Darling k-sample test (k = 2), midrank variant of Scholz & Stephens (1987), with
/// SciPy's p-value: interpolated from the tabulated critical values, capped at 0.25 and
/// floored at 0.001.
pub fn anderson(reference: &[f64], current: &[f64]) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    let ns = [reference.len() as f64, current.len() as f64];
    let n_total = ns[0] + ns[1];
    if n_total < 4.0 {
        return Err(Undefined::TooFewValues("anderson needs at least 4 values in total"));
    }
    let mut inner = [Sum::default(), Sum::default()];
    let mut below = 0.0; // pooled values strictly below the current distinct value
    let mut le = [0.0_f64, 0.0]; // per-sample counts <= the current distinct value
    let mut distinct = 0_usize;
    for g in groups(reference, current) {
        distinct += 1;
        let lj = (g.a + g.b) as f64;
        let bj = below + lj / 2.0;
        for (i, f) in [g.a as f64, g.b as f64].into_iter().enumerate() {
            le[i] += f;
            let mij = le[i] - f / 2.0;
            let num = (n_total * mij - bj * ns[i]).powi(2);
            let den = bj * (n_total - bj) - n_total * lj / 4.0;
            inner[i].add(lj / n_total * num / den);
        }
        below += lj;
    }
    if distinct < 2 {
        return Err(Undefined::Constant);
    }
    let a2akn = (inner[0].value() / ns[0] + inner[1].value() / ns[1]) * (n_total - 1.0) / n_total;

    let k = 2.0_f64;
    let h_big = 1.0 / ns[0] + 1.0 / ns[1];
    // hs_cs = cumsum(1/(N-1), 1/(N-2), ..., 1/2); h = hs_cs[-1] + 1; g = Σ hs_cs[i] / (i + 2)
    let nn = n_total as u64;
    let mut hs = 0.0;
    let mut g = 0.0;
    for (idx, i) in (2..nn).rev().enumerate() {
        hs += 1.0 / i as f64;
        g += hs / (idx + 2) as f64;
    }
    let h = hs + 1.0;
    let a = (4.0 * g - 6.0) * (k - 1.0) + (10.0 - 6.0 * g) * h_big;
    let b = (2.0 * g - 4.0) * k * k + 8.0 * h * k + (2.0 * g - 14.0 * h - 4.0) * h_big - 8.0 * h + 4.0 * g - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * k * k + (4.0 * h - 4.0 * g + 6.0) * k + (2.0 * h - 6.0) * h_big + 4.0 * h;
    let d = (2.0 * h + 6.0) * k * k - 4.0 * h * k;
    let nf = n_total;
    let sigmasq = (a * nf.powi(3) + b * nf * nf + c * nf + d) / ((nf - 1.0) * (nf - 2.0) * (nf - 3.0));
    let m = k - 1.0;
    let a2 = (a2akn - m) / sigmasq.sqrt();

    const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
    const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
    const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];
    const SIG: [f64; 7] = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
    let critical: Vec<f64> = (0..7).map(|i| B0[i] + B1[i] / m.sqrt() + B2[i] / m).collect();
    let cmin = critical.iter().copied().fold(f64::INFINITY, f64::min);
    let cmax = critical.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p = if a2 < cmin {
        0.25
    } else if a2 > cmax {
        0.001
    } else {
        let log_sig: Vec<f64> = SIG.iter().map(|s| s.ln()).collect();
        quadratic_fit(&critical, &log_sig)(a2).exp()
    };
    Ok(Outcome::with_p(a2, p))
}

/// Cramér–von Mises two-sample test (Anderson 1962) with midranks; exact p-value when both
/// samples have at most 20 values, otherwise the limiting distribution, as SciPy.
pub fn cvm(reference: &[f64], current: &[f64]) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    if reference.len() < 2 || current.len() < 2 {
        return Err(Undefined::TooFewValues("cvm needs at least 2 values on each side"));
    }
    let (nx, ny) = (reference.len() as f64, current.len() as f64);
    let (mut sx, mut sy) = (Sum::default(), Sum::default());
    let (mut ix, mut iy, mut rank0) = (0_u64, 0_u64, 0_u64); // counts so far; pooled rank before group
    for g in groups(reference, current) {
        let c = g.a + g.b;
        let mid = rank0 as f64 + (c as f64 + 1.0) / 2.0;
        for t in 1..=g.a {
            sx.add((mid - (ix + t) as f64).powi(2));
        }
        for t in 1..=g.b {
            sy.add((mid - (iy + t) as f64).powi(2));
        }
        ix += g.a;
        iy += g.b;
        rank0 += c;
    }
    let u = nx * sx.value() + ny * sy.value();
    let k = nx * ny;
    let n = nx + ny;
    let t = u / (k * n) - (4.0 * k - 1.0) / (6.0 * n);
    let p = if reference.len().max(current.len()) <= 20 {
        cvm_exact_sf(u, reference.len() as u64, current.len() as u64)
    } else {
        let et = (1.0 + 1.0 / n) / 6.0;
        let vt = (n + 1.0) * (4.0 * k * n - 3.0 * (nx * nx + ny * ny) - 2.0 * k) / (45.0 * n * n * 4.0 * k);
        let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
        if tn < 0.003 { 1.0 } else { (1.0 - cvm_inf_cdf(tn)).max(0.0) }
    };
    Ok(Outcome::with_p(t, p))
}

/// Exact `P(U >= u)` for the two-sample CvM statistic by the Xiao–Gordon–Yakovlev recursion
/// over frequency tables of g⁺_{u,v}.
fn cvm_exact_sf(u_stat: f64, m: u64, n: u64) -> f64 {
    use std::collections::BTreeMap;
    let lcm = m / gcd(m, n) * n;
    let a = lcm / m;
    let b = lcm / n;
    let mn = (m * n) as f64;
    let zeta = ((lcm * lcm * (m + n)) as f64 * (6.0 * u_stat - mn * (4.0 * mn - 1.0)) / (6.0 * mn * mn)).floor();
    let mut gs: Vec<BTreeMap<u64, f64>> = vec![BTreeMap::new(); m as usize + 1];
    gs[0].insert(0, 1.0);
    for u in 0..=n {
        let mut next = Vec::with_capacity(gs.len());
        let mut tmp: BTreeMap<u64, f64> = BTreeMap::new();
        for (v, g) in gs.iter().enumerate() {
            for (val, freq) in g {
                *tmp.entry(*val).or_insert(0.0) += freq;
            }
            let res = (a as i64 * v as i64 - b as i64 * u as i64).pow(2) as u64;
            tmp = tmp.into_iter().map(|(val, f)| (val + res, f)).collect();
            next.push(tmp.clone());
        }
        gs = next;
    }
    let combinations = binomial(m + n, m);
    let hit: f64 = gs[m as usize].iter().filter(|(v, _)| **v as f64 >= zeta).map(|(_, f)| f).sum();
    hit / combinations
}

fn binomial(n: u64, k: u64) -> f64 {
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64).round()
}

/// Mann–Whitney U test, two-sided. SciPy's `auto`: the exact distribution when one sample has
/// at most 8 values and there are no ties, else the normal approximation with tie and
/// continuity correction. The exact distribution is only built while n1·n2 ≤ 20 000 (beyond
/// that the normal approximation is used; SciPy would spend minutes there).
/// The statistic is U of the reference sample.
pub fn mannwhitney(reference: &[f64], current: &[f64]) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    let (n1, n2) = (reference.len() as f64, current.len() as f64);
    let mut r1 = Sum::default();
    let mut tie_term = 0.0;
    let mut ties = false;
    let mut rank0 = 0_u64;
    for g in groups(reference, current) {
        let c = g.a + g.b;
        let mid = rank0 as f64 + (c as f64 + 1.0) / 2.0;
        r1.add(mid * g.a as f64);
        if c > 1 {
            ties = true;
            let t = c as f64;
            tie_term += t * t * t - t;
        }
        rank0 += c;
    }
    let u1 = r1.value() - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let u = u1.max(u2);
    let small = reference.len() <= 8 || current.len() <= 8;
    let exact = small && !ties && n1 * n2 <= 20_000.0;
    let p = if exact {
        2.0 * mwu_exact_sf(u as u64, reference.len() as u64, current.len() as u64)
    } else {
        let mu = n1 * n2 / 2.0;
        let n = n1 + n2;
        let s = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "NaN must take this branch too")]
        if !(s > 0.0) {
            // Every value is the same (or n = 1): U sits at its mean, no evidence of a
            // difference. SciPy arrives at the same p = 1 through z = −inf.
            1.0
        } else {
            let z = (u - mu - 0.5) / s;
            2.0 * standard_normal().cdf(-z)
        }
    };
    Ok(Outcome::with_p(u1, p.clamp(0.0, 1.0)))
}

fn standard_normal() -> Normal {
    Normal::standard()
}

/// Exact `P(U >= k)` under H0 for sizes n1, n2 (Löffler 1983 recursion, as SciPy's `_MWU`).
fn mwu_exact_sf(k: u64, n1: u64, n2: u64) -> f64 {
    let (n1, n2) = (n1.min(n2), n1.max(n2));
    let kc = n1 * n2 - k;
    let (target, complement) = if k < kc { (k, true) } else { (kc, false) };
    let maxu = target as usize;
    // sigma(a) = Σ_{d | a, d <= n1} d − Σ_{d | a, n2 < d <= n1 + n2} d
    let mut sigma = vec![0_i64; maxu + 1];
    for d in 1..=n1 as usize {
        for idx in (d..=maxu).step_by(d) {
            sigma[idx] += d as i64;
        }
    }
    for d in (n2 as usize + 1)..=((n1 + n2) as usize) {
        for idx in (d..=maxu).step_by(d) {
            sigma[idx] -= d as i64;
        }
    }
    let mut conf = vec![0.0_f64; maxu + 1];
    conf[0] = 1.0;
    for u in 1..=maxu {
        let s: f64 = (0..u).map(|i| conf[i] * sigma[u - i] as f64).sum();
        conf[u] = s / u as f64;
    }
    let total = binomial(n1 + n2, n1);
    let cdf: f64 = conf.iter().map(|c| c / total).sum();
    if complement { 1.0 - cdf + conf[maxu] / total } else { cdf }
}

/// Welch's unequal-variance t-test (SciPy `ttest_ind(equal_var=False)`).
pub fn ttest(reference: &[f64], current: &[f64]) -> Result<Outcome, Undefined> {
    need_both(reference, current)?;
    if reference.len() < 2 || current.len() < 2 {
        return Err(Undefined::TooFewValues("ttest needs at least 2 values on each side"));
    }
    let moments = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().copied().collect::<Sum>().value() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).collect::<Sum>().value() / (n - 1.0);
        (n, mean, var)
    };
    let (n1, m1, v1) = moments(reference);
    let (n2, m2, v2) = moments(current);
    let (vn1, vn2) = (v1 / n1, v2 / n2);
    let denom = (vn1 + vn2).sqrt();
    if denom == 0.0 {
        return Err(Undefined::Constant);
    }
    let mut df = (vn1 + vn2).powi(2) / (vn1 * vn1 / (n1 - 1.0) + vn2 * vn2 / (n2 - 1.0));
    if df.is_nan() {
        df = 1.0;
    }
    let t = (m1 - m2) / denom;
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|_| Undefined::Constant)?;
    let p = (2.0 * dist.sf(t.abs())).clamp(0.0, 1.0);
    Ok(Outcome::with_p(t, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_walk_merged_distinct_values() {
        let g: Vec<(u64, u64)> = groups(&[1.0, 1.0, 3.0], &[1.0, 2.0]).map(|g| (g.a, g.b)).collect();
        assert_eq!(g, vec![(2, 1), (0, 1), (1, 0)]);
    }

    #[test]
    fn identical_samples_have_zero_distance() {
        let x = [1.0, 2.0, 2.0, 5.0];
        assert_eq!(wasserstein(&x, &x).unwrap().statistic, 0.0);
        assert_eq!(energy(&x, &x).unwrap().statistic, 0.0);
        assert_eq!(ks(&x, &x, KsMethod::Auto).unwrap().statistic, 0.0);
    }

    #[test]
    fn empty_side_is_undefined_not_nan() {
        assert!(matches!(ks(&[], &[1.0], KsMethod::Auto), Err(Undefined::EmptyReference)));
        assert!(matches!(anderson(&[1.0], &[]), Err(Undefined::EmptyCurrent)));
        assert!(matches!(anderson(&[2.0; 5], &[2.0; 5]), Err(Undefined::Constant)));
        assert!(matches!(ttest(&[2.0; 5], &[2.0; 5]), Err(Undefined::Constant)));
    }
}
