//! The record sink: where the readers put one object's records. Owns the
//! bad-record policy (stop, or a finding under `--skip-bad-records`), which
//! records are admitted (inside the object's day partition, else malformed;
//! inside the month, else counted), and the columnar builders that sort
//! records by day as they arrive, in chunks of [`CHUNK_ROWS`].
//!
//! It must not parse any encoding (the readers do) nor fetch anything. Ids
//! are the run's, except those of names new to the run, which are the
//! piece's own (see [`super::names`]) until [`RecordSink::finish`] maps them.

use polars::prelude::*;

use super::names::{PieceNames, RunNames, run_id};
use super::{IngestError, IngestOptions, record_columns};
use crate::model::{Day, Finding, FindingKind, col};

/// Where readers put one object's records: keeps those of the month, counts
/// the others, decides what a bad record does, and names accounts and
/// buckets by the run's ids, or for names the run did not know when the
/// object began, by ids of its own (mapped to the run's when the object is
/// handed on, so that objects can be parsed in parallel).
pub(crate) struct RecordSink {
    object: String,
    first: Day,
    end: Day,
    /// The days the object (or piece of it) may hold.
    bounds: Bounds,
    /// The field a record's time comes from (`timestamp` or `date`), named
    /// when the time falls outside the object's day folder.
    time_field: &'static str,
    skip_bad: bool,
    pub(super) findings: Vec<Finding>,
    pub(crate) accounts: PieceNames,
    pub(crate) buckets: PieceNames,
    /// Kept records by day of the month (index: day − `first`), each day in
    /// chunks of at most [`CHUNK_ROWS`]. Sorting records by day as they are
    /// read costs one index per record; an object that spans the month (a
    /// partner API export) would otherwise be split by day afterwards, in a
    /// second pass over all its columns.
    pub(super) days: Vec<Vec<Chunk>>,
    /// Records read that fall outside the month.
    pub(super) outside: u64,
    /// The first and last day of those records.
    pub(super) outside_days: Option<(Day, Day)>,
}

/// The days an object, or the piece of one being read, may hold records
/// of; a record of another day is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bounds {
    /// Any day: nothing tells.
    Any,
    /// The object is under the folder of this day: that day's records and
    /// those of the day before and after (records at midnight).
    Folder(Day),
    /// Parquet row groups whose time column's statistics span these days.
    Statistics(Day, Day),
}

impl Bounds {
    /// What the folders of `key` say: a day folder, or any day.
    pub(crate) fn of_key(key: &str) -> Bounds {
        match super::prune::key_date(key) {
            Some(super::prune::KeyDate::Day(d)) => Bounds::Folder(d),
            _ => Bounds::Any,
        }
    }

    /// The days `[lo, hi]` records may fall on; `None`: any day.
    pub(crate) fn days(self) -> Option<(Day, Day)> {
        match self {
            Bounds::Any => None,
            Bounds::Folder(d) => Some((d - 1, d + 1)),
            Bounds::Statistics(lo, hi) => Some((lo, hi)),
        }
    }

    /// The first day records may fall on.
    pub(crate) fn first_day(self) -> Day {
        self.days().map_or(Day::MIN, |(lo, _)| lo)
    }
}

/// Records per chunk of a sink. Chunks of this size are allocated and freed
/// over and over, and the allocator serves them from memory it keeps; one
/// vector per object would be a fresh mapping each time, which the kernel
/// zeroes page by page (a fifth of the CPU time of a large month).
pub(super) const CHUNK_ROWS: usize = 1 << 16;

/// Columns of up to [`CHUNK_ROWS`] records of one day.
pub(super) struct Chunk {
    day: Day,
    pub(super) account: Vec<u32>,
    bucket: Values<u32>,
    pub(super) ts: Values<i64>,
    pub(super) bytes: Vec<u64>,
    pub(super) row: Vec<u32>,
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

    pub(super) fn len(&self) -> usize {
        self.account.len()
    }

    fn room(&self) -> usize {
        CHUNK_ROWS - self.len()
    }

