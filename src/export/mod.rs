//! Publishing a revision (spec 4, 4.1): the output tables as files, the
//! manifest and `latest.json`, written so that a reader who follows
//! `latest.json` never sees a half-written revision.
//!
//! Layout under the output root ([`crate::manifest`]):
//! `billing_month=YYYY-MM/revision=N/{invoice_lines,invoices,account_usage,findings,focus}.{parquet,csv}`,
//! `.../revision=N/statements/` (one HTML page per invoice pair and an
//! index, [`statements()`]), `.../revision=N/manifest.json`, and
//! `billing_month=YYYY-MM/latest.json`.
//! Files are written first, the manifest after them, `latest.json` last; a
//! revision folder without a manifest is incomplete and ignored (its number
//! is reused by the next run, which first deletes the partial files). Every
//! file under `revision=N/` is written create-only, so two runs can never
//! both write one revision; `latest.json` is replaced. Export decides
//! nothing about revisions (that is `revision`), holds no lock (the caller
//! checks it between [`publish`] and [`write_latest`]) and bills nothing.

pub mod focus;
mod manifest;
pub mod statements;
mod tables;

use bytes::Bytes;
use futures::StreamExt;
use polars::prelude::PolarsError;
use thiserror::Error;

use crate::manifest::{Manifest, OutputFile, latest_key, revision_prefix, sha256_hex};
use crate::model::BillingMonth;
use crate::storage::{StorageError, Store};

pub use manifest::{Provenance, manifest};
pub use statements::{StatementInputs, statements};
pub use tables::{Billed, SellerTotal, Tables, Totals, encode_table, invoice_numbers};

/// An export failure.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Writing to storage failed.
    #[error("cannot publish outputs")]
    Storage(#[from] StorageError),
    /// A revision file exists already: another run is writing or wrote this revision.
    #[error(
        "{location} already exists: another run wrote revision {revision} of this month; this run published nothing more"
    )]
    Exists {
        /// The revision.
        revision: u32,
        /// Where.
        location: String,
    },
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
            ExportError::Encode { .. } | ExportError::Exists { .. } => None,
        }
    }
}

/// One output file, encoded and ready to publish. Its checksum is taken
/// by the writer that writes it ([`publish`]), off the thread that encodes
/// or renders the next file.
#[derive(Debug)]
pub struct Encoded {
    /// File name within the revision (`invoices.csv`).
    pub file: String,
    /// Data rows.
    pub rows: usize,
    /// Content.
    pub data: Vec<u8>,
}

impl Encoded {
    /// A file of `rows` rows with content `data`.
    pub fn new(file: String, rows: usize, data: Vec<u8>) -> Self {
        Encoded { file, rows, data }
    }
}

/// Writes a revision: every file, then its manifest, each create-only.
/// `latest.json` is the caller's next step ([`write_latest`]).
///
/// Files of the revision left by a run that died before its manifest are
/// deleted first: without a manifest the revision was never published. A
/// revision that has a manifest, or a file that appears meanwhile, stops
/// the run with [`ExportError::Exists`], and so does a name given twice
/// (after the writes under way have ended, the first one written).
///
/// `files` are taken as they are written, a few batches at a time (see
/// [`Batching`]) and listed in their order: a producer of many files (the
/// statements) renders each only when it is its turn, and files made late
/// ([`deferred`]) are made once those before them are written and freed,
/// so memory holds a few of them, not all. A file that cannot be made
/// stops the run once the writes under way have ended; without a manifest
/// nothing of it is published.
///
/// `manifest` arrives without outputs; they are filled in here from the bytes written.
pub async fn publish(
    store: &Store,
    month: BillingMonth,
    revision: u32,
    files: impl IntoIterator<Item = Result<Encoded, ExportError>>,
    manifest: Manifest,
) -> Result<Manifest, ExportError> {
    publish_in(store, month, revision, files, manifest, Batching::of(store)).await
}

