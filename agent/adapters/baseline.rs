//! Data at rest: reads Parquet, CSV and NDJSON through one DataFusion `SessionContext`,
//! infers feature types, builds the [`ProfileSpec`] and the reference [`Profile`], and
//! writes and reads the baseline artefact.
//!
//! The artefact (`driftwatch baseline build`) is itself a Parquet file, so any Parquet tool
//! can open it: one row per kept sample value (`feature` index, `value`, sorted by feature
//! then value), and in the file's key-value metadata the format version
//! (`driftwatch.baseline.version`), a JSON header with the spec and every other summary
//! (`driftwatch.baseline.header`), and a SHA-256 over header and values
//! (`driftwatch.baseline.sha256`) that is checked on load. The reference profile holds
//! everything the tests read, so a check against the artefact gives the same numbers as a
//! check against the training data it was built from.
//!
//! A user SQL query (`filter`) runs over the table `reference` with DDL, DML and other
//! statements disabled: only queries are accepted.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use datafusion::execution::context::SQLOptions;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::plan::{BuildOptions, FeatureSelection};
use crate::engine::profile::{
    Baseline, FeatureKind, FeatureProfile, FeatureSpec, Profile, ProfileError, ProfileSpec, Sample, observe_column,
    quantile_edges,
};

/// Version of the artefact layout; bumped on any incompatible change.
pub const ARTEFACT_VERSION: u32 = 1;
const KEY_VERSION: &str = "driftwatch.baseline.version";
const KEY_HEADER: &str = "driftwatch.baseline.header";
const KEY_SHA: &str = "driftwatch.baseline.sha256";
/// Name of the table a user's SQL filter reads from.
pub const TABLE: &str = "reference";

/// Errors reading data or artefacts; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a Parquet file (no PAR1 magic); use .csv, .ndjson/.jsonl/.json or .parquet")]
    NotParquet { path: PathBuf },
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "{path}: the SQL (filter, derived feature or segment) was refused: {message} (only a query such as `SELECT * FROM reference WHERE …` is allowed)"
    )]
    Sql { path: PathBuf, message: String },
    #[error("{path}: no column named \"{column}\"{hint}")]
    UnknownColumn { path: PathBuf, column: String, hint: String },
    #[error(
        "{path}: column \"{column}\" has type {data_type}, which is neither numerical nor categorical; exclude it or declare it with --numerical/--categorical"
    )]
    UnsupportedType { path: PathBuf, column: String, data_type: DataType },
    #[error("{path}: {source}")]
    Profile { path: PathBuf, source: ProfileError },
    #[error("{path}: no feature columns to compare")]
    NoFeatures { path: PathBuf },
    #[error("{path}: baseline artefact is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path}: baseline artefact version {found} is not supported (this driftwatch reads version {ARTEFACT_VERSION}); rebuild it with `driftwatch baseline build`"
    )]
    Version { path: PathBuf, found: String },
}

/// File formats driftwatch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    NdJson,
    /// A baseline artefact (a Parquet file carrying driftwatch metadata).
    Artefact,
}

impl Format {
    /// Format from the file extension, else from the first bytes.
    pub fn detect(path: &Path) -> Result<Format, BaselineError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let mut head = [0_u8; 4];
        let mut file = File::open(path).map_err(|source| BaselineError::Io { path: path.into(), source })?;
        let n = file.read(&mut head).map_err(|source| BaselineError::Io { path: path.into(), source })?;
        let is_parquet = n == 4 && &head == b"PAR1";
        match ext.as_str() {
            "parquet" | "pq" | "dwb" if !is_parquet => Err(BaselineError::NotParquet { path: path.into() }),
            "csv" | "tsv" => Ok(Format::Csv),
            "ndjson" | "jsonl" | "json" => Ok(Format::NdJson),
            _ if is_parquet => Ok(if is_artefact(path) { Format::Artefact } else { Format::Parquet }),
            _ if head.first() == Some(&b'{') => Ok(Format::NdJson),
            _ => Ok(Format::Csv),
        }
    }
}

fn is_artefact(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return false;
    };
    let kv = builder.metadata().file_metadata().key_value_metadata();
    kv.is_some_and(|kv| kv.iter().any(|k| k.key == KEY_VERSION))
}

