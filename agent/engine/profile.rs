//! Mergeable per-feature summaries of a data set: the reference baseline and every live
//! window are summarised by this same code.
//!
//! A [`ProfileSpec`] is fixed by the baseline: which features exist, their kind, the bin
//! edges of numerical features (reference quantiles i/bins, NumPy's linear interpolation,
//! duplicates removed) and the reference categories. A [`Profile`] holds, per feature, row,
//! null and non-finite counts, min/max/sum/sum of squares of the finite values, a histogram
//! over the spec's edges, category counts and a value sample: exact while at most `max_samples` values were seen,
//! then a uniform reservoir (Algorithm R) driven by a fixed-seed generator, so runs repeat.
//!
//! Category counts are exact and independent of the order rows arrive in (so two agents, or
//! two runs reading a baseline in parallel, agree). Up to [`TRACK_FACTOR`] × `max_categories`
//! distinct values are counted exactly; beyond that only values whose fixed-seed hash has at
//! least `category_level` trailing zero bits are tracked (the level rises until few enough
//! are), the others are counted under `__other__`. Which values are tracked depends only on
//! the set of values seen, never on their order, and a tracked value's count is exact. When
//! a profile is compared, [`FeatureProfile::cap_categories`] keeps the `max_categories` most
//! frequent (ties by value) and folds the rest into `__other__`. So the top values are exact
//! whenever the distinct values fit the tracking limit; beyond it they are the most frequent
//! of a deterministic hash sample of about that many distinct values.
//!
//! `merge` is associative and commutative: counts add, extremes combine, and exact samples
//! concatenate (compared as multisets). Once a reservoir is involved the merged sample is a
//! uniform sample of the union: a hypergeometric number of values from each side (as if
//! `max_samples` values were drawn from the union without replacement), each side's taken at
//! random from its own uniform sample — deterministic given the inputs, and equal in
//! distribution (not value by value) whatever the merge order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Category counts; a fixed-seed fast hash (categories are looked up once per row).
pub type CategoryCounts = HashMap<String, u64, foldhash::fast::FixedState>;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::engine::rng::splitmix;

/// Categories beyond `max_categories` are counted under this name.
pub const OTHER_CATEGORY: &str = "__other__";
/// Default number of bins for binned tests on numerical features.
pub const DEFAULT_BINS: usize = 10;
/// Default cap on the exact sample kept per feature before it becomes a reservoir.
pub const DEFAULT_MAX_SAMPLES: usize = 2_000_000;
/// Default cap on distinct categories kept per feature when compared.
pub const DEFAULT_MAX_CATEGORIES: usize = 1_000;
/// Distinct values counted exactly per feature: this many times `max_categories`.
pub const TRACK_FACTOR: usize = 10;

/// The sampling level of a category value: trailing zero bits of its fixed-seed hash (the
/// same value has the same level on every agent and in every run).
fn category_level(value: &str) -> u32 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6472_6966_7477_6174).hash_one(value).trailing_zeros()
}

/// How a feature is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Numerical,
    Categorical,
}

impl FeatureKind {
    /// The Arrow type live batches hold a feature of this kind in.
    pub fn live_type(self) -> DataType {
        match self {
            FeatureKind::Numerical => DataType::Float64,
            FeatureKind::Categorical => DataType::Utf8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FeatureKind::Numerical => "numerical",
            FeatureKind::Categorical => "categorical",
        }
    }

    /// The kind an Arrow column has when none is declared: integers, floats and decimals are
    /// numerical; strings, dictionaries and booleans categorical; anything else unsupported.
    pub fn infer(data_type: &DataType) -> Option<FeatureKind> {
        use DataType::*;
        match data_type {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64
            | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Some(FeatureKind::Numerical),
            Utf8 | LargeUtf8 | Utf8View | Boolean | Dictionary(..) => Some(FeatureKind::Categorical),
            _ => None,
        }
    }
}

/// One feature as fixed by the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: FeatureKind,
    /// Interior bin edges (numerical): a value x falls in bin k = number of edges <= x.
    #[serde(default)]
    pub edges: Vec<f64>,
    /// Constraints the configuration declares for the feature (never part of a stored
    /// baseline: they are attached from the configuration each time).
    #[serde(skip)]
    pub declared: Option<Arc<Declared>>,
}

