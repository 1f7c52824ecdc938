//! The `[s3]` section of the config file and its `CAPBILL_S3_*`
//! overrides: how capbill reaches an S3-compatible server, validated into
//! the storage layer's [`S3Settings`].

use serde::Deserialize;

use super::{ConfigError, nonzero};
use crate::storage::s3::{ChecksumMode, S3Settings, Secret};

/// `[s3]`: connection settings; each can also be set as `CAPBILL_S3_<NAME>`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    /// Endpoint of an S3-compatible service, e.g. `https://eu-central-2.storage.impossibleapi.net`.
    endpoint_url: Option<String>,
    /// Region name.
    region: Option<String>,
    /// Path-style addressing (`true` for most non-AWS servers).
    force_path_style: Option<bool>,
    /// `when_supported` (SDK default) or `when_required`.
    checksum: Option<ChecksumMode>,
    /// Attempts per request, first included.
    max_attempts: Option<u32>,
    /// Connect timeout in seconds.
    connect_timeout_secs: Option<u64>,
    /// Timeout of one operation (retries included) in seconds.
    operation_timeout_secs: Option<u64>,
    /// Objects fetched in parallel.
    concurrency: Option<usize>,
    /// Profile of the shared AWS config files.
    profile: Option<String>,
    /// Static access key id (prefer the standard credential chain).
    access_key_id: Option<String>,
    /// Static secret access key (prefer the standard credential chain).
    secret_access_key: Option<Secret>,
}

/// S3 settings given for one invocation: each overrides its `[s3]` value.
#[derive(Debug, Default, Clone)]
pub struct S3Overrides {
    /// `CAPBILL_S3_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `CAPBILL_S3_REGION`.
    pub region: Option<String>,
    /// `CAPBILL_S3_FORCE_PATH_STYLE`.
    pub force_path_style: Option<bool>,
    /// `CAPBILL_S3_CHECKSUM`.
    pub checksum: Option<ChecksumMode>,
    /// `CAPBILL_S3_MAX_ATTEMPTS`.
    pub max_attempts: Option<u32>,
    /// `CAPBILL_S3_CONNECT_TIMEOUT_SECS`.
    pub connect_timeout_secs: Option<u64>,
    /// `CAPBILL_S3_OPERATION_TIMEOUT_SECS`.
    pub operation_timeout_secs: Option<u64>,
    /// `CAPBILL_S3_CONCURRENCY`.
    pub concurrency: Option<usize>,
    /// `CAPBILL_S3_PROFILE`.
    pub profile: Option<String>,
    /// `CAPBILL_S3_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `CAPBILL_S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
}

/// `[s3]` values, each overridden by the invocation's.
pub(super) fn s3_settings(raw: RawS3, o: &S3Overrides) -> Result<S3Settings, ConfigError> {
    let d = S3Settings::default();
    let secs = |v: Option<u64>, default: std::time::Duration| v.map_or(default, std::time::Duration::from_secs);
    let o = o.clone();
    let max_attempts = o.max_attempts.or(raw.max_attempts);
    nonzero("s3.max_attempts (CAPBILL_S3_MAX_ATTEMPTS)", max_attempts.map(u64::from))?;
    let connect_timeout_secs = o.connect_timeout_secs.or(raw.connect_timeout_secs);
    nonzero("s3.connect_timeout_secs (CAPBILL_S3_CONNECT_TIMEOUT_SECS)", connect_timeout_secs)?;
    let operation_timeout_secs = o.operation_timeout_secs.or(raw.operation_timeout_secs);
    nonzero("s3.operation_timeout_secs (CAPBILL_S3_OPERATION_TIMEOUT_SECS)", operation_timeout_secs)?;
    let concurrency = o.concurrency.or(raw.concurrency);
    nonzero("s3.concurrency (CAPBILL_S3_CONCURRENCY)", concurrency.map(|n| n as u64))?;
    Ok(S3Settings {
        endpoint_url: o.endpoint_url.or(raw.endpoint_url),
        region: o.region.or(raw.region),
        force_path_style: o.force_path_style.or(raw.force_path_style).unwrap_or(d.force_path_style),
        checksum: o.checksum.or(raw.checksum).unwrap_or(d.checksum),
        max_attempts: max_attempts.unwrap_or(d.max_attempts),
        connect_timeout: secs(connect_timeout_secs, d.connect_timeout),
        operation_timeout: secs(operation_timeout_secs, d.operation_timeout),
        concurrency: concurrency.unwrap_or(d.concurrency),
        profile: o.profile.or(raw.profile),
        access_key_id: o.access_key_id.or(raw.access_key_id),
        secret_access_key: o.secret_access_key.or(raw.secret_access_key),
    })
}
