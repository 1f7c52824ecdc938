//! The partner API's usage export: a JSON array of
//! `{client_id, name, allocated_capacity, daily_usage: [{date, usage, allocated_capacity}]}`.
//!
//! `client_id` is the storage account, each `daily_usage` entry one
//! observation of `usage` bytes for that UTC day. Records are numbered in
//! file order (row 1 is the first `daily_usage` entry of the first client)
//! and errors also name the client and the entry.

use serde::Deserialize;
use serde_json::Value;

use super::text::{json_bytes, parse_instant};
use super::{IngestError, RecordSink};

#[derive(Deserialize)]
struct Client {
    client_id: Option<Value>,
    #[serde(default)]
    daily_usage: Option<Vec<Value>>,
}

/// Reads one export object.
pub(crate) fn read(data: &[u8], sink: &mut RecordSink) -> Result<(), IngestError> {
    let clients: Vec<Client> = serde_json::from_slice(data)
        .map_err(|e| IngestError::Unparsable { object: sink.object().to_owned(), source: Box::new(e) })?;
    let mut row = 0;
    for (ci, client) in clients.iter().enumerate() {
        let account = match &client.client_id {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                return Err(sink.layout(format!("client [{ci}]: client_id missing or not a string")));
            }
        };
        let Some(days) = &client.daily_usage else {
            return Err(sink.layout(format!("client {account}: daily_usage missing")));
        };
        for (di, entry) in days.iter().enumerate() {
            row += 1;
            let field = |f: &str| format!("{f} (client {account}, daily_usage[{di}])");
            let date = match entry.get("date") {
                Some(Value::String(s)) => parse_instant(s),
                _ => Err("missing or not a string".to_owned()),
            };
            let ts = match date {
                Ok(t) => t,
                Err(e) => {
                    sink.bad(row, &field("date"), e)?;
                    continue;
                }
            };
            let bytes = match json_bytes(entry.get("usage").unwrap_or(&Value::Null)) {
                Ok(b) => b,
                Err(e) => {
                    sink.bad(row, &field("usage"), e)?;
                    continue;
                }
            };
            sink.push(row, &account, "", ts, bytes)?;
        }
    }
    Ok(())
}