impl FeatureSpec {
    pub fn new(name: impl Into<String>, kind: FeatureKind, edges: Vec<f64>) -> FeatureSpec {
        FeatureSpec { name: name.into(), kind, edges, declared: None }
    }
}

/// Declared constraints of one feature: a valid range (numerical; values outside it count
/// towards `out_of_range_rate` instead of the reference's min/max) and, for categorical
/// features, allowed values, a pattern and length bounds (values breaking any of them count
/// towards `constraint_violation_rate`).
#[derive(Clone, Debug, Default)]
pub struct Declared {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub allowed: Option<std::collections::HashSet<String>>,
    /// Anchored: the whole value must match.
    pub pattern: Option<regex::Regex>,
    /// In characters.
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
}

impl PartialEq for Declared {
    fn eq(&self, other: &Declared) -> bool {
        self.min == other.min
            && self.max == other.max
            && self.allowed == other.allowed
            && self.pattern.as_ref().map(|r| r.as_str()) == other.pattern.as_ref().map(|r| r.as_str())
            && self.min_length == other.min_length
            && self.max_length == other.max_length
    }
}

impl Declared {
    /// Whether a numerical value is outside the declared range.
    pub fn out_of_range(&self, v: f64) -> bool {
        self.min.is_some_and(|lo| v < lo) || self.max.is_some_and(|hi| v > hi)
    }

    pub fn has_range(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }

    /// Whether the categorical constraints are declared at all.
    pub fn has_text_rules(&self) -> bool {
        self.allowed.is_some() || self.pattern.is_some() || self.min_length.is_some() || self.max_length.is_some()
    }

    /// Whether a categorical value breaks a declared constraint.
    pub fn violated_by(&self, v: &str) -> bool {
        if self.allowed.as_ref().is_some_and(|a| !a.contains(v)) {
            return true;
        }
        if self.min_length.is_some() || self.max_length.is_some() {
            let n = v.chars().count();
            if self.min_length.is_some_and(|m| n < m) || self.max_length.is_some_and(|m| n > m) {
                return true;
            }
        }
        self.pattern.as_ref().is_some_and(|p| !p.is_match(v))
    }
}

/// The features of one model, their bins and the sampling caps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileSpec {
    pub features: Vec<FeatureSpec>,
    pub bins: usize,
    pub max_samples: usize,
    pub max_categories: usize,
}

/// A profile could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("column \"{0}\" is missing")]
    MissingColumn(String),
    #[error("column \"{column}\" has type {found}, which cannot be read as a {kind} feature")]
    ColumnType { column: String, found: DataType, kind: &'static str },
}

/// Uniform sample of the finite values of one numerical feature. Two samples are equal when
/// they saw as many values and keep the same ones in the same order (the generator's state
/// and the sorted flag are bookkeeping, not content, and are not serialised).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Values offered to the sample (finite values seen).
    pub seen: u64,
    pub values: Vec<f64>,
    #[serde(skip)]
    sorted: bool,
    #[serde(skip)]
    rng: u64,
}

impl PartialEq for Sample {
    fn eq(&self, other: &Sample) -> bool {
        self.seen == other.seen && self.values == other.values
    }
}

impl Sample {
    pub fn from_sorted(seen: u64, values: Vec<f64>) -> Sample {
        Sample { seen, values, sorted: true, rng: 0 }
    }

    /// True while every value seen is kept.
    pub fn is_exact(&self) -> bool {
        self.seen == self.values.len() as u64
    }

    fn push(&mut self, v: f64, cap: usize) {
        self.seen += 1;
        self.sorted = false;
        if self.values.len() < cap {
            self.values.push(v);
        } else {
            let j = splitmix(&mut self.rng) % self.seen;
            if (j as usize) < cap {
                self.values[j as usize] = v;
            }
        }
    }

    /// The sample in ascending order (sorted once, then cached).
    pub fn sorted(&mut self) -> &[f64] {
        if !self.sorted {
            sort_f64(&mut self.values);
            self.sorted = true;
        }
        &self.values
    }

