//! Decode: event payloads (JSON bytes) → one Arrow `RecordBatch` per model, with each row's
//! event time and source position.
//!
//! One [`TopicDecoder`] serves every model that reads a topic. It walks each payload once
//! with serde_json, borrowing keys, and keeps only the values at the configured field paths
//! (a trie of path segments; everything else is skipped unparsed) in a reusable row of cells.
//! The row is then routed by its model id and checked against that model's types before a
//! single value is appended, so a bad event leaves no half-written row behind. Rejected
//! events come back as a [`Rejected`] with a [`Reason`] (the `outcome` label of
//! `driftwatch_events_total`) and a message naming the field and what would be valid.
//!
//! Types: a numerical feature takes a JSON number or null; a categorical feature takes a
//! string, integer, boolean or null (integers and booleans as their text). A missing feature
//! is a null. A value of another type costs the event nothing else: it is stored as a null
//! and reported as an [`Issue::TypeError`] (the window's `type_error_rate`), as are absent
//! required features and unknown fields ([`Issue::Schema`]). Repeated event ids within the
//! model's horizon are dropped and their times reported as duplicates. The model id is
//! required when several models share a topic. Event time is an
//! RFC 3339 string or epoch milliseconds (`timestamp_format` chooses); when the field is
//! absent the Kafka message timestamp is used, and without one the event is rejected.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{Field, Schema, SchemaRef};

use crate::engine::json::{Cell, Node, PathError, scan};

use crate::engine::profile::FeatureKind;
use crate::engine::recent::{RecentIds, id_hash, int_id_hash};

/// A dotted path to a field in an event, e.g. `features.income`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> FieldPath {
        if text.is_empty() {
            return FieldPath::default();
        }
        FieldPath(text.split('.').map(str::to_string).collect())
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// This path followed by one more segment.
    pub fn child(&self, name: &str) -> FieldPath {
        let mut v = self.0.clone();
        v.push(name.to_string());
        FieldPath(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// How the event-time field is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampFormat {
    /// RFC 3339 strings and epoch-millisecond numbers.
    #[default]
    Auto,
    Rfc3339,
    EpochMs,
    EpochS,
    /// The Kafka message timestamp; the payload is not consulted.
    Kafka,
}

impl TimestampFormat {
    pub const NAMES: &'static [&'static str] = &["auto", "rfc3339", "epoch_ms", "epoch_s", "kafka"];

    pub fn parse(text: &str) -> Option<TimestampFormat> {
        Some(match text {
            "auto" => TimestampFormat::Auto,
            "rfc3339" => TimestampFormat::Rfc3339,
            "epoch_ms" => TimestampFormat::EpochMs,
            "epoch_s" => TimestampFormat::EpochS,
            "kafka" => TimestampFormat::Kafka,
            _ => return None,
        })
    }
}

/// Why an event was not used; the `outcome` label of `driftwatch_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    NotJson,
    WrongType,
    MissingField,
    TooLarge,
    UnknownModel,
    BadTimestamp,
    /// Its every window had closed (decided by the window stage).
    Late,
    /// Kept, as a schema error, but the object holding its features was of another type;
    /// only dead-lettered (not a drop, so not in [`Reason::ALL`]).
    Misshapen,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::NotJson,
        Reason::WrongType,
        Reason::MissingField,
        Reason::TooLarge,
        Reason::UnknownModel,
        Reason::BadTimestamp,
        Reason::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::WrongType => "wrong_type",
            Reason::MissingField => "missing_field",
            Reason::TooLarge => "too_large",
            Reason::UnknownModel => "unknown_model",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::Late => "late",
            Reason::Misshapen => "schema_error",
        }
    }
}

/// A rejected event: the reason and a message for logs and the dead-letter header.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub reason: Reason,
    /// The model the event was for, when it could be told.
    pub model: Option<usize>,
    pub message: String,
}

impl Rejected {
    fn new(reason: Reason, model: Option<usize>, message: impl Into<String>) -> Rejected {
        Rejected { reason, model, message: message.into() }
    }
}

