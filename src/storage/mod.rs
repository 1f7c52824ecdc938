//! Where bytes live: a local folder or an S3 prefix, addressed by relative keys.
//!
//! Storage moves bytes and lists objects; it knows nothing about CSV, JSON
//! or Parquet (that is `formats`, `ingest` and `export`). Keys are relative
//! to the store's root, `/`-separated, and listings come back sorted by key,
//! which is the order "last wins" relies on.

mod local;
pub mod s3;
mod segment;

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use thiserror::Error;

pub use local::LocalStore;
pub use s3::{S3Settings, S3Store};
pub use segment::{MAX_SEGMENT_BYTES, decode_key_segment, key_segment};

/// A run location as given in flags or configuration: a local path or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on the local file system.
    Local(PathBuf),
    /// A prefix in an S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl Location {
    /// Parses `s3://bucket/prefix` or a local path.
    pub fn parse(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{s:?} names no bucket: expected s3://bucket/prefix"));
            }
            Ok(Location::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
        } else if s.is_empty() {
            Err("empty location".to_owned())
        } else if let Some(scheme) = url_scheme(s) {
            // `S3://b`, `s3:/b` or `file:///x` taken as a local path would
            // publish into a folder named after the scheme.
            Err(format!(
                "{s:?} starts with the scheme {scheme:?}, which capbill does not read: give s3://bucket/prefix (in lower case) or a local path"
            ))
        } else if s == "~" || s.starts_with("~/") {
            Err(format!("{s:?}: `~` is not expanded here (the shell does it only unquoted): give the full path"))
        } else {
            Ok(Location::Local(PathBuf::from(s)))
        }
    }
}

/// The scheme of `s` if it reads as a URL (`name:/…`, RFC 3986 scheme
/// characters, two at least: `C:/x` is a drive letter's shape, and a
/// legal folder name here): anything but `s3://` is not a location
/// capbill reads.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once(':')?;
    let is_scheme = scheme.len() >= 2
        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (is_scheme && rest.starts_with('/')).then_some(scheme)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag: the S3 ETag, or size and modification time for local files.
    pub etag: String,
}