    fn merge(&mut self, other: &Sample, cap: usize) {
        if self.values.len() + other.values.len() <= cap && self.is_exact() && other.is_exact() {
            self.values.extend_from_slice(&other.values);
        } else {
            // A uniform sample of the union: how many of the `k` values come from each side
            // is hypergeometric (k draws without replacement from `seen` + `other.seen`
            // values), and each side gives that many of its own uniform sample, at random.
            let mut rng = self.seen.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ other.seen;
            let total = self.seen + other.seen;
            let k = (cap as u64).min(total);
            let (mut left_a, mut left) = (self.seen, total);
            let mut take_a = 0usize;
            for _ in 0..k {
                if splitmix(&mut rng) % left < left_a {
                    take_a += 1;
                    left_a -= 1;
                }
                left -= 1;
            }
            let (mut a, mut b) = (self.values.clone(), other.values.clone());
            shuffle(&mut a, &mut rng);
            shuffle(&mut b, &mut rng);
            // Each side keeps min(cap, seen) values, so it has enough to give.
            let take_a = take_a.min(a.len());
            let take_b = (k as usize - take_a).min(b.len());
            a.truncate(take_a);
            a.extend_from_slice(&b[..take_b]);
            self.values = a;
        }
        self.seen += other.seen;
        self.sorted = false;
    }
}

