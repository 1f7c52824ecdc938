//! Spilling open days to local disk: when the raw records of the days still
//! open outgrow their share of the memory budget, [`Spill`] appends them to
//! files in a temporary folder, one per day and range of account ids
//! ([`RANGE_BITS`]), and hands a day's files over ([`SpilledDay`]) when it
//! closes. The folder is removed when the run ends, on an error too. A run
//! that is killed (SIGTERM from a scheduler, SIGKILL from the OOM killer)
//! cannot remove it: the run holds a lock on the folder while it lives
//! (`flock`, which the kernel drops with the process), and the next run
//! that spills removes every folder whose lock is free ([`sweep_abandoned`]).
//!
//! A record keeps every column (its object and row among them), so "last
//! wins" and conflicts are exact whatever was spilled. All records of one
//! account and day are in one file, in the order they arrived, so a day
//! larger than memory can be read back and reduced one range of accounts at
//! a time. The format is the columns' native little-endian values, read back
//! only by the process that wrote them. This module moves record frames to
//! disk and back: it must not look at their values beyond the account id
//! that names a record's range.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use polars::prelude::*;

use super::MeterError;
use crate::ingest::record_columns;
use crate::model::{Day, col};

/// A range of account ids holds `1 << RANGE_BITS` ids: 65,536 accounts of
/// hourly records with two buckets are about 3 M records, 88 MB, a day.
pub(super) const RANGE_BITS: u32 = 16;

/// Spill folders are named `capbill-spill-XXXXXX` in the temporary folder.
const FOLDER_PREFIX: &str = "capbill-spill-";
/// The file in a spill folder its run holds locked while it lives.
const OWNER_LOCK: &str = "owner.lock";
/// A folder whose lock is free is left alone while it changed within this
/// long: a run locks its folder right after creating it.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Where spilled days are kept.
#[derive(Debug)]
pub(super) struct Spill {
    /// Created at the first spill, with its lock file held (see [`OWNER_LOCK`]).
    folder: Option<(tempfile::TempDir, File)>,
    /// Days with records on disk.
    days: BTreeMap<Day, SpilledDay>,
    /// Account ids per range: `1 << bits`.
    bits: u32,
    /// Bytes written, over the run.
    pub(super) written: u64,
}

impl Default for Spill {
    fn default() -> Self {
        Spill::with_range_bits(RANGE_BITS)
    }
}

/// One day's records on disk: a file per range of account ids (the range is
/// `id >> bits`), each with the bytes written to it. Its files are in the
/// spill's folder, which outlives it.
#[derive(Debug, Default)]
pub(super) struct SpilledDay {
    ranges: BTreeMap<u32, (PathBuf, u64)>,
    bits: u32,
}

impl SpilledDay {
    /// Bytes on disk.
    pub(super) fn bytes(&self) -> u64 {
        self.ranges.values().map(|(_, b)| b).sum()
    }

    /// Account ids per range: `1 << bits`.
    pub(super) fn bits(&self) -> u32 {
        self.bits
    }

    /// The ranges with records, in order, with their bytes on disk.
    pub(super) fn ranges(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.ranges.iter().map(|(&r, &(_, b))| (r, b))
    }

