//! The disk spill: where a datagram pipeline puts documents that found no memory, so a long
//! AWS outage costs disk instead of data.
//!
//! The spill is a directory of append-only files (`<id>.spill`, ids increasing), each a run of
//! checksummed records (`spill/record.rs`). Sources [`Spill::append`]; one replay task
//! ([`replay`]) reads the oldest record, waits for budget for it, and only then removes it from
//! the spill, so a document is always either on disk or holding budget. Once a source has
//! spilled, it keeps spilling until the replay caught up: documents reach AWS in the order they
//! arrived, and the replay gets the memory first when AWS comes back.
//!
//! The spill never exceeds its cap: when full, whole files are dropped oldest first and their
//! records counted. A record that does not check out (a torn tail after a crash, a corrupt
//! block) is skipped, counted and logged, never fatal. A file is deleted once read to its end,
//! and the read position is saved in `cursor` every second and when the replay stops, so after
//! a crash at most a second of replayed records is sent again (at-least-once).
//! Records are written with one `write` each, straight to the file (no user-space buffer), so
//! a killed process loses nothing it had spilled. The spill never talks to AWS.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::budget::{Budget, Permit};

mod record;
#[cfg(test)]
mod tests;

pub use record::MAX_PAYLOAD_BYTES;
use record::{HEADER_BYTES, MAGIC};

/// The largest spill file: reading it again after a crash is the most a crash can duplicate.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// The smallest spill file, so a tiny cap still holds a few records per file.
const MIN_FILE_BYTES: u64 = 64 << 10;
/// How often an idle replay looks at the spill even without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often the read position is saved while replaying.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// The file holding the read position: `<file id> <offset>`.
const CURSOR_FILE: &str = "cursor";

/// What the spill did, read at scrape time (`/metrics`).
#[derive(Debug, Default)]
pub struct SpillCounters {
    /// Records written.
    pub written: AtomicU64,
    /// Records read back and handed to the pipeline.
    pub replayed: AtomicU64,
    /// Records dropped unread because the spill was full (oldest first).
    pub dropped: AtomicU64,
    /// Corrupt or torn stretches skipped while reading.
    pub corrupt: AtomicU64,
    /// Bytes on disk now.
    pub bytes: AtomicU64,
}

/// One spill file.
#[derive(Debug)]
struct SpillFile {
    id: u64,
    /// Bytes written (the reader never reads past them).
    bytes: u64,
    /// Valid records not yet replayed.
    unread: u64,
}

/// The files, the open writer and the read position; behind the [`Spill`]'s lock.
#[derive(Debug)]
struct State {
    dir: PathBuf,
    cap_bytes: u64,
    file_bytes: u64,
    /// Oldest first; the writer appends to the last one when `writer` is open.
    files: VecDeque<SpillFile>,
    writer: Option<File>,
    /// The front file, opened for reading.
    reader: Option<(u64, File)>,
    /// Where the next record of the front file starts.
    read_offset: u64,
    /// Where the record last returned by `peek` ends, and in which file.
    peeked: Option<(u64, u64)>,
    /// Inside a corrupt stretch: counted once, however many bad headers it holds.
    in_corrupt: bool,
    next_id: u64,
    total_bytes: u64,
    scratch: Vec<u8>,
    /// The last append failed: the next failure is not logged again.
    write_failing: bool,
    /// When the read position was last saved.
    cursor_saved: Instant,
}

/// A capped on-disk queue of documents for one pipeline. Shared by its source(s) (appending)
/// and its replay task (reading).
#[derive(Debug)]
pub struct Spill {
    state: Mutex<State>,
    /// Valid records on disk not yet replayed; sources read it without the lock.
    pending: AtomicU64,
    appended: Notify,
    counters: Arc<SpillCounters>,
}

/// What reading at one offset found.
enum Read {
    Record(Vec<u8>, u64),
    /// Not a record; the next possible one starts at this offset (the end if none).
    Corrupt(u64),
}