fn shuffle(v: &mut [f64], rng: &mut u64) {
    for i in (1..v.len()).rev() {
        let j = (splitmix(rng) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Sorts finite floats ascending: LSD radix sort (11-bit digits, all digit histograms taken in
/// the one pass that builds the order-preserving integer keys, passes whose digit is the same
/// for every key skipped) for large inputs, pdqsort below 4096 values.
pub fn sort_f64(values: &mut [f64]) {
    let n = values.len();
    if n < 4096 {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    // Order-preserving map f64 -> u64 (flip all bits of negatives, only the sign bit of the
    // rest), done in place: the values' own storage holds the keys while sorting.
    // 11-bit digits: six passes over 64 bits, histograms of 2048 counters (16 KiB, in L1).
    const BITS: usize = 11;
    const PASSES: usize = 64_usize.div_ceil(BITS);
    const MASK: u64 = (1 << BITS) - 1;
    let mut hist = [[0_usize; 1 << BITS]; PASSES];
    let keys: &mut [u64] = bytemuck_f64_as_u64(values);
    for k in keys.iter_mut() {
        let b = *k;
        *k = if b >> 63 == 1 { !b } else { b | (1 << 63) };
        for (p, h) in hist.iter_mut().enumerate() {
            h[((*k >> (BITS * p)) & MASK) as usize] += 1;
        }
    }
    // The ping-pong buffer is kept per thread up to 1 Mi values (8 MiB): a fresh one per call
    // would fault in and zero n·8 bytes of new pages every time a window closes.
    const KEEP: usize = 1 << 20;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if n <= KEEP {
        SCRATCH.with_borrow_mut(|buf| {
            buf.resize(n, 0);
            radix_passes(keys, &mut buf[..n], &mut hist, BITS, MASK);
        });
    } else {
        radix_passes(keys, &mut vec![0; n], &mut hist, BITS, MASK);
    }
    for k in keys.iter_mut() {
        let b = *k;
        *k = if b >> 63 == 1 { b & !(1 << 63) } else { !b };
    }
}

/// The scatter passes of [`sort_f64`]: skips digits every key shares; leaves the result in
/// `keys`.
fn radix_passes<const N: usize>(keys: &mut [u64], buf: &mut [u64], hist: &mut [[usize; N]], bits: usize, mask: u64) {
    let n = keys.len();
    let mut in_keys = true; // where the current order lives
    for (p, h) in hist.iter_mut().enumerate() {
        if h.contains(&n) {
            continue; // every key has the same digit: this pass would not move anything
        }
        let mut offset = 0;
        for c in h.iter_mut() {
            let count = *c;
            *c = offset;
            offset += count;
        }
        let shift = bits * p;
        let (src, dst): (&[u64], &mut [u64]) = if in_keys { (&*keys, &mut *buf) } else { (&*buf, &mut *keys) };
        for &k in src {
            let d = ((k >> shift) & mask) as usize;
            dst[h[d]] = k;
            h[d] += 1;
        }
        in_keys = !in_keys;
    }
    if !in_keys {
        keys.copy_from_slice(buf);
    }
}

/// Views floats as their bit patterns (same size and alignment; every bit pattern is a
/// valid u64), so the sort can work in place.
fn bytemuck_f64_as_u64(values: &mut [f64]) -> &mut [u64] {
    bytemuck::cast_slice_mut(values)
}

/// Summary of one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// Rows observed, including missing ones.
    pub rows: u64,
    /// Null values (and NaN, which is a missing value too).
    pub nulls: u64,
    /// ±inf.
    pub non_finite: u64,
    /// Values of the wrong JSON type (live events only; kept out of every other count but
    /// `rows`).
    #[serde(default)]
    pub type_errors: u64,
    /// Values breaking a declared constraint: outside the declared range (numerical) or
    /// not allowed, not matching or of the wrong length (categorical).
    #[serde(default)]
    pub violations: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub sum_sq: f64,
    /// Counts per bin over the spec's edges (numerical; empty when the spec has no edges).
    pub histogram: Vec<u64>,
    /// Category counts (categorical).
    pub categories: CategoryCounts,
    /// Values of a lower [`category_level`] are not tracked (see the module doc).
    #[serde(default)]
    pub category_level: u32,
    pub sample: Sample,
}

impl FeatureProfile {
    pub(crate) fn new(spec: &FeatureSpec) -> Self {
        FeatureProfile {
            rows: 0,
            nulls: 0,
            non_finite: 0,
            type_errors: 0,
            violations: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            sum_sq: 0.0,
            histogram: if spec.edges.is_empty() { Vec::new() } else { vec![0; spec.edges.len() + 1] },
            categories: CategoryCounts::default(),
            category_level: 0,
            sample: Sample { rng: 0x5EED_D41F_7A7C_0001, ..Sample::default() },
        }
    }

    /// Non-missing values: finite numbers or non-null categories.
    pub fn valid(&self) -> u64 {
        self.rows - self.nulls - self.non_finite - self.type_errors
    }

    /// Counts a value that arrived with the wrong type, which was observed as a null.
    pub fn retype_null_as_error(&mut self) {
        debug_assert!(self.nulls > 0);
        self.nulls = self.nulls.saturating_sub(1);
        self.type_errors += 1;
    }

    fn observe_numbers(&mut self, values: &Float64Array, spec: &FeatureSpec, caps: &ProfileSpec) {
        self.rows += values.len() as u64;
        let room = caps.max_samples.saturating_sub(self.sample.values.len());
        if values.null_count() == 0 && values.len() <= room {
            // Fast path (every check, and windows below the sample cap): one branch-light pass.
            let raw = values.values();
            let before = self.sample.values.len();
            self.sample.values.extend(raw.iter().copied().filter(|v| v.is_finite()));
            let kept = &self.sample.values[before..];
            let (mut lo, mut hi, mut sum, mut sum_sq) = (self.min, self.max, 0.0, 0.0);
            for &v in kept {
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v;
                sum_sq += v * v;
            }
            if !self.histogram.is_empty() {
                for &v in kept {
                    self.histogram[spec.edges.partition_point(|e| *e <= v)] += 1;
                }
            }
            (self.min, self.max) = (lo, hi);
            self.sum += sum;
            self.sum_sq += sum_sq;
            self.sample.seen += kept.len() as u64;
            self.sample.sorted = false;
            let missing = raw.len() - kept.len();
            if missing > 0 {
                let nan = raw.iter().filter(|v| v.is_nan()).count();
                self.nulls += nan as u64;
                self.non_finite += (missing - nan) as u64;
            }
            return;
        }
        self.nulls += values.null_count() as u64;
        for v in values.iter().flatten() {
            if v.is_nan() {
                self.nulls += 1;
            } else if v.is_infinite() {
                self.non_finite += 1;
            } else {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                self.sum += v;
                self.sum_sq += v * v;
                if !self.histogram.is_empty() {
                    self.histogram[spec.edges.partition_point(|e| *e <= v)] += 1;
                }
                self.sample.push(v, caps.max_samples);
            }
        }
    }

    fn observe_category(&mut self, value: Option<&str>, tracked: usize) {
        self.rows += 1;
        let Some(v) = value else {
            self.nulls += 1;
            return;
        };
        if let Some(c) = self.categories.get_mut(v) {
            *c += 1;
        } else if category_level(v) >= self.category_level && v != OTHER_CATEGORY {
            self.categories.insert(v.to_owned(), 1);
            self.track_at_most(tracked);
        } else {
            *self.categories.entry(OTHER_CATEGORY.to_owned()).or_insert(0) += 1;
        }
    }

    /// Raises the sampling level until at most `tracked` values are tracked.
    fn track_at_most(&mut self, tracked: usize) {
        while self.categories.len() - usize::from(self.categories.contains_key(OTHER_CATEGORY)) > tracked.max(1) {
            self.raise_level_to(self.category_level + 1);
        }
    }

    /// Stops tracking values below `level`: their counts go to `__other__`.
    fn raise_level_to(&mut self, level: u32) {
        if level <= self.category_level {
            return;
        }
        self.category_level = level;
        let mut dropped = 0;
        self.categories.retain(|k, v| {
            let keep = k == OTHER_CATEGORY || category_level(k) >= level;
            if !keep {
                dropped += *v;
            }
            keep
        });
        if dropped > 0 {
            *self.categories.entry(OTHER_CATEGORY.to_owned()).or_insert(0) += dropped;
        }
    }

    /// Keeps the `max` most frequent categories (ties by value) and counts the rest under
    /// `__other__`: what a comparison reads. Idempotent.
    pub fn cap_categories(&mut self, max: usize) {
        let other = self.categories.remove(OTHER_CATEGORY).unwrap_or(0);
        if self.categories.len() > max {
            let mut entries: Vec<(String, u64)> = self.categories.drain().collect();
            entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let rest: u64 = entries.drain(max..).map(|(_, v)| v).sum();
            self.categories.extend(entries);
            self.categories.insert(OTHER_CATEGORY.to_owned(), other + rest);
        } else if other > 0 {
            self.categories.insert(OTHER_CATEGORY.to_owned(), other);
        }
    }

    fn merge(&mut self, other: &FeatureProfile, caps: &ProfileSpec) {
        self.rows += other.rows;
        self.nulls += other.nulls;
        self.non_finite += other.non_finite;
        self.type_errors += other.type_errors;
        self.violations += other.violations;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        for (a, b) in self.histogram.iter_mut().zip(&other.histogram) {
            *a += b;
        }
        // Both sides at the higher sampling level, then counts add (see the module doc).
        let level = self.category_level.max(other.category_level);
        self.raise_level_to(level);
        for (k, v) in &other.categories {
            if k == OTHER_CATEGORY || category_level(k) < level {
                *self.categories.entry(OTHER_CATEGORY.to_owned()).or_insert(0) += v;
            } else {
                *self.categories.entry(k.clone()).or_insert(0) += v;
            }
        }
        self.track_at_most(caps.max_categories.saturating_mul(TRACK_FACTOR));
        self.sample.merge(&other.sample, caps.max_samples);
    }
}

/// Summaries of every feature of a spec, in spec order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub features: Vec<FeatureProfile>,
    /// Event-level quality counts (live windows only).
    #[serde(default)]
    pub events: EventQuality,
}

/// What a window learns about its events as a whole, beyond their feature values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventQuality {
    /// Events (in `rows`) that missed a required feature or carried a field the model does
    /// not know.
    pub schema_errors: u64,
    /// Repeated event ids (not in `rows`: a duplicate is dropped before the window).
    pub duplicates: u64,
    /// Sum over the events of (time the agent read it − event time), seconds.
    pub delay_seconds: f64,
}

impl EventQuality {
    fn merge(&mut self, other: &EventQuality) {
        self.schema_errors += other.schema_errors;
        self.duplicates += other.duplicates;
        self.delay_seconds += other.delay_seconds;
    }
}

impl Profile {
    pub fn new(spec: &ProfileSpec) -> Profile {
        Profile { features: spec.features.iter().map(FeatureProfile::new).collect(), events: EventQuality::default() }
    }

    /// Rows observed (the row count of any feature: every feature sees every row).
    pub fn rows(&self) -> u64 {
        self.features.first().map_or(0, |f| f.rows)
    }

    /// Adds a batch. Columns are found by name; numerical features accept any numeric
    /// column, categorical ones read strings, booleans and integers as text.
    pub fn observe(&mut self, spec: &ProfileSpec, batch: &RecordBatch) -> Result<(), ProfileError> {
        for (fspec, prof) in spec.features.iter().zip(&mut self.features) {
            let column =
                batch.column_by_name(&fspec.name).ok_or_else(|| ProfileError::MissingColumn(fspec.name.clone()))?;
            observe_column(prof, fspec, spec, column.as_ref())?;
        }
        Ok(())
    }

    /// Merges another profile of the same spec into this one.
    pub fn merge(&mut self, other: &Profile, spec: &ProfileSpec) {
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            a.merge(b, spec);
        }
        self.events.merge(&other.events);
    }
}

/// Observes one column into one feature profile.
pub fn observe_column(
    prof: &mut FeatureProfile,
    fspec: &FeatureSpec,
    spec: &ProfileSpec,
    column: &dyn Array,
) -> Result<(), ProfileError> {
    let type_error = || ProfileError::ColumnType {
        column: fspec.name.clone(),
        found: column.data_type().clone(),
        kind: fspec.kind.as_str(),
    };
    if column.data_type() == &DataType::Null {
        // A column with no value at all (CSV/JSON inference gives it the Null type).
        prof.rows += column.len() as u64;
        prof.nulls += column.len() as u64;
        return Ok(());
    }
    match fspec.kind {
        FeatureKind::Numerical => {
            if FeatureKind::infer(column.data_type()) != Some(FeatureKind::Numerical) {
                return Err(type_error());
            }
            let floats = cast(column, &DataType::Float64).map_err(|_| type_error())?;
            let floats: &Float64Array = floats.as_primitive();
            if let Some(d) = fspec.declared.as_deref().filter(|d| d.has_range()) {
                prof.violations += floats.iter().flatten().filter(|v| !v.is_nan() && d.out_of_range(*v)).count() as u64;
            }
            prof.observe_numbers(floats, fspec, spec);
        }
        FeatureKind::Categorical => {
            let strings = match column.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => None,
                _ => Some(cast(column, &DataType::Utf8).map_err(|_| type_error())?),
            };
            let column = strings.as_deref().unwrap_or(column);
            let cap = spec.max_categories.saturating_mul(TRACK_FACTOR);
            if let Some(d) = fspec.declared.as_deref().filter(|d| d.has_text_rules()) {
                let bad = |v: Option<&str>| v.is_some_and(|v| d.violated_by(v));
                prof.violations += match column.data_type() {
                    DataType::Utf8 => column.as_string::<i32>().iter().filter(|v| bad(*v)).count(),
                    DataType::LargeUtf8 => column.as_string::<i64>().iter().filter(|v| bad(*v)).count(),
                    DataType::Utf8View => column.as_string_view().iter().filter(|v| bad(*v)).count(),
                    _ => 0,
                } as u64;
            }
            match column.data_type() {
                DataType::Utf8 => column.as_string::<i32>().iter().for_each(|v| prof.observe_category(v, cap)),
                DataType::LargeUtf8 => column.as_string::<i64>().iter().for_each(|v| prof.observe_category(v, cap)),
                DataType::Utf8View => column.as_string_view().iter().for_each(|v| prof.observe_category(v, cap)),
                _ => return Err(type_error()),
            }
        }
    }
    Ok(())
}

