//! A batch that closes on the API's limits or on age.
//!
//! Pure bookkeeping, no I/O and no clock of its own: the caller passes `now`, so every rule is
//! unit-tested without sleeping. A batch closes when one more item would exceed the item count
//! or the byte limit, or when its oldest item has waited `max_age` (bounded latency: a steady
//! trickle of items still ships every `max_age`, unlike an idle timer that a trickle keeps
//! resetting). Sinks with extra rules (CloudWatch Logs' 24-hour span) layer them on top.

use std::time::{Duration, Instant};

/// The limits a batch must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most items per batch (50 for `PutTraceSegments`).
    pub max_items: usize,
    /// Most bytes per batch, as the API counts them (item size incl. any per-item overhead).
    pub max_bytes: usize,
    /// Longest an item waits in a partly full batch.
    pub max_age: Duration,
}

/// Items gathered towards one API call.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    items: Vec<T>,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl<T> Batcher<T> {
    /// An empty batcher keeping `limits`.
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            items: Vec::new(),
            bytes: 0,
            opened_at: None,
        }
    }

    /// Adds an item of `size` bytes. Returns the previous batch when this item did not fit in
    /// it, and also closes the new batch at once when it reached the item limit, so the caller
    /// may get a finished batch back. An item larger than `max_bytes` on its own still forms a
    /// batch of one: the sink decides what to do with it; the batcher never loses it.
    pub fn push(&mut self, item: T, size: usize, now: Instant) -> Option<Vec<T>> {
        let full = !self.items.is_empty()
            && (self.items.len() >= self.limits.max_items
                || self.bytes.saturating_add(size) > self.limits.max_bytes);
        let closed = if full { self.take() } else { None };
        if self.items.is_empty() {
            self.opened_at = Some(now);
        }
        self.items.push(item);
        self.bytes = self.bytes.saturating_add(size);
        closed
    }

    /// True when the batch can take no further item (the caller should ship it now).
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.limits.max_items || self.bytes >= self.limits.max_bytes
    }

    /// When the current batch must be shipped even if not full; `None` when empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.max_age)
    }

    /// True when the batch has items and its deadline has passed.
    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Closes and returns the current batch; `None` when empty.
    pub fn take(&mut self) -> Option<Vec<T>> {
        if self.items.is_empty() {
            return None;
        }
        self.bytes = 0;
        self.opened_at = None;
        // The next batch is likely as long as this one: reserve that much instead of growing
        // (and copying) it by doubling.
        let capacity = self.items.len().min(self.limits.max_items);
        Some(std::mem::replace(
            &mut self.items,
            Vec::with_capacity(capacity),
        ))
    }

    /// Items in the current batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no item waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BatchLimits {
        BatchLimits {
            max_items: 3,
            max_bytes: 100,
            max_age: Duration::from_secs(1),
        }
    }

    #[test]
    fn closes_on_item_count() {
        let now = Instant::now();
        let mut b = Batcher::new(limits());
        assert!(b.push(1, 1, now).is_none());
        assert!(b.push(2, 1, now).is_none());
        assert!(b.push(3, 1, now).is_none());
        assert!(b.is_full());
        assert_eq!(b.push(4, 1, now), Some(vec![1, 2, 3]));
        assert_eq!(b.take(), Some(vec![4]));
        assert_eq!(b.take(), None);
    }

    #[test]
    fn closes_before_exceeding_bytes() {
        let now = Instant::now();
        let mut b = Batcher::new(limits());
        assert!(b.push("a", 60, now).is_none());
        assert_eq!(b.push("b", 60, now), Some(vec!["a"]));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn oversized_item_forms_its_own_batch() {
        let now = Instant::now();
        let mut b = Batcher::new(limits());
        assert!(b.push("huge", 500, now).is_none());
        assert!(b.is_full());
        assert_eq!(b.push("next", 1, now), Some(vec!["huge"]));
    }

    #[test]
    fn deadline_counts_from_the_oldest_item() {
        let t0 = Instant::now();
        let mut b = Batcher::new(limits());
        assert_eq!(b.deadline(), None);
        b.push(1, 1, t0);
        b.push(2, 1, t0 + Duration::from_millis(900));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(!b.is_due(t0 + Duration::from_millis(999)));
        assert!(b.is_due(t0 + Duration::from_secs(1)));
        b.take();
        assert!(!b.is_due(t0 + Duration::from_secs(5)));
    }
}
