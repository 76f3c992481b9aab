//! SQL expressions on live batches: derived features and segment predicates, parsed and
//! planned by DataFusion once (at start-up) into physical expressions, then evaluated on
//! every decoded `RecordBatch` without a query engine in the way. [`Slicer`] splits a
//! batch's rows into the model's segment slices.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::engine::window::{Split, SplitError};

/// An expression that does not compile or evaluate (fix its SQL, or the data it reads).
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    /// What DataFusion found wrong (an unknown column, a type mismatch, a syntax error),
    /// its first line.
    #[error("{0}")]
    Expression(String),
    #[error("derived feature \"{name}\" = {sql}: {source}")]
    Compile { name: String, sql: String, source: Box<DeriveError> },
    #[error("derived feature \"{name}\": {source}")]
    Evaluate { name: String, source: Box<DeriveError> },
    #[error("the predicate is not boolean")]
    NotBoolean,
    #[error("no column \"{0}\"")]
    NoColumn(String),
}

/// DataFusion's (or Arrow's) error, its first line.
fn expression(e: impl std::fmt::Display) -> DeriveError {
    let text = e.to_string();
    DeriveError::Expression(text.lines().next().unwrap_or(&text).to_string())
}

/// One expression compiled against a batch schema.
pub struct Compiled {
    expr: Arc<dyn PhysicalExpr>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({})", self.expr)
    }
}

impl Compiled {
    /// Parses and plans `sql` over the columns of `schema`; the error says what DataFusion
    /// found wrong (an unknown column, a type mismatch, a syntax error).
    pub fn new(sql: &str, schema: &Schema) -> Result<Compiled, DeriveError> {
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.clone()).map_err(expression)?;
        let logical = ctx.parse_sql_expr(sql, &df_schema).map_err(expression)?;
        let expr = ctx.create_physical_expr(logical, &df_schema).map_err(expression)?;
        Ok(Compiled { expr })
    }

    /// The result's type on `schema`.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType, DeriveError> {
        self.expr.data_type(schema).map_err(expression)
    }

    /// The value for every row of a batch.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, DeriveError> {
        self.expr.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())).map_err(expression)
    }

    /// A predicate's value for every row (null counts as false).
    pub fn mask(&self, batch: &RecordBatch) -> Result<BooleanArray, DeriveError> {
        let values = self.evaluate(batch)?;
        let values = cast(&values, &DataType::Boolean).map_err(expression)?;
        let b = values.as_any().downcast_ref::<BooleanArray>().ok_or(DeriveError::NotBoolean)?;
        Ok(b.iter().map(|v| Some(v == Some(true))).collect())
    }
}

/// Derived features: each appended to a batch as a column of its feature's Arrow type.
pub struct Derive {
    columns: Vec<(String, Compiled, DataType)>,
    output: SchemaRef,
}

impl Derive {
    /// `defs` are (feature name, SQL, type the feature has: Float64 or Utf8) over `input`.
    pub fn new(defs: &[(String, String, DataType)], input: &Schema) -> Result<Derive, DeriveError> {
        let mut columns = Vec::new();
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (name, sql, data_type) in defs {
            let compiled = Compiled::new(sql, input).map_err(|e| DeriveError::Compile {
                name: name.clone(),
                sql: sql.clone(),
                source: Box::new(e),
            })?;
            fields.push(Field::new(name, data_type.clone(), true));
            columns.push((name.clone(), compiled, data_type.clone()));
        }
        Ok(Derive { columns, output: Arc::new(Schema::new(fields)) })
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The schema of the batches [`Derive::apply`] gives.
    pub fn schema(&self) -> &Schema {
        &self.output
    }

    /// The batch with the derived columns appended as nulls (when evaluating failed).
    pub fn nulls(&self, batch: &RecordBatch) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        for (_, _, data_type) in &self.columns {
            arrays.push(datafusion::arrow::array::new_null_array(data_type, batch.num_rows()));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.output.clone(), arrays, &options).unwrap_or_else(|_| batch.clone())
    }

    /// The batch with the derived columns appended.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, DeriveError> {
        if self.columns.is_empty() {
            return Ok(batch.clone());
        }
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        for (name, compiled, data_type) in &self.columns {
            let failed = |e| DeriveError::Evaluate { name: name.clone(), source: Box::new(e) };
            let values = compiled.evaluate(batch).map_err(failed)?;
            arrays.push(cast(&values, data_type).map_err(|e| failed(expression(e)))?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.output.clone(), arrays, &options).map_err(expression)
    }
}

