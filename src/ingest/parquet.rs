//! Parquet usage objects, decoded with arrow-rs `parquet`.
//!
//! Accepted column types: `storage_account_id` and `bucket` as text;
//! `timestamp` as a timestamp (any unit; zone-less means UTC), a date or
//! text; `date` as a date or text; `bytes` as any integer type or as text
//! of plain digits (read by `text::parse_bytes`, as CSV reads it). Account
//! ids are trimmed like CSV's, once per distinct dictionary value. Nulls,
//! empty account ids, negative bytes and unparsable text are malformed
//! records, reported with their row.
//!
//! This is the one place capbill reads with arrow-rs instead of polars,
//! because it does something polars cannot: it hands out a text column as
//! its Parquet dictionary (keys plus distinct values) without turning every
//! value into a string. Usage exports repeat each account id once per bucket
//! and snapshot (48 times a day in an hourly export), so interning the
//! dictionary's distinct values and mapping keys to ids costs a fraction of
//! decoding and hashing every string, and it is most of what reading such an
//! export costs. Text timestamps are parsed once per distinct value the same
//! way.
//!
//! A new dictionary is matched against the one before it (entries in the
//! same order take its values with one comparison each); the first
//! dictionary of account ids (and buckets) of a piece is matched against
//! the last one any parser mapped to the run's ids ([`super::names`]), so a
//! piece of an export the run has seen the accounts of hashes next to no
//! name.
//!
//! Like every reader, it only hands records (and bad values) to the sink,
//! which decides what is kept.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow_array::{Array, ArrayRef, DictionaryArray, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;

use super::IngestError;
use super::names::{Known, PieceNames};
use super::row_groups::RowGroups;
use super::sink::{RecordSink, US_PER_DAY};
use super::text::{above_largest, layout_of, parse_bytes, parse_instant};
use crate::formats::decoding;

/// Rows decoded at once. A row group's dictionary is mapped to ids once
/// whatever the batches (see [`PerEntry::of`]), and arrow-rs grows a
/// batch's dictionary keys one page at a time, copying the batch so far for
/// each page: a batch's copying grows with the square of its rows, which
/// made 10 × W-hourly (row groups of 1.2 M rows) slower per record than
/// W-hourly (118 k). 64 Ki rows keeps that copying small at any row-group
/// size and bounds the decoded columns' memory.
const BATCH_ROWS: usize = 1 << 16;

const ACCOUNT: &str = "storage_account_id";
const BUCKET: &str = "bucket";
const BYTES: &str = "bytes";

/// Text columns are read as `Dictionary(Int32, Utf8)`.
fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Reads one Parquet object.
pub(crate) fn read(data: Bytes, sink: &mut RecordSink) -> Result<(), IngestError> {
    let meta =
        decoding(|| ArrowReaderMetadata::load(&data, ArrowReaderOptions::new())).map_err(|e| sink.unparsable(e))?;
    read_with(data, meta, None, sink)
}

/// Reads the row groups `part` names from `data`, the object's bytes
/// `part.bytes` (fetched on their own), numbering rows as in the whole object.
pub(crate) fn read_part(data: Bytes, part: &RowGroups, sink: &mut RecordSink) -> Result<(), IngestError> {
    let meta = decoding(|| ArrowReaderMetadata::try_new(part.metadata.clone(), ArrowReaderOptions::new()))
        .map_err(|e| sink.unparsable(e))?;
    read_with(part.window(data), meta, Some(part), sink)
}

/// Decodes the usage columns of `input` (of the row groups of `part`, or
/// all of them) into the sink.
fn read_with<R: ChunkReader + Clone + 'static>(
    input: R,
    meta: ArrowReaderMetadata,
    part: Option<&RowGroups>,
    sink: &mut RecordSink,
) -> Result<(), IngestError> {
    let schema = meta.schema().clone();
    let mut layout = layout_of(schema.fields().iter().map(|f| f.name().as_str())).map_err(|r| sink.layout(r))?;
    let time = layout.time;
    sink.set_time_field(time);
    let type_of = |name: &str| schema.field_with_name(name).map(|f| f.data_type().clone()).ok();
    // A bucket column of nothing but nulls, as pandas writes `bucket=None`,
    // has no type of its own: every record's bucket is "", as without one.
    if layout.bucket && type_of(BUCKET) == Some(DataType::Null) {
        layout.bucket = false;
    }
    let wanted: Vec<&str> =
        [Some(ACCOUNT), layout.bucket.then_some(BUCKET), Some(time), Some(BYTES)].into_iter().flatten().collect();

    // Check the column types before decoding anything.
    for name in [ACCOUNT, BUCKET].into_iter().filter(|n| wanted.contains(n)) {
        let t = type_of(name).expect("in the layout");
        if !is_text(&t) {
            return Err(sink.layout(format!("{name} has type {t}, expected text")));
        }
    }
    let time_type = type_of(time).expect("in the layout");
    if !(is_text(&time_type) || matches!(time_type, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64)) {
        return Err(sink.layout(format!("{time} has type {time_type}, expected a timestamp, a date or text")));
    }
    let bytes_type = type_of(BYTES).expect("in the layout");
    // DECIMAL(p, 0) is how SQL engines and Spark, which have no unsigned
    // 64-bit integer, write one.
    if !(bytes_type.is_integer() || is_text(&bytes_type) || matches!(bytes_type, DataType::Decimal128(_, 0))) {
        return Err(sink.layout(format!(
            "bytes has type {bytes_type}, expected an integer, a decimal without fractional digits or text"
        )));
    }

    // Text columns as dictionaries; only the wanted columns are decoded.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if wanted.contains(&f.name().as_str()) && is_text(f.data_type()) {
                f.as_ref().clone().with_data_type(dictionary())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let options = ArrowReaderOptions::new().with_schema(hinted);
    let meta =
        decoding(|| ArrowReaderMetadata::try_new(meta.metadata().clone(), options)).map_err(|e| sink.unparsable(e))?;
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    // One reader per row group: a batch that spans two row groups mixes two
    // dictionaries, which arrow-rs can only hand out by spelling out every
    // value and hashing it into a new dictionary (most of the time of
    // reading an export whose row groups are smaller than a batch).
    let groups: Vec<usize> = match part {
        Some(part) => part.groups.clone().collect(),
        None => (0..meta.metadata().num_row_groups()).collect(),
    };
    let reader_of = |group: usize| {
        decoding(|| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(input.clone(), meta.clone())
                .with_projection(mask.clone())
                .with_batch_size(BATCH_ROWS)
                .with_row_groups(vec![group])
                .build()
        })
    };

    let mut accounts = DictionaryIds::default();
    let mut buckets = DictionaryIds::default();
    let mut times = DictionaryTimes::default();
    let mut byte_texts = PerEntry::default();
    let no_bucket = sink.buckets.id("");
    let mut offset = part.map_or(0, |p| p.first_row);
    for group in groups {
        let mut reader = reader_of(group).map_err(|e| sink.unparsable(e))?;
        while let Some(batch) = decoding(|| reader.next().transpose()).map_err(|e| sink.unparsable(e))? {
            let n = batch.num_rows();
            let column = |name: &str| batch.column_by_name(name).expect("projected").clone();
            // Malformed values of this batch: (row index, field, reason).
            let mut bad: Bad = Vec::new();
            let account = column(ACCOUNT);
            missing(&account, ACCOUNT, &mut bad);
            let account = accounts.map(&account, &mut sink.accounts, 0, Some((ACCOUNT, &mut bad)));
            let bucket = if layout.bucket {
                Some(buckets.map(&column(BUCKET), &mut sink.buckets, no_bucket, None))
            } else {
                None
            };
            let ts = times.decode(&column(time), time, &mut bad);
            let bytes = byte_counts(&column(BYTES), &mut byte_texts, &mut bad);
            let skip = if bad.is_empty() {
                None
            } else {
                // Reported in row order (a stable sort keeps the column order
                // within a row), one finding per record like every reader: its
                // first bad field.
                bad.sort_by_key(|(i, _, _)| *i);
                let mut skip = vec![false; n];
                for (i, field, reason) in bad {
                    if !std::mem::replace(&mut skip[i], true) {
                        sink.bad(offset + i + 1, field, reason)?;
                    }
                }
                Some(skip)
            };
            sink.extend(offset + 1, &account, bucket.as_deref(), no_bucket, &ts, &bytes, skip.as_deref())?;
            offset += n;
        }
    }
    Ok(())
}