/// A failure to move bytes.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The object or folder does not exist.
    #[error("{location} does not exist")]
    NotFound {
        /// Full path or URL.
        location: String,
    },
    /// Local file system failure.
    #[error("cannot {action} {location}")]
    Io {
        /// What was attempted (read, write, list).
        action: &'static str,
        /// Full path.
        location: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An object changed after the listing the run's plan (and manifest) came from.
    #[error("{location} changed after it was listed: running again reads (and bills) the new version")]
    Changed {
        /// Full path or URL.
        location: String,
    },
    /// The S3 server accepted a second create-only write of one key.
    #[error(
        "{location}: the S3 server wrote an object twice under a create-only write (it ignores If-None-Match: *); \
         there, two runs could both publish a month and a document number could be taken twice. Publish to a \
         server that honours conditional writes (AWS S3, MinIO, SeaweedFS, Ceph RGW)"
    )]
    NoConditionalWrites {
        /// The probe object's URL.
        location: String,
    },
    /// An S3 request failed; the hint says what to check.
    #[error("cannot {action} {location}: {hint}")]
    S3 {
        /// What was attempted.
        action: &'static str,
        /// `s3://bucket/key`.
        location: String,
        /// The likely cause and fix.
        hint: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A store rooted at one [`Location`].
#[derive(Debug, Clone)]
pub enum Store {
    /// Local folder.
    Local(LocalStore),
    /// Bucket prefix.
    S3(S3Store),
}

impl Store {
    /// Opens the store for a location (S3 locations connect with `s3`).
    pub async fn open(location: &Location, s3: &S3Settings) -> Result<Store, StorageError> {
        match location {
            Location::Local(p) => Ok(Store::Local(LocalStore::new(p.clone()))),
            Location::S3 { bucket, prefix } => Ok(Store::S3(S3Store::new(
                s3.client().await,
                bucket.clone(),
                prefix.clone(),
                s3.endpoint_url.as_deref(),
            ))),
        }
    }

    /// Every object under `prefix` (recursively), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        match self {
            Store::Local(s) => s.list(prefix),
            Store::S3(s) => s.list(prefix).await,
        }
    }

    /// The whole content of one object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.get_into(key, Vec::new()).await
    }

    /// The whole content of one object, read into `buf` (emptied first).
    ///
    /// The buffer's memory is reused, which matters for large objects read
    /// one after another: a fresh buffer is fresh pages, which the kernel
    /// zeroes before they are written. [`recycle`] takes a buffer back once
    /// its content is no longer needed.
    pub async fn get_into(&self, key: &str, buf: Vec<u8>) -> Result<Bytes, StorageError> {
        match self {
            Store::Local(s) => s.get_into(key, buf),
            Store::S3(s) => s.get_into(key, buf).await,
        }
    }

    /// The whole content of the version of one object that the listing
    /// named by `etag`, read into `buf` as [`Store::get_into`] reads it: on
    /// S3 the request carries `If-Match: etag`, locally the file read must
    /// still have that tag, so that what is billed is what the manifest
    /// records. Another version is [`StorageError::Changed`].
    pub async fn get_version(&self, key: &str, etag: &str, buf: Vec<u8>) -> Result<Bytes, StorageError> {
        match self {
            Store::Local(s) => s.get_version(key, etag, buf),
            Store::S3(s) => s.get_version(key, etag, buf).await,
        }
    }

    /// Bytes `range` of the version `etag` of one object, read into `buf`
    /// (emptied first), as [`Store::get_version`] reads a whole one, so the
    /// pieces of one object read in several requests are all of the version
    /// listed.
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        etag: &str,
        buf: Vec<u8>,
    ) -> Result<Bytes, StorageError> {
        match self {
            Store::Local(s) => s.get_range(key, range, etag, buf),
            Store::S3(s) => s.get_range(key, range, etag, buf).await,
        }
    }

    /// Checks that the store refuses a second create-only write of one key,
    /// which every create-only write relies on (the month lock, revision
    /// files, document numbers). Local files always do (`O_EXCL`); an S3
    /// server is asked with a probe object under `_capbill/`, written twice
    /// and deleted. A server that ignores `If-None-Match: *` (Garage 2.5
    /// does) is [`StorageError::NoConditionalWrites`].
    pub async fn require_create_only(&self) -> Result<(), StorageError> {
        let Store::S3(s) = self else { return Ok(()) };
        // A listing first: a missing bucket is named as such (some servers
        // would create it on a PUT).
        s.list("_capbill/").await?;
        let key = format!(
            "_capbill/create-only-probe-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let first = s.put_if_absent(&key, Bytes::from_static(b"1")).await?;
        let second = s.put_if_absent(&key, Bytes::from_static(b"2")).await?;
        s.delete(&key).await?;
        match (first, second) {
            (true, false) => Ok(()),
            _ => Err(StorageError::NoConditionalWrites { location: self.describe(&key) }),
        }
    }

    /// The entity tag of one object (a HEAD request on S3).
    pub async fn etag(&self, key: &str) -> Result<String, StorageError> {
        match self {
            Store::Local(s) => s.etag(key),
            Store::S3(s) => s.etag(key).await,
        }
    }

    /// Writes one object, replacing it atomically if it exists.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        match self {
            Store::Local(s) => s.put(key, &data),
            Store::S3(s) => s.put(key, data).await,
        }
    }

    /// Creates an object only if none exists at `key`; `Ok(false)` if one does.
    ///
    /// A reader never sees a part of it: locally the content is written to
    /// a temporary file first and moved into place without replacing
    /// (`RENAME_NOREPLACE`, or `link` where that is missing: both fail if the
    /// name exists, as `O_EXCL` does); on S3 with `If-None-Match: *`.
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StorageError> {
        match self {
            Store::Local(s) => s.put_if_absent(key, &data),
            Store::S3(s) => s.put_if_absent(key, data).await,
        }
    }

    /// [`Store::put_if_absent`] whose durability may wait for
    /// [`Store::sync_tree`]: for many files that become visible together
    /// (a revision's, published by its manifest). On S3 a write is durable
    /// when it returns, so this is `put_if_absent`.
    pub async fn put_if_absent_deferred(&self, key: &str, data: Bytes) -> Result<bool, StorageError> {
        match self {
            Store::Local(s) => s.put_if_absent_unsynced(key, &data),
            Store::S3(s) => s.put_if_absent(key, data).await,
        }
    }

    /// [`Store::sync_tree`] on a thread of its own, while writing goes on;
    /// `None` where there is nothing to sync (S3).
    pub fn start_sync_tree(&self, prefix: &str) -> Option<tokio::task::JoinHandle<Result<(), StorageError>>> {
        match self {
            Store::Local(s) => {
                let (s, prefix) = (s.clone(), prefix.to_owned());
                Some(tokio::task::spawn_blocking(move || s.sync_tree(&prefix)))
            }
            Store::S3(_) => None,
        }
    }

    /// Makes every earlier [`Store::put_if_absent_deferred`] under `prefix`
    /// durable (nothing to do on S3).
    pub async fn sync_tree(&self, prefix: &str) -> Result<(), StorageError> {
        match self {
            Store::Local(s) => s.sync_tree(prefix),
            Store::S3(_) => Ok(()),
        }
    }

    /// Replaces an object only if its entity tag is still `etag` (from
    /// [`Store::etag`]); `Ok(false)` if it changed or is gone. On S3 this is
    /// one conditional request (`If-Match`). Locally the tag is compared,
    /// then the new content is renamed into place: a write by another
    /// process between the two (microseconds) is not seen; the lock, the
    /// only caller, only ever rewrites its own object, so what that window
    /// can miss is another run deleting the object, which then reappears.
    pub async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<bool, StorageError> {
        match self {
            Store::Local(s) => s.put_if_match(key, &data, etag),
            Store::S3(s) => s.put_if_match(key, data, etag).await,
        }
    }

    /// Deletes an object (no error if it is already gone).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Store::Local(s) => s.delete(key),
            Store::S3(s) => s.delete(key).await,
        }
    }

    /// [`Store::list`], empty where the location itself does not exist yet
    /// (a local folder the first run or collection will make).
    pub async fn list_or_empty(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        match self.list(prefix).await {
            Err(StorageError::NotFound { .. }) => Ok(Vec::new()),
            listed => listed,
        }
    }

    /// The object's content, or `None` if it does not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A full, human-readable name of a key, for messages.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Store::Local(s) => s.path(key).display().to_string(),
            Store::S3(s) => s.url(key),
        }
    }
}

