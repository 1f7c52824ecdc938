//! Text encodings of usage records: CSV and JSON Lines, and the parsers of
//! timestamp and byte values that every text encoding shares.
//!
//! Readers only turn bytes into records for the sink: whether a record is
//! kept, and what a malformed one does, is the sink's to decide.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use polars::prelude::StringChunked;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::IngestError;
use super::sink::{RecordSink, US_PER_DAY};
use crate::formats;

/// Parses an RFC 3339 timestamp, a zone-less timestamp (UTC) or a date
/// (midnight UTC) into microseconds since the epoch. `T` or a space may
/// separate date and time, and an offset may also be written `+0000` or
/// `+00` (as polars, PostgreSQL and others write it), after either.
pub(crate) fn parse_instant(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.len() == 10 {
        return crate::model::iso_date(s)
            .map_or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d"), Ok)
            .map(|d| i64::from(crate::model::day_of(d)) * US_PER_DAY)
            .map_err(|_| match s.bytes().all(|b| b.is_ascii_digit()) {
                true => format!("{s:?} is not a date (YYYY-MM-DD): numbers of seconds since 1970 are not read"),
                false => format!("{s:?} is not a date (YYYY-MM-DD)"),
            });
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(micros(t.naive_utc()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(micros(t));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Ok(micros(t.naive_utc()));
        }
    }
    Err(format!(
        "{s:?} is not a timestamp (RFC 3339, or with a space for the T or an offset such as +0000) or a date (YYYY-MM-DD)"
    ))
}

/// Microseconds since the epoch of a UTC time. A leap second (`23:59:60`)
/// stays in its second's last microsecond, so in its own UTC day (spec
/// 2.2), instead of becoming the next day's midnight.
fn micros(t: NaiveDateTime) -> i64 {
    let leap = t.and_utc().timestamp_subsec_micros().min(999_999);
    t.and_utc().timestamp() * 1_000_000 + i64::from(leap)
}

/// Why a whole number (as written, `value`) is no byte count: it is above
/// 2^64 − 1. The one wording for every encoding.
pub(crate) fn above_largest(value: impl fmt::Display) -> String {
    format!("{value} is above {}, the largest byte count", u64::MAX)
}

/// Parses a byte count: an unsigned 64-bit integer.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    // Rust's own parser takes a leading `+`; a byte count is digits only.
    if s.starts_with('+') {
        return Err(format!("{s:?} has a sign: a byte count is digits only"));
    }
    s.parse::<u64>().map_err(|_| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            above_largest(format_args!("{s:?}"))
        } else {
            format!("{s:?} is not an unsigned 64-bit integer")
        }
    })
}

/// A JSON value as a byte count.
pub(crate) fn json_bytes(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            if n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0) {
                format!("{n} is negative")
            } else if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f >= u64::MAX as f64) {
                // A whole number JSON could not hold as an integer: above 2^64 − 1.
                above_largest(n)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) {
                let whole = f.abs();
                format!(
                    "{n} is written with a decimal point or an exponent: a byte count is an integer (write {whole:.0})"
                )
            } else {
                format!("{n} is not a whole number of bytes")
            }
        }),
        Value::String(s) => parse_bytes(s),
        Value::Null => Err("missing".to_owned()),
        other => Err(format!("{other} is not a number")),
    }
}

/// The field names of one record layout.
#[derive(Debug)]
pub(crate) struct Layout {
    /// `timestamp` or `date`.
    pub time: &'static str,
    /// Whether a `bucket` field is present.
    pub bucket: bool,
}

