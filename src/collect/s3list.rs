//! The `s3-list` source, for servers without metrics: every bucket the
//! configured S3 credentials can list, its size summed from a listing of
//! its objects (of every object version when the bucket is versioned),
//! several buckets at once. Buckets are attributed by the directory's
//! `buckets` table. Listing is as slow as the number of objects: it is the
//! source of last resort.

use futures::{StreamExt, TryStreamExt};

use super::{BucketUsage, CollectError};
use crate::config::CollectSettings;
use crate::storage::s3::{S3Settings, S3Store};

/// Every bucket with its stored bytes.
pub(super) async fn list(s: &CollectSettings, s3: &S3Settings) -> Result<Vec<BucketUsage>, CollectError> {
    let mut settings = s3.clone();
    if let Some(e) = &s.endpoint {
        settings.endpoint_url = Some(e.clone());
    }
    let client = settings.client().await;
    let endpoint = settings.endpoint_url.as_deref();
    let store = |bucket: String| S3Store::new(client.clone(), bucket, String::new(), endpoint);
    let names = store(String::new()).list_buckets().await.map_err(CollectError::List)?;
    let progress = crate::logging::progress_bar(names.len() as u64, "listing buckets");
    let out = futures::stream::iter(names)
        .map(|bucket| {
            let store = store(bucket.clone());
            let progress = progress.clone();
            async move {
                let total = store.stored_bytes().await.map_err(CollectError::List)?;
                progress.inc(1);
                let bytes = u64::try_from(total).map_err(|_| CollectError::Malformed {
                    url: store.url(""),
                    reason: format!("the listing adds up to {total} bytes, beyond 2^64"),
                })?;
                Ok::<_, CollectError>(BucketUsage { bucket, bytes, unfinished_bytes: None, owners: None })
            }
        })
        .buffered(s.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    progress.finish_and_clear();
    Ok(out)
}