/// The schema a file (through an optional SQL query) would produce, without reading rows.
/// For an artefact, the schema of its features.
pub async fn read_schema(path: &Path, sql: Option<&str>) -> Result<SchemaRef, BaselineError> {
    let format = Format::detect(path)?;
    if format == Format::Artefact {
        let b = Baseline::read_artefact(path)?;
        return Ok(Arc::new(b.feature_schema()));
    }
    let df = open(path, format, sql).await?;
    Ok(Arc::new(df.schema().as_arrow().clone()))
}

/// Reads whole columns as numbers (booleans as 0/1; integers and decimals as they are; text
/// that is not a number, and nulls, as `None`), through the optional SQL query. For the
/// label, score and prediction columns of performance metrics.
pub async fn read_numbers(
    path: &Path,
    sql: Option<&str>,
    columns: &[&str],
) -> Result<Vec<Vec<Option<f64>>>, BaselineError> {
    use datafusion::arrow::compute::{CastOptions, cast_with_options};
    let df = open_rows(path, sql, "the label and score columns performance needs").await?;
    let schema = df.schema().as_arrow().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for c in columns {
        if schema.field_with_name(c).is_err() {
            let hint = crate::engine::text::did_you_mean(c, names.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!("; columns are: {}", names.join(", ")));
            return Err(BaselineError::UnknownColumn { path: path.into(), column: c.to_string(), hint });
        }
    }
    let read_err =
        |e: datafusion::error::DataFusionError| BaselineError::Read { path: path.into(), message: e.to_string() };
    let batches = df.select_columns(columns).map_err(read_err)?.collect().await.map_err(read_err)?;
    let mut out = vec![Vec::new(); columns.len()];
    let safe = CastOptions { safe: true, ..CastOptions::default() };
    for batch in &batches {
        for (i, column) in batch.columns().iter().enumerate() {
            let column = if column.data_type() == &DataType::Boolean {
                cast_with_options(column, &DataType::UInt8, &safe)
            } else {
                Ok(column.clone())
            };
            let numbers = column.and_then(|c| cast_with_options(&c, &DataType::Float64, &safe)).map_err(|e| {
                BaselineError::Read { path: path.into(), message: format!("column \"{}\": {e}", columns[i]) }
            })?;
            out[i].extend(numbers.as_primitive::<datafusion::arrow::datatypes::Float64Type>().iter());
        }
    }
    Ok(out)
}

/// Every row of a file (through an optional query), in memory: for start-up fits on the
/// reference that need rows, not summaries.
pub async fn read_rows(path: &Path, sql: Option<&str>) -> Result<Vec<RecordBatch>, BaselineError> {
    let df = open_rows(path, sql, "rows").await?;
    df.collect().await.map_err(|e| BaselineError::Read { path: path.into(), message: e.to_string() })
}

/// A data file's rows (an artefact has only summaries: `needed` says what is missing).
async fn open_rows(path: &Path, sql: Option<&str>, needed: &str) -> Result<DataFrame, BaselineError> {
    let format = Format::detect(path)?;
    if format == Format::Artefact {
        return Err(BaselineError::Read {
            path: path.into(),
            message: format!("is a baseline artefact, which keeps summaries, not {needed}; give the data file"),
        });
    }
    open(path, format, sql).await
}

async fn open(path: &Path, format: Format, sql: Option<&str>) -> Result<DataFrame, BaselineError> {
    let read_err =
        |e: datafusion::error::DataFusionError| BaselineError::Read { path: path.into(), message: e.to_string() };
    let config = SessionConfig::new().with_target_partitions(rayon::current_num_threads().max(1));
    let ctx = SessionContext::new_with_config(config);
    let location = path
        .to_str()
        .ok_or_else(|| BaselineError::Read { path: path.into(), message: "path is not valid UTF-8".into() })?;
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    match format {
        Format::Parquet | Format::Artefact => {
            ctx.register_parquet(TABLE, location, ParquetReadOptions::default().file_extension(&ext))
                .await
                .map_err(read_err)?;
        }
        Format::Csv => {
            let delimiter = if ext.eq_ignore_ascii_case(".tsv") { b'\t' } else { b',' };
            let options = CsvReadOptions::new()
                .has_header(true)
                .delimiter(delimiter)
                .file_extension(&ext)
                .schema_infer_max_records(100_000);
            ctx.register_csv(TABLE, location, options).await.map_err(read_err)?;
        }
        Format::NdJson => {
            let options = JsonReadOptions::default().file_extension(&ext).schema_infer_max_records(100_000);
            ctx.register_json(TABLE, location, options).await.map_err(read_err)?;
        }
    }
    let df = match sql {
        Some(sql) => {
            let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
            ctx.sql_with_options(sql, options)
                .await
                .map_err(|e| BaselineError::Sql { path: path.into(), message: e.to_string() })?
        }
        None => ctx.table(TABLE).await.map_err(read_err)?,
    };
    Ok(df)
}

