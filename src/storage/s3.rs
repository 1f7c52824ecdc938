//! S3-compatible buckets as stores, through aws-sdk-s3.
//!
//! Owns the connection settings (endpoint, region, path style, checksum
//! mode, retries, timeouts, credentials), listing with pagination, whole
//! object reads, uploads (multipart above a threshold) and create-only
//! writes. Errors are turned into messages that name the bucket and key and
//! the likely fix; secrets never appear in them.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::region::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation, SharedHttpClient,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as HttpClientBuilder, ConnectorBuilder};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ObjectMeta, StorageError};

/// Uploads larger than this go as multipart uploads.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each multipart part (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// When the SDK computes request checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// On every request that supports one (the SDK default).
    #[default]
    WhenSupported,
    /// Only when the operation requires one: for servers that reject the defaults.
    WhenRequired,
}

impl std::str::FromStr for ChecksumMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "when_supported" => Ok(ChecksumMode::WhenSupported),
            "when_required" => Ok(ChecksumMode::WhenRequired),
            _ => Err(format!("{s:?}: expected when_supported or when_required")),
        }
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value, for handing to the SDK only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// S3 connection settings (`[s3]` in the config, `CAPBILL_S3_*` in the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible service (default: AWS, or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Region (default: the SDK's chain, else `us-east-1`).
    pub region: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by most non-AWS servers.
    pub force_path_style: bool,
    /// Request checksum mode.
    pub checksum: ChecksumMode,
    /// Attempts per request, including the first (exponential backoff between).
    pub max_attempts: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one whole operation, retries included.
    pub operation_timeout: Duration,
    /// Objects fetched at once.
    pub concurrency: usize,
    /// Named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Static access key id (else the standard credential chain).
    pub access_key_id: Option<String>,
    /// Static secret access key.
    pub secret_access_key: Option<Secret>,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint_url: None,
            region: None,
            force_path_style: false,
            checksum: ChecksumMode::WhenSupported,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(300),
            concurrency: 8,
            profile: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl S3Settings {
    /// Builds a client from these settings and the standard AWS environment.
    pub async fn client(&self) -> Client {
        let http = https_client();
        // The SDK's default region chain (`or_default_provider`: environment,
        // default profile, IMDS), its IMDS client on this HTTP client.
        let imds = ProviderConfig::default().with_http_client(http.clone());
        let region = RegionProviderChain::first_try(self.region.clone().map(Region::new))
            .or_else(EnvironmentVariableRegionProvider::new())
            .or_else(ProfileFileRegionProvider::new())
            .or_else(ImdsRegionProvider::builder().configure(&imds).build())
            .or_else(Region::new("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(region)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_timeout(self.operation_timeout)
                    .build(),
            );
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &self.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        if let (Some(ak), Some(sk)) = (&self.access_key_id, &self.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(ak, sk.expose(), None, None, "capbill-config"));
        }
        let sdk = loader.load().await;
        let (req, resp) = match self.checksum {
            ChecksumMode::WhenSupported => {
                (RequestChecksumCalculation::WhenSupported, ResponseChecksumValidation::WhenSupported)
            }
            ChecksumMode::WhenRequired => {
                (RequestChecksumCalculation::WhenRequired, ResponseChecksumValidation::WhenRequired)
            }
        };
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(self.force_path_style)
            .request_checksum_calculation(req)
            .response_checksum_validation(resp)
            .build();
        Client::from_conf(conf)
    }
}

