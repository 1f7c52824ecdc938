//! Planning a month's ingestion: lists the usage location, prunes objects
//! whose key says they cannot hold records of the month (see `prune`), sets aside objects that are not a usage
//! format (as findings) and asks for the ETags a listing left out.
//!
//! It decides from the listing alone: it must not read an object's content.

use futures::StreamExt;

use super::IngestError;
use super::prune::key_may_hold;
use crate::formats::Format;
use crate::model::{BillingMonth, Finding, FindingKind};
use crate::storage::{ObjectMeta, Store};

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
    let listing = store.list("").await?;
    let mut findings = Vec::new();
    let mut pruned = 0;
    let mut wanted = Vec::new();
    for meta in listing {
        if !key_may_hold(&meta.key, month) {
            pruned += 1;
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
