//! The file source: tails the files `[logs]` names and sends their lines as [`LogEvent`]s.
//!
//! Parts: `discovery` (which files), `tailer` (one task per file: `reader` → `multiline` →
//! `filter` → `timestamp` → budget → channel), `fingerprint` (identity), `registry` +
//! `checkpoint` (how far AWS took each file), `names` (group/stream names), `describe`
//! (`check-config`'s listing), `metric_filter` (local metric filters: counted by the
//! tailers, published by `run`). A source knows nothing of AWS: what leaves here is a bounded
//! channel of events, each holding its budget permit and the ack of its end offset, and,
//! with [`FileSource::with_metrics`], a channel of metric-filter datums.
//!
//! # Wiring (agent.rs)
//! ```ignore
//! let names = NameContext::gather(config.aws.local_mode, Some(aws.region.clone())).await;
//! let source = FileSource::new(&logs_config, names)?;          // loads checkpoints
//! let source = source.with_metrics(metric_tx);                // only if metric filters
//! let checkpointer = source.checkpointer();
//! let (tx, rx) = tokio::sync::mpsc::channel(1024);
//! tracker.spawn(source.run(budget.clone(), tx, token.child_token()));
//! let pipeline = tracker.spawn(logs_pipeline(rx, sink, ...));   // ends when every tx dropped
//! // at shutdown, after `shutdown::drain` (the pipeline has flushed; sinks acked or dropped):
//! checkpointer.flush_final().await?;
//! ```
//! # Shutdown
//! When its token is cancelled, `run` stops discovery, stops every tailer (an unfinished line
//! or a pending multi-line event is left unsent, below the checkpoint), drops every sender,
//! publishes the metric-filter counts of what they read (then drops its metrics sender),
//! writes a checkpoint and returns. The pipeline then sees its channel close, flushes and
//! waits for the sink; only after that may [`Checkpointer::flush_final`] be called, so the
//! checkpoint includes the batches AWS accepted during the drain. Acks dropped at the deadline
//! leave the checkpoint where it was: those events are read again on the next start.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod buffers;
pub mod checkpoint;
mod describe;
pub mod discovery;
pub mod filter;
pub mod fingerprint;
pub mod metric_filter;
pub mod multiline;
pub mod names;
pub mod reader;
pub mod registry;
pub mod tailer;
#[cfg(test)]
mod tests;
pub mod timestamp;

pub use describe::describe;
pub use names::NameContext;
pub use registry::Checkpointer;
pub use tailer::Timing;

use crate::config::{LogFileConfig, LogsConfig, MultilineStart, NameKind, StartAt};
use crate::pipeline::ack::AckTracker;
use crate::pipeline::budget::Budget;
use crate::pipeline::{Destination, LogEvent, MetricDatum};
use crate::telemetry::COUNTERS;
use checkpoint::CheckpointError;
use discovery::{Found, Matcher};
use fingerprint::{FileId, Fingerprint};
use metric_filter::MetricFilter;
use multiline::StartMatcher;
use registry::{lock, Entry, FileState, Registry};
use tailer::{ExitReason, FileRules, TailExit, TailSpec};
use timestamp::TimestampParser;

