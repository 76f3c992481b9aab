//! A validating JSON scanner that keeps only the watched fields of an event.
//!
//! [`scan`] walks one payload byte by byte: it checks the whole text against RFC 8259 (valid
//! UTF-8 throughout, escapes, control characters, number grammar, nothing after the
//! top-level object), looks each key up in a trie of watched paths
//! ([`Node`]), stores watched values as [`Cell`]s and skips everything else without building
//! it. Numbers are parsed with the standard library's correctly rounded parser, so a value
//! reads the same here as in `driftwatch check`. When a payload is rejected, serde_json
//! parses it again for its precise message.
//!
//! `serde_reference::scan_serde` (test code) does the same through serde_json; it is the reference the scanner is
//! property-tested against: on UTF-8 payloads the two accept the same ones and agree on
//! every cell. Two departures: serde_json lets invalid UTF-8 pass inside values it skips
//! (the scanner rejects any payload that is not UTF-8), and serde_json refuses a number
//! beyond f64's range (`1e400`) while the scanner reads it as ±infinity, so that one such
//! value costs its feature a non-finite value rather than the event its place.

use std::collections::HashMap;

/// A JSON value at a watched path, as the event gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cell {
    Missing,
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Text, stored in the decoder's `texts[slot]`.
    Text,
    /// An object or array.
    Complex,
}

pub(crate) enum Entry {
    Slot(usize),
    Object(Node),
}

/// One level of the trie of watched paths.
#[derive(Default)]
pub(crate) struct Node {
    /// Children in the order they were added.
    keys: Vec<Box<[u8]>>,
    entries: Vec<Entry>,
    index: HashMap<Box<[u8]>, usize, foldhash::fast::FixedState>,
    /// Learned key order: the child that followed child `i` last time (`first` for the first
    /// one), so that a producer writing keys in a stable order costs one comparison per key.
    next: Vec<usize>,
    first: usize,
    /// Set to `Cell::Bool(true)` when the object has a key that is not watched.
    unknown: Option<usize>,
    /// Set to `Cell::Bool(true)` when this path holds something other than an object or
    /// null (`"features": [1, 2]`).
    shape: Option<usize>,
}

/// A field path the trie cannot watch (the configuration names one key both as a value
/// and as an object).
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("empty field path")]
    Empty,
    #[error("\"{0}\" is used both as a value and as an object")]
    ValueAndObject(String),
    #[error("\"{0}\" holds no watched fields")]
    NotWatched(String),
}

/// Why a payload is not an event (the `not_json` rejection's message).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("not JSON: invalid UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("not JSON: {0}")]
    Syntax(serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("not a JSON object the decoder can read")]
    Unreadable,
}

impl Node {
    /// Adds a path; returns its slot (shared with an identical path added before).
    pub(crate) fn insert(&mut self, path: &[String], next_slot: &mut usize) -> Result<usize, PathError> {
        let (first, rest) = path.split_first().ok_or(PathError::Empty)?;
        let i = match self.index.get(first.as_bytes()) {
            Some(&i) => i,
            None => {
                let entry = if rest.is_empty() {
                    *next_slot += 1;
                    Entry::Slot(*next_slot - 1)
                } else {
                    Entry::Object(Node::default())
                };
                self.keys.push(first.as_bytes().into());
                self.entries.push(entry);
                self.next.push(self.keys.len());
                self.index.insert(first.as_bytes().into(), self.keys.len() - 1);
                self.keys.len() - 1
            }
        };
        match (&mut self.entries[i], rest.is_empty()) {
            (Entry::Slot(s), true) => Ok(*s),
            (Entry::Object(n), false) => n.insert(rest, next_slot),
            _ => Err(PathError::ValueAndObject(first.clone())),
        }
    }

    /// Watches the object at `path` (already holding watched fields) for keys that are not
    /// watched; returns the slot that says whether there was one.
    pub(crate) fn watch_unknown(&mut self, path: &[String], next_slot: &mut usize) -> Result<usize, PathError> {
        Ok(*self.flag_slot(path, next_slot, |n| &mut n.unknown)?)
    }

    /// Watches the object at `path` (already holding watched fields) for being of another
    /// type than an object or null; returns the slot that says so.
    pub(crate) fn watch_shape(&mut self, path: &[String], next_slot: &mut usize) -> Result<usize, PathError> {
        Ok(*self.flag_slot(path, next_slot, |n| &mut n.shape)?)
    }