/// Decides the layout from a header, or explains why it is not one.
pub(crate) fn layout_of<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Result<Layout, String> {
    let has = |n: &str| names.clone().into_iter().any(|c| c == n);
    let missing: Vec<_> = ["storage_account_id", "bytes"].into_iter().filter(|c| !has(c)).collect();
    let time = match (has("timestamp"), has("date")) {
        (true, false) => Some("timestamp"),
        (false, true) => Some("date"),
        _ => None,
    };
    match (missing.is_empty(), time) {
        (true, Some(time)) => Ok(Layout { time, bucket: has("bucket") }),
        _ => {
            let found: Vec<_> = names.into_iter().collect();
            Err(format!(
                "unknown column layout [{}]: expected storage_account_id, bytes, one of timestamp or date, and optionally bucket",
                found.join(", ")
            ))
        }
    }
}

/// Reads a CSV object.
pub(crate) fn read_csv(data: Bytes, sink: &mut RecordSink) -> Result<(), IngestError> {
    let ragged = |sink: &RecordSink, (row, fields, expected): (usize, usize, usize)| IngestError::Record {
        object: sink.object().to_owned(),
        row,
        field: "(row)".to_owned(),
        reason: format!("{fields} fields, the header has {expected}"),
    };
    let df = formats::read_csv_text(data.clone()).map_err(|e| {
        if let Err(bad) = std::str::from_utf8(&data) {
            // Text in another encoding (Windows-1252, Latin-1): named by its
            // row (the header is row 0) and byte, not only "invalid utf-8".
            let at = bad.valid_up_to();
            let line = data[..at].iter().filter(|&&b| b == b'\n').count();
            return IngestError::Record {
                object: sink.object().to_owned(),
                row: line,
                field: "(row)".to_owned(),
                reason: format!(
                    "byte 0x{:02X} is not UTF-8: the file is in another encoding (Windows-1252, Latin-1?); save it as UTF-8",
                    data[at]
                ),
            };
        }
        match formats::ragged_csv_row(&data) {
            Some(r) => ragged(sink, r),
            None => sink.unparsable(e),
        }
    })?;
    // A row with fewer fields than the header reads as nulls in its last
    // columns, its values under the wrong names: named as what it is, not
    // as a bad value of another field. Looked for only when the last column
    // has a null (an empty last field has one too).
    if df.columns().last().is_some_and(|c| c.null_count() > 0)
        && let Some(r) = formats::ragged_csv_row(&data)
    {
        return Err(ragged(sink, r));
    }
    let names: Vec<&str> = df.get_column_names().into_iter().map(|n| n.as_str()).collect();
    let layout = layout_of(names.iter().copied()).map_err(|r| sink.layout(r))?;
    sink.set_time_field(layout.time);
    let acc = df.column("storage_account_id")?.str()?;
    let time = df.column(layout.time)?.str()?;
    let by = df.column("bytes")?.str()?;
    let bucket = if layout.bucket { Some(df.column("bucket")?.str()?) } else { None };
    let empty = |c: &StringChunked, i: usize| c.get(i).is_none_or(|v| v.trim().is_empty());
    for i in 0..df.height() {
        let row = i + 1;
        // A blank line (every field empty) holds no record: skipped, as
        // JSON Lines skips its empty lines. Row numbers still count it.
        if empty(acc, i) && empty(time, i) && empty(by, i) && bucket.is_none_or(|b| empty(b, i)) {
            continue;
        }
        let account = match acc.get(i).map(str::trim).filter(|s| !s.is_empty()) {
            Some(a) => a,
            None => {
                sink.bad(row, "storage_account_id", "missing".to_owned())?;
                continue;
            }
        };
        let ts = match time.get(i).map(parse_instant) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                sink.bad(row, layout.time, e)?;
                continue;
            }
            None => {
                sink.bad(row, layout.time, "missing".to_owned())?;
                continue;
            }
        };
        let bytes = match by.get(i).map(parse_bytes) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                sink.bad(row, "bytes", e)?;
                continue;
            }
            None => {
                sink.bad(row, "bytes", "missing".to_owned())?;
                continue;
            }
        };
        let b = bucket.and_then(|c| c.get(i)).unwrap_or("");
        sink.push(row, account, b, ts, bytes)?;
    }
    Ok(())
}

