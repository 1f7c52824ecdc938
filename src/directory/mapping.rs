//! The directory's optional mapping tables that collection attributes
//! buckets with: `access_keys` (`access_key_id`, `storage_account_id`) and
//! `buckets` (`bucket`, `storage_account_id`), each a CSV or Parquet file
//! beside the four billing tables.
//!
//! Billing never reads them (they are not part of a run's directory hash);
//! `capbill collect` does. A missing table is an empty mapping; a present
//! one is validated like any directory table: every problem is reported
//! with its table, row and column, and a key mapped twice is a problem
//! (even to the same account: an export that repeats keys is broken).

use polars::prelude::{PlHashMap as HashMap, PlHashSet as HashSet};

use super::DirectoryError;
use super::fetch::find_table;
use super::table::{Problems, Table};
use crate::storage::Store;

/// Bucket and access-key attribution tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings {
    /// `access_key_id` → `storage_account_id` (`access_keys` table).
    pub access_keys: HashMap<String, String>,
    /// `bucket` → `storage_account_id` (`buckets` table).
    pub buckets: HashMap<String, String>,
    /// The table files read (`access_keys.csv`), for the summary.
    pub tables: Vec<String>,
}

impl Mappings {
    /// Reads whichever of the two tables exist under `store`.
    pub async fn load(store: &Store) -> Result<Mappings, DirectoryError> {
        let listing = store.list("").await?;
        let mut m = Mappings::default();
        for (table, key_column) in [("access_keys", "access_key_id"), ("buckets", "bucket")] {
            let Some(meta) = find_table(&listing, table)? else { continue };
            let data = store.get(&meta.key).await?;
            let map = parse(Table::read((meta.key.clone(), data))?, key_column)?;
            m.tables.push(meta.key.clone());
            match table {
                "access_keys" => m.access_keys = map,
                _ => m.buckets = map,
            }
        }
        Ok(m)
    }
}

/// A two-column mapping table: `key_column` → `storage_account_id`, keys unique.
fn parse(t: Table, key_column: &'static str) -> Result<HashMap<String, String>, DirectoryError> {
    let mut p = Problems::default();
    t.check_columns(&[key_column, "storage_account_id"], &mut p);
    if !p.0.is_empty() {
        return Err(DirectoryError::Invalid(p.0));
    }
    let [key, account] = t.cols([key_column, "storage_account_id"]);
    let mut seen = HashSet::default();
    let mut map = HashMap::default();
    for row in 0..t.height() {
        let k = key.unique_id(row, &mut seen, &mut p);
        let a = account.required(row, &mut p);
        if let (Some(k), Some(a)) = (k, a) {
            map.insert(k.to_owned(), a.to_owned());
        }
    }
    if p.0.is_empty() { Ok(map) } else { Err(DirectoryError::Invalid(p.0)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    async fn load(files: &[(&str, &str)]) -> Result<Mappings, DirectoryError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Mappings::load(&Store::Local(LocalStore::new(dir.path().to_path_buf()))).await
    }

    #[tokio::test]
    async fn absent_tables_are_empty_and_present_ones_map_trimmed_ids() {
        assert_eq!(load(&[]).await.unwrap(), Mappings::default());
        let m = load(&[
            ("access_keys.csv", "access_key_id,storage_account_id\nGK1, sa 1 \n"),
            ("buckets.csv", "bucket,storage_account_id\nphotos,sa-2\n\"my bucket\",sa 3\n"),
        ])
        .await
        .unwrap();
        assert_eq!(m.access_keys.get("GK1").map(String::as_str), Some("sa 1"));
        assert_eq!(m.buckets.get("my bucket").map(String::as_str), Some("sa 3"));
        assert_eq!(m.tables, ["access_keys.csv", "buckets.csv"]);
    }

    #[tokio::test]
    async fn duplicate_keys_empty_accounts_and_missing_columns_name_table_row_and_column() {
        let e = load(&[("buckets.csv", "bucket,storage_account_id\nb,sa\nb,sa\nc,\n")]).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("buckets.csv row 2, column bucket = \"b\""), "{text}");
        assert!(text.contains("buckets.csv row 3, column storage_account_id: required value is empty"), "{text}");
        let e = load(&[("access_keys.csv", "key,storage_account_id\nk,sa\n")]).await.unwrap_err();
        assert!(e.to_string().contains("access_key_id"), "{e}");
    }
}
