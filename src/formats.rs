//! File formats of tables: CSV and Parquet in and out, as polars frames.
//!
//! Formats turn bytes into frames and back; they never touch storage. Tables
//! read for validation come in as text columns, so each stage can parse and
//! report every bad value with its row and column.

use std::io::Cursor;

use bytes::Bytes;
use polars::prelude::*;
use rust_decimal::Decimal;

use crate::money;

/// A tabular encoding recognised by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// A `.json` file: JSON Lines, or the partner API's usage export (a JSON array).
    Json,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format of a key by its extension, if recognised.
    pub fn of_key(key: &str) -> Option<Format> {
        let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
        let ext = name.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            "json" => Some(Format::Json),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Reads a CSV table with every column as text (empty fields are null).
pub fn read_csv_text(data: Bytes) -> PolarsResult<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_raise_if_empty(false)
        .into_reader_with_file_handle(Cursor::new(data))
        .finish()
}

/// The first data row of a CSV text whose field count differs from the
/// header's: `(row, fields, header fields)`, row 1 being the first after the
/// header. Used to explain a parse failure with its place; quotes are
/// honoured (a quoted newline does not end a row) and empty lines are skipped.
pub fn ragged_csv_row(data: &[u8]) -> Option<(usize, usize, usize)> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(data);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                return match e.into_kind() {
                    // The header is record 0, so a data row's record index is its row.
                    csv::ErrorKind::UnequalLengths { pos: Some(pos), expected_len, len } => Some((
                        usize::try_from(pos.record()).ok()?,
                        usize::try_from(len).ok()?,
                        usize::try_from(expected_len).ok()?,
                    )),
                    _ => None,
                };
            }
        }
    }
}

/// Reads a Parquet file with its own column types.
///
/// polars' Parquet reader trusts what a file says: on some damaged files
/// it panics (an assertion about what it read), on others it tries to
/// allocate what a damaged page header claims and aborts the process. So
/// the file is first decoded with arrow-rs, which checks what it reads;
/// only a file it reads whole goes to polars, and a panic of either is an
/// error like any other file that cannot be parsed, not a crash.
pub fn read_parquet(data: Bytes) -> PolarsResult<DataFrame> {
    let read = decoding(|| {
        decodes(&data)?;
        ParquetReader::new(Cursor::new(data.clone())).finish().map_err(Damaged::from)
    });
    // polars' own errors come back as they were; the rest name the damage.
    read.map_err(|e| match e.downcast::<PolarsError>() {
        Ok(e) => *e,
        Err(e) => polars_err!(ComputeError: "damaged Parquet file: {e}"),
    })
}

/// The message a caught panic carries ("" when it carries none).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

/// Why a decoder could not read a file.
pub type Damaged = Box<dyn std::error::Error + Send + Sync>;

/// Runs one step of a third-party decoder that panics on some damaged input
/// (an assertion about what it read): such input is an error like any other
/// file that cannot be parsed, not a crash. Only the decoder's own steps
/// are run here, so a panic in capbill's code stays a bug.
pub fn decoding<T, E: Into<Damaged>>(step: impl FnOnce() -> Result<T, E>) -> Result<T, Damaged> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(result) => result.map_err(Into::into),
        Err(panic) => Err(format!("damaged file: the decoder stopped at {:?}", panic_message(&*panic)).into()),
    }
}

/// Whether arrow-rs decodes every page of a Parquet file.
fn decodes(data: &Bytes) -> Result<(), Damaged> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data.clone())?.build()?;
    for batch in reader {
        batch?;
    }
    Ok(())
}

/// The frame with every column cast to text, for tables that are validated
/// value by value (the partner directory, which refuses float columns first).
pub fn text_columns(df: &DataFrame) -> PolarsResult<DataFrame> {
    let cols = df.columns().iter().map(|c| c.cast(&DataType::String)).collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(df.height(), cols)
}

/// `s` safe in XML and HTML text and quoted attribute values, as a new
/// string: see [`escape_markup_into`] for the rules. The e-invoices escape
/// with it.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_markup_into(&mut out, s);
    out
}