    /// The flag slot `which` of the object at `path`, given a new slot number if it has none.
    fn flag_slot<'a>(
        &'a mut self,
        path: &[String],
        next_slot: &mut usize,
        which: impl FnOnce(&'a mut Node) -> &'a mut Option<usize>,
    ) -> Result<&'a mut usize, PathError> {
        let mut node = self;
        for key in path {
            match node.index.get(key.as_bytes()).map(|&i| &mut node.entries[i]) {
                Some(Entry::Object(child)) => node = child,
                _ => return Err(PathError::NotWatched(key.clone())),
            }
        }
        Ok(which(node).get_or_insert_with(|| {
            *next_slot += 1;
            *next_slot - 1
        }))
    }

    /// The entry for a key (the serde_json reference's lookup).
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.index.get(key.as_bytes()).map(|&i| &self.entries[i])
    }

    /// Finds a key's child, trying first the one that followed `prev` last time.
    #[inline]
    fn find(&mut self, key: &[u8], prev: Option<usize>) -> Option<usize> {
        let guess = prev.map_or(self.first, |p| self.next[p]);
        if self.keys.get(guess).is_some_and(|k| **k == *key) {
            return Some(guess);
        }
        let found = *self.index.get(key)?;
        match prev {
            Some(p) => self.next[p] = found,
            None => self.first = found,
        }
        Some(found)
    }
}

/// Scans one payload into `cells` (reset first) and `texts`; on failure, says why.
pub(crate) fn scan(payload: &[u8], root: &mut Node, cells: &mut [Cell], texts: &mut [String]) -> Result<(), ScanError> {
    cells.fill(Cell::Missing);
    // RFC 8259 §8.1: JSON exchanged between systems is UTF-8. Checked once, up front, for the
    // whole payload (serde_json checks only the strings it reads).
    if let Err(e) = std::str::from_utf8(payload) {
        return Err(ScanError::Utf8(e.valid_up_to()));
    }
    let mut s = Scanner { b: payload, i: 0 };
    let ok = s.ws() && s.peek() == Some(b'{') && s.object(root, cells, texts) && s.ws() && s.i == payload.len();
    if ok {
        return Ok(());
    }
    // The rare slow path: let serde_json say precisely what is wrong.
    Err(match serde_json::from_slice::<serde_json::Value>(payload) {
        Err(e) => ScanError::Syntax(e),
        Ok(v) if !v.is_object() => ScanError::NotObject,
        Ok(_) => ScanError::Unreadable,
    })
}

/// A parsed number as two plain words (returned in registers: an enum return here cost a
/// store-forwarding stall per number).
#[derive(Clone, Copy)]
struct Number {
    float: bool,
    bits: u64,
}

impl Number {
    fn int(v: i64) -> Number {
        Number { float: false, bits: v as u64 }
    }
    fn float(v: f64) -> Number {
        Number { float: true, bits: v.to_bits() }
    }
    fn cell(self) -> Cell {
        if self.float { Cell::Float(f64::from_bits(self.bits)) } else { Cell::Int(self.bits as i64) }
    }
}

