//! Checkpoints: the whole state of a [`Pipeline`] in one file, written atomically, read back
//! with every byte checked.
//!
//! # File format, version 1
//!
//! A 34-byte header, then the payload. Integers are little-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `TBPTTCKP` |
//! | 8..10 | format version (`u16`, 1) |
//! | 10..18 | configuration hash (`u64`, FNV-1a 64 of the learner configuration as canonical JSON) |
//! | 18..26 | payload length in bytes (`u64`) |
//! | 26..30 | CRC-32 (IEEE) of the payload |
//! | 30..34 | CRC-32 of bytes 0..30 |
//!
//! The payload is MessagePack (rmp-serde, fields by name): `{meta, state}`, where `state` is
//! a [`PipelineState`] (configuration, weights, optimizer moments and step count, live state,
//! the ring of the last `T` pairs with their start states, normalization and anomaly
//! statistics, counters). There is no random state to save: the seed only draws the initial
//! weights.
//!
//! Readers dispatch on the version ([`decode`]); a later version keeps the code that reads
//! version 1, so older checkpoints stay loadable (`tests/data/checkpoint_v1.tbptt` is a
//! committed version-1 file the tests load).
//!
//! # Writing
//!
//! [`write_atomic`]: a temporary file `.NAME.tmp.PID` in the same folder, `fsync`, rotation
//! of the older files (`PATH.1`, `PATH.2`, ...), `rename` over `PATH`, `fsync` of the folder.
//! `PATH` always holds a complete checkpoint: the old one until the rename, the new one after;
//! each older generation that exists likewise never goes missing during a rotation.
//! [`Writer`] does this on its own thread, so the prediction thread only serializes, and
//! holds an exclusive [`Lock`] on the path (`PATH.lock`) so that a second process cannot
//! write to it at the same time.
//!
//! # Reading
//!
//! [`read`] refuses anything but a regular file, reads and checks the 34-byte header first,
//! then exactly the payload length it announces (at most [`MAX_PAYLOAD`]). [`decode`] also
//! refuses counters beyond [`MAX_COUNTER`].
//!
//! # Example
//! ```
//! use tbptt::io::checkpoint;
//! use tbptt::event::Event;
//! use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
//!
//! let mut p = Pipeline::new(PipelineConfig::default())?;
//! let mut ev = Event::new();
//! for t in 0..100 {
//!     ev.values.clear();
//!     ev.values.push((t as f64 * 0.1).sin());
//!     p.process(&ev)?;
//! }
//! let bytes = checkpoint::encode(&p.snapshot()?)?;
//! let ckp = checkpoint::decode(&bytes)?;
//! assert_eq!(ckp.state.events(), 100);
//! let mut resumed = Pipeline::restore(ckp.state)?;
//! assert_eq!(resumed.events(), 100);
//! assert!(checkpoint::decode(&bytes[..bytes.len() - 1]).is_err()); // truncated
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::detect::pipeline::{Pipeline, PipelineConfig, PipelineState};
use crate::train::learner::LearnerConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first eight bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"TBPTTCKP";
/// The format version this build writes.
pub const VERSION: u16 = 1;
/// The versions this build reads.
pub const SUPPORTED: &[u16] = &[1];
/// Length of the version-1 header.
pub const HEADER_LEN: usize = 34;
/// Bytes of the magic and the version, the part every version shares.
const PREFIX_LEN: usize = 10;
/// The largest payload a checkpoint may announce, in bytes (1 GiB): [`read`] refuses a
/// larger one before reading it.
pub const MAX_PAYLOAD: u64 = 1 << 30;
/// The largest value a saved counter (events, updates, anomalies, optimizer steps) may have:
/// 2^53, so that a resumed run can count on for centuries at millions of events per second
/// without overflow, and every count stays exact in JSON.
pub const MAX_COUNTER: u64 = 1 << 53;

/// The serializer's or deserializer's own error (MessagePack for checkpoints, JSON for a
/// store's settings), kept as the source.
pub type BoxedError = Box<dyn std::error::Error + Send + Sync>;