/// Appends `s` to `out` safe in XML and HTML text and quoted attribute
/// values: `& < > " '` as character references, and the control characters
/// XML 1.0 does not allow (all below U+0020 but tab, newline and carriage
/// return, and U+FFFE, U+FFFF) as spaces. Statements and e-invoices both
/// escape with it.
///
/// It scans the bytes for the few that need work and copies the clean runs
/// between them whole: in UTF-8 every byte of a multi-byte character is at
/// least 0x80, so only ASCII bytes and the lead byte 0xEF of U+FFFE (EF BF BE)
/// and U+FFFF (EF BF BF) can start something to replace.
pub fn escape_markup_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(s.len());
    // Start of the clean run not written yet.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !MARKUP_LOOK[usize::from(b)] {
            i += 1;
            continue;
        }
        let (with, len) = match b {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\'' => ("&#39;", 1),
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => (" ", 3),
            // Another character of U+F000 to U+FFFF: kept as it is.
            0xEF => {
                i += 1;
                continue;
            }
            // A control character (the table leaves out tab, newline and carriage return).
            _ => (" ", 1),
        };
        out.push_str(&s[run..i]);
        out.push_str(with);
        i += len;
        run = i;
    }
    out.push_str(&s[run..]);
}

/// The bytes [`escape_markup_into`] looks at: `& < > " '`, the control
/// characters but tab, newline and carriage return, and 0xEF.
const MARKUP_LOOK: [bool; 256] = {
    let mut look = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        look[b] = !matches!(b, 0x09 | 0x0A | 0x0D);
        b += 1;
    }
    look[b'&' as usize] = true;
    look[b'<' as usize] = true;
    look[b'>' as usize] = true;
    look[b'"' as usize] = true;
    look[b'\'' as usize] = true;
    look[0xEF] = true;
    look
};

/// Writes a frame as CSV with a header row. Decimals keep their full scale.
pub fn write_csv(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = encoding_buffer(df);
    CsvWriter::new(&mut buf).include_header(true).finish(df)?;
    Ok(buf)
}

/// An empty buffer for a frame's Parquet or CSV encoding, with room for
/// more than the encoding is likely to take: twice the frame's size in
/// memory and 64 bytes a row. What is reserved and never written is
/// address space only (the kernel maps a page when it is first written),
/// while a buffer that doubles as it fills copies everything written so
/// far each time, into fresh pages (at 10 x W-hourly, 6 % of the CPU time
/// of encoding the tables and FOCUS). An encoding larger than the room
/// still fits: the buffer grows as before.
pub fn encoding_buffer(df: &DataFrame) -> Vec<u8> {
    let room = df.estimated_size().saturating_mul(2).saturating_add(df.height().saturating_mul(64));
    Vec::with_capacity(room.saturating_add(4096))
}

/// Writes a frame as zstd-compressed Parquet.
pub fn write_parquet(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = encoding_buffer(df);
    ParquetWriter::new(&mut buf).with_compression(ParquetCompression::Zstd(None)).finish(df)?;
    Ok(buf)
}

/// Decimal columns are written with this precision (Parquet `DECIMAL(38, s)`).
pub const DECIMAL_PRECISION: usize = money::DECIMAL_DIGITS as usize;

/// A `Decimal(38, scale)` column from exact values (each widened to `scale`).
/// A value that would lose a digit at `scale`, or needs more than 38
/// digits, is an error naming the column: it is never written rounded.
pub fn decimal_column(
    name: &str,
    values: impl IntoIterator<Item = Option<Decimal>>,
    scale: u32,
) -> PolarsResult<Column> {
    exact_decimal_column(name, values.into_iter().map(|v| v.map(money::Exact::of)), scale)
}

/// [`decimal_column`] of values that may need more digits than a [`Decimal`] holds.
pub fn exact_decimal_column(
    name: &str,
    values: impl IntoIterator<Item = Option<money::Exact>>,
    scale: u32,
) -> PolarsResult<Column> {
    let mantissas = values
        .into_iter()
        .map(|v| v.map(|e| e.mantissa_at(scale, "value")).transpose())
        .collect::<Result<Vec<Option<i128>>, _>>()
        .map_err(|_| {
            PolarsError::ComputeError(
                format!("a value of {name} does not fit DECIMAL({}, {scale})", money::DECIMAL_DIGITS).into(),
            )
        })?;
    Ok(Int128Chunked::from_iter_options(name.into(), mantissas.into_iter())
        .into_decimal(DECIMAL_PRECISION, scale as usize)?
        .into_series()
        .into_column())
}

