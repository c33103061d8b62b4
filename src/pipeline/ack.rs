//! Acknowledgements: how a file learns which of its bytes AWS has accepted.
//!
//! Every event read from a file carries an [`Ack`] for the file offset just past it. Batches
//! may finish out of order (several calls in flight), so the [`AckTracker`] keeps the
//! outstanding offsets in order and moves its `committed` offset only over a prefix that is
//! entirely acknowledged: the checkpoint never passes an event AWS has not taken, and a crash
//! re-sends at most the batches that were in flight. An [`Ack`] is resolved exactly once, by
//! value; one dropped unresolved (shutdown deadline, a bug) keeps the checkpoint where it is
//! and is counted, so that data is read again on the next start rather than lost.
//!
//! Offsets are registered in growing order, so the outstanding ones are a sorted queue: a
//! registration is a push at the back, a resolution a lookup near where the previous one was.
//! The hot paths take the lock once per run of events, not once per event: a tailer
//! registers a whole read with [`AckTracker::registrar`], a sink resolves a whole request
//! with [`Ack::done_all`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Acks dropped without being resolved, process-wide.
pub static DROPPED_UNRESOLVED: AtomicU64 = AtomicU64::new(0);

/// The acknowledgement state of one file.
#[derive(Debug)]
pub struct AckTracker {
    inner: Mutex<Inner>,
    /// Woken whenever `committed` moves, for a reader that waits for its backlog to shrink.
    advanced: Notify,
}

#[derive(Debug)]
struct Inner {
    /// (end offset, acknowledged yet), in registration order (growing offsets).
    pending: VecDeque<(u64, bool)>,
    committed: u64,
    /// Where the last resolution found its entry: the next one is usually just after it.
    hint: usize,
}

impl Inner {
    /// Marks the entry of `end_offset` as done. Returns whether the head may now move.
    fn mark(&mut self, end_offset: u64) -> bool {
        let hint = self.hint;
        let index = match self.pending.get(hint) {
            Some(&(offset, false)) if offset == end_offset => Some(hint),
            _ => {
                let from = self
                    .pending
                    .partition_point(|&(offset, _)| offset < end_offset);
                (from..self.pending.len())
                    .take_while(|&i| self.pending[i].0 == end_offset)
                    .find(|&i| !self.pending[i].1)
            }
        };
        let Some(index) = index else {
            return false;
        };
        self.pending[index].1 = true;
        self.hint = index + 1;
        index == 0
    }

    /// Moves `committed` over the acknowledged head. Returns whether it moved.
    fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(&(offset, true)) = self.pending.front() {
            self.pending.pop_front();
            self.committed = self.committed.max(offset);
            self.hint = self.hint.saturating_sub(1);
            moved = true;
        }
        moved
    }
}

impl AckTracker {
    /// A tracker whose data is committed up to `offset` (the checkpoint it resumed from).
    pub fn new(offset: u64) -> Arc<Self> {
        Arc::new(AckTracker {
            inner: Mutex::new(Inner {
                pending: VecDeque::new(),
                committed: offset,
                hint: 0,
            }),
            advanced: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain integers;
        // the queue is still consistent enough to keep the checkpoint conservative.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an event that ends at `end_offset` (offsets must grow) and returns its ack.
    pub fn register(self: &Arc<Self>, end_offset: u64) -> Ack {
        self.registrar().register(end_offset)
    }

    /// Marks data up to `end_offset` as done without an event (filtered lines, skipped bytes),
    /// in order with the events around it.
    pub fn skip(self: &Arc<Self>, end_offset: u64) {
        self.registrar().skip(end_offset);
    }

    /// Registers many events under one lock; keep it only as long as a synchronous loop.
    pub fn registrar(self: &Arc<Self>) -> Registrar<'_> {
        Registrar {
            tracker: self,
            inner: self.lock(),
        }
    }

    /// The offset below which everything was acknowledged.
    pub fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// Drops the registrations past `offset`: events a stopping reader registered but never
    /// queued, which the next reader of the file registers again when it reads them anew.
    pub fn forget_after(&self, offset: u64) {
        let moved = {
            let mut inner = self.lock();
            while inner.pending.back().is_some_and(|&(end, _)| end > offset) {
                inner.pending.pop_back();
            }
            inner.hint = inner.hint.min(inner.pending.len());
            inner.advance()
        };
        if moved {
            self.advanced.notify_waiters();
        }
    }

    /// Events read but not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.lock().pending.len()
    }

    /// Completes once `committed` has moved after this call; enable it, then check, then wait.
    pub fn advanced(&self) -> tokio::sync::futures::Notified<'_> {
        self.advanced.notified()
    }

    /// Marks every offset in `offsets` as acknowledged, under one lock.
    fn resolve_all(&self, offsets: &[u64]) {
        let moved = {
            let mut inner = self.lock();
            let mut head = false;
            for &offset in offsets {
                head |= inner.mark(offset);
            }
            head && inner.advance()
        };
        if moved {
            self.advanced.notify_waiters();
        }
    }
}

/// The tracker of one file, locked for a run of registrations (see [`AckTracker::registrar`]).
pub struct Registrar<'a> {
    tracker: &'a Arc<AckTracker>,
    inner: MutexGuard<'a, Inner>,
}

impl Registrar<'_> {
    /// Registers an event that ends at `end_offset` and returns its ack.
    pub fn register(&mut self, end_offset: u64) -> Ack {
        self.inner.pending.push_back((end_offset, false));
        Ack {
            tracker: Some(Arc::clone(self.tracker)),
            end_offset,
        }
    }

    /// Marks data up to `end_offset` as done without an event, in order.
    pub fn skip(&mut self, end_offset: u64) {
        self.inner.pending.push_back((end_offset, true));
        if self.inner.pending.len() == 1 && self.inner.advance() {
            self.tracker.advanced.notify_waiters();
        }
    }
}

