//! One file's task: reads it from an offset in large positional reads, turns bytes into
//! events, waits for budget and channel room, and sends them with an ack for the offset just
//! past each; watches the file for truncation, rename and deletion.
//!
//! The per-event work is done once per read where it can be: one clock read, one lock of the
//! ack tracker, and one budget permit and channel reservation per group of events. It reads
//! at most [`MAX_UNACKED_BYTES`] ahead of what AWS accepted, so a fast file never holds more
//! than that in memory, even when the budget would allow it.
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

use super::buffers::ReadBuffers;
use super::filter::LineFilter;
use super::fingerprint::{find_copy, FileId, Fingerprint};
use super::metric_filter::MetricFilters;
use super::multiline::{Multiline, Pending, StartMatcher};
use super::reader::{finish_message, Line, LineReader};
use super::registry::{lock, Shared};
use super::timestamp::TimestampParser;
use crate::config::Encoding;
use crate::pipeline::ack::{Ack, AckTracker, Registrar};
use crate::pipeline::budget::{Budget, Permit};
use crate::pipeline::{now_ms, Destination, LogEvent, Message, LOG_EVENT_OVERHEAD_BYTES};
use crate::telemetry::{self, COUNTERS};

/// Bytes asked for per read.
pub const READ_BYTES: usize = 256 * 1024;

/// Most bytes of one file read ahead of what AWS has accepted: about four full `PutLogEvents`
/// calls, enough to keep a stream's calls in flight while the next batch fills. More only
/// holds memory without making anything measurably faster (8 MiB read ahead cost ~7 MiB of
/// peak RSS and gave no throughput that stood out of the noise), whatever the memory budget
/// allows.
pub const MAX_UNACKED_BYTES: u64 = 4 * 1024 * 1024;

/// Reads at least this long are shared by their lines rather than copied (see
/// `Tail::feed_chunk`).
const SHARE_MIN_BYTES: usize = READ_BYTES / 2;

/// Most events queued with one budget permit and one channel reservation.
const SHIP_GROUP_EVENTS: usize = 256;

/// Most bytes (as PutLogEvents counts them) queued with one budget permit.
const SHIP_GROUP_BYTES: usize = 256 * 1024;

/// Tailers that may hold a read chunk (and its decoded lines) at once, at most. A chunk's
/// buffer is charged to the budget before the read (`Tail::buffer_for_read`); the slots bound
/// what is not (the lists of lines and events between the read and the queue) and how many
/// blocking threads reads occupy, however many files are tailed. Idle tailers hold none.
pub const READ_SLOTS: usize = 16;

/// Read slots for a memory budget of `budget_bytes`: a sixteenth of it in chunks of
/// 2 × [`READ_BYTES`] (as the logs sink's request copies get a sixteenth), at least two slots
/// and at most [`READ_SLOTS`]. A file reads through one slot at a time, so this never slows a
/// single file; with 50 files draining a full 32 MB budget, 16 slots held about 3 MB more than
/// 4 did when chunks in hand were not charged (peak RSS, release binary).
pub fn read_slots_for_budget(budget_bytes: usize) -> usize {
    (budget_bytes / 16 / (2 * READ_BYTES)).clamp(2, READ_SLOTS)
}

/// Memory an event read from a file holds beyond its message's capacity and the API's
/// per-event overhead (also charged): the `LogEvent` itself in its batch and request vectors
/// (80 bytes), its entry in the file's ack tracker, the allocator's rounding of the message,
/// and its share of the vectors' spare room (measured with heaptrack, 50 files draining a full
/// budget: ≈ 350 bytes per 200-byte line in all, so 350 − 200 − 26 ≈ 124). Charged too, so
/// that a budget full of file events is that much memory.
const EVENT_BOOKKEEPING_BYTES: usize = 128;

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
    /// Shared by every tailer: read buffers that lines share (see [`ReadBuffers`]).
    pub read_buffers: Arc<ReadBuffers>,
}

