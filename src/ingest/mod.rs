//! Usage records: from every object under the usage location to one typed frame.
//!
//! Owns spec 1.2: which objects are read (recursively, in key order, pruned
//! to the billing month by their key), how each encoding (CSV, JSON Lines,
//! Parquet, the partner API export) becomes records, and what happens to a
//! malformed record (the run stops naming object, row and field, or with
//! `--skip-bad-records` the record becomes a finding). The result has the
//! columns of [`record_columns`]: account and bucket as interned ids,
//! timestamp, day, bytes and the object/row positions that "last wins"
//! needs. Metering is not here.

mod parquet;
mod partner_api;
mod prune;
mod text;

use futures::StreamExt;
use polars::prelude::*;
use thiserror::Error;

use crate::formats::Format;
use crate::model::{BillingMonth, Day, Finding, FindingKind, Interner, col};
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
    /// Records of the month, the columns of [`record_columns`]: frames in
    /// day order, each holding records of one day (a day may have several).
    pub days: Vec<DataFrame>,
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
/// Account ids are interned into `accounts`, which the caller hands on to
/// metering.
pub async fn ingest<E: From<IngestError>>(
    store: &Store,
    plan: Plan,
    opts: IngestOptions,
    accounts: &mut Interner,
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

    // Objects are fetched `concurrency` at a time and parsed on up to
    // `parsers` blocking threads; results are consumed in order.
    let parsers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_PARSERS);
    let progress = crate::logging::progress_bar(order.len() as u64, "reading usage");
    // Objects in memory (fetched and not yet parsed) are also bounded by
    // size. Their share of the budget is taken in key order, so the first
    // object waiting always gets it, and given back once it is parsed, when
    // its buffer is kept to read a later object into.
    let budget = &tokio::sync::Semaphore::new(FETCH_AHEAD_KIB as usize);
    let spare = &std::sync::Mutex::new(Vec::new());
    let mut parsed = futures::stream::iter(order.into_iter().enumerate())
        .then(|(i, (seq, meta, format, day))| async move {
            let share = u32::try_from(meta.size.div_ceil(1024)).unwrap_or(u32::MAX).min(FETCH_AHEAD_KIB);
            let held = budget.acquire_many(share).await.expect("the budget is never closed");
            (i, seq, meta, format, day, held)
        })
        .map(|(i, seq, meta, format, day, held)| async move {
            let buf = spare.lock().expect("never poisoned").pop().unwrap_or_default();
            let data = store.get_into(&meta.key, buf).await;
            (i, seq, meta, format, day, data, held)
        })
        .buffered(opts.concurrency.max(1))
        .map(|(i, seq, meta, format, day, data, held)| async move {
            let parsed = match data {
                Ok(data) => {
                    let key = meta.key.clone();
                    let (parsed, data) =
                        tokio::task::spawn_blocking(move || (parse(&data, format, key, day, opts), data))
                            .await
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
                    spare.lock().expect("never poisoned").extend(crate::storage::recycle(data));
                    parsed
                }
                Err(e) => Err(IngestError::from(e)),
            };
            drop(held);
            (i, seq, meta, parsed)
        })
        .buffered(parsers)
        .boxed();

    let mut records = 0;
    let mut outside_month = 0;
    let mut buckets = Interner::default();
    while let Some((i, seq, meta, parsed)) = parsed.next().await {
        let sink = parsed?;
        outside_month += sink.outside;
        let (days, object_findings) = sink.finish(seq, accounts, &mut buckets).map_err(IngestError::from)?;
        findings.extend(object_findings);
        let n: usize = days.iter().map(DataFrame::height).sum();
        tracing::debug!(object = %meta.key, records = n, days = days.len(), "read usage object");
        records += n;
        progress.inc(1);
        crate::failpoint::reached("ingest");
        consume(Batch { days, object: meta.key, complete_before: complete_before[i] })?;
    }
    progress.finish_and_clear();
    Ok(Ingested { objects: objects_in_key_order, findings, pruned, records, outside_month })
}

/// Most KiB of objects fetched and not yet parsed, unless one object alone
/// is larger. Four 250 MB partner API exports: two being parsed, two read
/// ahead. More only costs memory: reading ahead is for waiting on S3, not for
/// keeping objects that parsers cannot take yet.
const FETCH_AHEAD_KIB: u32 = 1 << 20;

/// Most objects parsed at once: each holds its decoded records until it is
/// handed on, so more parsers cost memory without adding much speed.
const MAX_PARSERS: usize = 4;

