//! Collection (`capbill collect`): one snapshot of every bucket's stored
//! bytes, read from the storage system itself, attributed to storage
//! accounts and written as one Parquet object of usage records (spec 1.2)
//! under the usage location, where `capbill run` bills it like any usage.
//!
//! A stage beside `ingest`: it reads the directory's optional mapping
//! tables ([`Mappings`]) and writes through `storage` and `formats`; it
//! bills nothing and never touches the outputs. The sources (`garage`,
//! `prometheus`, `s3-list`) each turn a server's answer into
//! [`BucketUsage`]; [`attribute`] decides whose each bucket is; `snapshot`
//! writes the object create-only. A snapshot is all or nothing: any
//! failure of any page or bucket ends the command before anything is
//! written.

mod attribute;
mod garage;
mod http;
mod prometheus;
mod s3list;
mod snapshot;

use chrono::{DateTime, SubsecRound, Utc};
use polars::prelude::PolarsError;
use thiserror::Error;

use crate::config::{Config, SourceKind};
use crate::directory::{DirectoryError, Mappings};
use crate::storage::{StorageError, Store};

pub use attribute::{UNATTRIBUTED_PREFIX, Unattributed, attribute};
pub use snapshot::snapshot_key;

/// One bucket as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUsage {
    /// The bucket's name (Garage: its first global alias, else its id).
    pub bucket: String,
    /// Bytes of complete objects.
    pub bytes: u64,
    /// Bytes of unfinished multipart uploads, where the source reports them.
    pub unfinished_bytes: Option<u64>,
    /// The access keys with the owner permission, where the source knows
    /// them (Garage); `None` means the `buckets` table decides.
    pub owners: Option<Vec<OwnerKey>>,
}

/// An access key that owns a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerKey {
    /// Access key id (`GK…` on Garage).
    pub access_key_id: String,
    /// The key's name.
    pub name: String,
}

/// One record of a snapshot: a bucket's bytes under its storage account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// Storage account id (or an unattributed id, see [`UNATTRIBUTED_PREFIX`]).
    pub account: String,
    /// Bucket.
    pub bucket: String,
    /// Bytes of complete objects.
    pub bytes: u64,
    /// Bytes of unfinished multipart uploads, if reported.
    pub unfinished_bytes: Option<u64>,
}

/// What one collection wrote.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The source read.
    pub source: SourceKind,
    /// The snapshot's timestamp (the collection time, whole seconds).
    pub timestamp: DateTime<Utc>,
    /// Where the snapshot was written, as the store describes it.
    pub location: String,
    /// Its key under the usage location.
    pub key: String,
    /// Buckets the source reported (the snapshot's rows, but for `gone`).
    pub buckets: usize,
    /// Buckets of the previous snapshot the source no longer reported for
    /// their account, written with 0 bytes.
    pub gone: usize,
    /// Distinct storage accounts (unattributed ids excluded).
    pub accounts: usize,
    /// Bytes of all buckets.
    pub total_bytes: u128,
    /// Bytes of unfinished multipart uploads (not billed), where reported.
    pub unfinished_bytes: Option<u128>,
    /// Buckets whose storage account could not be told.
    pub unattributed: Vec<Unattributed>,
    /// The mapping tables read.
    pub mapping_tables: Vec<String>,
}

