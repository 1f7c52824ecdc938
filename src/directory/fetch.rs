//! Fetching the partner directory: the four table files found under a
//! [`Store`], read and fingerprinted (SHA-256 over key, length and content).
//!
//! Fetching only moves and hashes bytes: it does not parse or validate a
//! table (that is `checks`, behind [`DirectoryFiles::parse`]).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Directory, DirectoryError, Problem, parse_tables};
use crate::storage::{ObjectMeta, StorageError, Store};

/// The four table files of a directory as read, before they are parsed:
/// enough to fingerprint a run, which can then parse them while it reads
/// usage.
#[derive(Debug)]
pub struct DirectoryFiles {
    tables: [(String, Bytes); 4],
    /// SHA-256 over the table files (key, length and content of each).
    pub hash: String,
    /// The table files read.
    pub sources: Vec<ObjectMeta>,
}

impl DirectoryFiles {
    /// Reads the four tables under `store` (one CSV or Parquet file each).
    pub async fn fetch(store: &Store) -> Result<DirectoryFiles, DirectoryError> {
        let listing = match store.list("").await {
            Err(StorageError::NotFound { location }) => return Err(DirectoryError::MissingLocation { location }),
            listed => listed?,
        };
        let mut raw = Vec::new();
        let mut sources = Vec::new();
        let mut hasher = Sha256::new();
        for table in TABLES {
            let Some(meta) = find_table(&listing, table)? else {
                return Err(DirectoryError::MissingTable { location: store.describe(""), table });
            };
            let meta = meta.clone();
            let data = store.get(&meta.key).await?;
            hasher.update(meta.key.as_bytes());
            hasher.update((data.len() as u64).to_le_bytes());
            hasher.update(&data);
            raw.push((meta.key.clone(), data));
            sources.push(meta);
        }
        let tables = raw.try_into().expect("one file per table");
        Ok(DirectoryFiles { tables, hash: hex::encode(hasher.finalize()), sources })
    }

    /// Parses and validates the tables.
    pub fn parse(self) -> Result<Directory, DirectoryError> {
        let [entities, accounts, contracts, deals] = self.tables;
        let mut dir = parse_tables(entities, accounts, contracts, deals)?;
        dir.hash = self.hash;
        dir.sources = self.sources;
        Ok(dir)
    }
}

/// The one file of `table` (`table.csv` or `table.parquet`) in a listing,
/// if there is one; both at once is a problem.
pub(super) fn find_table<'a>(listing: &'a [ObjectMeta], table: &str) -> Result<Option<&'a ObjectMeta>, DirectoryError> {
    let mut found = listing.iter().filter(|o| {
        o.key.rsplit_once('.').is_some_and(|(stem, ext)| stem == table && matches!(ext, "csv" | "parquet"))
    });
    match (found.next(), found.next()) {
        (one, None) => Ok(one),
        (Some(_), Some(_)) | (None, Some(_)) => Err(DirectoryError::Invalid(vec![Problem {
            table: table.to_owned(),
            row: None,
            column: None,
            value: None,
            message: "both a CSV and a Parquet file exist; keep one".to_owned(),
        }])),
    }
}

const TABLES: [&str; 4] = ["entities", "storage_accounts", "contracts", "deals"];
