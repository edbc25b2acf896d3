//! The state store of many keyed series: one embedded database file holding each series'
//! state under its key.
//!
//! The database is [redb](https://docs.rs/redb): pure Rust (no C library to build), a single
//! file, ACID transactions with copy-on-write B-trees and a checksummed commit, so a process
//! killed at any moment leaves the file at its last committed transaction. SQLite (through
//! rusqlite) would serve as well but brings a C build; a log of checkpoint files would have
//! to reinvent the atomic multi-key commit.
//!
//! Each value is a whole [`checkpoint`] payload (magic, version, CRC-32s, the MessagePack
//! state), so a damaged entry is refused with the checkpoint's own error, naming the key. A
//! write is one transaction that replaces the series that changed and removes the ones that
//! expired: after a crash every series loads, at the state of the last commit.
//!
//! The store also keeps the settings every series was created with (the template), and
//! refuses to open for a run whose settings differ (by the flag's name, as a checkpoint
//! does).

use crate::detect::pipeline::{PipelineConfig, PipelineState};
use crate::io::checkpoint::{self, CheckpointError};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};

const SERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("series");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TEMPLATE: &str = "template";

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("state store {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The database's error.
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// A read, write or commit failed.
    #[error("state store {}: {source}", path.display())]
    Db {
        /// The file.
        path: PathBuf,
        /// The database's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored series' state does not decode.
    #[error("state store {}: series {key:?}: {source}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// The series.
        key: String,
        /// Why it does not decode.
        #[source]
        source: CheckpointError,
    },
    /// Creating the store's file failed (its staging file could not be removed, renamed or
    /// made durable).
    #[error("state store {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's series were created with other settings.
    #[error("state store {}: {source}", path.display())]
    Settings {
        /// The file.
        path: PathBuf,
        /// The first differing setting.
        #[source]
        source: CheckpointError,
    },
}

fn boxed(e: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(e.into())
}

