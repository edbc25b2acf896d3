//! What the sinks to a time-series database share: a bounded queue of batches filled by the
//! run's thread without waiting, and a tokio task that sends them, retrying with backoff.
//!
//! ```text
//! predict thread: Sink::write --> current batch --(full or 1 s old)--> queue (at most N batches)
//!                                                                        |
//! tokio task: pop a batch --> send (POST, TCP write) --> retry with backoff, then drop, counted
//! ```
//! When the queue is full the oldest batch is dropped, so that the newest results go out
//! first and memory stays bounded; its lines are counted as dropped. Dropping the sink closes
//! the queue: the task sends what is queued, for at most [`RemoteConfig::close_timeout`].

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of a sink that writes to a remote database, as the summary shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteStats {
    /// The target, as given (`influx+http://HOST:PORT/write?db=NAME`, `graphite://HOST:PORT`).
    pub target: String,
    /// Lines the database accepted (InfluxDB answered 2xx; Graphite: written to the socket).
    pub written: u64,
    /// Batches sent successfully.
    pub batches: u64,
    /// Attempts repeated after a failure.
    pub retries: u64,
    /// Connections made again after one failed or was closed (Graphite).
    pub reconnects: u64,
    /// Lines dropped: the queue was full, the database refused a batch for good, every retry
    /// failed, or the run ended before they could be sent.
    pub dropped: u64,
}

/// The counters, shared between the sink, its task and whoever reports them.
#[derive(Debug, Default)]
pub struct RemoteCounters {
    target: String,
    written: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
    reconnects: AtomicU64,
    dropped: AtomicU64,
}

