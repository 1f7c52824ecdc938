//! Hostile input, hunted for the next panic or silent drop.
//!
//! - Fuzz-style: random and mutated bytes (flipped and random bytes,
//!   truncation, duplicated and dropped lines, huge numbers, NUL bytes,
//!   invalid UTF-8, hostile dates, deep JSON nesting) and generated Parquet
//!   files of every column type go to every usage decoder (CSV, JSON Lines,
//!   the partner API export, Parquet, through [`capbill::ingest::parse_object`])
//!   and to every directory table parser (CSV and Parquet, through
//!   [`capbill::directory::parse_tables`]). None may panic; each input either
//!   yields records, or an error naming the object (table), and every data
//!   row that can be counted in the input is accounted for: kept, counted as
//!   outside the month, or a finding (with `skip_bad_records`).
//! - A property test (proptest) over random directories and a month of
//!   usage, billed through the library pipeline: the run either bills (and
//!   every invoice total is the sum of its lines) or stops with exit code 2
//!   and a message naming the table, the row and the column; never an
//!   internal error, never a panic.
//!
//! Every case is generated from a seed, named in the failure message, so a
//! failure is reproduced by running the same seed again.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::Bytes;
use capbill::directory::{DirectoryError, parse_tables};
use capbill::formats::Format;
use capbill::ingest::{IngestError, parse_object};
use capbill::model::BillingMonth;

use crate::util::example;

// ---------------------------------------------------------------------------
// Random numbers and mutations
// ---------------------------------------------------------------------------

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Numbers no decoder should take quietly.
const HUGE: [&str; 12] = [
    "99999999999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "-1",
    "-0",
    "1e400",
    "0.5",
    "1E3",
    "NaN",
    "340282366920938463463374607431768211456",
];

/// Dates and timestamps at and beyond the edges of what parses.
const DATES: [&str; 12] = [
    "2026-10-32",
    "2026-02-29",
    "+262143-12-31",
    "-262144-01-01",
    "9999-12-31T23:59:59.999999999Z",
    "2026-10-01T00:00:00+25:00",
    "2026-10-31T23:59:59-23:59",
    "0000-01-01",
    "1970-01-01T00:00:00Z",
    "2026-10-01T24:00:00Z",
    "2026-11-01T00:00:00.000001+00:00",
    "2026-09-30T23:59:59.999999Z",
];

/// Short insertions: separators, quotes, structure, escapes.
const SPECIAL: [&[u8]; 20] = [
    b"\"",
    b",",
    b"\r",
    b"\n",
    b"\n\n",
    b" ",
    "\u{feff}".as_bytes(),
    b"\t",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"null",
    b"\\u0000",
    b"\\ud800",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
];

/// The lines of `data` (without their `\n`), and whether it ended in one.
fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').collect()
}

/// Applies one to four mutations to `data`; returns their names.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) -> Vec<&'static str> {
    let mut names = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        let name = match rng.below(14) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
                "flip a bit"
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
                "set a byte"
            }
            2 => {
                data.truncate(at);
                "truncate"
            }
            3..=5 => {
                let mut ls: Vec<Vec<u8>> = lines(data).into_iter().map(<[u8]>::to_vec).collect();
                let i = rng.below(ls.len());
                let name = match rng.below(3) {
                    0 => {
                        let l = ls[i].clone();
                        ls.insert(i, l);
                        "duplicate a line"
                    }
                    1 if ls.len() > 1 => {
                        ls.remove(i);
                        "drop a line"
                    }
                    _ => {
                        let j = rng.below(ls.len());
                        ls.swap(i, j);
                        "swap lines"
                    }
                };
                *data = ls.join(&b'\n');
                name
            }
            6 | 7 => {
                // A digit run replaced by a huge or odd number.
                let digits: Vec<usize> = (0..data.len()).filter(|&i| data[i].is_ascii_digit()).collect();
                if digits.is_empty() {
                    continue;
                }
                let start = *rng.pick(&digits);
                let end = (start..data.len()).find(|&i| !data[i].is_ascii_digit()).unwrap_or(data.len());
                data.splice(start..end, rng.pick(&HUGE).bytes());
                "a huge or odd number"
            }
            8 => {
                let found: Vec<usize> =
                    data.windows(8).enumerate().filter(|(_, w)| w == b"2026-10-").map(|(i, _)| i).collect();
                if found.is_empty() {
                    continue;
                }
                let start = *rng.pick(&found);
                let end = (start + 10).min(data.len());
                data.splice(start..end, rng.pick(&DATES).bytes());
                "a hostile date"
            }
            9 | 10 => {
                let s = rng.pick(&SPECIAL);
                data.splice(at..at, s.iter().copied());
                "insert a special byte sequence"
            }
            11 => {
                let n = 1 + rng.below(64);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
                "insert random bytes"
            }
            12 => {
                let depth = 200 + rng.below(20_000);
                let open: &[u8] = if rng.one_in(2) { b"[" } else { b"{\"a\":" };
                data.splice(at..at, open.repeat(depth));
                "deep nesting"
            }
            _ => {
                // A line of printable garbage.
                let n = rng.below(40);
                let mut l: Vec<u8> = (0..n).map(|_| b' ' + (rng.next() % 95) as u8).collect();
                l.push(b'\n');
                let starts: Vec<usize> =
                    std::iter::once(0).chain((0..data.len()).filter(|&i| data[i] == b'\n').map(|i| i + 1)).collect();
                let s = *rng.pick(&starts);
                data.splice(s..s, l);
                "insert a garbage line"
            }
        };
        names.push(name);
    }
    names
}