/// Reads a JSON Lines object: one record object per non-empty line.
pub(crate) fn read_json_lines(data: &[u8], sink: &mut RecordSink) -> Result<(), IngestError> {
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let row = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut held = Value::Null;
        let rec = match JsonRecord::parse(line, &mut held) {
            Ok(r) => r,
            Err(e) => {
                sink.bad_json(row, e)?;
                continue;
            }
        };
        let layout = match layout_of(rec.names()) {
            Ok(layout) => layout,
            // The message lists every key of the line, unknown ones too.
            Err(known) => {
                let map = serde_json::from_slice::<Map<String, Value>>(line).unwrap_or_default();
                let reason = layout_of(map.keys().map(String::as_str)).err().unwrap_or(known);
                return Err(sink.layout(format!("line {row}: {reason}")));
            }
        };
        let account = match &rec.storage_account_id {
            Cell::Str(s) if !s.trim().is_empty() => s.trim(),
            // Empty, only spaces or null: missing, as in CSV.
            Cell::Str(_) | Cell::Null | Cell::Absent => {
                sink.bad(row, "storage_account_id", "missing".to_owned())?;
                continue;
            }
            Cell::Other => {
                sink.bad(row, "storage_account_id", "not a string".to_owned())?;
                continue;
            }
        };
        sink.set_time_field(layout.time);
        let time = if layout.time == "date" { &rec.date } else { &rec.timestamp };
        let ts = match time {
            Cell::Str(s) => parse_instant(s),
            _ => Err("missing or not a string".to_owned()),
        };
        let ts = match ts {
            Ok(t) => t,
            Err(e) => {
                sink.bad(row, layout.time, e)?;
                continue;
            }
        };
        let bytes = match json_bytes(rec.bytes.as_ref().unwrap_or(&Value::Null)) {
            Ok(b) => b,
            Err(e) => {
                sink.bad(row, "bytes", e)?;
                continue;
            }
        };
        let bucket = match &rec.bucket {
            Cell::Absent | Cell::Null => "",
            Cell::Str(s) => s,
            Cell::Other => {
                sink.bad(row, "bucket", "not a string".to_owned())?;
                continue;
            }
        };
        sink.push(row, account, bucket, ts, bytes)?;
    }
    Ok(())
}

/// One JSON Lines record: the fields capbill reads, borrowed from the line
/// unless they have escapes, each told apart as absent, `null`, a string or
/// another JSON value (the layout asks which are present, `null` or not).
///
/// Other fields are ignored, but still parsed as strictly as a JSON value
/// would be (`flatten` keeps them as serde content instead of skipping
/// them unchecked), so a line is a bad record exactly when it is not a JSON
/// object: a number out of range or a lone surrogate in an unknown field
/// makes it one, as it does a `serde_json::Map`. `flatten` also makes serde
/// read the record as a map only (a derived struct would also take a JSON
/// array), and `expecting` gives a map's message.
#[derive(Deserialize)]
#[serde(expecting = "a map")]
struct JsonRecord<'a> {
    #[serde(default, borrow)]
    storage_account_id: Cell<'a>,
    #[serde(default, borrow)]
    timestamp: Cell<'a>,
    #[serde(default, borrow)]
    date: Cell<'a>,
    /// `None` if absent; `null` is `Some(Value::Null)`. A JSON value, so
    /// that [`json_bytes`] says what is wrong with one that is not a count.
    #[serde(default, deserialize_with = "present")]
    bytes: Option<Value>,
    #[serde(default, borrow)]
    bucket: Cell<'a>,
    #[serde(flatten)]
    _other: IgnoredAny,
}

impl<'a> JsonRecord<'a> {
    /// Parses one line, as a `serde_json::Map` would: the same lines parse
    /// (a key given twice keeps its last value) and the same error is given
    /// for the others. Lines that the derived reader refuses take the
    /// `Map`'s path, whose value is `held`.
    fn parse(line: &'a [u8], held: &'a mut Value) -> Result<Self, serde_json::Error> {
        if line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            && let Ok(text) = std::str::from_utf8(line)
            && let Ok(rec) = serde_json::from_str(text)
        {
            return Ok(rec);
        }
        *held = Value::Object(serde_json::from_slice::<Map<String, Value>>(line)?);
        JsonRecord::deserialize(&*held)
    }