/// Interior bin edges at the quantiles i/bins (i = 1 … bins−1) of a sorted sample, with
/// NumPy's default linear interpolation (`np.quantile(x, i/bins)`, bit for bit), duplicates
/// removed.
pub fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    if sorted.is_empty() || bins < 2 {
        return Vec::new();
    }
    let n = sorted.len();
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| {
            let q = i as f64 / bins as f64;
            let virtual_index = (n - 1) as f64 * q;
            if virtual_index >= (n - 1) as f64 {
                return sorted[n - 1];
            }
            let prev = virtual_index.floor();
            let gamma = virtual_index - prev;
            let (a, b) = (sorted[prev as usize], sorted[prev as usize + 1]);
            let diff = b - a;
            if gamma >= 0.5 { b - diff * (1.0 - gamma) } else { a + diff * gamma }
        })
        .collect();
    edges.dedup();
    edges
}

/// The reference side of a comparison: spec plus profile.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub spec: ProfileSpec,
    pub profile: Profile,
    /// Where it came from (data file or artefact).
    pub source: PathBuf,
}

#[cfg(test)]
impl ProfileSpec {
    /// One numerical feature `x`, no bin edges (for tests).
    pub(crate) fn single_numerical(max_samples: usize) -> ProfileSpec {
        ProfileSpec {
            features: vec![FeatureSpec::new("x", FeatureKind::Numerical, vec![])],
            bins: 10,
            max_samples,
            max_categories: 10,
        }
    }
}