    /// Reads one range's frames back, in the order written, and removes its
    /// file; none if the range has no records.
    pub(super) fn take(&mut self, range: u32) -> Result<Vec<DataFrame>, MeterError> {
        let Some((path, _)) = self.ranges.remove(&range) else {
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

impl Spill {
    /// A spill whose ranges hold `1 << bits` account ids (tests use small ones).
    pub(super) fn with_range_bits(bits: u32) -> Self {
        Spill { folder: None, days: BTreeMap::new(), bits, written: 0 }
    }

    /// The days with records on disk.
    pub(super) fn days(&self) -> impl Iterator<Item = Day> + '_ {
        self.days.keys().copied()
    }

    /// Whether `day` has records on disk.
    pub(super) fn has(&self, day: Day) -> bool {
        self.days.contains_key(&day)
    }

    /// Whether any day has records on disk.
    pub(super) fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Appends one day's frames (the columns of [`record_columns`]), each
    /// cut by range of account ids, to the day's files.
    pub(super) fn write(&mut self, day: Day, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        if self.folder.is_none() {
            let temp = std::env::temp_dir();
            sweep_abandoned(&temp);
            let folder = tempfile::Builder::new()
                .prefix(FOLDER_PREFIX)
                .tempdir_in(&temp)
                .map_err(|source| MeterError::Spill { path: temp.clone(), source })?;
            let lock = folder.path().join(OWNER_LOCK);
            let io = |source| MeterError::Spill { path: lock.clone(), source };
            let owner = File::create(&lock).map_err(io)?;
            rustix::fs::flock(&owner, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| io(e.into()))?;
            tracing::info!(folder = %folder.path().display(), "spilling usage records of open days to local disk");
            self.folder = Some((folder, owner));
        }
        let folder = self.folder.as_ref().expect("created above").0.path();
        let bits = self.bits;
        let spilled = self.days.entry(day).or_insert_with(|| SpilledDay { ranges: BTreeMap::new(), bits });
        let mut files: BTreeMap<u32, BufWriter<File>> = BTreeMap::new();
        for frame in frames {
            for (range, part) in split_by_range(&frame, bits)? {
                let (path, bytes) =
                    spilled.ranges.entry(range).or_insert_with(|| (folder.join(format!("day-{day}-{range}.bin")), 0));
                let io = |source| MeterError::Spill { path: path.clone(), source };
                let out = match files.entry(range) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let file = File::options().create(true).append(true).open(&*path).map_err(io)?;
                        e.insert(BufWriter::with_capacity(1 << 20, file))
                    }
                };
                let n = write_frame(out, &part).map_err(io)?;
                *bytes += n;
                self.written += n;
            }
        }
        for (range, mut out) in files {
            out.flush().map_err(|source| MeterError::Spill { path: spilled.ranges[&range].0.clone(), source })?;
        }
        Ok(())
    }

    /// Hands over one day's files (removed from the spill); `None` if the
    /// day has no records on disk.
    pub(super) fn take(&mut self, day: Day) -> Option<SpilledDay> {
        self.days.remove(&day)
    }
}

/// Removes the spill folders under `temp` that no run holds: left by runs
/// that were killed before they could remove them. A folder whose lock is
/// held is in use; one without a lock file, or that changed within the
/// last ten seconds, may be a run's that is only starting; both are left alone.
/// Failures are logged and skipped: sweeping is housekeeping, not the run's work.
pub(super) fn sweep_abandoned(temp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(FOLDER_PREFIX) || !path.is_dir() {
            continue;
        }
        let Ok(lock) = File::open(path.join(OWNER_LOCK)) else { continue };
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // a live run holds it
        }
        let recent = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().map_or(true, |age| age < ABANDONED_AFTER))
            .unwrap_or(true);
        if recent {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::warn!(folder = %path.display(), "removed the spill folder of a run that was killed"),
            Err(e) => tracing::warn!(folder = %path.display(), error = %e, "cannot remove an abandoned spill folder"),
        }
    }
}

