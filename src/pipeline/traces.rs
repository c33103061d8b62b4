//! The traces pipeline: segments in, batches of at most 50 out, up to `concurrency` in flight.
//!
//! One task owns the batcher. It never waits on a sender: closed batches wait in a queue (their
//! documents still hold budget, so the queue is bounded by the budget) and are dispatched
//! as sender slots free up, oldest first. When the segment channel closes (the source stopped)
//! the open batch is closed, every queued batch is dispatched, and the task returns once all
//! sends finished: that is the shutdown flush.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::batch::{BatchLimits, Batcher};
use super::{Segment, Sink};

/// How the traces pipeline batches and sends.
#[derive(Debug, Clone, Copy)]
pub struct TracesSettings {
    /// Documents per call.
    pub max_documents: usize,
    /// Longest a document waits in a partly full batch.
    pub flush_interval: Duration,
    /// Calls in flight.
    pub concurrency: usize,
}

/// `PutTraceSegments` has no documented request size limit below 50 × 64 kB documents; a
/// byte cap still keeps one batch of huge documents from holding several MB in one request.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Runs until `rx` is closed and every batch was handed to `sink` and finished. Segments
/// arrive in groups (what the source read together), so the batcher wakes once per group.
pub async fn run<S: Sink<Segment>>(
    mut rx: mpsc::Receiver<Vec<Segment>>,
    sink: S,
    settings: TracesSettings,
) {
    let mut batcher = Batcher::new(BatchLimits {
        max_items: settings.max_documents,
        max_bytes: MAX_BATCH_BYTES,
        max_age: settings.flush_interval,
    });
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut ready: VecDeque<Vec<Segment>> = VecDeque::new();
    let mut senders = JoinSet::new();
    let mut open = true;
    // One timer for the whole run, moved only when the open batch's deadline changes: a new
    // timer per wake-up costs a registration and a removal in the runtime's timer wheel.
    let mut timer = FlushTimer::default();
    while open || !ready.is_empty() || !batcher.is_empty() {
        let deadline = batcher.deadline().map(Instant::from_std);
        timer.set(deadline);
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(group) => {
                    let now = std::time::Instant::now();
                    for segment in group {
                        let size = segment.document.len();
                        ready.extend(batcher.push(segment, size, now));
                        if batcher.is_full() {
                            ready.extend(batcher.take());
                        }
                    }
                }
                None => {
                    open = false;
                    ready.extend(batcher.take());
                }
            },
            _ = timer.sleep.as_mut(), if deadline.is_some() => {
                ready.extend(batcher.take());
            }
            slot = Arc::clone(&slots).acquire_owned(), if !ready.is_empty() => {
                if let (Ok(slot), Some(batch)) = (slot, ready.pop_front()) {
                    dispatch(&mut senders, &sink, batch, slot);
                }
            }
            Some(_) = senders.join_next(), if !senders.is_empty() => {}
        }
    }
    while senders.join_next().await.is_some() {}
}

fn dispatch<S: Sink<Segment>>(
    senders: &mut JoinSet<()>,
    sink: &S,
    batch: Vec<Segment>,
    slot: OwnedSemaphorePermit,
) {
    let sink = sink.clone();
    senders.spawn(async move {
        sink.send(batch).await;
        drop(slot);
    });
}

/// The batcher's flush timer: one `Sleep`, reset only when the deadline moves.
struct FlushTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Option<Instant>,
}

impl Default for FlushTimer {
    fn default() -> Self {
        FlushTimer {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline: None,
        }
    }
}

impl FlushTimer {
    /// Points the timer at `deadline` (only polled while there is one).
    fn set(&mut self, deadline: Option<Instant>) {
        if deadline != self.deadline {
            if let Some(at) = deadline {
                self.sleep.as_mut().reset(at);
            }
            self.deadline = deadline;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::budget::Budget;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);

    impl Sink<Segment> for Recorder {
        async fn send(&self, batch: Vec<Segment>) {
            let docs = batch
                .into_iter()
                .map(|s| s.document.into_string())
                .collect();
            if let Ok(mut batches) = self.0.lock() {
                batches.push(docs);
            }
        }
    }

    fn segment(budget: &Budget, n: usize) -> Segment {
        Segment {
            document: format!("doc-{n}").into(),
            permit: budget.try_acquire(8).expect("budget"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_of_fifty_then_flush_on_close() {
        let budget = Budget::new(1 << 20);
        let (tx, rx) = mpsc::channel(1000);
        let sink = Recorder::default();
        let settings = TracesSettings {
            max_documents: 50,
            flush_interval: Duration::from_secs(1),
            concurrency: 8,
        };
        let task = tokio::spawn(run(rx, sink.clone(), settings));
        for n in 0..120 {
            tx.send(vec![segment(&budget, n)]).await.expect("send");
        }
        drop(tx);
        task.await.expect("pipeline");
        let batches = sink.0.lock().expect("lock").clone();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 120);
        assert!(sizes.iter().all(|&s| s <= 50), "{sizes:?}");
        let all: Vec<String> = batches.concat();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 120, "no duplicates");
        assert_eq!(budget.in_use_bytes(), 0, "every permit returned");
    }

    #[tokio::test(start_paused = true)]
    async fn partial_batch_ships_after_the_flush_interval() {
        let budget = Budget::new(1 << 20);
        let (tx, rx) = mpsc::channel(10);
        let sink = Recorder::default();
        let settings = TracesSettings {
            max_documents: 50,
            flush_interval: Duration::from_secs(1),
            concurrency: 1,
        };
        let _task = tokio::spawn(run(rx, sink.clone(), settings));
        tx.send(vec![segment(&budget, 1)]).await.expect("send");
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(sink.0.lock().expect("lock").is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sink.0.lock().expect("lock").len(), 1);
    }
}