impl Spill {
    /// Opens (creating it if needed) the spill in `dir`, capped at `cap_bytes`, and counts the
    /// records left by an earlier run; they are replayed first.
    pub fn open(dir: &Path, cap_bytes: u64) -> io::Result<Spill> {
        fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| spill_id(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_unstable();
        let cursor = read_cursor(dir);
        let mut files = VecDeque::new();
        let mut read_offset = 0;
        for id in &ids {
            let path = file_path(dir, *id);
            if cursor.is_some_and(|(read, _)| *id < read) {
                // Read to its end before the stop; only its deletion was missed.
                let _ = fs::remove_file(&path);
                continue;
            }
            let file = File::open(&path)?;
            let bytes = file.metadata()?.len();
            let from = match cursor {
                Some((read, offset)) if read == *id && files.is_empty() => offset.min(bytes),
                _ => 0,
            };
            read_offset = read_offset.max(from);
            files.push_back(SpillFile {
                id: *id,
                bytes,
                unread: count_records(&file, from, bytes),
            });
        }
        let pending = files.iter().map(|f| f.unread).sum();
        let total_bytes = files.iter().map(|f| f.bytes).sum();
        let counters = Arc::new(SpillCounters::default());
        counters.bytes.store(total_bytes, Ordering::Relaxed);
        if pending > 0 {
            tracing::info!(records = pending, bytes = total_bytes, dir = %dir.display(), "Spilled documents found; they are sent first.");
        }
        let state = State {
            dir: dir.to_owned(),
            cap_bytes,
            file_bytes: (cap_bytes / 16).clamp(MIN_FILE_BYTES, MAX_FILE_BYTES),
            files,
            writer: None,
            reader: None,
            read_offset,
            peeked: None,
            in_corrupt: false,
            next_id: ids.last().map_or(1, |id| id + 1),
            total_bytes,
            scratch: Vec::new(),
            write_failing: false,
            cursor_saved: Instant::now(),
        };
        Ok(Spill {
            state: Mutex::new(state),
            pending: AtomicU64::new(pending),
            appended: Notify::new(),
            counters,
        })
    }

    /// The counters, for `/metrics`.
    pub fn counters(&self) -> Arc<SpillCounters> {
        Arc::clone(&self.counters)
    }

    /// Whether records wait on disk: a source then spills what it gets, to keep the order.
    pub fn is_backlogged(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
    }

    /// Writes `payload` as the newest record, dropping the oldest files if the spill is full.
    /// `false` when it could not be written (too large, disk error): the caller counts the loss.
    pub fn append(&self, payload: &[u8]) -> bool {
        let mut state = self.lock();
        let record_bytes = (HEADER_BYTES + payload.len()) as u64;
        if payload.len() > MAX_PAYLOAD_BYTES || record_bytes > state.cap_bytes {
            return false;
        }
        let evicted = state.make_room(record_bytes);
        self.forget(evicted);
        if let Err(error) = state.write(payload, record_bytes) {
            if !state.write_failing {
                tracing::warn!(%error, dir = %state.dir.display(), "Cannot write to the disk spill; documents are dropped and counted.");
            }
            state.write_failing = true;
            return false;
        }
        state.write_failing = false;
        self.counters
            .bytes
            .store(state.total_bytes, Ordering::Relaxed);
        drop(state);
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.counters.written.fetch_add(1, Ordering::Relaxed);
        self.appended.notify_one();
        true
    }

    /// The oldest record, left in the spill until [`Spill::commit`]; `None` when all was read.
    /// Corrupt stretches met on the way are skipped and counted; files read to their end are
    /// deleted.
    pub fn peek(&self) -> Option<Vec<u8>> {
        let mut state = self.lock();
        let (record, corrupt) = state.peek();
        self.counters.corrupt.fetch_add(corrupt, Ordering::Relaxed);
        self.counters
            .bytes
            .store(state.total_bytes, Ordering::Relaxed);
        record
    }

    /// Removes the record [`Spill::peek`] returned (unless the cap already dropped it).
    pub fn commit(&self) {
        let mut state = self.lock();
        if state.commit() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.counters.replayed.fetch_add(1, Ordering::Relaxed);
        }
        if state.cursor_saved.elapsed() >= CURSOR_EVERY {
            state.save_cursor();
        }
    }

    /// Saves the read position now, so a restart does not send the read records again.
    pub fn save_cursor(&self) {
        self.lock().save_cursor();
    }

