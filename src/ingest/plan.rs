//! Planning a month's ingestion: lists the usage location, prunes objects
//! whose key says they cannot hold records of the month (see `prune`), sets
//! aside hidden objects and objects that are not a usage format (as
//! findings) and asks for the ETags a listing left out.
//!
//! It decides from the listing alone: it must not read an object's content.

use futures::StreamExt;

use super::IngestError;
use super::prune::key_may_hold;
use crate::formats::Format;
use crate::model::{BillingMonth, Finding, FindingKind};
use crate::storage::{ObjectMeta, StorageError, Store};

/// What a month's ingestion will read, decided from the listing alone.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Objects to read, in key order, with their format. Every one has an ETag.
    pub objects: Vec<(ObjectMeta, Format)>,
    /// Objects under the location that are not a usage format.
    pub findings: Vec<Finding>,
    /// Objects not read because their key says they cannot hold records of the month.
    pub pruned: usize,
}

/// Lists the usage location and decides which objects a month reads.
///
/// Servers that list without ETags get one HEAD request per object, so that
/// the plan (and the manifest) always identify the exact object versions.
pub async fn plan(store: &Store, month: BillingMonth, concurrency: usize) -> Result<Plan, IngestError> {
    let listing = match store.list("").await {
        Err(StorageError::NotFound { location }) => return Err(IngestError::MissingLocation { location }),
        listed => listed?,
    };
    let mut findings = Vec::new();
    let mut pruned = 0;
    let mut wanted = Vec::new();
    for meta in listing {
        if !key_may_hold(&meta.key, month) {
            tracing::debug!(object = %meta.key, "pruned: its key says it holds no record of the month");
            pruned += 1;
        } else if hidden(&meta.key) {
            findings.push(Finding::new(
                FindingKind::SkippedObject,
                meta.key.clone(),
                "hidden (a folder or file name starts with _ or .: a job's temporary or marker file): not read",
            ));
        } else if meta.size == 0 && Format::of_key(&meta.key).is_some() {
            // Any format: no header, no footer, no records. Not an error
            // (an export can be empty), and not silent either.
            findings.push(Finding::new(
                FindingKind::SkippedObject,
                meta.key.clone(),
                "empty (0 bytes): no records to read",
            ));
        } else if let Some(format) = Format::of_key(&meta.key) {
            wanted.push((meta, format));
        } else {
            findings.push(Finding::new(
                FindingKind::SkippedObject,
                meta.key.clone(),
                "not a usage format (.csv, .jsonl, .ndjson, .json, .parquet): not read",
            ));
        }
    }
    let objects = futures::stream::iter(wanted.into_iter().map(|(mut meta, format)| async move {
        if meta.etag.is_empty() {
            meta.etag = store.etag(&meta.key).await?;
        }
        Ok::<_, IngestError>((meta, format))
    }))
    .buffered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan { objects, findings, pruned })
}

/// Whether a key has a folder or file whose name starts with `_` or `.`:
/// what Spark, Hive and Arrow datasets leave beside their data and never
/// read as data (`_temporary/` with a failed job's partial files,
/// `_SUCCESS`, `.part-0.parquet.crc`, `.DS_Store`).
fn hidden(key: &str) -> bool {
    key.split('/').any(|segment| segment.starts_with(['_', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_a_segment_starting_with_an_underscore_or_a_dot_are_hidden() {
        for key in [
            "_temporary/0/_temporary/attempt_1/part-0.parquet",
            "dt=2026-10-01/_SUCCESS",
            "dt=2026-10-01/.part-0.parquet.crc",
            ".hidden/part-0.csv",
            "2026/10/.DS_Store",
        ] {
            assert!(hidden(key), "{key}");
        }
        for key in ["dt=2026-10-01/part-0.parquet", "usage_2026-10-01.csv", "a/b.c/d_e.parquet", "x-_y/z.json"] {
            assert!(!hidden(key), "{key}");
        }
    }
}