/// Parses one object (on a blocking thread) into a sink of its records.
fn parse(
    data: &bytes::Bytes,
    format: Format,
    key: String,
    day: Option<Day>,
    opts: IngestOptions,
) -> Result<RecordSink, IngestError> {
    let mut sink = RecordSink::new(key, day, opts);
    match format {
        Format::Csv => text::read_csv(data.clone(), &mut sink),
        Format::JsonLines => text::read_json_lines(data, &mut sink),
        Format::Json => {
            if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                partner_api::read(data, &mut sink)
            } else {
                text::read_json_lines(data, &mut sink)
            }
        }
        Format::Parquet => parquet::read(data.clone(), &mut sink),
    }?;
    Ok(sink)
}

/// Where readers put one object's records: keeps those of the month, counts
/// the others, decides what a bad record does, and names accounts and
/// buckets by ids interned for this object (mapped to the run's ids when the
/// object is handed on, so that objects can be parsed in parallel).
pub(crate) struct RecordSink {
    object: String,
    first: Day,
    end: Day,
    /// Days `[lo, hi]` an object under a day folder may hold.
    partition: Option<(Day, Day)>,
    skip_bad: bool,
    findings: Vec<Finding>,
    pub(crate) accounts: Interner,
    pub(crate) buckets: Interner,
    /// Kept records by day of the month (index: day − `first`), each day in
    /// chunks of at most [`CHUNK_ROWS`]. Sorting records by day as they are
    /// read costs one index per record; an object that spans the month (a
    /// partner API export) would otherwise be split by day afterwards, in a
    /// second pass over all its columns.
    days: Vec<Vec<Chunk>>,
    outside: u64,
}

/// Records per chunk of a sink. Chunks of this size are allocated and freed
/// over and over, and the allocator serves them from memory it keeps; one
/// vector per object would be a fresh mapping each time, which the kernel
/// zeroes page by page (a fifth of the CPU time of a large month).
const CHUNK_ROWS: usize = 1 << 16;

/// Columns of up to [`CHUNK_ROWS`] records of one day.
struct Chunk {
    day: Day,
    account: Vec<u32>,
    bucket: Values<u32>,
    ts: Values<i64>,
    bytes: Vec<u64>,
    row: Vec<u32>,
}

impl Chunk {
    fn new(day: Day) -> Self {
        Chunk {
            day,
            account: Vec::with_capacity(CHUNK_ROWS),
            bucket: Values::default(),
            ts: Values::default(),
            bytes: Vec::with_capacity(CHUNK_ROWS),
            row: Vec::with_capacity(CHUNK_ROWS),
        }
    }

    fn len(&self) -> usize {
        self.account.len()
    }

    fn room(&self) -> usize {
        CHUNK_ROWS - self.len()
    }

    /// The chunk as a record frame without the object column, its ids mapped
    /// through `account_ids` and `bucket_ids`.
    fn into_frame(mut self, account_ids: &[u32], bucket_ids: &[u32]) -> PolarsResult<DataFrame> {
        let n = self.len();
        self.account.iter_mut().for_each(|a| *a = account_ids[*a as usize]);
        self.bucket.map(|b| bucket_ids[b as usize]);
        DataFrame::new(
            n,
            vec![
                // from_vec moves the vectors in (Column::new would copy them).
                Series::from_vec(col::ACCOUNT_ID.into(), self.account).into_column(),
                self.bucket.into_column(col::BUCKET, n),
                self.ts.into_column(col::TS, n),
                Column::new_scalar(col::DAY.into(), Scalar::from(self.day), n),
                Series::from_vec(col::BYTES.into(), self.bytes).into_column(),
                Series::from_vec(col::ROW.into(), self.row).into_column(),
            ],
        )
    }
}

/// A chunk column that keeps one repeated value once, until a different
/// value arrives: the bucket of a source without buckets, the timestamp of
/// a daily export. Fewer columns written record by record is what makes a
/// month-spanning export cheap to sort by day as it is read.
pub(crate) enum Values<T> {
    /// Every value so far is this one (`None`: no value yet), this many times.
    Same(Option<T>, usize),
    /// The values one by one.
    Each(Vec<T>),
}

impl<T> Default for Values<T> {
    fn default() -> Self {
        Values::Same(None, 0)
    }
}

