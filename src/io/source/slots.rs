//! Connection slots of a TCP or Unix listener: the global and per-peer limits, and closing
//! the longest-idle connection to make room for a new one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The limits of a listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most connections open at once.
    pub(crate) max: usize,
    /// Most connections open at once from one IP address (TCP only).
    pub(crate) per_peer: usize,
    /// How long a connection must have been idle to be closed for a new one.
    pub(crate) evict_idle: Duration,
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max` connections are open and none has been idle long enough.
    Full,
    /// The peer has `per_peer` connections open and none has been idle long enough.
    PerPeer,
}

/// Why a connection was closed through its [`Slot`]: by a new connection that needed room.
pub(crate) const EVICTED: u8 = 1;
/// Why a connection was closed through its [`Slot`]: by the consumer ([`Slots::close`]).
pub(crate) const CLOSED: u8 = 2;

#[derive(Debug)]
struct Entry {
    peer: Option<IpAddr>,
    last: Arc<AtomicU64>,
    why: Arc<AtomicU8>,
    cancel: CancellationToken,
}

impl Entry {
    fn close(&self, why: u8) {
        self.why.store(why, Ordering::Relaxed);
        self.cancel.cancel();
    }
}

/// The open connections of a listener; shared with its connection tasks.
#[derive(Debug)]
pub(crate) struct Slots {
    limits: Limits,
    started: Instant,
    open: Mutex<HashMap<u64, Entry>>,
}

/// An admitted connection's slot: freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    slots: Arc<Slots>,
    last: Arc<AtomicU64>,
    why: Arc<AtomicU8>,
    /// Fires when the connection is to be closed (evicted, or closed by the consumer).
    pub(crate) cancel: CancellationToken,
}

impl Slot {
    /// Why the connection was cancelled: [`EVICTED`] or [`CLOSED`] (0 if it was not).
    pub(crate) fn why(&self) -> u8 {
        self.why.load(Ordering::Relaxed)
    }

    /// Marks the connection active now.
    pub(crate) fn touch(&self) {
        self.last.store(self.slots.now_ms(), Ordering::Relaxed);
    }

    /// How long since the connection was last marked active.
    pub(crate) fn idle(&self) -> Duration {
        let last = self.last.load(Ordering::Relaxed);
        Duration::from_millis(self.slots.now_ms().saturating_sub(last))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.slots.open.lock() {
            open.remove(&self.id);
        }
    }
}

impl Slots {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            started: Instant::now(),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admits connection `id` from `peer`, closing the longest-idle connection of the full
    /// scope (the peer's own when it is at its limit, else any) if it has been idle for at
    /// least `evict_idle`. Returns the slot and whether a connection was closed for it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        id: u64,
        peer: Option<IpAddr>,
    ) -> Result<(Slot, bool), Refusal> {
        let now = self.now_ms();
        let min_idle = u64::try_from(self.limits.evict_idle.as_millis()).unwrap_or(u64::MAX);
        let Ok(mut open) = self.open.lock() else {
            return Err(Refusal::Full);
        };
        let mut evicted = false;
        let mut make_room = |open: &mut HashMap<u64, Entry>,
                             scope: Option<IpAddr>,
                             refusal: Refusal|
         -> Result<(), Refusal> {
            let oldest = open
                .iter()
                .filter(|(_, e)| scope.is_none() || e.peer == scope)
                .map(|(id, e)| (*id, e.last.load(Ordering::Relaxed)))
                .min_by_key(|(_, last)| *last);
            match oldest {
                Some((victim, last)) if now.saturating_sub(last) >= min_idle => {
                    if let Some(e) = open.remove(&victim) {
                        e.close(EVICTED);
                    }
                    evicted = true;
                    Ok(())
                }
                _ => Err(refusal),
            }
        };
        if let Some(ip) = peer {
            let mine = open.values().filter(|e| e.peer == Some(ip)).count();
            if mine >= self.limits.per_peer {
                make_room(&mut open, Some(ip), Refusal::PerPeer)?;
            }
        }
        if open.len() >= self.limits.max {
            make_room(&mut open, None, Refusal::Full)?;
        }
        let last = Arc::new(AtomicU64::new(now));
        let why = Arc::new(AtomicU8::new(0));
        let cancel = CancellationToken::new();
        open.insert(
            id,
            Entry {
                peer,
                last: Arc::clone(&last),
                why: Arc::clone(&why),
                cancel: cancel.clone(),
            },
        );
        drop(open);
        Ok((
            Slot {
                id,
                slots: Arc::clone(self),
                last,
                why,
                cancel,
            },
            evicted,
        ))
    }

    /// Closes connection `id`, if open; whether it was.
    pub(crate) fn close(&self, id: u64) -> bool {
        let entry = self.open.lock().ok().and_then(|mut o| o.remove(&id));
        entry.map(|e| e.close(CLOSED)).is_some()
    }
}

/// Whether the `n`-th occurrence (counted from 1) of a logged event is logged: the first 10,
/// then every 1000th, so that a flood of refused or closed connections writes a few lines.
pub(crate) fn log_this(n: u64) -> bool {
    n <= 10 || n.is_multiple_of(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(evict_ms: u64) -> Limits {
        Limits {
            max: 3,
            per_peer: 2,
            evict_idle: Duration::from_millis(evict_ms),
        }
    }

    #[test]
    fn limits_refuse_or_evict_the_longest_idle() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let slots = Slots::new(limits(3_600_000));
        let (s1, _) = slots.admit(1, Some(a)).unwrap();
        let (_s2, _) = slots.admit(2, Some(a)).unwrap();
        assert_eq!(slots.admit(3, Some(a)).unwrap_err(), Refusal::PerPeer);
        let (_s3, _) = slots.admit(3, Some(b)).unwrap();
        assert_eq!(slots.admit(4, Some(b)).unwrap_err(), Refusal::Full);
        drop(s1);
        assert!(slots.admit(4, Some(b)).is_ok());

        // With no minimum idle time, the longest-idle connection of the scope goes.
        let slots = Slots::new(limits(0));
        let (s1, _) = slots.admit(1, Some(a)).unwrap();
        let (s2, _) = slots.admit(2, Some(a)).unwrap();
        s1.last.store(0, Ordering::Relaxed);
        s2.last.store(5, Ordering::Relaxed);
        let (_s3, evicted) = slots.admit(3, Some(a)).unwrap();
        assert!(evicted && s1.cancel.is_cancelled() && !s2.cancel.is_cancelled());
        assert_eq!(s1.why(), EVICTED);
        assert!(slots.close(2) && s2.cancel.is_cancelled() && !slots.close(2));
        assert_eq!(s2.why(), CLOSED);
    }

    #[test]
    fn logs_the_first_ten_then_every_thousandth() {
        let logged: Vec<u64> = (1..=3000).filter(|n| log_this(*n)).collect();
        assert_eq!(logged.len(), 13);
        assert_eq!(logged[10..], [1000, 2000, 3000]);
    }
}