/// Where a row came from: an interned (topic, partition) and the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub partition: u32,
    pub offset: i64,
}

/// What one model reads from an event.
#[derive(Clone, Debug)]
pub struct ModelFields {
    pub id: String,
    pub model_id: FieldPath,
    pub timestamp: FieldPath,
    pub timestamp_format: TimestampFormat,
    /// (column name, path, kind) per feature, in the model's spec order.
    pub features: Vec<(String, FieldPath, FeatureKind)>,
    /// Per feature: an absent field is a schema error (empty: none is required).
    pub required: Vec<bool>,
    /// An object whose keys no model on the topic watches are schema errors (`None`: not
    /// checked).
    pub known_fields: Option<FieldPath>,
    /// Fields that are known without being read (excluded columns): not schema errors.
    pub also_known: Vec<FieldPath>,
    /// Where the event id is (duplicates, the ground-truth join); `None`: not read.
    pub event_id: Option<FieldPath>,
    /// Repeated event ids within this much event time are duplicates (`None`: not checked),
    /// and at most this many ids are remembered.
    pub duplicates: Option<(i64, usize)>,
}

impl ModelFields {
    /// The fields of a model at the default paths with no event-level checks.
    pub fn new(id: &str, model_id: FieldPath, timestamp: FieldPath, format: TimestampFormat) -> ModelFields {
        ModelFields {
            id: id.into(),
            model_id,
            timestamp,
            timestamp_format: format,
            features: Vec::new(),
            required: Vec::new(),
            known_fields: None,
            also_known: Vec::new(),
            event_id: None,
            duplicates: None,
        }
    }
}

/// A problem with one value or one event that does not cost the event its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issue {
    /// The feature's value had the wrong JSON type; it was stored as a null.
    TypeError { row: u32, feature: u16 },
    /// A required feature was absent or the event carried a field no model knows.
    Schema { row: u32 },
}

/// Rows decoded for one model, ready for the window stage.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    /// Event time of each row, epoch milliseconds.
    pub times: Vec<i64>,
    pub positions: Vec<Position>,
    /// Value and schema problems of these rows, in row order.
    pub issues: Vec<Issue>,
    /// Event times of the duplicates dropped since the last flush.
    pub duplicates: Vec<i64>,
    /// Event id hash per row (0: no id); empty when the model reads no event id.
    pub ids: Vec<u64>,
    /// When the agent read these rows (epoch ms), for `freshness_seconds`; set by the
    /// pipeline.
    pub received_ms: Option<i64>,
}

impl Decoded {
    /// Rows with no issue, duplicate or id (tests, benches).
    pub fn plain(batch: RecordBatch, times: Vec<i64>, positions: Vec<Position>) -> Decoded {
        Decoded {
            batch,
            times,
            positions,
            issues: Vec::new(),
            duplicates: Vec::new(),
            ids: Vec::new(),
            received_ms: None,
        }
    }

    /// The rows of each partition, in order of first appearance.
    pub fn partitions(&self) -> Vec<(u32, Vec<u32>)> {
        let mut order: Vec<(u32, Vec<u32>)> = Vec::new();
        for (i, p) in self.positions.iter().enumerate() {
            match order.iter_mut().find(|(q, _)| *q == p.partition) {
                Some((_, rows)) => rows.push(i as u32),
                None => order.push((p.partition, vec![i as u32])),
            }
        }
        order
    }

