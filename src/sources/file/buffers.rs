//! Read buffers that the lines of a read share, and that come back when the last line is gone.
//!
//! A full read (256 KiB) becomes `Bytes` whose slices are the lines' texts (see
//! `pipeline::message`), so no line is copied or allocated on its own. The buffer lives as
//! long as one of its lines is queued or in flight and then returns here, to be read into
//! again: a new buffer of that size is a fresh mapping whose pages the kernel must fault in
//! and zero on every read.
//!
//! One pool for all tailers, holding at most [`KEPT`] buffers, fewer under a small memory
//! budget ([`kept_for_budget`]): what is kept does not grow with the number of files. A file's read-ahead is returned a few calls at a time, out of
//! order, and the reader takes it again in one go when the oldest call lands: a smaller pool
//! let most buffers go and mapped new ones (an eighth of the CPU at full speed). Buffers
//! idle for [`IDLE`] are let go when a tailer finds its file's end, so a quiet agent holds
//! none.
//!
//! A buffer in use holds a budget charge for all of it, given back with the buffer when its
//! last line is gone, and its lines are charged nothing for their text. Charging each line
//! its length let go of a buffer's bytes while it still lived: the first lines of a read
//! land in one call and the rest in the next, and with fifty streams draining after an
//! outage those buffers held megabytes that the budget no longer counted.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::tailer::{MAX_UNACKED_BYTES, READ_BYTES};
use crate::pipeline::budget::Permit;

/// Buffers kept for the next reads, at most: one file's read-ahead (4 MiB).
pub const KEPT: usize = (MAX_UNACKED_BYTES as usize) / READ_BYTES;

/// How long a buffer may wait for a read before [`ReadBuffers::trim`] lets it go.
pub const IDLE: Duration = Duration::from_secs(5);

/// Buffers kept for a memory budget of `budget_bytes`: a thirty-second of it, at least 2 and
/// at most [`KEPT`]. A kept buffer keeps its charge, so what waits here is bytes the events
/// cannot have; with fifty files draining a 32 MiB budget after an outage, 16 kept buffers
/// (then uncharged) put the peak over the ceiling.
pub fn kept_for_budget(budget_bytes: usize) -> usize {
    (budget_bytes / 32 / READ_BYTES).clamp(2, KEPT)
}

/// A free buffer and the budget's hold on it.
#[derive(Debug)]
struct Kept {
    buffer: Vec<u8>,
    charge: Permit,
    since: Instant,
}

/// The free buffers, shared by every tailer of a file source.
#[derive(Debug)]
pub struct ReadBuffers {
    free: Mutex<Vec<Kept>>,
    kept: usize,
}

impl ReadBuffers {
    /// An empty pool that keeps up to `kept` buffers.
    pub fn new(kept: usize) -> Arc<Self> {
        Arc::new(ReadBuffers {
            free: Mutex::new(Vec::new()),
            kept,
        })
    }

    /// A returned buffer to read into, with its charge, if one waits.
    pub fn take(&self) -> Option<(Vec<u8>, Permit)> {
        self.lock().pop().map(|kept| (kept.buffer, kept.charge))
    }

    /// Keeps `buffer` and its `charge` for a later read if fewer than the pool keeps wait
    /// (its bytes are stale); else both are let go.
    pub fn keep(&self, buffer: Vec<u8>, charge: Permit) {
        if buffer.capacity() == 0 {
            return;
        }
        let mut free = self.lock();
        if free.len() < self.kept {
            free.push(Kept {
                buffer,
                charge,
                since: Instant::now(),
            });
        }
    }

    /// Lets go of the buffers that waited longer than [`IDLE`], and their charges (a tailer
    /// at its file's end calls this: when every file is quiet, nothing is kept for long).
    pub fn trim(&self) {
        self.trim_at(Instant::now());
    }

    fn trim_at(&self, now: Instant) {
        let mut free = self.lock();
        if !free.is_empty() {
            free.retain(|kept| now.saturating_duration_since(kept.since) <= IDLE);
        }
    }

    /// The first `len` bytes of `buffer` as shared `Bytes`; the buffer comes back to this
    /// pool with `charge` (the budget's hold on the whole buffer) when the last slice of them
    /// is dropped.
    pub fn share(self: &Arc<Self>, buffer: Vec<u8>, len: usize, charge: Permit) -> Bytes {
        Bytes::from_owner(Returning {
            len: len.min(buffer.len()),
            buffer,
            pool: Arc::downgrade(self),
            charge: Some(charge),
        })
    }

