//! Local folders as stores: recursive listing in key order, atomic writes.
//!
//! Only the file system: what keys mean and which objects a run reads are
//! decided by the callers.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use walkdir::WalkDir;

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
        // Symbolic links are followed, as reading them does.
        for entry in WalkDir::new(&start).min_depth(1).follow_links(true) {
            let entry = entry.map_err(|e| walk_error(&start, e))?;
            if entry.file_type().is_dir() || entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let meta = entry.metadata().map_err(|e| walk_error(&start, e))?;
            let rel = entry.path().strip_prefix(&self.root).expect("walked below root");
            let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push(self.meta(key, &meta));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn meta(&self, key: String, meta: &std::fs::Metadata) -> ObjectMeta {
        ObjectMeta { key, size: meta.len(), etag: etag(meta) }
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

    /// Bytes `range` of the file, which must still have the tag `etag`
    /// (none if empty) once they are read.
    pub(super) fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        etag: &str,
        buf: Vec<u8>,
    ) -> Result<Bytes, StorageError> {
        use std::io::{Seek, SeekFrom};
        let len = range.end.saturating_sub(range.start);
        self.read_version(key, etag, buf, |mut file, buf| {
            // Read into the buffer's spare capacity (`read_to_end` does not
            // zero it, where `resize` then `read_exact_at` wrote every byte
            // twice: 3 % of a month file's ingest in `perf`).
            buf.reserve_exact(usize::try_from(len).unwrap_or(usize::MAX));
            file.seek(SeekFrom::Start(range.start))?;
            let read = file.take(len).read_to_end(buf)?;
            if (read as u64) < len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("bytes {}..{} asked for, the file ends {read} bytes into them", range.start, range.end),
                ));
            }
            Ok(())
        })
    }

    pub(super) fn get_into(&self, key: &str, buf: Vec<u8>) -> Result<Bytes, StorageError> {
        self.get_version(key, "", buf)
    }

    /// The whole file, which must still have the tag `etag` (none if empty)
    /// once it is read.
    pub(super) fn get_version(&self, key: &str, etag: &str, buf: Vec<u8>) -> Result<Bytes, StorageError> {
        self.read_version(key, etag, buf, |file, buf| {
            buf.reserve_exact(file.metadata().map_or(0, |m| m.len() as usize));
            (&*file).read_to_end(buf).map(|_| ())
        })
    }

    /// [`LocalStore::read`], then the tag of the file read (the open file,
    /// whatever has been renamed over its name since) compared with `etag`:
    /// a file written to after it was listed is [`StorageError::Changed`].
    fn read_version(
        &self,
        key: &str,
        etag: &str,
        buf: Vec<u8>,
        fill: impl FnOnce(&std::fs::File, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<Bytes, StorageError> {
        let mut read_tag = None;
        let data = self.read(key, buf, |file, buf| {
            fill(&file, buf)?;
            read_tag = Some(file.metadata().map(|m| self::etag(&m))?);
            Ok(())
        })?;
        match read_tag {
            Some(tag) if !etag.is_empty() && tag != etag => {
                Err(StorageError::Changed { location: self.path(key).display().to_string() })
            }
            _ => Ok(data),
        }
    }

    /// Opens `key` and lets `fill` read from it into `buf` (emptied first).
    fn read(
        &self,
        key: &str,
        mut buf: Vec<u8>,
        fill: impl FnOnce(std::fs::File, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<Bytes, StorageError> {
        let path = self.path(key);
        buf.clear();
        match std::fs::File::open(&path).and_then(|file| fill(file, &mut buf)) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::NotFound { location: path.display().to_string() })
            }
            Err(e) => Err(io("read", &path, e)),
        }
    }

    /// Writes to a temporary file beside the target, syncs it, renames it
    /// over the target and syncs the folder, so a reader sees the old
    /// content or the new, never a part, and the new survives a crash.
    pub(super) fn put(&self, key: &str, data: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key);
        let (dir, tmp) = self.temp_with(&path, data)?;
        tmp.persist(&path).map_err(|e| io("write", &path, e.error))?;
        sync_dir(&dir).map_err(|e| io("sync", &dir, e))
    }

    /// A synced temporary file holding `data` in the folder of `path`
    /// (created if missing); dropped on failure, it is removed.
    fn temp_with(&self, path: &Path, data: &[u8]) -> Result<(PathBuf, tempfile::NamedTempFile), StorageError> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(TMP_PREFIX);
        // The permissions a created file has (tempfile's own are owner-only).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let mut tmp = builder.tempfile_in(&dir).map_err(|e| io("write", path, e))?;
        tmp.write_all(data).and_then(|()| tmp.as_file().sync_all()).map_err(|e| io("write", path, e))?;
        Ok((dir, tmp))
    }
}