    /// Counts records the cap dropped.
    fn forget(&self, records: u64) {
        if records > 0 {
            self.pending.fetch_sub(records, Ordering::Relaxed);
            self.counters.dropped.fetch_add(records, Ordering::Relaxed);
            tracing::warn!(
                records,
                "The disk spill is full; dropped its oldest documents."
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state usable, so a panicked holder is no reason to stop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Drops the oldest files until `record_bytes` more fit; returns the unread records lost.
    fn make_room(&mut self, record_bytes: u64) -> u64 {
        let mut lost = 0;
        while self.total_bytes + record_bytes > self.cap_bytes {
            let Some(oldest) = self.files.pop_front() else {
                break;
            };
            if self.files.is_empty() {
                self.writer = None;
            }
            lost += oldest.unread;
            self.delete(&oldest);
        }
        lost
    }

    /// Appends one record, opening a new file when there is none or the current one is full.
    fn write(&mut self, payload: &[u8], record_bytes: u64) -> io::Result<()> {
        let full = self
            .files
            .back()
            .is_none_or(|f| f.bytes + record_bytes > self.file_bytes);
        if self.writer.is_none() || full {
            self.roll()?;
        }
        self.scratch.clear();
        record::encode(payload, &mut self.scratch);
        let (Some(writer), Some(file)) = (self.writer.as_mut(), self.files.back_mut()) else {
            return Err(io::Error::other("no spill file open"));
        };
        if let Err(error) = writer.write_all(&self.scratch) {
            // Cut a partial record off; if that fails too the reader skips it as corrupt.
            let _ = writer.set_len(file.bytes);
            self.writer = None;
            return Err(error);
        }
        file.bytes += record_bytes;
        file.unread += 1;
        self.total_bytes += record_bytes;
        Ok(())
    }

    /// Starts a new file for appending.
    fn roll(&mut self) -> io::Result<()> {
        let id = self.next_id;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(file_path(&self.dir, id))?;
        self.next_id += 1;
        self.writer = Some(file);
        self.files.push_back(SpillFile {
            id,
            bytes: 0,
            unread: 0,
        });
        Ok(())
    }

    /// The next valid record and how many corrupt stretches were skipped to reach it.
    fn peek(&mut self) -> (Option<Vec<u8>>, u64) {
        let mut corrupt = 0;
        loop {
            let Some(front) = self.files.front() else {
                return (None, corrupt);
            };
            let (id, end) = (front.id, front.bytes);
            if self.read_offset >= end {
                if self.writer.is_some() && self.files.len() == 1 {
                    return (None, corrupt);
                }
                if let Some(done) = self.files.pop_front() {
                    self.delete(&done);
                }
                continue;
            }
            let offset = self.read_offset;
            let reader = match self.reader_for(id) {
                Ok(reader) => reader,
                Err(error) => {
                    tracing::warn!(%error, id, "Cannot read a disk spill file; skipping it.");
                    corrupt += 1;
                    self.read_offset = end;
                    continue;
                }
            };
            match read_at(reader, offset, end) {
                Read::Record(payload, next) => {
                    self.in_corrupt = false;
                    self.peeked = Some((id, next));
                    return (Some(payload), corrupt);
                }
                Read::Corrupt(next) => {
                    if !self.in_corrupt {
                        corrupt += 1;
                        tracing::warn!(
                            file = id,
                            offset = self.read_offset,
                            skipped = next - self.read_offset,
                            "Skipped a corrupt or torn record in the disk spill."
                        );
                    }
                    self.in_corrupt = true;
                    self.read_offset = next;
                }
            }
        }
    }

    /// Moves past the peeked record; false if its file was dropped meanwhile.
    fn commit(&mut self) -> bool {
        let Some((id, next)) = self.peeked.take() else {
            return false;
        };
        match self.files.front_mut() {
            Some(front) if front.id == id => {
                self.read_offset = next;
                front.unread = front.unread.saturating_sub(1);
                true
            }
            _ => false,
        }
    }

    /// Writes `<front id> <offset>` to the cursor file (temp file, then rename). A failure only
    /// means records may be sent twice after a restart: logged at debug.
    fn save_cursor(&mut self) {
        self.cursor_saved = Instant::now();
        let Some(front) = self.files.front() else {
            return;
        };
        let text = format!("{} {}\n", front.id, self.read_offset);
        let tmp = self.dir.join(format!("{CURSOR_FILE}.tmp"));
        let saved =
            fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, self.dir.join(CURSOR_FILE)));
        if let Err(error) = saved {
            tracing::debug!(%error, "Cannot save the disk spill's read position.");
        }
    }

    fn reader_for(&mut self, id: u64) -> io::Result<&File> {
        if self.reader.as_ref().is_none_or(|(open, _)| *open != id) {
            self.reader = Some((id, File::open(file_path(&self.dir, id))?));
        }
        match &self.reader {
            Some((_, file)) => Ok(file),
            None => Err(io::Error::other("no spill reader")),
        }
    }

    /// Removes a file just taken off the front (read to its end, or dropped by the cap): the
    /// read position moves to the start of the next one.
    fn delete(&mut self, file: &SpillFile) {
        self.reader = None;
        self.read_offset = 0;
        self.in_corrupt = false;
        if self.peeked.is_some_and(|(id, _)| id == file.id) {
            self.peeked = None;
        }
        self.total_bytes = self.total_bytes.saturating_sub(file.bytes);
        let path = file_path(&self.dir, file.id);
        if let Err(error) = fs::remove_file(&path) {
            tracing::warn!(%error, path = %path.display(), "Cannot delete a disk spill file.");
        }
    }
}

/// Reads the record at `offset`, never past `end`.
fn read_at(file: &File, offset: u64, end: u64) -> Read {
    let resync = || Read::Corrupt(find_magic(file, offset + 1, end));
    if end - offset < HEADER_BYTES as u64 {
        return Read::Corrupt(end);
    }
    let mut head = [0u8; HEADER_BYTES];
    if file.read_exact_at(&mut head, offset).is_err() {
        return Read::Corrupt(end);
    }
    let Some(header) = record::header(&head) else {
        return resync();
    };
    let payload_at = offset + HEADER_BYTES as u64;
    let next = payload_at + header.len as u64;
    if next > end {
        return resync();
    }
    let mut payload = vec![0u8; header.len];
    if file.read_exact_at(&mut payload, payload_at).is_err() || !header.matches(&payload) {
        return resync();
    }
    Read::Record(payload, next)
}

/// The first offset in `from..end` where [`MAGIC`] starts, else `end`.
fn find_magic(file: &File, from: u64, end: u64) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    while pos + MAGIC.len() as u64 <= end {
        let n = (buf.len() as u64).min(end - pos) as usize;
        if file.read_exact_at(&mut buf[..n], pos).is_err() {
            return end;
        }
        if let Some(i) = buf[..n].windows(MAGIC.len()).position(|w| w == MAGIC) {
            return pos + i as u64;
        }
        // The magic may straddle two reads: step back over its length less one.
        pos += (n - (MAGIC.len() - 1)).max(1) as u64;
    }
    end
}