/// Why a tailer stopped, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailExit {
    /// The file.
    pub id: FileId,
    /// The end of the last event queued for the pipeline: everything before it is in the
    /// pipeline's hands; what comes after (events read but not queued, a pending multi-line
    /// event, an unfinished line) is not, so a new tailer of the same file starts here.
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
    tx: &'a mpsc::Sender<Vec<LogEvent>>,
    token: &'a CancellationToken,
}

/// Runs one tailer until it stops; see the module docs.
pub async fn run(
    spec: TailSpec,
    budget: Budget,
    tx: mpsc::Sender<Vec<LogEvent>>,
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
    // Events registered after the last one queued never reached the pipeline: the next tailer
    // of this file reads them again and registers them anew.
    tail.tracker.forget_after(tail.handed);
    TailExit {
        id: tail.id,
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
            if sender.token.is_cancelled() || !self.wait_for_acks(sender).await {
                return ExitReason::Stopped;
            }
            // A read slot is held from before the read until the chunk's events are queued,
            // and the chunk's buffer is charged to the budget before it is read into.
            let size = self.spec.file.metadata().map(|m| m.len()).ok();
            if size.is_some_and(|size| size != self.reader.offset() && self.rewritten(size)) {
                if !self.read_copy(sender).await {
                    return ExitReason::Stopped;
                }
                self.restart();
            }
            let has_data = size.is_none_or(|size| size > self.reader.offset());
            let _slot = if has_data {
                let slots = Arc::clone(&self.spec.read_slots);
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        tokio::select! {
                            _ = sender.token.cancelled() => return ExitReason::Stopped,
                            slot = slots.acquire_owned() => slot.ok(),
                        }
                    }
                }
            } else {
                None
            };
            let (buffer, charge) = if has_data {
                match self.buffer_for_read(sender).await {
                    Some(buffer) => buffer,
                    None => return ExitReason::Stopped,
                }
            } else {
                (Vec::new(), None)
            };
            let chunk = match read_at(&self.spec.file, self.reader.offset(), buffer).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::warn!(path = %self.spec.path.display(), %error, "Could not read a log file.");
                    return ExitReason::Failed;
                }
            };
            // At the end of the file the buffer goes back to the pool: an idle tailer holds
            // none.
            let at_end = chunk.len == 0;
            if at_end {
                self.keep_buffer(chunk.buf, charge);
                self.spec.read_buffers.trim();
            } else {
                last_data = Instant::now();
                if !self.feed_chunk(chunk, charge, sender).await {
                    return ExitReason::Stopped;
                }
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

    /// A buffer for the next read and the budget's charge for it, taken before reading: what
    /// the budget cannot hold stays in the file. A kept buffer comes with its charge.
    /// `Some((_, None))`: a budget too small for a whole buffer (such reads go uncharged
    /// until their lines are queued); `None`: stopped.
    async fn buffer_for_read(&self, sender: &Sender<'_>) -> Option<(Vec<u8>, Option<Permit>)> {
        let pool = &self.spec.read_buffers;
        if let Some((buffer, charge)) = pool.take() {
            return Some((buffer, Some(charge)));
        }
        if let Some(charge) = sender.budget.try_acquire(READ_BYTES) {
            return Some((Vec::new(), Some(charge)));
        }
        let charge = tokio::select! {
            _ = sender.token.cancelled() => return None,
            charge = sender.budget.acquire(READ_BYTES) => charge,
        };
        // A buffer may have come back meanwhile: reading into it touches no new page.
        match pool.take() {
            Some((buffer, kept_charge)) => Some((buffer, Some(kept_charge))),
            None => Some((Vec::new(), charge)),
        }
    }

    /// Gives a read buffer back to the pool with its charge (without one it is simply freed).
    fn keep_buffer(&self, buffer: Vec<u8>, charge: Option<Permit>) {
        if let Some(charge) = charge {
            self.spec.read_buffers.keep(buffer, charge);
        }
    }

    /// Ships the events a read completes. `charge` holds the read's buffer from the budget.
    /// A read of at least half a buffer of UTF-8 text is shared by its lines (`buffers.rs`),
    /// and the charge goes with the buffer until its last line is gone: no line is copied or
    /// allocated on its own. A shorter read (the end of a file that grows slowly) is copied
    /// line by line, so that a few short lines never hold a whole buffer; its lines are
    /// charged on their own, and the buffer goes back to the pool with its charge once they
    /// are queued. `false`: stopped.
    async fn feed_chunk(
        &mut self,
        chunk: Chunk,
        charge: Option<Permit>,
        sender: &Sender<'_>,
    ) -> bool {
        let shareable = chunk.len >= SHARE_MIN_BYTES && self.spec.rules.encoding == Encoding::Utf8;
        let charge = match charge {
            Some(charge) if shareable => charge,
            charge => {
                let fed = self.feed(chunk.bytes(), sender).await;
                self.keep_buffer(chunk.buf, charge);
                return fed;
            }
        };
        let shared = self.spec.read_buffers.share(chunk.buf, chunk.len, charge);
        let mut lines = Vec::new();
        self.reader.feed_shared(&shared, &mut lines);
        drop(shared);
        let events = self.prepare(lines, false);
        ship(events, &self.spec.destination, sender, &mut self.handed).await
    }

    /// Splits `chunk` into lines and ships the events they complete. `false`: stopped.
    async fn feed(&mut self, chunk: &[u8], sender: &Sender<'_>) -> bool {
        let mut lines = Vec::new();
        self.reader.feed(chunk, &mut lines);
        let events = self.prepare(lines, false);
        ship(events, &self.spec.destination, sender, &mut self.handed).await
    }

    /// Ships the unfinished line and the pending event after a quiet period.
    async fn flush_quiet(&mut self, sender: &Sender<'_>) -> bool {
        let lines = self.reader.flush_partial().into_iter().collect();
        let events = self.prepare(lines, true);
        ship(events, &self.spec.destination, sender, &mut self.handed).await
    }

    /// Lines → events: counts, joins, filters and stamps them, and registers each with the
    /// ack tracker in file order (a filtered event is skipped in place). One clock read and
    /// one tracker lock per read, not per line. `flush`: also end the pending event.
    fn prepare(&mut self, lines: Vec<Line>, flush: bool) -> Vec<Ready> {
        let counters = &COUNTERS.file_source;
        counters.lines_read.add(lines.len() as u64);
        let invalid = lines.iter().filter(|line| line.invalid).count();
        if invalid > 0 {
            counters.invalid_utf8.add(invalid as u64);
        }
        let now = now_ms();
        let tracker = Arc::clone(&self.tracker);
        let mut registrar = tracker.registrar();
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            if let Some(event) = self.multiline.push(line) {
                self.finish(event, now, &mut registrar, &mut out);
            }
        }
        if flush {
            if let Some(event) = self.multiline.flush() {
                self.finish(event, now, &mut registrar, &mut out);
            }
        }
        out
    }

    /// One complete event: truncated, counted by the metric filters, then filtered out
    /// (skipped) or stamped and added to `out`.
    fn finish(
        &self,
        event: Pending,
        now: i64,
        registrar: &mut Registrar<'_>,
        out: &mut Vec<Ready>,
    ) {
        let (message, truncated) = finish_message(event.text, event.dropped_bytes);
        if truncated {
            telemetry::log_event_truncated(&self.spec.path);
        }
        let rules = &self.spec.rules;
        rules.metric_filters.count(&message);
        if !rules.filter.keeps(&message) {
            COUNTERS.file_source.events_filtered.inc();
            registrar.skip(event.end_offset);
            return;
        }
        // The lines kept by a filter own their text: they must not hold the shared buffer of
        // the lines filtered out, which the budget does not count.
        let message = if rules.filter.filters() && message.is_shared() {
            Message::from(message.into_string())
        } else {
            message
        };
        let timestamp_ms = match &rules.timestamp {
            None => now,
            Some(parser) => parser.parse_prefix(&message).unwrap_or_else(|| {
                telemetry::log_timestamp_unparsed(&self.spec.path);
                now
            }),
        };
        out.push(Ready {
            timestamp_ms,
            message,
            end_offset: event.end_offset,
            ack: registrar.register(event.end_offset),
        });
    }

    /// Before reading more: waits while more than [`MAX_UNACKED_BYTES`] of the file are read
    /// but not yet accepted by AWS. `false`: stopped.
    async fn wait_for_acks(&mut self, sender: &Sender<'_>) -> bool {
        loop {
            let tracker = Arc::clone(&self.tracker);
            let advanced = tracker.advanced();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            let unacked = self.reader.offset().saturating_sub(tracker.committed());
            if unacked <= MAX_UNACKED_BYTES {
                return true;
            }
            // The timeout is only a safety net: `advanced` fires whenever the tracker moves.
            tokio::select! {
                _ = sender.token.cancelled() => return false,
                _ = advanced => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
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
        let mut buffer = Vec::new();
        loop {
            let chunk = match read_at(&copy, self.reader.offset(), buffer).await {
                Ok(chunk) if chunk.len > 0 => chunk,
                _ => break,
            };
            recovered += chunk.len as u64;
            if !self.feed(chunk.bytes(), sender).await {
                return false;
            }
            buffer = chunk.buf;
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

/// One event ready to be queued: registered with the tracker, still without budget.
struct Ready {
    timestamp_ms: i64,
    message: Message,
    end_offset: u64,
    ack: Ack,
}

/// Queues `events` in order, in groups that each take budget once and channel room once.
/// `false`: stopped (cancelled or the channel closed); the events not queued keep the
/// checkpoint below them.
/// `handed`: moved to the end of each group once it is queued.
async fn ship(
    events: Vec<Ready>,
    destination: &Arc<Destination>,
    sender: &Sender<'_>,
    handed: &mut u64,
) -> bool {
    let max_events = SHIP_GROUP_EVENTS;
    // A quarter of the budget at most, so a group (unlike a single huge event) always fits.
    let max_bytes = SHIP_GROUP_BYTES.min(sender.budget.total_bytes() / 4);
    let groups = group_sizes(&events, max_events, max_bytes);
    // The events move once, straight from the read's list into the channel.
    let mut queue = events.into_iter();
    for group in groups {
        let events = queue.by_ref().take(group.events);
        if !ship_group(events, group.events, group.bytes, destination, sender).await {
            queue.for_each(|event| event.ack.unsent());
            return false;
        }
        *handed = group.end_offset;
    }
    true
}

/// One group of [`ship`]: how many events, their budget charge, where the last one ends.
struct Group {
    events: usize,
    bytes: usize,
    end_offset: u64,
}

/// Cuts `events` into groups of at most `max_events` and `max_bytes` (a single event above
/// `max_bytes` is a group of its own), in order.
fn group_sizes(events: &[Ready], max_events: usize, max_bytes: usize) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for event in events {
        let size =
            event.message.own_memory_bytes() + LOG_EVENT_OVERHEAD_BYTES + EVENT_BOOKKEEPING_BYTES;
        match groups.last_mut() {
            Some(group) if group.events < max_events && group.bytes + size <= max_bytes => {
                group.events += 1;
                group.bytes += size;
                group.end_offset = event.end_offset;
            }
            _ => groups.push(Group {
                events: 1,
                bytes: size,
                end_offset: event.end_offset,
            }),
        }
    }
    groups
}

/// One group: one budget permit shared by its events, one channel slot.
async fn ship_group(
    group: impl Iterator<Item = Ready>,
    count: usize,
    bytes: usize,
    destination: &Arc<Destination>,
    sender: &Sender<'_>,
) -> bool {
    let permit = tokio::select! {
        _ = sender.token.cancelled() => None,
        permit = sender.budget.acquire_items(count, bytes) => Some(permit),
    };
    let Some(permit) = permit else {
        group.for_each(|event| event.ack.unsent());
        return false;
    };
    let Some(permit) = permit else {
        // Only a group of one event can exceed the budget (see `ship`).
        tracing::error!(
            size = bytes,
            "An event is larger than the whole memory budget; skipped."
        );
        Ack::done_all(group.map(|event| event.ack));
        return true;
    };
    let slot = tokio::select! {
        _ = sender.token.cancelled() => None,
        slot = sender.tx.reserve() => slot.ok(),
    };
    let Some(slot) = slot else {
        group.for_each(|event| event.ack.unsent());
        return false;
    };
    let permit = permit.shared();
    let mut events = Vec::with_capacity(count);
    events.extend(group.map(|event| LogEvent {
        timestamp_ms: event.timestamp_ms,
        message: event.message,
        destination: Arc::clone(destination),
        ack: event.ack,
        permit: permit.share(),
    }));
    slot.send(events);
    true
}

/// Bytes read from a file into a buffer that is used again for the next read.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Up to [`READ_BYTES`] at `offset` into `buf`, on a blocking thread; empty at the end of the
/// file. An idle file costs one `fstat` here: no buffer, no thread hop. The buffer comes back
/// with the bytes: reads of 256 KiB are mapped afresh by the allocator when freed and
/// allocated again, so a reader that kept no buffer would fault in and zero every page of the
/// file twice.
async fn read_at(file: &Arc<File>, offset: u64, mut buf: Vec<u8>) -> std::io::Result<Chunk> {
    let size = file.metadata()?.len();
    if size <= offset {
        return Ok(Chunk { buf, len: 0 });
    }
    let want = usize::try_from(size - offset).map_or(READ_BYTES, |n| n.min(READ_BYTES));
    let file = Arc::clone(file);
    let task = tokio::task::spawn_blocking(move || {
        if buf.len() < want {
            // Exactly `want`: the budget charged a buffer of at most `READ_BYTES`.
            buf.reserve_exact(want - buf.len());
            buf.resize(want, 0);
        }
        loop {
            match file.read_at(&mut buf[..want], offset) {
                Ok(len) => return Ok(Chunk { buf, len }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    });
    task.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(len: usize, end_offset: u64) -> Ready {
        Ready {
            timestamp_ms: 0,
            message: Message::from("x".repeat(len)),
            end_offset,
            ack: Ack::none(),
        }
    }

    #[test]
    fn groups_keep_order_and_both_limits() {
        let charge = |len: usize| len + LOG_EVENT_OVERHEAD_BYTES + EVENT_BOOKKEEPING_BYTES;
        let events: Vec<Ready> = (0..7).map(|i| ready(10, i * 10 + 10)).collect();
        // By count: 3 + 3 + 1.
        let groups = group_sizes(&events, 3, usize::MAX);
        let counts: Vec<(usize, u64)> = groups.iter().map(|g| (g.events, g.end_offset)).collect();
        assert_eq!(counts, [(3, 30), (3, 60), (1, 70)]);
        assert_eq!(groups[0].bytes, 3 * charge(10));
        // By bytes: two events fit, the third opens a group; one event over the cap alone.
        let mut events: Vec<Ready> = (0..3).map(|i| ready(10, i + 1)).collect();
        events.push(ready(10_000, 4));
        events.push(ready(10, 5));
        let groups = group_sizes(&events, 100, 2 * charge(10));
        let counts: Vec<(usize, u64)> = groups.iter().map(|g| (g.events, g.end_offset)).collect();
        assert_eq!(counts, [(2, 2), (1, 3), (1, 4), (1, 5)]);
        assert!(group_sizes(&[], 3, 100).is_empty());
    }
}