/// Powers of ten that are exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips whitespace; always true (so it chains with `&&`).
    #[inline]
    fn ws(&mut self) -> bool {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
        true
    }

    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// An object at `self.i` (which is `{`): watched keys per `node`, the rest skipped.
    /// Recursion follows the watched paths only, so its depth is that of the configuration.
    fn object(&mut self, node: &mut Node, cells: &mut [Cell], texts: &mut [String]) -> bool {
        self.i += 1;
        self.ws();
        if self.eat(b'}') {
            return true;
        }
        let mut key_buf = String::new();
        let mut prev = None;
        loop {
            if !self.eat(b'"') {
                return false;
            }
            let Some((start, end, escaped)) = self.string_body() else {
                return false;
            };
            let key: &[u8] = if escaped {
                key_buf.clear();
                if !unescape(&self.b[start..end], &mut key_buf) {
                    return false;
                }
                key_buf.as_bytes()
            } else {
                &self.b[start..end]
            };
            let found = node.find(key, prev);
            if found.is_some() {
                prev = found;
            }
            let entry = found.map(|i| &mut node.entries[i]);
            self.ws();
            if !self.eat(b':') {
                return false;
            }
            self.ws();
            let ok = match entry {
                None => {
                    if let Some(slot) = node.unknown {
                        cells[slot] = Cell::Bool(true);
                    }
                    self.skip_value()
                }
                Some(Entry::Slot(slot)) => {
                    let slot = *slot;
                    self.cell(slot, cells, texts)
                }
                Some(Entry::Object(child)) => match self.peek() {
                    Some(b'{') => self.object(child, cells, texts),
                    Some(b'n') if self.literal(b"null") => true,
                    // Not an object: its fields are missing, and the event's shape is wrong
                    // (a schema error where the decoder watches it). serde_json still reads
                    // a scalar in full, so its string escapes must be valid.
                    other => {
                        if let Some(slot) = child.shape {
                            cells[slot] = Cell::Bool(true);
                        }
                        match other {
                            Some(b'-' | b'0'..=b'9') => self.number().is_some(),
                            Some(b'"') => {
                                self.i += 1;
                                key_buf.clear();
                                self.string_body()
                                    .is_some_and(|(a, b, esc)| !esc || unescape(&self.b[a..b], &mut key_buf))
                            }
                            _ => self.skip_value(),
                        }
                    }
                },
            };
            if !ok {
                return false;
            }
            self.ws();
            if self.eat(b',') {
                self.ws();
                continue;
            }
            if self.eat(b'}') {
                return true;
            }
            return false;
        }
    }

    /// A watched value.
    fn cell(&mut self, slot: usize, cells: &mut [Cell], texts: &mut [String]) -> bool {
        let cell = match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let Some((start, end, escaped)) = self.string_body() else {
                    return false;
                };
                let text = &mut texts[slot];
                text.clear();
                if escaped {
                    if !unescape(&self.b[start..end], text) {
                        return false;
                    }
                } else {
                    text.push_str(std::str::from_utf8(&self.b[start..end]).unwrap_or(""));
                }
                Cell::Text
            }
            // A number beyond f64's range (`1e400`, a 400-digit integer) is valid JSON: it
            // reads as ±infinity, a non-finite value of its feature, and costs the event
            // nothing else (serde_json would refuse the whole payload).
            Some(b'-' | b'0'..=b'9') => match self.number() {
                Some(n) => n.cell(),
                None => return false,
            },
            Some(b't') if self.literal(b"true") => Cell::Bool(true),
            Some(b'f') if self.literal(b"false") => Cell::Bool(false),
            Some(b'n') if self.literal(b"null") => Cell::Null,
            Some(b'{' | b'[') => {
                if !self.skip_value() {
                    return false;
                }
                Cell::Complex
            }
            _ => return false,
        };
        cells[slot] = cell;
        true
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// After an opening quote: finds the closing one. Returns the body's range and whether
    /// it holds escapes, having checked escapes and control characters (UTF-8 was checked
    /// for the whole payload).
    fn string_body(&mut self) -> Option<(usize, usize, bool)> {
        let start = self.i;
        let mut escaped = false;
        loop {
            let c = *self.b.get(self.i)?;
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match *self.b.get(self.i)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let end = self.i;
        self.i += 1;
        Some((start, end, escaped))
    }

    /// A number per the JSON grammar, as serde_json reads it: integers that fit i64 (or u64
    /// below 2^63) stay integers, `-0` and everything else is a correctly rounded f64
    /// (infinite when out of range; the caller decides whether that is an error).
    fn number(&mut self) -> Option<Number> {
        let start = self.i;
        let neg = self.eat(b'-');
        // Significant digits (up to 19) and the count of those after the point.
        let (mut mantissa, mut digits, mut fraction) = (0u64, 0u32, 0i32);
        let mut digit = |c: u8, after_point: bool| {
            if digits > 0 || c != b'0' {
                digits += 1;
                if digits <= 19 {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    fraction += i32::from(after_point);
                }
            } else {
                fraction += i32::from(after_point);
            }
        };
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    digit(c, false);
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            while let Some(c @ b'0'..=b'9') = self.peek() {
                digit(c, true);
                self.i += 1;
            }
        }
        let mut exponent = 0i32;
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.i += 1;
            let negative = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            while let Some(c @ b'0'..=b'9') = self.peek() {
                exponent = exponent.saturating_mul(10).saturating_add(i32::from(c - b'0'));
                self.i += 1;
            }
            if negative {
                exponent = -exponent;
            }
        }
        if integer && digits <= 18 {
            // Fits i64 whatever the sign; serde_json reads "-0" as a float.
            return Some(if neg && mantissa == 0 {
                Number::float(-0.0)
            } else if neg {
                Number::int(-(mantissa as i64))
            } else {
                Number::int(mantissa as i64)
            });
        }
        // Clinger's fast path: an exact mantissa below 2^53 times an exact power of ten is
        // correctly rounded by one multiplication or division.
        let scale = exponent.saturating_sub(fraction);
        if !integer && digits <= 15 && (-22..=22).contains(&scale) {
            let m = mantissa as f64;
            let v = if scale >= 0 { m * POW10[scale as usize] } else { m / POW10[(-scale) as usize] };
            return Some(Number::float(if neg { -v } else { v }));
        }
        // ASCII by construction.
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        if integer {
            if neg {
                if let Ok(v) = text.parse::<i64>() {
                    return Some(Number::int(v));
                }
            } else if let Ok(v) = text.parse::<u64>() {
                return Some(i64::try_from(v).map_or(Number::float(v as f64), Number::int));
            }
        }
        text.parse().ok().map(Number::float)
    }

    /// Skips any value, validating it. Iterative, with an explicit stack of open brackets,
    /// so that no nesting depth can exhaust the thread's stack (serde_json skips the same way).
    fn skip_value(&mut self) -> bool {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value.
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    if self.string_body().is_none() {
                        return false;
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    if self.number().is_none() {
                        return false;
                    }
                }
                Some(b't') if self.literal(b"true") => {}
                Some(b'f') if self.literal(b"false") => {}
                Some(b'n') if self.literal(b"null") => {}
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if !self.eat(b']') {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if !self.eat(b'}') {
                        open.push(b'}');
                        if !self.key() {
                            return false;
                        }
                        continue;
                    }
                }
                _ => return false,
            }
            // After a value: close brackets, or go on to the next element.
            loop {
                let Some(&close) = open.last() else {
                    return true;
                };
                self.ws();
                if self.eat(b',') {
                    self.ws();
                    if close == b'}' && !self.key() {
                        return false;
                    }
                    break;
                }
                if !self.eat(close) {
                    return false;
                }
                open.pop();
            }
        }
    }

    /// `"key" :` inside an object being skipped.
    fn key(&mut self) -> bool {
        if !self.eat(b'"') || self.string_body().is_none() {
            return false;
        }
        self.ws();
        if !self.eat(b':') {
            return false;
        }
        self.ws();
        true
    }
}

