//! One owned partition: its series (the keyed service's shard, inline and deterministic), its
//! durable pull consumer, its records and its checkpoints.
//!
//! A checkpoint is the partition's series states with the last applied stream sequence `S`,
//! written once every record of the events up to `S` is stored in `TBPTT_OUT`. A new owner
//! restores it and reads from `S + 1`; events at or below `S` are skipped. Each event thus
//! changes the state once, and a record published twice carries the same message id (the
//! input's sequence), which the output stream drops.

use super::lease::{lease_key, Deadline};
use super::{out_subject, partition_of, Buckets, ScaleConfig, ScaleError};
use crate::detect::pipeline::OutputRecord;
use crate::event::Event;
use crate::io::checkpoint::crc32;
use crate::io::format::{Decoded, Decoder, DecoderConfig, Format};
use crate::io::sink::{OutputFormat, RecordWriter};
use crate::service::keyed::shard::Shard;
use async_nats::jetstream::{self, consumer, context::PublishAckFuture, kv};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// A partition's checkpoint: which partition, the last applied stream sequence, who wrote
/// it, and each series' state (as [`crate::io::checkpoint::encode`] writes it), by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionState {
    /// The partition.
    pub partition: usize,
    /// The last applied stream sequence (0: none).
    pub seq: u64,
    /// The worker that wrote it.
    pub owner: String,
    /// Each series' key and encoded state, in key order.
    pub series: Vec<(Box<str>, Vec<u8>)>,
}

const MAGIC: &[u8; 4] = b"TBPS";
const VERSION: u16 = 1;

impl PartitionState {
    /// Encodes the checkpoint: `TBPS`, version (u16), partition (u32), sequence (u64), owner,
    /// series count (u32), each key and state (u32 length + bytes), then a CRC-32 of all before
    /// it; integers little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.series.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(32 + self.owner.len() + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.partition as u32).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        put_bytes(&mut out, self.owner.as_bytes());
        out.extend_from_slice(&(self.series.len() as u32).to_le_bytes());
        for (k, v) in &self.series {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a checkpoint of `partition`.
    ///
    /// # Errors
    /// [`ScaleError::Checkpoint`] saying what is wrong (truncated, corrupt, another version
    /// or partition).
    pub fn decode(partition: usize, bytes: &[u8]) -> Result<Self, ScaleError> {
        let bad = |reason: &str| ScaleError::Checkpoint {
            partition,
            reason: reason.to_string(),
        };
        let body_len = bytes.len().checked_sub(4).ok_or_else(|| bad("truncated"))?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32(body).to_le_bytes() != crc {
            return Err(bad("CRC mismatch (corrupt or truncated)"));
        }
        let cut = || bad("truncated");
        let mut r = body;
        if take(&mut r, 4).ok_or_else(cut)? != MAGIC {
            return Err(bad("not a partition checkpoint"));
        }
        if u16::from_le_bytes(arr(take(&mut r, 2).ok_or_else(cut)?)) != VERSION {
            return Err(bad("unknown version"));
        }
        let p = u32::from_le_bytes(arr(take(&mut r, 4).ok_or_else(cut)?)) as usize;
        if p != partition {
            return Err(bad(&format!("holds partition {p}")));
        }
        let seq = u64::from_le_bytes(arr(take(&mut r, 8).ok_or_else(cut)?));
        let owner = String::from_utf8(get_bytes(&mut r).ok_or_else(cut)?.to_vec())
            .map_err(|_| bad("owner"))?;
        let n = u32::from_le_bytes(arr(take(&mut r, 4).ok_or_else(cut)?)) as usize;
        let mut series = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let k = std::str::from_utf8(get_bytes(&mut r).ok_or_else(cut)?)
                .map_err(|_| bad("a key"))?;
            series.push((k.into(), get_bytes(&mut r).ok_or_else(cut)?.to_vec()));
        }
        Ok(PartitionState {
            partition,
            seq,
            owner,
            series,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Some(a)
}

fn get_bytes<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_le_bytes(arr(take(r, 4)?)) as usize;
    take(r, n)
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// The checkpoint pointer in `tbptt_checkpoints`: `<seq> <object> <owner>`.
fn pointer(seq: u64, object: &str, owner: &str) -> Bytes {
    Bytes::from(format!("{seq} {object} {owner}"))
}

fn parse_pointer(v: &[u8]) -> Option<(u64, String)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split(' ');
    let seq = it.next()?.parse().ok()?;
    Some((seq, it.next()?.to_string()))
}

/// Counters shared by a worker's partitions.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events applied.
    pub events: AtomicU64,
    /// Events at or below a checkpoint's sequence, skipped.
    pub skipped: AtomicU64,
    /// Events refused (bad payload, another partition's key, or the pipeline refused).
    pub refused: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Bytes of the last checkpoint written.
    pub checkpoint_bytes: AtomicU64,
    /// Microseconds spent writing checkpoints (encode and store), in total.
    pub checkpoint_micros: AtomicU64,
    /// Partitions restored from a checkpoint.
    pub restored: AtomicU64,
    /// Partitions taken (leases acquired).
    pub taken: AtomicU64,
    /// Leases lost (not renewed in time, or taken over).
    pub lost: AtomicU64,
    /// Partitions owned now.
    pub owned: AtomicU64,
}

/// Records awaited at once.
const SETTLE_EVERY: usize = 256;

/// An owned partition at work.
pub(crate) struct Partition {
    p: usize,
    partitions: usize,
    owner: String,
    shard: Shard,
    applied: u64,
    checkpointed: u64,
    /// The pointer's revision (the fence): `None` before the first pointer is written.
    revision: Option<u64>,
    object: Option<String>,
    writer: RecordWriter<Vec<u8>>,
    record: OutputRecord,
    decoder: Decoder,
    event: Event,
    pending: Vec<PublishAckFuture>,
    last: Option<jetstream::Message>,
    counters: Arc<Counters>,
}

impl Partition {
    /// Restores partition `p` from its checkpoint (or starts it empty) and fences it: the
    /// pointer is rewritten under this owner, so a former owner's next write fails.
    pub(crate) async fn restore(
        p: usize,
        b: &Buckets,
        config: &ScaleConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, ScaleError> {
        let keyed = &config.keyed;
        let shard = Shard::new(keyed, keyed.max_series, None, Arc::default());
        let mut part = Partition {
            p,
            partitions: config.partitions,
            owner: config.id.clone(),
            shard,
            applied: 0,
            checkpointed: 0,
            revision: None,
            object: None,
            writer: RecordWriter::new(Vec::new(), OutputFormat::Jsonl),
            record: OutputRecord::default(),
            decoder: DecoderConfig {
                format: Format::MsgPack,
                ..DecoderConfig::default()
            }
            .build()
            .map_err(ScaleError::Config)?,
            event: Event::new(),
            pending: Vec::with_capacity(SETTLE_EVERY),
            last: None,
            counters,
        };
        let entry = b
            .checkpoints
            .entry(lease_key(p))
            .await
            .map_err(|e| ScaleError::nats("read a checkpoint pointer", e))?;
        if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) {
            part.revision = Some(e.revision);
            // "-": fenced by an owner that applied nothing.
            match parse_pointer(&e.value) {
                Some((seq, object)) if object != "-" => part.load(b, seq, &object).await?,
                _ => {}
            }
        }
        let object = part.object.clone().unwrap_or_else(|| "-".into());
        part.write_pointer(b, &object).await?;
        Ok(part)
    }

