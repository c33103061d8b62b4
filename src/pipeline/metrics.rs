//! The metrics pipeline: datums in, merged per series and period, `PutMetricData` calls out.
//!
//! One task owns the [`Aggregator`]. Every `flush_interval` (or sooner, when the aggregator
//! holds `max_pending_bytes`) it drains it, cuts the datums into calls (one namespace, at most
//! 1,000 datums, under 1 MB) and queues them; queued calls are dispatched to the sink as
//! sender slots free up, oldest first. Each queued call holds budget for its estimated size.
//! When AWS stays down the queue grows until the budget is needed: then the oldest queued
//! calls are dropped first and counted (`reason="budget"`): recent metrics matter more than
//! old ones. With a disk spill (`settings.spill`), a call that finds no budget is written to
//! the spill instead, and so is every later call until [`replay`] caught up, so the spill is
//! sent in order and gets the memory first when AWS is back. This task never waits on a
//! sender, and never drops a datum without counting it.
//! When the datum channel closes it drains the aggregator, dispatches every queued call and
//! returns once all sends finished: that is the shutdown flush.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use tokio_util::sync::CancellationToken;

use super::budget::{Budget, Permit};
use super::spill::{self, Spill};
use super::{MetricDatum, Sink};
use crate::telemetry::{self, DropReason};

pub mod aggregate;
pub mod spilled;

use super::now_ms;
use aggregate::{batch_bytes, batches, check, Aggregator};

/// How often aggregated datums are shipped by default: 10 s.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// `PutMetricData` calls in flight by default.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// How much the aggregator may hold before it is drained early, by default: 8 MiB.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// How the metrics pipeline aggregates and sends.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// How long datums are merged before they are shipped.
    pub flush_interval: Duration,
    /// Calls in flight.
    pub concurrency: usize,
    /// The budget queued calls are charged to (the process budget, or a share of it).
    pub budget: Budget,
    /// The aggregator is drained early when it holds about this many bytes.
    pub max_pending_bytes: usize,
    /// Where calls that find no budget go instead of pushing out the oldest queued ones.
    pub spill: Option<Arc<Spill>>,
}

impl MetricsSettings {
    /// The defaults, charging `budget`.
    pub fn new(budget: Budget) -> Self {
        MetricsSettings {
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            concurrency: DEFAULT_CONCURRENCY,
            budget,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            spill: None,
        }
    }
}

/// A call waiting for a sender slot, and the budget it holds.
struct Queued {
    batch: Vec<MetricDatum>,
    _permit: Permit,
}

/// Datums taken from the channel per wake-up of the pipeline task, at most.
const RECV_BURST: usize = 256;