impl RemoteCounters {
    /// The counters now.
    pub fn snapshot(&self) -> RemoteStats {
        RemoteStats {
            target: self.target.clone(),
            written: self.written.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// The target these count for.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Batching, queueing and retrying of a remote sink.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteConfig {
    /// Lines per batch at most. Default: 5,000 (InfluxDB's recommended batch).
    pub batch_lines: usize,
    /// A batch that is not full is sent once its first line is this old. Default: 1 s.
    pub flush_interval: Duration,
    /// Batches waiting to be sent at most; past it the oldest is dropped. Default: 64.
    pub max_batches: usize,
    /// Attempts per batch at most (the first included). Default: 5.
    pub max_attempts: u32,
    /// The first wait after a failure, doubled after each further failure. Default: 100 ms.
    pub backoff: Duration,
    /// The longest wait between attempts. Default: 5 s.
    pub max_backoff: Duration,
    /// How long dropping the sink waits for the queue to be sent. Default: 5 s.
    pub close_timeout: Duration,
    /// How long one attempt may take. Default: 10 s.
    pub timeout: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            batch_lines: 5_000,
            flush_interval: Duration::from_secs(1),
            max_batches: 64,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RemoteConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the setting.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if self.batch_lines == 0 {
            return Err(Error::config("batch_lines", "must be at least 1"));
        }
        if self.max_batches == 0 {
            return Err(Error::config("max_batches", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(Error::config("max_attempts", "must be at least 1"));
        }
        if self.flush_interval.is_zero() || self.timeout.is_zero() {
            return Err(Error::config(
                "flush_interval",
                "the flush interval and timeout must be positive",
            ));
        }
        Ok(())
    }
}

/// A batch's failure to be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection or the request failed, or timed out: worth another attempt.
    #[error("{0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database refused the batch itself (an HTTP 4xx other than 429): another attempt
    /// would fail the same way.
    #[error("{0}")]
    Refused(String),
}

/// Where a batch goes.
pub(crate) trait Backend: Send + 'static {
    /// Sends one batch of lines (counting reconnections in `counters`).
    fn send(
        &mut self,
        body: &[u8],
        counters: &RemoteCounters,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send;
}

struct State {
    current: Vec<u8>,
    lines: usize,
    started: Option<Instant>,
    queue: VecDeque<(Vec<u8>, usize)>,
    spare: Vec<Vec<u8>>,
    closed: bool,
}

/// The queue between the sink and its task.
pub(crate) struct Outbox {
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    counters: Arc<RemoteCounters>,
    config: RemoteConfig,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one line (or several, `lines` of them) to the current batch.
    pub(crate) fn push(&self, text: &[u8], lines: usize) {
        let mut s = self.lock();
        if s.lines == 0 {
            s.started = Some(Instant::now());
        }
        s.current.extend_from_slice(text);
        s.lines += lines;
        if s.lines >= self.config.batch_lines {
            self.seal(&mut s);
        }
    }

    /// Moves the current batch to the queue (dropping the oldest when it is full).
    fn seal(&self, s: &mut State) {
        if s.lines == 0 {
            return;
        }
        if s.queue.len() >= self.config.max_batches {
            if let Some((mut old, n)) = s.queue.pop_front() {
                self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                old.clear();
                s.spare.push(old);
            }
        }
        // A new buffer starts at the size of the full one: one allocation, not one per
        // doubling.
        let next = match s.spare.pop() {
            Some(b) => b,
            None => Vec::with_capacity(s.current.capacity()),
        };
        let full = std::mem::replace(&mut s.current, next);
        let n = std::mem::take(&mut s.lines);
        s.started = None;
        s.queue.push_back((full, n));
        self.wake.notify_one();
    }

    /// The next batch to send, sealing the current one if it is old enough (or the queue is
    /// closed); or how long to wait; or `Err` when closed and empty.
    fn next(&self) -> Result<Option<(Vec<u8>, usize)>, ()> {
        let mut s = self.lock();
        let due = s
            .started
            .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
        if s.queue.is_empty() && (due || s.closed) {
            self.seal(&mut s);
        }
        match s.queue.pop_front() {
            Some(b) => Ok(Some(b)),
            None if s.closed => Err(()),
            None => Ok(None),
        }
    }

    fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut s = self.lock();
        if s.spare.len() <= self.config.max_batches {
            s.spare.push(buf);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// The sink's end: push lines, read the counters; dropping it closes the queue and waits
/// (at most the close timeout) for the task to send what is queued.
pub(crate) struct Remote {
    outbox: Arc<Outbox>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

impl Remote {
    /// Starts the sending task on the current tokio runtime.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for invalid settings or when called outside a tokio runtime.
    pub(crate) fn start<B: Backend>(
        target: &str,
        config: RemoteConfig,
        backend: B,
    ) -> crate::Result<Remote> {
        config.validate()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            crate::Error::config(
                "output",
                "a remote output must be started on a tokio runtime",
            )
        })?;
        let outbox = Arc::new(Outbox {
            state: Mutex::new(State {
                current: Vec::new(),
                lines: 0,
                started: None,
                queue: VecDeque::with_capacity(config.max_batches),
                spare: Vec::new(),
                closed: false,
            }),
            wake: tokio::sync::Notify::new(),
            counters: Arc::new(RemoteCounters {
                target: target.to_string(),
                ..RemoteCounters::default()
            }),
            config,
        });
        let (done_tx, done) = std::sync::mpsc::channel();
        handle.spawn(send_loop(outbox.clone(), backend, done_tx));
        Ok(Remote {
            outbox,
            done: Some(done),
        })
    }

    pub(crate) fn push(&self, text: &[u8], lines: usize) {
        self.outbox.push(text, lines);
    }

    pub(crate) fn counters(&self) -> &Arc<RemoteCounters> {
        &self.outbox.counters
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.outbox.close();
        if let Some(done) = self.done.take() {
            // The task ends by itself after the close timeout; a little more for its last
            // attempt to time out.
            let wait = self.outbox.config.close_timeout + Duration::from_millis(500);
            let _ = done.recv_timeout(wait);
        }
    }
}

/// Sends batches until the queue is closed and empty (or the close timeout has passed).
async fn send_loop<B: Backend>(
    outbox: Arc<Outbox>,
    mut backend: B,
    done: std::sync::mpsc::Sender<()>,
) {
    let c = outbox.config.clone();
    let counters = outbox.counters.clone();
    let mut closed_at: Option<Instant> = None;
    let mut failures = 0u64;
    loop {
        if closed_at.is_none() && outbox.is_closed() {
            closed_at = Some(Instant::now());
        }
        let late = closed_at.is_some_and(|t| t.elapsed() >= c.close_timeout);
        let (batch, lines) = match outbox.next() {
            Err(()) => break,
            Ok(Some(b)) if late => {
                counters.dropped.fetch_add(b.1 as u64, Ordering::Relaxed);
                outbox.recycle(b.0);
                continue;
            }
            Ok(Some(b)) => b,
            Ok(None) => {
                let _ = tokio::time::timeout(c.flush_interval / 4, outbox.wake.notified()).await;
                continue;
            }
        };
        let mut wait = c.backoff;
        let mut attempt = 1;
        loop {
            let result =
                match tokio::time::timeout(c.timeout, backend.send(&batch, &counters)).await {
                    Ok(r) => r,
                    Err(e) => Err(SendError::Transient(Box::new(e))),
                };
            let late = closed_at
                .or_else(|| outbox.is_closed().then(Instant::now))
                .is_some_and(|t| t.elapsed() >= c.close_timeout);
            match result {
                Ok(()) => {
                    counters.written.fetch_add(lines as u64, Ordering::Relaxed);
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(SendError::Transient(e)) if attempt < c.max_attempts && !late => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("{}: {e}; retrying in {wait:?}", counters.target);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(c.max_backoff);
                    attempt += 1;
                }
                Err(e) => {
                    failures += 1;
                    counters.dropped.fetch_add(lines as u64, Ordering::Relaxed);
                    if failures <= 10 || failures.is_multiple_of(1000) {
                        tracing::warn!(
                            "{}: {e}; {lines} lines dropped after {attempt} attempts",
                            counters.target
                        );
                    }
                    break;
                }
            }
        }
        outbox.recycle(batch);
    }
    let _ = done.send(());
}

/// Seconds since the Unix epoch of an event time that looks like one (2001 to 2286), else
/// `None` (a raw step or year is not a time a database can take).
pub(crate) fn epoch_seconds(time: Option<f64>) -> Option<f64> {
    time.filter(|t| (1e9..1e10).contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Fails the first `fail` attempts, then records what it is sent.
    struct Flaky {
        fail: Arc<AtomicUsize>,
        refuse: bool,
        got: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Backend for Flaky {
        async fn send(&mut self, body: &[u8], _: &RemoteCounters) -> Result<(), SendError> {
            if self.refuse {
                return Err(SendError::Refused("400 bad line".into()));
            }
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(SendError::Transient("connection refused".into()));
            }
            self.got.lock().unwrap().push(body.to_vec());
            Ok(())
        }
    }

    fn quick() -> RemoteConfig {
        RemoteConfig {
            batch_lines: 2,
            flush_interval: Duration::from_millis(50),
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            close_timeout: Duration::from_secs(2),
            ..RemoteConfig::default()
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn failed_attempts_are_retried_and_counted() {
        let rt = runtime();
        let _enter = rt.enter();
        let got = Arc::default();
        let fail = Arc::new(AtomicUsize::new(3));
        let backend = Flaky {
            fail: fail.clone(),
            refuse: false,
            got: Arc::clone(&got),
        };
        let r = Remote::start("test", quick(), backend).unwrap();
        let counters = r.counters().clone();
        r.push(b"a 1\n", 1);
        r.push(b"b 2\n", 1);
        r.push(b"c 3\n", 1);
        drop(r);
        let s = counters.snapshot();
        assert_eq!((s.written, s.batches, s.retries, s.dropped), (3, 2, 3, 0));
        assert_eq!(got.lock().unwrap().concat(), b"a 1\nb 2\nc 3\n");
    }

    #[test]
    fn a_batch_past_its_attempts_or_refused_is_dropped_and_counted() {
        let rt = runtime();
        let _enter = rt.enter();
        let config = RemoteConfig {
            max_attempts: 3,
            ..quick()
        };
        let backend = Flaky {
            fail: Arc::new(AtomicUsize::new(usize::MAX)),
            refuse: false,
            got: Arc::default(),
        };
        let r = Remote::start("down", config.clone(), backend).unwrap();
        let counters = r.counters().clone();
        r.push(b"a 1\nb 2\n", 2);
        drop(r);
        let s = counters.snapshot();
        assert_eq!((s.written, s.retries, s.dropped), (0, 2, 2));
        // A refusal is not retried.
        let backend = Flaky {
            fail: Arc::default(),
            refuse: true,
            got: Arc::default(),
        };
        let r = Remote::start("refuses", config, backend).unwrap();
        let counters = r.counters().clone();
        r.push(b"x\n", 1);
        drop(r);
        let s = counters.snapshot();
        assert_eq!((s.written, s.retries, s.dropped), (0, 0, 1));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_batch() {
        // No runtime thread runs the task while the queue fills: a current-thread runtime
        // that is not driven.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let config = RemoteConfig {
            batch_lines: 1,
            max_batches: 2,
            close_timeout: Duration::from_millis(200),
            ..quick()
        };
        let backend = Flaky {
            fail: Arc::default(),
            refuse: false,
            got: got.clone(),
        };
        let r = {
            let _enter = rt.enter();
            Remote::start("slow", config, backend).unwrap()
        };
        for line in [&b"1\n"[..], b"2\n", b"3\n", b"4\n"] {
            r.push(line, 1);
        }
        let counters = r.counters().clone();
        assert_eq!(counters.snapshot().dropped, 2);
        // Now let the task run while the sink is dropped: the two newest batches go out.
        let closing = std::thread::spawn(move || drop(r));
        rt.block_on(async {
            while !closing.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(got.lock().unwrap().concat(), b"3\n4\n");
        assert_eq!(counters.snapshot().written, 2);
    }

    #[test]
    fn only_plausible_epochs_are_times() {
        assert_eq!(epoch_seconds(Some(1.7e9)), Some(1.7e9));
        assert_eq!(epoch_seconds(Some(1999.0)), None);
        assert_eq!(epoch_seconds(None), None);
    }
}