/// The acknowledgement of one event; not `Clone`, resolved once by value.
#[derive(Debug)]
pub struct Ack {
    tracker: Option<Arc<AckTracker>>,
    end_offset: u64,
}

impl Ack {
    /// AWS accepted the event, or definitively refused it (counted elsewhere): either way
    /// the file may move past it.
    pub fn done(mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.resolve_all(&[self.end_offset]);
        }
    }

    /// [`Ack::done`] for many acks, taking each tracker's lock once per run of acks of the
    /// same file (a request's events mostly come from one file, in order).
    pub fn done_all(acks: impl IntoIterator<Item = Ack>) {
        let mut run: Option<Arc<AckTracker>> = None;
        let mut offsets: Vec<u64> = Vec::new();
        for mut ack in acks {
            let Some(tracker) = ack.tracker.take() else {
                continue;
            };
            if let Some(current) = &run {
                if !Arc::ptr_eq(current, &tracker) {
                    current.resolve_all(&offsets);
                    offsets.clear();
                    run = Some(tracker);
                }
            } else {
                run = Some(tracker);
            }
            offsets.push(ack.end_offset);
        }
        if let Some(current) = run {
            current.resolve_all(&offsets);
        }
    }

    /// Gives up on an event that was registered but never handed on, because its reader is
    /// stopping: the checkpoint stays below it (it is read again on the next start), and
    /// unlike a dropped ack this is not counted as lost on the way.
    pub fn unsent(mut self) {
        self.tracker = None;
    }

    /// An ack that tracks nothing, for events that do not come from a file (TCP EMF).
    pub fn none() -> Self {
        Ack {
            tracker: None,
            end_offset: 0,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.tracker.is_some() {
            DROPPED_UNRESOLVED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_past_a_stop_are_forgotten_and_registered_again() {
        let tracker = AckTracker::new(0);
        let sent = tracker.register(10);
        let unsent = [tracker.register(20), tracker.register(30)];
        tracker.skip(40);
        unsent.into_iter().for_each(Ack::unsent);
        tracker.forget_after(10);
        assert_eq!(tracker.outstanding(), 1);
        // The next reader reads 10..40 again.
        let again = [tracker.register(20), tracker.register(30)];
        sent.done();
        assert_eq!(tracker.committed(), 10);
        Ack::done_all(again);
        assert_eq!(tracker.committed(), 30);
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn committed_moves_only_over_a_fully_acked_prefix() {
        let t = AckTracker::new(0);
        let a = t.register(10);
        let b = t.register(20);
        let c = t.register(30);
        c.done();
        assert_eq!(t.committed(), 0, "out of order: nothing committed yet");
        a.done();
        assert_eq!(t.committed(), 10);
        b.done();
        assert_eq!(t.committed(), 30);
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_dropped_ack_holds_the_checkpoint() {
        let t = AckTracker::new(5);
        let a = t.register(10);
        let b = t.register(20);
        drop(a);
        b.done();
        assert_eq!(t.committed(), 5);
        assert!(DROPPED_UNRESOLVED.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn skipped_ranges_advance_in_order() {
        let t = AckTracker::new(0);
        let a = t.register(10);
        t.skip(15);
        assert_eq!(t.committed(), 0);
        a.done();
        assert_eq!(t.committed(), 15);
    }

    #[test]
    fn done_all_resolves_runs_of_several_files_in_any_order() {
        let (a, b) = (AckTracker::new(0), AckTracker::new(100));
        let a_acks: Vec<Ack> = (1..=5).map(|n| a.register(n * 10)).collect();
        let b_acks: Vec<Ack> = (1..=3).map(|n| b.register(100 + n)).collect();
        let mut mixed: Vec<Ack> = Vec::new();
        let mut a_iter = a_acks.into_iter();
        let mut b_iter = b_acks.into_iter();
        let first_a = a_iter.next().unwrap();
        mixed.extend(a_iter.rev());
        mixed.extend(b_iter.next());
        let rest_b: Vec<Ack> = b_iter.collect();
        Ack::done_all(mixed);
        assert_eq!(a.committed(), 0, "the first event of a is still out");
        assert_eq!(b.committed(), 101);
        first_a.done();
        assert_eq!(a.committed(), 50);
        assert_eq!(a.outstanding(), 0);
        Ack::done_all(rest_b);
        assert_eq!(b.committed(), 103);
    }

    #[test]
    fn equal_offsets_are_resolved_one_by_one() {
        let t = AckTracker::new(0);
        let a = t.register(10);
        let b = t.register(10);
        let c = t.register(20);
        a.done();
        assert_eq!(t.committed(), 10);
        c.done();
        assert_eq!(t.committed(), 10, "the second event at 10 is still out");
        b.done();
        assert_eq!(t.committed(), 20);
    }

    #[tokio::test]
    async fn waiters_learn_when_the_checkpoint_moves() {
        let t = AckTracker::new(0);
        let a = t.register(10);
        let advanced = t.advanced();
        tokio::pin!(advanced);
        advanced.as_mut().enable();
        let unsent = t.register(20);
        a.done();
        tokio::time::timeout(std::time::Duration::from_secs(1), advanced)
            .await
            .expect("woken");
        let dropped = DROPPED_UNRESOLVED.load(Ordering::Relaxed);
        unsent.unsent();
        assert_eq!(t.committed(), 10, "an unsent event holds the checkpoint");
        assert_eq!(DROPPED_UNRESOLVED.load(Ordering::Relaxed), dropped);
    }
}