/// [`publish`] with the writes grouped as `batching` says.
async fn publish_in(
    store: &Store,
    month: BillingMonth,
    revision: u32,
    files: impl IntoIterator<Item = Result<Encoded, ExportError>>,
    mut manifest: Manifest,
    batching: Batching,
) -> Result<Manifest, ExportError> {
    let prefix = revision_prefix(month, revision);
    let manifest_key = format!("{prefix}/manifest.json");
    let exists = |key: &str| ExportError::Exists { revision, location: store.describe(key) };
    let partial = store.list(&format!("{prefix}/")).await?;
    if partial.iter().any(|o| o.key == manifest_key) {
        return Err(exists(&manifest_key));
    }
    for o in partial {
        tracing::warn!(file = %o.key, "deleting a file of an unpublished revision left by an interrupted run");
        store.delete(&o.key).await?;
    }
    manifest.outputs.clear();
    let mut files = files.into_iter();
    let progress = crate::logging::progress_bar(files.size_hint().0 as u64, "writing outputs");
    let mut names = std::collections::HashSet::new();
    let mut writing = futures::stream::FuturesOrdered::new();
    // Bytes written since the last background flush was started, and that flush.
    let (mut unflushed, mut flushing) = (0u64, None);
    // Why no further file is taken: a name given twice, or a file that could not be made.
    let mut stopped = None;
    loop {
        while stopped.is_none() && writing.len() < batching.in_flight {
            let (mut batch, mut bytes) = (Vec::new(), 0);
            while batch.len() < batching.files && bytes < batching.bytes {
                let f = match files.next() {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        stopped = Some(e);
                        break;
                    }
                    None => break,
                };
                if !names.insert(f.file.clone()) {
                    stopped = Some(exists(&format!("{prefix}/{}", f.file)));
                    break;
                }
                bytes += f.data.len();
                batch.push(f);
            }
            if batch.is_empty() {
                break;
            }
            writing.push_back(write_batch(store, &prefix, batch));
        }
        let Some(written) = writing.next().await else { break };
        // Files made late (`deferred`) add to the length as they are made.
        progress.set_length(progress.position() + (writing.len() * batching.files + files.size_hint().0) as u64);
        for (written, key, output) in written {
            progress.inc(1);
            if !written? {
                return Err(exists(&key));
            }
            tracing::debug!(file = %output.file, rows = output.rows, size = output.bytes, "wrote output");
            unflushed += output.bytes;
            manifest.outputs.push(output);
            crate::failpoint::reached(&format!("export:{}", manifest.outputs.len()));
        }
        if unflushed >= batching.flush_every && flushing.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            if let Some(done) = flushing.take() {
                joined(done).await?;
            }
            flushing = store.start_sync_tree(&prefix);
            unflushed = 0;
        }
    }
    if let Some(flush) = flushing {
        joined(flush).await?;
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    // The files were written without a sync each: one barrier makes them
    // all durable before the manifest that publishes them.
    store.sync_tree(&prefix).await?;
    let body = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    if !store.put_if_absent(&manifest_key, Bytes::from(body)).await? {
        return Err(exists(&manifest_key));
    }
    progress.finish_and_clear();
    Ok(manifest)
}

/// Files made only when [`publish`] reaches them: `make` runs at the first
/// item asked for, so the files before them are with the writers by then,
/// each freed once written (the tables' encodings before FOCUS is built,
/// FOCUS before the statements are prepared).
pub fn deferred<I: IntoIterator<Item = Encoded>>(
    make: impl FnOnce() -> Result<I, ExportError>,
) -> impl Iterator<Item = Result<Encoded, ExportError>> {
    std::iter::once_with(make).flat_map(|made| {
        let (files, failed) = match made {
            Ok(files) => (Some(files.into_iter()), None),
            Err(e) => (None, Some(e)),
        };
        files.into_iter().flatten().map(Ok).chain(failed.map(Err))
    })
}

/// How [`publish`] groups files into writes.
///
/// A local file is created and written without a sync of its own (a
/// `syncfs` makes them durable together) on a blocking thread, while the
/// next statements are rendered: creating 12,757 files costs the kernel
/// about as much CPU as rendering them, so on 2 cores the two overlap.
/// Every 32 MiB written, a `syncfs` starts on a thread of its own, so that
/// the disk writes while the next files are made: the sync before the
/// manifest then waits for the last few MiB only, where it waited for all
/// of them (10 × W-hourly: 1.3 s for 1.7 GB). A sync per file instead
/// (`sync_file_range`) cost the writers more than it saved. Files go to
/// those threads in batches, written one after the other by one thread: a
/// thread per file (16 at once) spent a fifth of the writers' CPU on waking
/// threads and on the folder's lock.
///
/// Each S3 object waits for a round trip, which a revision of thousands of
/// statements would otherwise pay one after the other: there each batch is
/// one file, 16 at once.
struct Batching {
    /// Batches under way at once.
    in_flight: usize,
    /// Most files in a batch.
    files: usize,
    /// A batch closes once it holds this many bytes.
    bytes: usize,
    /// Every this many bytes written, the files written so far start for
    /// the disk in the background ([`Store::start_sync_tree`]), so that the
    /// sync before the manifest finds little left to write.
    flush_every: u64,
}

