//! Parquet objects read in pieces: an object's footer from its last bytes,
//! its row groups split into runs of about a piece each with the days the
//! statistics of their time column give ([`split`]), and the bytes of such a
//! run as a reader of the whole object ([`Window`]). Fetching the pieces and
//! ordering them is `fetch`'s; decoding them is `parquet`'s.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use super::text::layout_of;
use crate::formats::decoding;
use crate::model::Day;

/// Some row groups of one Parquet object, read on their own: what a large
/// object or one without a day folder is split into, so that its records
/// are handed on as they are read and the days they fall on can be told
/// from the footer alone.
#[derive(Debug, Clone)]
pub(crate) struct RowGroups {
    /// The object's footer.
    pub(crate) metadata: Arc<ParquetMetaData>,
    /// The object's size in bytes.
    pub(crate) size: u64,
    /// Row groups read, in file order.
    pub(crate) groups: Range<usize>,
    /// Rows of the object before the first of them.
    pub(crate) first_row: usize,
    /// The object's bytes that hold them.
    pub(crate) bytes: Range<u64>,
    /// The first and last day their records fall on, from the statistics
    /// of the time column (the sink holds records to it).
    pub(crate) days: (Day, Day),
}

/// Bytes read from the end of a Parquet object for its footer, in one
/// request: a footer rarely needs more (one more request reads the rest).
pub(crate) const FOOTER_GUESS: u64 = 64 << 10;

/// The footer of a Parquet object of `size` bytes from its last bytes
/// `tail`: `Ok(None)` if it cannot be parsed (the reader then reports the
/// object as it is), `Err(n)` if the footer needs the last `n` bytes.
pub(crate) fn footer(tail: &Bytes, size: u64) -> Result<Option<Arc<ParquetMetaData>>, u64> {
    let mut reader = ParquetMetaDataReader::new();
    match decoding(|| reader.try_parse_sized(tail, size)) {
        Ok(()) => Ok(decoding(|| reader.finish()).ok().map(Arc::new)),
        Err(e) => match e.downcast_ref::<ParquetError>() {
            Some(&ParquetError::NeedMoreData(n)) if n as u64 <= size && n as u64 > tail.len() as u64 => Err(n as u64),
            _ => Ok(None),
        },
    }
}

/// Splits an object's row groups into runs of about `piece_bytes`, each
/// with the days its records fall on. A run also ends where a row group
/// begins on a later day than the run's first: a month's export sorted by
/// time is read a day at a time, as day folders are, so that each day can
/// be metered while the next is read (a row group that runs past midnight
/// stays with the day it begins on; row groups that each span the month
/// are cut by size alone). `None` when the days cannot be told
/// from the footer: the time column is text, or a row group has no
/// minimum and maximum for it; the object is then read whole.
pub(crate) fn split(metadata: &Arc<ParquetMetaData>, size: u64, piece_bytes: u64) -> Option<Vec<RowGroups>> {
    let schema = metadata.file_metadata().schema_descr();
    let names = schema.root_schema().get_fields().iter().map(|f| f.name());
    let layout = layout_of(names).ok()?;
    let time = schema.columns().iter().position(|c| c.path().parts() == [layout.time])?;
    let statistic = TimeStatistic::of(schema.column(time).as_ref())?;
    let mut pieces: Vec<RowGroups> = Vec::new();
    let mut first_row = 0;
    for (i, group) in metadata.row_groups().iter().enumerate() {
        let rows = usize::try_from(group.num_rows()).ok()?;
        let stats = group.column(time).statistics();
        let days = match stats.and_then(|s| Some((s.min_bytes_opt()?, s.max_bytes_opt()?))) {
            Some((min, max)) => (statistic.day(min)?, statistic.day(max)?),
            None if rows == 0 => (Day::MAX, Day::MIN),
            None => return None,
        };
        let bytes = group
            .columns()
            .iter()
            .map(|c| c.byte_range())
            .fold((u64::MAX, 0), |(lo, hi), (start, len)| (lo.min(start), hi.max(start.saturating_add(len))));
        let bytes = bytes.0.min(bytes.1)..bytes.1;
        match pieces.last_mut() {
            Some(p)
                if p.bytes.end == bytes.start
                    && bytes.end - p.bytes.start <= piece_bytes
                    && (rows == 0 || days.0 <= p.days.0) =>
            {
                p.groups.end = i + 1;
                p.bytes.end = bytes.end;
                p.days = (p.days.0.min(days.0), p.days.1.max(days.1));
            }
            _ => pieces.push(RowGroups { metadata: metadata.clone(), size, groups: i..i + 1, first_row, bytes, days }),
        }
        first_row += rows;
    }
    // Pieces of empty row groups only hold no day.
    pieces.retain(|p| p.days.0 <= p.days.1);
    Some(pieces)
}