/// An open state store (see the module docs). Shared by reference between threads: reads run
/// concurrently, writes one at a time.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store at `path`, creating it if missing, for series made from `template`.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the file cannot be opened (another process holds it, it is not
    /// a database), [`StoreError::Settings`] if it was written with other settings,
    /// [`StoreError::Db`] if a read or the first write fails, [`StoreError::Io`] if a new
    /// store's file cannot be put in place.
    pub fn open(path: &Path, template: &PipelineConfig) -> Result<Store, StoreError> {
        if !path.exists() {
            return Store::create_new(path, template);
        }
        let store = Store::open_db(path, Database::create(path))?;
        match store.template()? {
            Some(saved) => checkpoint::check_compatible(&saved, template).map_err(|source| {
                StoreError::Settings {
                    path: store.path.clone(),
                    source,
                }
            })?,
            None => store.save_template(template)?,
        }
        Ok(store)
    }

    /// Creates a new store at `path` in one step: the database is made under a staging
    /// name beside it (`<file>.creating`), its settings committed, and only then renamed to
    /// `path`. A process killed while creating leaves no `path` at all (redb writes its
    /// header after creating the file, so a kill in between would leave a file that is not
    /// yet a database), and the next run starts afresh.
    fn create_new(path: &Path, template: &PipelineConfig) -> Result<Store, StoreError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".creating");
        let staging = path.with_file_name(name);
        let io_err = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
        let store = Store::open_db(&staging, Database::create(&staging))?;
        store.save_template(template)?;
        std::fs::rename(&staging, path).map_err(io_err)?;
        // Make the rename itself durable: fsync the directory that holds the entry.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err)?;
        }
        Ok(Store {
            db: store.db,
            path: path.to_path_buf(),
        })
    }

    fn open_db(
        path: &Path,
        db: Result<Database, redb::DatabaseError>,
    ) -> Result<Store, StoreError> {
        let db = db.map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Commits the settings of a new store, with its empty series table.
    fn save_template(&self, template: &PipelineConfig) -> Result<(), StoreError> {
        let json = serde_json::to_vec(template).map_err(|e| StoreError::Settings {
            path: self.path.clone(),
            source: CheckpointError::Encode(e.into()),
        })?;
        self.commit(|tx| {
            tx.open_table(SERIES).map_err(boxed)?;
            tx.open_table(META)
                .map_err(boxed)?
                .insert(TEMPLATE, json.as_slice())
                .map_err(boxed)?;
            Ok(())
        })
    }

    /// Opens an existing store whatever its settings (to inspect it).
    ///
    /// # Errors
    /// [`StoreError::Open`] if the file is missing, held by another process or not a
    /// database.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Store::open_db(path, Database::open(path))
    }

    /// The settings the store's series were created with; `None` for an empty store.
    ///
    /// # Errors
    /// As a read.
    pub fn settings(&self) -> Result<Option<PipelineConfig>, StoreError> {
        self.template()
    }

    /// Whether `bytes` (a file's start) look like a store file.
    pub fn sniff(bytes: &[u8]) -> bool {
        bytes.starts_with(b"redb")
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Runs `f` in one write transaction and commits it durably (fsync).
    fn commit(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), Box<redb::Error>>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        f(&tx).map_err(|source| StoreError::Db {
            path: self.path.clone(),
            source,
        })?;
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// The settings the store's series were created with; `None` for a new store.
    fn template(&self) -> Result<Option<PipelineConfig>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.db_err(e)),
        };
        let Some(v) = table.get(TEMPLATE).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Settings {
                path: self.path.clone(),
                source: CheckpointError::Decode(e.into()),
            })
    }

    /// The stored bytes of series `key`, if any (a [`checkpoint::encode`] payload).
    ///
    /// # Errors
    /// [`StoreError::Db`] if the read fails.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(SERIES).map_err(|e| self.db_err(e))?;
        let v = table.get(key).map_err(|e| self.db_err(e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    /// The stored state of series `key`, if any.
    ///
    /// # Errors
    /// [`StoreError::Db`] if the read fails, [`StoreError::Entry`] if the entry does not
    /// decode.
    pub fn get(&self, key: &str) -> Result<Option<PipelineState>, StoreError> {
        match self.get_bytes(key)? {
            None => Ok(None),
            Some(b) => self.decode(key, &b).map(Some),
        }
    }

    /// Decodes an entry of series `key`.
    ///
    /// # Errors
    /// [`StoreError::Entry`] naming the key.
    pub fn decode(&self, key: &str, bytes: &[u8]) -> Result<PipelineState, StoreError> {
        checkpoint::decode(bytes)
            .map(|c| c.state)
            .map_err(|source| StoreError::Entry {
                path: self.path.clone(),
                key: key.to_string(),
                source,
            })
    }

    /// Replaces the entries of `puts` and removes those of `removes`, in one durable
    /// transaction: after a crash either all of it or none of it is in the file.
    ///
    /// # Errors
    /// [`StoreError::Db`] if the write or the commit fails (nothing is changed).
    pub fn write<'a>(
        &self,
        puts: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        removes: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        self.commit(|tx| {
            let mut t = tx.open_table(SERIES).map_err(boxed)?;
            for (k, v) in puts {
                t.insert(k, v).map_err(boxed)?;
            }
            for k in removes {
                t.remove(k).map_err(boxed)?;
            }
            Ok(())
        })
    }

    /// Series stored.
    ///
    /// # Errors
    /// [`StoreError::Db`] if the read fails.
    pub fn len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(SERIES).map_err(|e| self.db_err(e))?;
        table.len().map_err(|e| self.db_err(e))
    }

    /// Whether no series is stored.
    ///
    /// # Errors
    /// [`StoreError::Db`] if the read fails.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.len().map(|n| n == 0)
    }

    /// Calls `f` with each stored key and its bytes, in key order; stops at `f`'s first
    /// error.
    ///
    /// # Errors
    /// [`StoreError::Db`] if a read fails, or `f`'s error.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(SERIES).map_err(|e| self.db_err(e))?;
        for entry in table.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::pipeline::Pipeline;
    use crate::event::Event;

    fn state(n: usize, seed: u64) -> PipelineState {
        let mut config = PipelineConfig::default();
        config.learner.seed = seed;
        config.learner.d_hidden = 4;
        let mut p = Pipeline::new(config).unwrap();
        let mut ev = Event::new();
        for t in 0..n {
            ev.clear();
            ev.values.push((t as f64 * 0.3).sin());
            p.process(&ev).unwrap();
        }
        p.snapshot().unwrap()
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tbptt-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_new_store_appears_whole_and_a_killed_creation_is_started_afresh() {
        let d = dir("create");
        let path = d.join("s.redb");
        // What a process killed between creating the file and writing redb's header leaves.
        let staging = d.join("s.redb.creating");
        std::fs::write(&staging, vec![0u8; 4096]).unwrap();
        let template = state(1, 1).config;
        let store = Store::open(&path, &template).unwrap();
        assert!(!staging.exists(), "the staging file is renamed into place");
        assert_eq!(store.path(), path);
        let mut head = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::open(&path).unwrap(), &mut head).unwrap();
        assert!(
            Store::sniff(&head),
            "the file at the path is a database from the start"
        );
        assert_eq!(store.settings().unwrap(), Some(template.clone()));
        let e = checkpoint::encode(&state(10, 1)).unwrap();
        store.write([("a", e.as_slice())], []).unwrap();
        drop(store);
        let store = Store::open(&path, &template).unwrap();
        assert_eq!(store.len().unwrap(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_round_trip_and_removals_are_atomic_with_puts() {
        let d = dir("roundtrip");
        let path = d.join("s.redb");
        let template = state(1, 1).config;
        let store = Store::open(&path, &template).unwrap();
        assert!(store.is_empty().unwrap());
        let (a, b) = (state(50, 1), state(70, 1));
        let (ea, eb) = (
            checkpoint::encode(&a).unwrap(),
            checkpoint::encode(&b).unwrap(),
        );
        store
            .write([("a", ea.as_slice()), ("b", eb.as_slice())], [])
            .unwrap();
        assert_eq!(store.len().unwrap(), 2);
        assert_eq!(store.get("a").unwrap().unwrap(), a);
        store.write([], ["a"]).unwrap();
        drop(store);
        // Reopened: the last commit is there.
        let store = Store::open(&path, &template).unwrap();
        assert!(store.get("a").unwrap().is_none());
        assert_eq!(store.get("b").unwrap().unwrap(), b);
        let mut keys = Vec::new();
        store
            .for_each(|k, _| {
                keys.push(k.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(keys, ["b"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn other_settings_and_damaged_entries_are_refused_by_name() {
        let d = dir("refuse");
        let path = d.join("s.redb");
        let template = state(1, 1).config;
        let store = Store::open(&path, &template).unwrap();
        let mut bytes = checkpoint::encode(&state(40, 1)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        store.write([("host-a", bytes.as_slice())], []).unwrap();
        let e = store.get("host-a").unwrap_err().to_string();
        assert!(e.contains("\"host-a\"") && e.contains("corrupt"), "{e}");
        drop(store);
        let mut other = template.clone();
        other.learner.d_hidden = 8;
        let e = Store::open(&path, &other).unwrap_err().to_string();
        assert!(e.contains("hidden"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