/// The saved read position, if there is a readable one.
fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(dir.join(CURSOR_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let id = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some((id, offset))
}

/// Valid records between `from` and `bytes` in a file (a startup scan).
fn count_records(file: &File, from: u64, bytes: u64) -> u64 {
    let (mut offset, mut count) = (from, 0);
    while offset < bytes {
        offset = match read_at(file, offset, bytes) {
            Read::Record(_, next) => {
                count += 1;
                next
            }
            Read::Corrupt(next) => next,
        };
    }
    count
}

fn file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.spill"))
}

fn spill_id(name: &str) -> Option<u64> {
    name.strip_suffix(".spill")?.parse().ok()
}

/// Feeds spilled documents back into a pipeline, oldest first, as budget frees up, until
/// `token` is cancelled (what is left stays on disk for the next start). `make` turns a
/// payload and its permit into the pipeline's item; `None` counts it as corrupt.
pub async fn replay<T, F>(
    spill: Arc<Spill>,
    budget: Budget,
    tx: mpsc::Sender<T>,
    make: F,
    token: CancellationToken,
) where
    F: Fn(Vec<u8>, Permit) -> Option<T>,
{
    loop {
        let Some(payload) = spill.peek() else {
            tokio::select! {
                _ = token.cancelled() => return spill.save_cursor(),
                _ = spill.appended.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        };
        let permit = tokio::select! {
            _ = token.cancelled() => return spill.save_cursor(),
            permit = budget.acquire(payload.len()) => permit,
        };
        spill.commit();
        let Some(permit) = permit else {
            spill.counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(item) = make(payload, permit) else {
            spill.counters.corrupt.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}
