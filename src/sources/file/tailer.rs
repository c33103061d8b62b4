//! One file's task: reads it from an offset in large positional reads, turns bytes into
//! events, waits for budget and channel room, and sends them with an ack for the offset just
//! past each; watches the file for truncation, rename and deletion.
//!
//! It holds the open descriptor for its whole life, so a renamed or deleted file is read to
//! its end. When idle it holds no read buffer. It stops: when cancelled (immediately: an
//! unfinished line or a pending multi-line event is left for the next start, below the
//! checkpoint); or when its file was renamed away or deleted and has been read to the end and
//! quiet for a moment. It never writes checkpoints and never sends to AWS.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::filter::LineFilter;
use super::fingerprint::{find_copy, FileId, Fingerprint};
use super::metric_filter::MetricFilters;
use super::multiline::{Multiline, Pending, StartMatcher};
use super::reader::{finish_message, Line, LineReader};
use super::registry::{lock, Shared};
use super::timestamp::TimestampParser;
use crate::config::Encoding;
use crate::pipeline::ack::AckTracker;
use crate::pipeline::budget::Budget;
use crate::pipeline::{Destination, LogEvent, LOG_EVENT_OVERHEAD_BYTES};
use crate::telemetry::{self, COUNTERS};

/// Bytes asked for per read.
pub const READ_BYTES: usize = 64 * 1024;

/// Tailers that may hold a read chunk (and its decoded lines) at once. When AWS is slow,
/// many tailers wait for budget with a chunk in hand; this caps that memory at about
/// `READ_SLOTS` × 2 × [`READ_BYTES`] however many files are tailed. Idle tailers hold none.
pub const READ_SLOTS: usize = 16;

/// Memory an event read from a file holds beyond its message and the budget's per-item
/// charge: its entry in the file's ack tracker and its share of the batch vectors' spare
/// room (measured with heaptrack, 50 files draining a full budget: ≈ 350 bytes per 200-byte
/// line in all). Charged too, so that a budget full of file events is that much memory.
const EVENT_BOOKKEEPING_BYTES: usize = 64;

/// The timings of the file source; the defaults suit production, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A tailer at the end of its file looks again after this long.
    pub idle_poll: Duration,
    /// The same for a file that grew within the last `quiet` period.
    pub active_poll: Duration,
    /// After this long without new bytes, an unfinished last line and a pending multi-line
    /// event are shipped, and a renamed or deleted file is let go.
    pub quiet: Duration,
    /// How often a tailer checks its file for truncation, rename and deletion.
    pub check_every: Duration,
    /// How often discovery rescans every glob (the fallback for missed events).
    pub poll_every: Duration,
    /// How often checkpoints are written.
    pub checkpoint_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            idle_poll: Duration::from_millis(250),
            active_poll: Duration::from_millis(20),
            quiet: Duration::from_secs(1),
            check_every: Duration::from_secs(1),
            poll_every: Duration::from_secs(10),
            checkpoint_every: Duration::from_secs(1),
        }
    }
}

/// The compiled settings of one `[[logs.files]]` entry, shared by its tailers.
#[derive(Debug)]
pub struct FileRules {
    /// `include_lines` / `exclude_lines`.
    pub filter: LineFilter,
    /// `metric_filters`: counters shared by every tailer of the entry.
    pub metric_filters: MetricFilters,
    /// `multiline_start`.
    pub start: Option<StartMatcher>,
    /// `timestamp_format` + `timezone`.
    pub timestamp: Option<TimestampParser>,
    /// `encoding`.
    pub encoding: Encoding,
}

/// What one tailer reads, from where, and where it publishes.
#[derive(Debug)]
pub struct TailSpec {
    /// The open file.
    pub file: Arc<File>,
    /// The path it was opened at.
    pub path: PathBuf,
    /// The offset to start reading at.
    pub offset: u64,
    /// The entry's settings.
    pub rules: Arc<FileRules>,
    /// Where events go.
    pub destination: Arc<Destination>,
    /// The file's published state (fingerprint, tracker, path).
    pub state: Shared,
    /// Read to the end and stop: a rotated file found only by its checkpoint.
    pub drain_only: bool,
    /// Shared by every tailer: how many may hold a chunk at once (see [`READ_SLOTS`]).
    pub read_slots: Arc<tokio::sync::Semaphore>,
}