    /// These rows (ascending) alone, with their issues and ids; duplicates carry no row and
    /// go with `duplicates`.
    pub fn select(&self, rows: &[u32], duplicates: bool) -> Result<Decoded, arrow::error::ArrowError> {
        let batch = arrow::compute::take_record_batch(&self.batch, &arrow::array::UInt32Array::from(rows.to_vec()))?;
        let local = |row: u32| rows.binary_search(&row).ok().map(|i| i as u32);
        let issues = self
            .issues
            .iter()
            .filter_map(|issue| match *issue {
                Issue::TypeError { row, feature } => local(row).map(|row| Issue::TypeError { row, feature }),
                Issue::Schema { row } => local(row).map(|row| Issue::Schema { row }),
            })
            .collect();
        Ok(Decoded {
            batch,
            times: rows.iter().map(|&i| self.times[i as usize]).collect(),
            positions: rows.iter().map(|&i| self.positions[i as usize]).collect(),
            issues,
            duplicates: if duplicates { self.duplicates.clone() } else { Vec::new() },
            ids: if self.ids.is_empty() { Vec::new() } else { rows.iter().map(|&i| self.ids[i as usize]).collect() },
            received_ms: self.received_ms,
        })
    }
}

struct ModelPlan {
    fields: ModelFields,
    id_slot: usize,
    time_slot: usize,
    feature_slots: Vec<usize>,
    unknown_slot: Option<usize>,
    /// The objects holding features, each with the slot that says it was of another type.
    shape_slots: Vec<(usize, FieldPath)>,
    event_id_slot: Option<usize>,
    recent: Option<RecentIds>,
    schema: SchemaRef,
    columns: Vec<Column>,
    times: Vec<i64>,
    positions: Vec<Position>,
    issues: Vec<Issue>,
    duplicates: Vec<i64>,
    ids: Vec<u64>,
}

enum Column {
    Num(Float64Builder),
    Text(StringBuilder),
}

/// Decodes the events of one topic for the models that read it.
pub struct TopicDecoder {
    root: Node,
    cells: Vec<Cell>,
    texts: Vec<String>,
    models: Vec<ModelPlan>,
    max_event_bytes: usize,
    /// Why the event just pushed, though kept, is worth a dead letter.
    misshapen: Option<Rejected>,
}

/// A model's fields cannot share a topic's trie (fix the field paths in its configuration).
#[derive(Debug, thiserror::Error)]
#[error("model \"{model}\": {what}: {source}")]
pub struct FieldError {
    model: String,
    /// `field a.b` or `fields of a`.
    what: String,
    source: PathError,
}

impl TopicDecoder {
    /// `models` are the models reading this topic, in the order their indices are reported.
    pub fn new(models: Vec<ModelFields>, max_event_bytes: usize) -> Result<TopicDecoder, FieldError> {
        let mut root = Node::default();
        let mut slots = 0;
        let mut plans = Vec::new();
        for fields in models {
            let mut add = |path: &FieldPath| {
                root.insert(path.segments(), &mut slots).map_err(|source| FieldError {
                    model: fields.id.clone(),
                    what: format!("field {path}"),
                    source,
                })
            };
            let id_slot = add(&fields.model_id)?;
            let time_slot = add(&fields.timestamp)?;
            let feature_slots = fields.features.iter().map(|(_, p, _)| add(p)).collect::<Result<Vec<_>, _>>()?;
            let event_id_slot = fields.event_id.as_ref().map(&mut add).transpose()?;
            if fields.known_fields.is_some() {
                for path in &fields.also_known {
                    add(path)?;
                }
            }
            let schema = Arc::new(Schema::new(
                fields.features.iter().map(|(name, _, k)| Field::new(name, k.live_type(), true)).collect::<Vec<_>>(),
            ));
            let columns = fields.features.iter().map(|(_, _, k)| new_column(*k)).collect();
            plans.push(ModelPlan {
                recent: fields.duplicates.map(|(horizon, cap)| RecentIds::new(horizon, cap)),
                fields,
                id_slot,
                time_slot,
                feature_slots,
                unknown_slot: None,
                shape_slots: Vec::new(),
                event_id_slot,
                schema,
                columns,
                times: Vec::new(),
                positions: Vec::new(),
                issues: Vec::new(),
                duplicates: Vec::new(),
                ids: Vec::new(),
            });
        }
        // Unknown keys and misshapen objects are watched once every model's fields are in
        // the trie.
        for plan in &mut plans {
            let mut parents: Vec<FieldPath> = Vec::new();
            for (_, path, _) in &plan.fields.features {
                let segments = path.segments();
                for n in 1..segments.len() {
                    let parent = FieldPath(segments[..n].to_vec());
                    if !parents.contains(&parent) {
                        parents.push(parent);
                    }
                }
            }
            for parent in parents {
                let slot = root.watch_shape(parent.segments(), &mut slots).map_err(|source| FieldError {
                    model: plan.fields.id.clone(),
                    what: format!("fields of {parent}"),
                    source,
                })?;
                plan.shape_slots.push((slot, parent));
            }
            if let Some(path) = &plan.fields.known_fields {
                plan.unknown_slot = Some(root.watch_unknown(path.segments(), &mut slots).map_err(|source| {
                    FieldError { model: plan.fields.id.clone(), what: format!("fields of {path}"), source }
                })?);
            }
        }
        Ok(TopicDecoder {
            root,
            cells: vec![Cell::Missing; slots],
            texts: vec![String::new(); slots],
            models: plans,
            max_event_bytes,
            misshapen: None,
        })
    }