/// Why a checkpoint could not be read, written or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read, written, renamed or synced.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The file ends early.
    #[error("checkpoint is truncated: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the header announces (or the header's own length).
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// The file does not start with `TBPTTCKP`: not a checkpoint.
    #[error("not a tbptt checkpoint: the file starts with {found:?}, not \"TBPTTCKP\"")]
    BadMagic {
        /// The first bytes found (lossy UTF-8).
        found: String,
    },
    /// A format version this build cannot read.
    #[error("unsupported checkpoint format version {found}; this build reads {supported:?}")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The versions this build reads.
        supported: &'static [u16],
    },
    /// A checksum does not match: the bytes changed after they were written.
    #[error(
        "checkpoint is corrupt: the {region} (bytes {start}..{end}) has CRC-32 {found:#010x}, \
         the header records {expected:#010x}"
    )]
    Corrupt {
        /// `header` or `payload`.
        region: &'static str,
        /// First byte of the region.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The checksum recorded in the header.
        expected: u32,
        /// The checksum of the bytes present.
        found: u32,
    },
    /// Bytes follow the payload.
    #[error("checkpoint has {extra} bytes after its payload (expected {expected} bytes in all)")]
    TrailingBytes {
        /// Bytes the header announces.
        expected: u64,
        /// Bytes beyond them.
        extra: u64,
    },
    /// The payload is not a valid MessagePack state.
    #[error("checkpoint payload cannot be decoded: {0}")]
    Decode(#[source] BoxedError),
    /// The state could not be serialized.
    #[error("cannot encode checkpoint: {0}")]
    Encode(#[source] BoxedError),
    /// The header's configuration hash differs from the payload's configuration.
    #[error(
        "checkpoint header's configuration hash {header:#018x} differs from its payload's \
         {payload:#018x}"
    )]
    HashMismatch {
        /// The hash in the header.
        header: u64,
        /// The hash of the decoded configuration.
        payload: u64,
    },
    /// The payload decodes but its contents are inconsistent (wrong lengths, non-finite
    /// weights, ...).
    #[error("checkpoint state is invalid: {0}")]
    Invalid(#[source] crate::Error),
    /// The path is not a regular file (a FIFO, a device, a directory, a socket), so it is
    /// not read at all.
    #[error("checkpoint {}: not a regular file ({kind})", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The header announces a payload larger than [`MAX_PAYLOAD`].
    #[error(
        "checkpoint header announces a {len}-byte payload, more than the {max} bytes accepted"
    )]
    TooLarge {
        /// The payload length in the header.
        len: u64,
        /// [`MAX_PAYLOAD`].
        max: u64,
    },
    /// A counter of the saved state is beyond [`MAX_COUNTER`]: continuing from it would
    /// overflow.
    #[error(
        "checkpoint state is invalid: counter `{counter}` is {value}, more than the {max} accepted"
    )]
    CounterOutOfRange {
        /// The counter.
        counter: &'static str,
        /// Its saved value.
        value: u64,
        /// [`MAX_COUNTER`].
        max: u64,
    },
    /// Another process holds the lock of this checkpoint path: two writers would interleave
    /// their checkpoints and one run's progress would be lost.
    #[error(
        "checkpoint {} is in use by another process{} (it holds the lock {}); give each run \
         its own --checkpoint path, or stop the other run first",
        path.display(),
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        lock.display()
    )]
    Locked {
        /// The checkpoint path.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The process id written in the lock file by its holder, if readable.
        holder: Option<u32>,
    },
    /// The checkpoint was made with other settings than the ones requested.
    #[error(
        "checkpoint does not match the requested configuration: {field} is {checkpoint} in the \
         checkpoint but {requested} was requested"
    )]
    ConfigMismatch {
        /// The setting, named as its command-line flag.
        field: &'static str,
        /// Its value in the checkpoint.
        checkpoint: String,
        /// The value requested.
        requested: String,
    },
}

/// What is recorded about a checkpoint's origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The tbptt version that wrote it.
    pub written_by: String,
    /// When it was written, in seconds since the Unix epoch.
    pub written_unix: f64,
}

#[derive(Serialize)]
struct PayloadRef<'a> {
    meta: Meta,
    state: &'a PipelineState,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadV1 {
    meta: Meta,
    state: PipelineState,
}

/// A decoded and checked checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The format version of the file.
    pub version: u16,
    /// The configuration hash of the header (equal to the payload's).
    pub config_hash: u64,
    /// Total size in bytes.
    pub size: u64,
    /// Origin of the file.
    pub meta: Meta,
    /// The pipeline's state.
    pub state: PipelineState,
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib and PNG compute it.
///
/// # Example
/// ```
/// assert_eq!(tbptt::io::checkpoint::crc32(b"123456789"), 0xCBF4_3926);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for b in bytes {
        c = TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// FNV-1a, 64 bits: a stable hash (unlike std's randomized one).