    async fn load(&mut self, b: &Buckets, seq: u64, object: &str) -> Result<(), ScaleError> {
        let mut o = b
            .states
            .get(object)
            .await
            .map_err(|e| ScaleError::nats("read a checkpoint", e))?;
        let mut bytes = Vec::new();
        o.read_to_end(&mut bytes)
            .await
            .map_err(|e| ScaleError::nats("read a checkpoint", e))?;
        let state = PartitionState::decode(self.p, &bytes)?;
        if state.seq != seq {
            return Err(ScaleError::Checkpoint {
                partition: self.p,
                reason: format!("object {object} holds sequence {}, not {seq}", state.seq),
            });
        }
        for (k, v) in &state.series {
            self.shard
                .insert_encoded(k, v)
                .map_err(|source| ScaleError::Series {
                    partition: self.p,
                    source: Box::new(source),
                })?;
        }
        self.applied = seq;
        self.checkpointed = seq;
        self.object = Some(object.to_string());
        self.counters.restored.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "partition {}: restored {} series at sequence {seq}",
            self.p,
            state.series.len()
        );
        Ok(())
    }

    /// Writes the pointer at its expected revision; a mismatch means another owner.
    async fn write_pointer(&mut self, b: &Buckets, object: &str) -> Result<(), ScaleError> {
        let key = lease_key(self.p);
        let value = pointer(self.checkpointed, object, &self.owner);
        let r = match self.revision {
            Some(rev) => b.checkpoints.update(&key, value, rev).await.map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    ScaleError::LeaseLost { partition: self.p }
                } else {
                    ScaleError::nats("write a checkpoint pointer", e)
                }
            })?,
            None => b.checkpoints.create(&key, value).await.map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    ScaleError::LeaseLost { partition: self.p }
                } else {
                    ScaleError::nats("write a checkpoint pointer", e)
                }
            })?,
        };
        self.revision = Some(r);
        Ok(())
    }

    /// The messages of a fresh consumer that starts after the last applied event (retried
    /// with backoff: during a server's failure the requests can time out).
    async fn open(&self, b: &Buckets) -> Result<consumer::pull::Stream, ScaleError> {
        super::retry("read the partition", || async {
            self.consumer(b)
                .await?
                .messages()
                .await
                .map_err(|e| ScaleError::nats("read a partition", e))
        })
        .await
    }

    /// [`Self::open`], given up (`None`) when `stop` says so: its retries with backoff can
    /// take a minute while a cluster elects new leaders, longer than a worker may take to
    /// stop.
    async fn open_unless_stopped(
        &self,
        b: &Buckets,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<consumer::pull::Stream>, ScaleError> {
        if *stop.borrow() {
            return Ok(None);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => Ok(None),
            r = self.open(b) => r.map(Some),
        }
    }

    /// The durable pull consumer of this partition, made afresh to start after the last
    /// applied event (after the checkpoint, at a takeover).
    async fn consumer(
        &self,
        b: &Buckets,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, ScaleError> {
        let name = format!("part-{}", self.p);
        // A former owner's consumer starts at its own position: replace it.
        let _ = b.input.delete_consumer(&name).await;
        let deliver_policy = match self.applied {
            0 => consumer::DeliverPolicy::All,
            s => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: s + 1,
            },
        };
        b.input
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                filter_subject: format!("tbptt.in.{}.>", self.p),
                deliver_policy,
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            })
            .await
            .map_err(|e| ScaleError::nats("create a consumer", e))
    }

    /// Reads and applies events until `stop` says so or the lease ends; then, with the
    /// lease still valid, writes a last checkpoint.
    pub(crate) async fn run(
        mut self,
        js: &jetstream::Context,
        b: &Buckets,
        deadline: &Deadline,
        mut stop: tokio::sync::watch::Receiver<bool>,
        interval: Duration,
    ) -> Result<(), ScaleError> {
        use tokio_stream::StreamExt;
        let Some(mut msgs) = self.open_unless_stopped(b, &mut stop).await? else {
            return self.checkpoint(b, deadline).await;
        };
        // The consumer numbers its deliveries 1, 2, 3, ... (redeliveries too). A gap means
        // deliveries were lost in flight, typically from a server that died while the
        // consumer's new leader carried on after them; their events would come back only
        // after the ack wait, behind newer ones. So at a gap, or an error of the stream, the
        // partition reads again from a fresh consumer that starts after the last applied
        // event: events are applied in stream order, none skipped.
        let mut delivered = 0u64;
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = tick.tick() => self.checkpoint(b, deadline).await?,
                () = tokio::time::sleep(Duration::from_millis(20)), if !self.pending.is_empty() => {
                    self.settle(deadline).await?;
                }
                m = msgs.next() => match m {
                    Some(Ok(m)) => {
                        self.lease_held(deadline)?;
                        let cseq = m.info().map_or(0, |i| i.consumer_sequence);
                        if cseq != delivered + 1 {
                            tracing::warn!(
                                "partition {}: delivery {cseq} after {delivered}; reading again \
                                 after event {}",
                                self.p,
                                self.applied
                            );
                            self.settle(deadline).await?;
                            match self.open_unless_stopped(b, &mut stop).await? {
                                Some(m) => msgs = m,
                                None => break,
                            }
                            delivered = 0;
                            continue;
                        }
                        delivered = cseq;
                        self.apply(js, m).await?;
                        if self.pending.len() >= SETTLE_EVERY {
                            self.settle(deadline).await?;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!("partition {}: {e}; reading again after event {}", self.p, self.applied);
                        self.settle(deadline).await?;
                        match self.open_unless_stopped(b, &mut stop).await? {
                            Some(m) => msgs = m,
                            None => break,
                        }
                        delivered = 0;
                    }
                    None => break,
                },
            }
        }
        self.checkpoint(b, deadline).await
    }

    fn lease_held(&self, deadline: &Deadline) -> Result<(), ScaleError> {
        if deadline.valid() {
            Ok(())
        } else {
            Err(ScaleError::LeaseLost { partition: self.p })
        }
    }

    /// Applies one event and publishes its record.
    async fn apply(
        &mut self,
        js: &jetstream::Context,
        m: jetstream::Message,
    ) -> Result<(), ScaleError> {
        let seq = m
            .info()
            .map_err(|e| ScaleError::nats("read a message's sequence", StrError(e.to_string())))?
            .stream_sequence;
        if seq <= self.applied {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            self.last = Some(m);
            return Ok(());
        }
        let mut ev = std::mem::take(&mut self.event);
        match self.decoder.decode_frame(&m.payload, seq, &mut ev) {
            Ok(Decoded::Event) if partition_of(&ev.key, self.partitions) == self.p => {
                self.process(js, &ev, seq).await?;
            }
            Ok(Decoded::Event) => {
                self.refuse(seq, &format!("key {:?} is not of this partition", ev.key));
            }
            Ok(_) => self.refuse(seq, "not an event"),
            Err(e) => self.refuse(seq, &e.to_string()),
        }
        self.event = ev;
        self.applied = seq;
        self.last = Some(m);
        Ok(())
    }

    async fn process(
        &mut self,
        js: &jetstream::Context,
        ev: &Event,
        seq: u64,
    ) -> Result<(), ScaleError> {
        if let Err(e) = self.shard.process(ev, &mut self.record, Instant::now()) {
            self.refuse(seq, &e.to_string());
            return Ok(());
        }
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        let out = self.writer.get_mut();
        out.clear();
        self.writer
            .write(&self.record)
            .and_then(|()| self.writer.flush())
            .map_err(|e| ScaleError::nats("format a record", e))?;
        let payload = Bytes::copy_from_slice(self.writer.get_mut());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", seq.to_string().as_str());
        let ack = js
            .publish_with_headers(out_subject(&ev.key), headers, payload)
            .await
            .map_err(|e| ScaleError::nats("publish a record", e))?;
        self.pending.push(ack);
        Ok(())
    }

    fn refuse(&self, seq: u64, why: &str) {
        let n = self.counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_multiple_of(1000) {
            tracing::warn!(
                "partition {}: event {seq} refused: {why} ({n} refused)",
                self.p
            );
        }
    }

    /// Waits until every record published is stored, then acks the events applied.
    async fn settle(&mut self, deadline: &Deadline) -> Result<(), ScaleError> {
        for ack in self.pending.drain(..) {
            ack.await
                .map_err(|e| ScaleError::nats("store a record", e))?;
        }
        self.lease_held(deadline)?;
        if let Some(m) = self.last.take() {
            m.ack()
                .await
                .map_err(|e| ScaleError::nats("ack", StrError(e.to_string())))?;
        }
        Ok(())
    }

    /// Writes a checkpoint if events were applied since the last one.
    async fn checkpoint(&mut self, b: &Buckets, deadline: &Deadline) -> Result<(), ScaleError> {
        self.settle(deadline).await?;
        if self.applied == self.checkpointed {
            return Ok(());
        }
        let started = Instant::now();
        let series = self
            .shard
            .encode_all()
            .map_err(|source| ScaleError::Series {
                partition: self.p,
                source: Box::new(source),
            })?;
        let state = PartitionState {
            partition: self.p,
            seq: self.applied,
            owner: self.owner.clone(),
            series,
        };
        let bytes = state.encode();
        let name = format!("p.{}.{}", self.p, self.applied);
        self.lease_held(deadline)?;
        b.states
            .put(name.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| ScaleError::nats("store a checkpoint", e))?;
        self.checkpointed = self.applied;
        self.write_pointer(b, &name).await?;
        if let Some(old) = self.object.replace(name) {
            let _ = b.states.delete(&old).await;
        }
        let c = &self.counters;
        c.checkpoints.fetch_add(1, Ordering::Relaxed);
        c.checkpoint_bytes
            .store(bytes.len() as u64, Ordering::Relaxed);
        c.checkpoint_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// An error known only by its text (the client's boxed errors are not `Sync`).
#[derive(Debug)]
struct StrError(String);

impl std::fmt::Display for StrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StrError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_state_round_trips_and_damage_is_named() {
        let s = PartitionState {
            partition: 3,
            seq: 42,
            owner: "w1".into(),
            series: vec![("a".into(), vec![1, 2, 3]), ("b".into(), vec![])],
        };
        let bytes = s.encode();
        assert_eq!(PartitionState::decode(3, &bytes).unwrap(), s);
        assert!(PartitionState::decode(4, &bytes).is_err());
        for cut in [0, 3, bytes.len() - 1] {
            assert!(PartitionState::decode(3, &bytes[..cut]).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert!(PartitionState::decode(3, &flipped).is_err());
    }

    #[test]
    fn a_pointer_names_its_sequence_and_object() {
        let p = pointer(17, "p.2.17", "w9");
        assert_eq!(parse_pointer(&p), Some((17, "p.2.17".to_string())));
        assert_eq!(parse_pointer(b"x"), None);
    }
}
