//! The machine-readable run summary (`--summary-json PATH`), for monitoring.
//!
//! Written for every `run` and `reprocess`, failed ones included, so an
//! alert can fire on a failed or unusual night: status and exit code, and
//! per month the outcome, revision, duration per stage, counts, totals per
//! currency and findings by kind. It only serialises what the run
//! reported; it must not compute totals or decide the exit code itself.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::collect::Collected;
use crate::error::Error;
use crate::manifest::{Counts, CurrencyTotal};
use crate::pipeline::Outcome;

/// One month of a run.
#[derive(Debug, Serialize)]
pub struct MonthSummary {
    /// `YYYY-MM`.
    pub month: String,
    /// `published`, `unchanged` or `adopted`.
    pub outcome: &'static str,
    /// `provisional` or `final`.
    pub status: &'static str,
    /// The latest revision after the run.
    pub revision: u32,
    /// Milliseconds per stage (empty when nothing was billed).
    pub stage_ms: BTreeMap<&'static str, u64>,
    /// Usage records read.
    pub records_read: usize,
    /// Usage objects read.
    pub objects_read: usize,
    /// Bytes of usage objects read.
    pub bytes_read: u64,
    /// Records read from the objects but of another month: not billed
    /// (the records of a neighbouring month in a day folder at the month's
    /// edge, or in an object that spans months).
    pub records_outside_month: u64,
    /// Usage objects not read because their key names another month.
    pub pruned_objects: usize,
    /// Bytes of usage records spilled to local disk while their days were
    /// open (the memory budget was too small to hold them); 0 otherwise.
    pub spilled_bytes: u64,
    /// Days too large to hold in memory whose records were not in time
    /// order per account, so that their usage objects were read a second
    /// time; 0 otherwise.
    pub days_read_again: usize,
    /// Row counts and findings by kind (published runs).
    pub counts: Option<Counts>,
    /// Totals per currency (published runs).
    pub totals: Vec<CurrencyTotal>,
    /// Correction lines against the previous final revision, if any.
    pub corrections: Option<usize>,
}

impl From<&Outcome> for MonthSummary {
    fn from(o: &Outcome) -> Self {
        let bare = |month: String, outcome, status: &'static str, revision| MonthSummary {
            month,
            outcome,
            status,
            revision,
            stage_ms: BTreeMap::new(),
            records_read: 0,
            objects_read: 0,
            bytes_read: 0,
            records_outside_month: 0,
            pruned_objects: 0,
            spilled_bytes: 0,
            days_read_again: 0,
            counts: None,
            totals: Vec::new(),
            corrections: None,
        };
        match o {
            Outcome::Published(r) => {
                let m = &r.manifest;
                MonthSummary {
                    month: m.billing_month.clone(),
                    outcome: "published",
                    status: m.status.as_str(),
                    revision: m.revision,
                    stage_ms: r.stages.0.clone(),
                    records_read: r.records,
                    objects_read: m.usage.objects.len(),
                    bytes_read: m.usage.objects.iter().map(|o| o.size).sum(),
                    records_outside_month: m.usage.records_outside_month,
                    pruned_objects: m.usage.pruned_objects,
                    spilled_bytes: r.spilled_bytes,
                    days_read_again: r.days_read_again,
                    counts: Some(m.counts.clone()),
                    totals: m.totals.clone(),
                    corrections: r.corrections.map(|(_, n)| n),
                }
            }
            // Nothing was billed by this run; the revision now latest is
            // what alerts read: its counts (findings by kind) and totals.
            Outcome::Unchanged { month, manifest } | Outcome::Adopted { month, manifest } => {
                let outcome = if matches!(o, Outcome::Adopted { .. }) { "adopted" } else { "unchanged" };
                MonthSummary {
                    counts: Some(manifest.counts.clone()),
                    totals: manifest.totals.clone(),
                    ..bare(month.to_string(), outcome, manifest.status.as_str(), manifest.revision)
                }
            }
        }
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// `success` or `failed`.
    pub status: &'static str,
    /// The process exit code.
    pub exit_code: u8,
    /// `run` or `reprocess`.
    pub command: &'static str,
    /// Start (RFC 3339).
    pub started_at: DateTime<Utc>,
    /// End (RFC 3339).
    pub finished_at: DateTime<Utc>,
    /// Wall time.
    pub duration_ms: u64,
    /// Months billed.
    pub months: Vec<MonthSummary>,
    /// The error, if the run failed.
    pub error: Option<String>,
}