///
/// # Example
/// ```
/// assert_eq!(tbptt::io::checkpoint::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(tbptt::io::checkpoint::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The configuration hash of a learner configuration: FNV-1a 64 of its canonical JSON
/// (fields in declaration order).
pub fn config_hash(config: &LearnerConfig) -> u64 {
    // Serializing a plain struct of numbers and enums cannot fail.
    let json = serde_json::to_vec(config).unwrap_or_default();
    fnv1a64(&json)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Serializes `state` into a version-[`VERSION`] checkpoint.
///
/// # Errors
/// [`CheckpointError::Encode`] if serialization fails.
pub fn encode(state: &PipelineState) -> Result<Vec<u8>, CheckpointError> {
    let written_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let payload = PayloadRef {
        meta: Meta {
            written_by: format!("tbptt {}", env!("CARGO_PKG_VERSION")),
            written_unix,
        },
        state,
    };
    let mut out = vec![0u8; HEADER_LEN];
    rmp_serde::encode::write_named(&mut out, &payload)
        .map_err(|e| CheckpointError::Encode(e.into()))?;
    let len = (out.len() - HEADER_LEN) as u64;
    let crc = crc32(&out[HEADER_LEN..]);
    out[0..8].copy_from_slice(MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out[10..18].copy_from_slice(&config_hash(state.learner_config()).to_le_bytes());
    out[18..26].copy_from_slice(&len.to_le_bytes());
    out[26..30].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32(&out[..30]);
    out[30..34].copy_from_slice(&hcrc.to_le_bytes());
    Ok(out)
}

/// Reads a checkpoint from bytes: checks the magic, the version, both checksums and the
/// lengths, decodes the payload and checks the state (a [`Pipeline`] is built from it and
/// dropped, so a checkpoint that decodes also restores).
///
/// # Errors
/// The [`CheckpointError`] naming the first problem, in this order: [`Truncated`]
/// (shorter than the magic and version), [`BadMagic`], [`UnsupportedVersion`], [`Truncated`]
/// (header), [`Corrupt`] (header), [`Truncated`] (payload), [`TrailingBytes`], [`Corrupt`]
/// (payload), [`Decode`], [`HashMismatch`], [`Invalid`]. Never panics.
///
/// [`Truncated`]: CheckpointError::Truncated
/// [`BadMagic`]: CheckpointError::BadMagic
/// [`UnsupportedVersion`]: CheckpointError::UnsupportedVersion
/// [`Corrupt`]: CheckpointError::Corrupt
/// [`TrailingBytes`]: CheckpointError::TrailingBytes
/// [`Decode`]: CheckpointError::Decode
/// [`HashMismatch`]: CheckpointError::HashMismatch
/// [`Invalid`]: CheckpointError::Invalid
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    check_header(bytes, bytes.len() as u64)?;
    decode_v1(bytes)
}

/// Checks the header at the start of `head` for a file of `got` bytes in all: magic,
/// version, header checksum, the announced length (at most [`MAX_PAYLOAD`], and equal to
/// the file's). `head` needs only the header's bytes (fewer if the file is shorter).
fn check_header(head: &[u8], got: u64) -> Result<(), CheckpointError> {
    let magic_len = head.len().min(MAGIC.len());
    if head[..magic_len] != MAGIC[..magic_len] {
        return Err(CheckpointError::BadMagic {
            found: String::from_utf8_lossy(&head[..magic_len]).into_owned(),
        });
    }
    if head.len() < PREFIX_LEN {
        return Err(CheckpointError::Truncated {
            expected: HEADER_LEN as u64,
            got,
        });
    }
    let version = u16_at(head, 8);
    if version != 1 {
        return Err(CheckpointError::UnsupportedVersion {
            found: version,
            supported: SUPPORTED,
        });
    }
    if head.len() < HEADER_LEN {
        return Err(CheckpointError::Truncated {
            expected: HEADER_LEN as u64,
            got,
        });
    }
    let hcrc = crc32(&head[..30]);
    let want = u32_at(head, 30);
    if hcrc != want {
        return Err(CheckpointError::Corrupt {
            region: "header",
            start: 0,
            end: 30,
            expected: want,
            found: hcrc,
        });
    }
    let len = u64_at(head, 18);
    if len > MAX_PAYLOAD {
        return Err(CheckpointError::TooLarge {
            len,
            max: MAX_PAYLOAD,
        });
    }
    let total = HEADER_LEN as u64 + len;
    if got < total {
        return Err(CheckpointError::Truncated {
            expected: total,
            got,
        });
    }
    if got > total {
        return Err(CheckpointError::TrailingBytes {
            expected: total,
            extra: got - total,
        });
    }
    Ok(())
}

/// Decodes a version-1 checkpoint whose header [`check_header`] accepted.
fn decode_v1(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let got = bytes.len() as u64;
    let hash = u64_at(bytes, 10);
    let payload = &bytes[HEADER_LEN..];
    let pcrc = crc32(payload);
    let want = u32_at(bytes, 26);
    if pcrc != want {
        return Err(CheckpointError::Corrupt {
            region: "payload",
            start: HEADER_LEN as u64,
            end: got,
            expected: want,
            found: pcrc,
        });
    }
    let p: PayloadV1 =
        rmp_serde::from_slice(payload).map_err(|e| CheckpointError::Decode(e.into()))?;
    let payload_hash = config_hash(p.state.learner_config());
    if payload_hash != hash {
        return Err(CheckpointError::HashMismatch {
            header: hash,
            payload: payload_hash,
        });
    }
    check_counters(&p.state)?;
    let mut probe = p.state.clone();
    probe.config.background = false;
    Pipeline::restore(probe).map_err(CheckpointError::Invalid)?;
    Ok(Checkpoint {
        version: 1,
        config_hash: hash,
        size: got,
        meta: p.meta,
        state: p.state,
    })
}

/// Refuses a state whose counters exceed [`MAX_COUNTER`]: a run resumed from it would
/// overflow them (an output index of `u64::MAX` restarts at 0).
fn check_counters(state: &PipelineState) -> Result<(), CheckpointError> {
    let mut counters = vec![("events", state.events()), ("anomalies", state.anomalies)];
    if let Some(inner) = &state.inner {
        let l = &inner.learner;
        counters.extend([
            ("updates", l.trainer.updates),
            ("rejected updates", l.trainer.rejected),
            ("skipped updates", l.skipped),
            ("optimizer steps", l.trainer.optimizer.steps()),
        ]);
    }
    match counters.into_iter().find(|(_, v)| *v > MAX_COUNTER) {
        Some((counter, value)) => Err(CheckpointError::CounterOutOfRange {
            counter,
            value,
            max: MAX_COUNTER,
        }),
        None => Ok(()),
    }
}

/// Reads and checks the checkpoint at `path` ([`decode`]), safely whatever is there: a
/// path that is not a regular file (after following symlinks: a FIFO, `/dev/zero`, a
/// directory) is refused without reading it; the header is read and checked first, then
/// exactly the payload length it announces (at most [`MAX_PAYLOAD`]), so that a large file
/// that is not a checkpoint costs 34 bytes of reading.
///
/// # Errors
/// [`CheckpointError::Io`] if the file cannot be opened or read,
/// [`CheckpointError::NotAFile`], else as [`decode`].
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(io(path))?;
    regular(path, &meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Should the path become a FIFO after the check, opening it must not wait for a writer.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let mut file = options.open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    regular(path, &meta)?;
    let got = meta.len();
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    check_header(&bytes, got)?;
    // The header says the file is `HEADER_LEN + len` bytes and `len <= MAX_PAYLOAD`.
    let total = usize::try_from(got).map_err(|_| CheckpointError::TooLarge {
        len: got,
        max: MAX_PAYLOAD,
    })?;
    bytes.resize(total, 0);
    file.read_exact(&mut bytes[HEADER_LEN..])
        .map_err(io(path))?;
    decode_v1(&bytes)
}

/// Refuses anything but a regular file.
fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), CheckpointError> {
    if meta.is_file() {
        return Ok(());
    }
    let t = meta.file_type();
    let kind = if t.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        }
        #[cfg(not(unix))]
        "not a regular file"
    };
    Err(CheckpointError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// The path of the `n`-th older checkpoint: `PATH.n` (`PATH` itself for 0).
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder of `path` (`.` for a bare file name).
fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary file a write to `path` goes through: `.NAME.tmp.PID` in the same folder.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    folder(path).join(format!(".{name}.tmp.{}", std::process::id()))
}