/// The input, escaped and shortened, for a failure message; a longer one
/// is also written to the temporary folder, whose path the message gives.
fn show(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(&data[..data.len().min(400)]).escape_debug().to_string();
    if data.len() <= 400 {
        return s;
    }
    let path = std::env::temp_dir().join(format!("capbill-hostile-{:016x}.bin", fnv(data)));
    let saved = std::fs::write(&path, data).map_or_else(|e| format!("not saved: {e}"), |()| path.display().to_string());
    format!("{s}... ({} bytes, in full: {saved})", data.len())
}

/// FNV-1a of the bytes: names a saved input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Runs `f`, turning a panic into a test failure that names the case.
fn no_panic<T>(case: &dyn Fn() -> String, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("PANIC ({msg}) on {}", case())
        }
    }
}

// ---------------------------------------------------------------------------
// Usage decoders
// ---------------------------------------------------------------------------

fn october() -> BillingMonth {
    BillingMonth::new(2026, 10).unwrap()
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(example().join(path)).unwrap()
}

/// A line is blank when it holds only JSON whitespace (or a CSV line only `\r`).
fn blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// Data rows of a CSV text that can be counted by lines (valid UTF-8 with
/// no quotes and no carriage return except before a newline): the
/// non-empty lines after the header (the first line), as a range. The
/// CSV reader (polars) reads a blank line between rows as a row of empty
/// fields, which the decoders report as a malformed record: so each
/// blank line may or may not count, and only inputs without one are
/// counted exactly.
fn csv_rows(data: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(data).ok()?;
    if text.contains('"') || text.replace("\r\n", "\n").contains('\r') {
        return None;
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut ls = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let header = ls.next()?;
    if header.is_empty() {
        return None;
    }
    let (blank, rows): (Vec<&str>, Vec<&str>) = ls.partition(|l| l.is_empty());
    Some((rows.len(), rows.len() + blank.len()))
}

/// Data rows of a JSON Lines text: lines that are not blank.
fn json_lines_rows(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n').filter(|l| !blank(l)).count()
}

/// Entries of a partner API export, if it is a JSON array of clients each
/// with a `daily_usage` array.
fn partner_rows(data: &[u8]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    v.as_array()?.iter().map(|c| c.get("daily_usage")?.as_array().map(Vec::len)).sum()
}

/// Rows of a Parquet file, if its footer can be read.
fn parquet_rows(data: &Bytes) -> Option<usize> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = catch_unwind(AssertUnwindSafe(|| SerializedFileReader::new(data.clone()))).ok()?.ok()?;
    usize::try_from(r.metadata().file_metadata().num_rows()).ok()
}

/// The rows a decoder must account for in `data`, where countable: at
/// least and at most (the same unless a CSV text has blank lines).
fn usage_rows(format: Format, data: &Bytes) -> Option<(usize, usize)> {
    let exactly = |n: Option<usize>| n.map(|n| (n, n));
    match format {
        Format::Csv => csv_rows(data),
        Format::JsonLines => exactly(Some(json_lines_rows(data))),
        Format::Json if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => exactly(partner_rows(data)),
        Format::Json => exactly(Some(json_lines_rows(data))),
        Format::Parquet => exactly(parquet_rows(data)),
    }
}

/// Decodes one usage object both ways (stopping at a bad record, and
/// skipping bad records) and checks what came out.
fn check_usage(case: &dyn Fn() -> String, format: Format, key: &str, data: &Bytes, seen: &mut Outcomes) {
    let rows = usage_rows(format, data);
    for skip in [false, true] {
        let parsed = no_panic(case, || parse_object(data.clone(), format, key, october(), skip));
        match parsed {
            Ok(p) => {
                assert!(skip || p.findings.is_empty(), "findings without skip_bad_records on {}", case());
                seen.read += 1;
                seen.counted += usize::from(rows.is_some());
                seen.findings += usize::from(!p.findings.is_empty());
                if let Some((least, most)) = rows {
                    let accounted = p.records + p.outside_month as usize + p.findings.len();
                    assert!(
                        (least..=most).contains(&accounted),
                        "silent drop (skip_bad_records {skip}): {} kept + {} outside the month + {} findings for {least}..={most} rows on {}",
                        p.records,
                        p.outside_month,
                        p.findings.len(),
                        case()
                    );
                }
            }
            Err(e) => {
                let msg = capbill::error::chain(&e);
                assert!(
                    !matches!(e, IngestError::Frame(_) | IngestError::Storage(_)),
                    "internal error {msg} on {}",
                    case()
                );
                assert!(msg.contains(key), "the error {msg:?} does not name the object on {}", case());
                seen.refused += 1;
            }
        }
    }
}

/// How the decoded inputs came out, to show that the mutations reach
/// every outcome (printed with `--nocapture`).
#[derive(Debug, Default)]
struct Outcomes {
    /// Decoded (with or without skipping bad records).
    read: usize,
    /// Of those, inputs whose rows were counted.
    counted: usize,
    /// Of those, decodes with findings.
    findings: usize,
    /// Refused with an error naming the object.
    refused: usize,
}

/// Keys of an object: in a month folder, or in a day folder (whose
/// records must lie within a day of it).
const KEYS: [&str; 2] = ["usage/2026-10/part", "usage/dt=2026-10-05/part"];

/// JSON Lines versions of the daily and hourly CSV fixtures.
fn json_lines_seed() -> Vec<u8> {
    let mut out = String::new();
    for l in String::from_utf8(fixture("usage/daily/2026-10/sa-x1.csv")).unwrap().lines().skip(1).take(10) {
        let f: Vec<&str> = l.split(',').collect();
        out += &format!("{{\"date\":\"{}\",\"storage_account_id\":\"{}\",\"bytes\":{}}}\n", f[0], f[1], f[2]);
    }
    for l in String::from_utf8(fixture("usage/hourly/2026-10/part-0000.csv")).unwrap().lines().skip(1).take(10) {
        let f: Vec<&str> = l.split(',').collect();
        out += &format!(
            "{{\"timestamp\":\"{}\",\"storage_account_id\":\"{}\",\"bucket\":\"{}\",\"bytes\":\"{}\",\"extra\":[1,{{\"x\":null}}]}}\n",
            f[0], f[1], f[2], f[3]
        );
    }
    out.into_bytes()
}

