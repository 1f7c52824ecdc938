//! Parquet usage objects, converted column-wise with polars.
//!
//! Accepted column types: `storage_account_id` and `bucket` as text;
//! `timestamp` as a timestamp (any unit; zone-less means UTC) or text;
//! `date` as a date or text; `bytes` as any integer type. Nulls, negative
//! bytes and unparsable text are malformed records, found with vectorised
//! checks and reported with their row.

use bytes::Bytes;
use polars::prelude::*;

use super::text::{layout_of, parse_instant};
use super::{IngestError, RecordSink, US_PER_DAY};
use crate::formats;
use crate::model::col;

/// Reads one Parquet object.
pub(crate) fn read(data: Bytes, sink: &mut RecordSink) -> Result<(), IngestError> {
    let df = formats::read_parquet(data)
        .map_err(|e| IngestError::Unparsable { object: sink.object().to_owned(), source: Box::new(e) })?;
    let names: Vec<&str> = df.get_column_names().into_iter().map(|n| n.as_str()).collect();
    let layout = layout_of(names.iter().copied()).map_err(|r| sink.layout(r))?;
    let n = df.height();

    let account = df.column("storage_account_id")?;
    if !matches!(account.dtype(), DataType::String) {
        return Err(sink.layout(format!("storage_account_id has type {}, expected text", account.dtype())));
    }
    let account = account.as_materialized_series().clone();
    let bucket = if layout.bucket {
        let b = df.column("bucket")?;
        if !matches!(b.dtype(), DataType::String) {
            return Err(sink.layout(format!("bucket has type {}, expected text", b.dtype())));
        }
        b.as_materialized_series().clone()
    } else {
        Series::new(col::BUCKET.into(), vec![""; n])
    };
    let ts = timestamps(df.column(layout.time)?, layout.time, sink)?;
    let bytes = byte_counts(df.column("bytes")?, sink)?;

    // Rows with a bad value in any column are removed (after being reported).
    for i in first_trues(&account.is_null()) {
        sink.bad(i + 1, "storage_account_id", "missing".to_owned())?;
    }
    let good = account.is_not_null() & ts.is_not_null() & bytes.is_not_null();
    let day = ts.i64()?.apply_values(|t| t.div_euclid(US_PER_DAY)).cast(&DataType::Int32)?;
    let frame = DataFrame::new(
        n,
        vec![
            account.with_name(col::ACCOUNT.into()).into(),
            bucket.with_name(col::BUCKET.into()).into(),
            ts.with_name(col::TS.into()).into(),
            day.with_name(col::DAY.into()).into(),
            bytes.with_name(col::BYTES.into()).into(),
            Column::new(col::ROW.into(), (1..=n as u32).collect::<Vec<_>>()),
        ],
    )?;
    // Filtering copies every column: only when some row is bad.
    let frame = if good.all() { frame } else { frame.filter(&good)? };
    sink.extend_frame(frame)
}

/// Indices of the true values.
fn first_trues(mask: &BooleanChunked) -> Vec<usize> {
    mask.iter().enumerate().filter_map(|(i, v)| (v == Some(true)).then_some(i)).collect()
}

/// The time column as microseconds since the epoch (Int64), nulls where bad.
fn timestamps(c: &Column, name: &str, sink: &mut RecordSink) -> Result<Series, IngestError> {
    let s = c.as_materialized_series();
    let us = match s.dtype() {
        DataType::Datetime(unit, _) => {
            let factor = match unit {
                TimeUnit::Nanoseconds => None,
                TimeUnit::Microseconds => Some(1),
                TimeUnit::Milliseconds => Some(1000),
            };
            let phys = s.to_physical_repr().into_owned();
            let phys = phys.i64()?;
            match factor {
                Some(f) => phys.apply_values(|v| v * f).into_series(),
                None => phys.apply_values(|v| v.div_euclid(1000)).into_series(),
            }
        }
        DataType::Date => {
            let phys = s.to_physical_repr().into_owned();
            phys.cast(&DataType::Int64)?.i64()?.apply_values(|d| d * US_PER_DAY).into_series()
        }
        DataType::String => {
            let strs = s.str()?;
            let mut out: Vec<Option<i64>> = Vec::with_capacity(strs.len());
            for (i, v) in strs.iter().enumerate() {
                match v.map(parse_instant) {
                    Some(Ok(t)) => out.push(Some(t)),
                    Some(Err(e)) => {
                        sink.bad(i + 1, name, e)?;
                        out.push(None);
                    }
                    None => out.push(None),
                }
            }
            Series::new(name.into(), out)
        }
        other => {
            return Err(sink.layout(format!("{name} has type {other}, expected a timestamp, a date or text")));
        }
    };
    if !matches!(s.dtype(), DataType::String) || s.null_count() > 0 {
        for i in first_trues(&s.is_null()) {
            sink.bad(i + 1, name, "missing".to_owned())?;
        }
    }
    Ok(us)
}

/// The bytes column as UInt64, nulls where missing or negative.
fn byte_counts(c: &Column, sink: &mut RecordSink) -> Result<Series, IngestError> {
    let s = c.as_materialized_series();
    if !s.dtype().is_integer() {
        return Err(sink.layout(format!("bytes has type {}, expected an integer", s.dtype())));
    }
    for i in first_trues(&s.is_null()) {
        sink.bad(i + 1, "bytes", "missing".to_owned())?;
    }
    if s.dtype().is_signed_integer() {
        let neg = s.lt(0)?;
        if neg.any() {
            let wide = s.cast(&DataType::Int64)?;
            let wide = wide.i64()?;
            for i in first_trues(&neg) {
                sink.bad(i + 1, "bytes", format!("{} is negative", wide.get(i).unwrap_or_default()))?;
            }
        }
    }
    // A non-strict cast turns the (reported) negative values into nulls.
    Ok(s.cast(&DataType::UInt64)?)
}