/// Malformed values found while decoding a batch: (row index, field, reason).
type Bad<'a> = Vec<(usize, &'a str, String)>;

/// Records the nulls of `column` as missing values.
fn missing<'a>(column: &ArrayRef, name: &'a str, bad: &mut Bad<'a>) {
    if column.null_count() > 0 {
        bad.extend((0..column.len()).filter(|&i| column.is_null(i)).map(|i| (i, name, "missing".to_owned())));
    }
}

/// A value computed once per entry of a text column's dictionary (an id, a
/// parsed instant), kept while the dictionary stays the same: arrow-rs hands
/// out the same dictionary for every batch of a column chunk, and the row
/// groups of an export often repeat the same dictionary, which a comparison
/// of its bytes finds.
struct PerEntry<T> {
    values: Option<ArrayRef>,
    mapped: Arc<Vec<T>>,
}

impl<T> Default for PerEntry<T> {
    fn default() -> Self {
        PerEntry { values: None, mapped: Arc::new(Vec::new()) }
    }
}

impl<T: Clone> PerEntry<T> {
    /// The value of every entry of `dict`'s dictionary, computed by `f` if
    /// the dictionary is not the one seen last (see [`matched`]); and
    /// whether it was not.
    fn of(&mut self, dict: &DictionaryArray<Int32Type>, f: impl FnMut(&str) -> T) -> (&[T], bool) {
        let new = dict.values().as_string::<i32>();
        let old = self
            .values
            .as_ref()
            .map(|v| v.as_string::<i32>())
            .filter(|old| old.null_count() == 0 && new.null_count() == 0 && old.len() == self.mapped.len());
        // Every batch of a column chunk gets its own array of the chunk's
        // dictionary, over the same buffers: their addresses tell that it
        // is the same without comparing its bytes again for each batch (at
        // 500,000 accounts, 7 MB of offsets and names a batch: 4 % of the
        // CPU time of 10 × W-hourly in `perf`).
        let same = self.values.as_ref().is_some_and(|v| Arc::ptr_eq(v, dict.values()))
            || old.is_some_and(|old| {
                (std::ptr::eq(old.value_offsets(), new.value_offsets())
                    && std::ptr::eq(old.value_data(), new.value_data()))
                    || (old.value_offsets() == new.value_offsets() && old.value_data() == new.value_data())
            });
        if !same {
            self.mapped = Arc::new(match old {
                Some(old) if !old.is_empty() && !new.is_empty() => matched(old, &self.mapped, new, f),
                _ => (0..new.len()).map(|i| new.value(i)).map(f).collect(),
            });
        }
        self.values = Some(dict.values().clone());
        (&self.mapped, !same)
    }

    /// Takes `values` (a dictionary of `Utf8` text) and their `mapped`
    /// values as the dictionary seen last.
    fn seed(&mut self, values: ArrayRef, mapped: Arc<Vec<T>>) {
        self.values = Some(values);
        self.mapped = mapped;
    }
}

/// Entries compared one by one after the last match before a dictionary is
/// given up on: a few new or dropped entries between matches are skipped.
const LOOKAHEAD: usize = 16;
/// Searches of the whole old dictionary for an entry: to find where the
/// new one starts, and once more if that entry was new.
const SCANS: usize = 2;
/// Entries not found before matching stops, unless most entries matched.
const MISSES: usize = 64;
/// Entries after the last match compared with the old ones at once (their
/// lengths, then their bytes in one comparison): an unchanged stretch of a
/// dictionary costs a comparison per this many entries.
const RUN: usize = 64;