/// The first `n` lines of a text fixture (keeps the inputs small).
fn head(data: &[u8], n: usize) -> Vec<u8> {
    let mut ls = lines(data);
    ls.truncate(n);
    let mut out = ls.join(&b'\n');
    out.push(b'\n');
    out
}

#[test]
fn text_usage_decoders_never_panic_nor_drop_a_record() {
    let seeds: Vec<(Format, &str, Vec<u8>)> = vec![
        (Format::Csv, "csv", fixture("usage/daily/2026-10/sa-x1.csv")),
        (Format::Csv, "csv", head(&fixture("usage/hourly/2026-10/part-0000.csv"), 60)),
        (Format::JsonLines, "jsonl", json_lines_seed()),
        (Format::Json, "json", json_lines_seed()),
        (Format::Json, "json", fixture("usage/partner-api/2026-10/export-2026-11-01T02-00Z.json")),
    ];
    let mut cases = 0;
    let mut seen = Outcomes::default();
    for (s, (format, ext, seed)) in seeds.iter().enumerate() {
        // The seeds themselves, then mutations of them.
        for n in 0..400u64 * scale() {
            let seed_no = (s as u64) << 32 | n;
            let mut rng = Rng::new(seed_no);
            let mut data = seed.clone();
            let names = if n == 0 {
                vec!["none"]
            } else if n % 40 == 1 {
                // Random bytes, or random printable text.
                let len = rng.below(300);
                data = (0..len).map(|_| rng.next() as u8).collect();
                if rng.one_in(2) {
                    data.iter_mut().for_each(|b| *b = b' ' + *b % 95);
                }
                vec!["random bytes"]
            } else {
                mutate(&mut rng, &mut data)
            };
            let key = format!("{}-{n}.{ext}", KEYS[(n % 2) as usize]);
            let data = Bytes::from(data);
            let case = || format!("seed {seed_no:#x} ({format:?} {key}, mutations {names:?}), input: {}", show(&data));
            check_usage(&case, *format, &key, &data, &mut seen);
            cases += 1;
        }
    }
    eprintln!("text usage decoders: {cases} inputs: {seen:?}");
    assert!(seen.counted > cases / 2 && seen.findings > cases / 4 && seen.refused > cases / 4, "{seen:?}");
    assert_eq!(cases, 5 * 400 * scale() as usize);
}

/// 2026-10-01T00:00:00Z in seconds.
const OCT1_S: i64 = 1_790_812_800;

/// Integers: mostly days and byte counts of October, sometimes extremes.
fn int_value(rng: &mut Rng, near: i64, spread: i64) -> Option<i64> {
    match rng.below(12) {
        0 => None,
        1 => Some(*rng.pick(&[i64::MIN, i64::MAX, -1, 0, i64::from(i32::MIN), i64::from(i32::MAX), u32::MAX.into()])),
        _ => Some(near + rng.below(spread.max(1) as usize) as i64),
    }
}

/// Text values: valid ones, blanks, and hostile ones.
fn text_value(rng: &mut Rng, valid: &[String]) -> Option<String> {
    match rng.below(10) {
        0 => None,
        1 => Some((*rng.pick(&["", " ", "\0", "sa-\u{feff}1", "\u{10ffff}", "  sa-1  "])).to_owned()),
        2 => Some((*rng.pick(&DATES)).to_owned()),
        3 => Some((*rng.pick(&HUGE)).to_owned()),
        _ => Some(rng.pick(valid).clone()),
    }
}

/// A text column of one of the text types capbill reads, or an integer
/// column in its place (a layout error).
fn text_column(rng: &mut Rng, values: Vec<Option<String>>) -> arrow_array::ArrayRef {
    use arrow_array::{DictionaryArray, Int64Array, LargeStringArray, StringArray, StringViewArray, types::Int8Type};
    let refs: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
    match rng.below(12) {
        0 => Arc::new(LargeStringArray::from(refs)),
        1 => Arc::new(StringViewArray::from(refs)),
        2 => Arc::new(refs.into_iter().collect::<DictionaryArray<Int8Type>>()),
        3 => Arc::new(Int64Array::from(values.iter().map(|v| v.as_ref().map(|s| s.len() as i64)).collect::<Vec<_>>())),
        _ => Arc::new(StringArray::from(refs)),
    }
}