/// The features a selection resolves to (name and kind), and the columns it skips.
type Resolved = (Vec<(String, FeatureKind)>, Vec<String>);

impl FeatureSelection {
    /// Resolves the selection against a schema: every named column must exist; columns of
    /// types that are neither numerical nor categorical are an error when named, and are
    /// skipped (returned separately) when only implied by "all columns".
    pub fn resolve(&self, schema: &Schema, path: &Path) -> Result<Resolved, BaselineError> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let unknown = |column: &str| BaselineError::UnknownColumn {
            path: path.into(),
            column: column.into(),
            hint: crate::engine::text::did_you_mean(column, names.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_else(|| format!("; columns are: {}", names.join(", "))),
        };
        for c in self.columns.iter().chain(&self.exclude).chain(self.declared.keys()) {
            if !names.contains(&c.as_str()) {
                return Err(unknown(c));
            }
        }
        let mut features = Vec::new();
        let mut skipped = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            let named = self.columns.iter().any(|c| c == name);
            if (!self.columns.is_empty() && !named) || self.exclude.iter().any(|c| c == name) {
                continue;
            }
            let kind = match self.declared.get(name) {
                Some(k) => Some(*k),
                None => FeatureKind::infer(field.data_type()),
            };
            match kind {
                Some(k) => features.push((name.clone(), k)),
                None if named => {
                    return Err(BaselineError::UnsupportedType {
                        path: path.into(),
                        column: name.clone(),
                        data_type: field.data_type().clone(),
                    });
                }
                None => skipped.push(name.clone()),
            }
        }
        if features.is_empty() {
            return Err(BaselineError::NoFeatures { path: path.into() });
        }
        Ok((features, skipped))
    }
}

/// Distinct values per categorical feature counted exactly when a file is profiled.
pub const BASELINE_TRACKED: usize = 1_000_000;

/// Reads a file (through an optional query) straight into a profile: batches are gathered
/// into chunks of about 64 k rows, and each chunk is observed on the rayon pool (one feature
/// per task) while the next chunk is being decoded. Only the summaries and two chunks stay
/// in memory; the samples are sorted at the end. `validate` sees the schema before any row
/// is read (to name missing or mistyped columns).
pub async fn profile_file<E: From<BaselineError>>(
    path: &Path,
    format: Format,
    sql: Option<&str>,
    spec: &ProfileSpec,
    validate: impl FnOnce(&Schema) -> Result<(), E>,
) -> Result<(Profile, u64), E> {
    use futures::StreamExt;
    const CHUNK_ROWS: usize = 1 << 16;
    let read_err =
        |e: datafusion::error::DataFusionError| BaselineError::Read { path: path.into(), message: e.to_string() };
    let join_err = |e: tokio::task::JoinError| BaselineError::Read { path: path.into(), message: e.to_string() };
    let df = open(path, format, sql).await?;
    validate(df.schema().as_arrow())?;
    let mut stream = df.execute_stream().await.map_err(read_err)?;
    // Categories are counted exactly up to BASELINE_TRACKED distinct values per feature
    // whatever the order the partitions' rows arrive in, then capped to `max_categories` by
    // count (see `profile`): the reference, and the values a segment keeps apart, are the same
    // on every run and every agent.
    let max_categories = spec.max_categories;
    let mut wide = spec.clone();
    wide.max_categories = max_categories.max(BASELINE_TRACKED / crate::engine::profile::TRACK_FACTOR);
    let spec = Arc::new(wide);
    // The profile is either here or inside the task observing the previous chunk.
    let mut idle = Some(Profile::new(&spec));
    let mut running: Option<tokio::task::JoinHandle<Result<Profile, ProfileError>>> = None;
    let (mut chunk, mut chunk_rows, mut rows) = (Vec::new(), 0_usize, 0_u64);
    loop {
        let next = stream.next().await.transpose().map_err(read_err)?;
        let done = next.is_none();
        if let Some(batch) = next {
            chunk_rows += batch.num_rows();
            rows += batch.num_rows() as u64;
            chunk.push(batch);
        }
        if chunk_rows >= CHUNK_ROWS || (done && !chunk.is_empty()) {
            let mut profile = reclaim(idle.take(), running.take(), &spec).await.map_err(|e| e.at(path))?;
            let (batches, spec) = (std::mem::take(&mut chunk), spec.clone());
            chunk_rows = 0;
            running = Some(tokio::task::spawn_blocking(move || {
                profile.features.par_iter_mut().zip(spec.features.par_iter()).try_for_each(|(prof, fspec)| {
                    for batch in &batches {
                        let column = batch
                            .column_by_name(&fspec.name)
                            .ok_or_else(|| ProfileError::MissingColumn(fspec.name.clone()))?;
                        observe_column(prof, fspec, &spec, column.as_ref())?;
                    }
                    Ok(())
                })?;
                Ok(profile)
            }));
        }
        if done {
            break;
        }
    }
    let mut profile = reclaim(idle, running, &spec).await.map_err(|e| e.at(path))?;
    let profile = tokio::task::spawn_blocking(move || {
        profile.features.par_iter_mut().for_each(|p| {
            p.sample.sorted();
            p.cap_categories(max_categories);
        });
        profile
    })
    .await
    .map_err(join_err)?;
    Ok((profile, rows))
}

