//! Scaling out on NATS JetStream: keyed series spread over worker processes by partition,
//! each partition owned by one worker at a time through a lease, its state checkpointed with
//! the last applied stream sequence.
//!
//! ```text
//! producer --> tbptt.in.<p>.<key> --> stream TBPTT_IN (R replicas)
//!                                        |  one durable pull consumer per partition
//!                                        v
//!   worker (owns partitions by lease in KV tbptt_leases)
//!     partition p: series of its keys (the keyed service's shard, inline, deterministic)
//!        |-- records --> tbptt.out.<key> (stream TBPTT_OUT, Nats-Msg-Id = input sequence)
//!        '-- every interval: state + last sequence --> object store tbptt_state,
//!                                                     pointer in KV tbptt_checkpoints
//! ```
//!
//! - **Subjects**: an event of key `k` is published to `tbptt.in.<p>.<escape(k)>`, where
//!   `p` = [`partition_of`] (FNV-1a of the key modulo the partition count, computed by the
//!   producer) and [`escape_key`] turns the key into one valid subject token. Per-key order is
//!   the stream's order. The payload is the event as MessagePack
//!   ([`crate::io::format::encode_event`]). Records go to `tbptt.out.<escape(k)>`, one JSON
//!   line each (times as numbers), with the header `Nats-Msg-Id: <input sequence>`.
//! - **Leases** ([`lease`]): partition `p` is owned by whoever holds KV key `p.<p>` in the
//!   bucket `tbptt_leases`, whose `max_age` is the lease TTL. A lease is taken with `create`
//!   (fails if held), renewed with `update` at the expected revision every TTL/4, and deleted
//!   on release. A worker stops writing for a partition once `renew_sent + TTL - margin` has
//!   passed without a renewal, before the server can expire the key.
//! - **Checkpoints** ([`partition`]): the partition's series states (the encoding of
//!   [`crate::io::checkpoint`]) and the last applied stream sequence, stored as an object and
//!   named by a pointer in KV `tbptt_checkpoints` that is only written at its expected
//!   revision, so a former owner can never overwrite a newer checkpoint.
//!
//! The library only connects, reads and writes; the command (`tbptt worker`, `tbptt
//! publish`) parses flags and logs.

pub mod lease;
#[cfg(feature = "monitor")]
pub mod metrics;
pub mod partition;
mod worker;

pub use partition::Counters;
pub use worker::{run_worker, WorkerStats};

use crate::event::Event;
use crate::service::keyed::{worker_of, KeyedConfig};
use async_nats::jetstream::{self, kv, object_store, stream};
use std::time::Duration;

/// The input stream.
pub const IN_STREAM: &str = "TBPTT_IN";
/// The output stream.
pub const OUT_STREAM: &str = "TBPTT_OUT";
/// The lease bucket (partition leases `p.<i>` and worker heartbeats `w.<id>`).
pub const LEASES: &str = "tbptt_leases";
/// The checkpoint pointer bucket (`p.<i>` → object name and sequence).
pub const CHECKPOINTS: &str = "tbptt_checkpoints";
/// The object store of partition states.
pub const STATES: &str = "tbptt_state";

/// Why a worker or a producer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// A JetStream request failed.
    #[error("NATS: {op}: {source}")]
    Nats {
        /// What was asked.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A partition's checkpoint could not be encoded or decoded.
    #[error("partition {partition}: checkpoint: {reason}")]
    Checkpoint {
        /// The partition.
        partition: usize,
        /// What is wrong.
        reason: String,
    },
    /// A series' state in a checkpoint could not be restored.
    #[error("partition {partition}: {source}")]
    Series {
        /// The partition.
        partition: usize,
        /// The series' error.
        #[source]
        source: Box<crate::service::keyed::SeriesError>,
    },
    /// The partition's lease ended (not renewed in time, or taken by another worker): this
    /// worker stopped writing for it.
    #[error("partition {partition}: lease lost; stopped writing for it")]
    LeaseLost {
        /// The partition.
        partition: usize,
    },
    /// The settings are invalid.
    #[error(transparent)]
    Config(crate::Error),
}

impl ScaleError {
    pub(crate) fn nats(
        op: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ScaleError::Nats {
            op,
            source: Box::new(e),
        }
    }
}

/// Settings of a worker.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// Server URLs, comma-separated (`nats://127.0.0.1:4222`). Default: that one.
    pub url: String,
    /// Partitions (the producers must use the same number). Default: 16.
    pub partitions: usize,
    /// Replicas of the streams and buckets when this worker creates them. Default: 1.
    pub replicas: usize,
    /// Lease time to live. Default: 6 s.
    pub lease_ttl: Duration,
    /// How often each owned partition is checkpointed. Default: 5 s.
    pub checkpoint_interval: Duration,
    /// The series' template (the pipeline and its bounds; `store` and `workers` are unused).
    pub keyed: KeyedConfig,
    /// This worker's name in the lease bucket (`[A-Za-z0-9_-]`). Default: `w<pid>`.
    pub id: String,
    /// How long the output stream de-duplicates a record's message id. Default: 10 min.
    pub dedup_window: Duration,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            url: "nats://127.0.0.1:4222".into(),
            partitions: 16,
            replicas: 1,
            lease_ttl: Duration::from_secs(6),
            checkpoint_interval: Duration::from_secs(5),
            keyed: KeyedConfig::default(),
            id: format!("w{}", std::process::id()),
            dedup_window: Duration::from_secs(600),
        }
    }
}

