//! A snapshot as one Parquet object of usage records (spec 1.2):
//! `timestamp` (UTC, milliseconds, all rows the same), `storage_account_id`,
//! `bucket`, `bytes` (UInt64), and `unfinished_upload_bytes` (UInt64, null
//! where the source does not report it; never billed).
//!
//! It is written create-only under
//! `<prefix>/dt=YYYY-MM-DD/snapshot-YYYY-MM-DDTHH-MM-SSZ.parquet`, so a
//! reader never sees half a snapshot and two collections in the same second
//! do not overwrite each other: the second is written as `…Z-2.parquet`
//! (then `-3`, …). Their records share account, bucket and timestamp, so
//! billing keeps one of them (spec 2.1) and reports a conflict if they differ.
//!
//! [`previous_buckets`] reads back the newest earlier snapshot (of the same
//! or the previous day), so that a bucket gone since it is written once
//! more, with 0 bytes: billing fills a missing day from the last value
//! seen (spec 2.3), and a deleted bucket would otherwise be billed at its
//! last size until the end of the month.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use polars::prelude::*;

use super::{CollectError, Row};
use crate::storage::Store;

/// Collections of one second tried before giving up.
const MAX_SAME_SECOND: u32 = 100;

/// The key of the `n`th snapshot (from 1) taken at `timestamp`.
pub fn snapshot_key(prefix: &str, timestamp: DateTime<Utc>, n: u32) -> String {
    let day = timestamp.format("%Y-%m-%d");
    let time = timestamp.format("%Y-%m-%dT%H-%M-%SZ");
    match n {
        0 | 1 => format!("{prefix}/dt={day}/snapshot-{time}.parquet"),
        n => format!("{prefix}/dt={day}/snapshot-{time}-{n}.parquet"),
    }
}

/// The snapshot's Parquet bytes.
pub(super) fn encode(rows: &[Row], timestamp: DateTime<Utc>) -> PolarsResult<Vec<u8>> {
    let ms = timestamp.timestamp_millis();
    let ts = Int64Chunked::from_vec("timestamp".into(), vec![ms; rows.len()])
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series();
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            ts.into(),
            Column::new("storage_account_id".into(), rows.iter().map(|r| r.account.as_str()).collect::<Vec<_>>()),
            Column::new("bucket".into(), rows.iter().map(|r| r.bucket.as_str()).collect::<Vec<_>>()),
            Column::new("bytes".into(), rows.iter().map(|r| r.bytes).collect::<Vec<u64>>()),
            Column::new(
                "unfinished_upload_bytes".into(),
                rows.iter().map(|r| r.unfinished_bytes).collect::<Vec<Option<u64>>>(),
            ),
        ],
    )?;
    crate::formats::write_parquet(&mut df)
}

/// Writes the snapshot create-only; returns its key.
pub(super) async fn write(
    store: &Store,
    prefix: &str,
    timestamp: DateTime<Utc>,
    data: Vec<u8>,
) -> Result<String, CollectError> {
    let data = Bytes::from(data);
    for n in 1..=MAX_SAME_SECOND {
        let key = snapshot_key(prefix, timestamp, n);
        if store.put_if_absent(&key, data.clone()).await? {
            tracing::info!(snapshot = %store.describe(&key), "wrote the snapshot");
            return Ok(key);
        }
    }
    Err(CollectError::Setting {
        kind: "snapshot",
        reason: format!("{MAX_SAME_SECOND} snapshots of {timestamp} exist already under {prefix}"),
    })
}

/// The (account, bucket) pairs with bytes of the newest snapshot taken
/// before `timestamp`, looked for in its day's folder and the day before
/// (none if there is none there): what the next snapshot must still account for.
pub(super) async fn previous_buckets(
    store: &Store,
    prefix: &str,
    timestamp: DateTime<Utc>,
) -> Result<Vec<(String, String)>, CollectError> {
    let current = snapshot_key(prefix, timestamp, 1);
    let mut newest = None;
    for day in [timestamp - chrono::Duration::days(1), timestamp] {
        let folder = format!("{prefix}/dt={}/", day.format("%Y-%m-%d"));
        newest = store
            .list_or_empty(&folder)
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| k.ends_with(".parquet") && k.as_str() < current.as_str())
            .max()
            .or(newest);
    }
    let Some(key) = newest else { return Ok(Vec::new()) };
    let unreadable = |e: PolarsError| CollectError::Malformed {
        url: store.describe(&key),
        reason: format!("the previous snapshot cannot be read: {e}"),
    };
    let df = crate::formats::read_parquet(store.get(&key).await?).map_err(unreadable)?;
    let column = |name: &str| df.column(name).and_then(|c| c.str().cloned()).map_err(unreadable);
    let (accounts, buckets) = (column("storage_account_id")?, column("bucket")?);
    let bytes = df.column("bytes").and_then(|c| c.u64().cloned()).map_err(unreadable)?;
    // A bucket already written with 0 bytes has nothing left to stop.
    Ok(accounts
        .iter()
        .zip(buckets.iter())
        .zip(bytes.iter())
        .filter(|(_, b)| b.is_some_and(|b| b > 0))
        .filter_map(|((a, b), _)| Some((a?.to_owned(), b?.to_owned())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_in_the_collection_day_folder_and_numbered_within_a_second() {
        let t: DateTime<Utc> = "2026-11-30T05:00:00Z".parse().unwrap();
        assert_eq!(snapshot_key("collected", t, 1), "collected/dt=2026-11-30/snapshot-2026-11-30T05-00-00Z.parquet");
        assert_eq!(snapshot_key("a/b", t, 2), "a/b/dt=2026-11-30/snapshot-2026-11-30T05-00-00Z-2.parquet");
    }
}
