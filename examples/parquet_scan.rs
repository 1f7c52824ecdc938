//! The floor of reading hourly usage Parquet with the parquet crate alone:
//! decodes the four columns capbill reads (`storage_account_id`, `bucket`,
//! `timestamp`, `bytes`) into Arrow record batches, text columns kept as
//! dictionaries (as capbill reads them), counts the rows and sums `bytes`.
//! Nothing else: no ids, no metering. Used by `scripts/bench` as the
//! "parquet crate" scan floor; see bench/README.md.
//!
//! Usage: cargo run --release --example parquet_scan -- [--threads N] PATH...
//!
//! Each PATH is a Parquet file or a folder searched recursively for `*.parquet`.
//! The row groups of all files are shared out among N threads (default: all
//! cores). Prints one JSON object on stdout.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

/// The columns read, as in capbill's hourly Parquet reader.
const COLUMNS: [&str; 4] = ["storage_account_id", "bucket", "timestamp", "bytes"];
/// Rows decoded at once (capbill's batch size).
const BATCH_ROWS: usize = 1 << 18;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one thread found.
#[derive(Default)]
struct Totals {
    rows: u64,
    bytes: i128,
    /// Dictionary entries decoded (per batch) for the two text columns.
    dictionary_values: u64,
    max_timestamp_us: Option<i64>,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.dictionary_values += other.dictionary_values;
        self.max_timestamp_us = self.max_timestamp_us.max(other.max_timestamp_us);
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.rows += batch.num_rows() as u64;
        for name in ["storage_account_id", "bucket"] {
            let column = batch.column_by_name(name).ok_or_else(|| format!("no column {name}"))?;
            if let DataType::Dictionary(..) = column.data_type() {
                self.dictionary_values += Array::len(column.as_any_dictionary().values()) as u64;
            }
        }
        let bytes = batch.column_by_name("bytes").ok_or("no column bytes")?;
        self.bytes += match bytes.data_type() {
            DataType::Int64 => bytes.as_primitive::<Int64Type>().iter().flatten().map(i128::from).sum::<i128>(),
            DataType::UInt64 => bytes.as_primitive::<UInt64Type>().iter().flatten().map(i128::from).sum::<i128>(),
            other => return Err(format!("bytes has type {other}, expected Int64 or UInt64").into()),
        };
        let ts = batch.column_by_name("timestamp").ok_or("no column timestamp")?;
        if let DataType::Timestamp(TimeUnit::Microsecond, _) = ts.data_type() {
            let max = ts.as_primitive::<TimestampMicrosecondType>().iter().flatten().max();
            self.max_timestamp_us = self.max_timestamp_us.max(max);
        }
        Ok(())
    }
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// A file's metadata with the text columns hinted as `Dictionary(Int32, Utf8)`,
/// and the projection of the four columns.
fn open(path: &Path) -> Result<(ArrowReaderMetadata, ProjectionMask), Error> {
    let file = File::open(path)?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
    let schema = meta.schema().clone();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if COLUMNS.contains(&f.name().as_str()) && is_text(f.data_type()) {
                let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                f.as_ref().clone().with_data_type(dict)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let meta = ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(hinted))?;
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| COLUMNS.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    if roots.len() != COLUMNS.len() {
        return Err(format!("{}: expected the columns {}", path.display(), COLUMNS.join(", ")).into());
    }
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    Ok((meta, mask))
}

fn scan_row_group(
    path: &Path,
    meta: &ArrowReaderMetadata,
    mask: &ProjectionMask,
    group: usize,
) -> Result<Totals, Error> {
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(File::open(path)?, meta.clone())
        .with_projection(mask.clone())
        .with_row_groups(vec![group])
        .with_batch_size(BATCH_ROWS)
        .build()?;
    let mut totals = Totals::default();
    for batch in reader {
        totals.batch(&batch?)?;
    }
    Ok(totals)
}

/// The `*.parquet` files under a folder, recursively, in name order.
fn collect(folder: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(folder)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if entry.extension().is_some_and(|e| e == "parquet") {
            out.push(entry);
        }
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let start = Instant::now();
    let mut threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().ok_or("--threads needs a value")?.parse()?,
            "-h" | "--help" => {
                eprintln!("usage: parquet_scan [--threads N] PATH...");
                return Ok(());
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let mut files = Vec::new();
    for p in &paths {
        if p.is_dir() {
            collect(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err("no Parquet files given".into());
    }

    // Footers first (on one thread, they are small), then every row group of every
    // file is one unit of work, taken in order by whichever thread is free.
    let opened = files.iter().map(|f| open(f.as_path())).collect::<Result<Vec<_>, _>>()?;
    let units: Vec<(usize, usize)> = opened
        .iter()
        .enumerate()
        .flat_map(|(i, (meta, _))| (0..meta.metadata().num_row_groups()).map(move |g| (i, g)))
        .collect();
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, units.len().max(1));
    let totals = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Totals, Error> {
                    let mut totals = Totals::default();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(i, g)) = units.get(k) else { break };
                        let (meta, mask) = &opened[i];
                        totals.add(scan_row_group(&files[i], meta, mask, g)?);
                    }
                    Ok(totals)
                })
            })
            .collect();
        let mut all = Totals::default();
        for w in workers {
            all.add(w.join().expect("scan thread panicked")?);
        }
        Ok::<_, Error>(all)
    })?;

    let result = serde_json::json!({
        "tool": "parquet-scan",
        "parquet": parquet::file::properties::DEFAULT_CREATED_BY,
        "files": files.len(),
        "row_groups": units.len(),
        "threads": threads,
        "records": totals.rows,
        "bytes": totals.bytes.to_string(),
        "dictionary_values": totals.dictionary_values,
        "max_timestamp_us": totals.max_timestamp_us,
        "seconds": (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    });
    println!("{result}");
    Ok(())
}