/// Why the file source could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// `state_dir` could not be created.
    #[error("cannot create logs.state_dir `{}`: {source}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The checkpoint file could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A glob did not compile (the config loader checks them, so this is a bug).
    #[error("a logs.files glob does not compile: {0}")]
    Glob(#[from] globset::Error),
    /// A regex did not compile (likewise).
    #[error("a logs.files regex does not compile: {0}")]
    Regex(#[from] regex::Error),
}

/// What a `[[logs.files]]` list compiles to; replaced as a whole when the config is reloaded.
#[derive(Debug, Default)]
struct Entries {
    files: Vec<LogFileConfig>,
    rules: Vec<Arc<FileRules>>,
    matcher: Arc<Matcher>,
}

impl Entries {
    /// Compiles `files`, reusing the compiled rules of entries that `previous` has unchanged,
    /// so their tailers' metric-filter counts stay in the list that publishes them.
    fn compile(
        files: &[LogFileConfig],
        previous: Option<&Entries>,
    ) -> Result<Self, FileSourceError> {
        let reuse = |file: &LogFileConfig| {
            let old = previous?;
            let at = old.files.iter().position(|f| f == file)?;
            old.rules.get(at).cloned()
        };
        let rules = files
            .iter()
            .map(|f| match reuse(f) {
                Some(rules) => Ok(rules),
                None => compile(f).map(Arc::new),
            })
            .collect::<Result<_, _>>()?;
        Ok(Entries {
            files: files.to_vec(),
            rules,
            matcher: Arc::new(Matcher::new(files)?),
        })
    }

    /// Every entry's metric filters, in config order.
    fn metric_filters(&self) -> Vec<Arc<MetricFilter>> {
        self.rules
            .iter()
            .flat_map(|r| r.metric_filters.filters().iter().cloned())
            .collect()
    }
}

/// The file source, built and ready to [`run`](FileSource::run).
#[derive(Debug)]
pub struct FileSource {
    entries: Entries,
    names: NameContext,
    registry: Arc<Mutex<Registry>>,
    checkpointer: Checkpointer,
    timing: Timing,
    read_slots: Arc<tokio::sync::Semaphore>,
    read_buffers: Arc<buffers::ReadBuffers>,
    metrics: Option<mpsc::Sender<MetricDatum>>,
    metric_filter_interval: Duration,
    reloads: Option<mpsc::Receiver<Vec<LogFileConfig>>>,
}

impl FileSource {
    /// Compiles the settings, creates `state_dir` and reads the checkpoints. A damaged
    /// checkpoint file is logged and set aside (the files start over per `start_at`).
    pub fn new(config: &LogsConfig, names: NameContext) -> Result<Self, FileSourceError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| FileSourceError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let unclaimed = match checkpoint::load(&config.state_dir) {
            Ok(list) => list,
            Err(CheckpointError::Corrupt { path, message }) => {
                tracing::error!(path = %path.display(), error = %message, "Checkpoint file damaged; starting without it.");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let registry = Arc::new(Mutex::new(Registry {
            files: HashMap::new(),
            unclaimed,
        }));
        Ok(FileSource {
            entries: Entries::compile(&config.files, None)?,
            names,
            checkpointer: Checkpointer::new(Arc::clone(&registry), &config.state_dir),
            registry,
            timing: Timing::default(),
            read_slots: Arc::new(tokio::sync::Semaphore::new(tailer::READ_SLOTS)),
            read_buffers: buffers::ReadBuffers::new(buffers::KEPT),
            metrics: None,
            metric_filter_interval: config.metric_filter_interval,
            reloads: None,
        })
    }

    /// Takes new `[[logs.files]]` lists from `rx` while running (a config reload). Files that
    /// an unchanged entry matches keep their tailer, open handle and offset; the tailers of
    /// changed or removed entries stop after the last event they handed on, and a file that a
    /// new or changed entry matches is picked up where its old tailer stopped.
    pub fn with_reloads(mut self, rx: mpsc::Receiver<Vec<LogFileConfig>>) -> Self {
        self.reloads = Some(rx);
        self
    }

    /// Publishes the metric filters' counts to `tx` (the metrics pipeline). Without it, the
    /// filters count (and the telemetry counter grows) but nothing is published.
    pub fn with_metrics(mut self, tx: mpsc::Sender<MetricDatum>) -> Self {
        self.metrics = Some(tx);
        self
    }

    /// Shorter timings, for tests.
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// The groups whose retention must be set at start: every entry with `retention_days`
    /// whose group name does not depend on the file (`{file_name}`, `{date}`). Groups that do
    /// get theirs when the sink creates them.
    pub fn startup_destinations(&self) -> Vec<Destination> {
        startup_destinations(&self.entries.files, &self.names)
    }

    /// The handle that writes checkpoints; keep it to call `flush_final` after the drain.
    pub fn checkpointer(&self) -> Checkpointer {
        self.checkpointer.clone()
    }

    /// Tails until `token` is cancelled, then stops every tailer, publishes the last metric
    /// filter counts, writes a checkpoint and returns (dropping every clone of `tx` and the
    /// metrics sender). See the module docs for the shutdown order.
    pub async fn run(
        mut self,
        budget: Budget,
        tx: mpsc::Sender<Vec<LogEvent>>,
        token: CancellationToken,
    ) {
        let slots = tailer::read_slots_for_budget(budget.total_bytes());
        self.read_slots = Arc::new(tokio::sync::Semaphore::new(slots));
        self.read_buffers =
            buffers::ReadBuffers::new(buffers::kept_for_budget(budget.total_bytes()));
        let metrics = self.metrics.take();
        let mut reloads = self.reloads.take();
        let entries = std::mem::take(&mut self.entries);
        let mut filters = entries.metric_filters();
        let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
        let (found_tx, mut found_rx) = mpsc::channel(1024);
        let mut manager = Manager {
            source: &self,
            entries,
            budget,
            tx,
            token: token.clone(),
            tailers: TaskTracker::new(),
            running: HashMap::new(),
            exit_tx,
            found_tx,
            discovery: None,
        };
        manager.start_up();
        manager.start_discovery();
        let mut ticker = tokio::time::interval(self.timing.checkpoint_every);
        let mut publish = metric_ticker(self.metric_filter_interval);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                Some(found) = found_rx.recv() => manager.found(found, false),
                Some(exit) = exit_rx.recv() => manager.exited(exit),
                _ = ticker.tick() => self.save().await,
                _ = publish.tick(), if metrics.is_some() => {
                    publish_counts(&filters, metrics.as_ref()).await;
                }
                Some(files) = next_reload(&mut reloads) => {
                    // Counts of entries about to go are published now, while they are known.
                    publish_counts(&filters, metrics.as_ref()).await;
                    if manager.reload(&files) {
                        filters = manager.entries.metric_filters();
                    }
                }
            }
        }
        manager.stop_discovery().await;
        manager.tailers.close();
        manager.tailers.wait().await;
        while let Ok(exit) = exit_rx.try_recv() {
            manager.exited(exit);
        }
        publish_counts(&filters, metrics.as_ref()).await;
        drop(metrics);
        self.save().await;
    }

    async fn save(&self) {
        if let Err(error) = self.checkpointer.save().await {
            tracing::warn!(%error, "Could not write checkpoints.");
        }
    }
}

