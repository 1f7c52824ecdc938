//! Whose a bucket is: the storage account of each bucket of a snapshot.
//!
//! A bucket with owner keys (Garage) belongs to the account of its owner
//! keys: the `access_keys` table's account for a key it lists, else the
//! key's name. A bucket without (Prometheus, s3-list) belongs to the
//! `buckets` table's account. When that cannot be told (no owner key,
//! owners of different accounts, a bucket missing from the table, a key
//! without a name) the bucket is still written, under
//! `unattributed:<bucket>`: billing reports it as an
//! `unknown_storage_account` with its byte-days, and the collect summary
//! names it with the reason. Nothing is dropped.

use std::collections::BTreeSet;

use super::{BucketUsage, Row};
use crate::directory::Mappings;

/// Prefix of the account id a bucket is written under when its account
/// cannot be told; the bucket's name follows.
pub const UNATTRIBUTED_PREFIX: &str = "unattributed:";

/// A bucket written under an unattributed id, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unattributed {
    /// Bucket.
    pub bucket: String,
    /// Why its account could not be told.
    pub reason: String,
    /// Its bytes.
    pub bytes: u64,
}

/// The snapshot's rows, sorted by account and bucket, and the buckets
/// written under an unattributed id.
pub fn attribute(buckets: Vec<BucketUsage>, m: &Mappings) -> (Vec<Row>, Vec<Unattributed>) {
    let mut rows = Vec::with_capacity(buckets.len());
    let mut unattributed = Vec::new();
    for b in buckets {
        let account = match &b.owners {
            Some(keys) => owner_account(keys, m),
            None => m.buckets.get(&b.bucket).cloned().ok_or_else(|| {
                if m.buckets.is_empty() {
                    "the directory has no buckets table".to_owned()
                } else {
                    "not in the directory's buckets table".to_owned()
                }
            }),
        };
        let account = account.unwrap_or_else(|reason| {
            unattributed.push(Unattributed { bucket: b.bucket.clone(), reason, bytes: b.bytes });
            format!("{UNATTRIBUTED_PREFIX}{}", b.bucket)
        });
        rows.push(Row { account, bucket: b.bucket, bytes: b.bytes, unfinished_bytes: b.unfinished_bytes });
    }
    rows.sort_unstable();
    unattributed.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    (rows, unattributed)
}

/// The one account of a bucket's owner keys, or why there is none.
fn owner_account(keys: &[super::OwnerKey], m: &Mappings) -> Result<String, String> {
    let mut accounts = BTreeSet::new();
    for k in keys {
        match m.access_keys.get(&k.access_key_id) {
            Some(a) => accounts.insert(a.as_str()),
            None if k.name.trim().is_empty() => {
                return Err(format!("owner key {} has no name and is not in the access_keys table", k.access_key_id));
            }
            None => accounts.insert(k.name.trim()),
        };
    }
    let mut it = accounts.iter();
    match (it.next(), it.next()) {
        (None, _) => Err("no access key has the owner permission".to_owned()),
        (Some(a), None) => Ok((*a).to_owned()),
        (Some(_), Some(_)) => Err(format!(
            "owner keys of different storage accounts: {}",
            accounts.iter().copied().collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::OwnerKey;
    use super::*;

    fn key(id: &str, name: &str) -> OwnerKey {
        OwnerKey { access_key_id: id.to_owned(), name: name.to_owned() }
    }

    fn bucket(name: &str, bytes: u64, owners: Option<Vec<OwnerKey>>) -> BucketUsage {
        BucketUsage { bucket: name.to_owned(), bytes, unfinished_bytes: None, owners }
    }

    #[test]
    fn owner_keys_name_the_account_unless_mapped_and_disagreeing_owners_are_unattributed() {
        let mut m = Mappings::default();
        m.access_keys.insert("GK2".into(), "sa-1".into());
        let (rows, un) = attribute(
            vec![
                bucket("a", 10, Some(vec![key("GK1", "sa-1"), key("GK2", "whatever")])),
                bucket("b", 20, Some(vec![key("GK1", "sa-1"), key("GK3", "sa-2")])),
                bucket("c", 30, Some(vec![])),
                bucket("d", 40, Some(vec![key("GK4", " ")])),
            ],
            &m,
        );
        let got: Vec<_> = rows.iter().map(|r| (r.account.as_str(), r.bucket.as_str(), r.bytes)).collect();
        assert_eq!(
            got,
            [("sa-1", "a", 10), ("unattributed:b", "b", 20), ("unattributed:c", "c", 30), ("unattributed:d", "d", 40)]
        );
        let reasons: Vec<_> = un.iter().map(|u| (u.bucket.as_str(), u.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("b", "owner keys of different storage accounts: sa-1, sa-2"),
                ("c", "no access key has the owner permission"),
                ("d", "owner key GK4 has no name and is not in the access_keys table"),
            ]
        );
    }

    #[test]
    fn buckets_without_owners_are_mapped_by_the_buckets_table() {
        let (_, un) = attribute(vec![bucket("x", 1, None)], &Mappings::default());
        assert_eq!(un[0].reason, "the directory has no buckets table");
        let mut m = Mappings::default();
        m.buckets.insert("my bucket".into(), "sa 9".into());
        let (rows, un) = attribute(vec![bucket("my bucket", 5, None), bucket("other", 6, None)], &m);
        assert_eq!((rows[0].account.as_str(), rows[0].bytes), ("sa 9", 5));
        assert_eq!(
            (rows[1].account.as_str(), un[0].reason.as_str()),
            ("unattributed:other", "not in the directory's buckets table")
        );
    }
}
