//! Text encodings of usage records: CSV and JSON Lines, and the parsers of
//! timestamp and byte values that every text encoding shares.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value;

use super::IngestError;
use super::sink::{RecordSink, US_PER_DAY};
use crate::formats;

/// Parses an RFC 3339 timestamp, a zone-less timestamp (UTC) or a date
/// (midnight UTC) into microseconds since the epoch.
pub(crate) fn parse_instant(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.len() == 10 {
        return crate::model::iso_date(s)
            .map_or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d"), Ok)
            .map(|d| i64::from(crate::model::day_of(d)) * US_PER_DAY)
            .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Ok(t.timestamp_micros());
    }
    Err(format!("{s:?} is not an RFC 3339 timestamp or a date"))
}

/// Parses a byte count: an unsigned 64-bit integer.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    s.parse::<u64>().map_err(|_| format!("{s:?} is not an unsigned 64-bit integer"))
}

/// A JSON value as a byte count.
pub(crate) fn json_bytes(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            if n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0) {
                format!("{n} is negative")
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
    let df = formats::read_csv_text(data.clone()).map_err(|e| match formats::ragged_csv_row(&data) {
        Some((row, fields, expected)) => IngestError::Record {
            object: sink.object().to_owned(),
            row,
            field: "(row)".to_owned(),
            reason: format!("{fields} fields, the header has {expected}"),
        },
        None => IngestError::Unparsable { object: sink.object().to_owned(), source: Box::new(e) },
    })?;
    let names: Vec<&str> = df.get_column_names().into_iter().map(|n| n.as_str()).collect();
    let layout = layout_of(names.iter().copied()).map_err(|r| sink.layout(r))?;
    let acc = df.column("storage_account_id")?.str()?;
    let time = df.column(layout.time)?.str()?;
    let by = df.column("bytes")?.str()?;
    let bucket = if layout.bucket { Some(df.column("bucket")?.str()?) } else { None };
    for i in 0..df.height() {
        let row = i + 1;
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
        let rec: serde_json::Map<String, Value> = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                sink.bad(row, "(record)", format!("not a JSON object: {e}"))?;
                continue;
            }
        };
        let layout = layout_of(rec.keys().map(String::as_str)).map_err(|r| sink.layout(format!("line {row}: {r}")))?;
        let account = match rec.get("storage_account_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
            _ => {
                sink.bad(row, "storage_account_id", "missing or not a string".to_owned())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1970-01-02").unwrap(), US_PER_DAY);
        assert_eq!(parse_instant("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        assert_eq!(parse_instant("1970-01-01T00:00:01").unwrap(), 1_000_000);
        assert_eq!(parse_instant("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert_eq!(parse_instant("1970-01-01 00:00:00.5").unwrap(), 500_000);
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2026-02-30").is_err());
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
    }

    #[test]
    fn layouts() {
        assert_eq!(layout_of(["date", "storage_account_id", "bytes"]).unwrap().time, "date");
        assert!(layout_of(["timestamp", "storage_account_id", "bytes", "bucket"]).unwrap().bucket);
        let e = layout_of(["account", "bytes", "date"]).unwrap_err();
        assert!(e.starts_with("unknown column layout [account, bytes, date]"), "{e}");
        assert!(layout_of(["storage_account_id", "bytes", "date", "timestamp"]).is_err());
    }
}
