//! One run per month at a time: a lock made of create-only objects.
//!
//! A lock is `billing_month=M/_lock/N.json` for a generation N, created with
//! create-only semantics (`If-None-Match: *` on S3, `O_EXCL` locally), so
//! exactly one run wins each generation. The newest generation is the lock:
//! if it is live, the month is held; if it is stale (past its expiry, or left
//! by a process of this host that no longer exists) the next run creates
//! generation N+1, which takes the lock over. A run deletes only its own
//! generation, and stale generations it has superseded.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::manifest::month_prefix;
use crate::model::BillingMonth;
use crate::storage::{StorageError, Store};

/// Why the lock was not taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another run holds the month.
    #[error(
        "billing month {month} is locked by {} on host {} (pid {}, {}) since {} until {}; wait for it to finish, or for the lock to expire",
        .holder.owner, .holder.host, .holder.pid, .holder.command, .holder.acquired_at, .holder.expires_at
    )]
    Held {
        /// The month.
        month: BillingMonth,
        /// Who holds it.
        holder: Box<LockBody>,
    },
    /// Storage failed while locking.
    #[error("cannot lock billing month {month}")]
    Storage {
        /// The month.
        month: BillingMonth,
        /// Cause.
        #[source]
        source: StorageError,
    },
    /// A lock object is not readable.
    #[error("lock object {location} is not valid JSON; remove it if no run is active")]
    Corrupt {
        /// Where.
        location: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The content of a lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBody {
    /// Unique id of the holding run.
    pub owner: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// What the holder is doing (`run`, `reprocess`).
    pub command: String,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// When it stops counting.
    pub expires_at: DateTime<Utc>,
}

impl LockBody {
    fn is_stale(&self, now: DateTime<Utc>, this_host: &str) -> bool {
        self.expires_at <= now || (self.host == this_host && !process_alive(self.pid))
    }
}

/// A held month lock; release it with [`MonthLock::release`].
#[derive(Debug)]
pub struct MonthLock {
    store: Store,
    key: String,
    owner: String,
}

fn lock_prefix(month: BillingMonth) -> String {
    format!("{}/_lock", month_prefix(month))
}

/// This machine's host name.
pub fn host_name() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Whether a process of this host may be alive: only a process that is
/// known to be gone (on Unix, signal 0 answers "no such process") makes a
/// lock stale; a process of another user answers "unknown" and counts as
/// alive. Works wherever `process_alive` does (Unix and Windows), not only
/// where `/proc` is mounted.
fn process_alive(pid: u32) -> bool {
    // Unix pids are positive `i32`s: a larger one names no process.
    if cfg!(unix) && i32::try_from(pid).is_err() {
        return false;
    }
    process_alive::state(process_alive::Pid::from(pid)) != process_alive::State::Dead
}

impl MonthLock {
    /// Takes the month's lock for `ttl`, or says who holds it.
    pub async fn acquire(
        store: &Store,
        month: BillingMonth,
        command: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<MonthLock, LockError> {
        let storage = |source| LockError::Storage { month, source };
        let host = host_name();
        let owner = format!("{}-{}-{}", host, std::process::id(), now.timestamp_micros());
        let body = LockBody {
            owner: owner.clone(),
            host: host.clone(),
            pid: std::process::id(),
            command: command.to_owned(),
            acquired_at: now,
            expires_at: now + ttl,
        };
        let data = Bytes::from(serde_json::to_vec_pretty(&body).expect("lock serialises"));
        let prefix = lock_prefix(month);
        // A few rounds: each lost race means another run just took the lock.
        for _ in 0..5 {
            let generations = Self::generations(store, &prefix).await.map_err(storage)?;
            let newest = generations.last().copied();
            if let Some(n) = newest {
                let key = format!("{prefix}/{n}.json");
                match store.get_opt(&key).await.map_err(storage)? {
                    None => continue, // released meanwhile
                    Some(b) => {
                        let holder: LockBody = serde_json::from_slice(&b)
                            .map_err(|source| LockError::Corrupt { location: store.describe(&key), source })?;
                        if !holder.is_stale(now, &host) {
                            return Err(LockError::Held { month, holder: Box::new(holder) });
                        }
                        tracing::warn!(holder = %holder.owner, host = %holder.host, "taking over a stale lock");
                    }
                }
            }
            let next = newest.map_or(1, |n| n + 1);
            let key = format!("{prefix}/{next}.json");
            if store.put_if_absent(&key, data.clone()).await.map_err(storage)? {
                for old in generations {
                    // Superseded stale generations: their holders are gone.
                    let _ = store.delete(&format!("{prefix}/{old}.json")).await;
                }
                return Ok(MonthLock { store: store.clone(), key, owner });
            }
        }
        let generations = Self::generations(store, &prefix).await.map_err(storage)?;
        let key = format!("{prefix}/{}.json", generations.last().copied().unwrap_or(1));
        let b = store.get(&key).await.map_err(storage)?;
        let holder: LockBody = serde_json::from_slice(&b)
            .map_err(|source| LockError::Corrupt { location: store.describe(&key), source })?;
        Err(LockError::Held { month, holder: Box::new(holder) })
    }

    async fn generations(store: &Store, prefix: &str) -> Result<Vec<u64>, StorageError> {
        let mut g: Vec<u64> = store
            .list(prefix)
            .await?
            .iter()
            .filter_map(|o| o.key.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
            .collect();
        g.sort_unstable();
        Ok(g)
    }

    /// Releases the lock if this run still holds it (never someone else's).
    pub async fn release(self) -> Result<(), StorageError> {
        match self.store.get_opt(&self.key).await? {
            Some(b) if serde_json::from_slice::<LockBody>(&b).is_ok_and(|l| l.owner == self.owner) => {
                self.store.delete(&self.key).await
            }
            _ => {
                tracing::warn!(lock = %self.key, "the lock was taken over while this run held it; not deleting it");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    fn month() -> BillingMonth {
        "2026-10".parse().unwrap()
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        let now = Utc::now();
        let ttl = chrono::Duration::hours(1);
        let a = MonthLock::acquire(&store, month(), "run", now, ttl).await.unwrap();
        let held = MonthLock::acquire(&store, month(), "run", now, ttl).await.unwrap_err();
        assert!(matches!(held, LockError::Held { .. }), "{held}");
        assert!(held.to_string().contains(&host_name()), "{held}");
        // Two hours later the lock has expired: taken over as generation 2.
        let later = now + chrono::Duration::hours(2);
        let b = MonthLock::acquire(&store, month(), "run", later, ttl).await.unwrap();
        assert!(b.key.ends_with("_lock/2.json"), "{}", b.key);
        // The old holder finishing must not delete the new holder's lock.
        a.release().await.unwrap();
        assert!(matches!(MonthLock::acquire(&store, month(), "run", later, ttl).await, Err(LockError::Held { .. })));
        b.release().await.unwrap();
        MonthLock::acquire(&store, month(), "run", later, ttl).await.unwrap();
    }

    #[test]
    fn liveness_sees_this_process_and_not_a_finished_one() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid), "a reaped child is gone");
        assert!(!process_alive(u32::MAX - 1));
    }

    #[tokio::test]
    async fn a_dead_process_of_this_host_leaves_a_stale_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        let now = Utc::now();
        let dead = LockBody {
            owner: "ghost".into(),
            host: host_name(),
            pid: u32::MAX - 1,
            command: "run".into(),
            acquired_at: now,
            expires_at: now + chrono::Duration::hours(1),
        };
        store
            .put(&format!("{}/7.json", lock_prefix(month())), Bytes::from(serde_json::to_vec(&dead).unwrap()))
            .await
            .unwrap();
        let l = MonthLock::acquire(&store, month(), "run", now, chrono::Duration::hours(1)).await.unwrap();
        assert!(l.key.ends_with("_lock/8.json"));
        assert!(store.get_opt(&format!("{}/7.json", lock_prefix(month()))).await.unwrap().is_none());
    }
}