impl RunSummary {
    /// Writes the summary as pretty JSON (atomically: temp file and rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json(self, path)
    }
}

/// One `capbill collect`, for monitoring the hourly job.
#[derive(Debug, Serialize)]
pub struct CollectSummary {
    /// `success` or `failed`.
    pub status: &'static str,
    /// The process exit code.
    pub exit_code: u8,
    /// Start (RFC 3339).
    pub started_at: DateTime<Utc>,
    /// End (RFC 3339).
    pub finished_at: DateTime<Utc>,
    /// `garage`, `prometheus` or `s3-list` (when collected).
    pub source: Option<&'static str>,
    /// The snapshot's timestamp.
    pub timestamp: Option<DateTime<Utc>>,
    /// Where the snapshot was written.
    pub location: Option<String>,
    /// Buckets the source reported.
    pub buckets: usize,
    /// Buckets of the previous snapshot no longer reported, written with 0 bytes.
    pub gone_buckets: usize,
    /// Storage accounts in the snapshot.
    pub accounts: usize,
    /// Bytes of all buckets (a string: it may exceed JSON's exact integers).
    pub total_bytes: String,
    /// Bytes of unfinished multipart uploads, not billed (where reported).
    pub unfinished_upload_bytes: Option<String>,
    /// Buckets written under an unattributed id, with the reason.
    pub unattributed: Vec<UnattributedBucket>,
    /// The error, if the collection failed.
    pub error: Option<String>,
}

/// A bucket whose storage account could not be told.
#[derive(Debug, Serialize)]
pub struct UnattributedBucket {
    /// Bucket.
    pub bucket: String,
    /// Why.
    pub reason: String,
    /// Its bytes.
    pub bytes: u64,
}

impl CollectSummary {
    /// The summary of a collection that started at `started`.
    pub fn new(started: DateTime<Utc>, result: Result<&Collected, &Error>) -> CollectSummary {
        let mut s = CollectSummary {
            status: "success",
            exit_code: crate::error::exit::SUCCESS,
            started_at: started,
            finished_at: Utc::now(),
            source: None,
            timestamp: None,
            location: None,
            buckets: 0,
            gone_buckets: 0,
            accounts: 0,
            total_bytes: "0".to_owned(),
            unfinished_upload_bytes: None,
            unattributed: Vec::new(),
            error: None,
        };
        match result {
            Ok(c) => {
                s.source = Some(c.source.as_str());
                s.timestamp = Some(c.timestamp);
                s.location = Some(c.location.clone());
                s.buckets = c.buckets;
                s.gone_buckets = c.gone;
                s.accounts = c.accounts;
                s.total_bytes = c.total_bytes.to_string();
                s.unfinished_upload_bytes = c.unfinished_bytes.map(|b| b.to_string());
                s.unattributed = c
                    .unattributed
                    .iter()
                    .map(|u| UnattributedBucket { bucket: u.bucket.clone(), reason: u.reason.clone(), bytes: u.bytes })
                    .collect();
            }
            Err(e) => {
                s.status = "failed";
                s.exit_code = e.exit_code();
                s.error = Some(crate::error::chain(e));
            }
        }
        s
    }

    /// Writes the summary as pretty JSON (atomically: temp file and rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json(self, path)
    }
}

fn write_json(value: &impl Serialize, path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("summary serialises"))?;
    std::fs::rename(&tmp, path)
}
