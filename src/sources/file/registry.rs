//! The files the source knows, by identity, and the [`Checkpointer`] that writes their
//! committed offsets.
//!
//! A tailer publishes its file's current fingerprint, ack tracker and path in a [`Shared`]
//! slot; the registry keeps that slot after the tailer ends (a renamed file may be found again
//! under a matching name, and its in-flight acks still land in the same tracker). The
//! checkpoint offset is always `AckTracker::committed()`: it never passes an event AWS has
//! not taken. This file never reads a log file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::checkpoint::{self, Checkpoint, CheckpointError};
use super::fingerprint::{FileId, Fingerprint};
use crate::pipeline::ack::AckTracker;

/// How long a checkpoint of a file no longer seen is kept: 7 days.
const KEEP_UNSEEN_MS: i64 = 7 * 24 * 3600 * 1000;

/// One file's state as its tailer last published it.
#[derive(Debug)]
pub struct FileState {
    /// Its identity now (the head widens as the file grows; a truncation replaces it).
    pub fingerprint: Fingerprint,
    /// The acks of its current generation.
    pub tracker: Arc<AckTracker>,
    /// The path it was found at by a glob. A renamed file keeps it: on restart the file is
    /// looked for by its fingerprint beside this path.
    pub path: PathBuf,
}

/// A [`FileState`] shared by a tailer and the registry.
pub type Shared = Arc<Mutex<FileState>>;

/// Locks a shared slot; a poisoned lock still holds consistent plain data.
pub fn lock(shared: &Shared) -> MutexGuard<'_, FileState> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A known file.
#[derive(Debug)]
pub struct Entry {
    /// Its published state.
    pub state: Shared,
    /// A tailer is reading it now.
    pub running: bool,
    /// Where its last tailer stopped reading (a new tailer resumes there).
    pub read_offset: u64,
    /// It was deleted: dropped once its acks are all in.
    pub deleted: bool,
}

/// Every known file, plus loaded checkpoints not matched to a file yet.
#[derive(Debug, Default)]
pub struct Registry {
    /// Known files by device + inode.
    pub files: HashMap<FileId, Entry>,
    /// Checkpoints read at start that no file claimed (yet).
    pub unclaimed: Vec<Checkpoint>,
}

impl Registry {
    /// The checkpoints to write now; forgets deleted files whose acks are all in and
    /// unclaimed checkpoints older than a week.
    pub fn snapshot(&mut self, now_ms: i64) -> Vec<Checkpoint> {
        let mut idle = Vec::new();
        self.files.retain(|_, e| {
            let settled = !e.running && lock(&e.state).tracker.outstanding() == 0;
            if settled && !e.deleted {
                // Renamed away and fully acked: keep only its checkpoint, in case the file
                // is found again (or cloudtail restarts) before it expires.
                let state = lock(&e.state);
                idle.push(Checkpoint {
                    fingerprint: state.fingerprint,
                    offset: state.tracker.committed(),
                    path: state.path.clone(),
                    updated_ms: now_ms,
                });
            }
            !settled
        });
        self.unclaimed.extend(idle);
        self.unclaimed
            .retain(|c| now_ms.saturating_sub(c.updated_ms) < KEEP_UNSEEN_MS);
        let mut list: Vec<Checkpoint> = self
            .files
            .values()
            .filter(|e| !e.deleted)
            .map(|e| {
                let state = lock(&e.state);
                Checkpoint {
                    fingerprint: state.fingerprint,
                    offset: state.tracker.committed(),
                    path: state.path.clone(),
                    updated_ms: now_ms,
                }
            })
            .collect();
        list.extend(self.unclaimed.iter().cloned());
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }

    /// Takes the unclaimed checkpoint whose file `file` is, if any.
    pub fn claim(&mut self, file: &std::fs::File, id: FileId) -> Option<Checkpoint> {
        let index = self
            .unclaimed
            .iter()
            .position(|c| c.fingerprint.id == id && c.fingerprint.matches(file).unwrap_or(false))?;
        Some(self.unclaimed.swap_remove(index))
    }
}

/// Writes the registry's checkpoints to `state_dir`. Cheap to clone; every clone writes the
/// same file. The file source saves every second while it runs and once when it stops;
/// [`flush_final`](Checkpointer::flush_final) is the one after the sink has drained.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    registry: Arc<Mutex<Registry>>,
    dir: PathBuf,
    /// One writer at a time: the temp file is shared.
    write: Arc<tokio::sync::Mutex<()>>,
}

impl Checkpointer {
    pub(crate) fn new(registry: Arc<Mutex<Registry>>, dir: &Path) -> Self {
        Checkpointer {
            registry,
            dir: dir.to_owned(),
            write: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Writes the committed offsets now (on a blocking thread: it fsyncs).
    pub async fn save(&self) -> Result<(), CheckpointError> {
        let _writer = self.write.lock().await;
        let list = {
            let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            registry.snapshot(chrono::Utc::now().timestamp_millis())
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || checkpoint::save(&dir, &list))
            .await
            .unwrap_or_else(|e| {
                Err(CheckpointError::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other(e),
                })
            })
    }

    /// The last write, to call after the logs pipeline has drained (every batch acked or
    /// dropped at the shutdown deadline): what AWS took by then is what the next start skips.
    pub async fn flush_final(&self) -> Result<(), CheckpointError> {
        self.save().await
    }

    /// The committed offset of the file with this identity (tests and status).
    pub fn committed(&self, id: FileId) -> Option<u64> {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let entry = registry.files.get(&id)?;
        let committed = lock(&entry.state).tracker.committed();
        Some(committed)
    }
}