#[cfg(test)]
impl Profile {
    /// The profile of `values` as the column `x` of one batch (for tests).
    pub(crate) fn of_numbers(spec: &ProfileSpec, values: &[f64]) -> Profile {
        let schema =
            Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new("x", DataType::Float64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(values.to_vec()))]).unwrap();
        let mut p = Profile::new(spec);
        p.observe(spec, &batch).unwrap();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merged reservoirs are a uniform sample of the union: as many values from each side as
    /// a draw without replacement gives (hypergeometric mean and variance), and within each
    /// side every position equally likely (chi-square over deciles).
    #[test]
    fn a_merged_reservoir_is_a_uniform_sample_of_the_union() {
        let cap = 100;
        let (mut deviation, mut variance) = (0.0, 0.0);
        let mut deciles = [[0u64; 10]; 2];
        for t in 0..3000u64 {
            let (n1, n2) = (150 + t % 97, 1_200 + (t % 89) * 7);
            let mut a = Sample { rng: t, ..Sample::default() };
            let mut b = Sample { rng: t ^ 0xABCD, ..Sample::default() };
            for i in 0..n1 {
                a.push(i as f64, cap);
            }
            for i in 0..n2 {
                b.push(1e9 + i as f64, cap);
            }
            let mut merged = a.clone();
            merged.merge(&b, cap);
            assert_eq!((merged.values.len(), merged.seen), (cap, n1 + n2));
            let from_a = merged.values.iter().filter(|&&v| v < 1e9).count() as f64;
            let (n, k, p) = ((n1 + n2) as f64, cap as f64, n1 as f64 / (n1 + n2) as f64);
            deviation += from_a - k * p;
            variance += k * p * (1.0 - p) * (n - k) / (n - 1.0);
            for &v in &merged.values {
                let (side, i, n) = if v < 1e9 { (0, v, n1) } else { (1, v - 1e9, n2) };
                deciles[side][(i * 10.0 / n as f64) as usize] += 1;
            }
        }
        let z = deviation / variance.sqrt();
        assert!(z.abs() < 4.0, "values taken from the smaller side: z = {z:.2}");
        for side in deciles {
            let total: u64 = side.iter().sum();
            let expected = total as f64 / 10.0;
            let chi2: f64 = side.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
            // The 0.999 quantile of chi-square with 9 degrees of freedom.
            assert!(chi2 < 27.88, "positions within a side are not uniform: {side:?}, chi2 = {chi2:.1}");
        }
    }

    #[test]
    fn radix_sort_orders_negative_zero_and_large_inputs() {
        let mut v: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 10_007) as f64 - 5000.5).collect();
        v.push(-0.0);
        v.push(f64::MAX);
        v.push(f64::MIN);
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_f64(&mut v);
        assert_eq!(v, expected);
    }

    #[test]
    fn quantile_edges_follow_numpy_linear() {
        // np.quantile([1,2,3,4], [0.25, 0.5, 0.75]) == [1.75, 2.5, 3.25]
        assert_eq!(quantile_edges(&[1.0, 2.0, 3.0, 4.0], 4), vec![1.75, 2.5, 3.25]);
        assert_eq!(quantile_edges(&[5.0; 10], 10), vec![5.0]);
    }
}