/// The result of a background task, its panic passed on.
async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    task.await.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

impl Batching {
    fn of(store: &Store) -> Self {
        match store {
            Store::Local(_) => Batching { in_flight: 3, files: 64, bytes: 4 << 20, flush_every: 32 << 20 },
            Store::S3(_) => Batching { in_flight: 16, files: 1, bytes: usize::MAX, flush_every: u64::MAX },
        }
    }
}

/// What writing one file came to: created (`false`: it existed), its key
/// and its manifest entry.
type Written = (Result<bool, StorageError>, String, OutputFile);

/// Writes a batch of files, each create-only (see [`Store::put_if_absent_deferred`])
/// and hashed by the writer; locally one after the other on a blocking thread.
/// A batch stops at its first failed or refused file.
async fn write_batch(store: &Store, prefix: &str, batch: Vec<Encoded>) -> Vec<Written> {
    let store = store.clone();
    let prefix = prefix.to_owned();
    let write = move |store: Store| async move {
        let mut out = Vec::with_capacity(batch.len());
        for Encoded { file, rows, data } in batch {
            let key = format!("{prefix}/{file}");
            let output = OutputFile { file, rows, bytes: data.len() as u64, sha256: sha256_hex(&data) };
            let written = store.put_if_absent_deferred(&key, Bytes::from(data)).await;
            let stop = !matches!(written, Ok(true));
            out.push((written, key, output));
            if stop {
                break;
            }
        }
        out
    };
    match store {
        Store::Local(_) => joined(tokio::task::spawn_blocking(move || futures::executor::block_on(write(store)))).await,
        Store::S3(_) => write(store).await,
    }
}