/// Runs until `rx` is closed and every call was handed to `sink` and finished.
pub async fn run<S: Sink<MetricDatum>>(
    mut rx: mpsc::Receiver<MetricDatum>,
    sink: S,
    settings: MetricsSettings,
) {
    let mut aggregator = Aggregator::new();
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut ready: VecDeque<Queued> = VecDeque::new();
    let mut senders = JoinSet::new();
    let mut ticker = tokio::time::interval(settings.flush_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut burst = Vec::with_capacity(RECV_BURST);
    let mut open = true;
    while open || !ready.is_empty() {
        tokio::select! {
            // Everything waiting, in one go: one wake-up per burst of datums, not per datum.
            received = rx.recv_many(&mut burst, RECV_BURST), if open => {
                if received == 0 {
                    open = false;
                    close_window(&mut aggregator, &mut ready, &settings);
                }
                for datum in burst.drain(..) {
                    accept(&mut aggregator, datum);
                    if aggregator.pending_bytes() >= settings.max_pending_bytes {
                        close_window(&mut aggregator, &mut ready, &settings);
                    }
                }
            }
            _ = ticker.tick(), if open => {
                close_window(&mut aggregator, &mut ready, &settings);
            }
            slot = Arc::clone(&slots).acquire_owned(), if !ready.is_empty() => {
                if let (Ok(slot), Some(queued)) = (slot, ready.pop_front()) {
                    dispatch(&mut senders, &sink, queued, slot);
                }
            }
            Some(_) = senders.join_next(), if !senders.is_empty() => {}
        }
    }
    while senders.join_next().await.is_some() {}
}

/// Checks a datum and merges it, or counts why not.
fn accept(aggregator: &mut Aggregator, datum: MetricDatum) {
    match check(datum, now_ms()) {
        Ok(datum) => aggregator.push(datum),
        Err(reason) => telemetry::metric_datums_dropped(reason, 1),
    }
}

/// Drains the aggregator into queued calls, making room in the budget by dropping the oldest
/// queued calls when needed.
fn close_window(
    aggregator: &mut Aggregator,
    ready: &mut VecDeque<Queued>,
    settings: &MetricsSettings,
) {
    if aggregator.is_empty() {
        return;
    }
    for batch in batches(aggregator.drain()) {
        let batch = match &settings.spill {
            Some(spill) => match spill_or_queue(batch, spill, &settings.budget) {
                Ok(queued) => {
                    ready.push_back(queued);
                    continue;
                }
                Err(None) => continue,
                Err(Some(batch)) => batch,
            },
            None => batch,
        };
        if let Some(queued) = admit(batch, ready, &settings.budget) {
            ready.push_back(queued);
        }
    }
}

/// Queues `batch` if the spill is caught up and budget is free; else writes it to the spill
/// (`Err(None)`). `Err(Some(batch))` when the spill could not take it either.
fn spill_or_queue(
    batch: Vec<MetricDatum>,
    spill: &Spill,
    budget: &Budget,
) -> Result<Queued, Option<Vec<MetricDatum>>> {
    if !spill.is_backlogged() {
        if let Some(permit) = budget.try_acquire(batch_bytes(&batch)) {
            return Ok(Queued {
                batch,
                _permit: permit,
            });
        }
    }
    if spill.append(&spilled::encode(&batch)) {
        Err(None)
    } else {
        Err(Some(batch))
    }
}

/// Budget for `batch`, taken from the oldest queued calls if it must be; `None` (the batch
/// dropped and counted) when even an empty queue leaves no room.
fn admit(batch: Vec<MetricDatum>, ready: &mut VecDeque<Queued>, budget: &Budget) -> Option<Queued> {
    let bytes = batch_bytes(&batch);
    loop {
        if let Some(permit) = budget.try_acquire(bytes) {
            return Some(Queued {
                batch,
                _permit: permit,
            });
        }
        match ready.pop_front() {
            Some(oldest) => {
                telemetry::metric_datums_dropped(DropReason::Budget, oldest.batch.len() as u64);
            }
            None => {
                telemetry::metric_datums_dropped(DropReason::Budget, batch.len() as u64);
                return None;
            }
        }
    }
}

fn dispatch<S: Sink<MetricDatum>>(
    senders: &mut JoinSet<()>,
    sink: &S,
    queued: Queued,
    slot: OwnedSemaphorePermit,
) {
    let sink = sink.clone();
    senders.spawn(async move {
        let Queued { batch, _permit } = queued;
        sink.send(batch).await;
        drop(_permit);
        drop(slot);
    });
}

/// Sends calls spilled to disk again, oldest first, one at a time, as budget frees up, until
/// `token` is cancelled. A call that fails again goes back to the spill (the sink's doing).
pub async fn replay<S: Sink<MetricDatum>>(
    spill: Arc<Spill>,
    budget: Budget,
    sink: S,
    token: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<(Vec<MetricDatum>, Permit)>(1);
    let make = |payload: Vec<u8>, permit| spilled::decode(&payload).map(|batch| (batch, permit));
    let reader = spill::replay(spill, budget, tx, make, token);
    let sender = async move {
        while let Some((batch, permit)) = rx.recv().await {
            sink.send(batch).await;
            drop(permit);
        }
    };
    tokio::join!(reader, sender);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{MetricValue, Unit};
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<MetricDatum>>>>);

    impl Sink<MetricDatum> for Recorder {
        async fn send(&self, batch: Vec<MetricDatum>) {
            if let Ok(mut batches) = self.0.lock() {
                batches.push(batch);
            }
        }
    }

    /// A sink that never finishes, as when AWS is down and retries go on.
    #[derive(Clone)]
    struct Stuck;

    impl Sink<MetricDatum> for Stuck {
        async fn send(&self, _batch: Vec<MetricDatum>) {
            std::future::pending::<()>().await;
        }
    }

    fn datum(name: String, value: f64) -> MetricDatum {
        MetricDatum::single(Arc::from("NS"), name, Unit::COUNT, value, now_ms())
    }

    fn settings(budget: &Budget) -> MetricsSettings {
        MetricsSettings {
            flush_interval: Duration::from_secs(10),
            concurrency: 2,
            budget: budget.clone(),
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            spill: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn merges_and_flushes_on_close() {
        let budget = Budget::new(16 << 20);
        let (tx, rx) = mpsc::channel(100);
        let sink = Recorder::default();
        let task = tokio::spawn(run(rx, sink.clone(), settings(&budget)));
        for i in 0..2500 {
            tx.send(datum(format!("m{}", i % 1200), 1.0))
                .await
                .expect("send");
        }
        tx.send(datum("bad".into(), f64::NAN)).await.expect("send");
        drop(tx);
        task.await.expect("pipeline");
        let batches = sink.0.lock().expect("lock").clone();
        let total: usize = batches.iter().map(Vec::len).sum();
        assert!(batches.iter().all(|b| b.len() <= 1000));
        assert!(
            batches.iter().any(|b| b.len() == 1000),
            "full calls at volume"
        );
        // 1200 series; those seen three times may straddle a minute boundary at most once.
        assert!((1200..=2400).contains(&total), "{total}");
        let count: f64 = batches
            .iter()
            .flatten()
            .map(|d| match &d.value {
                MetricValue::Values { counts, .. } => counts.iter().sum(),
                MetricValue::Statistics(s) => s.sample_count,
            })
            .sum();
        assert_eq!(count, 2500.0);
        assert_eq!(budget.in_use_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ships_every_flush_interval() {
        let budget = Budget::new(16 << 20);
        let (tx, rx) = mpsc::channel(100);
        let sink = Recorder::default();
        let _task = tokio::spawn(run(rx, sink.clone(), settings(&budget)));
        tx.send(datum("a".into(), 1.0)).await.expect("send");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(sink.0.lock().expect("lock").is_empty());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(sink.0.lock().expect("lock").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn when_aws_is_down_the_oldest_calls_make_room() {
        // Room for about three small calls: two are in flight forever, the rest queue.
        let budget = Budget::new(3 * 300 + 3 * 64);
        let (tx, rx) = mpsc::channel(100);
        let before = crate::telemetry::COUNTERS
            .metrics
            .datums_dropped(DropReason::Budget)
            .get();
        let task = tokio::spawn(run(rx, Stuck, settings(&budget)));
        for i in 0..6 {
            tx.send(datum(format!("m{i}"), 1.0)).await.expect("send");
            tokio::time::sleep(Duration::from_secs(11)).await;
        }
        let dropped = crate::telemetry::COUNTERS
            .metrics
            .datums_dropped(DropReason::Budget)
            .get()
            - before;
        assert!(dropped >= 3, "{dropped}");
        assert!(budget.in_use_bytes() <= budget.total_bytes());
        task.abort();
    }

    /// Sum of the counts of every datum named `name` in `batches`.
    fn total(batches: &[Vec<MetricDatum>]) -> f64 {
        batches
            .iter()
            .flatten()
            .map(|d| match &d.value {
                MetricValue::Values { values, counts } => {
                    values.iter().zip(counts).map(|(v, c)| v * c).sum()
                }
                MetricValue::Statistics(s) => s.sum,
            })
            .sum()
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_spill_calls_without_budget_go_to_disk_and_replay_in_full() {
        let dir = tempfile::tempdir().expect("dir");
        let spill = Arc::new(Spill::open(dir.path(), 64 << 20).expect("spill"));
        let budget = Budget::new(3 * 300 + 3 * 64);
        let mut settings = settings(&budget);
        settings.spill = Some(Arc::clone(&spill));
        let (tx, rx) = mpsc::channel(100);
        let task = tokio::spawn(run(rx, Stuck, settings));
        for i in 0..20 {
            tx.send(datum(format!("m{i:02}"), 2.0)).await.expect("send");
            tokio::time::sleep(Duration::from_secs(11)).await;
        }
        let written = spill
            .counters()
            .written
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(written >= 10, "{written}");
        // Every call is either on disk or holding budget (in flight or queued): none dropped.
        let call_bytes = batch_bytes(&[datum("m00".into(), 2.0)]);
        let held = (budget.in_use_bytes() / call_bytes) as u64;
        assert_eq!(
            written + held,
            20,
            "nothing dropped while the spill has room"
        );
        task.abort();

        // AWS back: the replay sends every spilled call, in the order written.
        let sink = Recorder::default();
        let token = CancellationToken::new();
        let replayer = tokio::spawn(replay(
            Arc::clone(&spill),
            budget.clone(),
            sink.clone(),
            token.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        token.cancel();
        replayer.await.expect("replay");
        let batches = sink.0.lock().expect("lock").clone();
        assert_eq!(batches.len() as u64, written);
        assert_eq!(total(&batches), 2.0 * written as f64);
        let names: Vec<&str> = batches.iter().flatten().map(|d| d.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_by_key(|n| n[1..].parse::<u32>().unwrap_or(0));
        assert_eq!(names, sorted, "replayed in order");
        assert!(!spill.is_backlogged());
    }
}