/// Why a collection wrote nothing.
#[derive(Debug, Error)]
pub enum CollectError {
    /// No source configured.
    #[error(
        "no collection source: set `source` under [collect] in the config file or CAPBILL_COLLECT_SOURCE (garage, prometheus or s3-list)"
    )]
    NoSource,
    /// A setting the source needs is missing or unusable.
    #[error("{kind}: {reason}")]
    Setting {
        /// Source name, or what the setting is about.
        kind: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// The source could not be reached (after retries).
    #[error("cannot reach {url} (after {attempts} attempts)")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The source refused the token.
    #[error("{url} refused the credentials (HTTP {status}): check CAPBILL_COLLECT_TOKEN")]
    Refused {
        /// The request's URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The source answered with an error status (after retries for 5xx).
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        /// The request's URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The source's answer cannot be read.
    #[error("{url}: cannot read the answer: {reason}")]
    Malformed {
        /// The request's URL.
        url: String,
        /// What is wrong, with the line where there is one.
        reason: String,
    },
    /// The configured metric is not in the metrics body at all.
    #[error(
        "{url} exports no metric {metric} (set `metric` and `bucket_label` under [collect], or `preset`){}",
        if .similar.is_empty() { String::new() } else { format!("; metrics with similar names: {}", .similar.join(", ")) }
    )]
    NoMetric {
        /// The request's URL.
        url: String,
        /// The metric looked for.
        metric: String,
        /// Metric names of the body that look like bucket sizes.
        similar: Vec<String>,
    },
    /// Listing the buckets or a bucket's objects through S3 failed (after retries).
    #[error("s3-list: cannot read the bucket sizes")]
    List(#[source] StorageError),
    /// The directory's mapping tables are invalid or unreadable.
    #[error(transparent)]
    Mapping(#[from] DirectoryError),
    /// Writing the snapshot failed.
    #[error("cannot write the snapshot")]
    Storage(#[from] StorageError),
    /// Encoding the snapshot failed (a bug).
    #[error("cannot encode the snapshot")]
    Encode(#[source] PolarsError),
}

impl CollectError {
    /// Whether trying again later may help (the source or storage failed),
    /// as opposed to a setting or the directory to fix.
    pub fn retry_may_help(&self) -> bool {
        match self {
            CollectError::NoSource
            | CollectError::Setting { .. }
            | CollectError::Refused { .. }
            | CollectError::NoMetric { .. }
            | CollectError::Encode(_) => false,
            CollectError::Unreachable { .. } | CollectError::Malformed { .. } | CollectError::Storage(_) => true,
            CollectError::Status { status, .. } => *status >= 500 || *status == 429,
            CollectError::List(_) => true,
            CollectError::Mapping(e) => e.storage().is_some(),
        }
    }
}

/// Takes one snapshot from the configured source and writes it.
pub async fn collect(config: &Config, now: DateTime<Utc>) -> Result<Collected, CollectError> {
    let settings = &config.collect;
    let source = settings.source.ok_or(CollectError::NoSource)?;
    let timestamp = now.trunc_subsecs(0);
    let mappings = Mappings::load(&Store::open(&config.directory, &config.s3).await?).await?;
    tracing::info!(source = source.as_str(), tables = ?mappings.tables, "collecting bucket sizes");
    let buckets = match source {
        SourceKind::Garage => garage::list(settings).await?,
        SourceKind::Prometheus => prometheus::list(settings).await?,
        SourceKind::S3List => s3list::list(settings, &config.s3).await?,
    };
    let (mut rows, unattributed) = attribute(buckets, &mappings);
    for u in &unattributed {
        tracing::warn!(bucket = %u.bucket, reason = %u.reason, bytes = u.bytes, "bucket not attributed to a storage account");
    }
    let store = Store::open(&config.usage, &config.s3).await?;
    // A bucket of the previous snapshot that is gone (deleted, or no longer
    // that account's) is written with 0 bytes: nothing would tell billing
    // that it stopped, and it would fill the month on from its last size.
    let now: std::collections::HashSet<(&str, &str)> =
        rows.iter().map(|r| (r.account.as_str(), r.bucket.as_str())).collect();
    let gone: Vec<(String, String)> = snapshot::previous_buckets(&store, &settings.prefix, timestamp)
        .await?
        .into_iter()
        .filter(|(a, b)| !now.contains(&(a.as_str(), b.as_str())))
        .collect();
    let gone_count = gone.len();
    for (account, bucket) in gone {
        tracing::info!(%account, %bucket, "bucket gone since the previous snapshot: written with 0 bytes");
        rows.push(Row { account, bucket, bytes: 0, unfinished_bytes: None });
    }
    rows.sort();
    rows.dedup();
    let data = snapshot::encode(&rows, timestamp).map_err(CollectError::Encode)?;
    let key = snapshot::write(&store, &settings.prefix, timestamp, data).await?;
    let mut accounts: Vec<&str> =
        rows.iter().map(|r| r.account.as_str()).filter(|a| !a.starts_with(UNATTRIBUTED_PREFIX)).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let reported: Vec<u64> = rows.iter().filter_map(|r| r.unfinished_bytes).collect();
    Ok(Collected {
        source,
        timestamp,
        location: store.describe(&key),
        buckets: rows.len().saturating_sub(gone_count),
        gone: gone_count,
        accounts: accounts.len(),
        total_bytes: rows.iter().map(|r| u128::from(r.bytes)).sum(),
        unfinished_bytes: (!reported.is_empty()).then(|| reported.iter().map(|&b| u128::from(b)).sum()),
        unattributed,
        mapping_tables: mappings.tables,
        key,
    })
}