/// The SDK's default HTTPS client (hyper 1, rustls 0.23, native roots, proxy
/// from `HTTPS_PROXY`/`NO_PROXY`), with ring as rustls' crypto instead of
/// aws-lc: ring is already built for reqwest, aws-lc would be a C build of its
/// own. Also used by the region and credential providers (IMDS, ECS, STS):
/// without the SDK's `default-https-client` feature they have no other.
fn https_client() -> SharedHttpClient {
    HttpClientBuilder::new().build_with_connector_fn(|settings, components| {
        let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// A bucket prefix as a store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
}

impl S3Store {
    /// A store for `s3://bucket/prefix`.
    pub fn new(client: Client, bucket: String, prefix: String, endpoint: Option<&str>) -> Self {
        S3Store { client, bucket, prefix, endpoint: endpoint.unwrap_or("the default AWS endpoint").to_owned() }
    }

    fn full_key(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    /// `s3://bucket/prefix/key`.
    pub fn url(&self, key: &str) -> String {
        let k = self.full_key(key);
        if k.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{k}", self.bucket) }
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut full = self.full_key(prefix.trim_end_matches('/'));
        if !full.is_empty() {
            full.push('/');
        }
        let root_len = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", &self.url(prefix), e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                if key.ends_with('/') {
                    continue; // folder marker
                }
                out.push(ObjectMeta {
                    key: key[root_len.min(key.len())..].to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The buckets the credentials can list (ListBuckets, following
    /// continuation tokens), sorted. The store's own bucket is not used.
    pub async fn list_buckets(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| self.error("list buckets", "s3://", e))?;
            out.extend(page.buckets().iter().filter_map(|b| b.name().map(str::to_owned)));
            match page.continuation_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Bytes stored in the store's bucket, by listing: every version of
    /// every object when versioning is enabled or suspended (noncurrent
    /// versions are stored too; delete markers hold nothing), else every
    /// object. A server that does not implement versioning has none.
    pub async fn stored_bytes(&self) -> Result<u128, StorageError> {
        let location = self.url("");
        let versioned = match self.client.get_bucket_versioning().bucket(&self.bucket).send().await {
            Ok(v) => v.status().is_some(),
            Err(e) if matches!(e.code(), Some("NotImplemented")) => false,
            Err(e) => return Err(self.error("read the versioning of", &location, e)),
        };
        let mut total = 0u128;
        if versioned {
            let (mut key, mut version) = (None::<String>, None::<String>);
            loop {
                let page = self
                    .client
                    .list_object_versions()
                    .bucket(&self.bucket)
                    .set_key_marker(key.take())
                    .set_version_id_marker(version.take())
                    .send()
                    .await
                    .map_err(|e| self.error("list object versions of", &location, e))?;
                total += page.versions().iter().map(|v| v.size().unwrap_or(0).max(0) as u128).sum::<u128>();
                if page.is_truncated() != Some(true) {
                    break;
                }
                key = page.next_key_marker().map(str::to_owned);
                version = page.next_version_id_marker().map(str::to_owned);
                if key.is_none() {
                    break;
                }
            }
        } else {
            let mut pages = self.client.list_objects_v2().bucket(&self.bucket).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error("list", &location, e))?;
                total += page.contents().iter().map(|o| o.size().unwrap_or(0).max(0) as u128).sum::<u128>();
            }
        }
        Ok(total)
    }

    pub(super) async fn get_into(&self, key: &str, buf: Vec<u8>) -> Result<Bytes, StorageError> {
        self.get_version(key, "", buf).await
    }

    /// The whole object, with `If-Match: etag` unless `etag` is empty.
    pub(super) async fn get_version(&self, key: &str, etag: &str, buf: Vec<u8>) -> Result<Bytes, StorageError> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(self.full_key(key));
        if !etag.is_empty() {
            request = request.if_match(format!("\"{etag}\""));
        }
        self.read_body(key, request, buf).await
    }

    pub(super) async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        etag: &str,
        buf: Vec<u8>,
    ) -> Result<Bytes, StorageError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let mut request = self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).range(format!(
            "bytes={}-{}",
            range.start,
            range.end - 1
        ));
        if !etag.is_empty() {
            request = request.if_match(format!("\"{etag}\""));
        }
        self.read_body(key, request, buf).await
    }

    /// Sends a GET and reads its body into `buf`.
    async fn read_body(
        &self,
        key: &str,
        request: aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
        mut buf: Vec<u8>,
    ) -> Result<Bytes, StorageError> {
        let resp = request.send().await.map_err(|e| self.error("read", &self.url(key), e))?;
        buf.clear();
        buf.reserve_exact(resp.content_length().map_or(0, |n| usize::try_from(n).unwrap_or(0)));
        let mut body = resp.body;
        while let Some(part) = body.try_next().await.map_err(|e| StorageError::S3 {
            action: "read",
            location: self.url(key),
            hint: "the download was interrupted; running again is safe".to_owned(),
            source: Box::new(e),
        })? {
            buf.extend_from_slice(&part);
        }
        Ok(Bytes::from(buf))
    }

    pub(super) async fn etag(&self, key: &str) -> Result<String, StorageError> {
        let resp = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("inspect", &self.url(key), e))?;
        Ok(resp.e_tag().unwrap_or_default().trim_matches('"').to_owned())
    }

    pub(super) async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        if data.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, data, false).await.map(|_| ());
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("write", &self.url(key), e))?;
        Ok(())
    }

    /// Writes only if no object exists at `key` (`If-None-Match: *`).
    /// `Ok(false)` when it already exists.
    pub(super) async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StorageError> {
        if data.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, data, true).await;
        }
        let res = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .body(ByteStream::from(data))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(false),
            Err(e) => Err(self.error("create", &self.url(key), e)),
        }
    }

    /// Replaces the object only if its ETag is still `etag` (`If-Match`).
    /// `Ok(false)` when it changed or is gone.
    pub(super) async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<bool, StorageError> {
        let res = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_match(format!("\"{etag}\""))
            .body(ByteStream::from(data))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if matches!(status(&e), Some(412 | 409 | 404)) => Ok(false),
            Err(e) => Err(self.error("replace", &self.url(key), e)),
        }
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("delete", &self.url(key), e))?;
        Ok(())
    }

    /// A multipart upload; with `create_only`, completed with
    /// `If-None-Match: *` and `Ok(false)` if the object exists.
    async fn put_multipart(&self, key: &str, data: Bytes, create_only: bool) -> Result<bool, StorageError> {
        let full = self.full_key(key);
        let url = self.url(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error("start upload of", &url, e))?;
        let id = created.upload_id().unwrap_or_default().to_owned();
        let result = async {
            let mut parts = Vec::new();
            for (i, start) in (0..data.len()).step_by(PART_SIZE).enumerate() {
                let n = i as i32 + 1;
                let chunk = data.slice(start..(start + PART_SIZE).min(data.len()));
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&id)
                    .part_number(n)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| self.error("upload part of", &url, e))?;
                parts.push(CompletedPart::builder().set_e_tag(part.e_tag().map(str::to_owned)).part_number(n).build());
            }
            let res = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .set_if_none_match(create_only.then(|| "*".to_owned()))
                .send()
                .await;
            match res {
                Ok(_) => Ok(true),
                Err(e) if create_only && matches!(status(&e), Some(412 | 409)) => Ok(false),
                Err(e) => Err(self.error("complete upload of", &url, e)),
            }
        }
        .await;
        if !matches!(result, Ok(true)) {
            // Best effort: do not leave parts behind to be billed by the provider.
            let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(&id).send().await;
        }
        result
    }

    fn error<E, R>(&self, action: &'static str, location: &str, e: SdkError<E, R>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static + HasStatus,
    {
        let code = e.code().unwrap_or_default().to_owned();
        let http = status(&e);
        if code == "NoSuchKey" || (http == Some(404) && code.is_empty()) {
            return StorageError::NotFound { location: location.to_owned() };
        }
        let hint = match (code.as_str(), http, &e) {
            ("NoSuchBucket", ..) => format!("bucket {} does not exist at {}: check the bucket name and the endpoint", self.bucket, self.endpoint),
            ("InvalidAccessKeyId", ..) => format!(
                "the access key id is not known at {}: check AWS_ACCESS_KEY_ID (or CAPBILL_S3_ACCESS_KEY_ID) and the endpoint",
                self.endpoint
            ),
            ("SignatureDoesNotMatch", ..) => {
                "the secret key does not match the access key id: check AWS_SECRET_ACCESS_KEY (or CAPBILL_S3_SECRET_ACCESS_KEY)".to_owned()
            }
            ("ExpiredToken" | "TokenRefreshRequired" | "RequestExpired", ..) => {
                "the credentials have expired: refresh the session token or the web identity token".to_owned()
            }
            ("PreconditionFailed", ..) | (_, Some(412), _) => {
                "the object changed after it was listed: running again reads (and bills) the new version".to_owned()
            }
            ("AccessDenied", ..) | (_, Some(403), _) => format!(
                "access denied: the credentials need s3:ListBucket and s3:GetObject on input prefixes and s3:PutObject on the output prefix of bucket {}",
                self.bucket
            ),
            // The SDK reports credentials it could not load as a failure to
            // send: the endpoint was never asked.
            (_, _, SdkError::DispatchFailure(_)) if mentions_credentials(&e) => {
                "no S3 credentials could be loaded: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or CAPBILL_S3_ACCESS_KEY_ID and CAPBILL_S3_SECRET_ACCESS_KEY), a profile (AWS_PROFILE), or a web identity token".to_owned()
            }
            (_, _, SdkError::DispatchFailure(_)) => format!(
                "cannot reach the endpoint {}: check CAPBILL_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL), path style and the network",
                self.endpoint
            ),
            (_, _, SdkError::TimeoutError(_)) => {
                format!("no answer from {} in time: retry later or raise the timeouts", self.endpoint)
            }
            (_, _, SdkError::ConstructionFailure(_)) => {
                "the request could not be built: are credentials configured (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or a web identity token)?".to_owned()
            }
            (code, Some(s), _) if s >= 500 => format!("the server failed ({s} {code}) after every retry: retry later"),
            (code, s, _) => format!("the server refused the request ({} {code})", s.map(|s| s.to_string()).unwrap_or_default()),
        };
        StorageError::S3 { action, location: location.to_owned(), hint, source: Box::new(e) }
    }
}

/// Whether an error's chain says credentials could not be loaded.
fn mentions_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        let text = e.to_string();
        text.contains("loading credentials") || text.contains("no credentials found")
    })
}

/// HTTP status of a raw response.
pub trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn status<E, R: HasStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status_code)
}