/// Why a chunk could not be observed; placed at a file by [`ChunkError::at`].
enum ChunkError {
    Join(tokio::task::JoinError),
    Profile(ProfileError),
}

impl ChunkError {
    fn at(self, path: &Path) -> BaselineError {
        match self {
            ChunkError::Join(e) => BaselineError::Read { path: path.into(), message: e.to_string() },
            ChunkError::Profile(source) => BaselineError::Profile { path: path.into(), source },
        }
    }
}

/// The profile, from wherever it is: in hand, or inside the task observing the last chunk.
async fn reclaim(
    idle: Option<Profile>,
    running: Option<tokio::task::JoinHandle<Result<Profile, ProfileError>>>,
    spec: &ProfileSpec,
) -> Result<Profile, ChunkError> {
    match (idle, running) {
        (Some(p), _) => Ok(p),
        (None, Some(task)) => task.await.map_err(ChunkError::Join)?.map_err(ChunkError::Profile),
        (None, None) => Ok(Profile::new(spec)),
    }
}

impl Baseline {
    /// The spec for a table's schema and a selection (names and kinds, edges not yet fixed),
    /// and the columns left out because their type is neither numerical nor categorical.
    pub fn spec_for(
        schema: &Schema,
        path: &Path,
        selection: &FeatureSelection,
        options: BuildOptions,
    ) -> Result<(ProfileSpec, Vec<String>), BaselineError> {
        let (features, skipped) = selection.resolve(schema, path)?;
        let spec = ProfileSpec {
            features: features.into_iter().map(|(name, kind)| FeatureSpec::new(name, kind, Vec::new())).collect(),
            bins: options.bins,
            max_samples: options.max_samples,
            max_categories: options.max_categories,
        };
        Ok((spec, skipped))
    }

    /// Completes a reference profile: fixes the bin edges of numerical features at the
    /// reference quantiles (`bins` per feature, default the spec's) and fills the reference
    /// histograms from the sorted sample.
    pub fn from_profile(
        mut spec: ProfileSpec,
        mut profile: Profile,
        source: &Path,
        bins: &BTreeMap<String, usize>,
    ) -> Baseline {
        for (fspec, prof) in spec.features.iter_mut().zip(&mut profile.features) {
            if fspec.kind == FeatureKind::Numerical {
                let sorted = prof.sample.sorted();
                fspec.edges = quantile_edges(sorted, bins.get(&fspec.name).copied().unwrap_or(spec.bins));
                prof.histogram = crate::engine::stats::histogram_of_sorted(sorted, &fspec.edges);
            }
        }
        Baseline { spec, profile, source: source.into() }
    }