/// A generated usage Parquet file: random column types (every type the
/// decoder accepts, and some it refuses), nulls, extreme values, row
/// groups and dictionary settings. Also returns its rows.
fn usage_parquet(rng: &mut Rng) -> (Vec<u8>, usize) {
    use arrow_array::*;
    let n = rng.below(40);
    let accounts: Vec<String> = (0..1 + rng.below(4)).map(|i| format!("sa-{i}")).collect();
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    if !rng.one_in(20) {
        let v = (0..n).map(|_| text_value(rng, &accounts)).collect();
        columns.push(("storage_account_id".into(), text_column(rng, v)));
    }
    if rng.one_in(2) {
        let buckets = vec!["media".to_owned(), "logs".to_owned()];
        let v = (0..n).map(|_| text_value(rng, &buckets)).collect();
        columns.push(("bucket".into(), text_column(rng, v)));
    }
    let time = match rng.below(20) {
        0 => "both",
        1 => "neither",
        n if n % 2 == 0 => "timestamp",
        _ => "date",
    };
    for name in ["timestamp", "date"] {
        if !(time == name || time == "both") {
            continue;
        }
        let tz: Option<Arc<str>> = rng.pick(&[None, Some("UTC"), Some("+05:00")]).map(Into::into);
        let seconds = |rng: &mut Rng, scale: i64| -> Vec<Option<i64>> {
            (0..n).map(|_| int_value(rng, OCT1_S * scale, 33 * 86_400 * scale)).collect()
        };
        let column: ArrayRef = match rng.below(9) {
            0 => Arc::new(TimestampSecondArray::from(seconds(rng, 1)).with_timezone_opt(tz)),
            1 => Arc::new(TimestampMillisecondArray::from(seconds(rng, 1_000)).with_timezone_opt(tz)),
            2 => Arc::new(TimestampMicrosecondArray::from(seconds(rng, 1_000_000)).with_timezone_opt(tz)),
            3 => Arc::new(TimestampNanosecondArray::from(seconds(rng, 1_000_000_000)).with_timezone_opt(tz)),
            4 => Arc::new(Date32Array::from(
                (0..n).map(|_| int_value(rng, OCT1_S / 86_400, 33).map(|d| d as i32)).collect::<Vec<_>>(),
            )),
            5 => Arc::new(Date64Array::from(seconds(rng, 1_000))),
            6 => Arc::new(Float64Array::from(
                seconds(rng, 1).into_iter().map(|v| v.map(|v| v as f64)).collect::<Vec<_>>(),
            )),
            _ => {
                let dates: Vec<String> = (1..=31).map(|d| format!("2026-10-{d:02}T0{}:00:00Z", d % 10)).collect();
                let v = (0..n).map(|_| text_value(rng, &dates)).collect();
                text_column(rng, v)
            }
        };
        columns.push((name.into(), column));
    }
    if !rng.one_in(20) {
        let v: Vec<Option<i64>> = (0..n).map(|_| int_value(rng, 1_000_000_000_000, 1_000_000_000)).collect();
        let column: ArrayRef = match rng.below(11) {
            0 => Arc::new(Int8Array::from(v.iter().map(|x| x.map(|x| x as i8)).collect::<Vec<_>>())),
            1 => Arc::new(Int16Array::from(v.iter().map(|x| x.map(|x| x as i16)).collect::<Vec<_>>())),
            2 => Arc::new(Int32Array::from(v.iter().map(|x| x.map(|x| x as i32)).collect::<Vec<_>>())),
            3 => Arc::new(UInt8Array::from(v.iter().map(|x| x.map(|x| x as u8)).collect::<Vec<_>>())),
            4 => Arc::new(UInt16Array::from(v.iter().map(|x| x.map(|x| x as u16)).collect::<Vec<_>>())),
            5 => Arc::new(UInt32Array::from(v.iter().map(|x| x.map(|x| x as u32)).collect::<Vec<_>>())),
            6 => Arc::new(UInt64Array::from(v.iter().map(|x| x.map(|x| x as u64)).collect::<Vec<_>>())),
            7 => Arc::new(Float64Array::from(v.iter().map(|x| x.map(|x| x as f64)).collect::<Vec<_>>())),
            8 => Arc::new(StringArray::from(v.iter().map(|x| x.map(|x| x.to_string())).collect::<Vec<_>>())),
            _ => Arc::new(Int64Array::from(v)),
        };
        columns.push(("bytes".into(), column));
    }
    if rng.one_in(3) {
        columns.push(("extra".into(), Arc::new(Float64Array::from(vec![f64::NAN; n]))));
    }
    if columns.is_empty() {
        columns.push(("bytes".into(), Arc::new(Int64Array::from(vec![1i64; n]))));
    }
    // Columns in a random order.
    for i in (1..columns.len()).rev() {
        columns.swap(i, rng.below(i + 1));
    }
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1 + rng.below(16)))
        .set_dictionary_enabled(rng.one_in(2))
        .set_data_page_row_count_limit(1 + rng.below(8))
        .build();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    (out, n)
}

#[test]
fn parquet_usage_decoder_never_panics_nor_drops_a_record() {
    let mut cases = 0;
    let mut seen = Outcomes::default();
    for n in 0..800u64 * scale() {
        let seed_no = 0x9a << 32 | n;
        let mut rng = Rng::new(seed_no);
        let (mut data, rows) = usage_parquet(&mut rng);
        // A quarter of the files are damaged as well.
        let names = if rng.one_in(4) { mutate(&mut rng, &mut data) } else { vec!["none"] };
        let key = format!("{}-{n}.parquet", KEYS[(n % 2) as usize]);
        let data = Bytes::from(data);
        if names == ["none"] {
            assert_eq!(parquet_rows(&data), Some(rows));
        }
        let case = || format!("seed {seed_no:#x} (Parquet {key}, mutations {names:?}), input: {}", show(&data));
        check_usage(&case, Format::Parquet, &key, &data, &mut seen);
        cases += 1;
    }
    eprintln!("Parquet usage decoder: {cases} inputs: {seen:?}");
    assert!(seen.counted > cases / 3 && seen.findings > cases / 10 && seen.refused > cases / 4, "{seen:?}");
}

// ---------------------------------------------------------------------------
// Directory tables
// ---------------------------------------------------------------------------

/// The directory's four tables by file stem, in `parse_tables`' order.
const TABLES: [&str; 4] = ["entities", "storage_accounts", "contracts", "deals"];

/// A table as a Parquet file: the CSV read as text, each column kept as
/// text or cast (non-strictly: what does not convert becomes null) to an
/// integer, a float (which the directory refuses), a decimal, a date or a
/// boolean, or replaced by nulls.
fn table_parquet(rng: &mut Rng, csv: &[u8]) -> Vec<u8> {
    use polars::prelude::*;
    let df = capbill::formats::read_csv_text(Bytes::copy_from_slice(csv)).unwrap();
    let n = df.height();
    let columns: Vec<Column> = df
        .columns()
        .iter()
        .map(|c| {
            let to = match rng.below(14) {
                0 => Some(DataType::Int64),
                1 => Some(DataType::Float64),
                2 => Some(DataType::Decimal(38, 2)),
                3 => Some(DataType::Date),
                4 => Some(DataType::Boolean),
                5 => Some(DataType::UInt8),
                _ => None,
            };
            match to {
                _ if rng.one_in(20) => Column::full_null(c.name().clone(), n, &DataType::String),
                Some(t) => c.cast(&t).unwrap_or_else(|_| c.clone()),
                None => c.clone(),
            }
        })
        .collect();
    let mut df = DataFrame::new(n, columns).unwrap();
    capbill::formats::write_parquet(&mut df).unwrap()
}

