//! Local folders as stores: recursive listing in key order, atomic writes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::{ObjectMeta, StorageError};

/// A folder whose files are objects keyed by their `/`-separated relative path.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// Temporary files of interrupted writes start with this and are never listed.
const TMP_PREFIX: &str = ".capbill-tmp-";

impl LocalStore {
    /// A store rooted at `root` (which need not exist yet).
    pub fn new(root: PathBuf) -> Self {
        LocalStore { root }
    }

    /// The file path of a key.
    pub fn path(&self, key: &str) -> PathBuf {
        if key.is_empty() { self.root.clone() } else { self.root.join(key) }
    }

    pub(super) fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let start = self.path(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        match std::fs::metadata(&start) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if prefix.is_empty() {
                    return Err(StorageError::NotFound { location: start.display().to_string() });
                }
                return Ok(out);
            }
            Err(e) => return Err(io("list", &start, e)),
            Ok(m) if m.is_file() => {
                out.push(self.meta(prefix.trim_end_matches('/').to_owned(), &m));
                return Ok(out);
            }
            Ok(_) => {}
        }
        self.walk(&start, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn walk(&self, dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<(), StorageError> {
        let entries = std::fs::read_dir(dir).map_err(|e| io("list", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io("list", dir, e))?;
            let path = entry.path();
            let meta = std::fs::metadata(&path).map_err(|e| io("list", &path, e))?;
            if meta.is_dir() {
                self.walk(&path, out)?;
            } else if !entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let rel = path.strip_prefix(&self.root).expect("walked below root");
                let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.push(self.meta(key, &meta));
            }
        }
        Ok(())
    }

    fn meta(&self, key: String, meta: &std::fs::Metadata) -> ObjectMeta {
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        ObjectMeta { key, size: meta.len(), etag: format!("{:x}-{:x}", meta.len(), mtime) }
    }

    pub(super) fn etag(&self, key: &str) -> Result<String, StorageError> {
        let path = self.path(key);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(self.meta(key.to_owned(), &m).etag),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::NotFound { location: path.display().to_string() })
            }
            Err(e) => Err(io("inspect", &path, e)),
        }
    }

    pub(super) fn get_into(&self, key: &str, mut buf: Vec<u8>) -> Result<Bytes, StorageError> {
        let path = self.path(key);
        let read = |buf: &mut Vec<u8>| -> std::io::Result<()> {
            let mut file = std::fs::File::open(&path)?;
            let len = file.metadata().map_or(0, |m| m.len() as usize);
            buf.clear();
            buf.reserve_exact(len);
            file.read_to_end(buf)?;
            Ok(())
        };
        match read(&mut buf) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::NotFound { location: path.display().to_string() })
            }
            Err(e) => Err(io("read", &path, e)),
        }
    }

    /// Writes to a temporary file beside the target, syncs it and renames it
    /// over the target, so a reader sees the old content or the new, never a part.
    pub(super) fn put(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{name}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("write", &path, e)
        })
    }
}

impl LocalStore {
    /// Creates the file only if it does not exist (`O_EXCL`); `Ok(false)` if it does.
    pub(super) fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool, StorageError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io("create", &path, e)),
        };
        f.write_all(data).and_then(|()| f.sync_all()).map_err(|e| io("write", &path, e))?;
        Ok(true)
    }

    /// Deletes a file and the folders it leaves empty (below the root), as
    /// object stores have no empty folders either.
    pub(super) fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("delete", &path, e)),
            _ => {}
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io { action, location: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_recursively_in_key_order_and_writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        store.put("b/2.csv", b"two").unwrap();
        store.put("a/1.csv", b"one").unwrap();
        store.put("b/10.csv", b"ten").unwrap();
        std::fs::write(dir.path().join("a").join(format!("{TMP_PREFIX}x")), b"partial").unwrap();
        let keys: Vec<_> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["a/1.csv", "b/10.csv", "b/2.csv"]);
        assert_eq!(store.list("b").unwrap().len(), 2);
        assert!(store.list("missing").unwrap().is_empty());
        assert_eq!(&store.get_into("a/1.csv", Vec::new()).unwrap()[..], b"one");
        store.put("a/1.csv", b"uno").unwrap();
        assert_eq!(&store.get_into("a/1.csv", Vec::new()).unwrap()[..], b"uno");
        assert!(matches!(store.get_into("nope", Vec::new()), Err(StorageError::NotFound { .. })));
    }
}