    /// Buffers waiting (tests).
    pub fn kept(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Kept>> {
        // Only buffers are kept here; a panic elsewhere cannot leave the list half-updated.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Owns a shared read buffer and its budget charge; gives both back when dropped.
struct Returning {
    buffer: Vec<u8>,
    len: usize,
    pool: Weak<ReadBuffers>,
    charge: Option<Permit>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(pool), Some(charge)) = (self.pool.upgrade(), self.charge.take()) {
            pool.keep(std::mem::take(&mut self.buffer), charge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::budget::Budget;

    /// A charge of `bytes` from a budget of its own.
    fn charge(bytes: usize) -> Permit {
        Budget::new(1 << 20)
            .try_acquire(bytes)
            .expect("fits an empty budget")
    }

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = ReadBuffers::new(KEPT);
        let buffer = vec![b'x'; 1024];
        let address = buffer.as_ptr();
        let shared = pool.share(buffer, 10, charge(1024));
        let line = shared.slice(2..5);
        drop(shared);
        assert_eq!(pool.kept(), 0, "a line still holds it");
        assert_eq!(&line[..], b"xxx");
        drop(line);
        assert_eq!(pool.kept(), 1);
        let (again, _charge) = pool.take().expect("kept");
        assert_eq!(
            again.as_ptr(),
            address,
            "the same allocation is read into again"
        );
        assert_eq!(
            again.len(),
            1024,
            "sized already: no zeroing on the next read"
        );
    }

    #[test]
    fn at_most_kept_buffers_wait_whatever_the_number_of_readers() {
        let pool = ReadBuffers::new(KEPT);
        let shared: Vec<Bytes> = (0..KEPT + 3)
            .map(|_| pool.share(vec![0u8; 64], 64, charge(64)))
            .collect();
        drop(shared);
        assert_eq!(pool.kept(), KEPT);
        pool.keep(Vec::new(), charge(0));
        assert_eq!(pool.kept(), KEPT);
    }

    #[test]
    fn a_small_budget_keeps_fewer_buffers() {
        assert_eq!(kept_for_budget(32 << 20), 4);
        assert_eq!(kept_for_budget(1 << 20), 2);
        assert_eq!(kept_for_budget(1 << 30), KEPT);
        let pool = ReadBuffers::new(kept_for_budget(32 << 20));
        let shared: Vec<Bytes> = (0..8)
            .map(|_| pool.share(vec![0u8; 64], 64, charge(64)))
            .collect();
        drop(shared);
        assert_eq!(pool.kept(), 4);
    }

    #[test]
    fn idle_buffers_are_let_go_by_trim() {
        let pool = ReadBuffers::new(KEPT);
        pool.keep(vec![0u8; 64], charge(64));
        pool.trim();
        assert_eq!(pool.kept(), 1, "a fresh buffer stays");
        pool.trim_at(Instant::now() + IDLE + Duration::from_millis(1));
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn a_buffer_outliving_its_pool_is_simply_freed() {
        let pool = ReadBuffers::new(KEPT);
        let shared = pool.share(vec![1u8; 8], 4, charge(8));
        drop(pool);
        assert_eq!(&shared[..], &[1, 1, 1, 1]);
    }

    #[test]
    fn the_whole_buffer_stays_charged_until_its_last_line_is_gone_and_while_kept() {
        let budget = Budget::new(1 << 20);
        let pool = ReadBuffers::new(KEPT);
        let held = budget.try_acquire(4096).expect("fits");
        let charged = budget.in_use_bytes();
        assert!(charged >= 4096);
        let shared = pool.share(vec![b'a'; 4096], 4096, held);
        let first = shared.slice(0..10);
        let last = shared.slice(4000..4096);
        drop(shared);
        drop(first);
        assert_eq!(
            budget.in_use_bytes(),
            charged,
            "one line still holds the buffer, so all of it stays charged"
        );
        drop(last);
        assert_eq!(pool.kept(), 1);
        assert_eq!(budget.in_use_bytes(), charged, "kept with its charge");
        let (buffer, charge) = pool.take().expect("kept");
        pool.keep(buffer, charge);
        pool.trim_at(Instant::now() + IDLE + Duration::from_millis(1));
        assert_eq!(pool.kept(), 0);
        assert_eq!(budget.in_use_bytes(), 0, "let go with the buffer");
    }

    #[test]
    fn a_full_pool_lets_the_charge_go_with_the_buffer() {
        let budget = Budget::new(1 << 20);
        let pool = ReadBuffers::new(1);
        pool.keep(vec![0u8; 64], charge(64));
        let held = budget.try_acquire(4096).expect("fits");
        drop(pool.share(vec![0u8; 4096], 4096, held));
        assert_eq!(pool.kept(), 1);
        assert_eq!(budget.in_use_bytes(), 0);
    }
}