/// The value of every entry of `new` (a dictionary that differs from
/// `old`, whose entries have the values `old_mapped`), computed by `f` only
/// for the entries it cannot take from `old`.
///
/// A new dictionary is matched against the old one in its order: an export
/// sorted by time and account starts each row group's dictionary at another
/// account and then lists the same accounts in the same order (the old
/// dictionary rotated), give or take accounts that appear or disappear
/// from one day to the next. A run of entries equal to the [`RUN`] after
/// the last match takes their values with one byte comparison; an entry
/// equal to one of the [`LOOKAHEAD`] entries after the last match with a
/// comparison or a few; only the others go through `f` (a hash lookup, which at 500,000
/// accounts misses the cache nearly every time). The old dictionary is
/// searched whole at most [`SCANS`] times, and matching stops after
/// [`MISSES`] misses that outnumber the matches, so a dictionary unlike the
/// old one costs a few comparisons per entry at most.
fn matched<T: Clone>(old: &StringArray, old_mapped: &[T], new: &StringArray, mut f: impl FnMut(&str) -> T) -> Vec<T> {
    let n = old.len();
    let find = |value: &str, from: usize, len: usize| (0..len).map(|k| (from + k) % n).find(|&j| old.value(j) == value);
    let (old_ends, new_ends) = (old.value_offsets(), new.value_offsets());
    let (old_text, new_text) = (old.value_data(), new.value_data());
    // Whether new entries `i..i + k` are old entries `j..j + k` (`j + k <=
    // n`): the same lengths, and the same bytes in one comparison.
    let same_run = |i: usize, j: usize, k: usize| {
        let (a, b) = (old_ends[j], new_ends[i]);
        (1..=k).all(|t| old_ends[j + t] - a == new_ends[i + t] - b)
            && old_text[a as usize..old_ends[j + k] as usize] == new_text[b as usize..new_ends[i + k] as usize]
    };
    // The old entry expected next, after the last match.
    let mut next: Option<usize> = None;
    let (mut hits, mut misses, mut scans) = (0usize, 0usize, 0usize);
    let mut mapped = Vec::with_capacity(new.len());
    let mut i = 0;
    while i < new.len() {
        let trying = misses <= MISSES || misses <= hits;
        if trying && let Some(j) = next {
            // A run of entries that follow the last match, compared at once.
            let k = RUN.min(new.len() - i).min(n - j);
            if k > 1 && same_run(i, j, k) {
                mapped.extend_from_slice(&old_mapped[j..j + k]);
                next = Some((j + k) % n);
                hits += k;
                i += k;
                continue;
            }
        }
        let value = new.value(i);
        let mut at = None;
        if trying {
            at = next.and_then(|j| find(value, j, LOOKAHEAD.min(n)));
            if at.is_none() && scans < SCANS {
                scans += 1;
                at = find(value, 0, n);
            }
        }
        match at {
            Some(j) => {
                mapped.push(old_mapped[j].clone());
                next = Some((j + 1) % n);
                hits += 1;
            }
            None => {
                mapped.push(f(value));
                misses += 1;
            }
        }
        i += 1;
    }
    mapped
}

/// Maps a text column's dictionary keys to ids, naming each dictionary
/// entry once. The first dictionary of a piece is matched against the last
/// one any parser shared (see [`PieceNames::share`]); every new one is
/// shared in turn.
#[derive(Default)]
struct DictionaryIds(PerEntry<Option<u32>>);

impl DictionaryIds {
    /// One id per row; `null_id` for a null. With `required` (the field and
    /// the batch's malformed values), each distinct value is trimmed once
    /// and an empty one is a missing value of its rows, as in CSV (with id
    /// `null_id`); without it, values are taken as they are. A column is
    /// always read with or always without `required`, as what `names`
    /// shares must be.
    fn map<'a>(
        &mut self,
        column: &ArrayRef,
        names: &mut PieceNames,
        null_id: u32,
        required: Option<(&'a str, &mut Bad<'a>)>,
    ) -> Vec<u32> {
        let dict: &DictionaryArray<Int32Type> = column.as_dictionary();
        if self.0.values.is_none()
            && let Some(Known { values, ids }) = names.last()
        {
            self.0.seed(values, ids);
        }
        let trim = required.is_some();
        let (_, changed) = self.0.of(dict, |name| {
            if trim {
                let name = name.trim();
                (!name.is_empty()).then(|| names.id(name))
            } else {
                Some(names.id(name))
            }
        });
        if changed {
            let values = self.0.values.clone().expect("just mapped");
            names.share(Known { values, ids: self.0.mapped.clone() });
        }
        let ids: &[Option<u32>] = &self.0.mapped;
        let keys = dict.keys();
        let out: Vec<u32> = if keys.null_count() == 0 {
            keys.values().iter().map(|&k| ids[k as usize].unwrap_or(null_id)).collect()
        } else {
            keys.iter().map(|k| k.and_then(|k| ids[k as usize]).unwrap_or(null_id)).collect()
        };
        if let Some((field, bad)) = required
            && ids.iter().any(Option::is_none)
        {
            let empty = keys.iter().enumerate().filter(|(_, k)| k.is_some_and(|k| ids[k as usize].is_none()));
            bad.extend(empty.map(|(i, _)| (i, field, "missing".to_owned())));
        }
        out
    }
}

/// Decodes the time column to microseconds since the epoch; text is parsed
/// once per distinct dictionary value.
#[derive(Default)]
struct DictionaryTimes(PerEntry<Result<i64, String>>);

impl DictionaryTimes {
    /// One instant per row; for a null or bad value, an entry in `bad` (and a 0).
    fn decode<'a>(&mut self, column: &ArrayRef, name: &'a str, bad: &mut Bad<'a>) -> Vec<i64> {
        missing(column, name, bad);
        let scaled = |f: &dyn Fn(usize) -> i64| -> Vec<i64> { (0..column.len()).map(f).collect() };
        match column.data_type() {
            DataType::Timestamp(unit, _) => match unit {
                TimeUnit::Second => {
                    let a = column.as_primitive::<TimestampSecondType>();
                    scaled(&|i| a.value(i).saturating_mul(1_000_000))
                }
                TimeUnit::Millisecond => {
                    let a = column.as_primitive::<TimestampMillisecondType>();
                    scaled(&|i| a.value(i).saturating_mul(1_000))
                }
                TimeUnit::Microsecond => column.as_primitive::<TimestampMicrosecondType>().values().to_vec(),
                TimeUnit::Nanosecond => {
                    let a = column.as_primitive::<TimestampNanosecondType>();
                    scaled(&|i| a.value(i).div_euclid(1_000))
                }
            },
            DataType::Date32 => {
                let a = column.as_primitive::<Date32Type>();
                // Saturating like the timestamp units: a date beyond ±292,000
                // years is outside any month, never wrapped into one.
                scaled(&|i| i64::from(a.value(i)).saturating_mul(US_PER_DAY))
            }
            DataType::Date64 => {
                let a = column.as_primitive::<Date64Type>();
                scaled(&|i| a.value(i).saturating_mul(1_000))
            }
            _ => {
                let dict: &DictionaryArray<Int32Type> = column.as_dictionary();
                let (parsed, _) = self.0.of(dict, parse_instant);
                let mut out = Vec::with_capacity(dict.len());
                for (i, k) in dict.keys().iter().enumerate() {
                    out.push(match k.map(|k| &parsed[k as usize]) {
                        Some(Ok(t)) => *t,
                        Some(Err(e)) => {
                            bad.push((i, name, e.clone()));
                            0
                        }
                        None => 0,
                    });
                }
                out
            }
        }
    }
}

