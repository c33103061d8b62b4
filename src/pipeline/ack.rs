//! Acknowledgements: how a file learns which of its bytes AWS has accepted.
//!
//! Every event read from a file carries an [`Ack`] for the file offset just past it. Batches
//! may finish out of order (several calls in flight), so the [`AckTracker`] keeps the
//! outstanding offsets in order and moves its `committed` offset only over a prefix that is
//! entirely acknowledged: the checkpoint never passes an event AWS has not taken, and a crash
//! re-sends at most the batches that were in flight. An [`Ack`] is resolved exactly once, by
//! value; one dropped unresolved (shutdown deadline, a bug) keeps the checkpoint where it is
//! and is counted, so that data is read again on the next start rather than lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Acks dropped without being resolved, process-wide.
pub static DROPPED_UNRESOLVED: AtomicU64 = AtomicU64::new(0);

/// The acknowledgement state of one file.
#[derive(Debug)]
pub struct AckTracker {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// End offset → acknowledged yet.
    pending: BTreeMap<u64, bool>,
    committed: u64,
}

impl AckTracker {
    /// A tracker whose data is committed up to `offset` (the checkpoint it resumed from).
    pub fn new(offset: u64) -> Arc<Self> {
        Arc::new(AckTracker {
            inner: Mutex::new(Inner {
                pending: BTreeMap::new(),
                committed: offset,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain integers;
        // the map is still consistent enough to keep the checkpoint conservative.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an event that ends at `end_offset` (offsets must grow) and returns its ack.
    pub fn register(self: &Arc<Self>, end_offset: u64) -> Ack {
        self.lock().pending.insert(end_offset, false);
        Ack {
            tracker: Some(Arc::clone(self)),
            end_offset,
        }
    }

    /// Marks data up to `end_offset` as done without an event (filtered lines, skipped bytes),
    /// in order with the events around it.
    pub fn skip(self: &Arc<Self>, end_offset: u64) {
        self.register(end_offset).done();
    }

    /// The offset below which everything was acknowledged.
    pub fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// Events read but not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.lock().pending.len()
    }

    fn resolve(&self, end_offset: u64) {
        let mut inner = self.lock();
        if let Some(done) = inner.pending.get_mut(&end_offset) {
            *done = true;
        }
        while let Some(entry) = inner.pending.first_entry() {
            if !*entry.get() {
                break;
            }
            let (offset, _) = entry.remove_entry();
            inner.committed = inner.committed.max(offset);
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
            tracker.resolve(self.end_offset);
        }
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
}