/// Removes temporary files `.NAME.tmp.*` left next to `path` by a crashed writer.
fn remove_stale_temps(path: &Path) {
    let Some(name) = path.file_name() else { return };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(folder(path)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically, keeping `keep` files in all: the previous `PATH`
/// becomes `PATH.1`, `PATH.1` becomes `PATH.2`, ... up to `PATH.{keep-1}`.
///
/// Steps: write `.NAME.tmp.PID` in the same folder and `fsync` it; shift the older files,
/// oldest first, each in one rename (`PATH.{i}` is replaced by a hard link, or a copy, of
/// `PATH.{i-1}`, made at a temporary name first); `rename` the temporary file over `PATH`;
/// `fsync` the folder. A crash at any point leaves a complete checkpoint at `PATH` (the old
/// or the new one) and at each `PATH.{i}` that existed before, at worst plus stale
/// temporary files that the next writer removes.
///
/// # Errors
/// [`CheckpointError::Io`] naming the file or folder that failed; the temporary file is
/// removed then.
pub fn write_atomic(path: &Path, bytes: &[u8], keep: usize) -> Result<(), CheckpointError> {
    let tmp = temp_path(path);
    let result = write_then_rename(path, &tmp, bytes, keep.max(1));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    keep: usize,
) -> Result<(), CheckpointError> {
    {
        let mut f = std::fs::File::create(tmp).map_err(io(tmp))?;
        f.write_all(bytes).map_err(io(tmp))?;
        f.sync_all().map_err(io(tmp))?;
    }
    if keep > 1 && path.exists() {
        // Oldest first: `PATH.{i}` is replaced by a link to `PATH.{i-1}` in one rename, so
        // that every generation that exists keeps existing at every instant (the old file
        // until the rename, the newer one after).
        for i in (1..keep).rev() {
            let from = rotated(path, i - 1);
            if from.exists() {
                replace_with_link(&from, &rotated(path, i), tmp)?;
            }
        }
    }
    std::fs::rename(tmp, path).map_err(io(path))?;
    let dir = folder(path);
    // Directories can be opened and synced on Unix; elsewhere the rename is what we have.
    #[cfg(unix)]
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(())
}

/// Makes `to` a hard link to `from` (a copy where links are not supported) without a moment
/// where `to` is missing: the link is made at a temporary name next to `tmp`, then renamed
/// over `to`.
fn replace_with_link(from: &Path, to: &Path, tmp: &Path) -> Result<(), CheckpointError> {
    let mut name = tmp.as_os_str().to_owned();
    name.push(".link");
    let link = PathBuf::from(name);
    let _ = std::fs::remove_file(&link);
    if std::fs::hard_link(from, &link).is_err() {
        std::fs::copy(from, &link).map_err(io(&link))?;
    }
    std::fs::rename(&link, to).map_err(|e| {
        let _ = std::fs::remove_file(&link);
        io(to)(e)
    })
}

/// The lock file of a checkpoint path: `PATH.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// An exclusive lock on a checkpoint path, held as long as the value lives (a [`Writer`]
/// holds one): an advisory `flock` on `PATH.lock`, which records the holder's process id.
/// The kernel releases it when the process ends, however it ends; the file itself stays.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of checkpoint path `path` without waiting.
    ///
    /// # Errors
    /// [`CheckpointError::Locked`] if another process (or another [`Lock`] in this one)
    /// holds it, [`CheckpointError::Io`] if the lock file cannot be created.
    pub fn acquire(path: &Path) -> Result<Lock, CheckpointError> {
        use std::io::{Read, Seek};
        let lock = lock_path(path);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io(&lock))?;
        #[cfg(unix)]
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(CheckpointError::Locked {
                    path: path.to_path_buf(),
                    lock,
                    holder: text.trim().parse().ok(),
                });
            }
            Err(e) => return Err(io(&lock)(e.into())),
        }
        // Best effort: the pid only serves the message of a refused second writer.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Lock {
            _file: file,
            path: lock,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Checks that `requested` could continue a run saved with `saved`: every setting that shapes
