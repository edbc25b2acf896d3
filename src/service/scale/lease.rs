//! Partition leases in a JetStream key-value bucket: taken with `create` (fails while
//! another worker holds the key), renewed with `update` at the expected revision, expired by
//! the bucket's `max_age` (the TTL) when their holder stops renewing, deleted on release.
//!
//! A holder trusts its lease until `sent + TTL - TTL/5`, where `sent` is when its last
//! successful renewal was sent: the server cannot expire the key before `sent + TTL`, so the
//! holder stops writing before anyone else can take the partition.

use super::ScaleError;
use async_nats::jetstream::kv;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease key of partition `p`: `p.<p>`.
pub fn lease_key(p: usize) -> String {
    format!("p.{p}")
}

/// The heartbeat key of worker `id`: `w.<id>`.
pub fn heartbeat_key(id: &str) -> String {
    format!("w.{id}")
}

/// Until when a lease may be trusted, shared by its renewer and its partition's task.
#[derive(Clone, Debug)]
pub struct Deadline(Arc<Mutex<Instant>>);

impl Deadline {
    fn new(until: Instant) -> Self {
        Deadline(Arc::new(Mutex::new(until)))
    }

    fn set(&self, until: Instant) {
        if let Ok(mut d) = self.0.lock() {
            *d = until;
        }
    }

    /// Ends the lease now (it is lost or released).
    pub fn revoke(&self) {
        self.set(Instant::now());
    }

    /// Whether the lease may still be trusted.
    pub fn valid(&self) -> bool {
        self.0.lock().map(|d| Instant::now() < *d).unwrap_or(false)
    }
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    /// The partition.
    pub partition: usize,
    revision: u64,
    deadline: Deadline,
    ttl: Duration,
}

fn trusted_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / 5
}

impl Lease {
    /// Takes partition `p`'s lease for `owner`; `None` while someone else holds it.
    ///
    /// # Errors
    /// [`ScaleError::Nats`] if the bucket cannot be written.
    pub async fn acquire(
        kv: &kv::Store,
        p: usize,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, ScaleError> {
        let sent = Instant::now();
        match kv
            .create(lease_key(p), Bytes::copy_from_slice(owner.as_bytes()))
            .await
        {
            Ok(revision) => Ok(Some(Lease {
                partition: p,
                revision,
                deadline: Deadline::new(trusted_until(sent, ttl)),
                ttl,
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(ScaleError::nats("take a lease", e)),
        }
    }

    /// Renews the lease; `false` (and the deadline revoked) if it was lost: the key expired
    /// or another worker holds it.
    pub async fn renew(&mut self, kv: &kv::Store, owner: &str) -> bool {
        if !self.deadline.valid() {
            self.deadline.revoke();
            return false;
        }
        let sent = Instant::now();
        let r = kv
            .update(
                lease_key(self.partition),
                Bytes::copy_from_slice(owner.as_bytes()),
                self.revision,
            )
            .await;
        match r {
            Ok(rev) => {
                self.revision = rev;
                self.deadline.set(trusted_until(sent, self.ttl));
                true
            }
            Err(e) => {
                tracing::warn!("partition {}: lease not renewed: {e}", self.partition);
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    self.deadline.revoke();
                    return false;
                }
                // A timeout: the lease holds until its deadline; the next renewal may work.
                self.deadline.valid()
            }
        }
    }

    /// The lease's deadline, for its partition's task.
    pub fn deadline(&self) -> Deadline {
        self.deadline.clone()
    }

    /// Gives the lease up (deletes the key at its revision, so a lease taken by another
    /// worker meanwhile stays).
    pub async fn release(self, kv: &kv::Store) {
        self.deadline.revoke();
        if let Err(e) = kv
            .delete_expect_revision(lease_key(self.partition), Some(self.revision))
            .await
        {
            tracing::debug!("partition {}: release: {e}", self.partition);
        }
    }
}

/// The partitions worker `id` should own among the `live` workers (sorted here): partition
/// `p` goes to the `p mod n`-th, so each owns `P/n` rounded up or down.
///
/// # Example
/// ```
/// use tbptt::service::scale::lease::assignment;
/// let live = vec!["b".to_string(), "a".to_string()];
/// assert_eq!(assignment(&live, "a", 5), vec![0, 2, 4]);
/// assert_eq!(assignment(&live, "b", 5), vec![1, 3]);
/// assert!(assignment(&live, "c", 5).is_empty());
/// ```
pub fn assignment(live: &[String], id: &str, partitions: usize) -> Vec<usize> {
    let mut live: Vec<&str> = live.iter().map(String::as_str).collect();
    live.sort_unstable();
    live.dedup();
    let Some(me) = live.iter().position(|w| *w == id) else {
        return Vec::new();
    };
    (0..partitions).filter(|p| p % live.len() == me).collect()
}