/// Rows of a directory table, where countable: the CSV's or the Parquet file's.
fn table_rows(name: &str, data: &Bytes) -> Option<(usize, usize)> {
    if name.ends_with(".parquet") { parquet_rows(data).map(|n| (n, n)) } else { csv_rows(data) }
}

#[test]
fn directory_tables_never_panic_nor_drop_a_row() {
    let fixtures: Vec<Vec<u8>> = TABLES.iter().map(|t| fixture(&format!("directory/{t}.csv"))).collect();
    let mut cases = 0;
    let (mut parsed, mut refused) = (0, 0);
    for n in 0..800u64 * scale() {
        let seed_no = 0xd1 << 32 | n;
        let mut rng = Rng::new(seed_no);
        let mut how = Vec::new();
        let tables: Vec<(String, Bytes)> = TABLES
            .iter()
            .zip(&fixtures)
            .map(|(stem, csv)| {
                let (name, data) = match rng.below(8) {
                    0 => {
                        how.push(format!("{stem}: Parquet"));
                        (format!("{stem}.parquet"), table_parquet(&mut rng, csv))
                    }
                    1 => {
                        let mut data = table_parquet(&mut rng, csv);
                        how.push(format!("{stem}: damaged Parquet {:?}", mutate(&mut rng, &mut data)));
                        (format!("{stem}.parquet"), data)
                    }
                    2 | 3 => {
                        let mut data = csv.clone();
                        how.push(format!("{stem}: {:?}", mutate(&mut rng, &mut data)));
                        (format!("{stem}.csv"), data)
                    }
                    _ => (format!("{stem}.csv"), csv.clone()),
                };
                (name, Bytes::from(data))
            })
            .collect();
        let case = || {
            let inputs: Vec<String> = tables.iter().map(|(name, data)| format!("{name}: {}", show(data))).collect();
            format!("seed {seed_no:#x} ({how:?}), inputs:\n{}", inputs.join("\n"))
        };
        let [e, a, k, d] = <[(String, Bytes); 4]>::try_from(tables.clone()).unwrap();
        let result = no_panic(&case, || parse_tables(e, a, k, d));
        let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
        match result {
            Ok(dir) => {
                parsed += 1;
                let read = [dir.entities.len(), dir.accounts.len(), dir.contracts.len(), dir.deals.len()];
                for ((name, data), read) in tables.iter().zip(read) {
                    if let Some((least, most)) = table_rows(name, data) {
                        assert!(
                            (least..=most).contains(&read),
                            "{name}: {read} rows read of {least}..={most} on {}",
                            case()
                        );
                    }
                }
            }
            Err(DirectoryError::Invalid(problems)) => {
                refused += 1;
                assert!(!problems.is_empty(), "no problem named on {}", case());
                for p in problems {
                    assert!(names.contains(&p.table.as_str()), "{p} names no table on {}", case());
                    assert!(p.row.is_some() || p.column.is_some(), "{p} names neither row nor column on {}", case());
                }
            }
            Err(DirectoryError::Unreadable { table, .. }) => {
                refused += 1;
                assert!(names.contains(&table.as_str()), "unreadable {table} is no table on {}", case());
            }
            Err(other) => panic!("unexpected error {other} on {}", case()),
        }
        cases += 1;
    }
    eprintln!("directory tables: {cases} inputs, {parsed} parsed, {refused} refused");
    assert!(parsed > cases / 20 && refused > cases / 2, "{parsed} parsed, {refused} refused of {cases}");
}