    /// Decodes one event into its model's pending rows; returns the model's index.
    pub fn push(&mut self, payload: &[u8], kafka_time: Option<i64>, position: Position) -> Result<usize, Rejected> {
        self.misshapen = None;
        if payload.len() > self.max_event_bytes {
            let single = (self.models.len() == 1).then_some(0);
            return Err(Rejected::new(
                Reason::TooLarge,
                single,
                // Sources cut oversized payloads while reading: the length seen is a floor.
                format!("event of more than {} bytes (max_event_bytes); it was not read further", self.max_event_bytes),
            ));
        }
        let single = (self.models.len() == 1).then_some(0);
        if let Err(e) = scan(payload, &mut self.root, &mut self.cells, &mut self.texts) {
            return Err(Rejected::new(Reason::NotJson, single, e.to_string()));
        }
        let model = self.route()?;
        let plan = &self.models[model];
        let time = event_time(plan, &self.cells, &self.texts, kafka_time)
            .map_err(|(r, m)| Rejected::new(r, Some(model), m))?;
        let id = match plan.event_id_slot.map(|s| (s, self.cells[s])) {
            Some((s, Cell::Text)) => id_hash(self.texts[s].as_bytes()),
            Some((_, Cell::Int(v))) => int_id_hash(v),
            _ => 0,
        };
        let plan = &mut self.models[model];
        if id != 0 && plan.recent.as_mut().is_some_and(|r| r.repeated(id, time, (position.partition, position.offset)))
        {
            plan.duplicates.push(time);
            return Ok(model);
        }
        let row = plan.times.len() as u32;
        let mut schema_error = plan.unknown_slot.is_some_and(|s| self.cells[s] == Cell::Bool(true));
        if let Some((_, path)) = plan.shape_slots.iter().find(|(s, _)| self.cells[*s] == Cell::Bool(true)) {
            schema_error = true;
            self.misshapen = Some(Rejected::new(
                Reason::Misshapen,
                Some(model),
                format!("\"{path}\" is not an object: its features are read as missing (a schema error)"),
            ));
        }
        for (f, (column, &slot)) in plan.columns.iter_mut().zip(&plan.feature_slots).enumerate() {
            let cell = self.cells[slot];
            schema_error |= cell == Cell::Missing && plan.fields.required.get(f) == Some(&true);
            let fits = match column {
                Column::Num(_) => matches!(cell, Cell::Missing | Cell::Null | Cell::Int(_) | Cell::Float(_)),
                Column::Text(_) => !matches!(cell, Cell::Complex),
            };
            if !fits {
                plan.issues.push(Issue::TypeError { row, feature: f as u16 });
            }
            match (column, cell) {
                (Column::Num(b), Cell::Int(v)) => b.append_value(v as f64),
                (Column::Num(b), Cell::Float(v)) => b.append_value(v),
                (Column::Num(b), _) => b.append_null(),
                (Column::Text(b), Cell::Text) => b.append_value(&self.texts[slot]),
                (Column::Text(b), Cell::Int(v)) => b.append_value(v.to_string()),
                (Column::Text(b), Cell::Float(v)) => b.append_value(v.to_string()),
                (Column::Text(b), Cell::Bool(v)) => b.append_value(if v { "true" } else { "false" }),
                (Column::Text(b), _) => b.append_null(),
            }
        }
        if schema_error {
            plan.issues.push(Issue::Schema { row });
        }
        if plan.event_id_slot.is_some() {
            plan.ids.push(id);
        }
        plan.times.push(time);
        plan.positions.push(position);
        Ok(model)
    }

