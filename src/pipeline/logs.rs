//! The logs pipeline: log events in, one batch per destination (group, stream), batches out to
//! the sink with a global cap and a per-destination cap on calls in flight.
//!
//! One task owns every batcher. A batch closes at 10,000 events, at 1,048,576 API bytes
//! (message + 26 per event), or when its oldest event has waited `flush_interval`. It never
//! waits on the sink: closed batches queue (their events still hold budget, so the queue is
//! bounded by the budget) and are dispatched oldest first as slots free up. A destination with
//! `per_destination` batches in flight is skipped, not waited on, so a slow or failing stream
//! holds at most `per_destination` of the `concurrency` slots and the others keep flowing.
//! When the event channel closes (the sources stopped) every open batch is closed and
//! dispatched, and the task returns once every send finished: that is the shutdown flush.
//! This file knows nothing of AWS: sorting, the 24-hour span and retries are the sink's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{self, JoinSet};

use super::batch::{BatchLimits, Batcher};
use super::{Destination, LogEvent, Sink};

/// How the logs pipeline batches and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsSettings {
    /// Longest an event waits in a partly full batch. Default 5 s (the CloudWatch agent's
    /// `force_flush_interval`): shorter is fresher logs, longer is fewer calls.
    pub flush_interval: Duration,
    /// Batches in flight across all destinations. Default 32.
    pub concurrency: usize,
    /// Batches in flight per destination; keep it equal to the sink's per-stream concurrency.
    /// Default 4.
    pub per_destination: usize,
    /// Most events per batch. Default 10,000 (the `PutLogEvents` limit).
    pub max_batch_events: usize,
    /// Most API bytes per batch (message + 26 per event). Default 1,048,576 (the limit).
    pub max_batch_bytes: usize,
}

impl Default for LogsSettings {
    fn default() -> Self {
        LogsSettings {
            flush_interval: Duration::from_secs(5),
            concurrency: 32,
            per_destination: 4,
            max_batch_events: 10_000,
            max_batch_bytes: 1_048_576,
        }
    }
}

/// Groups of events taken from the channel per wake-up of the pipeline task, at most.
const RECV_BURST: usize = 8;