/// The groups of `files` whose retention must be set before their first events: every entry
/// with `retention_days` whose group name does not depend on the file (`{file_name}`,
/// `{date}`). Groups that do get theirs when the sink creates them.
pub fn startup_destinations(files: &[LogFileConfig], names: &NameContext) -> Vec<Destination> {
    let today = chrono::Utc::now().date_naive();
    files
        .iter()
        .filter(|f| f.retention_days.is_some())
        .filter(|f| {
            !f.log_group.parts.iter().any(|p| {
                matches!(
                    p,
                    crate::config::NamePart::Placeholder(
                        crate::config::Placeholder::FileName | crate::config::Placeholder::Date
                    )
                )
            })
        })
        .map(|f| Destination {
            group: names::render(&f.log_group, NameKind::Group, names, Path::new(""), today),
            stream: String::new(),
            retention_days: f.retention_days,
            group_class: f.group_class.map(|c| c.as_str().to_owned()),
            emf: false,
        })
        .collect()
}

/// Ticks every `every`, the first time one interval from now.
fn metric_ticker(every: Duration) -> tokio::time::Interval {
    let every = every.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The next reload, or never when the source takes none.
async fn next_reload(
    reloads: &mut Option<mpsc::Receiver<Vec<LogFileConfig>>>,
) -> Option<Vec<LogFileConfig>> {
    match reloads {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends the metric filters' counts, if there is a metrics pipeline.
async fn publish_counts(filters: &[Arc<MetricFilter>], tx: Option<&mpsc::Sender<MetricDatum>>) {
    if let Some(tx) = tx {
        metric_filter::emit(filters, tx).await;
    }
}

/// Compiles one entry's regexes and parsers.
fn compile(file: &LogFileConfig) -> Result<FileRules, regex::Error> {
    let timestamp = file
        .timestamp_format
        .clone()
        .map(|f| TimestampParser::new(f, file.timezone));
    let start = match &file.multiline_start {
        None => None,
        Some(MultilineStart::Pattern(p)) => Some(StartMatcher::Pattern(Regex::new(p)?)),
        Some(MultilineStart::TimestampFormat) => timestamp.clone().map(StartMatcher::Timestamp),
    };
    Ok(FileRules {
        filter: filter::LineFilter::new(&file.include_lines, &file.exclude_lines)?,
        metric_filters: metric_filter::MetricFilters::new(&file.metric_filters)?,
        start,
        timestamp,
        encoding: file.encoding,
    })
}

/// The running part of [`FileSource::run`]: decides where each file starts and spawns tailers.
struct Manager<'a> {
    source: &'a FileSource,
    entries: Entries,
    budget: Budget,
    tx: mpsc::Sender<Vec<LogEvent>>,
    token: CancellationToken,
    tailers: TaskTracker,
    /// The running tailers by file: the entry they follow, and how to stop one alone.
    running: HashMap<FileId, Running>,
    exit_tx: mpsc::UnboundedSender<TailExit>,
    found_tx: mpsc::Sender<Found>,
    discovery: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

/// A running tailer, as a reload sees it.
struct Running {
    entry: LogFileConfig,
    path: PathBuf,
    token: CancellationToken,
}

/// Where a newly seen file starts, and how.
struct Start {
    offset: u64,
    state: Option<registry::Shared>,
    drain_only: bool,
}

impl Manager<'_> {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.source
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Watches the current entries' globs (replacing the watcher of the previous ones).
    fn start_discovery(&mut self) {
        let token = self.token.child_token();
        let task = tokio::spawn(discovery::run(
            Arc::clone(&self.entries.matcher),
            self.found_tx.clone(),
            self.source.timing.poll_every,
            token.clone(),
        ));
        if let Some((_, old)) = self.discovery.replace((task, token)) {
            old.cancel();
        }
    }

    async fn stop_discovery(&mut self) {
        if let Some((task, token)) = self.discovery.take() {
            token.cancel();
            let _ = task.await;
        }
    }

    /// Switches to a new list of entries. `false`: it did not compile (the config loader
    /// checks every glob and regex, so this is a bug) and the old list stays.
    fn reload(&mut self, files: &[LogFileConfig]) -> bool {
        let entries = match Entries::compile(files, Some(&self.entries)) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "The new [[logs.files]] list is unusable; keeping the old one.");
                return false;
            }
        };
        let mut stopped = 0;
        for running in self.running.values() {
            if !files.contains(&running.entry) {
                running.token.cancel();
                stopped += 1;
            }
        }
        self.entries = entries;
        self.start_discovery();
        // New entries apply `start_at` to the files present now, as at start-up; files whose
        // tailer is stopping are picked up by the next poll, where that tailer stopped.
        for found in self.entries.matcher.scan() {
            self.found(found, true);
        }
        tracing::info!(
            entries = files.len(),
            restarted = stopped,
            "Log file entries reloaded."
        );
        true
    }

    /// The start-up scan, then rotated files found only by their checkpoints.
    fn start_up(&mut self) {
        for found in self.entries.matcher.scan() {
            self.found(found, true);
        }
        let unclaimed: Vec<checkpoint::Checkpoint> = self.registry().unclaimed.clone();
        for cp in unclaimed {
            let Some(rule) = self.entries.matcher.rule_for(&cp.path) else {
                continue;
            };
            if let Some(path) = find_sibling(&cp.path, &cp.fingerprint) {
                tracing::info!(path = %path.display(), was = %cp.path.display(), "Found a rotated log file by its fingerprint; reading it to its end.");
                let found = Found { rule, path };
                self.open(found, true, Some(cp.path.clone()));
            }
        }
    }

    /// A path that matches a glob: tails it unless its file is already being tailed.
    fn found(&mut self, found: Found, at_start: bool) {
        self.open(found, at_start, None);
    }

    /// Opens a file and tails it from where it should start. `rotated_from`: the file was
    /// found by its fingerprint beside that (checkpointed) path; read it to its end only and
    /// keep recording it under that path, so that it is found the same way next time.
    fn open(&mut self, found: Found, at_start: bool, rotated_from: Option<PathBuf>) {
        // A stat first: the poll reports every matching file, and most are tailed already.
        let Ok(meta) = std::fs::metadata(&found.path) else {
            return;
        };
        let known = self
            .registry()
            .files
            .get(&FileId::of(&meta))
            .map(|e| e.running);
        if known == Some(true) {
            return;
        }
        let Ok(file) = File::open(&found.path) else {
            return;
        };
        let Ok(meta) = file.metadata() else { return };
        if !meta.is_file() {
            return;
        }
        let id = FileId::of(&meta);
        let Some(start) = self.start_of(&file, id, &found, at_start, meta.len()) else {
            return;
        };
        let start = Start {
            drain_only: rotated_from.is_some(),
            ..start
        };
        self.spawn(file, found, id, start, rotated_from);
    }

    /// Where a file starts: `None` if it is being tailed already.
    fn start_of(
        &mut self,
        file: &File,
        id: FileId,
        found: &Found,
        at_start: bool,
        size: u64,
    ) -> Option<Start> {
        let mut registry = self.registry();
        if let Some(entry) = registry.files.get(&id) {
            if entry.running {
                return None;
            }
            let same = lock(&entry.state)
                .fingerprint
                .matches(file)
                .unwrap_or(false);
            if same && !entry.deleted {
                // Shorter than what we read: truncated while no tailer watched it.
                let offset = if entry.read_offset <= size {
                    entry.read_offset
                } else {
                    0
                };
                return Some(Start {
                    offset,
                    state: Some(Arc::clone(&entry.state)),
                    drain_only: false,
                });
            }
            registry.files.remove(&id);
        }
        if let Some(cp) = registry.claim(file, id) {
            let offset = if cp.offset <= size { cp.offset } else { 0 };
            return Some(Start {
                offset,
                state: None,
                drain_only: false,
            });
        }
        // A file at a checkpointed path, or on a checkpointed inode, but not that file: it
        // replaced it (rotation, or a rewrite while we were stopped), so all of it is new.
        let successor = registry
            .unclaimed
            .iter()
            .any(|c| c.path == found.path || c.fingerprint.id == id);
        let from_end =
            at_start && !successor && self.entries.files[found.rule].start_at == StartAt::End;
        Some(Start {
            offset: if from_end { size } else { 0 },
            state: None,
            drain_only: false,
        })
    }

    fn spawn(
        &mut self,
        file: File,
        found: Found,
        id: FileId,
        start: Start,
        alias: Option<PathBuf>,
    ) {
        let recorded = alias.unwrap_or_else(|| found.path.clone());
        let state = match start.state {
            Some(state) => {
                lock(&state).path = recorded;
                state
            }
            None => {
                let Ok(fingerprint) = Fingerprint::of(&file) else {
                    return;
                };
                Arc::new(Mutex::new(FileState {
                    fingerprint,
                    tracker: AckTracker::new(start.offset),
                    path: recorded,
                }))
            }
        };
        self.registry().files.insert(
            id,
            Entry {
                state: Arc::clone(&state),
                running: true,
                read_offset: start.offset,
                deleted: false,
            },
        );
        let spec = TailSpec {
            file: Arc::new(file),
            destination: self.destination(&found),
            path: found.path,
            offset: start.offset,
            rules: Arc::clone(&self.entries.rules[found.rule]),
            state,
            drain_only: start.drain_only,
            read_slots: Arc::clone(&self.source.read_slots),
            read_buffers: Arc::clone(&self.source.read_buffers),
        };
        COUNTERS.file_source.files_watched.inc();
        tracing::debug!(path = %spec.path.display(), offset = start.offset, "Tailing a log file.");
        let exit_tx = self.exit_tx.clone();
        let token = self.token.child_token();
        let running = Running {
            entry: self.entries.files[found.rule].clone(),
            path: spec.path.clone(),
            token: token.clone(),
        };
        self.running.insert(id, running);
        let task = tailer::run(
            spec,
            self.budget.clone(),
            self.tx.clone(),
            token,
            self.source.timing,
        );
        self.tailers.spawn(async move {
            let exit = task.await;
            let _ = exit_tx.send(exit);
        });
    }

    fn destination(&self, found: &Found) -> Arc<Destination> {
        let file = &self.entries.files[found.rule];
        let today = chrono::Utc::now().date_naive();
        let name = |t, k| names::render(t, k, &self.source.names, &found.path, today);
        Arc::new(Destination {
            group: name(&file.log_group, NameKind::Group),
            stream: name(&file.log_stream, NameKind::Stream),
            retention_days: file.retention_days,
            group_class: file.group_class.map(|c| c.as_str().to_owned()),
            emf: false,
        })
    }

    fn exited(&mut self, exit: TailExit) {
        COUNTERS.file_source.files_watched.dec();
        let running = self.running.remove(&exit.id);
        {
            let mut registry = self.registry();
            if let Some(entry) = registry.files.get_mut(&exit.id) {
                entry.running = false;
                entry.read_offset = exit.resume_offset;
                entry.deleted = exit.reason == ExitReason::Deleted;
            }
        }
        // Stopped by a reload, not by shutdown: the entry that matches the file now takes it
        // over at once, from where the old tailer stopped.
        let reloaded = exit.reason == ExitReason::Stopped && !self.token.is_cancelled();
        if let Some(running) = running.filter(|_| reloaded) {
            if let Some(rule) = self.entries.matcher.rule_for(&running.path) {
                self.found(
                    Found {
                        rule,
                        path: running.path,
                    },
                    false,
                );
            }
        }
    }
}

/// A file in the directory of `path` that is the file `fingerprint` was taken of.
fn find_sibling(path: &Path, fingerprint: &Fingerprint) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| {
            let candidate = entry.path();
            let meta = std::fs::metadata(&candidate).ok()?;
            if !meta.is_file() || FileId::of(&meta) != fingerprint.id {
                return None;
            }
            let file = File::open(&candidate).ok()?;
            fingerprint.matches(&file).ok()?.then_some(candidate)
        })
}