/// How many times the default number of cases the fuzz-style tests run:
/// `CAPBILL_HOSTILE_SCALE=20 cargo test hostile` hunts longer.
fn scale() -> u64 {
    std::env::var("CAPBILL_HOSTILE_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

// ---------------------------------------------------------------------------
// What the hunt found, pinned
// ---------------------------------------------------------------------------

/// A file written by [`usage_parquet`] and damaged by [`mutate`] (seed
/// `0x9a00001c0d`) on which arrow-rs' Parquet decoder panicked ("Decoder for
/// dict should have been set") while a batch crossed into its damaged row
/// group; now that each row group has its own reader, the damage is found
/// as an error first. Either way the object cannot be parsed. And a Parquet directory table damaged the
/// same way (seed `0xd1000000e2`) on which polars' reader panics ("thrift
/// bool field"), and one on which polars aborts the process. Each is an
/// input that cannot be parsed, not a crash.
#[test]
fn damaged_parquet_that_panics_a_decoder_cannot_be_parsed() {
    let data = Bytes::from(std::fs::read(crate::util::root().join("fixtures/hostile/damaged-usage.parquet")).unwrap());
    let key = "usage/dt=2026-10-05/damaged.parquet";
    for skip in [false, true] {
        match parse_object(data.clone(), Format::Parquet, key, october(), skip) {
            Err(e @ IngestError::Unparsable { .. }) => {
                let msg = capbill::error::chain(&e);
                assert!(msg.starts_with(&format!("usage object {key} cannot be parsed: ")), "{msg}");
                assert!(
                    msg.contains("damaged file: the decoder stopped at")
                        || msg.contains("Unexpected struct field type"),
                    "{msg}"
                );
            }
            other => panic!("expected an unparsable object, got {other:?}"),
        }
    }

    let table = std::fs::read(crate::util::root().join("fixtures/hostile/damaged-storage_accounts.parquet")).unwrap();
    let csv = |t: &str| (format!("{t}.csv"), Bytes::from(fixture(&format!("directory/{t}.csv"))));
    let accounts = ("storage_accounts.parquet".to_owned(), Bytes::from(table));
    match parse_tables(csv("entities"), accounts, csv("contracts"), csv("deals")) {
        Err(e @ DirectoryError::Unreadable { .. }) => {
            let msg = capbill::error::chain(&e);
            assert!(msg.starts_with("partner directory table storage_accounts.parquet cannot be parsed: "), "{msg}");
            assert!(msg.contains("damaged Parquet file"), "{msg}");
        }
        other => panic!("expected an unreadable table, got {other:?}"),
    }

    // Seed `0xd100002f7a`: a page header that makes polars allocate 2^61
    // bytes, which aborts the process; arrow-rs refuses the file first.
    let table = std::fs::read(crate::util::root().join("fixtures/hostile/damaged-contracts.parquet")).unwrap();
    let contracts = ("contracts.parquet".to_owned(), Bytes::from(table));
    match parse_tables(csv("entities"), csv("storage_accounts"), contracts, csv("deals")) {
        Err(e @ DirectoryError::Unreadable { .. }) => {
            let msg = capbill::error::chain(&e);
            assert!(msg.starts_with("partner directory table contracts.parquet cannot be parsed: "), "{msg}");
            assert!(msg.contains("damaged Parquet file"), "{msg}");
        }
        other => panic!("expected an unreadable table, got {other:?}"),
    }
}

/// A Parquet file of `columns`, written with arrow-rs.
fn parquet_of(columns: Vec<(&str, arrow_array::ArrayRef)>) -> Bytes {
    let batch = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Bytes::from(out)
}

/// Dates at the ends of Parquet's `Date32` (±5.8 million years) are outside
/// every month: counted as such, or malformed under a day folder, with a
/// message that says so. They neither overflow (a panic in debug builds, a
/// date wrapped into some month in release builds) nor stop the message
/// that names them (the calendar ends at ±262,143 years).
#[test]
fn parquet_dates_beyond_the_calendar_are_outside_the_month() {
    use arrow_array::{Date32Array, Int64Array, StringArray};
    let oct2 = (OCT1_S / 86_400 + 1) as i32;
    let data = parquet_of(vec![
        ("storage_account_id", Arc::new(StringArray::from(vec!["sa-1", "sa-1", "sa-1"])) as arrow_array::ArrayRef),
        ("date", Arc::new(Date32Array::from(vec![i32::MAX, i32::MIN, oct2]))),
        ("bytes", Arc::new(Int64Array::from(vec![1, 2, 3]))),
    ]);
    let p = parse_object(data.clone(), Format::Parquet, "usage/2026-10/p.parquet", october(), false).unwrap();
    assert_eq!((p.records, p.outside_month, p.findings.len()), (1, 2, 0));

    let key = "usage/dt=2026-10-02/p.parquet";
    let p = parse_object(data.clone(), Format::Parquet, key, october(), true).unwrap();
    let details: Vec<&str> = p.findings.iter().map(|f| f.detail.as_str()).collect();
    assert_eq!(p.records, 1);
    assert_eq!(details.len(), 2, "{details:?}");
    let first = "row 1, field date: a record of day 106751991 from 1970-01-01 (beyond the calendar) \
                 in an object under the folder of 2026-10-02";
    assert!(details[0].starts_with(first), "{details:?}");
    assert!(
        details[1].starts_with("row 2, field date: a record of day -106751992 from 1970-01-01 (beyond the calendar)"),
        "{details:?}"
    );
    let e = parse_object(data, Format::Parquet, key, october(), false).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("usage object {key} row 1, field date: a record of day 106751991")),
        "{e}"
    );
}

/// A Parquet record with several bad fields is one skipped record, one
/// finding (its first bad field, as the text readers report it), so that
/// the findings count the records skipped.
#[test]
fn a_parquet_record_with_several_bad_fields_is_one_finding() {
    use arrow_array::{Int64Array, StringArray};
    let data = parquet_of(vec![
        ("storage_account_id", Arc::new(StringArray::from(vec![None, Some("sa-1")])) as arrow_array::ArrayRef),
        ("timestamp", Arc::new(StringArray::from(vec!["yesterday", "2026-10-02T01:00:00Z"]))),
        ("bytes", Arc::new(Int64Array::from(vec![-1, 3]))),
    ]);
    let p = parse_object(data.clone(), Format::Parquet, "usage/2026-10/p.parquet", october(), true).unwrap();
    let details: Vec<&str> = p.findings.iter().map(|f| f.detail.as_str()).collect();
    assert_eq!(details, ["row 1, field storage_account_id: missing; record skipped"]);
    assert_eq!(p.records, 1);
}

// ---------------------------------------------------------------------------
// Random directories and usage, billed
// ---------------------------------------------------------------------------

/// Decimal values for the directory: valid ones, the bounds, and every
/// kind the directory refuses (huge, negative, too many decimals, empty,
/// not a number).
const DECIMALS: [&str; 16] = [
    "1",
    "12.5",
    "50",
    "0",
    "6.00",
    "0.000001",
    "1.50000000",
    "999999999.999999",
    "",
    "1000000000",
    "99999999999999999999999999",
    "-1",
    "0.0000001",
    "1e3",
    "abc",
    "7.99",
];

/// Dates of contracts, deals and accounts, around October 2026.
const DAYS: [&str; 9] = [
    "",
    "2025-01-01",
    "2026-09-15",
    "2026-10-01",
    "2026-10-11",
    "2026-10-16",
    "2026-10-31",
    "2026-11-01",
    "2026-13-01",
];

/// One generated month: the directory's four CSV tables and one usage object.
struct World {
    tables: [String; 4],
    usage: String,
}