    fn route(&self) -> Result<usize, Rejected> {
        let single = self.models.len() == 1;
        for (i, plan) in self.models.iter().enumerate() {
            match self.cells[plan.id_slot] {
                Cell::Text if self.texts[plan.id_slot] == plan.fields.id => return Ok(i),
                Cell::Missing if single => return Ok(i),
                _ => {}
            }
        }
        let plan = &self.models[0];
        let known: Vec<&str> = self.models.iter().map(|m| m.fields.id.as_str()).collect();
        Err(match self.cells[plan.id_slot] {
            Cell::Missing => Rejected::new(
                Reason::MissingField,
                None,
                format!(
                    "no \"{}\" field: this topic carries several models ({})",
                    plan.fields.model_id,
                    known.join(", ")
                ),
            ),
            Cell::Text => Rejected::new(
                Reason::UnknownModel,
                None,
                format!(
                    "model \"{}\" is not configured for this topic; expected one of: {}",
                    self.texts[plan.id_slot],
                    known.join(", ")
                ),
            ),
            other => Rejected::new(
                Reason::WrongType,
                single.then_some(0),
                format!("field \"{}\" is {}; expected a string", plan.fields.model_id, describe(other)),
            ),
        })
    }

    /// The event just pushed was kept with its features missing because the object that
    /// should hold them had another type: the reason to dead-letter a copy of it.
    pub fn take_misshapen(&mut self) -> Option<Rejected> {
        self.misshapen.take()
    }

    /// Rows waiting in a model's builders.
    pub fn pending(&self, model: usize) -> usize {
        self.models[model].times.len() + self.models[model].duplicates.len()
    }