/// How the statistics of a time column are read: Parquet stores them
/// little-endian, as INT32 days (a date) or INT64 ticks (a timestamp).
#[derive(Debug, Clone, Copy)]
enum TimeStatistic {
    /// Days since the epoch.
    Days,
    /// Ticks since the epoch, this many a day.
    Ticks(i128),
}

impl TimeStatistic {
    /// How `column`'s statistics give days, as the reader decodes its
    /// values; `None` for types whose statistics capbill does not read
    /// (text, INT96).
    fn of(column: &parquet::schema::types::ColumnDescriptor) -> Option<TimeStatistic> {
        use parquet::basic::{ConvertedType, LogicalType, TimeUnit as Unit, Type};
        const MS: i128 = 86_400_000;
        match (column.physical_type(), column.logical_type_ref(), column.converted_type()) {
            (Type::INT32, Some(LogicalType::Date), _) | (Type::INT32, None, ConvertedType::DATE) => {
                Some(TimeStatistic::Days)
            }
            (Type::INT64, Some(LogicalType::Timestamp(t)), _) => Some(TimeStatistic::Ticks(match t.unit {
                Unit::MILLIS => MS,
                Unit::MICROS => MS * 1_000,
                Unit::NANOS => MS * 1_000_000,
            })),
            (Type::INT64, None, ConvertedType::TIMESTAMP_MILLIS) => Some(TimeStatistic::Ticks(MS)),
            (Type::INT64, None, ConvertedType::TIMESTAMP_MICROS) => Some(TimeStatistic::Ticks(MS * 1_000)),
            _ => None,
        }
    }

    /// The day of a statistic's value.
    fn day(self, value: &[u8]) -> Option<Day> {
        let days = match self {
            TimeStatistic::Days => i128::from(i32::from_le_bytes(value.try_into().ok()?)),
            TimeStatistic::Ticks(per_day) => i128::from(i64::from_le_bytes(value.try_into().ok()?)).div_euclid(per_day),
        };
        Day::try_from(days).ok()
    }
}

impl RowGroups {
    /// `data`, the object's bytes [`Self::bytes`], as a reader of the object.
    pub(crate) fn window(&self, data: Bytes) -> Window {
        Window { start: self.bytes.start, data, len: self.size }
    }
}

/// The bytes of an object that hold some of its row groups, as a reader
/// of the whole object: arrow-rs asks only for the column chunks of the
/// row groups it reads, which all lie in the window.
#[derive(Clone)]
pub(crate) struct Window {
    /// Offset of `data` in the object.
    start: u64,
    data: Bytes,
    /// The object's size.
    len: u64,
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let rest = self.data.len() as u64 - start.saturating_sub(self.start).min(self.data.len() as u64);
        Ok(self.get_bytes(start, rest as usize)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start.checked_sub(self.start).and_then(|o| usize::try_from(o).ok());
        let to = from.and_then(|f| f.checked_add(length));
        match (from, to) {
            (Some(from), Some(to)) if from <= to && to <= self.data.len() => Ok(self.data.slice(from..to)),
            _ => Err(ParquetError::General(format!(
                "bytes {start}..+{length} are outside the row groups read ({}..{})",
                self.start,
                self.start + self.data.len() as u64
            ))),
        }
    }
}
