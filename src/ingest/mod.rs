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

/// The usage of one billing month, as read.
#[derive(Debug)]
pub struct Usage {
    /// Records of the month, columns of [`col`].
    pub records: DataFrame,
    /// Objects read, in key order.
    pub objects: Vec<ObjectMeta>,
    /// Skipped records and objects.
    pub findings: Vec<Finding>,
    /// Objects not read because their key names another month.
    pub pruned: usize,
    /// Records read that fall outside the month.
    pub outside_month: u64,
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

/// Reads every object of the plan.
///
/// Objects are fetched `concurrency` at a time and parsed in key order as
/// they arrive, straight from memory (no temporary files).
pub async fn ingest(store: &Store, plan: Plan, opts: IngestOptions) -> Result<Usage, IngestError> {
    let Plan { objects: wanted, mut findings, pruned } = plan;
    let progress = progress_bar(wanted.len() as u64, "reading usage");
    let mut fetches = futures::stream::iter(wanted.into_iter().map(|(meta, format)| async move {
        let data = store.get(&meta.key).await;
        (meta, format, data)
    }))
    .buffered(opts.concurrency.max(1));

    let mut frames = Vec::new();
    let mut objects = Vec::new();
    let mut outside_month = 0;
    while let Some((meta, format, data)) = fetches.next().await {
        let data = data?;
        let seq = objects.len() as u32;
        let mut sink = RecordSink::new(&meta.key, opts, &mut findings);
        match format {
            Format::Csv => text::read_csv(data, &mut sink)?,
            Format::JsonLines => text::read_json_lines(&data, &mut sink)?,
            Format::Json => {
                if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                    partner_api::read(&data, &mut sink)?
                } else {
                    text::read_json_lines(&data, &mut sink)?
                }
            }
            Format::Parquet => parquet::read(data, &mut sink)?,
        }
        outside_month += sink.outside;
        let frame = sink.finish(seq)?;
        tracing::debug!(object = %meta.key, records = frame.height(), "read usage object");
        progress.inc(1);
        crate::failpoint::reached("ingest");
        frames.push(frame);
        objects.push(meta);
    }
    progress.finish_and_clear();
    let records = if frames.is_empty() { empty_records() } else { concat_frames(frames)? };
    Ok(Usage { records, objects, findings, pruned, outside_month })
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(len: u64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

fn concat_frames(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let lfs: Vec<LazyFrame> = frames.into_iter().map(IntoLazy::lazy).collect();
    concat(lfs, UnionArgs::default())?.collect()
}

/// An empty frame with the record schema.
pub fn empty_records() -> DataFrame {
    RecordSink::frame(Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0).expect("empty frame")
}

/// Where readers put records: keeps those of the month, counts the others,
/// and decides what a bad record does.
pub(crate) struct RecordSink<'a> {
    object: &'a str,
    first: Day,
    end: Day,
    skip_bad: bool,
    findings: &'a mut Vec<Finding>,
    account: Vec<String>,
    bucket: Vec<String>,
    ts: Vec<i64>,
    bytes: Vec<u64>,
    row: Vec<u32>,
    frames: Vec<DataFrame>,
    outside: u64,
}

/// The record columns in their order.
fn record_columns() -> [Expr; 7] {
    [col::ACCOUNT, col::BUCKET, col::TS, col::DAY, col::BYTES, col::OBJECT, col::ROW].map(col)
}

/// Microseconds in a day.
pub(crate) const US_PER_DAY: i64 = 86_400_000_000;

impl<'a> RecordSink<'a> {
    fn new(object: &'a str, opts: IngestOptions, findings: &'a mut Vec<Finding>) -> Self {
        RecordSink {
            object,
            first: opts.month.first_day(),
            end: opts.month.end_day(),
            skip_bad: opts.skip_bad_records,
            findings,
            account: Vec::new(),
            bucket: Vec::new(),
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

    /// Adds one good record (row is 1-based within the object).
    pub(crate) fn push(&mut self, row: usize, account: &str, bucket: &str, ts_us: i64, bytes: u64) {
        let day = ts_us.div_euclid(US_PER_DAY) as Day;
        if day < self.first || day >= self.end {
            self.outside += 1;
            return;
        }
        self.account.push(account.to_owned());
        self.bucket.push(bucket.to_owned());
        self.ts.push(ts_us);
        self.bytes.push(bytes);
        self.row.push(row as u32);
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
        let total = df.height();
        let kept = df
            .lazy()
            .filter(col(col::DAY).gt_eq(lit(self.first)).and(col(col::DAY).lt(lit(self.end))))
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
        let own = Self::frame(self.account, self.bucket, self.ts, self.bytes, self.row, object_seq)?;
        if self.frames.is_empty() {
            return Ok(own);
        }
        let mut parts = vec![own.lazy()];
        for f in self.frames {
            parts.push(f.lazy().with_column(lit(object_seq).alias(col::OBJECT)).select(record_columns()));
        }
        concat(parts, UnionArgs::default())?.collect()
    }

    fn frame(
        account: Vec<String>,
        bucket: Vec<String>,
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
                Column::new(col::ACCOUNT.into(), account),
                Column::new(col::BUCKET.into(), bucket),
                Column::new(col::TS.into(), ts),
                Column::new(col::DAY.into(), day),
                Column::new(col::BYTES.into(), bytes),
                Column::new(col::OBJECT.into(), vec![object_seq; n]),
                Column::new(col::ROW.into(), row),
            ],
        )
    }
}
