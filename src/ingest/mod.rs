//! Usage records: from every object under the usage location to one typed frame.
//!
//! Owns spec 1.2: which objects are read (recursively, in key order, pruned
//! to the billing month by their key), how each encoding (CSV, JSON Lines,
//! Parquet, the partner API export) becomes records, and what happens to a
//! malformed record (the run stops naming object, row and field, or with
//! `--skip-bad-records` the record becomes a finding). The result has the
//! columns of [`crate::model::col`]: account, bucket, timestamp, day, bytes
//! and the object/row positions that "last wins" needs. Metering is not here.

mod parquet;
mod partner_api;
mod prune;
mod text;

use futures::StreamExt;
use polars::prelude::*;
use thiserror::Error;

use crate::formats::Format;
use crate::model::{BillingMonth, Day, Finding, FindingKind, col};
use crate::storage::{ObjectMeta, StorageError, Store};

pub use prune::key_may_hold;

/// Why usage could not be read.
#[derive(Debug, Error)]
pub enum IngestError {
    /// Storage failure.
    #[error("cannot read usage records")]
    Storage(#[from] StorageError),
    /// One record is malformed.
    #[error("usage object {object} row {row}, field {field}: {reason}")]
    Record {
        /// Object key.
        object: String,
        /// 1-based record number in the object (row 1 is the first after a header).
        row: usize,
        /// Field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The object's columns or structure are not a usage layout.
    #[error("usage object {object}: {reason}")]
    Layout {
        /// Object key.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// The object cannot be parsed as its format at all.
    #[error("usage object {object} cannot be parsed")]
    Unparsable {
        /// Object key.
        object: String,
        /// Parser error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Building the frame failed (a bug).
    #[error("building the usage frame failed")]
    Frame(#[from] PolarsError),
}

impl IngestError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            IngestError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

/// What ingestion read, besides the records it handed on.
#[derive(Debug)]
pub struct Ingested {
    /// Objects read, in key order.
    pub objects: Vec<ObjectMeta>,
    /// Skipped records and objects.
    pub findings: Vec<Finding>,
    /// Objects not read because their key names another month.
    pub pruned: usize,
    /// Records of the month handed on.
    pub records: usize,
    /// Records read that fall outside the month.
    pub outside_month: u64,
}

/// The records of one object, handed on as soon as it is parsed.
#[derive(Debug)]
pub struct Batch {
    /// Records of the month, columns of [`col`].
    pub records: DataFrame,
    /// Object key.
    pub object: String,
    /// Days before this one will not receive records from any object still to
    /// come: they can be metered and their raw records dropped.
    pub complete_before: Day,
}

/// Settings of ingestion.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// The billing month.
    pub month: BillingMonth,
    /// Turn malformed records into findings instead of stopping.
    pub skip_bad_records: bool,
    /// Objects fetched at once.
    pub concurrency: usize,
}

/// What a month's ingestion will read, decided from the listing alone.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Objects to read, in key order, with their format. Every one has an ETag.
    pub objects: Vec<(ObjectMeta, Format)>,
    /// Objects under the location that are not a usage format.
    pub findings: Vec<Finding>,
    /// Objects not read because their key names another month.
    pub pruned: usize,
}

/// Lists the usage location and decides which objects a month reads.
///
/// Servers that list without ETags get one HEAD request per object, so that
/// the plan (and the manifest) always identify the exact object versions.
pub async fn plan(store: &Store, month: BillingMonth, concurrency: usize) -> Result<Plan, IngestError> {
    let listing = store.list("").await?;
    let mut findings = Vec::new();
    let mut pruned = 0;
    let mut wanted = Vec::new();
    for meta in listing {
        if !key_may_hold(&meta.key, month) {
            pruned += 1;
        } else if let Some(format) = Format::of_key(&meta.key) {
            wanted.push((meta, format));
        } else {
            findings.push(Finding::new(
                FindingKind::SkippedObject,
                meta.key.clone(),
                "not a usage format (.csv, .jsonl, .ndjson, .json, .parquet): not read",
            ));
        }
    }
    let objects = futures::stream::iter(wanted.into_iter().map(|(mut meta, format)| async move {
        if meta.etag.is_empty() {
            meta.etag = store.etag(&meta.key).await?;
        }
        Ok::<_, IngestError>((meta, format))
    }))
    .buffered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan { objects, findings, pruned })
}

/// Reads every object of the plan and hands each one's records to `consume`.
///
/// Objects are fetched `concurrency` at a time and parsed straight from
/// memory (no temporary files). They are processed in a streaming order:
/// objects whose folders name no day first, then day-partitioned ones by day.
/// An object under a day folder must hold records of that day (or of the
/// day before or after, for records at midnight); other records in it are
/// malformed. So after the objects of day D, every day before D−1 is
/// complete, and [`Batch::complete_before`] says so. "Last wins" still
/// follows key order: each record carries its object's position in it.
pub async fn ingest<E: From<IngestError>>(
    store: &Store,
    plan: Plan,
    opts: IngestOptions,
    mut consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<Ingested, E> {
    let Plan { objects: listed, mut findings, pruned } = plan;
    let mut order: Vec<(u32, ObjectMeta, Format, Option<Day>)> = listed
        .into_iter()
        .enumerate()
        .map(|(seq, (meta, format))| {
            let day = match prune::key_date(&meta.key) {
                Some(prune::KeyDate::Day(d)) => Some(d),
                _ => None,
            };
            (seq as u32, meta, format, day)
        })
        .collect();
    order.sort_by_key(|(seq, _, _, day)| (day.unwrap_or(Day::MIN), *seq));
    // complete_before[i]: days before it get no records from objects i+1.. .
    let mut complete_before = vec![Day::MAX; order.len()];
    for i in (0..order.len().saturating_sub(1)).rev() {
        complete_before[i] = match order[i + 1].3 {
            None => Day::MIN,
            Some(d) => d - 1,
        };
    }
    let objects_in_key_order = {
        let mut v: Vec<(u32, ObjectMeta)> = order.iter().map(|(s, m, _, _)| (*s, m.clone())).collect();
        v.sort_by_key(|(s, _)| *s);
        v.into_iter().map(|(_, m)| m).collect::<Vec<_>>()
    };

    let progress = crate::logging::progress_bar(order.len() as u64, "reading usage");
    let mut fetches =
        futures::stream::iter(order.into_iter().enumerate().map(|(i, (seq, meta, format, day))| async move {
            let data = store.get(&meta.key).await;
            (i, seq, meta, format, day, data)
        }))
        .buffered(opts.concurrency.max(1));

    let mut records = 0;
    let mut outside_month = 0;
    while let Some((i, seq, meta, format, day, data)) = fetches.next().await {
        let data = data.map_err(IngestError::from)?;
        let mut sink = RecordSink::new(&meta.key, day, opts, &mut findings);
        let parsed = match format {
            Format::Csv => text::read_csv(data, &mut sink),
            Format::JsonLines => text::read_json_lines(&data, &mut sink),
            Format::Json => {
                if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                    partner_api::read(&data, &mut sink)
                } else {
                    text::read_json_lines(&data, &mut sink)
                }
            }
            Format::Parquet => parquet::read(data, &mut sink),
        };
        parsed?;
        outside_month += sink.outside;
        let frame = sink.finish(seq).map_err(IngestError::from)?;
        tracing::debug!(object = %meta.key, records = frame.height(), "read usage object");
        records += frame.height();
        progress.inc(1);
        crate::failpoint::reached("ingest");
        consume(Batch { records: frame, object: meta.key, complete_before: complete_before[i] })?;
    }
    progress.finish_and_clear();
    Ok(Ingested { objects: objects_in_key_order, findings, pruned, records, outside_month })
}

/// Where readers put records: keeps those of the month, counts the others,
/// and decides what a bad record does.
pub(crate) struct RecordSink<'a> {
    object: &'a str,
    first: Day,
    end: Day,
    /// Days `[lo, hi]` an object under a day folder may hold.
    partition: Option<(Day, Day)>,
    skip_bad: bool,
    findings: &'a mut Vec<Finding>,
    account: StringChunkedBuilder,
    bucket: StringChunkedBuilder,
    ts: Vec<i64>,
    bytes: Vec<u64>,
    row: Vec<u32>,
    frames: Vec<DataFrame>,
    outside: u64,
}

/// The record columns in their order.
fn record_columns() -> [Expr; 7] {
    record_columns_names().map(col)
}

/// The record column names in their order.
fn record_columns_names() -> [&'static str; 7] {
    [col::ACCOUNT, col::BUCKET, col::TS, col::DAY, col::BYTES, col::OBJECT, col::ROW]
}

/// Microseconds in a day.
pub(crate) const US_PER_DAY: i64 = 86_400_000_000;

impl<'a> RecordSink<'a> {
    fn new(object: &'a str, day: Option<Day>, opts: IngestOptions, findings: &'a mut Vec<Finding>) -> Self {
        RecordSink {
            object,
            first: opts.month.first_day(),
            end: opts.month.end_day(),
            partition: day.map(|d| (d - 1, d + 1)),
            skip_bad: opts.skip_bad_records,
            findings,
            account: StringChunkedBuilder::new(col::ACCOUNT.into(), 0),
            bucket: StringChunkedBuilder::new(col::BUCKET.into(), 0),
            ts: Vec::new(),
            bytes: Vec::new(),
            row: Vec::new(),
            frames: Vec::new(),
            outside: 0,
        }
    }