/// The records of `frame` by range of account ids (`id >> bits`): one frame
/// per range, in range order, each keeping the records' order; a column
/// that is one scalar stays one.
pub(super) fn split_by_range(frame: &DataFrame, bits: u32) -> PolarsResult<Vec<(u32, DataFrame)>> {
    if frame.height() == 0 {
        return Ok(Vec::new());
    }
    let ids = frame.column(col::ACCOUNT_ID)?.u32()?;
    let range = |id: u32| id.checked_shr(bits).unwrap_or(0);
    let (lo, hi) = (ids.min().map_or(0, range), ids.max().map_or(0, range));
    if lo == hi {
        return Ok(vec![(lo, frame.clone())]);
    }
    let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); (hi - lo) as usize + 1];
    for (i, id) in ids.into_no_null_iter().enumerate() {
        rows[(range(id) - lo) as usize].push(i as IdxSize);
    }
    let mut parts = Vec::new();
    for (r, idx) in (lo..).zip(rows) {
        if !idx.is_empty() {
            parts.push((r, frame.take(&IdxCa::from_vec("idx".into(), idx))?));
        }
    }
    Ok(parts)
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
    fn only_folders_no_live_run_holds_and_that_no_run_just_made_are_swept() {
        let temp = tempfile::tempdir().unwrap();
        let make = |name: &str, lock: bool, age_s: u64| {
            let dir = temp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("day-1-0.bin"), b"records").unwrap();
            if lock {
                File::create(dir.join(OWNER_LOCK)).unwrap();
            }
            let then = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
            File::open(&dir).unwrap().set_modified(then).unwrap();
            dir
        };
        let abandoned = make("capbill-spill-dead01", true, 3600);
        let held = make("capbill-spill-live01", true, 3600);
        let fresh = make("capbill-spill-new001", true, 0);
        let unlocked = make("capbill-spill-old001", false, 3600);
        let other = make("someone-else", true, 3600);
        // A live run holds its lock (a second open file, as another process would).
        let holder = File::open(held.join(OWNER_LOCK)).unwrap();
        rustix::fs::flock(&holder, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        sweep_abandoned(temp.path());
        assert!(!abandoned.exists(), "a folder no run holds is removed");
        for kept in [&held, &fresh, &unlocked, &other] {
            assert!(kept.join("day-1-0.bin").exists(), "{} is kept", kept.display());
        }
        drop(holder);
    }

    #[test]
    fn a_spill_holds_its_folder_locked_until_it_is_dropped() {
        let mut spill = Spill::with_range_bits(4);
        spill.write(20_728, vec![spelled()]).unwrap();
        let folder = spill.folder.as_ref().unwrap().0.path().to_path_buf();
        let probe = File::open(folder.join(OWNER_LOCK)).unwrap();
        assert!(rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err(), "held");
        drop(probe);
        drop(spill);
        assert!(!folder.exists(), "removed when the run ends");
    }

    /// Three records with every column spelled out but the day and object.
    fn spelled() -> DataFrame {
        DataFrame::new(
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
        .unwrap()
    }

    #[test]
    fn spilled_frames_come_back_equal_in_the_order_written() {
        let spelled = spelled();
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
        let folder = spill.folder.as_ref().unwrap().0.path().to_owned();
        let mut day = spill.take(20_728).unwrap();
        // Ids below 2^16: one range.
        assert_eq!(day.ranges().map(|(r, _)| r).collect::<Vec<_>>(), [0]);
        assert_eq!(day.bytes(), spill.written);
        let back = day.take(0).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[0].equals(&spelled), "{:?}", back[0]);
        assert!(back[1].equals(&scalars), "{:?}", back[1]);
        // Scalar columns stay scalar: nothing is spelled out on the way back.
        assert!(back[1].column(col::TS).unwrap().as_scalar_column().is_some());
        assert!(spill.is_empty() && spill.take(20_728).is_none() && day.take(0).unwrap().is_empty());
        assert!(spill.written > 0);
        let left: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [OWNER_LOCK], "a day read back leaves no file but the run's lock");
        drop(spill);
        assert!(!folder.exists(), "the folder goes with the spill");

        // Ranges of two ids: 1 | 2, 3 | 8, 9. Each range keeps its records
        // in the order written, frame after frame.
        let mut spill = Spill::with_range_bits(1);
        spill.write(20_728, vec![spelled.clone(), scalars.clone()]).unwrap();
        spill.write(20_728, vec![spelled.clone()]).unwrap();
        let folder = spill.folder.as_ref().unwrap().0.path().to_owned();
        let mut day = spill.take(20_728).unwrap();
        assert_eq!(day.ranges().map(|(r, _)| r).collect::<Vec<_>>(), [0, 1, 4]);
        let rows = |f: &DataFrame, keep: &[u32]| {
            let ids = f.column(col::ACCOUNT_ID).unwrap().u32().unwrap();
            f.filter(&ids.into_no_null_iter().map(|a| keep.contains(&a)).collect()).unwrap()
        };
        let back = day.take(1).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(|f| f.equals(&rows(&spelled, &[2, 3]))));
        let back = day.take(4).unwrap();
        assert!(back.len() == 1 && back[0].equals(&scalars));
        assert!(back[0].column(col::BUCKET).unwrap().as_scalar_column().is_some());
        assert!(day.take(0).unwrap().iter().all(|f| f.equals(&rows(&spelled, &[1]))));
        assert_eq!(day.ranges().count(), 0);
        drop((day, spill));
        assert!(!folder.exists(), "the folder goes with the spill");
    }
}
