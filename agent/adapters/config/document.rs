//! Reads a TOML document into its serde structs and reports what does not fit, each at its
//! file:line:col, all in one run.
//!
//! Unknown keys are found by the structs themselves (each has `deny_unknown_fields`): serde
//! names the first unknown key and the keys its table takes; the finding is reported with a
//! "did you mean", the entry is blanked out (same length, newlines kept, so positions do not
//! move) and the document read again, until no unknown key is left. Of the other errors (a
//! wrong type, a missing key) the first is reported; the search for unknown keys goes on past
//! it. No list of keys is kept by hand.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{Reporter, suggestion};
use crate::engine::stats::TestKind;

/// At most this many readings of one document (each finds one unknown key).
const MAX_READINGS: usize = 200;

/// Deserializes `text` (whose parsed form is `table`) as `T`, reporting every unknown key and
/// the first other error. `root` names the top level in messages (`""`: "at the top level").
/// `Some` only when the document, without its unknown keys, is a valid `T`.
pub(super) fn read<T: DeserializeOwned>(r: &mut Reporter, table: &DeTable, text: &str, root: &str) -> Option<T> {
    check_threshold_names(r, table);
    let mut cleaned = text.to_string();
    let mut failed = false;
    for _ in 0..MAX_READINGS {
        let e = match toml::from_str::<T>(&cleaned) {
            Ok(value) => return (!failed).then_some(value),
            Err(e) => e,
        };
        let span = e.span().unwrap_or(0..0);
        let found = entry_at(table, text, &span, &[]);
        match (unknown_field(e.message()), &found) {
            (Some((name, expected)), Some(entry)) => {
                let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
                let table = entry.table_label(root);
                if name == "password" && table == "[notify.smtp]" {
                    r.at(entry.key.clone(), "passwords never go in the configuration: name an environment variable (`password_env`) or a file (`password_file`)");
                } else {
                    let where_ = if table.is_empty() { "at the top level".to_string() } else { format!("in {table}") };
                    r.at(entry.key.clone(), format!("unknown key \"{name}\" {where_}{}", suggestion(&name, &expected)));
                }
                blank_out(&mut cleaned, entry.key.start..entry.value.end);
            }
            _ => {
                if !failed {
                    let message = type_message(e.message());
                    match &found {
                        Some(entry) => r.at(span, format!("{}: {message}", entry.dotted())),
                        None => r.at(span, message),
                    }
                    failed = true;
                }
                // Read on without the entry at fault, to find the unknown keys after it; an
                // error that is not about one value (a missing key) ends the search.
                match found.filter(|entry| entry.leaf) {
                    Some(entry) => blank_out(&mut cleaned, entry.key.start..entry.value.end),
                    None => return None,
                }
            }
        }
    }
    None
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`", or
/// "there are no fields"): the field and the fields expected.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.lines().next()?.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((name.to_string(), expected))
}

/// One `key = value` entry of the document, with the tables around it.
struct Entry {
    /// From the top: each key, and whether its value is an array of tables (`[[...]]`) or an
    /// inline table (`{ ... }`).
    path: Vec<(String, Container)>,
    key: Range<usize>,
    value: Range<usize>,
    /// The value is neither a table nor an array of tables.
    leaf: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Container {
    Table,
    Array,
    Inline,
}

impl Entry {
    /// The key's dotted name (`model.bins`).
    fn dotted(&self) -> String {
        self.path.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(".")
    }

    /// The table holding the entry as the file writes it: `[[model.rule]]`, `[notify.smtp]`,
    /// an inline table's key (`learn`), or `root` at the top.
    fn table_label(&self, root: &str) -> String {
        let parents = &self.path[..self.path.len().saturating_sub(1)];
        let Some((last, container)) = parents.last() else {
            return root.to_string();
        };
        let names: Vec<&str> = parents.iter().map(|(k, _)| k.as_str()).collect();
        match container {
            Container::Inline => last.clone(),
            Container::Array => format!("[[{}]]", names.join(".")),
            Container::Table => format!("[{}]", names.join(".")),
        }
    }
}

/// The innermost entry whose key is at `span`, or whose value covers it.
fn entry_at(table: &DeTable, text: &str, span: &Range<usize>, path: &[(String, Container)]) -> Option<Entry> {
    for (key, value) in table {
        let key_span = key.span();
        let mut inner_path = path.to_vec();
        let name = key.get_ref().to_string();
        let container = match value.get_ref() {
            DeValue::Array(items) if items.iter().all(|v| matches!(v.get_ref(), DeValue::Table(_))) => Container::Array,
            _ if text.as_bytes().get(value.span().start) == Some(&b'{') => Container::Inline,
            _ => Container::Table,
        };
        inner_path.push((name, container));
        // Array-of-tables spans cover only their headers, so look inside tables first.
        let inner = match value.get_ref() {
            DeValue::Table(t) => entry_at(t, text, span, &inner_path),
            DeValue::Array(items) => items.iter().find_map(|v| match v.get_ref() {
                DeValue::Table(t) => entry_at(t, text, span, &inner_path),
                _ => None,
            }),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        let vspan = value.span();
        let at_key = key_span.start <= span.start && span.end <= key_span.end && span.start < span.end;
        if at_key || (vspan.start <= span.start && span.end <= vspan.end) {
            let leaf = !matches!(value.get_ref(), DeValue::Table(_))
                && !matches!(value.get_ref(), DeValue::Array(items) if items.iter().any(|v| matches!(v.get_ref(), DeValue::Table(_))));
            return Some(Entry { path: inner_path, key: key_span, value: vspan, leaf });
        }
    }
    None
}

/// Unknown test names in any `thresholds` table (a map, so serde takes every key).
fn check_threshold_names(r: &mut Reporter, table: &DeTable) {
    for (key, value) in table {
        match value.get_ref() {
            DeValue::Table(t) if &**key.get_ref() == "thresholds" => {
                let tests: Vec<&str> = TestKind::ALL.iter().map(|t| t.name()).collect();
                for (k, _) in t {
                    if TestKind::parse(k.get_ref()).is_none() {
                        let message = format!(
                            "unknown test \"{}\" in thresholds{}",
                            &**k.get_ref(),
                            suggestion(k.get_ref(), &tests)
                        );
                        r.at(k.span(), message);
                    }
                }
            }
            DeValue::Table(t) => check_threshold_names(r, t),
            DeValue::Array(items) => {
                for v in items {
                    if let DeValue::Table(t) = v.get_ref() {
                        check_threshold_names(r, t);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Replaces a byte range with spaces, keeping newlines, so positions do not move.
pub(super) fn blank_out(text: &mut String, range: Range<usize>) {
    let (start, end) = (range.start.min(text.len()), range.end.min(text.len()));
    if !(text.is_char_boundary(start) && text.is_char_boundary(end)) {
        return;
    }
    let blank: String = text[start..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
    // Multi-byte characters become one space each: pad to keep later byte offsets.
    let pad = (end - start) - blank.len();
    text.replace_range(start..end, &(blank + &" ".repeat(pad)));
}

/// serde's type messages in the words of a configuration file.
fn type_message(message: &str) -> String {
    first_line(message)
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected a list such as [\"auto\"]")
}

pub(super) fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn findings(text: &str) -> Vec<String> {
        let (_, found) = super::super::parse_partial(Path::new("t.toml"), text);
        found.iter().map(|d| format!("{}:{}: {}", d.line, d.col, d.message)).collect()
    }

    #[test]
    fn unknown_keys_after_a_wrong_type_are_still_found() {
        let text = r#"
[[model]]
id = "m"
baseline = "b.parquet"
bins = "ten"
drift_shar = 0.5

[[model.feature]]
name = "age"
tpye = "numerical"

[model.window]
size = "1m"
idle_timout = "5s"

[notify]
from = "a@b.c"
[notify.smtp]
host = "localhost"
password = "hunter2"
"#;
        assert_eq!(
            findings(text),
            vec![
                "5:8: model.bins: invalid type: string \"ten\", expected an integer",
                "6:1: unknown key \"drift_shar\" in [[model]]; did you mean \"drift_share\"?",
                "10:1: unknown key \"tpye\" in [[model.feature]]; did you mean \"type\"?",
                "14:1: unknown key \"idle_timout\" in [model.window]; did you mean \"idle_timeout\"?",
                "20:1: passwords never go in the configuration: name an environment variable (`password_env`) or a file (`password_file`)",
            ]
        );
    }

    #[test]
    fn an_unknown_key_of_an_inline_table_is_named_by_its_key() {
        let text = r#"
[[model]]
id = "m"
baseline = "b.parquet"
[[model.rule]]
name = "r"
quality = "null_rate"
learn = { chunks = 5, sigma = 3 }
"#;
        let found = findings(text);
        assert!(
            found.contains(&"8:23: unknown key \"sigma\" in learn; did you mean \"sigmas\"?".to_string()),
            "{found:?}"
        );
    }
}