/// Decodes a string body with escapes into `out`; false on a lone surrogate.
fn unescape(body: &[u8], out: &mut String) -> bool {
    // The body was validated by `string_body`: well-formed escapes, valid UTF-8.
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let mut chars = text.char_indices();
    while let Some((_, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((i, e)) = chars.next() else {
            return false;
        };
        match e {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex = |at: usize| u32::from_str_radix(text.get(at..at + 4).unwrap_or("x"), 16).ok();
                let Some(hi) = hex(i + 1) else {
                    return false;
                };
                for _ in 0..4 {
                    chars.next();
                }
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low one.
                    let rest = &text[i + 5..];
                    let Some(lo) = rest.strip_prefix("\\u").and_then(|_| hex(i + 7)) else {
                        return false;
                    };
                    if !(0xDC00..0xE000).contains(&lo) {
                        return false;
                    }
                    for _ in 0..6 {
                        chars.next();
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return false;
                } else {
                    hi
                };
                match char::from_u32(code) {
                    Some(ch) => out.push(ch),
                    None => return false,
                }
            }
            _ => return false,
        }
    }
    true
}

/// The same extraction through serde_json: the reference [`scan`] is property-tested
/// against (test code only).
#[cfg(test)]
mod serde_reference {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    use super::{Cell, Entry, Node};