    /// Object key, for messages.
    pub(crate) fn object(&self) -> &str {
        self.object
    }

    /// Adds one record (row is 1-based within the object); a record outside
    /// the object's day partition is malformed.
    pub(crate) fn push(
        &mut self,
        row: usize,
        account: &str,
        bucket: &str,
        ts_us: i64,
        bytes: u64,
    ) -> Result<(), IngestError> {
        let day = ts_us.div_euclid(US_PER_DAY) as Day;
        if let Some((lo, hi)) = self.partition
            && (day < lo || day > hi)
        {
            return self.bad(row, "timestamp", self.outside_partition(day));
        }
        if day < self.first || day >= self.end {
            self.outside += 1;
            return Ok(());
        }
        self.account.append_value(account);
        self.bucket.append_value(bucket);
        self.ts.push(ts_us);
        self.bytes.push(bytes);
        self.row.push(row as u32);
        Ok(())
    }

    fn outside_partition(&self, day: Day) -> String {
        let (lo, _) = self.partition.expect("partitioned");
        format!(
            "a record of {} in an object under the folder of {}: a day folder holds that day's records",
            crate::model::date_of(day),
            crate::model::date_of(lo + 1)
        )
    }

    /// A malformed record: an error, or a finding under `--skip-bad-records`.
    pub(crate) fn bad(&mut self, row: usize, field: &str, reason: String) -> Result<(), IngestError> {
        if self.skip_bad {
            self.findings.push(Finding::new(
                FindingKind::SkippedRecord,
                self.object,
                format!("row {row}, field {field}: {reason}; record skipped"),
            ));
            Ok(())
        } else {
            Err(IngestError::Record { object: self.object.to_owned(), row, field: field.to_owned(), reason })
        }
    }

