//! A cloneable shutdown signal that every long-running loop `select!`s on.
//!
//! Modelled on mini-redis's `src/io/shutdown.rs`, but on a [`tokio::sync::watch`] channel rather
//! than a broadcast, so that a [`Shutdown`] made (or cloned) after the signal fired still sees
//! it. [`channel`] makes a [`ShutdownTrigger`] and a first [`Shutdown`]; clone either freely.
//! Firing the trigger, or dropping every trigger, shuts down every [`Shutdown`] at once.
//!
//! # Example
//! ```
//! use tbptt::io::shutdown;
//!
//! let (trigger, mut shutdown) = shutdown::channel();
//! let other = shutdown.clone();
//! assert!(!shutdown.is_shutdown());
//! trigger.trigger();
//! assert!(other.is_shutdown() && trigger.is_triggered());
//! tokio::runtime::Builder::new_current_thread()
//!     .build()?
//!     .block_on(shutdown.recv()); // returns at once: the signal has fired
//! # Ok::<(), std::io::Error>(())
//! ```

use tokio::sync::watch;

/// Makes a connected pair: the [`ShutdownTrigger`] that fires and a [`Shutdown`] that listens.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (
        ShutdownTrigger { tx },
        Shutdown {
            rx,
            is_shutdown: false,
        },
    )
}

/// Fires the shutdown signal. Cloneable; the signal also fires when the last clone is dropped
/// (as mini-redis's server signals by dropping its broadcast sender).
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    /// Fires the signal. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`trigger`](ShutdownTrigger::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A new listener of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
            is_shutdown: false,
        }
    }
}

/// Listens for the shutdown signal. Clone one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// Set once [`recv`](Shutdown::recv) has seen the signal.
    is_shutdown: bool,
}

impl Shutdown {
    /// Whether the signal has fired (or every trigger was dropped). Does not wait, so plain
    /// threads can poll it too.
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown || *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Waits until the signal fires (or every trigger is dropped); returns at once if it
    /// already has. Cancel-safe, so it can sit in a `select!` loop.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // An error means every trigger is gone: nobody can fire any more, which counts as
        // shutdown.
        let _ = self.rx.wait_for(|fired| *fired).await;
        self.is_shutdown = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_every_clone_including_later_ones() {
        let (trigger, mut a) = channel();
        let mut b = a.clone();
        let waiter = tokio::spawn(async move {
            b.recv().await;
            b.is_shutdown()
        });
        tokio::task::yield_now().await;
        assert!(!a.is_shutdown());
        trigger.trigger();
        a.recv().await;
        assert!(a.is_shutdown());
        assert!(waiter.await.unwrap());
        let late = trigger.subscribe();
        assert!(late.is_shutdown());
        let mut late_clone = a.clone();
        late_clone.recv().await;
    }

    #[tokio::test]
    async fn dropping_every_trigger_shuts_down() {
        let (trigger, mut s) = channel();
        let second = trigger.clone();
        drop(trigger);
        assert!(!s.is_shutdown());
        drop(second);
        assert!(s.is_shutdown());
        s.recv().await;
    }
}