impl ScaleConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`ScaleError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), ScaleError> {
        use crate::Error;
        let bad = |what, why| Err(ScaleError::Config(Error::config(what, why)));
        if self.partitions == 0 || self.partitions > 4096 {
            return bad("partitions", "must be in 1..=4096");
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return bad("lease_ttl", "must be at least 1 s");
        }
        if self.checkpoint_interval.is_zero() {
            return bad("checkpoint_interval", "must be positive");
        }
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad("id", "must be non-empty, of A-Z a-z 0-9 _ -");
        }
        self.keyed.validate().map_err(ScaleError::Config)
    }
}

/// The partition of `key` among `partitions` (the keyed service's stable FNV-1a hash).
///
/// # Example
/// ```
/// use tbptt::service::scale::partition_of;
/// assert_eq!(partition_of("host-a", 8), partition_of("host-a", 8));
/// assert!(partition_of("host-a", 8) < 8);
/// ```
pub fn partition_of(key: &str, partitions: usize) -> usize {
    worker_of(key, partitions)
}

/// Appends `key` as one subject token: ASCII letters, digits, `-` and `_` stay, every other
/// byte becomes `~XX` (hex); the empty key is `~`.
///
/// # Example
/// ```
/// let mut s = String::new();
/// tbptt::service::scale::escape_key("web 1.eu>*", &mut s);
/// assert_eq!(s, "web~201~2Eeu~3E~2A");
/// ```
pub fn escape_key(key: &str, out: &mut String) {
    if key.is_empty() {
        out.push('~');
    }
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('~');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The key of a token made by [`escape_key`]; `None` if it is not one.
///
/// # Example
/// ```
/// use tbptt::service::scale::unescape_key;
/// assert_eq!(unescape_key("web~201~2Eeu").as_deref(), Some("web 1.eu"));
/// assert_eq!(unescape_key("~"), Some(String::new()));
/// assert_eq!(unescape_key("~G0"), None);
/// ```
pub fn unescape_key(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'~' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The input subject of `key`: `tbptt.in.<partition>.<escaped key>`.
pub fn in_subject(key: &str, partitions: usize) -> String {
    let mut s = format!("tbptt.in.{}.", partition_of(key, partitions));
    escape_key(key, &mut s);
    s
}

/// The output subject of `key`: `tbptt.out.<escaped key>`.
pub fn out_subject(key: &str) -> String {
    let mut s = String::from("tbptt.out.");
    escape_key(key, &mut s);
    s
}

/// Connects to `url` (comma-separated URLs of one cluster), retrying with exponential backoff (0.1 s doubling to 5 s) and logging
/// each failure, until it succeeds or `attempts` (`None`: forever) have failed.
///
/// # Errors
/// [`ScaleError::Nats`] after the last attempt.
pub async fn connect(url: &str, attempts: Option<u32>) -> Result<async_nats::Client, ScaleError> {
    let mut addrs = Vec::new();
    for u in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        addrs.push(
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| ScaleError::nats("parse the server URL", e))?,
        );
    }
    let mut delay = Duration::from_millis(100);
    let mut failed = 0u32;
    loop {
        let opts = async_nats::ConnectOptions::new().max_reconnects(None);
        match opts.connect(addrs.as_slice()).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                failed += 1;
                if attempts.is_some_and(|a| failed >= a) {
                    return Err(ScaleError::nats("connect", e));
                }
                tracing::warn!("cannot reach NATS at {url}: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Creates (or finds) the input stream `TBPTT_IN` with `replicas` copies.
///
/// # Errors
/// [`ScaleError::Nats`] if the server refuses.
pub async fn input_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<stream::Stream, ScaleError> {
    let s = js
        .get_or_create_stream(stream::Config {
            name: IN_STREAM.into(),
            subjects: vec!["tbptt.in.>".into()],
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| ScaleError::nats("create stream TBPTT_IN", e))?;
    led(s).await
}

/// Waits (at most 10 s) until a new replicated stream has elected its leader: until then the
/// cluster answers "no stream found" to publishers.
async fn led(mut s: stream::Stream) -> Result<stream::Stream, ScaleError> {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = s
            .info()
            .await
            .map_err(|e| ScaleError::nats("read a stream's state", e))?;
        let led = info
            .cluster
            .as_ref()
            .is_none_or(|c| c.leader.is_some() || c.name.is_none());
        if led || std::time::Instant::now() > until {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The buckets and streams a worker uses, created if missing.
#[derive(Clone)]
pub struct Buckets {
    /// The input stream.
    pub input: stream::Stream,
    /// Leases and heartbeats.
    pub leases: kv::Store,
    /// Checkpoint pointers.
    pub checkpoints: kv::Store,
    /// Partition states.
    pub states: object_store::ObjectStore,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("leases", &self.leases.name)
            .field("checkpoints", &self.checkpoints.name)
            .finish_non_exhaustive()
    }
}

/// Creates (or finds) every stream and bucket of `config`.
///
/// # Errors
/// [`ScaleError::Nats`] if the server refuses.
pub async fn buckets(js: &jetstream::Context, config: &ScaleConfig) -> Result<Buckets, ScaleError> {
    let r = config.replicas;
    let input = input_stream(js, r).await?;
    let out = js
        .get_or_create_stream(stream::Config {
            name: OUT_STREAM.into(),
            subjects: vec!["tbptt.out.>".into()],
            num_replicas: r,
            duplicate_window: config.dedup_window,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| ScaleError::nats("create stream TBPTT_OUT", e))?;
    led(out).await?;
    let leases = kv_bucket(js, LEASES, 1, config.lease_ttl, r).await?;
    let checkpoints = kv_bucket(js, CHECKPOINTS, 64, Duration::ZERO, r).await?;
    let states = match js.get_object_store(STATES).await {
        Ok(s) => s,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: STATES.into(),
                num_replicas: r,
                ..Default::default()
            })
            .await
            .map_err(|e| ScaleError::nats("create object store tbptt_state", e))?,
    };
    Ok(Buckets {
        input,
        leases,
        checkpoints,
        states,
    })
}

/// A key-value bucket, made as the stream the KV convention describes (`KV_<name>` over
/// `$KV.<name>.>`, one message per key and revision) when missing: the client's own bucket
/// creation asks for account details that servers before 2.10 describe differently.
async fn kv_bucket(
    js: &jetstream::Context,
    name: &'static str,
    history: i64,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, ScaleError> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: history,
        max_age,
        duplicate_window: if max_age.is_zero() {
            Duration::from_secs(120)
        } else {
            max_age
        },
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| ScaleError::nats("create a bucket", e))
    .map(led)?
    .await?;
    js.get_key_value(name)
        .await
        .map_err(|e| ScaleError::nats("open a bucket", e))
}

/// Publishes events to their partitions' subjects, waiting for the stream's acks in batches.
pub struct Publisher {
    js: jetstream::Context,
    partitions: usize,
    pending: Vec<jetstream::context::PublishAckFuture>,
    buf: Vec<u8>,
    published: u64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("partitions", &self.partitions)
            .field("published", &self.published)
            .finish()
    }
}

/// Runs `op` until it succeeds, at most 10 times, waiting 200 ms, then twice as long each
/// time up to 5 s, and saying so at each failure.
pub(crate) async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, ScaleError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ScaleError>>,
{
    let mut delay = std::time::Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 10 => {
                tracing::warn!("cannot {what}: {e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Acks awaited at once by [`Publisher`].
const PUBLISH_BATCH: usize = 512;

impl Publisher {
    /// A publisher over `client` for `partitions` partitions (creating `TBPTT_IN` with
    /// `replicas` copies if missing; a replicated creation on a cluster that is still
    /// electing its leaders can time out, so it is retried with backoff, 10 attempts).
    ///
    /// # Errors
    /// [`ScaleError::Nats`] if the stream cannot be created.
    pub async fn new(
        client: async_nats::Client,
        partitions: usize,
        replicas: usize,
    ) -> Result<Self, ScaleError> {
        let js = jetstream::new(client);
        retry("create the input stream", || input_stream(&js, replicas)).await?;
        Ok(Publisher {
            js,
            partitions: partitions.max(1),
            pending: Vec::with_capacity(PUBLISH_BATCH),
            buf: Vec::new(),
            published: 0,
        })
    }

    /// Publishes `ev` to `tbptt.in.<partition>.<key>`.
    ///
    /// # Errors
    /// [`ScaleError::Nats`] if it cannot be sent or an earlier one was not stored.
    pub async fn publish(&mut self, ev: &Event) -> Result<(), ScaleError> {
        self.buf.clear();
        crate::io::format::encode_event(ev, &mut self.buf);
        let ack = self
            .js
            .publish(
                in_subject(&ev.key, self.partitions),
                bytes::Bytes::copy_from_slice(&self.buf),
            )
            .await
            .map_err(|e| ScaleError::nats("publish", e))?;
        self.pending.push(ack);
        self.published += 1;
        if self.pending.len() >= PUBLISH_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits until every event published so far is stored.
    ///
    /// # Errors
    /// [`ScaleError::Nats`] if one was not.
    pub async fn flush(&mut self) -> Result<(), ScaleError> {
        for ack in self.pending.drain(..) {
            ack.await.map_err(|e| ScaleError::nats("publish ack", e))?;
        }
        Ok(())
    }

    /// Events published.
    pub fn published(&self) -> u64 {
        self.published
    }
}
