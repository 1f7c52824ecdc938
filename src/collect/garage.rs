//! The `garage` source: Garage's admin API v2, `GET /v2/ListBucketsInfo`
//! (Garage 2.5 or later), page by page with the admin token.
//!
//! `offset` names the first bucket of a page (inclusive), so each next page
//! starts at the last bucket seen, which is dropped when it comes again
//! (and one more bucket is asked for, so that a page of one advances); the
//! listing ends at the first page with no new bucket, whatever its size. A
//! bucket's name is its first global alias in sorted order, else its id
//! (local aliases are per key and not unique). Its bytes are the complete
//! objects' bytes (`bytes`); unfinished multipart uploads
//! (`unfinishedMultipartUploadBytes`) are carried in their own column and
//! not billed. Its owners are the keys with the `owner` permission.

use std::collections::HashSet;

use serde::Deserialize;

use super::http::{self, Http, url};
use super::{BucketUsage, CollectError, OwnerKey};
use crate::config::CollectSettings;

const SOURCE: &str = "garage";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BucketInfo {
    id: String,
    #[serde(default)]
    global_aliases: Vec<String>,
    #[serde(default)]
    keys: Vec<KeyInfo>,
    bytes: i64,
    #[serde(default)]
    unfinished_multipart_upload_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyInfo {
    access_key_id: String,
    #[serde(default)]
    name: String,
    permissions: Permissions,
}

#[derive(Debug, Deserialize)]
struct Permissions {
    #[serde(default)]
    owner: bool,
}

/// Every bucket of the cluster.
pub(super) async fn list(s: &CollectSettings) -> Result<Vec<BucketUsage>, CollectError> {
    let endpoint = http::endpoint(s, SOURCE, "admin API endpoint", "http://127.0.0.1:3903")?;
    if s.token.is_none() {
        return Err(CollectError::Setting {
            kind: SOURCE,
            reason: "no admin token: set CAPBILL_COLLECT_TOKEN".to_owned(),
        });
    }
    let http = Http::new(s, SOURCE)?;
    let base = url(SOURCE, endpoint, "/v2/ListBucketsInfo")?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut offset: Option<String> = None;
    let progress = crate::logging::spinner("listing Garage buckets");
    loop {
        // A page after the first starts with the last bucket seen again:
        // one more is asked for, so that every page brings `page_size` new
        // ones (with a page of one, a page would otherwise bring none).
        let limit = s.page_size + usize::from(offset.is_some());
        let mut page_url = base.clone();
        page_url.query_pairs_mut().append_pair("limit", &limit.to_string());
        if let Some(o) = &offset {
            page_url.query_pairs_mut().append_pair("offset", o);
        }
        let body = http.get(&page_url).await?;
        let malformed = |reason: String| CollectError::Malformed { url: page_url.as_str().to_owned(), reason };
        let page: Vec<BucketInfo> =
            serde_json::from_slice(&body).map_err(|e| malformed(format!("not a ListBucketsInfo answer: {e}")))?;
        let full = page.len() >= limit;
        let mut new = 0usize;
        for b in page {
            if offset.as_deref() == Some(b.id.as_str()) {
                continue;
            }
            if !seen.insert(b.id.clone()) {
                return Err(malformed(format!("bucket {} came twice: the pagination did not advance", b.id)));
            }
            offset = Some(b.id.clone());
            out.push(bucket(b).map_err(malformed)?);
            new += 1;
        }
        progress.inc(new as u64);
        // The listing ends with a page that brings no new bucket, not with
        // a short one: a server that serves fewer than asked for (a cap of
        // its own) would otherwise end it early, and the buckets after that
        // page would be missing from the snapshot. That is one request more.
        if new == 0 {
            if full {
                return Err(malformed("a full page brought no new bucket: the pagination did not advance".to_owned()));
            }
            break;
        }
    }
    progress.finish_and_clear();
    Ok(out)
}

fn bucket(b: BucketInfo) -> Result<BucketUsage, String> {
    let bytes = u64::try_from(b.bytes).map_err(|_| format!("bucket {}: negative bytes {}", b.id, b.bytes))?;
    let unfinished = b
        .unfinished_multipart_upload_bytes
        .map(|u| u64::try_from(u).map_err(|_| format!("bucket {}: negative unfinished upload bytes {u}", b.id)))
        .transpose()?;
    let owners = b
        .keys
        .into_iter()
        .filter(|k| k.permissions.owner)
        .map(|k| OwnerKey { access_key_id: k.access_key_id, name: k.name })
        .collect();
    let name = b.global_aliases.iter().min().cloned().unwrap_or(b.id);
    Ok(BucketUsage { bucket: name, bytes, unfinished_bytes: unfinished, owners: Some(owners) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_named_by_its_first_global_alias_and_owned_by_its_owner_keys() {
        let page: Vec<BucketInfo> = serde_json::from_str(
            r#"[{"id":"b1","globalAliases":["zeta","alpha"],"bytes":1000000000000,"unfinishedMultipartUploadBytes":5,
                "keys":[{"accessKeyId":"GK1","name":"sa-1","permissions":{"owner":true,"read":true}},
                        {"accessKeyId":"GK2","name":"reader","permissions":{"read":true}}],"objects":1},
               {"id":"b2","globalAliases":[],"bytes":0,"keys":[]}]"#,
        )
        .unwrap();
        let got: Vec<_> = page.into_iter().map(|b| bucket(b).unwrap()).collect();
        assert_eq!(got[0].bucket, "alpha");
        assert_eq!((got[0].bytes, got[0].unfinished_bytes), (1_000_000_000_000, Some(5)));
        assert_eq!(got[0].owners.as_deref().unwrap(), [OwnerKey { access_key_id: "GK1".into(), name: "sa-1".into() }]);
        assert_eq!((got[1].bucket.as_str(), got[1].owners.as_deref().unwrap().len()), ("b2", 0));
        let neg: BucketInfo = serde_json::from_str(r#"{"id":"b3","bytes":-1}"#).unwrap();
        assert_eq!(bucket(neg).unwrap_err(), "bucket b3: negative bytes -1");
    }
}