    /// Takes a model's pending rows as one batch (`None` when there are none).
    pub fn flush(&mut self, model: usize) -> Option<Decoded> {
        let plan = &mut self.models[model];
        if plan.times.is_empty() && plan.duplicates.is_empty() {
            return None;
        }
        let columns: Vec<ArrayRef> = plan
            .columns
            .iter_mut()
            .map(|c| match c {
                Column::Num(b) => Arc::new(b.finish()) as ArrayRef,
                Column::Text(b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect();
        let (times, positions) = (std::mem::take(&mut plan.times), std::mem::take(&mut plan.positions));
        let (issues, duplicates, ids) =
            (std::mem::take(&mut plan.issues), std::mem::take(&mut plan.duplicates), std::mem::take(&mut plan.ids));
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(times.len()));
        // Builders and schema are made together from one plan, so this cannot fail; if it
        // ever did, the rows are dropped whole and said so, never misaligned.
        match RecordBatch::try_new_with_options(plan.schema.clone(), columns, &options) {
            Ok(batch) => Some(Decoded { batch, times, positions, issues, duplicates, ids, received_ms: None }),
            Err(e) => {
                tracing::error!(model = %plan.fields.id, rows = times.len(), "cannot assemble decoded rows: {e}");
                None
            }
        }
    }
}

fn new_column(kind: FeatureKind) -> Column {
    match kind {
        FeatureKind::Numerical => Column::Num(Float64Builder::new()),
        FeatureKind::Categorical => Column::Text(StringBuilder::new()),
    }
}

fn describe(cell: Cell) -> &'static str {
    match cell {
        Cell::Missing => "missing",
        Cell::Null => "null",
        Cell::Int(_) | Cell::Float(_) => "a number",
        Cell::Bool(_) => "a boolean",
        Cell::Text => "a string",
        Cell::Complex => "an object or array",
    }
}

/// Event time in epoch milliseconds, or why there is none.
fn event_time(plan: &ModelPlan, cells: &[Cell], texts: &[String], kafka: Option<i64>) -> Result<i64, (Reason, String)> {
    let path = &plan.fields.timestamp;
    let format = plan.fields.timestamp_format;
    let cell = if format == TimestampFormat::Kafka { Cell::Missing } else { cells[plan.time_slot] };
    let bad = |what: String| (Reason::BadTimestamp, format!("field \"{path}\" {what}"));
    let epoch = |v: f64| -> Result<i64, (Reason, String)> {
        let ms = if format == TimestampFormat::EpochS { v * 1000.0 } else { v };
        if ms.is_finite() && ms.abs() < 1e15 {
            Ok(ms.floor() as i64)
        } else {
            Err(bad(format!(
                "= {v} is out of range for epoch {}",
                if format == TimestampFormat::EpochS { "seconds" } else { "milliseconds" }
            )))
        }
    };
    match (cell, format) {
        (Cell::Missing | Cell::Null, _) => kafka.ok_or_else(|| {
            (Reason::MissingField, format!("no \"{path}\" field and no message timestamp to fall back on"))
        }),
        (Cell::Text, TimestampFormat::Auto | TimestampFormat::Rfc3339) => {
            let text = &texts[plan.time_slot];
            match rfc3339_millis(text.as_bytes()) {
                Some(ms) => Ok(ms),
                None => chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|e| {
                    bad(format!("= \"{text}\" is not an RFC 3339 time such as 2026-11-27T10:15:00.123Z ({e})"))
                }),
            }
        }
        (Cell::Int(v), TimestampFormat::Auto | TimestampFormat::EpochMs | TimestampFormat::EpochS) => epoch(v as f64),
        (Cell::Float(v), TimestampFormat::Auto | TimestampFormat::EpochMs | TimestampFormat::EpochS) => epoch(v),
        (other, f) => {
            let expected = match f {
                TimestampFormat::Rfc3339 => "an RFC 3339 string",
                TimestampFormat::EpochMs => "epoch milliseconds",
                TimestampFormat::EpochS => "epoch seconds",
                _ => "an RFC 3339 string or epoch milliseconds",
            };
            Err(bad(format!("is {}; expected {expected}", describe(other))))
        }
    }
}