    /// Builds a baseline from a data file (through an optional SQL query): profiles the
    /// selected features, then fixes their bins (see [`Baseline::from_profile`]).
    pub async fn build(
        path: &Path,
        format: Format,
        sql: Option<&str>,
        selection: &FeatureSelection,
        options: BuildOptions,
    ) -> Result<Baseline, BaselineError> {
        let schema = read_schema(path, sql).await?;
        let (spec, _) = Baseline::spec_for(&schema, path, selection, options)?;
        let (profile, _) = profile_file(path, format, sql, &spec, |_| Ok::<_, BaselineError>(())).await?;
        Ok(Baseline::from_profile(spec, profile, path, &BTreeMap::new()))
    }

    /// An Arrow schema with one column per feature (Float64 or Utf8 by kind).
    pub fn feature_schema(&self) -> Schema {
        Schema::new(
            self.spec
                .features
                .iter()
                .map(|f| {
                    let dt = match f.kind {
                        FeatureKind::Numerical => DataType::Float64,
                        FeatureKind::Categorical => DataType::Utf8,
                    };
                    Field::new(&f.name, dt, true)
                })
                .collect::<Vec<_>>(),
        )
    }

    /// Keeps only the features the selection names (for a check against an artefact).
    pub fn select(mut self, selection: &FeatureSelection) -> Result<Baseline, BaselineError> {
        let schema = self.feature_schema();
        let mut undeclared = selection.clone();
        // Kinds are fixed by the artefact; a declaration may only repeat them.
        for (name, kind) in &selection.declared {
            if let Some(f) = self.spec.features.iter().find(|f| &f.name == name)
                && f.kind != *kind
            {
                return Err(BaselineError::Corrupt {
                    path: self.source.clone(),
                    message: format!(
                        "feature \"{name}\" is {} in this artefact; rebuild it to declare it {}",
                        f.kind.as_str(),
                        kind.as_str()
                    ),
                });
            }
        }
        undeclared.declared.clear();
        // Columns the artefact never had are excluded already.
        undeclared.exclude.retain(|c| schema.fields().iter().any(|f| f.name() == c));
        let (keep, _) = undeclared.resolve(&schema, &self.source)?;
        let keep: Vec<String> = keep.into_iter().map(|(n, _)| n).collect();
        let (mut specs, mut profs) = (Vec::new(), Vec::new());
        for (s, p) in self.spec.features.into_iter().zip(self.profile.features) {
            if keep.contains(&s.name) {
                specs.push(s);
                profs.push(p);
            }
        }
        self.spec.features = specs;
        self.profile.features = profs;
        Ok(self)
    }

    /// Writes the artefact and returns its SHA-256 (hex).
    pub fn write_artefact(&self, path: &Path) -> Result<String, BaselineError> {
        let io = |source: std::io::Error| BaselineError::Io { path: path.into(), source };
        let header = Header::of(self);
        let header_json = serde_json::to_string(&header)
            .map_err(|e| BaselineError::Read { path: path.into(), message: e.to_string() })?;
        let mut feature_ids = Vec::new();
        let mut values = Vec::new();
        for (i, f) in self.profile.features.iter().enumerate() {
            let mut sample = f.sample.clone();
            let sorted = sample.sorted();
            feature_ids.extend(std::iter::repeat_n(i as u32, sorted.len()));
            values.extend_from_slice(sorted);
        }
        let sha = content_hash(&header_json, &feature_ids, &values);
        let schema = Arc::new(Schema::new(vec![
            Field::new("feature", DataType::UInt32, false),
            Field::new("value", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt32Array::from(feature_ids)), Arc::new(Float64Array::from(values))],
        )
        .map_err(|e| BaselineError::Read { path: path.into(), message: e.to_string() })?;
        let props = WriterProperties::builder()
            .set_compression(datafusion::parquet::basic::Compression::ZSTD(Default::default()))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(KEY_VERSION.into(), ARTEFACT_VERSION.to_string()),
                KeyValue::new(KEY_HEADER.into(), header_json),
                KeyValue::new(KEY_SHA.into(), sha.clone()),
            ]))
            .build();
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).map_err(io)?;
        let write_err = |e: datafusion::parquet::errors::ParquetError| BaselineError::Read {
            path: path.into(),
            message: format!("writing the artefact failed: {e}"),
        };
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(write_err)?;
        writer.write(&batch).map_err(write_err)?;
        writer.close().map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(sha)
    }

    /// Loads an artefact, verifying version and content hash.
    pub fn read_artefact(path: &Path) -> Result<Baseline, BaselineError> {
        let corrupt = |message: String| BaselineError::Corrupt { path: path.into(), message };
        let file = File::open(path).map_err(|source| BaselineError::Io { path: path.into(), source })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(e.to_string()))?;
        let kv: HashMap<String, String> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| kv.iter().filter_map(|k| Some((k.key.clone(), k.value.clone()?))).collect())
            .unwrap_or_default();
        let version = kv.get(KEY_VERSION).cloned().unwrap_or_else(|| "(none)".into());
        if version != ARTEFACT_VERSION.to_string() {
            return Err(BaselineError::Version { path: path.into(), found: version });
        }
        let header_json = kv.get(KEY_HEADER).ok_or_else(|| corrupt("the header is missing".into()))?;
        let expected = kv.get(KEY_SHA).ok_or_else(|| corrupt("the checksum is missing".into()))?;
        let header: Header = serde_json::from_str(header_json).map_err(|e| corrupt(format!("bad header: {e}")))?;
        let (mut ids, mut values) = (Vec::new(), Vec::new());
        for batch in builder.build().map_err(|e| corrupt(e.to_string()))? {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            let (Some(id), Some(v)) = (batch.column_by_name("feature"), batch.column_by_name("value")) else {
                return Err(corrupt("expected columns feature and value".into()));
            };
            let (Some(id), Some(v)) = (id.as_primitive_opt::<UInt32Type>(), v.as_any().downcast_ref::<Float64Array>())
            else {
                return Err(corrupt("columns feature and value have the wrong types".into()));
            };
            ids.extend_from_slice(id.values());
            values.extend_from_slice(v.values());
        }
        let actual = content_hash(header_json, &ids, &values);
        if &actual != expected {
            return Err(corrupt(format!("checksum mismatch (stored {expected}, computed {actual})")));
        }
        header.into_baseline(path, &ids, values).map_err(corrupt)
    }
}