/// the model, its training, the normalization and the anomaly statistics must be equal. The
/// anomaly threshold, the background flag and the sizes fixed by the first event are not
/// compared.
///
/// # Errors
/// [`CheckpointError::ConfigMismatch`] naming the first differing setting by its flag.
pub fn check_compatible(
    saved: &PipelineConfig,
    requested: &PipelineConfig,
) -> Result<(), CheckpointError> {
    fn show<V: Serialize>(v: &V) -> String {
        let s = serde_json::to_string(v).unwrap_or_default();
        s.trim_matches('"').to_string()
    }
    fn cmp<V: Serialize + PartialEq>(
        field: &'static str,
        a: &V,
        b: &V,
    ) -> Result<(), CheckpointError> {
        if a == b {
            Ok(())
        } else {
            Err(CheckpointError::ConfigMismatch {
                field,
                checkpoint: show(a),
                requested: show(b),
            })
        }
    }
    let (a, b) = (&saved.learner, &requested.learner);
    cmp("--cell", &a.cell, &b.cell)?;
    cmp("--hidden", &a.d_hidden, &b.d_hidden)?;
    cmp("--layers", &a.layers, &b.layers)?;
    cmp("--window (T)", &a.max_window(), &b.max_window())?;
    cmp(
        "-T auto (--t-min, --t-tolerance)",
        &a.trainer.auto_truncation(),
        &b.trainer.auto_truncation(),
    )?;
    cmp("--every (k)", &a.trainer.every, &b.trainer.every)?;
    cmp("--loss-steps", &a.trainer.loss_steps, &b.trainer.loss_steps)?;
    cmp("--loss", &a.trainer.loss, &b.trainer.loss)?;
    cmp("--opt/--lr", &a.trainer.optimizer, &b.trainer.optimizer)?;
    cmp("--clip", &a.trainer.clip, &b.trainer.clip)?;
    cmp("--seed", &a.seed, &b.seed)?;
    cmp("normalization", &saved.normalize, &requested.normalize)?;
    cmp(
        "--predict/--no-combine/--forecast",
        &saved.forecast,
        &requested.forecast,
    )?;
    cmp(
        "--anomaly-halflife",
        &saved.anomaly.half_life,
        &requested.anomaly.half_life,
    )?;
    cmp(
        "anomaly warm-up",
        &saved.anomaly.warmup,
        &requested.anomaly.warmup,
    )?;
    cmp("--anomaly", &saved.anomaly.kind, &requested.anomaly.kind)?;
    cmp(
        "anomaly likelihood settings",
        &saved.anomaly.likelihood,
        &requested.anomaly.likelihood,
    )?;
    Ok(())
}