/// Makes a folder's entries (a rename into it) durable. Filesystems that
/// cannot sync a folder say so with `EINVAL`; they have nothing to sync.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

impl LocalStore {
    /// Creates the file only if it does not exist; `Ok(false)` if it does.
    /// The content goes to a temporary file first, synced, then is moved to
    /// the name without replacing (`RENAME_NOREPLACE`, or a hard link where
    /// that is missing: both fail atomically if the name exists, as `O_EXCL`
    /// does), so a reader sees the whole file or none.
    pub(super) fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool, StorageError> {
        let path = self.path(key);
        let (dir, tmp) = self.temp_with(&path, data)?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io("create", &path, e.error)),
        }
        sync_dir(&dir).map_err(|e| io("sync", &dir, e))?;
        Ok(true)
    }

    /// Creates the file only if it does not exist (`O_EXCL`), written in
    /// place and not synced: for files that no reader opens before a later
    /// step publishes them (a revision's files, published by its manifest,
    /// after [`LocalStore::sync_tree`]). A crash may leave the file partial
    /// or lose it; either way it was never published. One directory entry
    /// per file (no temporary name and rename), so that many files written
    /// at once into one folder do not queue on its lock twice.
    pub(super) fn put_if_absent_unsynced(&self, key: &str, data: &[u8]) -> Result<bool, StorageError> {
        let path = self.path(key);
        let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
        // The folder is made only when the file cannot be created for want
        // of it: one system call per file where its folder exists (most of
        // a revision's statements), where a look first cost two.
        let opened = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
                create()
            }
            other => other,
        };
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io("create", &path, e)),
        };
        file.write_all(data).map_err(|e| io("write", &path, e))?;
        Ok(true)
    }

    /// Makes every file and folder under `prefix` durable at once: one
    /// `syncfs` of the file system that holds it (one journal commit, where
    /// a sync per file costs a commit each), else a sync of each file and
    /// folder.
    pub(super) fn sync_tree(&self, prefix: &str) -> Result<(), StorageError> {
        let root = self.path(prefix.trim_end_matches('/'));
        #[cfg(target_os = "linux")]
        {
            let dir = std::fs::File::open(&root).map_err(|e| io("sync", &root, e))?;
            rustix::fs::syncfs(&dir).map_err(|e| io("sync", &root, e.into()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            for entry in WalkDir::new(&root) {
                let entry = entry.map_err(|e| io("sync", &root, e.into()))?;
                if entry.file_type().is_dir() {
                    sync_dir(entry.path()).map_err(|e| io("sync", entry.path(), e))?;
                } else {
                    std::fs::File::open(entry.path())
                        .and_then(|f| f.sync_all())
                        .map_err(|e| io("sync", entry.path(), e))?;
                }
            }
            Ok(())
        }
    }

    /// Replaces the file if its entity tag is still `etag`; see
    /// `Store::put_if_match` for the window between the check and the rename.
    pub(super) fn put_if_match(&self, key: &str, data: &[u8], etag: &str) -> Result<bool, StorageError> {
        let path = self.path(key);
        let (dir, tmp) = self.temp_with(&path, data)?;
        match self.etag(key) {
            Ok(now) if now == etag => {}
            Ok(_) | Err(StorageError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        tmp.persist(&path).map_err(|e| io("write", &path, e.error))?;
        sync_dir(&dir).map_err(|e| io("sync", &dir, e))?;
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

/// The tag of a local file: size, modification time in nanoseconds and, on
/// Unix, the inode. A file replaced by a new one (as atomic writers and most
/// exporters do) gets a new inode, so a rewrite of the same size within one
/// tick of a coarse file-system clock is still seen as a change; only an
/// in-place rewrite of the same size within one tick would not be.
fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    format!("{:x}-{:x}-{:x}", meta.len(), mtime, inode)
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io { action, location: path.display().to_string(), source }
}

/// A failure of the walk below `start`, named by the path it failed at.
fn walk_error(start: &Path, e: walkdir::Error) -> StorageError {
    let path = e.path().unwrap_or(start).to_path_buf();
    io("list", &path, e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_of_the_same_size_and_time_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        store.put("a.csv", b"one").unwrap();
        let path = dir.path().join("a.csv");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let before = store.etag("a.csv").unwrap();
        store.put("a.csv", b"two").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime, "same size, same time");
        assert_ne!(store.etag("a.csv").unwrap(), before, "a new file is a new version");
        assert_eq!(store.list("").unwrap()[0].etag, store.etag("a.csv").unwrap(), "listing and HEAD agree");
    }

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

    #[test]
    fn writes_into_fresh_nested_folders_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("out"));
        store.put("2026-10/r1/invoices.csv", b"lines").unwrap();
        let folder = dir.path().join("out/2026-10/r1");
        assert_eq!(std::fs::read(folder.join("invoices.csv")).unwrap(), b"lines");
        let names: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["invoices.csv"]);
        #[cfg(unix)]
        {
            // Created as any file is (the umask decides), not owner-only.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(folder.join("invoices.csv")).unwrap().permissions().mode() & 0o777;
            let plain = {
                let probe = dir.path().join("probe");
                std::fs::write(&probe, b"").unwrap();
                std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777
            };
            assert_eq!(mode, plain);
        }
        assert!(matches!(store.put("2026-10/r1/invoices.csv/x", b""), Err(StorageError::Io { action: "create", .. })));
    }

    #[test]
    fn create_only_writes_keep_the_first_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        assert!(store.put_if_absent("m/revision=1/invoices.csv", b"first").unwrap());
        assert!(!store.put_if_absent("m/revision=1/invoices.csv", b"second").unwrap());
        assert_eq!(&store.get_into("m/revision=1/invoices.csv", Vec::new()).unwrap()[..], b"first");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("m/revision=1")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["invoices.csv"], "the losing write leaves nothing behind");
    }

    #[test]
    fn unsynced_create_only_writes_make_missing_folders_once_and_refuse_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("out"));
        // Eight threads write into folders none of which exists yet, two
        // threads per folder: each makes the folder it needs or finds it made.
        std::thread::scope(|s| {
            for t in 0..8 {
                let store = &store;
                s.spawn(move || {
                    let key = format!("rev/statements/seller {}/buyer {t}.html", t % 4);
                    assert!(store.put_if_absent_unsynced(&key, key.as_bytes()).unwrap(), "{key}");
                });
            }
        });
        for t in 0..8 {
            let key = format!("rev/statements/seller {}/buyer {t}.html", t % 4);
            assert_eq!(&store.get_into(&key, Vec::new()).unwrap()[..], key.as_bytes());
        }
        assert!(!store.put_if_absent_unsynced("rev/statements/seller 0/buyer 0.html", b"again").unwrap());
        assert_eq!(
            &store.get_into("rev/statements/seller 0/buyer 0.html", Vec::new()).unwrap()[..],
            b"rev/statements/seller 0/buyer 0.html",
            "the existing file is left as it was"
        );
        // A file where a folder is needed is an error naming the path, not a retry loop.
        std::fs::write(dir.path().join("out/rev/blocked"), b"").unwrap();
        let err = store.put_if_absent_unsynced("rev/blocked/x.html", b"").unwrap_err();
        assert!(matches!(err, StorageError::Io { action: "create", .. }), "{err:?}");
        assert!(err.to_string().contains("blocked"), "{err}");
    }

    #[test]
    fn racing_create_only_writes_have_exactly_one_winner_and_whole_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let big: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 1 << 20]).collect();
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> =
                big.iter().map(|data| s.spawn(|| store.put_if_absent("r/manifest.json", data).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        let winner = wins.iter().position(|w| *w).unwrap();
        assert_eq!(store.get_into("r/manifest.json", Vec::new()).unwrap().to_vec(), big[winner]);
    }
}
