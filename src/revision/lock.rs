//! One run per month at a time: a lock made of create-only objects.
//!
//! A lock is `billing_month=M/_lock/N.json` for a generation N, created with
//! create-only semantics (`If-None-Match: *` on S3, `O_EXCL` locally), so
//! exactly one run wins each generation. The newest generation is the lock:
//! if it is live, the month is held; if it is stale (past its expiry, or left
//! by a process of this host that no longer exists) the next run creates
//! generation N+1, which takes the lock over. A run deletes only its own
//! generation, and stale generations it has superseded.
//!
//! Expiry is always the wall clock (`Utc::now()`), never the run's
//! `CAPBILL_NOW`, which only decides the month's status. While a run is
//! going, [`MonthLock::start_renewal`] rewrites its own generation with a
//! later expiry every third of the TTL, so the TTL can be short; a renewal
//! never writes a generation that is not the newest or not its own
//! ([`MonthLock::renew`]). [`MonthLock::check`] tells a run before it
//! publishes whether it still holds the lock. This module owns the lock
//! objects only: it must not decide what a run publishes.

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
        .holder.owner, .holder.host, .holder.pid, .holder.command,
        .holder.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"), .holder.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
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
    /// This run's lock was taken over (or removed) while it was running.
    #[error(
        "billing month {month}: this run lost its lock (generation {generation}) to {holder}; it stopped and published nothing more. \
         Run again once that run has finished"
    )]
    Lost {
        /// The month.
        month: BillingMonth,
        /// This run's generation.
        generation: u64,
        /// Who holds the month now, in words.
        holder: String,
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
#[derive(Debug, Clone)]
pub struct MonthLock {
    store: Store,
    month: BillingMonth,
    generation: u64,
    key: String,
    body: LockBody,
    ttl: chrono::Duration,
}

/// The renewal task of a held lock; stops when dropped.
#[derive(Debug)]
pub struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    /// Takes the month's lock for `ttl` by the wall clock, or says who holds it.
    pub async fn acquire(
        store: &Store,
        month: BillingMonth,
        command: &str,
        ttl: chrono::Duration,
    ) -> Result<MonthLock, LockError> {
        Self::acquire_at(store, month, command, Utc::now(), ttl).await
    }

    /// [`MonthLock::acquire`] at the wall-clock time `now` (tests move it).
    async fn acquire_at(
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
            owner,
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
                return Ok(MonthLock { store: store.clone(), month, generation: next, key, body, ttl });
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

    /// The newest generation and its body, read now.
    async fn newest(&self) -> Result<Option<(u64, LockBody)>, LockError> {
        let storage = |source| LockError::Storage { month: self.month, source };
        let prefix = lock_prefix(self.month);
        let Some(n) = Self::generations(&self.store, &prefix).await.map_err(storage)?.last().copied() else {
            return Ok(None);
        };
        let key = format!("{prefix}/{n}.json");
        match self.store.get_opt(&key).await.map_err(storage)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(|body| Some((n, body)))
                .map_err(|source| LockError::Corrupt { location: self.store.describe(&key), source }),
        }
    }

    /// Whether this run still holds the month: its generation is the newest
    /// and carries its owner. [`LockError::Lost`] names who holds it if not.
    pub async fn check(&self) -> Result<(), LockError> {
        let lost = |holder: String| LockError::Lost { month: self.month, generation: self.generation, holder };
        match self.newest().await? {
            Some((n, body)) if n == self.generation && body.owner == self.body.owner => Ok(()),
            Some((n, body)) => Err(lost(format!(
                "{} on host {} (pid {}, {}, generation {n}) until {}",
                body.owner, body.host, body.pid, body.command, body.expires_at
            ))),
            None => Err(lost("nobody: the lock object was removed".to_owned())),
        }
    }

    /// Rewrites this run's generation with an expiry one TTL from now, only
    /// if it is still the newest and ours (see [`Store::put_if_match`] for
    /// the remaining race window on local folders).
    pub async fn renew(&mut self) -> Result<(), LockError> {
        self.check().await?;
        let storage = |source| LockError::Storage { month: self.month, source };
        // The entity tag of what `check` read: a write since then fails.
        let etag = match self.store.etag(&self.key).await {
            Ok(e) => e,
            Err(StorageError::NotFound { .. }) => return self.check().await,
            Err(e) => return Err(storage(e)),
        };
        let mut body = self.body.clone();
        body.expires_at = Utc::now() + self.ttl;
        let data = Bytes::from(serde_json::to_vec_pretty(&body).expect("lock serialises"));
        if self.store.put_if_match(&self.key, data, &etag).await.map_err(storage)? {
            tracing::debug!(lock = %self.key, expires_at = %body.expires_at, "lock renewed");
            self.body = body;
            Ok(())
        } else {
            // Changed under us: if it is still ours, the next round renews it.
            self.check().await
        }
    }

    /// Renews the lock every third of its TTL until the returned handle is
    /// dropped. A renewal that finds the lock lost stops; the run's own
    /// [`MonthLock::check`] before publishing then stops the run.
    pub fn start_renewal(&self) -> Renewal {
        let mut lock = self.clone();
        let every = (self.ttl / 3).to_std().unwrap_or(std::time::Duration::from_secs(1));
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match lock.renew().await {
                    Ok(()) => {}
                    Err(e @ LockError::Lost { .. }) => {
                        tracing::warn!(error = %e, "lock renewal stopped");
                        return;
                    }
                    Err(e) => tracing::warn!(error = ?e, "cannot renew the lock; trying again"),
                }
            }
        }))
    }

    /// Releases the lock if this run still holds it (never someone else's).
    pub async fn release(self) -> Result<(), StorageError> {
        match self.store.get_opt(&self.key).await? {
            Some(b) if serde_json::from_slice::<LockBody>(&b).is_ok_and(|l| l.owner == self.body.owner) => {
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
        let a = MonthLock::acquire_at(&store, month(), "run", now, ttl).await.unwrap();
        let held = MonthLock::acquire_at(&store, month(), "run", now, ttl).await.unwrap_err();
        assert!(matches!(held, LockError::Held { .. }), "{held}");
        assert!(held.to_string().contains(&host_name()), "{held}");
        // Two hours later the lock has expired: taken over as generation 2.
        let later = now + chrono::Duration::hours(2);
        let b = MonthLock::acquire_at(&store, month(), "run", later, ttl).await.unwrap();
        assert!(b.key.ends_with("_lock/2.json"), "{}", b.key);
        // The old holder finishing must not delete the new holder's lock.
        a.release().await.unwrap();
        assert!(matches!(MonthLock::acquire_at(&store, month(), "run", later, ttl).await, Err(LockError::Held { .. })));
        b.release().await.unwrap();
        MonthLock::acquire_at(&store, month(), "run", later, ttl).await.unwrap();
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
        let l = MonthLock::acquire_at(&store, month(), "run", now, chrono::Duration::hours(1)).await.unwrap();
        assert!(l.key.ends_with("_lock/8.json"));
        assert!(store.get_opt(&format!("{}/7.json", lock_prefix(month()))).await.unwrap().is_none());
    }

    fn local() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        (dir, store)
    }

    async fn body_of(store: &Store, key: &str) -> LockBody {
        serde_json::from_slice(&store.get(key).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn expiry_is_the_wall_clock() {
        let (_dir, store) = local();
        let before = Utc::now();
        let l = MonthLock::acquire(&store, month(), "run", chrono::Duration::minutes(10)).await.unwrap();
        let after = Utc::now();
        let body = body_of(&store, &l.key).await;
        assert!(before <= body.acquired_at && body.acquired_at <= after, "{body:?}");
        assert_eq!(body.expires_at - body.acquired_at, chrono::Duration::minutes(10));
        assert!(matches!(
            MonthLock::acquire(&store, month(), "run", chrono::Duration::minutes(10)).await,
            Err(LockError::Held { .. })
        ));
    }

    #[tokio::test]
    async fn renewal_extends_the_expiry_of_its_own_generation() {
        let (_dir, store) = local();
        let ttl = chrono::Duration::milliseconds(600);
        let l = MonthLock::acquire(&store, month(), "run", ttl).await.unwrap();
        let first = body_of(&store, &l.key).await.expires_at;
        let mut direct = l.clone();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        direct.renew().await.unwrap();
        let renewed = body_of(&store, &l.key).await;
        assert!(renewed.expires_at > first, "{renewed:?}");
        assert_eq!(renewed.owner, l.body.owner);
        // The task renews every TTL/3: after two TTLs the lock still lives.
        let task = l.start_renewal();
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let later = body_of(&store, &l.key).await;
        assert!(later.expires_at > Utc::now(), "still live: {later:?}");
        assert!(later.expires_at > renewed.expires_at + chrono::Duration::milliseconds(500));
        drop(task);
        l.check().await.unwrap();
    }

    #[tokio::test]
    async fn a_lock_taken_over_is_lost_and_never_renewed_back() {
        let (_dir, store) = local();
        let now = Utc::now();
        let ttl = chrono::Duration::minutes(1);
        let mut a = MonthLock::acquire_at(&store, month(), "run", now, ttl).await.unwrap();
        a.check().await.unwrap();
        // Another run takes the expired lock over: generation 2.
        let b = MonthLock::acquire_at(&store, month(), "run", now + chrono::Duration::minutes(2), ttl).await.unwrap();
        let lost = a.check().await.unwrap_err();
        match &lost {
            LockError::Lost { generation: 1, holder, .. } => assert!(holder.contains(&b.body.owner), "{holder}"),
            other => panic!("{other:?}"),
        }
        // The superseded generation 1 was deleted; renewing must not recreate it.
        assert!(matches!(a.renew().await, Err(LockError::Lost { .. })));
        assert!(store.get_opt(&a.key).await.unwrap().is_none(), "generation 1 stays gone");
        // Released by its holder, the month is free: nothing of `a` came back.
        b.release().await.unwrap();
        assert!(store.list(&lock_prefix(month())).await.unwrap().is_empty());
        assert!(matches!(a.check().await, Err(LockError::Lost { .. })));
    }

    #[tokio::test]
    async fn renewal_does_not_rewrite_an_object_changed_since_it_was_read() {
        let (_dir, store) = local();
        let l = MonthLock::acquire(&store, month(), "run", chrono::Duration::minutes(1)).await.unwrap();
        let etag = store.etag(&l.key).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.put(&l.key, Bytes::from_static(b"{}")).await.unwrap();
        assert!(!store.put_if_match(&l.key, Bytes::from_static(b"x"), &etag).await.unwrap());
        assert_eq!(&store.get(&l.key).await.unwrap()[..], b"{}");
        store.delete(&l.key).await.unwrap();
        assert!(!store.put_if_match(&l.key, Bytes::from_static(b"x"), &etag).await.unwrap());
        assert!(store.get_opt(&l.key).await.unwrap().is_none(), "a deleted lock is not recreated");
    }
}