    /// The same extraction through serde_json: the reference for [`scan`].
    pub(super) fn scan_serde(
        payload: &[u8],
        root: &Node,
        cells: &mut [Cell],
        texts: &mut [String],
    ) -> Result<(), String> {
        cells.fill(Cell::Missing);
        let mut de = serde_json::Deserializer::from_slice(payload);
        RowSeed { node: root, cells, texts }.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| e.to_string())
    }

    /// A key, borrowed from the payload unless it holds escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> de::Deserialize<'de> for Key<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string key")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// Walks one object, storing watched values and skipping the rest.
    struct RowSeed<'a> {
        node: &'a Node,
        cells: &'a mut [Cell],
        texts: &'a mut [String],
    }

    impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for RowSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(Key(key)) = map.next_key::<Key>()? {
                match self.node.get(key.as_ref()) {
                    None => {
                        if let Some(slot) = self.node.unknown {
                            self.cells[slot] = Cell::Bool(true);
                        }
                        map.next_value::<IgnoredAny>()?;
                    }
                    Some(Entry::Slot(slot)) => {
                        let cell = map.next_value_seed(CellSeed { text: &mut self.texts[*slot] })?;
                        self.cells[*slot] = cell;
                    }
                    Some(Entry::Object(node)) => {
                        map.next_value_seed(NestedSeed { node, cells: self.cells, texts: self.texts })?;
                    }
                }
            }
            Ok(())
        }
    }

    /// A watched object that may also be null or of another type (then its fields are missing).
    struct NestedSeed<'a> {
        node: &'a Node,
        cells: &'a mut [Cell],
        texts: &'a mut [String],
    }

    impl<'de> DeserializeSeed<'de> for NestedSeed<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl NestedSeed<'_> {
        fn misshapen(self) {
            if let Some(slot) = self.node.shape {
                self.cells[slot] = Cell::Bool(true);
            }
        }
    }

    impl<'de> Visitor<'de> for NestedSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            RowSeed { node: self.node, cells: self.cells, texts: self.texts }.visit_map(map)
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.misshapen();
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.misshapen();
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.misshapen();
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.misshapen();
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.misshapen();
            Ok(())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            self.misshapen();
            Ok(())
        }
    }

    /// One watched value.
    struct CellSeed<'a> {
        text: &'a mut String,
    }

    impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
        type Value = Cell;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cell, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for CellSeed<'_> {
        type Value = Cell;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
            Ok(Cell::Null)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
            Ok(Cell::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
            Ok(Cell::Int(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
            Ok(i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
            Ok(Cell::Float(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
            self.text.clear();
            self.text.push_str(v);
            Ok(Cell::Text)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Cell::Complex)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Cell::Complex)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::serde_reference::scan_serde;
    use super::*;
    use proptest::prelude::*;

    fn trie() -> (Node, usize) {
        let mut root = Node::default();
        let mut slots = 0;
        for path in ["model_id", "timestamp", "features.a", "features.b", "features.c\u{e9}", "x"] {
            let segments: Vec<String> = path.split('.').map(String::from).collect();
            root.insert(&segments, &mut slots).unwrap();
        }
        root.watch_shape(&["features".to_string()], &mut slots).unwrap();
        (root, slots)
    }

    /// Both scanners on one payload: same verdict, same cells, same texts.
    fn agree(payload: &[u8]) -> Result<(), TestCaseError> {
        let (root, n) = trie();
        let (mut c1, mut t1) = (vec![Cell::Missing; n], vec![String::new(); n]);
        let (mut c2, mut t2) = (vec![Cell::Missing; n], vec![String::new(); n]);
        let mut root = root;
        let fast = scan(payload, &mut root, &mut c1, &mut t1).is_ok();
        if std::str::from_utf8(payload).is_err() {
            prop_assert!(!fast, "accepted a payload that is not UTF-8");
            return Ok(());
        }
        let slow = match scan_serde(payload, &root, &mut c2, &mut t2) {
            // The scanner reads such numbers as ±infinity (see the module doc).
            Err(e) if e.contains("number out of range") => return Ok(()),
            r => r.is_ok(),
        };
        prop_assert_eq!(fast, slow, "verdicts differ on {:?}", String::from_utf8_lossy(payload));
        if fast {
            for i in 0..n {
                match (c1[i], c2[i]) {
                    (Cell::Float(a), Cell::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                    (a, b) => prop_assert_eq!(a, b),
                }
                if c1[i] == Cell::Text {
                    prop_assert_eq!(&t1[i], &t2[i]);
                }
            }
        }
        Ok(())
    }

    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            any::<u64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| format!("{v:e}")),
            any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| v.to_string()),
            "[0-9]{1,30}(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?".prop_map(String::from),
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just(r#""\ud83d\ude00 \u00e9\n\"""#.to_string()),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["a", "b", "c\u{e9}", "c\\u00e9", "x", "features", "model_id", "zz"]),
                        inner
                    ),
                    0..5
                )
                .prop_map(|v| format!(
                    "{{{}}}",
                    v.iter().map(|(k, x)| format!("\"{k}\": {x}")).collect::<Vec<_>>().join(" , ")
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_scanner_agrees_with_serde_json_on_valid_json(fields in prop::collection::vec((prop::sample::select(vec!["model_id", "timestamp", "features", "x", "y", "a"]), json_value()), 0..6)) {
            let body = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",");
            agree(format!("{{{body}}}").as_bytes())?;
        }

        #[test]
        fn the_scanner_agrees_with_serde_json_on_damaged_json(
            fields in prop::collection::vec((prop::sample::select(vec!["model_id", "features", "x"]), json_value()), 1..4),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            mode in 0u8..3,
        ) {
            let body = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",");
            let mut bytes = format!("{{{body}}}").into_bytes();
            let at = cut.index(bytes.len());
            match mode {
                0 => { bytes.truncate(at); }
                1 => { bytes[at] = byte; }
                _ => { bytes.insert(at, byte); }
            }
            agree(&bytes)?;
        }
    }

    #[test]
    fn known_edge_cases_agree() {
        for case in [
            &b"{}"[..],
            b" {\"x\":1} ",
            b"{\"x\":1}x",
            b"[1]",
            b"{\"x\":01}",
            b"{\"x\":-}",
            b"{\"x\":1.}",
            b"{\"x\":1e}",
            b"{\"x\":-0}",
            b"{\"x\":18446744073709551615}",
            b"{\"x\":99999999999999999999999}",
            b"{\"x\":\"\\ud800\"}",
            b"{\"x\":\"\\udc00\"}",
            b"{\"x\":\"\t\"}",
            b"{\"x\":\"\xff\"}",
            b"{\"features\":{\"a\":1,\"a\":2}}",
            b"{\"features\":null}",
            b"{\"features\":[{\"a\":1}]}",
            b"{\"x\":tru}",
            b"{\"x\":1,}",
            b"{,}",
            b"",
        ] {
            agree(case).unwrap();
        }
        let deep = format!("{{\"y\":{}{}}}", "[".repeat(200), "]".repeat(200));
        agree(deep.as_bytes()).unwrap();
    }

    fn scanned(payload: &[u8]) -> Result<(Vec<Cell>, usize), String> {
        let (mut root, n) = trie();
        let (mut cells, mut texts) = (vec![Cell::Missing; n], vec![String::new(); n]);
        scan(payload, &mut root, &mut cells, &mut texts).map_err(|e| e.to_string())?;
        let shape = root.watch_shape(&["features".to_string()], &mut n.clone()).unwrap();
        Ok((cells, shape))
    }

    #[test]
    fn numbers_beyond_f64_read_as_infinite_values_not_as_bad_json() {
        let digits = "9".repeat(400);
        for (text, want) in [
            ("1e400".to_string(), f64::INFINITY),
            ("-1e400".to_string(), f64::NEG_INFINITY),
            (digits.clone(), f64::INFINITY),
            (format!("-{digits}"), f64::NEG_INFINITY),
            ("1e-400".to_string(), 0.0),
        ] {
            let payload = format!(r#"{{"model_id":"m","features":{{"a":{text},"b":2}},"y":{text}}}"#);
            let (cells, _) = scanned(payload.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            // Slots: model_id 0, timestamp 1, a 2, b 3.
            assert_eq!(cells[2], Cell::Float(want), "{text}");
            assert_eq!(cells[3], Cell::Int(2));
        }
    }

    #[test]
    fn a_watched_object_of_another_type_is_marked_misshapen() {
        for (features, misshapen) in
            [("[1,2,3]", true), ("7", true), ("\"x\"", true), ("true", true), ("null", false), ("{\"a\":1}", false)]
        {
            let payload = format!(r#"{{"model_id":"m","features":{features}}}"#);
            let (cells, shape) = scanned(payload.as_bytes()).unwrap();
            assert_eq!(cells[shape] == Cell::Bool(true), misshapen, "{features}");
            agree(payload.as_bytes()).unwrap();
        }
    }
}