/// The buffer behind `data`, emptied, for [`Store::get_into`] to read the
/// next object into; `None` if something else still holds the content.
pub fn recycle(data: Bytes) -> Option<Vec<u8>> {
    // Emptied before it becomes a vector: the conversion moves the content
    // to the start of the allocation, which costs a copy of all of it.
    data.try_into_mut().ok().map(|mut buf| {
        buf.clear();
        Vec::from(buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_s3_in_lower_case_or_a_local_path_and_anything_url_like_is_refused() {
        assert_eq!(Location::parse("s3://b/p/").unwrap(), Location::S3 { bucket: "b".into(), prefix: "p".into() });
        for local in ["out", "/abs/out", "./a:b", "dir with space/x", "~user", "C:out", "C:/out", "2026:10/x"] {
            assert_eq!(Location::parse(local).unwrap(), Location::Local(PathBuf::from(local)), "{local}");
        }
        for (bad, says) in [
            ("S3://bucket/x", "\"S3\""),
            ("s3:/bucket", "\"s3\""),
            ("file:///tmp/x", "\"file\""),
            ("https://host/b", "\"https\""),
            ("~/out", "not expanded"),
            ("~", "not expanded"),
            ("s3:///x", "names no bucket"),
        ] {
            let err = Location::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_recycled_buffer_is_read_into_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_owned()));
        store.put("a", Bytes::from_static(b"first object")).await.unwrap();
        store.put("b", Bytes::from_static(b"second")).await.unwrap();

        let first = store.get_into("a", Vec::new()).await.unwrap();
        assert_eq!(&first[..], b"first object");
        let held = first.clone();
        assert!(recycle(first).is_none(), "a buffer still shared is not reused");

        let buf = recycle(held).expect("the last holder gives the buffer back");
        assert!(buf.is_empty() && buf.capacity() >= b"first object".len());
        let at = buf.as_ptr();
        let second = store.get_into("b", buf).await.unwrap();
        assert_eq!(&second[..], b"second", "the buffer is emptied before it is read into");
        assert_eq!(second.as_ptr(), at, "the same memory holds the next object");
    }
}
