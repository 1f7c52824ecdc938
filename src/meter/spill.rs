//! Spilling open days to local disk: when the raw records of the days still
//! open outgrow their share of the memory budget, [`Spill`] appends them to
//! one file per day in a temporary folder and reads a day back, whole, when
//! it closes. The folder is removed when the run ends, on an error too.
//!
//! A record keeps every column (its object and row among them), so "last
//! wins" and conflicts are exact whatever was spilled, and a day's frames
//! come back in the order they arrived. The format is the columns' native
//! little-endian values, read back only by the process that wrote them.
//! This module moves record frames to disk and back: it must not look at
//! their values.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use polars::prelude::*;

use super::MeterError;
use crate::ingest::record_columns;
use crate::model::Day;

/// Where spilled days are kept.
#[derive(Debug, Default)]
pub(super) struct Spill {
    /// Created at the first spill.
    folder: Option<tempfile::TempDir>,
    /// Days with records on disk.
    days: BTreeMap<Day, PathBuf>,
    /// Bytes written, over the run.
    pub(super) written: u64,
}

impl Spill {
    /// The days with records on disk.
    pub(super) fn days(&self) -> impl Iterator<Item = Day> + '_ {
        self.days.keys().copied()
    }

    /// Whether any day has records on disk.
    pub(super) fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Appends one day's frames (the columns of [`record_columns`]) to its file.
    pub(super) fn write(&mut self, day: Day, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        if self.folder.is_none() {
            let folder = tempfile::Builder::new()
                .prefix("capbill-spill-")
                .tempdir()
                .map_err(|source| MeterError::Spill { path: std::env::temp_dir(), source })?;
            tracing::info!(folder = %folder.path().display(), "spilling usage records of open days to local disk");
            self.folder = Some(folder);
        }
        let folder = self.folder.as_ref().expect("created above").path();
        let path = self.days.entry(day).or_insert_with(|| folder.join(format!("day-{day}.bin"))).clone();
        let io = |source| MeterError::Spill { path: path.clone(), source };
        let file = File::options().create(true).append(true).open(&path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for frame in frames {
            self.written += write_frame(&mut out, &frame).map_err(io)?;
        }
        out.flush().map_err(io)
    }

    /// Reads one day's spilled frames back, in the order written, and
    /// removes its file.
    pub(super) fn take(&mut self, day: Day) -> Result<Vec<DataFrame>, MeterError> {
        let Some(path) = self.days.remove(&day) else {
            return Ok(Vec::new());
        };
        let io = |source| MeterError::Spill { path: path.clone(), source };
        let mut input = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io)?);
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut input).map_err(io)? {
            frames.push(frame);
        }
        std::fs::remove_file(&path).map_err(io)?;
        Ok(frames)
    }
}

/// A column as written: one value for every row, or its values.
const SCALAR: u8 = 0;
const VALUES: u8 = 1;

/// Writes `frame`; returns the bytes written.
fn write_frame(out: &mut impl Write, frame: &DataFrame) -> std::io::Result<u64> {
    let n = frame.height();
    out.write_all(&(n as u64).to_le_bytes())?;
    let mut written = 8;
    for name in record_columns() {
        let column = frame.column(name).map_err(std::io::Error::other)?;
        written += match column.dtype() {
            DataType::UInt32 => write_column::<UInt32Type>(out, column)?,
            DataType::Int32 => write_column::<Int32Type>(out, column)?,
            DataType::Int64 => write_column::<Int64Type>(out, column)?,
            DataType::UInt64 => write_column::<UInt64Type>(out, column)?,
            other => return Err(std::io::Error::other(format!("column {name} of type {other} cannot be spilled"))),
        };
    }
    Ok(written)
}

/// Writes one column: a scalar column as its one value.
fn write_column<T>(out: &mut impl Write, column: &Column) -> std::io::Result<u64>
where
    T: PolarsNumericType,
    T::Native: bytemuck::Pod,
{
    if let Some(scalar) = column.as_scalar_column() {
        let value: T::Native = scalar.scalar().value().extract().ok_or_else(|| std::io::Error::other("a null"))?;
        out.write_all(&[SCALAR])?;
        out.write_all(bytemuck::bytes_of(&value))?;
        return Ok(1 + size_of::<T::Native>() as u64);
    }
    out.write_all(&[VALUES])?;
    let mut written = 1;
    let series = column.as_materialized_series();
    let values: &ChunkedArray<T> = series.unpack::<T>().map_err(std::io::Error::other)?;
    for chunk in values.downcast_iter() {
        let bytes: &[u8] = bytemuck::cast_slice(chunk.values().as_slice());
        out.write_all(bytes)?;
        written += bytes.len() as u64;
    }
    Ok(written)
}