impl<T: NumericNative> Values<T>
where
    T::PolarsType: PolarsNumericType<Native = T>,
    Scalar: From<T>,
{
    #[inline]
    fn push(&mut self, v: T) {
        match self {
            Values::Same(Some(x), n) if *x == v => *n += 1,
            Values::Same(None, n) => *self = Values::Same(Some(v), *n + 1),
            Values::Same(Some(_), _) => {
                self.each().push(v);
            }
            Values::Each(values) => values.push(v),
        }
    }

    /// Appends `n` copies of `v`.
    fn push_n(&mut self, v: T, n: usize) {
        match self {
            Values::Same(Some(x), m) if *x == v => *m += n,
            Values::Same(None, m) => *self = Values::Same(Some(v), *m + n),
            _ => {
                let values = self.each();
                values.resize(values.len() + n, v);
            }
        }
    }

    fn extend_from_slice(&mut self, vs: &[T]) {
        match (&mut *self, vs.first()) {
            (_, None) => {}
            (Values::Same(x, n), Some(&first)) if x.is_none_or(|x| x == first) && vs.iter().all(|&v| v == first) => {
                *self = Values::Same(Some(first), *n + vs.len());
            }
            _ => self.each().extend_from_slice(vs),
        }
    }

    /// The values one by one, spelled out if they were one repeated value.
    fn each(&mut self) -> &mut Vec<T> {
        if let Values::Same(x, n) = *self {
            let mut values = Vec::with_capacity(CHUNK_ROWS);
            if let Some(x) = x {
                values.resize(n, x);
            }
            *self = Values::Each(values);
        }
        match self {
            Values::Each(values) => values,
            Values::Same(..) => unreachable!("spelled out above"),
        }
    }

    fn map(&mut self, f: impl Fn(T) -> T) {
        match self {
            Values::Same(x, _) => *x = x.map(&f),
            Values::Each(values) => values.iter_mut().for_each(|v| *v = f(*v)),
        }
    }

    /// The column of `n` values: a scalar column if they are one value.
    fn into_column(self, name: &str, n: usize) -> Column
    where
        ChunkedArray<T::PolarsType>: IntoColumn,
    {
        match self {
            Values::Same(Some(x), _) => Column::new_scalar(name.into(), Scalar::from(x), n),
            Values::Same(None, _) => ChunkedArray::<T::PolarsType>::from_vec(name.into(), Vec::new()).into_column(),
            Values::Each(values) => ChunkedArray::<T::PolarsType>::from_vec(name.into(), values).into_column(),
        }
    }
}

/// Microseconds in a day.
pub(crate) const US_PER_DAY: i64 = 86_400_000_000;

impl RecordSink {
    fn new(object: String, day: Option<Day>, opts: IngestOptions) -> Self {
        RecordSink {
            object,
            first: opts.month.first_day(),
            end: opts.month.end_day(),
            partition: day.map(|d| (d - 1, d + 1)),
            skip_bad: opts.skip_bad_records,
            findings: Vec::new(),
            accounts: Interner::default(),
            buckets: Interner::default(),
            days: (0..opts.month.days()).map(|_| Vec::new()).collect(),
            outside: 0,
        }
    }

    /// Object key, for messages.
    pub(crate) fn object(&self) -> &str {
        &self.object
    }

    /// The chunk new records of `day` (a day of the month) go to, with room
    /// for at least one.
    #[inline]
    fn chunk(&mut self, day: Day) -> &mut Chunk {
        let chunks = &mut self.days[(day - self.first) as usize];
        if chunks.last().is_none_or(|c| c.room() == 0) {
            chunks.push(Chunk::new(day));
        }
        chunks.last_mut().expect("pushed")
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
        if let Some(day) = self.admit(row, ts_us)? {
            let (a, b) = (self.accounts.id(account), self.buckets.id(bucket));
            self.append(row, a, b, ts_us, day, bytes);
        }
        Ok(())
    }

    /// [`Self::push`] for a record whose account and bucket are already interned.
    #[inline]
    pub(crate) fn push_ids(
        &mut self,
        row: usize,
        account: u32,
        bucket: u32,
        ts_us: i64,
        bytes: u64,
    ) -> Result<(), IngestError> {
        if let Some(day) = self.admit(row, ts_us)? {
            self.append(row, account, bucket, ts_us, day, bytes);
        }
        Ok(())
    }