/// The bytes column as `u64`; for a missing, negative or unparsable value,
/// an entry in `bad` (and a 0). Text is parsed once per distinct
/// dictionary value, by the rule CSV uses.
fn byte_counts(column: &ArrayRef, texts: &mut PerEntry<Result<u64, String>>, bad: &mut Bad<'_>) -> Vec<u64> {
    missing(column, BYTES, bad);
    if let DataType::Dictionary(..) = column.data_type() {
        let dict: &DictionaryArray<Int32Type> = column.as_dictionary();
        let (parsed, _) = texts.of(dict, parse_bytes);
        let mut out = Vec::with_capacity(dict.len());
        for (i, k) in dict.keys().iter().enumerate() {
            out.push(match k.map(|k| &parsed[k as usize]) {
                Some(Ok(b)) => *b,
                Some(Err(e)) => {
                    bad.push((i, BYTES, e.clone()));
                    0
                }
                None => 0,
            });
        }
        return out;
    }
    macro_rules! unsigned {
        ($t:ty) => {{ column.as_primitive::<$t>().values().iter().map(|&v| u64::from(v)).collect() }};
    }
    macro_rules! signed {
        ($t:ty) => {{
            let a = column.as_primitive::<$t>();
            let mut out = Vec::with_capacity(a.len());
            for (i, &v) in a.values().iter().enumerate() {
                let v = i64::from(v);
                if v < 0 && a.is_valid(i) {
                    bad.push((i, BYTES, format!("{v} is negative")));
                }
                out.push(v.max(0) as u64);
            }
            out
        }};
    }
    match column.data_type() {
        DataType::UInt64 => column.as_primitive::<UInt64Type>().values().to_vec(),
        DataType::Int64 => {
            let a = column.as_primitive::<Int64Type>();
            if a.values().iter().all(|&v| v >= 0) {
                a.values().iter().map(|&v| v as u64).collect()
            } else {
                signed!(Int64Type)
            }
        }
        DataType::UInt32 => unsigned!(UInt32Type),
        DataType::UInt16 => unsigned!(UInt16Type),
        DataType::UInt8 => unsigned!(UInt8Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int8 => signed!(Int8Type),
        DataType::Decimal128(_, 0) => {
            let a = column.as_primitive::<Decimal128Type>();
            let mut out = Vec::with_capacity(a.len());
            for (i, &v) in a.values().iter().enumerate() {
                let fits = u64::try_from(v);
                if fits.is_err() && a.is_valid(i) {
                    bad.push((i, BYTES, if v < 0 { format!("{v} is negative") } else { above_largest(v) }));
                }
                out.push(fits.unwrap_or(0));
            }
            out
        }
        other => unreachable!("bytes type {other} was checked to be an integer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestOptions;
    use crate::ingest::names::RunNames;
    use crate::ingest::row_groups::{footer, split};
    use crate::ingest::sink::Bounds;
    use crate::model::{BillingMonth, Day, Finding, Interner, col};
    use arrow_array::{Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use parquet::file::metadata::ParquetMetaData;
    use polars::prelude::DataFrame;

    fn parquet(columns: Vec<(&str, ArrayRef)>) -> Bytes {
        parquet_with(columns, None)
    }

    fn parquet_with(
        columns: Vec<(&str, ArrayRef)>,
        props: Option<parquet::file::properties::WriterProperties>,
    ) -> Bytes {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut out = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), props).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(out)
    }

    /// The (account, bucket, bytes) of every record, by name.
    fn named_records(data: Bytes) -> Vec<(String, u64)> {
        let (df, findings, accounts) = read_object(data, false);
        assert!(findings.is_empty());
        let df = df.unwrap();
        let ids = df.column(col::ACCOUNT_ID).unwrap().u32().unwrap().clone();
        let bytes = df.column(col::BYTES).unwrap().u64().unwrap().clone();
        ids.into_no_null_iter().zip(bytes.into_no_null_iter()).map(|(a, b)| (accounts.name(a).to_owned(), b)).collect()
    }

    #[test]
    fn plain_pages_and_changing_dictionaries_read_the_same_records() {
        // 5 row groups of 3 rows: the dictionaries repeat, change, and repeat.
        let names = ["a", "b", "c", "a", "b", "c", "x", "y", "a", "x", "y", "a", "b", "c", "a"];
        let n = names.len();
        let columns = || {
            vec![
                ("storage_account_id", Arc::new(StringArray::from(names.to_vec())) as ArrayRef),
                ("timestamp", Arc::new(TimestampMillisecondArray::from(vec![OCT2_MS; n]).with_timezone("UTC"))),
                ("bytes", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()))),
            ]
        };
        let expected: Vec<(String, u64)> = names.iter().zip(0u64..).map(|(a, b)| (a.to_string(), b)).collect();
        let small_groups = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(3));
        let dictionary = parquet_with(columns(), Some(small_groups.clone().build()));
        let meta = ArrowReaderMetadata::load(&dictionary, ArrowReaderOptions::new()).unwrap();
        assert_eq!(meta.metadata().num_row_groups(), 5);
        assert_eq!(named_records(dictionary), expected);
        let plain = parquet_with(columns(), Some(small_groups.set_dictionary_enabled(false).build()));
        assert_eq!(named_records(plain), expected);
    }

    #[test]
    fn a_row_group_read_in_several_batches_hashes_each_name_once() {
        // One row group of 2.5 batches, 1,000 accounts in turn.
        let n = BATCH_ROWS * 5 / 2;
        let names: Vec<String> = (0..n).map(|i| format!("sa {}", i % 1000)).collect();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(n)).build();
        let data = parquet_with(
            vec![
                ("storage_account_id", Arc::new(StringArray::from(names.clone())) as ArrayRef),
                ("timestamp", Arc::new(TimestampMillisecondArray::from(vec![OCT2_MS; n]).with_timezone("UTC"))),
                ("bytes", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()))),
            ],
            Some(props),
        );
        let pieces = split(&footer_of(&data), data.len() as u64, u64::MAX).unwrap();
        assert_eq!((pieces.len(), pieces[0].groups.clone()), (1, 0..1));
        let run = RunNames::default();
        let mut sink = piece_sink(&pieces[0], &run);
        read_piece(&data, &pieces[0], &mut sink);
        assert_eq!(sink.accounts.lookups(), 1000);
        let ids = run_ids(sink);
        let accounts = run.accounts.take();
        assert!(ids.iter().map(|&id| accounts.name(id)).eq(names.iter().map(String::as_str)));
    }

    #[test]
    fn dictionaries_that_rotate_the_last_one_or_differ_from_it_name_the_same_accounts() {
        // Row groups of 3 rows: the same accounts rotated, one with a new
        // account in the middle, one with none of the earlier ones, and one
        // that repeats an account (whose entry is matched once).
        let names = ["a", "b", "c", "b", "c", "a", "c", "a", "b", "c", "x", "a", "d", "e", "f", "e", "e", "d"];
        let n = names.len();
        let columns = vec![
            ("storage_account_id", Arc::new(StringArray::from(names.to_vec())) as ArrayRef),
            ("timestamp", Arc::new(TimestampMillisecondArray::from(vec![OCT2_MS; n]).with_timezone("UTC"))),
            ("bytes", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()))),
        ];
        let groups = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(3));
        let data = parquet_with(columns, Some(groups.build()));
        let expected: Vec<(String, u64)> = names.iter().zip(0u64..).map(|(a, b)| (a.to_string(), b)).collect();
        assert_eq!(named_records(data), expected);
    }

    /// The values `matched` gives `new` from `old` (each entry's value its
    /// own text), and how many entries it computed (could not match).
    fn matching(old: &[&str], new: &[&str]) -> (Vec<String>, usize) {
        let (old_values, new_values) = (StringArray::from(old.to_vec()), StringArray::from(new.to_vec()));
        let old_mapped: Vec<String> = old.iter().map(|s| s.to_string()).collect();
        let mut computed = 0;
        let mapped = matched(&old_values, &old_mapped, &new_values, |v| {
            computed += 1;
            v.to_owned()
        });
        (mapped, computed)
    }

    #[test]
    fn a_dictionary_takes_the_values_of_the_last_one_rotated_or_with_entries_changed() {
        let names: Vec<String> = (0..100).map(|i| format!("sa-{i}")).collect();
        let old: Vec<&str> = names.iter().map(String::as_str).collect();
        let check = |new: &[&str], computed: usize| {
            let (mapped, n) = matching(&old, new);
            assert_eq!(mapped, new.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(n, computed, "{new:?}");
        };
        let rotated: Vec<&str> = old[37..].iter().chain(&old[..37]).copied().collect();
        check(&rotated, 0);
        // A new first entry, every tenth entry dropped, two more new ones.
        let mut changed = vec!["new-0"];
        changed.extend(rotated.iter().enumerate().filter(|(i, _)| i % 10 != 3).map(|(_, s)| *s));
        changed.insert(50, "new-1");
        changed.insert(70, "new-2");
        check(&changed, 3);
        // 30 entries dropped in a row, more than the lookahead: found again.
        let gap: Vec<&str> = rotated[..10].iter().chain(&rotated[40..]).copied().collect();
        check(&gap, 0);
        // Nothing in common: every entry computed.
        let other: Vec<String> = (0..100).map(|i| format!("other-{i}")).collect();
        check(&other.iter().map(String::as_str).collect::<Vec<_>>(), 100);
        // Shorter, longer, and with a repeated entry.
        check(&rotated[..5], 0);
        check(&[&rotated[..], &["sa-7", "new-3"]].concat(), 1);
        // Entries compared a run at a time must have the same lengths, not
        // only the same bytes one after the other.
        assert_eq!(
            matching(&["x", "ab", "c", "d"], &["x", "a", "bc", "d"]),
            (vec!["x", "a", "bc", "d"].into_iter().map(String::from).collect(), 2)
        );
    }

    #[test]
    fn a_long_dictionary_with_scattered_changes_computes_only_its_new_entries() {
        let names: Vec<String> = (0..5000).map(|i| format!("sa-{}", i * 7)).collect();
        let old: Vec<&str> = names.iter().map(String::as_str).collect();
        let added: Vec<String> = (0..40).map(|i| format!("added-{i}")).collect();
        let mut new: Vec<&str> = Vec::new();
        for (i, name) in old[1777..].iter().chain(&old[..1777]).enumerate() {
            if i % 131 == 0 {
                new.push(&added[i / 131]);
            }
            if i % 97 != 5 {
                new.push(name);
            }
        }
        let (mapped, computed) = matching(&old, &new);
        assert_eq!(mapped, new);
        assert_eq!(computed, 39);
    }

    /// A Parquet object of one row group per name list (each as long as
    /// the first), on Oct 2, bytes numbering the rows; and its pieces of
    /// one row group each.
    fn one_piece_per_group(groups: &[&[&str]]) -> (Bytes, Vec<RowGroups>) {
        let names: Vec<&str> = groups.concat();
        let n = names.len();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(groups[0].len()))
            .build();
        let data = parquet_with(
            vec![
                ("storage_account_id", Arc::new(StringArray::from(names)) as ArrayRef),
                ("timestamp", Arc::new(TimestampMillisecondArray::from(vec![OCT2_MS; n]).with_timezone("UTC"))),
                ("bytes", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()))),
            ],
            Some(props),
        );
        let pieces = split(&footer_of(&data), data.len() as u64, 1).unwrap();
        assert_eq!(pieces.len(), groups.len());
        (data, pieces)
    }

    #[test]
    fn pieces_end_where_a_row_group_begins_on_a_later_day() {
        const DAY: i64 = 86_400_000;
        // Row groups of 4 rows: October 2, October 2 running past midnight
        // into the 3rd, the 3rd twice, the 4th, then one out of order (the
        // 2nd to the 4th), which joins the run before it.
        let groups: [[i64; 4]; 6] = [
            [0, 1, 2, 3],
            [4, 5, 6, DAY + 1],
            [DAY + 2; 4],
            [DAY + 3; 4],
            [2 * DAY; 4],
            [2 * DAY, 0, DAY, 2 * DAY + 1],
        ];
        let ts: Vec<i64> = groups.iter().flatten().map(|t| OCT2_MS + t).collect();
        let n = ts.len();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(4)).build();
        let data = parquet_with(
            vec![
                ("storage_account_id", Arc::new(StringArray::from(vec!["a"; n])) as ArrayRef),
                ("timestamp", Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC"))),
                ("bytes", Arc::new(Int64Array::from(vec![1; n]))),
            ],
            Some(props),
        );
        let footer = footer_of(&data);
        let oct2 = Day::try_from(OCT2_MS.div_euclid(DAY)).unwrap();
        let runs = |piece_bytes| {
            split(&footer, data.len() as u64, piece_bytes)
                .unwrap()
                .iter()
                .map(|p| (p.groups.clone(), p.days.0 - oct2, p.days.1 - oct2, p.first_row))
                .collect::<Vec<_>>()
        };
        assert_eq!(runs(u64::MAX), [(0..2, 0, 1, 0), (2..4, 1, 1, 8), (4..6, 0, 2, 16)]);
        // The size still cuts a day's run.
        assert_eq!(runs(1).len(), 6);
    }

    /// A sink for `piece`, taking the run's names as they are now.
    fn piece_sink(piece: &RowGroups, run: &RunNames) -> RecordSink {
        let bounds = Bounds::Statistics(piece.days.0, piece.days.1);
        RecordSink::new("m.parquet".into(), bounds, options(false), run)
    }

    fn read_piece(data: &Bytes, piece: &RowGroups, sink: &mut RecordSink) {
        read_part(data.slice(piece.bytes.start as usize..piece.bytes.end as usize), piece, sink).unwrap();
    }

    /// The run's account id of every record of a finished piece, in order.
    fn run_ids(sink: RecordSink) -> Vec<u32> {
        let (days, _) = sink.finish(0).unwrap();
        days.iter().flat_map(|df| df.column(col::ACCOUNT_ID).unwrap().u32().unwrap().into_no_null_iter()).collect()
    }

    // Row groups of 4 rows: the accounts a to d, the same rotated, with c
    // dropped and x added, and four accounts none of the others name.
    const PIECES: [&[&str]; 4] =
        [&["a", "b", "c", "d"], &["c", "d", "a", "b"], &["d", "a", "x", "b"], &["e", "f", "g", "h"]];

    #[test]
    fn a_piece_matches_its_first_dictionary_against_the_last_one_an_earlier_piece_shared() {
        let (data, pieces) = one_piece_per_group(&PIECES);
        let run = RunNames::default();
        let (mut lookups, mut ids) = (Vec::new(), Vec::new());
        for p in &pieces {
            let mut sink = piece_sink(p, &run);
            read_piece(&data, p, &mut sink);
            lookups.push(sink.accounts.lookups());
            ids.extend(run_ids(sink));
        }
        // Only the first piece's names, x and the last piece's are hashed.
        assert_eq!(lookups, [4, 0, 1, 4]);
        let accounts = run.accounts.take();
        assert_eq!(ids.iter().map(|&id| accounts.name(id)).collect::<Vec<_>>(), PIECES.concat());
        assert_eq!(accounts.names().collect::<Vec<_>>(), ["a", "b", "c", "d", "x", "e", "f", "g", "h"]);
    }

    #[test]
    fn pieces_read_before_an_earlier_one_is_handed_on_get_the_same_ids() {
        let (data, pieces) = one_piece_per_group(&PIECES);
        let run = RunNames::default();
        // Pieces 1 and 2 begin and are read before piece 0 is handed on:
        // nothing is shared yet, and every name is new to them.
        let mut sinks: Vec<RecordSink> = pieces[..3].iter().map(|p| piece_sink(p, &run)).collect();
        for i in [2, 1, 0] {
            read_piece(&data, &pieces[i], &mut sinks[i]);
        }
        assert_eq!(sinks.iter().map(|s| s.accounts.lookups()).collect::<Vec<_>>(), [4, 4, 4]);
        let mut ids = Vec::new();
        for sink in sinks {
            ids.extend(run_ids(sink));
        }
        // Piece 2's dictionary is shared with run ids once it is handed on.
        assert_eq!(*run.accounts.last().expect("shared").ids, [Some(3), Some(0), Some(4), Some(1)]);
        let mut last = piece_sink(&pieces[3], &run);
        read_piece(&data, &pieces[3], &mut last);
        ids.extend(run_ids(last));
        let accounts = run.accounts.take();
        assert_eq!(ids.iter().map(|&id| accounts.name(id)).collect::<Vec<_>>(), PIECES.concat());
        assert_eq!(accounts.names().collect::<Vec<_>>(), ["a", "b", "c", "d", "x", "e", "f", "g", "h"]);
    }

    /// 6 hourly records a day on Oct 2, 3 and 4 in row groups of 4 rows,
    /// bytes numbering the rows, timestamps in `unit`.
    fn three_days(text_time: bool) -> Bytes {
        let hours: Vec<i64> = (0..18).map(|i| OCT2_MS + (i / 6) * 86_400_000 + (i % 6) * 3_600_000).collect();
        let time: ArrayRef = if text_time {
            let text: Vec<String> =
                hours.iter().map(|ms| chrono::DateTime::from_timestamp_millis(*ms).unwrap().to_rfc3339()).collect();
            Arc::new(StringArray::from(text))
        } else {
            Arc::new(TimestampMillisecondArray::from(hours).with_timezone("UTC"))
        };
        let groups = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(4));
        parquet_with(
            vec![
                ("storage_account_id", Arc::new(StringArray::from(vec!["sa-1"; 18])) as ArrayRef),
                ("timestamp", time),
                ("bytes", Arc::new(Int64Array::from((1..=18).collect::<Vec<_>>()))),
            ],
            Some(groups.build()),
        )
    }

    /// The footer of a whole object, read from its last bytes as a run does.
    fn footer_of(data: &Bytes) -> Arc<ParquetMetaData> {
        let size = data.len() as u64;
        let tail = |n: u64| data.slice((size - n.min(size)) as usize..);
        match footer(&tail(16), size) {
            Ok(m) => m.expect("a footer"),
            Err(n) => footer(&tail(n), size).unwrap().expect("a footer"),
        }
    }

    #[test]
    fn row_groups_are_split_into_pieces_with_the_days_their_statistics_give() {
        let data = three_days(false);
        let meta = footer_of(&data);
        assert_eq!(meta.num_row_groups(), 5);
        let oct = |d: i32| october().first_day() + d - 1;
        // One row group per piece: groups of rows 1-4, 5-8, 9-12, 13-16, 17-18.
        let pieces = split(&meta, data.len() as u64, 1).unwrap();
        let got: Vec<_> = pieces.iter().map(|p| (p.groups.clone(), p.first_row, p.days)).collect();
        assert_eq!(
            got,
            [
                (0..1, 0, (oct(2), oct(2))),
                (1..2, 4, (oct(2), oct(3))),
                (2..3, 8, (oct(3), oct(3))),
                (3..4, 12, (oct(4), oct(4))),
                (4..5, 16, (oct(4), oct(4))),
            ]
        );
        // Each piece read from its own bytes numbers its rows as the whole
        // object does (bytes = row number here).
        for p in &pieces {
            let window = data.slice(p.bytes.start as usize..p.bytes.end as usize);
            let bounds = Bounds::Statistics(p.days.0, p.days.1);
            let mut sink = RecordSink::new("m.parquet".into(), bounds, options(false), &RunNames::default());
            read_part(window, p, &mut sink).unwrap();
            let (days, _) = sink.finish(0).unwrap();
            let df = days.into_iter().reduce(|a, b| a.vstack(&b).unwrap()).unwrap();
            let rows: Vec<u32> = df.column(col::ROW).unwrap().u32().unwrap().into_no_null_iter().collect();
            let bytes: Vec<u64> = df.column(col::BYTES).unwrap().u64().unwrap().into_no_null_iter().collect();
            assert_eq!(rows.iter().map(|&r| u64::from(r)).collect::<Vec<_>>(), bytes);
            assert_eq!(rows[0] as usize, p.first_row + 1);
        }
        // Pieces as large as the object: one piece per day a row group
        // begins on (the second runs past midnight and stays with the 2nd).
        let whole = split(&meta, data.len() as u64, u64::MAX).unwrap();
        let got: Vec<_> = whole.iter().map(|p| (p.groups.clone(), p.days)).collect();
        assert_eq!(got, [(0..2, (oct(2), oct(3))), (2..3, (oct(3), oct(3))), (3..5, (oct(4), oct(4)))]);
    }

    #[test]
    fn a_text_time_column_tells_no_days_and_the_object_is_read_whole() {
        let data = three_days(true);
        assert!(split(&footer_of(&data), data.len() as u64, 1).is_none());
        assert_eq!(footer(&Bytes::from_static(b"not parquet at all"), 18), Ok(None));
    }

    #[test]
    fn a_record_outside_its_row_groups_statistics_is_malformed() {
        let oct2 = october().first_day() + 1;
        let bounds = Bounds::Statistics(oct2, oct2);
        let mut sink = RecordSink::new("m.parquet".into(), bounds, options(false), &RunNames::default());
        let err = sink.push(7, "sa-1", "", (OCT2_MS + 86_400_000) * 1000, 1).unwrap_err().to_string();
        assert_eq!(
            err,
            "usage object m.parquet row 7, field timestamp: a record of 2026-10-03 in row groups whose statistics \
             say their timestamp runs from 2026-10-02 to 2026-10-02: the file's statistics are wrong"
        );
    }

    fn october() -> BillingMonth {
        "2026-10".parse().unwrap()
    }

    /// Ingestion of October, skipping bad records if asked.
    fn options(skip_bad_records: bool) -> IngestOptions {
        let memory_budget = crate::config::DEFAULT_MEMORY_BUDGET;
        IngestOptions { month: october(), skip_bad_records, concurrency: 1, memory_budget }
    }

    /// Reads an object under `dt=2026-10-02`, in skip mode if asked.
    fn read_object(data: Bytes, skip_bad: bool) -> (Result<DataFrame, IngestError>, Vec<Finding>, Interner) {
        let month = october();
        let opts = options(skip_bad);
        let bounds = Bounds::Folder(month.first_day() + 1);
        let mut sink = RecordSink::new("dt=2026-10-02/p.parquet".into(), bounds, opts, &RunNames::default());
        if let Err(e) = read(data, &mut sink) {
            return (Err(e), Vec::new(), Interner::default());
        }
        let (days, findings, accounts, _) = sink.finish_alone().unwrap();
        let df = days.into_iter().reduce(|a, b| a.vstack(&b).unwrap()).unwrap_or_default();
        (Ok(df), findings, accounts)
    }

    const OCT2_MS: i64 = 1_790_899_200_000; // 2026-10-02T00:00:00Z

    #[test]
    fn typed_columns_become_interned_records() {
        let data = parquet(vec![
            ("storage_account_id", Arc::new(StringArray::from(vec!["sa-1", "sa-2", "sa-1"])) as ArrayRef),
            ("bucket", Arc::new(StringArray::from(vec![Some("a"), None, Some("b")]))),
            (
                "timestamp",
                Arc::new(
                    TimestampMillisecondArray::from(vec![OCT2_MS, OCT2_MS + 3_600_000, OCT2_MS]).with_timezone("UTC"),
                ),
            ),
            ("bytes", Arc::new(Int32Array::from(vec![5, 6, 7]))),
        ]);
        let (df, findings, accounts) = read_object(data, false);
        let df = df.unwrap();
        assert!(findings.is_empty());
        assert_eq!(accounts.names().collect::<Vec<_>>(), ["sa-1", "sa-2"]);
        let ids: Vec<u32> = df.column(col::ACCOUNT_ID).unwrap().u32().unwrap().into_no_null_iter().collect();
        assert_eq!(ids, [0, 1, 0]);
        let ts: Vec<i64> = df.column(col::TS).unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(ts, [OCT2_MS * 1000, (OCT2_MS + 3_600_000) * 1000, OCT2_MS * 1000]);
        let bytes: Vec<u64> = df.column(col::BYTES).unwrap().u64().unwrap().into_no_null_iter().collect();
        assert_eq!(bytes, [5, 6, 7]);
        let buckets: Vec<u32> = df.column(col::BUCKET).unwrap().u32().unwrap().into_no_null_iter().collect();
        assert!(buckets[0] != buckets[1] && buckets[1] != buckets[2] && buckets[0] != buckets[2]);
    }

    #[test]
    fn bad_values_name_their_row_and_field() {
        let data = || {
            parquet(vec![
                ("storage_account_id", Arc::new(StringArray::from(vec![Some("sa-1"), None, Some("sa-1")])) as ArrayRef),
                ("timestamp", Arc::new(StringArray::from(vec!["2026-10-02T01:00:00Z", "2026-10-02", "yesterday"]))),
                ("bytes", Arc::new(Int64Array::from(vec![Some(-4), Some(1), Some(2)]))),
            ])
        };
        let (r, _, _) = read_object(data(), false);
        match r {
            Err(IngestError::Record { row, field, reason, .. }) => {
                assert_eq!((row, field.as_str(), reason.as_str()), (1, "bytes", "-4 is negative"));
            }
            other => panic!("expected a record error, got {other:?}"),
        }
        let (df, findings, _) = read_object(data(), true);
        assert_eq!(df.unwrap().height(), 0);
        let details: Vec<&str> = findings.iter().map(|f| f.detail.as_str()).collect();
        assert_eq!(details.len(), 3, "{details:?}");
        assert!(details.iter().any(|d| d.starts_with("row 1, field bytes: -4 is negative")), "{details:?}");
        assert!(details.iter().any(|d| d.starts_with("row 2, field storage_account_id: missing")), "{details:?}");
        assert!(details.iter().any(|d| d.starts_with("row 3, field timestamp:")), "{details:?}");
    }

    #[test]
    fn wrong_column_types_are_layout_errors() {
        let data = parquet(vec![
            ("storage_account_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("timestamp", Arc::new(StringArray::from(vec!["2026-10-02T01:00:00Z"]))),
            ("bytes", Arc::new(Int64Array::from(vec![1]))),
        ]);
        let (r, _, _) = read_object(data, false);
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("storage_account_id has type Int64, expected text"), "{msg}");
        let data = parquet(vec![
            ("storage_account_id", Arc::new(StringArray::from(vec!["sa"])) as ArrayRef),
            ("timestamp", Arc::new(StringArray::from(vec!["2026-10-02T01:00:00Z"]))),
            ("bytes", Arc::new(arrow_array::BooleanArray::from(vec![true]))),
        ]);
        let msg = read_object(data, false).0.unwrap_err().to_string();
        assert!(msg.contains("bytes has type Boolean, expected an integer, a decimal"), "{msg}");
        let data = parquet(vec![
            ("storage_account_id", Arc::new(StringArray::from(vec!["sa"])) as ArrayRef),
            ("timestamp", Arc::new(StringArray::from(vec!["2026-10-02T01:00:00Z"]))),
            ("bytes", Arc::new(arrow_array::Decimal128Array::from(vec![150]).with_precision_and_scale(20, 2).unwrap())),
        ]);
        let msg = read_object(data, false).0.unwrap_err().to_string();
        assert!(msg.contains("bytes has type Decimal128(20, 2), expected"), "{msg}");
    }

    #[test]
    fn decimal_byte_counts_and_an_all_null_bucket_column_are_read_as_exporters_write_them() {
        // DECIMAL(20, 0) holds every u64 (Spark, DuckDB and SQL engines have no
        // unsigned 64-bit integer); a bucket column of nulls only (pandas with
        // `bucket=None`) has Arrow type Null: every bucket is "".
        let max = i128::from(u64::MAX);
        let decimals = |v: Vec<i128>| {
            Arc::new(arrow_array::Decimal128Array::from(v).with_precision_and_scale(20, 0).unwrap()) as ArrayRef
        };
        let data = |bytes: Vec<i128>| {
            parquet(vec![
                ("storage_account_id", Arc::new(StringArray::from(vec!["sa-1", "sa-1"])) as ArrayRef),
                ("bucket", Arc::new(arrow_array::NullArray::new(2))),
                ("timestamp", Arc::new(StringArray::from(vec!["2026-10-02T01:00:00Z", "2026-10-02T02:00:00Z"]))),
                ("bytes", decimals(bytes)),
            ])
        };
        let (df, findings, _) = read_object(data(vec![max, 7]), false);
        let df = df.unwrap();
        assert!(findings.is_empty());
        let bytes: Vec<u64> = df.column(col::BYTES).unwrap().u64().unwrap().into_no_null_iter().collect();
        assert_eq!(bytes, [u64::MAX, 7]);
        let (r, _, _) = read_object(data(vec![max + 1, -1]), false);
        match r {
            Err(IngestError::Record { row, field, reason, .. }) => {
                assert_eq!((row, field.as_str()), (1, "bytes"));
                assert!(reason.contains("is above 18446744073709551615"), "{reason}");
            }
            other => panic!("expected a record error, got {other:?}"),
        }
    }

    /// The same three rows as a dictionary-encoded and as a plain Parquet file.
    fn both_encodings(columns: impl Fn() -> Vec<(&'static str, ArrayRef)>) -> [Bytes; 2] {
        let plain = parquet::file::properties::WriterProperties::builder().set_dictionary_enabled(false).build();
        [parquet(columns()), parquet_with(columns(), Some(plain))]
    }

    #[test]
    fn account_ids_are_trimmed_and_an_empty_one_is_missing() {
        let columns = || {
            vec![
                (
                    "storage_account_id",
                    Arc::new(StringArray::from(vec![" sa-1 ", "sa-1", "   ", "sa-2\t"])) as ArrayRef,
                ),
                ("date", Arc::new(StringArray::from(vec!["2026-10-02"; 4]))),
                ("bytes", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
            ]
        };
        for data in both_encodings(columns) {
            match read_object(data.clone(), false).0 {
                Err(IngestError::Record { row, field, reason, .. }) => {
                    assert_eq!((row, field.as_str(), reason.as_str()), (3, "storage_account_id", "missing"));
                }
                other => panic!("expected a record error, got {other:?}"),
            }
            let (df, findings, accounts) = read_object(data, true);
            let details: Vec<&str> = findings.iter().map(|f| f.detail.as_str()).collect();
            assert_eq!(details.len(), 1, "{details:?}");
            assert!(details[0].starts_with("row 3, field storage_account_id: missing"), "{details:?}");
            assert_eq!(accounts.names().collect::<Vec<_>>(), ["sa-1", "sa-2"]);
            let df = df.unwrap();
            let ids: Vec<u32> = df.column(col::ACCOUNT_ID).unwrap().u32().unwrap().into_no_null_iter().collect();
            let bytes: Vec<u64> = df.column(col::BYTES).unwrap().u64().unwrap().into_no_null_iter().collect();
            assert_eq!((ids, bytes), (vec![0, 0, 1], vec![1, 2, 4]));
        }
    }

    #[test]
    fn a_text_bytes_column_is_read_as_csv_reads_it() {
        let columns = || {
            vec![
                ("storage_account_id", Arc::new(StringArray::from(vec!["sa-1"; 4])) as ArrayRef),
                ("date", Arc::new(StringArray::from(vec!["2026-10-02"; 4]))),
                ("bytes", Arc::new(StringArray::from(vec![Some("12"), Some(" 7 "), Some("-3"), Some("1e3")]))),
            ]
        };
        for data in both_encodings(columns) {
            let (df, findings, _) = read_object(data, true);
            let details: Vec<&str> = findings.iter().map(|f| f.detail.as_str()).collect();
            assert_eq!(details.len(), 2, "{details:?}");
            assert!(details[0].starts_with("row 3, field bytes: \"-3\" is negative"), "{details:?}");
            assert!(
                details[1].starts_with("row 4, field bytes: \"1e3\" is not an unsigned 64-bit integer"),
                "{details:?}"
            );
            let bytes: Vec<u64> = df.unwrap().column(col::BYTES).unwrap().u64().unwrap().into_no_null_iter().collect();
            assert_eq!(bytes, [12, 7]);
        }
    }
}
