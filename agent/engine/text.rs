//! Small text helpers shared by every renderer and by error messages: numbers for people,
//! cut strings, RFC 3339 times and "did you mean" suggestions.

/// A number for people: 4 decimals, or scientific when tiny or huge.
pub fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) { format!("{x:.3e}") } else { format!("{x:.4}") }
}

/// At most `width` characters, the last one `…` when cut.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (word.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Epoch milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A number for prose and labels: [`fmt_num`] without trailing zeros (`0.25`, `3`, `1.235e-7`).
pub fn fmt_compact(x: f64) -> String {
    let s = fmt_num(x);
    if s.contains('e') { s } else { s.trim_end_matches('0').trim_end_matches('.').to_string() }
}