/// Runs until `rx` is closed and every batch was handed to `sink` and finished. Sources send
/// events in groups (a file read's, an EMF read's): one channel slot and one wake-up per
/// group, not per event, which at full speed cost ≈ 5–10% of the agent's CPU.
pub async fn run<S: Sink<LogEvent>>(
    mut rx: mpsc::Receiver<Vec<LogEvent>>,
    sink: S,
    settings: LogsSettings,
) {
    let mut state = State::new(settings);
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut senders = JoinSet::new();
    let mut sending: HashMap<task::Id, Arc<Destination>> = HashMap::new();
    let mut burst = Vec::with_capacity(RECV_BURST);
    let mut open = true;
    while open || state.has_batches() {
        let deadline = state.next_deadline();
        tokio::select! {
            // Everything waiting, in one go: one wake-up per burst, not per event. Bounded,
            // so timers and dispatch still run.
            received = rx.recv_many(&mut burst, RECV_BURST), if open => {
                if received == 0 {
                    open = false;
                    state.close_all();
                } else {
                    let now = now();
                    for mut group in burst.drain(..) {
                        state.push_all(&mut group, now);
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => state.close_due(now()),
            slot = Arc::clone(&slots).acquire_owned(), if state.has_eligible() => {
                if let (Ok(slot), Some((destination, batch))) = (slot, state.next_ready()) {
                    let id = dispatch(&mut senders, &sink, batch, slot);
                    sending.insert(id, destination);
                }
            }
            Some(joined) = senders.join_next_with_id(), if !senders.is_empty() => {
                let id = match joined {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                if let Some(destination) = sending.remove(&id) {
                    state.finished(&destination);
                }
            }
        }
    }
    while senders.join_next().await.is_some() {}
}

fn dispatch<S: Sink<LogEvent>>(
    senders: &mut JoinSet<()>,
    sink: &S,
    batch: Vec<LogEvent>,
    slot: OwnedSemaphorePermit,
) -> task::Id {
    let sink = sink.clone();
    senders
        .spawn(async move {
            sink.send(batch).await;
            drop(slot);
        })
        .id()
}

/// The pipeline's clock, from tokio so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Everything the pipeline task knows about one destination.
#[derive(Debug)]
struct Lane {
    /// Unique per lane; orders deadlines that fall on the same instant.
    id: u64,
    batcher: Batcher<LogEvent>,
    /// The open batch's deadline as registered in `State::deadlines`.
    deadline: Option<Instant>,
    /// Closed batches, oldest first, with their close sequence number.
    ready: VecDeque<(u64, Vec<LogEvent>)>,
    in_flight: usize,
    /// Sequence number of the head batch as registered in `State::eligible`.
    listed: Option<u64>,
}

/// The batchers and queues; pure bookkeeping, no I/O (the loop above does the waiting).
#[derive(Debug)]
struct State {
    settings: LogsSettings,
    lanes: HashMap<Arc<Destination>, Lane, BuildHasherDefault<FastHasher>>,
    /// Open batches by deadline.
    deadlines: BTreeMap<(Instant, u64), Arc<Destination>>,
    /// The oldest ready batch of every lane below its in-flight cap, by close order.
    eligible: BTreeMap<u64, Arc<Destination>>,
    ready_batches: usize,
    sequence: u64,
}

impl State {
    fn new(settings: LogsSettings) -> Self {
        State {
            settings,
            lanes: HashMap::default(),
            deadlines: BTreeMap::new(),
            eligible: BTreeMap::new(),
            ready_batches: 0,
            sequence: 0,
        }
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Batches open or waiting to be dispatched.
    fn has_batches(&self) -> bool {
        self.ready_batches > 0 || !self.deadlines.is_empty()
    }

    fn has_eligible(&self) -> bool {
        !self.eligible.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Adds a burst of events. Consecutive events of one destination (a whole read of a file,
    /// usually) look their lane up once, not once per event.
    fn push_all(&mut self, events: &mut Vec<LogEvent>, now: Instant) {
        let mut events = events.drain(..).peekable();
        while let Some(first) = events.next() {
            let destination = Arc::clone(&first.destination);
            let run = std::iter::once(first).chain(std::iter::from_fn(|| {
                events.next_if(|e| Arc::ptr_eq(&e.destination, &destination))
            }));
            self.push_run(&destination, run, now);
        }
    }

    /// Adds events of one destination; queues the batches they close.
    fn push_run(
        &mut self,
        destination: &Arc<Destination>,
        events: impl Iterator<Item = LogEvent>,
        now: Instant,
    ) {
        let lane = self.lane(destination);
        let mut closed = Vec::new();
        for event in events {
            let size = event.api_size();
            closed.extend(lane.batcher.push(event, size, now));
            if lane.batcher.is_full() {
                closed.extend(lane.batcher.take());
            }
        }
        for batch in closed {
            self.enqueue(destination, batch);
        }
        self.sync_deadline(destination);
    }

    /// The lane of `destination`, made when it has none.
    fn lane(&mut self, destination: &Arc<Destination>) -> &mut Lane {
        let limits = BatchLimits {
            max_items: self.settings.max_batch_events.max(1),
            max_bytes: self.settings.max_batch_bytes,
            max_age: self.settings.flush_interval,
        };
        let sequence = &mut self.sequence;
        self.lanes
            .entry(Arc::clone(destination))
            .or_insert_with(|| {
                *sequence += 1;
                Lane {
                    id: *sequence,
                    batcher: Batcher::new(limits),
                    deadline: None,
                    ready: VecDeque::new(),
                    in_flight: 0,
                    listed: None,
                }
            })
    }

    /// Closes every batch whose deadline is `now` or past.
    fn close_due(&mut self, now: Instant) {
        let due: Vec<Arc<Destination>> = self
            .deadlines
            .range(..=(now, u64::MAX))
            .map(|(_, destination)| Arc::clone(destination))
            .collect();
        for destination in due {
            self.close(&destination);
        }
    }

    /// Closes every open batch (the source stopped).
    fn close_all(&mut self) {
        let open: Vec<Arc<Destination>> = self.deadlines.values().cloned().collect();
        for destination in open {
            self.close(&destination);
        }
    }

    fn close(&mut self, destination: &Arc<Destination>) {
        let batch = self
            .lanes
            .get_mut(destination)
            .and_then(|lane| lane.batcher.take());
        if let Some(batch) = batch {
            self.enqueue(destination, batch);
        }
        self.sync_deadline(destination);
    }

    fn enqueue(&mut self, destination: &Arc<Destination>, batch: Vec<LogEvent>) {
        let sequence = self.next_sequence();
        if let Some(lane) = self.lanes.get_mut(destination) {
            lane.ready.push_back((sequence, batch));
            self.ready_batches += 1;
        }
        self.relist(destination);
    }

    /// The oldest dispatchable batch, counted as in flight.
    fn next_ready(&mut self) -> Option<(Arc<Destination>, Vec<LogEvent>)> {
        let (_, destination) = self.eligible.pop_first()?;
        let lane = self.lanes.get_mut(&destination)?;
        lane.listed = None;
        let (_, batch) = lane.ready.pop_front()?;
        lane.in_flight += 1;
        self.ready_batches -= 1;
        self.relist(&destination);
        Some((destination, batch))
    }

    /// A send for `destination` finished; the lane is forgotten once idle.
    fn finished(&mut self, destination: &Arc<Destination>) {
        let Some(lane) = self.lanes.get_mut(destination) else {
            return;
        };
        lane.in_flight = lane.in_flight.saturating_sub(1);
        if lane.in_flight == 0 && lane.ready.is_empty() && lane.batcher.is_empty() {
            self.lanes.remove(destination);
        } else {
            self.relist(destination);
        }
    }

    /// Keeps `eligible` in step with the lane's head batch and in-flight count.
    fn relist(&mut self, destination: &Arc<Destination>) {
        let cap = self.settings.per_destination.max(1);
        let Some(lane) = self.lanes.get_mut(destination) else {
            return;
        };
        if let Some(listed) = lane.listed.take() {
            self.eligible.remove(&listed);
        }
        if lane.in_flight < cap {
            if let Some((sequence, _)) = lane.ready.front() {
                lane.listed = Some(*sequence);
                self.eligible.insert(*sequence, Arc::clone(destination));
            }
        }
    }

    /// Keeps `deadlines` in step with the lane's open batch.
    fn sync_deadline(&mut self, destination: &Arc<Destination>) {
        let Some(lane) = self.lanes.get_mut(destination) else {
            return;
        };
        let deadline = lane.batcher.deadline();
        if deadline == lane.deadline {
            return;
        }
        if let Some(old) = lane.deadline.take() {
            self.deadlines.remove(&(old, lane.id));
        }
        if let Some(new) = deadline {
            lane.deadline = Some(new);
            self.deadlines
                .insert((new, lane.id), Arc::clone(destination));
        }
    }
}

/// The lanes are looked up once per event by destination (two short names): a word-at-a-time
/// multiplicative hash (FxHash) instead of SipHash. The keys are our own configuration, not
/// input an attacker chooses, so flooding resistance buys nothing here.
#[derive(Debug, Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.add(u64::from_le_bytes(buf));
        }
        let mut buf = [0u8; 8];
        let rest = words.remainder();
        buf[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