/// A random directory and a month of usage, from `seed`: an entity tree
/// (vendor, distributors, partners, customers with random parents, now and
/// then an invalid one), accounts, contracts with random models, decimals
/// and dates (out of order too), deals, and usage records of the accounts
/// (and of an unknown one), with huge byte counts and a rare bad value.
fn world(seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let r = &mut rng;
    let rare = |r: &mut Rng| r.one_in(40);
    let mut entities = vec![("v".to_owned(), "vendor", None::<String>)];
    if rare(r) {
        entities[0].1 = "distributor";
    }
    let mut parents = vec!["v".to_owned()];
    for i in 0..r.below(3) {
        entities.push((format!("d{i}"), "distributor", Some("v".to_owned())));
        parents.push(format!("d{i}"));
    }
    for i in 0..1 + r.below(3) {
        let parent = r.pick(&parents).clone();
        entities.push((format!("p{i}"), "channel_partner", Some(parent)));
    }
    let sellers: Vec<String> = entities.iter().skip(1).map(|e| e.0.clone()).collect();
    for i in 0..1 + r.below(4) {
        let parent = r.pick(&sellers).clone();
        entities.push((format!("c{i}"), "customer", Some(parent)));
    }
    if rare(r) {
        let i = 1 + r.below(entities.len() - 1);
        entities[i].2 = Some(if r.one_in(2) { "ghost".to_owned() } else { entities[i].0.clone() });
    }
    if rare(r) {
        let i = r.below(entities.len());
        entities[i].1 = "reseller";
    }
    let mut e = String::from("entity_id,name,kind,partner_type,parent_id\n");
    for (id, kind, parent) in &entities {
        let pt = if *kind == "channel_partner" { *r.pick(&["msp", "var", ""]) } else { "" };
        e += &format!("{id},Name {id},{kind},{pt},{}\n", parent.as_deref().unwrap_or(""));
    }
    let owners: Vec<&str> = entities.iter().skip(1).map(|e| e.0.as_str()).collect();
    let accounts: Vec<String> = (0..1 + r.below(5)).map(|i| format!("sa-{i}")).collect();
    let mut a = String::from("storage_account_id,company_name,owner_id,created_on,deleted_on\n");
    for id in &accounts {
        let owner = if rare(r) { "nobody" } else { r.pick(&owners) };
        let (created, deleted) = match r.below(6) {
            0 if rare(r) => (*r.pick(&DAYS), *r.pick(&DAYS)),
            1 => ("2026-10-05", "2026-10-20"),
            _ => ("", ""),
        };
        a += &format!("{id},Company,{owner},{created},{deleted}\n");
    }
    let mut k = String::from(
        "contract_id,seller_id,buyer_id,model,reserved_tb,unit_price,overage_price,minimum_tb,currency,start_date,end_date\n",
    );
    let mut n = 0;
    for (id, _, parent) in entities.iter().skip(1) {
        for _ in 0..usize::from(!r.one_in(5)) + usize::from(rare(r)) {
            n += 1;
            let seller = if rare(r) { "v" } else { parent.as_deref().unwrap_or("v") };
            let model = if rare(r) { "flat" } else { *r.pick(&["reserved", "pay_per_use"]) };
            let reserved = model == "reserved";
            let dec = |r: &mut Rng, wanted: bool| match (wanted, rare(r)) {
                (_, true) => (*r.pick(&DECIMALS)).to_owned(),
                (true, false) => (*r.pick(&DECIMALS[..8])).to_owned(),
                (false, false) => String::new(),
            };
            let (reserved_tb, unit_price) = (dec(r, reserved), dec(r, true));
            let (with_overage, with_minimum) = (reserved && r.one_in(2), !reserved && r.one_in(2));
            let (overage, minimum) = (dec(r, with_overage), dec(r, with_minimum));
            let currency = if rare(r) { *r.pick(&["eur", "", "EURO"]) } else { *r.pick(&["EUR", "EUR", "USD"]) };
            let (start, end) = match r.below(6) {
                0 if rare(r) => (*r.pick(&DAYS), *r.pick(&DAYS)),
                1 => ("2026-10-11", ""),
                _ => ("2026-01-01", ""),
            };
            k += &format!(
                "K{n},{seller},{id},{model},{reserved_tb},{unit_price},{overage},{minimum},{currency},{start},{end}\n"
            );
        }
    }
    let partners: Vec<&str> = entities.iter().filter(|e| e.1 == "channel_partner").map(|e| e.0.as_str()).collect();
    let customers: Vec<&str> = entities.iter().filter(|e| e.1 == "customer").map(|e| e.0.as_str()).collect();
    let mut d = String::from("deal_id,partner_id,customer_id,volume_tb,special_price,status,valid_from,valid_to\n");
    for i in 0..r.below(3) {
        let (Some(p), Some(c)) = (partners.first(), customers.first()) else { break };
        let p = if rare(r) { "v" } else { p };
        let decimals = if rare(r) { &DECIMALS[..] } else { &DECIMALS[..8] };
        let volume = (*r.pick(decimals)).to_owned();
        let price = if r.one_in(2) { (*r.pick(decimals)).to_owned() } else { String::new() };
        let status = if rare(r) { "maybe" } else { *r.pick(&["approved", "registered", "rejected", "approved"]) };
        let (from, to) =
            if rare(r) { (*r.pick(&DAYS), *r.pick(&DAYS)) } else { ("2026-09-01", *r.pick(&["", "2026-10-16"])) };
        d += &format!("DR-{i},{p},{c},{volume},{price},{status},{from},{to}\n");
    }
    let mut usage = String::from("timestamp,storage_account_id,bytes\n");
    let mut ids = accounts.clone();
    ids.push("sa-unknown".to_owned());
    for id in &ids {
        for day in 1..=31 {
            if r.one_in(5) {
                continue;
            }
            let bytes = match r.below(40) {
                0 => u64::MAX.to_string(),
                1 => (u64::MAX / 2).to_string(),
                2 if r.one_in(4) => "-5".to_owned(),
                3 => "0".to_owned(),
                _ => (r.next() % 2_000_000_000_000_000).to_string(),
            };
            let hour = r.below(24);
            usage += &format!("2026-10-{day:02}T{hour:02}:00:00Z,{id},{bytes}\n");
        }
    }
    World { tables: [e, a, k, d], usage }
}