/// Why a tailer stopped, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailExit {
    /// The file.
    pub id: FileId,
    /// The offset after the last byte read.
    pub read_offset: u64,
    /// The end of the last event handed on (sent or skipped): everything before it is in
    /// the pipeline's hands; a pending multi-line event or an unfinished line after it is
    /// not, so a new tailer of the same file must start here.
    pub resume_offset: u64,
    /// Why.
    pub reason: ExitReason,
}

/// Why a tailer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Cancelled, or the channel closed.
    Stopped,
    /// Its path now names another file (or none); it was read to its end.
    Moved,
    /// It was deleted; it was read to its end.
    Deleted,
    /// A drain-only file was read to its end.
    Drained,
    /// Reading failed.
    Failed,
}

/// What a periodic look at the file found.
#[derive(Debug, PartialEq, Eq)]
enum FileCheck {
    Same,
    Truncated,
    Moved,
    Deleted,
}

/// Sends events; the part of a tailer that can be cancelled mid-way.
struct Sender<'a> {
    budget: &'a Budget,
    tx: &'a mpsc::Sender<LogEvent>,
    token: &'a CancellationToken,
}

/// Runs one tailer until it stops; see the module docs.
pub async fn run(
    spec: TailSpec,
    budget: Budget,
    tx: mpsc::Sender<LogEvent>,
    token: CancellationToken,
    timing: Timing,
) -> TailExit {
    let mut tail = Tail::new(spec);
    let sender = Sender {
        budget: &budget,
        tx: &tx,
        token: &token,
    };
    let reason = tail.run(&sender, timing).await;
    TailExit {
        id: tail.id,
        read_offset: tail.reader.offset(),
        resume_offset: tail.handed,
        reason,
    }
}

struct Tail {
    spec: TailSpec,
    id: FileId,
    reader: LineReader,
    multiline: Multiline,
    tracker: Arc<AckTracker>,
    fingerprint: Fingerprint,
    /// See [`TailExit::resume_offset`].
    handed: u64,
}

impl Tail {
    fn new(spec: TailSpec) -> Self {
        let (tracker, fingerprint) = {
            let state = lock(&spec.state);
            (Arc::clone(&state.tracker), state.fingerprint)
        };
        Tail {
            id: fingerprint.id,
            reader: LineReader::new(spec.rules.encoding, spec.offset),
            multiline: Multiline::new(spec.rules.start.clone()),
            tracker,
            fingerprint,
            handed: spec.offset,
            spec,
        }
    }