/// The common RFC 3339 shape, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, as epoch
/// milliseconds (fraction truncated, as chrono does), without chrono's general parser.
/// `None` for anything else (other separators, leap seconds, bad dates): chrono decides.
pub fn rfc3339_millis(s: &[u8]) -> Option<i64> {
    let digit = |i: usize| -> Option<i64> { s.get(i).filter(|c| c.is_ascii_digit()).map(|c| i64::from(c - b'0')) };
    let num = |at: usize, n: usize| (at..at + n).try_fold(0i64, |acc, i| Some(acc * 10 + digit(i)?));
    let sep = |i: usize, c: u8| s.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while let Some(d) = digit(i) {
            if i - start < 3 {
                millis = millis * 10 + d;
            }
            i += 1;
        }
        match i - start {
            0 => return None,
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }
    let offset_minutes = match s.get(i)? {
        b'Z' if s.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if s.len() == i + 6 && sep(i + 3, b':') => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' { -(h * 60 + m) } else { h * 60 + m }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Float64Array};

    fn fields(id: &str) -> ModelFields {
        let mut f =
            ModelFields::new(id, FieldPath::parse("model_id"), FieldPath::parse("timestamp"), TimestampFormat::Auto);
        f.features = vec![
            ("income".into(), FieldPath::parse("features.income"), FeatureKind::Numerical),
            ("country".into(), FieldPath::parse("features.country"), FeatureKind::Categorical),
        ];
        f
    }

    fn pos(offset: i64) -> Position {
        Position { partition: 0, offset }
    }

    #[test]
    fn decodes_nested_fields_and_skips_the_rest() {
        let mut d = TopicDecoder::new(vec![fields("m")], 1 << 20).unwrap();
        let e = br#"{"model_id":"m","timestamp":"2026-11-27T10:15:00.123Z","extra":{"a":[1,2]},
                   "features":{"income":52000.5,"country":"DE","other":1},"prediction":{"score":0.8}}"#;
        assert_eq!(d.push(e, None, pos(7)), Ok(0));
        let e = br#"{"model_id":"m","timestamp":1795774500123,"features":{"country":3}}"#;
        assert_eq!(d.push(e, None, pos(8)), Ok(0));
        let out = d.flush(0).unwrap();
        assert_eq!(out.times, vec![1_795_774_500_123, 1_795_774_500_123]);
        assert_eq!(out.positions, vec![pos(7), pos(8)]);
        let income = out.batch.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(income.value(0), 52000.5);
        assert!(income.is_null(1));
        let country = out.batch.column(1).as_string::<i32>();
        assert_eq!((country.value(0), country.value(1)), ("DE", "3"));
        assert!(d.flush(0).is_none());
    }

    #[test]
    fn bad_events_are_rejected_whole_with_a_reason() {
        let mut d = TopicDecoder::new(vec![fields("m")], 200).unwrap();
        let cases: [(&[u8], Reason); 6] = [
            (b"not json", Reason::NotJson),
            (br#"{"model_id":7,"timestamp":1,"features":{"income":1}}"#, Reason::WrongType),
            (br#"{"model_id":"x","timestamp":1}"#, Reason::UnknownModel),
            (br#"{"model_id":"m","features":{}}"#, Reason::MissingField),
            (br#"{"model_id":"m","timestamp":"yesterday"}"#, Reason::BadTimestamp),
            (&[b' '; 201], Reason::TooLarge),
        ];
        for (payload, reason) in cases {
            let r = d.push(payload, None, pos(0)).unwrap_err();
            assert_eq!(r.reason, reason, "{}", r.message);
        }
        assert_eq!(d.pending(0), 0);
        // The Kafka timestamp stands in for a missing one.
        assert_eq!(d.push(br#"{"model_id":"m"}"#, Some(5), pos(1)), Ok(0));
        assert_eq!(d.flush(0).unwrap().times, vec![5]);
    }

    #[test]
    fn a_number_beyond_f64_costs_its_feature_a_non_finite_value_not_the_event() {
        let mut d = TopicDecoder::new(vec![fields("m")], 1 << 20).unwrap();
        let digits = "9".repeat(400);
        for (i, income) in ["1e400", "-1e400", digits.as_str()].into_iter().enumerate() {
            let e = format!(r#"{{"model_id":"m","timestamp":1,"features":{{"income":{income},"country":"DE"}}}}"#);
            assert_eq!(d.push(e.as_bytes(), None, pos(i as i64)), Ok(0), "{income}");
        }
        let out = d.flush(0).unwrap();
        let income = out.batch.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(income.values().to_vec(), vec![f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY]);
        assert!(out.issues.is_empty(), "{:?}", out.issues);
        assert_eq!(out.batch.column(1).as_string::<i32>().value(2), "DE");
    }

    #[test]
    fn features_of_another_shape_are_a_schema_error_worth_a_dead_letter() {
        let mut d = TopicDecoder::new(vec![fields("m")], 1 << 20).unwrap();
        for (i, features) in ["[1,2,3]", "7", "\"x\"", "null", "{\"income\":1}"].into_iter().enumerate() {
            let e = format!(r#"{{"model_id":"m","timestamp":1,"features":{features}}}"#);
            assert_eq!(d.push(e.as_bytes(), None, pos(i as i64)), Ok(0), "{features}");
            let misshapen = d.take_misshapen();
            assert_eq!(misshapen.is_some(), i < 3, "{features}");
            if let Some(r) = misshapen {
                assert_eq!(r.reason.as_str(), "schema_error");
                assert!(r.message.contains("\"features\" is not an object"), "{}", r.message);
            }
        }
        let out = d.flush(0).unwrap();
        assert_eq!(
            out.issues,
            vec![Issue::Schema { row: 0 }, Issue::Schema { row: 1 }, Issue::Schema { row: 2 }],
            "null features are missing features, not a schema error"
        );
    }

    #[test]
    fn value_and_schema_problems_keep_the_event_and_duplicates_are_dropped() {
        let mut f = fields("m");
        f.required = vec![true, false];
        f.known_fields = Some(FieldPath::parse("features"));
        f.event_id = Some(FieldPath::parse("event_id"));
        f.duplicates = Some((60_000, 1000));
        let mut d = TopicDecoder::new(vec![f], 1 << 20).unwrap();
        let events: [&[u8]; 6] = [
            br#"{"model_id":"m","event_id":"a","timestamp":1000,"features":{"income":"high","country":"DE"}}"#,
            br#"{"model_id":"m","event_id":"b","timestamp":2000,"features":{"country":{"x":1}}}"#,
            br#"{"model_id":"m","event_id":3,"timestamp":3000,"features":{"income":1,"colour":"red"}}"#,
            br#"{"model_id":"m","event_id":"a","timestamp":4000,"features":{"income":2}}"#,
            br#"{"model_id":"m","timestamp":5000,"features":{"income":2}}"#,
            br#"{"model_id":"m","event_id":"a","timestamp":99000,"features":{"income":2}}"#,
        ];
        for (i, e) in events.iter().enumerate() {
            assert_eq!(d.push(e, None, pos(i as i64)), Ok(0));
        }
        assert_eq!(d.pending(0), 6);
        let out = d.flush(0).unwrap();
        assert_eq!(out.times, vec![1000, 2000, 3000, 5000, 99000]);
        assert_eq!(
            out.issues,
            vec![
                Issue::TypeError { row: 0, feature: 0 },
                Issue::TypeError { row: 1, feature: 1 },
                Issue::Schema { row: 1 },
                Issue::Schema { row: 2 },
            ]
        );
        // "a" again within a minute is a duplicate; long after, it is a new event.
        assert_eq!(out.duplicates, vec![4000]);
        assert_eq!(out.ids[0], out.ids[4]);
        assert_eq!(out.ids[3], 0);
        let income = out.batch.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(income.is_null(0));
        assert_eq!(income.value(2), 1.0);
    }

    proptest::proptest! {
        #[test]
        fn fast_rfc3339_agrees_with_chrono(
            y in 0i64..10_000, mo in 0i64..14, d in 0i64..33, h in 0i64..25, mi in 0i64..61, s in 0i64..61,
            frac in proptest::option::of("[0-9]{1,9}"),
            tz in proptest::sample::select(vec!["Z", "+00:00", "+05:30", "-08:00", "+23:59", "z", "", "+24:00"]),
            sep in proptest::sample::select(vec!["T", "t", " "]),
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{}{tz}", frac.map(|f| format!(".{f}")).unwrap_or_default());
            let chrono = chrono::DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_millis());
            match rfc3339_millis(text.as_bytes()) {
                Some(fast) => proptest::prop_assert_eq!(Some(fast), chrono, "{}", text),
                // It may decline only what is outside the common shape.
                None => proptest::prop_assert!(chrono.is_none() || sep != "T" || tz == "z" || s == 60, "{}", text),
            }
        }
    }

    #[test]
    fn several_models_share_a_topic_by_model_id() {
        let mut d = TopicDecoder::new(vec![fields("a"), fields("b")], 1 << 20).unwrap();
        assert_eq!(d.push(br#"{"model_id":"b","timestamp":1}"#, None, pos(0)), Ok(1));
        assert_eq!(d.push(br#"{"model_id":"a","timestamp":1}"#, None, pos(1)), Ok(0));
        let r = d.push(br#"{"timestamp":1}"#, None, pos(2)).unwrap_err();
        assert_eq!(r.reason, Reason::MissingField);
        assert_eq!((d.pending(0), d.pending(1)), (1, 1));
    }
}