/// Reads the next frame, or `None` at the end.
fn read_frame(input: &mut impl Read) -> std::io::Result<Option<DataFrame>> {
    let mut n = [0u8; 8];
    match input.read_exact(&mut n) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    }
    let n = u64::from_le_bytes(n) as usize;
    let [account, bucket, ts, day, bytes, object, row] = record_columns();
    let columns = vec![
        read_column::<UInt32Type>(input, account, n)?,
        read_column::<UInt32Type>(input, bucket, n)?,
        read_column::<Int64Type>(input, ts, n)?,
        read_column::<Int32Type>(input, day, n)?,
        read_column::<UInt64Type>(input, bytes, n)?,
        read_column::<UInt32Type>(input, object, n)?,
        read_column::<UInt32Type>(input, row, n)?,
    ];
    DataFrame::new(n, columns).map(Some).map_err(std::io::Error::other)
}

/// Reads one column of `n` rows.
fn read_column<T>(input: &mut impl Read, name: &str, n: usize) -> std::io::Result<Column>
where
    T: PolarsNumericType,
    T::Native: bytemuck::Pod,
    Scalar: From<T::Native>,
    ChunkedArray<T>: IntoColumn,
{
    let mut tag = [0u8];
    input.read_exact(&mut tag)?;
    let len = if tag[0] == SCALAR { 1 } else { n };
    let mut values = vec![T::Native::default(); len];
    input.read_exact(bytemuck::cast_slice_mut(&mut values))?;
    Ok(match tag[0] {
        SCALAR => Column::new_scalar(name.into(), Scalar::from(values[0]), n),
        _ => ChunkedArray::<T>::from_vec(name.into(), values).into_column(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::col;

    #[test]
    fn spilled_frames_come_back_equal_in_the_order_written() {
        let spelled = DataFrame::new(
            3,
            vec![
                Column::new(col::ACCOUNT_ID.into(), [1u32, 2, 3]),
                Column::new(col::BUCKET.into(), [0u32, 1, 0]),
                Column::new(col::TS.into(), [10i64, -20, i64::MAX]),
                Column::new_scalar(col::DAY.into(), Scalar::from(20_728i32), 3),
                Column::new(col::BYTES.into(), [0u64, u64::MAX, 7]),
                Column::new_scalar(col::OBJECT.into(), Scalar::from(4u32), 3),
                Column::new(col::ROW.into(), [1u32, 2, 3]),
            ],
        )
        .unwrap();
        let scalars = DataFrame::new(
            2,
            vec![
                Column::new(col::ACCOUNT_ID.into(), [9u32, 8]),
                Column::new_scalar(col::BUCKET.into(), Scalar::from(5u32), 2),
                Column::new_scalar(col::TS.into(), Scalar::from(1_790_899_200_000_000i64), 2),
                Column::new_scalar(col::DAY.into(), Scalar::from(20_728i32), 2),
                Column::new(col::BYTES.into(), [3u64, 4]),
                Column::new_scalar(col::OBJECT.into(), Scalar::from(5u32), 2),
                Column::new(col::ROW.into(), [8u32, 9]),
            ],
        )
        .unwrap();
        let mut spill = Spill::default();
        spill.write(20_728, vec![spelled.clone()]).unwrap();
        spill.write(20_728, vec![scalars.clone()]).unwrap();
        assert_eq!(spill.days().collect::<Vec<_>>(), [20_728]);
        let folder = spill.folder.as_ref().unwrap().path().to_owned();
        let back = spill.take(20_728).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[0].equals(&spelled), "{:?}", back[0]);
        assert!(back[1].equals(&scalars), "{:?}", back[1]);
        // Scalar columns stay scalar: nothing is spelled out on the way back.
        assert!(back[1].column(col::TS).unwrap().as_scalar_column().is_some());
        assert!(spill.is_empty() && spill.take(20_728).unwrap().is_empty());
        assert!(spill.written > 0);
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0, "a day read back leaves no file");
        drop(spill);
        assert!(!folder.exists(), "the folder goes with the spill");
    }
}