/// Points `latest.json` at a published manifest.
pub async fn write_latest(store: &Store, month: BillingMonth, manifest: &Manifest) -> Result<(), ExportError> {
    let body = serde_json::to_vec_pretty(&crate::manifest::Latest::of(manifest)).expect("latest serialises");
    store.put(&latest_key(month), Bytes::from(body)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    fn manifest(revision: u32) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "billing_month": "2026-10", "revision": revision, "status": "provisional",
            "generated_at": "2026-11-02T02:30:00Z", "requested_by": "test@host", "reason": null,
            "previous_revision": null, "corrects_revision": null, "capbill_version": "0", "rules_version": "1",
            "config_hash": "h", "settings": {},
            "directory": { "location": "d", "hash": "h", "objects": [] },
            "usage": { "location": "u", "objects": [], "pruned_objects": 0, "records_outside_month": 0 },
            "outputs": [], "totals": [],
            "counts": { "invoice_lines": 0, "invoices": 0, "accounts": 0, "findings": {} }
        }))
        .unwrap()
    }

    fn files(content: &str) -> Vec<Result<Encoded, ExportError>> {
        ["invoices.csv", "invoice_lines.csv"]
            .iter()
            .map(|f| Ok(Encoded::new((*f).to_owned(), 1, content.as_bytes().to_vec())))
            .collect()
    }

    #[tokio::test]
    async fn a_revision_is_written_once_and_a_second_publish_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        let month: BillingMonth = "2026-10".parse().unwrap();
        let first = publish(&store, month, 1, files("first"), manifest(1)).await.unwrap();
        let err = publish(&store, month, 1, files("second"), manifest(1)).await.unwrap_err();
        match &err {
            ExportError::Exists { revision: 1, location } => assert!(location.ends_with("manifest.json"), "{location}"),
            other => panic!("{other:?}"),
        }
        let prefix = revision_prefix(month, 1);
        assert_eq!(&store.get(&format!("{prefix}/invoices.csv")).await.unwrap()[..], b"first");
        let written: Manifest =
            serde_json::from_slice(&store.get(&format!("{prefix}/manifest.json")).await.unwrap()).unwrap();
        assert_eq!(written, first, "the first run's manifest stands");
        assert!(store.get_opt(&latest_key(month)).await.unwrap().is_none(), "publish does not touch latest.json");
    }

    #[tokio::test]
    async fn partial_files_of_an_unpublished_revision_are_replaced_and_a_file_appearing_meanwhile_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        let month: BillingMonth = "2026-10".parse().unwrap();
        let prefix = revision_prefix(month, 2);
        // A killed run left one file and no manifest, plus a stray file.
        store.put(&format!("{prefix}/invoices.csv"), Bytes::from_static(b"half")).await.unwrap();
        store.put(&format!("{prefix}/stray.csv"), Bytes::from_static(b"x")).await.unwrap();
        publish(&store, month, 2, files("whole"), manifest(2)).await.unwrap();
        assert_eq!(&store.get(&format!("{prefix}/invoices.csv")).await.unwrap()[..], b"whole");
        assert!(store.get_opt(&format!("{prefix}/stray.csv")).await.unwrap().is_none());

        // Two files of the same name in one publish: the second is refused.
        let mut twice = files("a");
        twice.push(Ok(Encoded::new("invoices.csv".into(), 1, b"b".to_vec())));
        let err = publish(&store, month, 3, twice, manifest(3)).await.unwrap_err();
        assert!(
            matches!(&err, ExportError::Exists { revision: 3, location } if location.ends_with("invoices.csv")),
            "{err:?}"
        );
        assert_eq!(&store.get(&format!("{}/invoices.csv", revision_prefix(month, 3))).await.unwrap()[..], b"a");
        assert!(store.get_opt(&format!("{}/manifest.json", revision_prefix(month, 3))).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_deferred_file_is_made_when_publishing_reaches_it_and_its_failure_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        let month: BillingMonth = "2026-10".parse().unwrap();
        let made = std::cell::Cell::new(false);
        let later = deferred(|| {
            made.set(true);
            Ok(vec![Encoded::new("focus.csv".into(), 1, b"f".to_vec())])
        });
        assert!(!made.get(), "made only when asked for");
        let ok = publish(&store, month, 1, files("a").into_iter().chain(later), manifest(1)).await.unwrap();
        assert!(made.get());
        let written: Vec<_> = ok.outputs.iter().map(|o| o.file.as_str()).collect();
        assert_eq!(written, ["invoices.csv", "invoice_lines.csv", "focus.csv"]);

        let failing = deferred(|| -> Result<Vec<Encoded>, ExportError> {
            Err(ExportError::Encode { table: "focus", source: PolarsError::ComputeError("broken".into()) })
        });
        let err = publish(&store, month, 2, files("b").into_iter().chain(failing), manifest(2)).await.unwrap_err();
        assert!(matches!(err, ExportError::Encode { table: "focus", .. }), "{err:?}");
        let prefix = revision_prefix(month, 2);
        assert!(store.get_opt(&format!("{prefix}/manifest.json")).await.unwrap().is_none(), "nothing is published");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn syncs_started_while_writing_leave_the_revision_as_one_sync_at_the_end_does() {
        let many = |tag: &str| -> Vec<Result<Encoded, ExportError>> {
            (0..300)
                .map(|i| {
                    Ok(Encoded::new(format!("statements/s{}/b{i}.html", i % 7), 1, format!("{tag} {i}").into_bytes()))
                })
                .collect()
        };
        let month: BillingMonth = "2026-10".parse().unwrap();
        let mut published = Vec::new();
        // A sync after every batch of three files, and none before the last one.
        for flush_every in [1, u64::MAX] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
            let batching = Batching { in_flight: 3, files: 3, bytes: usize::MAX, flush_every };
            let m = publish_in(&store, month, 1, many("page"), manifest(1), batching).await.unwrap();
            let prefix = revision_prefix(month, 1);
            for o in &m.outputs {
                let data = store.get(&format!("{prefix}/{}", o.file)).await.unwrap();
                assert_eq!(sha256_hex(&data), o.sha256, "{}", o.file);
            }
            assert!(store.get_opt(&format!("{prefix}/manifest.json")).await.unwrap().is_some());
            published.push(m.outputs);
        }
        assert_eq!(published[0].len(), 300);
        assert_eq!(published[0], published[1], "the same files, in the same order");
    }

    #[tokio::test]
    async fn a_sync_started_in_the_background_reports_its_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        store.put("rev/a.csv", Bytes::from_static(b"a")).await.unwrap();
        joined(store.start_sync_tree("rev").expect("a local store syncs")).await.unwrap();
        let missing = joined(store.start_sync_tree("no-such-folder").expect("a local store syncs")).await;
        assert!(matches!(missing, Err(StorageError::Io { .. })), "{missing:?}");
    }
}