    async fn run(&mut self, sender: &Sender<'_>, timing: Timing) -> ExitReason {
        let mut last_data = Instant::now();
        let mut last_check = Instant::now();
        let mut gone = None;
        loop {
            if sender.token.is_cancelled() {
                return ExitReason::Stopped;
            }
            // Holding a read slot from the read until the chunk's events are queued bounds
            // the memory of tailers waiting for budget to `READ_SLOTS` chunks.
            let size = self.spec.file.metadata().map(|m| m.len()).ok();
            if size.is_some_and(|size| size != self.reader.offset() && self.rewritten(size)) {
                if !self.read_copy(sender).await {
                    return ExitReason::Stopped;
                }
                self.restart();
            }
            let has_data = size.is_none_or(|size| size > self.reader.offset());
            let _slot = if has_data {
                tokio::select! {
                    _ = sender.token.cancelled() => return ExitReason::Stopped,
                    slot = Arc::clone(&self.spec.read_slots).acquire_owned() => slot.ok(),
                }
            } else {
                None
            };
            let chunk = match read_at(&self.spec.file, self.reader.offset()).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::warn!(path = %self.spec.path.display(), %error, "Could not read a log file.");
                    return ExitReason::Failed;
                }
            };
            let at_end = chunk.is_empty();
            if !at_end {
                last_data = Instant::now();
            }
            if !at_end && !self.feed(chunk, sender).await {
                return ExitReason::Stopped;
            }
            let quiet = at_end && last_data.elapsed() >= timing.quiet;
            if quiet && !self.flush_quiet(sender).await {
                return ExitReason::Stopped;
            }
            if last_check.elapsed() >= timing.check_every {
                last_check = Instant::now();
                match self.check() {
                    FileCheck::Same => {}
                    FileCheck::Truncated => self.restart(),
                    FileCheck::Moved => gone = gone.or(Some(ExitReason::Moved)),
                    FileCheck::Deleted => gone = Some(ExitReason::Deleted),
                }
            }
            if quiet {
                if self.spec.drain_only {
                    return ExitReason::Drained;
                }
                if let Some(reason) = gone {
                    return reason;
                }
            }
            if at_end {
                // A file written to within the quiet period is polled fast: the sooner a
                // copytruncate is seen, the less of it depends on finding the copy.
                let pause = if last_data.elapsed() < timing.quiet {
                    timing.active_poll
                } else {
                    timing.idle_poll
                };
                tokio::select! {
                    _ = sender.token.cancelled() => return ExitReason::Stopped,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Splits `chunk` into lines and ships the events they complete. `false`: stopped.
    /// The raw chunk is freed before the first wait for budget.
    async fn feed(&mut self, chunk: Vec<u8>, sender: &Sender<'_>) -> bool {
        let mut lines = Vec::new();
        self.reader.feed(&chunk, &mut lines);
        drop(chunk);
        for line in lines {
            if !self.push(line, sender).await {
                return false;
            }
        }
        true
    }

    async fn push(&mut self, line: Line, sender: &Sender<'_>) -> bool {
        COUNTERS.file_source.lines_read.inc();
        if line.invalid {
            COUNTERS.file_source.invalid_utf8.inc();
        }
        match self.multiline.push(line) {
            Some(event) => self.emit(event, sender).await,
            None => true,
        }
    }

    /// Ships the unfinished line and the pending event after a quiet period.
    async fn flush_quiet(&mut self, sender: &Sender<'_>) -> bool {
        if let Some(line) = self.reader.flush_partial() {
            if !self.push(line, sender).await {
                return false;
            }
        }
        match self.multiline.flush() {
            Some(event) => self.emit(event, sender).await,
            None => true,
        }
    }

    /// Counts, filters, stamps and sends one event. `false`: stopped (cancelled or channel closed).
    async fn emit(&mut self, event: Pending, sender: &Sender<'_>) -> bool {
        let (message, truncated) = finish_message(event.text, event.dropped_bytes);
        if truncated {
            telemetry::log_event_truncated(&self.spec.path);
        }
        self.spec.rules.metric_filters.count(&message);
        if !self.spec.rules.filter.keeps(&message) {
            COUNTERS.file_source.events_filtered.inc();
            self.tracker.skip(event.end_offset);
            self.handed = event.end_offset;
            return true;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let timestamp_ms = match &self.spec.rules.timestamp {
            None => now,
            Some(parser) => parser.parse_prefix(&message).unwrap_or_else(|| {
                telemetry::log_timestamp_unparsed(&self.spec.path);
                now
            }),
        };
        let size = message.capacity() + LOG_EVENT_OVERHEAD_BYTES + EVENT_BOOKKEEPING_BYTES;
        let permit = tokio::select! {
            _ = sender.token.cancelled() => return false,
            permit = sender.budget.acquire(size) => permit,
        };
        let Some(permit) = permit else {
            tracing::error!(
                size,
                "An event is larger than the whole memory budget; skipped."
            );
            self.tracker.skip(event.end_offset);
            self.handed = event.end_offset;
            return true;
        };
        let slot = tokio::select! {
            _ = sender.token.cancelled() => return false,
            slot = sender.tx.reserve() => match slot {
                Ok(slot) => slot,
                Err(_) => return false,
            },
        };
        slot.send(LogEvent {
            timestamp_ms,
            message,
            destination: Arc::clone(&self.spec.destination),
            ack: self.tracker.register(event.end_offset),
            permit,
        });
        self.handed = event.end_offset;
        true
    }

    /// Looks at the open file and at its path.
    fn check(&mut self) -> FileCheck {
        let Ok(meta) = self.spec.file.metadata() else {
            return FileCheck::Same;
        };
        if meta.nlink() == 0 {
            return FileCheck::Deleted;
        }
        if meta.len() < self.reader.offset() || !self.head_unchanged() {
            return FileCheck::Truncated;
        }
        match std::fs::metadata(&self.spec.path) {
            Ok(m) if FileId::of(&m) == self.id => FileCheck::Same,
            _ => FileCheck::Moved,
        }
    }

    /// Whether the file still begins with the bytes it was fingerprinted by (widening the
    /// fingerprint while the file is still shorter than its full head).
    fn head_unchanged(&mut self) -> bool {
        match self.fingerprint.widen(&self.spec.file) {
            Ok(Some(wider)) if wider != self.fingerprint => {
                self.fingerprint = wider;
                lock(&self.spec.state).fingerprint = wider;
                true
            }
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => false,
        }
    }

    /// Before new bytes are read: was the file truncated or rewritten since the last read?
    /// Checked on every read, not only every `check_every`: with copytruncate the file can be
    /// truncated and grow back past our offset between two polls, and reading on from the old
    /// offset would skip the new head and later read the same bytes twice.
    fn rewritten(&mut self, size: u64) -> bool {
        size < self.reader.offset() || !self.head_unchanged()
    }

    /// Before starting over on a truncated file: `copytruncate` copied it first, so the bytes
    /// between our offset and the truncation are in the copy beside it. Reading them from
    /// there leaves only what was written between the copy and the truncation lost (the race
    /// logrotate itself cannot close). `false`: stopped.
    async fn read_copy(&mut self, sender: &Sender<'_>) -> bool {
        let offset = self.reader.offset();
        let Some(copy) = find_copy(&self.spec.path, &self.fingerprint, offset) else {
            return true;
        };
        let copy = Arc::new(copy);
        let mut recovered = 0u64;
        loop {
            let chunk = match read_at(&copy, self.reader.offset()).await {
                Ok(chunk) if !chunk.is_empty() => chunk,
                _ => break,
            };
            recovered += chunk.len() as u64;
            if !self.feed(chunk, sender).await {
                return false;
            }
        }
        if recovered > 0 {
            tracing::debug!(path = %self.spec.path.display(), bytes = recovered, "Read the end of a truncated log file from its copy.");
        }
        true
    }

    /// The file was truncated (copytruncate) or rewritten: read it again from 0 as a new
    /// generation with its own ack tracker; acks of the old one land in the old tracker.
    fn restart(&mut self) {
        tracing::info!(path = %self.spec.path.display(), "Log file truncated; reading it from the start.");
        self.reader.reset(0);
        self.handed = 0;
        self.multiline.clear();
        self.tracker = AckTracker::new(0);
        self.fingerprint = Fingerprint::of(&self.spec.file).unwrap_or(Fingerprint {
            head_len: 0,
            head_hash: xxhash_rust::xxh3::xxh3_64(&[]),
            ..self.fingerprint
        });
        let mut state = lock(&self.spec.state);
        state.tracker = Arc::clone(&self.tracker);
        state.fingerprint = self.fingerprint;
    }
}

/// Up to [`READ_BYTES`] at `offset`, on a blocking thread; empty at the end of the file.
/// An idle file costs one `fstat` here: no buffer, no thread hop.
async fn read_at(file: &Arc<File>, offset: u64) -> std::io::Result<Vec<u8>> {
    let size = file.metadata()?.len();
    if size <= offset {
        return Ok(Vec::new());
    }
    let want = usize::try_from(size - offset).map_or(READ_BYTES, |n| n.min(READ_BYTES));
    let file = Arc::clone(file);
    let task = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; want];
        loop {
            match file.read_at(&mut buf, offset) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    });
    task.await.map_err(std::io::Error::other)?
}