/// The values of a decimal column as exact decimals (nulls as zero).
pub fn decimals(df: &DataFrame, name: &str) -> PolarsResult<Vec<Decimal>> {
    let c = df.column(name)?.decimal()?;
    let scale = c.scale() as u32;
    Ok(c.physical().iter().map(|v| Decimal::from_i128_with_scale(v.unwrap_or(0), scale)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_in_a_reserved_buffer_are_the_bytes_of_a_growing_one() {
        // Short rows, long rows (past the room: a value far longer than 64
        // bytes and quoted, twice its size in CSV) and none.
        let long = "\"quoted\", ".repeat(2000);
        for values in [vec!["a", "b"], vec![long.as_str(), "x"], vec![]] {
            let n = values.len();
            let df = DataFrame::new(
                n,
                vec![Column::new("s".into(), values), Column::new("n".into(), (0..n as u64).collect::<Vec<_>>())],
            )
            .unwrap();
            let mut grown = Vec::new();
            CsvWriter::new(&mut grown).include_header(true).finish(&mut df.clone()).unwrap();
            assert_eq!(write_csv(&mut df.clone()).unwrap(), grown, "{n} rows");
            let parquet = write_parquet(&mut df.clone()).unwrap();
            let read = ParquetReader::new(std::io::Cursor::new(parquet)).finish().unwrap();
            assert!(read.equals(&df), "{n} rows");
        }
    }

    #[test]
    fn recognises_formats_by_extension() {
        assert_eq!(Format::of_key("a/b/part-0.CSV"), Some(Format::Csv));
        assert_eq!(Format::of_key("x.jsonl"), Some(Format::JsonLines));
        assert_eq!(Format::of_key("export.json"), Some(Format::Json));
        assert_eq!(Format::of_key("d.parquet"), Some(Format::Parquet));
        assert_eq!(Format::of_key("README"), None);
        assert_eq!(Format::of_key("notes.txt"), None);
    }

    #[test]
    fn finds_ragged_rows() {
        assert_eq!(ragged_csv_row(b"a,b\n1,2\n1,2,3\n"), Some((2, 3, 2)));
        assert_eq!(ragged_csv_row(b"a,b\n\"x,y\",2\n1,2"), None);
        assert_eq!(ragged_csv_row(b"a,b\r\n1\r\n"), Some((1, 1, 2)));
    }

    #[test]
    fn ragged_rows_count_records_not_lines() {
        // A quoted newline stays inside its field and its row.
        assert_eq!(ragged_csv_row(b"a,b\n\"x\ny\",2\n1,2,3\n"), Some((2, 3, 2)));
        assert_eq!(ragged_csv_row(b"a,b\r\n\"x\r\ny\",2\r\n3\r\n"), Some((2, 1, 2)));
        // Empty lines are not rows.
        assert_eq!(ragged_csv_row(b"a,b\n\n1,2\n\r\n1\n"), Some((2, 1, 2)));
        // Doubled quotes inside a quoted field, and no trailing newline.
        assert_eq!(ragged_csv_row(b"a,b\n\"say \"\"hi\"\", you\",2\n1"), Some((2, 1, 2)));
        assert_eq!(ragged_csv_row(b"a,b\n1,2\n"), None);
        assert_eq!(ragged_csv_row(b"a,b"), None);
        assert_eq!(ragged_csv_row(b""), None);
    }

    /// The rules of [`escape_markup`] character by character, as they were
    /// written before it scanned bytes.
    fn escape_by_char(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                '\t' | '\n' | '\r' => out.push(c),
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push(' '),
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn markup_is_escaped_by_the_rules() {
        let cases = [
            "",
            "plain",
            "a<b>&\"c'/ü",
            "\u{0}\u{1}\t\n\r\u{1f}\u{7f} end",
            "x\u{FFFE}y\u{FFFF}z\u{FFFD}\u{F000}\u{FEFF}\u{EFFF}",
            "\u{FFFF}",
            "\u{FFFE}&",
            "日本語 & <タグ> \u{1F600}'",
        ];
        for s in cases {
            assert_eq!(escape_markup(s), escape_by_char(s), "{s:?}");
            let mut out = String::from("kept:");
            escape_markup_into(&mut out, s);
            assert_eq!(out, format!("kept:{}", escape_by_char(s)), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn markup_escaping_matches_the_rules_for_any_text(s in "(?s).{0,40}", t in "[&<>\"'\t\n\r\x00-\x1f a\u{FFFE}\u{FFFF}\u{FFFD}\u{F000}é]{0,40}") {
            proptest::prop_assert_eq!(escape_markup(&s), escape_by_char(&s));
            proptest::prop_assert_eq!(escape_markup(&t), escape_by_char(&t));
        }
    }

    #[test]
    fn csv_round_trip_keeps_text() {
        let df = read_csv_text(Bytes::from_static(b"a,b\n007,\n1.50,x\n")).unwrap();
        let a = df.column("a").unwrap().str().unwrap();
        assert_eq!(a.get(0), Some("007"));
        assert_eq!(a.get(1), Some("1.50"));
        assert_eq!(df.column("b").unwrap().str().unwrap().get(0), None);
    }
}
