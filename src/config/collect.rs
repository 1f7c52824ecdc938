//! The `[collect]` section of the config file and its `CAPBILL_COLLECT_*`
//! overrides: where `capbill collect` reads bucket sizes, validated into
//! [`CollectSettings`]. A billing-only config needs no `[collect]`
//! section: the source is checked when `collect` runs.

use serde::{Deserialize, Serialize};

use super::{ConfigError, nonzero};
use crate::storage::s3::Secret;

/// `[collect]`: where `capbill collect` reads bucket sizes; each can also be
/// set as `CAPBILL_COLLECT_<NAME>`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCollect {
    /// `garage`, `prometheus` or `s3-list`.
    source: Option<SourceKind>,
    /// Garage admin API URL, metrics URL, or S3 endpoint (s3-list; default `[s3] endpoint_url`).
    endpoint: Option<String>,
    /// Bearer token (Garage admin token; optional for a metrics endpoint). Prefer the environment.
    token: Option<Secret>,
    /// Folder under the usage location that snapshots are written to (default `collected`).
    prefix: Option<String>,
    /// `seaweedfs` or `minio`: metric and label names of a known server (default `seaweedfs`).
    preset: Option<MetricPreset>,
    /// Metric name of the per-bucket size gauge (overrides the preset).
    metric: Option<String>,
    /// Label that names the bucket (overrides the preset).
    bucket_label: Option<String>,
    /// Buckets per page of Garage's ListBucketsInfo (default 1000).
    page_size: Option<usize>,
    /// Buckets listed at once by s3-list (default 16).
    concurrency: Option<usize>,
    /// Attempts per HTTP request to the source, the first included (default 3).
    max_attempts: Option<u32>,
    /// Timeout of one HTTP request to the source, in seconds (default 60).
    timeout_secs: Option<u64>,
}

/// `[collect]` settings given for one invocation: each overrides its
/// `[collect]` value (the CLI reads them from flags or `CAPBILL_COLLECT_*`).
#[derive(Debug, Default, Clone)]
pub struct CollectOverrides {
    /// `CAPBILL_COLLECT_SOURCE`.
    pub source: Option<SourceKind>,
    /// `CAPBILL_COLLECT_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `CAPBILL_COLLECT_TOKEN`.
    pub token: Option<Secret>,
    /// `CAPBILL_COLLECT_PREFIX`.
    pub prefix: Option<String>,
    /// `CAPBILL_COLLECT_PRESET`.
    pub preset: Option<MetricPreset>,
    /// `CAPBILL_COLLECT_METRIC`.
    pub metric: Option<String>,
    /// `CAPBILL_COLLECT_BUCKET_LABEL`.
    pub bucket_label: Option<String>,
    /// `CAPBILL_COLLECT_PAGE_SIZE`.
    pub page_size: Option<usize>,
    /// `CAPBILL_COLLECT_CONCURRENCY`.
    pub concurrency: Option<usize>,
    /// `CAPBILL_COLLECT_MAX_ATTEMPTS`.
    pub max_attempts: Option<u32>,
    /// `CAPBILL_COLLECT_TIMEOUT_SECS`.
    pub timeout_secs: Option<u64>,
}

/// Where bucket sizes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Garage's admin API v2 (`ListBucketsInfo`).
    Garage,
    /// A Prometheus text endpoint with a per-bucket size gauge.
    Prometheus,
    /// Listing every object of every bucket through S3.
    S3List,
}

impl SourceKind {
    /// The name used in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Garage => "garage",
            SourceKind::Prometheus => "prometheus",
            SourceKind::S3List => "s3-list",
        }
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "garage" => Ok(SourceKind::Garage),
            "prometheus" => Ok(SourceKind::Prometheus),
            "s3-list" => Ok(SourceKind::S3List),
            _ => Err(format!("{s:?}: expected garage, prometheus or s3-list")),
        }
    }
}

/// Metric and label names of servers that export a per-bucket size gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricPreset {
    /// `SeaweedFS_s3_bucket_size_bytes{bucket=...}`.
    #[default]
    Seaweedfs,
    /// `minio_cluster_usage_buckets_total_bytes{bucket=...}`.
    Minio,
}