/// One segment dimension, ready to split batches.
pub enum Dimension {
    /// A slice per value (`name=value`), then `name=__other__` for every other value and
    /// for nulls.
    Column { name: String, column: String, values: Vec<String> },
    /// One slice (`name`): the rows where the predicate holds.
    Predicate { name: String, predicate: Compiled },
}

impl Dimension {
    fn slice_names(&self) -> Vec<String> {
        match self {
            Dimension::Column { name, values, .. } => values
                .iter()
                .map(|v| format!("{name}={v}"))
                .chain([format!("{name}={}", crate::engine::profile::OTHER_CATEGORY)])
                .collect(),
            Dimension::Predicate { name, .. } => vec![name.clone()],
        }
    }
}

/// Splits batches into segment slices; slice `k` is `names()[k]`.
pub struct Slicer {
    dimensions: Vec<Dimension>,
    names: Vec<String>,
}

impl Slicer {
    pub fn new(dimensions: Vec<Dimension>) -> Slicer {
        let names = dimensions.iter().flat_map(Dimension::slice_names).collect();
        Slicer { dimensions, names }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Split for Slicer {
    /// The rows of each slice (a row is in one slice of each column dimension, and in a
    /// predicate's slice when it holds).
    fn split(&self, batch: &RecordBatch) -> Result<Vec<Vec<u32>>, SplitError> {
        let mut out = vec![Vec::new(); self.names.len()];
        let mut first = 0;
        for d in &self.dimensions {
            match d {
                Dimension::Column { column, values, .. } => {
                    let array = batch.column_by_name(column).ok_or_else(|| DeriveError::NoColumn(column.clone()))?;
                    let text = cast(array, &DataType::Utf8).map_err(expression)?;
                    let text = text.as_string::<i32>();
                    for (row, v) in text.iter().enumerate() {
                        let k = v.and_then(|v| values.iter().position(|x| x == v)).unwrap_or(values.len());
                        out[first + k].push(row as u32);
                    }
                    first += values.len() + 1;
                }
                Dimension::Predicate { predicate, .. } => {
                    let mask = predicate.mask(batch)?;
                    out[first].extend((0..batch.num_rows()).filter(|&i| mask.value(i)).map(|i| i as u32));
                    first += 1;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Float64Array, StringArray};
    use datafusion::arrow::datatypes::Float64Type;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("income", DataType::Float64, true),
            Field::new("accounts", DataType::Float64, true),
            Field::new("country", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(100.0), Some(50.0), None])),
                Arc::new(Float64Array::from(vec![Some(1.0), Some(4.0), Some(0.0)])),
                Arc::new(StringArray::from(vec![Some("DE"), Some("FR"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn derived_columns_and_predicates_evaluate_on_live_batches() {
        let b = batch();
        let defs = vec![
            ("per_account".to_string(), "income / (accounts + 1)".to_string(), DataType::Float64),
            (
                "region".to_string(),
                "CASE WHEN country IN ('DE', 'FR') THEN 'eu' ELSE 'other' END".to_string(),
                DataType::Utf8,
            ),
        ];
        let d = Derive::new(&defs, b.schema_ref()).unwrap();
        let out = d.apply(&b).unwrap();
        let per = out.column_by_name("per_account").unwrap().as_primitive::<Float64Type>();
        assert_eq!((per.value(0), per.value(1), per.is_null(2)), (50.0, 10.0, true));
        let region = out.column_by_name("region").unwrap().as_string::<i32>();
        assert_eq!((region.value(0), region.value(2)), ("eu", "other"));
        let p = Compiled::new("income > 60 AND country = 'DE'", b.schema_ref()).unwrap();
        assert_eq!(p.mask(&b).unwrap(), BooleanArray::from(vec![true, false, false]));
        let slicer = Slicer::new(vec![
            Dimension::Column { name: "country".into(), column: "country".into(), values: vec!["FR".into()] },
            Dimension::Predicate {
                name: "rich".into(),
                predicate: Compiled::new("income >= 100", b.schema_ref()).unwrap(),
            },
        ]);
        assert_eq!(slicer.names(), ["country=FR", "country=__other__", "rich"]);
        assert_eq!(slicer.split(&b).unwrap(), vec![vec![1], vec![0, 2], vec![0]]);
        let err = Compiled::new("incme > 1", b.schema_ref()).unwrap_err().to_string();
        assert!(err.contains("incme"), "{err}");
    }
}
