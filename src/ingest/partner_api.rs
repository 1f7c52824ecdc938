//! The partner API's usage export: a JSON array of
//! `{client_id, name, allocated_capacity, daily_usage: [{date, usage, allocated_capacity}]}`.
//!
//! `client_id` is the storage account, each `daily_usage` entry one
//! observation of `usage` bytes for that UTC day. Records are numbered in
//! file order (row 1 is the first `daily_usage` entry of the first client)
//! and errors also name the client and the entry.
//!
//! The export is deserialised into borrowed, typed structs (no JSON value
//! tree), which keeps a large export's parse close to a single pass over
//! its bytes. A value of the wrong JSON type (a `usage` that is not a
//! number, a `client_id` that is not a string) makes the object unparsable,
//! with serde's line and column.

use std::borrow::Cow;

use serde::Deserialize;

use super::text::{json_bytes, parse_instant};
use super::{IngestError, RecordSink};

#[derive(Deserialize)]
struct Client<'a> {
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    daily_usage: Option<Vec<Entry<'a>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    date: Option<Cow<'a, str>>,
    usage: Option<serde_json::Number>,
}

/// Reads one export object.
pub(crate) fn read(data: &[u8], sink: &mut RecordSink) -> Result<(), IngestError> {
    let clients: Vec<Client> = serde_json::from_slice(data)
        .map_err(|e| IngestError::Unparsable { object: sink.object().to_owned(), source: Box::new(e) })?;
    let no_bucket = sink.buckets.id("");
    // Every client lists the same few dates: each distinct one is parsed once.
    let mut dates: polars::prelude::PlHashMap<&str, Result<i64, String>> = Default::default();
    let mut row = 0;
    for (ci, client) in clients.iter().enumerate() {
        let account = match client.client_id.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s,
            _ => return Err(sink.layout(format!("client [{ci}]: client_id missing or empty"))),
        };
        let Some(days) = &client.daily_usage else {
            return Err(sink.layout(format!("client {account}: daily_usage missing")));
        };
        let id = sink.accounts.id(account);
        for (di, entry) in days.iter().enumerate() {
            row += 1;
            let field = |f: &str| format!("{f} (client {account}, daily_usage[{di}])");
            let date = entry.date.as_deref().map(|d| dates.entry(d).or_insert_with(|| parse_instant(d)).clone());
            let ts = match date {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    sink.bad(row, &field("date"), e)?;
                    continue;
                }
                None => {
                    sink.bad(row, &field("date"), "missing".to_owned())?;
                    continue;
                }
            };
            let bytes = match entry.usage.as_ref().and_then(serde_json::Number::as_u64) {
                Some(b) => b,
                None => {
                    let usage = entry.usage.clone().map_or(serde_json::Value::Null, serde_json::Value::Number);
                    let e = json_bytes(&usage).expect_err("not an unsigned 64-bit integer");
                    sink.bad(row, &field("usage"), e)?;
                    continue;
                }
            };
            sink.push_ids(row, id, no_bucket, ts, bytes)?;
        }
    }
    Ok(())
}