impl std::str::FromStr for MetricPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "seaweedfs" => Ok(MetricPreset::Seaweedfs),
            "minio" => Ok(MetricPreset::Minio),
            _ => Err(format!("{s:?}: expected seaweedfs or minio")),
        }
    }
}

impl MetricPreset {
    /// (metric, bucket label).
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            MetricPreset::Seaweedfs => ("SeaweedFS_s3_bucket_size_bytes", "bucket"),
            MetricPreset::Minio => ("minio_cluster_usage_buckets_total_bytes", "bucket"),
        }
    }
}

/// Validated `[collect]` settings. The source is checked when `capbill
/// collect` runs, so a billing-only config needs no `[collect]` section.
#[derive(Debug, Clone)]
pub struct CollectSettings {
    /// Where bucket sizes come from.
    pub source: Option<SourceKind>,
    /// Garage admin URL, metrics URL, or S3 endpoint.
    pub endpoint: Option<String>,
    /// Bearer token; never printed.
    pub token: Option<Secret>,
    /// Folder under the usage location for snapshots.
    pub prefix: String,
    /// Gauge metric name.
    pub metric: String,
    /// Label naming the bucket.
    pub bucket_label: String,
    /// Garage page size.
    pub page_size: usize,
    /// s3-list buckets at once.
    pub concurrency: usize,
    /// Attempts per HTTP request.
    pub max_attempts: u32,
    /// Timeout per HTTP request.
    pub timeout: std::time::Duration,
}

/// The most buckets capbill asks Garage's `ListBucketsInfo` for in one page
/// (one page is held in memory as parsed JSON).
const MAX_PAGE_SIZE: usize = 10_000;

pub(super) fn collect_settings(raw: RawCollect, o: &CollectOverrides) -> Result<CollectSettings, ConfigError> {
    let o = o.clone();
    let (metric, label) = o.preset.or(raw.preset).unwrap_or_default().names();
    let prefix = o.prefix.or(raw.prefix).unwrap_or_else(|| "collected".to_owned()).trim_matches('/').to_owned();
    if prefix.is_empty() || prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(ConfigError::Invalid {
            setting: "collect.prefix",
            reason: format!("{prefix:?} is not a folder name such as \"collected\""),
        });
    }
    let page_size = o.page_size.or(raw.page_size);
    nonzero("collect.page_size (CAPBILL_COLLECT_PAGE_SIZE)", page_size.map(|n| n as u64))?;
    if let Some(n) = page_size.filter(|&n| n > MAX_PAGE_SIZE) {
        return Err(ConfigError::Invalid {
            setting: "collect.page_size (CAPBILL_COLLECT_PAGE_SIZE)",
            reason: format!("{n} buckets a page is more than the {MAX_PAGE_SIZE} capbill asks for at once"),
        });
    }
    let concurrency = o.concurrency.or(raw.concurrency);
    nonzero("collect.concurrency (CAPBILL_COLLECT_CONCURRENCY)", concurrency.map(|n| n as u64))?;
    let max_attempts = o.max_attempts.or(raw.max_attempts);
    nonzero("collect.max_attempts (CAPBILL_COLLECT_MAX_ATTEMPTS)", max_attempts.map(u64::from))?;
    let timeout_secs = o.timeout_secs.or(raw.timeout_secs);
    nonzero("collect.timeout_secs (CAPBILL_COLLECT_TIMEOUT_SECS)", timeout_secs)?;
    Ok(CollectSettings {
        source: o.source.or(raw.source),
        endpoint: o.endpoint.or(raw.endpoint),
        token: o.token.or(raw.token),
        prefix,
        metric: o.metric.or(raw.metric).unwrap_or_else(|| metric.to_owned()),
        bucket_label: o.bucket_label.or(raw.bucket_label).unwrap_or_else(|| label.to_owned()),
        page_size: page_size.unwrap_or(1000),
        concurrency: concurrency.unwrap_or(16),
        max_attempts: max_attempts.unwrap_or(3),
        timeout: std::time::Duration::from_secs(timeout_secs.unwrap_or(60)),
    })
}