    /// A layout error for this object.
    pub(crate) fn layout(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Layout { object: self.object.to_owned(), reason: reason.into() }
    }

    /// Appends a frame already in record form (account, bucket, ts, day,
    /// bytes, row; no nulls), keeping only rows of the month.
    pub(crate) fn extend_frame(&mut self, df: DataFrame) -> Result<(), IngestError> {
        let (min_day, max_day) = {
            let days = df.column(col::DAY)?.i32()?;
            (days.min(), days.max())
        };
        let df = match self.partition {
            None => df,
            // Every record in the partition: nothing to report or drop.
            Some((lo, hi)) if min_day.is_some_and(|d| d >= lo) && max_day.is_some_and(|d| d <= hi) => df,
            Some((lo, hi)) => {
                let days = df.column(col::DAY)?.i32()?;
                let rows = df.column(col::ROW)?.u32()?;
                let outside: Vec<(usize, Day)> = days
                    .iter()
                    .zip(rows.iter())
                    .filter_map(|(d, r)| d.filter(|d| *d < lo || *d > hi).map(|d| (r.unwrap_or(0) as usize, d)))
                    .collect();
                for (row, day) in &outside {
                    self.bad(*row, "timestamp", self.outside_partition(*day))?;
                }
                if outside.is_empty() {
                    df
                } else {
                    df.lazy().filter(col(col::DAY).gt_eq(lit(lo)).and(col(col::DAY).lt_eq(lit(hi)))).collect()?
                }
            }
        };
        let total = df.height();
        let all_in_month = min_day.is_some_and(|d| d >= self.first) && max_day.is_some_and(|d| d < self.end);
        let month = col(col::DAY).gt_eq(lit(self.first)).and(col(col::DAY).lt(lit(self.end)));
        let kept = df
            .lazy()
            .filter(if all_in_month { lit(true) } else { month })
            .select([
                col(col::ACCOUNT),
                col(col::BUCKET).fill_null(lit("")),
                col(col::TS),
                col(col::DAY),
                col(col::BYTES),
                col(col::ROW),
            ])
            .collect()?;
        self.outside += (total - kept.height()) as u64;
        self.frames.push(kept);
        Ok(())
    }

    fn finish(self, object_seq: u32) -> PolarsResult<DataFrame> {
        let own = Self::frame(self.account.finish(), self.bucket.finish(), self.ts, self.bytes, self.row, object_seq)?;
        if self.frames.is_empty() {
            return Ok(own);
        }
        if own.height() == 0 && self.frames.len() == 1 {
            // A Parquet object: its one frame, with the object position added.
            let mut frame = self.frames.into_iter().next().expect("one frame");
            let n = frame.height();
            frame.with_column(Column::new(col::OBJECT.into(), vec![object_seq; n]))?;
            return frame.select(record_columns_names());
        }
        let mut parts = if own.height() > 0 { vec![own.lazy()] } else { Vec::new() };
        for f in self.frames {
            parts.push(
                f.lazy()
                    .with_column(lit(object_seq).cast(DataType::UInt32).alias(col::OBJECT))
                    .select(record_columns()),
            );
        }
        concat(parts, UnionArgs::default())?.collect()
    }

    fn frame(
        account: StringChunked,
        bucket: StringChunked,
        ts: Vec<i64>,
        bytes: Vec<u64>,
        row: Vec<u32>,
        object_seq: u32,
    ) -> PolarsResult<DataFrame> {
        let n = ts.len();
        let day: Vec<i32> = ts.iter().map(|t| t.div_euclid(US_PER_DAY) as i32).collect();
        DataFrame::new(
            n,
            vec![
                account.into_series().into_column(),
                bucket.into_series().into_column(),
                Column::new(col::TS.into(), ts),
                Column::new(col::DAY.into(), day),
                Column::new(col::BYTES.into(), bytes),
                Column::new(col::OBJECT.into(), vec![object_seq; n]),
                Column::new(col::ROW.into(), row),
            ],
        )
    }
}