    /// The names of the fields the record has that a layout asks about.
    fn names(&self) -> impl Iterator<Item = &'static str> + Clone {
        [
            ("storage_account_id", self.storage_account_id.present()),
            ("timestamp", self.timestamp.present()),
            ("date", self.date.present()),
            ("bytes", self.bytes.is_some()),
            ("bucket", self.bucket.present()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
    }
}

/// A text field of a JSON Lines record.
#[derive(Debug, Default, PartialEq)]
enum Cell<'a> {
    /// Not in the record.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A string.
    Str(Cow<'a, str>),
    /// Any other JSON value.
    Other,
}

impl Cell<'_> {
    fn present(&self) -> bool {
        *self != Cell::Absent
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(CellVisitor(PhantomData))
    }
}

struct CellVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for CellVisitor<'a> {
    type Value = Cell<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cell<'a>, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell<'a>, E> {
        Ok(Cell::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cell<'a>, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell<'a>, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Cell<'a>, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Cell<'a>, E> {
        Ok(Cell::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Cell<'a>, E> {
        Ok(Cell::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Cell<'a>, E> {
        Ok(Cell::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Cell<'a>, E> {
        Ok(Cell::Other)
    }

    /// Read as a JSON value (and dropped), to fail where one would.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell<'a>, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|_| Cell::Other)
    }

    /// Read as a JSON value (and dropped), to fail where one would.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell<'a>, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(|_| Cell::Other)
    }
}

/// A field that is present, whatever its value (`null` too).
fn present<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(de).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestOptions;
    use crate::ingest::sink::Bounds;
    use crate::model::col;

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1970-01-02").unwrap(), US_PER_DAY);
        assert_eq!(parse_instant("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        assert_eq!(parse_instant("1970-01-01T00:00:01").unwrap(), 1_000_000);
        assert_eq!(parse_instant("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert_eq!(parse_instant("1970-01-01 00:00:00.5").unwrap(), 500_000);
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2026-02-30").is_err());
        // An offset without a colon after a T (polars' CSV) or a space (PostgreSQL).
        for s in ["1970-01-01T01:00:00.000000+0100", "1970-01-01 01:00:00+0100", "1970-01-01T00:00:00+00"] {
            assert_eq!(parse_instant(s), Ok(0), "{s}");
        }
        // A leap second stays in its UTC day (spec 2.2).
        let leap = parse_instant("2026-11-03T23:59:60Z").unwrap();
        assert_eq!(leap.div_euclid(US_PER_DAY), parse_instant("2026-11-03").unwrap() / US_PER_DAY);
        assert_eq!(leap, parse_instant("2026-11-04").unwrap() - 1);
        let e = parse_instant("1793664000").unwrap_err();
        assert!(e.contains("numbers of seconds since 1970 are not read"), "{e}");
    }

    #[test]
    fn byte_values() {
        assert_eq!(parse_bytes("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse_bytes("-1").unwrap_err(), "\"-1\" is negative");
        assert!(parse_bytes("1.5").is_err());
        assert!(parse_bytes("18446744073709551616").is_err());
        assert_eq!(json_bytes(&serde_json::json!(-3)).unwrap_err(), "-3 is negative");
        assert!(json_bytes(&serde_json::json!(1.5)).is_err());
        assert_eq!(json_bytes(&serde_json::json!("12")).unwrap(), 12);
        // The README: "a sign, a decimal point or an exponent is not" allowed.
        assert_eq!(parse_bytes("+1").unwrap_err(), "\"+1\" has a sign: a byte count is digits only");
        // A whole number written as a float is said as such, not as too large.
        let e = json_bytes(&serde_json::json!(1.0e12)).unwrap_err();
        assert_eq!(
            e,
            "1000000000000.0 is written with a decimal point or an exponent: a byte count is an integer (write 1000000000000)"
        );
        let e = json_bytes(&serde_json::from_str::<serde_json::Value>("18446744073709551616").unwrap()).unwrap_err();
        assert!(e.contains("is above 18446744073709551615"), "{e}");
    }

    #[test]
    fn layouts() {
        assert_eq!(layout_of(["date", "storage_account_id", "bytes"]).unwrap().time, "date");
        assert!(layout_of(["timestamp", "storage_account_id", "bytes", "bucket"]).unwrap().bucket);
        let e = layout_of(["account", "bytes", "date"]).unwrap_err();
        assert!(e.starts_with("unknown column layout [account, bytes, date]"), "{e}");
        assert!(layout_of(["storage_account_id", "bytes", "date", "timestamp"]).is_err());
    }

    fn sink(skip_bad_records: bool) -> RecordSink {
        let opts = IngestOptions {
            month: "2026-10".parse().unwrap(),
            skip_bad_records,
            concurrency: 1,
            memory_budget: crate::config::DEFAULT_MEMORY_BUDGET,
        };
        RecordSink::new("usage.jsonl".into(), Bounds::Any, opts, &crate::ingest::names::RunNames::default())
    }

    /// Kept records as (row, account, bucket, timestamp, bytes) and the
    /// findings' details, or the error.
    type Outcome = Result<(Vec<(u32, String, String, i64, u64)>, Vec<String>), String>;

    /// What reading `data` gives: the error, or every kept record as
    /// (row, account, bucket, timestamp, bytes) and the findings' details.
    fn outcome(
        read: fn(&[u8], &mut RecordSink) -> Result<(), IngestError>,
        data: &str,
        skip_bad_records: bool,
    ) -> Outcome {
        let mut s = sink(skip_bad_records);
        read(data.as_bytes(), &mut s).map_err(|e| crate::error::chain(&e))?;
        let (days, findings, accounts, buckets) = s.finish_alone().unwrap();
        let (accounts, buckets): (Vec<&str>, Vec<&str>) = (accounts.names().collect(), buckets.names().collect());
        let mut records = Vec::new();
        for df in days {
            let df = df.select([col::ROW, col::ACCOUNT_ID, col::BUCKET, col::TS, col::BYTES]).unwrap();
            let c = |name: &str| df.column(name).unwrap().as_materialized_series().clone();
            let (row, account, bucket, ts, bytes) =
                (c(col::ROW), c(col::ACCOUNT_ID), c(col::BUCKET), c(col::TS), c(col::BYTES));
            for i in 0..df.height() {
                records.push((
                    row.u32().unwrap().get(i).unwrap(),
                    accounts[account.u32().unwrap().get(i).unwrap() as usize].to_owned(),
                    buckets[bucket.u32().unwrap().get(i).unwrap() as usize].to_owned(),
                    ts.i64().unwrap().get(i).unwrap(),
                    bytes.u64().unwrap().get(i).unwrap(),
                ));
            }
        }
        Ok((records, findings.into_iter().map(|f| f.detail).collect()))
    }

    fn json_lines(data: &str) -> Outcome {
        outcome(read_json_lines, data, true)
    }

    const OCT_1: i64 = 20_727 * US_PER_DAY;

    #[test]
    fn blank_csv_lines_are_no_records_and_keep_the_row_numbers_of_the_rest() {
        fn csv(data: &[u8], s: &mut RecordSink) -> Result<(), IngestError> {
            read_csv(Bytes::copy_from_slice(data), s)
        }
        let data = "storage_account_id,timestamp,bytes,bucket\nsa-1,2026-10-01T00:00:00Z,5,b\n\n,,,\nsa-1,2026-10-01T00:00:00Z,x,b\n\n\n";
        let (records, findings) = outcome(csv, data, true).unwrap();
        assert_eq!(records, [(1, "sa-1".into(), "b".into(), OCT_1, 5)]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("row 4"), "the bad record keeps its row: {findings:?}");
    }

    #[test]
    fn a_csv_in_another_encoding_is_named_by_its_row_and_byte() {
        // "café" in Windows-1252 on the second record.
        let data = b"storage_account_id,timestamp,bytes\nsa-1,2026-10-01T00:00:00Z,5\ncaf\xE9,2026-10-01T00:00:00Z,5\n";
        let e = read_csv(Bytes::copy_from_slice(data), &mut sink(false)).unwrap_err();
        match e {
            IngestError::Record { row, reason, .. } => {
                assert_eq!(row, 2);
                assert!(reason.starts_with("byte 0xE9 is not UTF-8"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_lines_trim_the_account_and_take_bytes_as_a_number_or_a_string_of_digits() {
        let (records, findings) = json_lines(concat!(
            r#"{"storage_account_id": "  sa-1 ", "timestamp": "2026-10-01T00:00:00Z", "bytes": 5}"#,
            "\n",
            r#"{"storage_account_id": "sa-2", "date": "2026-10-02", "bytes": " 18446744073709551615", "bucket": "b"}"#,
        ))
        .unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(
            records,
            [(1, "sa-1".into(), "".into(), OCT_1, 5), (2, "sa-2".into(), "b".into(), OCT_1 + US_PER_DAY, u64::MAX)]
        );
    }

    #[test]
    fn json_lines_bad_records_keep_their_messages() {
        let line = |rest: &str| format!(r#"{{"storage_account_id": "sa-1", "date": "2026-10-01", {rest}}}"#);
        let cases = [
            (line(r#""bytes": -5"#), "row 1, field bytes: -5 is negative"),
            (line(r#""bytes": "-5""#), "row 1, field bytes: \"-5\" is negative"),
            (line(r#""bytes": 1.5"#), "row 1, field bytes: 1.5 is not a whole number of bytes"),
            (
                line(r#""bytes": 18446744073709551616"#),
                "row 1, field bytes: 1.8446744073709552e+19 is above 18446744073709551615, the largest byte count",
            ),
            (
                line(r#""bytes": "18446744073709551616""#),
                "row 1, field bytes: \"18446744073709551616\" is above 18446744073709551615, the largest byte count",
            ),
            (line(r#""bytes": null"#), "row 1, field bytes: missing"),
            (line(r#""bytes": [1]"#), "row 1, field bytes: [1] is not a number"),
            (line(r#""bytes": "x""#), "row 1, field bytes: \"x\" is not an unsigned 64-bit integer"),
            (line(r#""bytes": 1, "bucket": 7"#), "row 1, field bucket: not a string"),
            (
                r#"{"storage_account_id": " ", "date": "2026-10-01", "bytes": 1}"#.to_owned(),
                "row 1, field storage_account_id: missing",
            ),
            (
                r#"{"storage_account_id": 7, "date": "2026-10-01", "bytes": 1}"#.to_owned(),
                "row 1, field storage_account_id: not a string",
            ),
            (
                r#"{"storage_account_id": "sa-1", "timestamp": null, "bytes": 1}"#.to_owned(),
                "row 1, field timestamp: missing or not a string",
            ),
            (
                r#"{"storage_account_id": "sa-1", "date": {"d": 1}, "bytes": 1}"#.to_owned(),
                "row 1, field date: missing or not a string",
            ),
            (
                r#"{"storage_account_id": "sa-1", "date": "2026-13-01", "bytes": 1}"#.to_owned(),
                "row 1, field date: \"2026-13-01\" is not a date (YYYY-MM-DD)",
            ),
            ("[1, 2]".to_owned(), "row 1, field (record): not a JSON object: invalid type: sequence, expected a map"),
            ("17".to_owned(), "row 1, field (record): not a JSON object: invalid type: integer `17`, expected a map"),
            ("{\"storage_account_id\": ".to_owned(), "row 1, field (record): not a JSON object: EOF while parsing"),
        ];
        for (data, expected) in &cases {
            let e = outcome(read_json_lines, data, false).unwrap_err();
            assert!(
                e.ends_with(&format!("usage object usage.jsonl {expected}")) || e.contains(expected),
                "{data}: {e}"
            );
            let (records, findings) = json_lines(data).unwrap();
            assert!(records.is_empty(), "{data}");
            assert!(findings.len() == 1 && findings[0].starts_with(expected), "{data}: {findings:?}");
        }
    }

    #[test]
    fn json_lines_null_bucket_is_none_and_extra_fields_are_ignored() {
        let (records, findings) = json_lines(
            r#"{"region": {"x": [1, "\u00e9"]}, "storage_account_id": "sa-\u0031", "bucket": null, "date": "2026-10-01", "bytes": 3, "n": 1e5}"#,
        )
        .unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(records, [(1, "sa-1".into(), "".into(), OCT_1, 3)]);
    }

    #[test]
    fn json_lines_layout_errors_name_every_key_of_the_line() {
        // A missing timestamp: the line is not a usage layout, and the run stops.
        for skip in [false, true] {
            let e = outcome(read_json_lines, "\n{\"storage_account_id\": \"sa-1\", \"bytes\": 1, \"zone\": 2}", skip);
            assert_eq!(
                e.unwrap_err(),
                "usage object usage.jsonl: line 2: unknown column layout [bytes, storage_account_id, zone]: \
                 expected storage_account_id, bytes, one of timestamp or date, and optionally bucket"
            );
        }
        let both = r#"{"storage_account_id": "sa-1", "bytes": 1, "date": null, "timestamp": null}"#;
        assert!(json_lines(both).unwrap_err().contains("unknown column layout"));
    }

    #[test]
    fn json_lines_borrow_from_the_line() {
        let line = br#"{"storage_account_id": "sa-1", "date": "2026-10-01", "bytes": 1, "bucket": "b\"q", "x": [1]}"#;
        let mut held = Value::Null;
        let rec = JsonRecord::parse(line, &mut held).unwrap();
        assert!(matches!(rec.storage_account_id, Cell::Str(Cow::Borrowed("sa-1"))));
        assert!(matches!(rec.date, Cell::Str(Cow::Borrowed("2026-10-01"))));
        assert!(matches!(&rec.bucket, Cell::Str(Cow::Owned(b)) if b == "b\"q"));
        assert_eq!((rec.timestamp, rec.bytes), (Cell::Absent, Some(Value::from(1))));
        assert!(held.is_null(), "read without a map");
    }

    /// The reader this one replaced (a `serde_json::Map` per line), kept as
    /// the reference of what each line gives.
    fn read_json_lines_by_map(data: &[u8], sink: &mut RecordSink) -> Result<(), IngestError> {
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let row = i + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let rec: Map<String, Value> = match serde_json::from_slice(line) {
                Ok(r) => r,
                Err(e) => {
                    sink.bad(row, "(record)", format!("not a JSON object: {e}"))?;
                    continue;
                }
            };
            let layout =
                layout_of(rec.keys().map(String::as_str)).map_err(|r| sink.layout(format!("line {row}: {r}")))?;
            let account = match rec.get("storage_account_id") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
                None | Some(Value::Null | Value::String(_)) => {
                    sink.bad(row, "storage_account_id", "missing".to_owned())?;
                    continue;
                }
                Some(_) => {
                    sink.bad(row, "storage_account_id", "not a string".to_owned())?;
                    continue;
                }
            };
            let ts = match rec.get(layout.time) {
                Some(Value::String(s)) => parse_instant(s),
                _ => Err("missing or not a string".to_owned()),
            };
            let ts = match ts {
                Ok(t) => t,
                Err(e) => {
                    sink.bad(row, layout.time, e)?;
                    continue;
                }
            };
            let bytes = match json_bytes(&rec["bytes"]) {
                Ok(b) => b,
                Err(e) => {
                    sink.bad(row, "bytes", e)?;
                    continue;
                }
            };
            let bucket = match rec.get("bucket") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => {
                    sink.bad(row, "bucket", "not a string".to_owned())?;
                    continue;
                }
            };
            sink.push(row, account, bucket, ts, bytes)?;
        }
        Ok(())
    }

    #[test]
    fn json_lines_read_every_line_as_a_map_would() {
        let ok = r#""storage_account_id": "sa-1", "timestamp": "2026-10-01T01:00:00Z""#;
        let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let lines = [
            format!(r#"{{{ok}, "bytes": 1}}"#),
            format!(r#"  {{{ok}, "bytes": "2"}}  "#),
            format!("{{{ok}, \"bytes\": 3}}\r"),
            // A key given twice keeps its last value.
            format!(r#"{{{ok}, "bytes": "x", "bytes": 4}}"#),
            format!(r#"{{{ok}, "bytes": 5, "storage_account_id": "sa-2"}}"#),
            format!(r#"{{{ok}, "bytes": 6, "bucket": "b\"q"}}"#),
            format!(r#"{{{ok}, "bytes": 7, "bucket": true}}"#),
            format!(r#"{{{ok}, "bytes": 8, "bucket": []}}"#),
            format!(r#"{{{ok}, "bytes": 1e400}}"#),
            format!(r#"{{{ok}, "bytes": 9, "other": 1e400}}"#),
            format!(r#"{{{ok}, "bytes": 10, "other": "\ud800"}}"#),
            format!(r#"{{{ok}, "bytes": 11, "other": {nested}}}"#),
            format!(r#"{{{ok}, "bytes": 12, "timestamp2": {nested}}}"#),
            format!(r#"{{{ok}, "bytes": 13, "bucket": {nested}}}"#),
            format!(r#"{{{ok}, "bytes": -0}}"#),
            format!(r#"{{{ok}, "bytes": 2.0}}"#),
            format!(r#"{{{ok}, "bytes": -1.5}}"#),
            format!(r#"{{{ok}, "bytes": {{"n": 1}}}}"#),
            format!(r#"{{{ok}, "bytes": 14}} trailing"#),
            format!(r#"{{{ok}, "bytes": 15,}}"#),
            format!(r#"[{{{ok}, "bytes": 16}}]"#),
            r#"["sa-1", "2026-10-01", null, 17, "b"]"#.to_owned(),
            r#"{"storage_account_id": "sa-1", "date": "2026-09-30", "bytes": 18}"#.to_owned(),
            r#"{"storage_account_id": "sa-\u00e9", "date": " 2026-10-03 ", "bytes": 19}"#.to_owned(),
            r#""a string""#.to_owned(),
            "null".to_owned(),
            "{".to_owned(),
        ];
        let mut all = String::new();
        for line in &lines {
            for skip in [false, true] {
                let (new, old) = (outcome(read_json_lines, line, skip), outcome(read_json_lines_by_map, line, skip));
                assert_eq!(new, old, "{line}");
            }
            all.push_str(line);
            all.push('\n');
        }
        assert_eq!(outcome(read_json_lines, &all, true), outcome(read_json_lines_by_map, &all, true));
        // Invalid UTF-8 in a field that is not read.
        let mut latin1 = format!(r#"{{{ok}, "bytes": 20, "name": "M"#).into_bytes();
        latin1.extend_from_slice(b"\xfcller\"}");
        let run = |read: fn(&[u8], &mut RecordSink) -> Result<(), IngestError>| {
            let mut s = sink(true);
            read(&latin1, &mut s).unwrap();
            s.findings.iter().map(|f| f.detail.clone()).collect::<Vec<_>>()
        };
        assert_eq!(run(read_json_lines), run(read_json_lines_by_map));
        assert_eq!(run(read_json_lines).len(), 1);
    }
}