/// Bills a generated world through the library pipeline, in a temporary folder.
fn bill(world: &World) -> (Result<capbill::pipeline::Outcome, capbill::error::Error>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("directory")).unwrap();
    std::fs::create_dir_all(root.join("usage/2026-10")).unwrap();
    for (stem, text) in TABLES.iter().zip(&world.tables) {
        std::fs::write(root.join(format!("directory/{stem}.csv")), text).unwrap();
    }
    std::fs::write(root.join("usage/2026-10/part.csv"), &world.usage).unwrap();
    std::fs::write(root.join("capbill.toml"), "").unwrap();
    let path = |p: &str| Some(root.join(p).to_str().unwrap().to_owned());
    let overrides = capbill::config::Overrides {
        directory: path("directory"),
        usage: path("usage"),
        out: path("out"),
        ..Default::default()
    };
    let config = capbill::config::Config::load(Some(&root.join("capbill.toml")), &overrides).unwrap();
    let req = capbill::pipeline::Request {
        month: october(),
        mode: capbill::revision::Mode::Run,
        now: "2026-11-05T03:00:00Z".parse().unwrap(),
        requested_by: "hostile@test".to_owned(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    (rt.block_on(capbill::pipeline::bill_month(&config, &req)), dir)
}

/// Checks that every invoice's total is the sum of its lines' amounts.
fn totals_are_sums(revision: &std::path::Path) -> Result<(), String> {
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    use std::str::FromStr;
    let (h, lines) = crate::util::read_csv(&revision.join("invoice_lines.csv"));
    let col = |h: &[String], name: &str| h.iter().position(|c| c == name).unwrap();
    let (s, b, c, amount) = (col(&h, "seller_id"), col(&h, "buyer_id"), col(&h, "currency"), col(&h, "amount"));
    let mut sums: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for l in &lines {
        *sums.entry((l[s].clone(), l[b].clone(), l[c].clone())).or_default() += Decimal::from_str(&l[amount]).unwrap();
    }
    let (h, invoices) = crate::util::read_csv(&revision.join("invoices.csv"));
    let (s, b, c, total) = (col(&h, "seller_id"), col(&h, "buyer_id"), col(&h, "currency"), col(&h, "total"));
    let totals: BTreeMap<(String, String, String), Decimal> = invoices
        .iter()
        .map(|i| ((i[s].clone(), i[b].clone(), i[c].clone()), Decimal::from_str(&i[total]).unwrap()))
        .collect();
    if totals == sums { Ok(()) } else { Err(format!("invoice totals {totals:?} are not the sums of lines {sums:?}")) }
}

/// What a run of `world` did, or why it is wrong: a bill whose totals
/// are the sums of its lines, or exit code 2 naming the place of the problem.
fn billed_or_named(world: &World) -> Result<&'static str, String> {
    use capbill::error::Error;
    let (result, dir) = no_panic(&|| "the run".to_owned(), || bill(world));
    match result {
        Ok(capbill::pipeline::Outcome::Published(report)) => {
            let revision = dir.path().join(format!("out/billing_month=2026-10/revision={}", report.manifest.revision));
            totals_are_sums(&revision).map(|()| "billed")
        }
        Ok(other) => Err(format!("a first run did not publish: {other:?}")),
        Err(e) => {
            let msg = capbill::error::chain(&e);
            if e.exit_code() != 2 {
                return Err(format!("exit code {} ({msg})", e.exit_code()));
            }
            match &e {
                Error::Directory(DirectoryError::Invalid(problems)) => {
                    for p in problems {
                        let table_level = p.message.starts_with("no entity of kind vendor");
                        if !TABLES.iter().any(|t| p.table == format!("{t}.csv"))
                            || p.column.is_none()
                            || (p.row.is_none() && !table_level)
                        {
                            return Err(format!("a problem without its table, row and column: {p}"));
                        }
                    }
                    Ok("refused: directory")
                }
                Error::Ingest(IngestError::Record { object, row, field, .. })
                    if object == "2026-10/part.csv" && *row > 0 && !field.is_empty() =>
                {
                    Ok("refused: usage")
                }
                _ => Err(format!("exit 2 without a table, row and column: {msg}")),
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 64 * scale() as u32,
        failure_persistence: None,
        ..Default::default()
    })]

    /// The run bills (every invoice total the sum of its lines) or stops
    /// with exit code 2 naming table, row and column; never an internal
    /// error, never a panic.
    #[test]
    fn random_directories_and_usage_bill_or_name_the_problem(seed in proptest::prelude::any::<u64>()) {
        let w = world(seed);
        if let Err(why) = billed_or_named(&w) {
            let tables: Vec<String> = TABLES.iter().zip(&w.tables).map(|(t, s)| format!("{t}.csv:\n{s}")).collect();
            proptest::prop_assert!(false, "seed {seed:#x}: {why}\n{}\nusage: {}", tables.join("\n"), show(w.usage.as_bytes()));
        }
    }
}

/// The generated worlds reach every outcome: some bill, some are refused
/// for their directory, some for their usage.
#[test]
fn generated_worlds_reach_every_outcome() {
    let mut seen = std::collections::BTreeMap::new();
    for seed in 0..24 {
        let outcome = billed_or_named(&world(seed)).unwrap_or_else(|why| panic!("seed {seed:#x}: {why}"));
        *seen.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
}