    /// The chunk as a record frame without the object column, the ids of
    /// names new to the run mapped to `account_ids` and `bucket_ids` (the
    /// run ids of the object's new names; `None`: it had none).
    fn into_frame(mut self, account_ids: Option<&[u32]>, bucket_ids: Option<&[u32]>) -> PolarsResult<DataFrame> {
        let n = self.len();
        if let Some(ids) = account_ids {
            self.account.iter_mut().for_each(|a| *a = run_id(*a, ids));
        }
        if let Some(ids) = bucket_ids {
            self.bucket.map(|b| run_id(b, ids));
        }
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

/// A record's day for a message: its date, or for a timestamp beyond the
/// calendar's years (a Parquet timestamp near the limits of `i64`, which
/// [`crate::model::date_of`] cannot turn into a date) its day number.
fn day_text(day: Day) -> String {
    // Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
    const EPOCH_FROM_CE: Day = 719_163;
    day.checked_add(EPOCH_FROM_CE)
        .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
        .map_or_else(|| format!("day {day} from 1970-01-01 (beyond the calendar)"), |d| d.to_string())
}

/// Microseconds in a day.
pub(crate) const US_PER_DAY: i64 = 86_400_000_000;

impl RecordSink {
    /// A sink for one object (or piece) whose names are taken from `names`
    /// as they are now.
    pub(super) fn new(object: String, bounds: Bounds, opts: IngestOptions, names: &RunNames) -> Self {
        RecordSink {
            object,
            first: opts.month.first_day(),
            end: opts.month.end_day(),
            bounds,
            time_field: "timestamp",
            skip_bad: opts.skip_bad_records,
            findings: Vec::new(),
            accounts: names.accounts.piece(),
            buckets: names.buckets.piece(),
            days: (0..opts.month.days()).map(|_| Vec::new()).collect(),
            outside: 0,
            outside_days: None,
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
        let (lo, hi) = match self.bounds.days() {
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
        if let Some((lo, hi)) = self.bounds.days()
            && (day < lo || day > hi)
        {
            self.bad(row, self.time_field, self.outside_partition(day))?;
            return Ok(None);
        }
        if day < self.first || day >= self.end {
            self.outside += 1;
            self.outside_days = Some(self.outside_days.map_or((day, day), |(lo, hi)| (lo.min(day), hi.max(day))));
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
        match self.bounds {
            Bounds::Folder(d) => format!(
                "a record of {} in an object under the folder of {}: a day folder holds that day's records and those of the day before and after",
                day_text(day),
                crate::model::date_of(d)
            ),
            Bounds::Statistics(lo, hi) => format!(
                "a record of {} in row groups whose statistics say their {} runs from {} to {}: the file's statistics are wrong",
                day_text(day),
                self.time_field,
                day_text(lo),
                day_text(hi)
            ),
            Bounds::Any => unreachable!("no partition without bounds"),
        }
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

    /// A line that is not a JSON object: an error that keeps the parser's
    /// reason as its source, or a finding under `--skip-bad-records`.
    pub(crate) fn bad_json(&mut self, row: usize, source: serde_json::Error) -> Result<(), IngestError> {
        if self.skip_bad {
            self.bad(row, "(record)", format!("not a JSON object: {source}"))
        } else {
            Err(IngestError::Json { object: self.object.clone(), row, source })
        }
    }

    /// Names the field records' times come from in this object.
    pub(crate) fn set_time_field(&mut self, field: &'static str) {
        self.time_field = field;
    }

    /// A layout error for this object.
    pub(crate) fn layout(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Layout { object: self.object.clone(), reason: reason.into() }
    }

    /// This object cannot be parsed as its format, for the parser's reason.
    pub(crate) fn unparsable(&self, source: impl Into<crate::formats::Damaged>) -> IngestError {
        IngestError::Unparsable { object: self.object.clone(), source: source.into() }
    }

    /// The kept records as frames with the columns of [`record_columns`],
    /// in day order, each of one day, every id the run's (names new to the
    /// run get their run ids here); and the object's findings. Objects are
    /// finished in streaming order.
    pub(super) fn finish(self, object_seq: u32) -> PolarsResult<(Vec<DataFrame>, Vec<Finding>)> {
        let (account_ids, bucket_ids) = (self.accounts.finish(), self.buckets.finish());
        // A frame per chunk: stacking a day's chunks into one frame would
        // spell out their one-value (scalar) columns.
        let mut days = Vec::new();
        for chunk in self.days.into_iter().flatten() {
            let mut frame = chunk.into_frame(account_ids.as_deref(), bucket_ids.as_deref())?;
            let n = frame.height();
            frame.with_column(Column::new_scalar(col::OBJECT.into(), Scalar::from(object_seq), n))?;
            days.push(frame.select(record_columns())?);
        }
        Ok((days, self.findings))
    }
}

#[cfg(test)]
impl RecordSink {
    /// [`Self::finish`] of a sink whose run names are its own (made with a
    /// fresh [`RunNames`]), with the run's accounts and buckets.
    pub(crate) fn finish_alone(
        self,
    ) -> PolarsResult<(Vec<DataFrame>, Vec<Finding>, crate::model::Interner, crate::model::Interner)> {
        let (accounts, buckets) = (self.accounts.run(), self.buckets.run());
        let (days, findings) = self.finish(0)?;
        Ok((days, findings, accounts.take(), buckets.take()))
    }
}
