//! Publishing a revision (spec 4, 4.1): the output tables as files, the
//! manifest and `latest.json`, written so that a reader who follows
//! `latest.json` never sees a half-written revision.
//!
//! Layout under the output root ([`crate::manifest`]):
//! `billing_month=YYYY-MM/revision=N/{invoice_lines,invoices,account_usage,findings}.{parquet,csv}`,
//! `.../revision=N/manifest.json`, and `billing_month=YYYY-MM/latest.json`.
//! Files are written first, the manifest after them, `latest.json` last; a
//! revision folder without a manifest is incomplete and ignored (its number
//! is reused by the next run). Export decides nothing about revisions
//! (that is `revision`) and bills nothing.

mod manifest;
mod tables;

use bytes::Bytes;
use polars::prelude::PolarsError;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::manifest::{Manifest, OutputFile, latest_key, revision_prefix};
use crate::model::BillingMonth;
use crate::storage::{StorageError, Store};

pub use manifest::{Provenance, manifest};
pub use tables::{Billed, SellerTotal, Tables, Totals, encode_table};

/// An export failure.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Writing to storage failed.
    #[error("cannot publish outputs")]
    Storage(#[from] StorageError),
    /// Building or encoding a frame failed (a bug).
    #[error("cannot encode output {table}")]
    Encode {
        /// Output table.
        table: &'static str,
        /// Cause.
        #[source]
        source: PolarsError,
    },
}

impl ExportError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            ExportError::Storage(e) => Some(e),
            ExportError::Encode { .. } => None,
        }
    }
}

/// One output file, encoded and ready to publish.
#[derive(Debug)]
pub struct Encoded {
    /// File name within the revision (`invoices.csv`).
    pub file: String,
    /// Data rows.
    pub rows: usize,
    /// Content.
    pub data: Vec<u8>,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

impl Encoded {
    /// A file of `rows` rows with content `data`, hashed here: on the
    /// encoding thread, not in turn while the files are written.
    pub fn new(file: String, rows: usize, data: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&data));
        Encoded { file, rows, data, sha256 }
    }
}

/// Writes a revision: every file, then its manifest, then `latest.json`.
///
/// `manifest` arrives without outputs; they are filled in here from the bytes written.
pub async fn publish(
    store: &Store,
    month: BillingMonth,
    revision: u32,
    files: Vec<Encoded>,
    mut manifest: Manifest,
) -> Result<Manifest, ExportError> {
    let prefix = revision_prefix(month, revision);
    manifest.outputs.clear();
    let progress = crate::logging::progress_bar(files.len() as u64, "writing outputs");
    for Encoded { file, rows, data, sha256 } in files {
        progress.inc(1);
        let size = data.len() as u64;
        store.put(&format!("{prefix}/{file}"), Bytes::from(data)).await?;
        tracing::debug!(file = %file, rows, size, "wrote output");
        manifest.outputs.push(OutputFile { file, rows, bytes: size, sha256 });
        crate::failpoint::reached(&format!("export:{}", manifest.outputs.len()));
    }
    let body = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    store.put(&format!("{prefix}/manifest.json"), Bytes::from(body)).await?;
    progress.finish_and_clear();
    crate::failpoint::reached("before-latest");
    write_latest(store, month, &manifest).await?;
    Ok(manifest)
}

/// Points `latest.json` at a published manifest.
pub async fn write_latest(store: &Store, month: BillingMonth, manifest: &Manifest) -> Result<(), ExportError> {
    let body = serde_json::to_vec_pretty(&crate::manifest::Latest::of(manifest)).expect("latest serialises");
    store.put(&latest_key(month), Bytes::from(body)).await?;
    Ok(())
}