/// Counters of a [`Writer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStats {
    /// Checkpoints written.
    pub written: u64,
    /// Checkpoints not taken because the writer was still busy with the previous one.
    pub skipped: u64,
    /// Writes that failed (logged).
    pub failed: u64,
}

/// Writes checkpoints on its own thread: [`Writer::try_submit`] hands over serialized bytes
/// through a channel of capacity 1 and returns at once; when a write is still in progress the
/// checkpoint is skipped and counted. [`Writer::finish`] writes a last one and waits.
/// Starting a writer removes temporary files a crashed writer left next to the path.
pub struct Writer {
    _lock: Lock,
    path: PathBuf,
    keep: usize,
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
    handle: Option<std::thread::JoinHandle<(u64, u64)>>,
    skipped: u64,
}

impl Writer {
    /// Starts the writer thread for `path`, keeping `keep` files. First takes the path's
    /// [`Lock`] (held until the writer is dropped), then checks that the folder exists and a
    /// file can be created in it.
    ///
    /// # Errors
    /// [`CheckpointError::Locked`] if another process writes checkpoints to `path`,
    /// [`CheckpointError::Io`] if the lock or temporary file cannot be created or the thread
    /// cannot start.
    pub fn spawn(path: &Path, keep: usize) -> Result<Self, CheckpointError> {
        let lock = Lock::acquire(path)?;
        remove_stale_temps(path);
        let tmp = temp_path(path);
        std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let _ = std::fs::remove_file(&tmp);
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1);
        let (p, k) = (path.to_path_buf(), keep);
        let handle = std::thread::Builder::new()
            .name("tbptt-checkpoint".into())
            .spawn(move || {
                let (mut written, mut failed) = (0u64, 0u64);
                for bytes in rx.iter() {
                    match write_atomic(&p, &bytes, k) {
                        Ok(()) => written += 1,
                        Err(e) => {
                            failed += 1;
                            if failed <= 10 || failed % 100 == 0 {
                                tracing::error!("{e} (checkpoint not written; {failed} failed)");
                            }
                        }
                    }
                }
                (written, failed)
            })
            .map_err(io(path))?;
        Ok(Writer {
            _lock: lock,
            path: path.to_path_buf(),
            keep,
            tx: Some(tx),
            handle: Some(handle),
            skipped: 0,
        })
    }

    /// The checkpoint path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a checkpoint can be handed over now: none is waiting (one may still be in the
    /// middle of its write, so at most two exist at a time).
    pub fn is_idle(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.is_empty())
    }

    /// Hands `bytes` to the writer thread; `false` (and counted as skipped) if it is busy.
    pub fn try_submit(&mut self, bytes: Vec<u8>) -> bool {
        let ok = self.tx.as_ref().is_some_and(|t| t.try_send(bytes).is_ok());
        if !ok {
            self.skipped += 1;
        }
        ok
    }

    /// Hands `bytes` to the writer thread, waiting while an earlier checkpoint is still
    /// queued (so that none is skipped: a deterministic run checkpoints at exact event
    /// counts). `false` if the thread is gone.
    pub fn submit(&mut self, bytes: Vec<u8>) -> bool {
        self.tx.as_ref().is_some_and(|t| t.send(bytes).is_ok())
    }

    /// Lets the pending write finish, writes `last` (if any) synchronously and stops the
    /// thread.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] if the last checkpoint cannot be written.
    pub fn finish(mut self, last: Option<&[u8]>) -> Result<WriterStats, CheckpointError> {
        self.tx = None;
        let (mut written, failed) = match self.handle.take().map(|h| h.join()) {
            Some(Ok(counts)) => counts,
            _ => (0, 1),
        };
        if let Some(bytes) = last {
            write_atomic(&self.path, bytes, self.keep)?;
            written += 1;
        }
        Ok(WriterStats {
            written,
            skipped: self.skipped,
            failed,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn pipeline(events: usize) -> Pipeline {
        let mut config = PipelineConfig::default();
        config.learner.d_hidden = 4;
        config.learner.trainer.truncation = crate::Truncation::Fixed(4);
        config.learner.trainer.every = 2;
        let mut p = Pipeline::new(config).unwrap();
        let mut ev = Event::new();
        for t in 0..events {
            ev.values.clear();
            ev.values.push((t as f64 * 0.4).sin() * 10.0 + 50.0);
            p.process(&ev).unwrap();
        }
        p
    }

    #[test]
    fn crc_and_fnv_match_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn round_trip_and_header_fields() {
        let mut p = pipeline(40);
        let s = p.snapshot().unwrap();
        let bytes = encode(&s).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(u16_at(&bytes, 8), VERSION);
        assert_eq!(u64_at(&bytes, 18) as usize, bytes.len() - HEADER_LEN);
        let c = decode(&bytes).unwrap();
        assert_eq!(c.state, s);
        assert_eq!(c.config_hash, config_hash(s.learner_config()));
        assert_eq!(c.size, bytes.len() as u64);
        // An empty pipeline (no event yet) round-trips too.
        let mut empty = Pipeline::new(PipelineConfig::default()).unwrap();
        let e = empty.snapshot().unwrap();
        assert_eq!(decode(&encode(&e).unwrap()).unwrap().state, e);
    }

    #[test]
    fn rotation_keeps_the_last_files() {
        let dir = std::env::temp_dir().join(format!("tbptt-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ck");
        for i in 0..5u8 {
            write_atomic(&path, &[i], 3).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), [4]);
        assert_eq!(std::fs::read(rotated(&path, 1)).unwrap(), [3]);
        assert_eq!(std::fs::read(rotated(&path, 2)).unwrap(), [2]);
        assert!(!rotated(&path, 3).exists());
        assert!(!temp_path(&path).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn mismatched_settings_are_named() {
        let a = PipelineConfig::default();
        let mut b = a.clone();
        b.learner.cell = crate::CellKind::Lstm;
        let e = check_compatible(&a, &b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint does not match the requested configuration: --cell is gru in the \
             checkpoint but lstm was requested"
        );
        let mut b = a.clone();
        b.learner.d_hidden = 64;
        assert!(matches!(
            check_compatible(&a, &b),
            Err(CheckpointError::ConfigMismatch {
                field: "--hidden",
                ..
            })
        ));
        let mut b = a.clone();
        b.anomaly.threshold = 9.0;
        b.background = true;
        assert!(check_compatible(&a, &b).is_ok());
    }
}