fn content_hash(header: &str, ids: &[u32], values: &[f64]) -> String {
    let mut h = Sha256::new();
    h.update(header.as_bytes());
    for id in ids {
        h.update(id.to_le_bytes());
    }
    for v in values {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything in the artefact except the sample values.
#[derive(Serialize, Deserialize)]
struct Header {
    spec: ProfileSpec,
    features: Vec<FeatureHeader>,
}

#[derive(Serialize, Deserialize)]
struct FeatureHeader {
    rows: u64,
    nulls: u64,
    non_finite: u64,
    min: Option<f64>,
    max: Option<f64>,
    sum: f64,
    sum_sq: f64,
    histogram: Vec<u64>,
    categories: BTreeMap<String, u64>,
    sample_seen: u64,
}

impl Header {
    fn of(b: &Baseline) -> Header {
        let finite = |x: f64| x.is_finite().then_some(x);
        Header {
            spec: b.spec.clone(),
            features: b
                .profile
                .features
                .iter()
                .map(|f| FeatureHeader {
                    rows: f.rows,
                    nulls: f.nulls,
                    non_finite: f.non_finite,
                    min: finite(f.min),
                    max: finite(f.max),
                    sum: f.sum,
                    sum_sq: f.sum_sq,
                    histogram: f.histogram.clone(),
                    categories: f.categories.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    sample_seen: f.sample.seen,
                })
                .collect(),
        }
    }

    fn into_baseline(self, path: &Path, ids: &[u32], values: Vec<f64>) -> Result<Baseline, String> {
        if self.features.len() != self.spec.features.len() {
            return Err("header lists a different number of features than the spec".into());
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); self.features.len()];
        for (id, v) in ids.iter().zip(values) {
            samples.get_mut(*id as usize).ok_or("sample value for an unknown feature")?.push(v);
        }
        let features = self
            .features
            .into_iter()
            .zip(samples)
            .map(|(h, values)| FeatureProfile {
                rows: h.rows,
                nulls: h.nulls,
                non_finite: h.non_finite,
                type_errors: 0,
                violations: 0,
                min: h.min.unwrap_or(f64::INFINITY),
                max: h.max.unwrap_or(f64::NEG_INFINITY),
                sum: h.sum,
                sum_sq: h.sum_sq,
                histogram: h.histogram,
                categories: h.categories.into_iter().collect(),
                category_level: 0,
                sample: Sample::from_sorted(h.sample_seen, values),
            })
            .collect();
        Ok(Baseline { spec: self.spec, profile: Profile { features, events: Default::default() }, source: path.into() })
    }
}