    /// Adds a batch of records with interned ids, rows numbered from
    /// `first_row`; `bucket` is `None` when every record has the bucket
    /// `no_bucket`. Rows marked in `skip` (already reported as malformed)
    /// are left out. When every record is kept, the columns are copied in
    /// bulk.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn extend(
        &mut self,
        first_row: usize,
        account: &[u32],
        bucket: Option<&[u32]>,
        no_bucket: u32,
        ts: &[i64],
        bytes: &[u64],
        skip: Option<&[bool]>,
    ) -> Result<(), IngestError> {
        let n = ts.len();
        let (lo, hi) = match self.partition {
            Some((lo, hi)) => (lo.max(self.first), hi.min(self.end - 1)),
            None => (self.first, self.end - 1),
        };
        let day = |t: i64| t.div_euclid(US_PER_DAY) as Day;
        let (min, max) = ts.iter().fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)));
        if skip.is_none() && n > 0 && day(min) >= lo && day(max) <= hi {
            if day(min) < day(max) {
                // Every record is kept, on several days: one by one.
                for i in 0..n {
                    let b = bucket.map_or(no_bucket, |b| b[i]);
                    self.append(first_row + i, account[i], b, ts[i], day(ts[i]), bytes[i]);
                }
                return Ok(());
            }
            let d = day(min);
            let mut from = 0;
            while from < n {
                let c = self.chunk(d);
                let to = n.min(from + c.room());
                c.account.extend_from_slice(&account[from..to]);
                match bucket {
                    Some(b) => c.bucket.extend_from_slice(&b[from..to]),
                    None => c.bucket.push_n(no_bucket, to - from),
                }
                c.ts.extend_from_slice(&ts[from..to]);
                c.bytes.extend_from_slice(&bytes[from..to]);
                c.row.extend((first_row + from..first_row + to).map(|r| r as u32));
                from = to;
            }
            return Ok(());
        }
        for i in 0..n {
            if skip.is_some_and(|s| s[i]) {
                continue;
            }
            let b = bucket.map_or(no_bucket, |b| b[i]);
            self.push_ids(first_row + i, account[i], b, ts[i], bytes[i])?;
        }
        Ok(())
    }

    /// The record's day if it is kept: in the object's partition (else
    /// malformed) and in the month (else counted as outside).
    #[inline]
    fn admit(&mut self, row: usize, ts_us: i64) -> Result<Option<Day>, IngestError> {
        let day = ts_us.div_euclid(US_PER_DAY) as Day;
        if let Some((lo, hi)) = self.partition
            && (day < lo || day > hi)
        {
            self.bad(row, "timestamp", self.outside_partition(day))?;
            return Ok(None);
        }
        if day < self.first || day >= self.end {
            self.outside += 1;
            return Ok(None);
        }
        Ok(Some(day))
    }

    #[inline]
    fn append(&mut self, row: usize, account: u32, bucket: u32, ts_us: i64, day: Day, bytes: u64) {
        let c = self.chunk(day);
        c.account.push(account);
        c.bucket.push(bucket);
        c.ts.push(ts_us);
        c.bytes.push(bytes);
        c.row.push(row as u32);
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
                &self.object,
                format!("row {row}, field {field}: {reason}; record skipped"),
            ));
            Ok(())
        } else {
            Err(IngestError::Record { object: self.object.clone(), row, field: field.to_owned(), reason })
        }
    }

    /// A layout error for this object.
    pub(crate) fn layout(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Layout { object: self.object.clone(), reason: reason.into() }
    }

    /// The kept records as frames with the columns of [`record_columns`],
    /// in day order, each of one day, their ids mapped to the
    /// run's `accounts` and `buckets`; and the object's findings.
    fn finish(
        self,
        object_seq: u32,
        accounts: &mut Interner,
        buckets: &mut Interner,
    ) -> PolarsResult<(Vec<DataFrame>, Vec<Finding>)> {
        let to_run = |local: &Interner, run: &mut Interner| local.names().map(|n| run.id(n)).collect::<Vec<u32>>();
        let (account_ids, bucket_ids) = (to_run(&self.accounts, accounts), to_run(&self.buckets, buckets));
        // A frame per chunk: stacking a day's chunks into one frame would
        // spell out their one-value (scalar) columns.
        let mut days = Vec::new();
        for chunk in self.days.into_iter().flatten() {
            let mut frame = chunk.into_frame(&account_ids, &bucket_ids)?;
            let n = frame.height();
            frame.with_column(Column::new_scalar(col::OBJECT.into(), Scalar::from(object_seq), n))?;
            days.push(frame.select(record_columns())?);
        }
        Ok((days, self.findings))
    }
}

/// The columns of a record frame, in order: account and bucket ids
/// (`UInt32`), timestamp (µs, `Int64`), day (`Int32`), bytes (`UInt64`),
/// object and row positions (`UInt32`).
pub fn record_columns() -> [&'static str; 7] {
    [col::ACCOUNT_ID, col::BUCKET, col::TS, col::DAY, col::BYTES, col::OBJECT, col::ROW]
}
