//! Request-body buffers kept from one `PutLogEvents` call to the next.
//!
//! A full request's body (≈ 1.1 MiB) is far above the allocator's mmap threshold (128 KiB,
//! `memory.rs`), so a body written into a fresh `Vec` is a fresh mapping: each of its ~280
//! pages is faulted in and zeroed by the kernel while the JSON is written, and the whole
//! mapping is unmapped again after the call. At full speed that is a sixth of the agent's CPU
//! for no work of its own. Writing the next body into the buffer of a finished call touches
//! pages that are already there.
//!
//! Bounded on both sides: at most `keep` buffers wait here (the calls one stream may have in
//! flight, fewer under a small memory budget), only buffers worth keeping (at least [`MIN_KEPT_BYTES`]) are kept, and a buffer
//! that waited longer than [`IDLE`] is let go at the next call, large or small, so an agent
//! whose traffic falls to a trickle returns the memory instead of holding a burst's buffers
//! (an agent that stops sending altogether keeps them until its next call).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Smaller bodies come from the heap's free lists anyway; keeping them would save nothing.
pub const MIN_KEPT_BYTES: usize = 128 * 1024;

/// How long a buffer may wait for the next call before it is let go.
pub const IDLE: Duration = Duration::from_secs(5);

/// The buffers of finished calls, ready for the next bodies.
#[derive(Debug)]
pub struct BodyBuffers {
    free: Mutex<Vec<(Vec<u8>, Instant)>>,
    keep: usize,
}

impl BodyBuffers {
    /// Keeps up to `keep` buffers (0: none, every body is a fresh allocation).
    pub fn new(keep: usize) -> Self {
        BodyBuffers {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer for a body of about `bytes`: a kept one when the body is large enough
    /// to be worth it and one is waiting, else a new one of that capacity.
    pub fn take(&self, bytes: usize) -> Vec<u8> {
        let mut free = self.lock();
        if !free.is_empty() {
            drop_idle(&mut free, Instant::now());
        }
        if bytes >= MIN_KEPT_BYTES {
            if let Some((mut buffer, _)) = free.pop() {
                drop(free);
                buffer.clear();
                buffer.reserve(bytes);
                return buffer;
            }
        }
        Vec::with_capacity(bytes)
    }

    /// Keeps the buffer behind `body` for a later call, if nothing else holds the body any
    /// more, the buffer is large enough, and fewer than `keep` wait already.
    pub fn give_back(&self, body: Bytes) {
        let Ok(buffer) = body.try_into_mut() else {
            return;
        };
        let buffer = Vec::from(buffer);
        if buffer.capacity() < MIN_KEPT_BYTES {
            return;
        }
        let now = Instant::now();
        let mut free = self.lock();
        drop_idle(&mut free, now);
        if free.len() < self.keep {
            free.push((buffer, now));
        }
    }

    /// Bytes held by waiting buffers (for tests and the memory report).
    pub fn held_bytes(&self) -> usize {
        self.lock().iter().map(|(b, _)| b.capacity()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<u8>, Instant)>> {
        // A panic while holding the lock leaves at worst a buffer too many or too few.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lets go of the buffers that waited longer than [`IDLE`] before `now`.
fn drop_idle(free: &mut Vec<(Vec<u8>, Instant)>, now: Instant) {
    free.retain(|(_, since)| now.saturating_duration_since(*since) <= IDLE);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 1 << 20;

    fn body_of(buffer: Vec<u8>) -> Bytes {
        Bytes::from(buffer)
    }

    #[test]
    fn a_finished_body_is_written_into_again() {
        let buffers = BodyBuffers::new(2);
        let mut first = buffers.take(BIG);
        first.extend_from_slice(b"{}");
        let address = first.as_ptr();
        buffers.give_back(body_of(first));
        assert!(buffers.held_bytes() >= BIG);
        let second = buffers.take(BIG);
        assert_eq!(second.as_ptr(), address, "the same allocation comes back");
        assert!(second.is_empty());
        assert_eq!(buffers.held_bytes(), 0);
    }

    #[test]
    fn a_body_still_held_elsewhere_is_not_kept() {
        let buffers = BodyBuffers::new(2);
        let mut buffer = buffers.take(BIG);
        buffer.push(b'x');
        let body = body_of(buffer);
        let still_sending = body.clone();
        buffers.give_back(body);
        assert_eq!(buffers.held_bytes(), 0);
        assert_eq!(
            &still_sending[..],
            b"x",
            "the other holder's bytes are untouched"
        );
    }

    #[test]
    fn at_most_keep_buffers_wait_and_small_ones_never() {
        let buffers = BodyBuffers::new(2);
        let taken: Vec<Vec<u8>> = (0..4).map(|_| buffers.take(BIG)).collect();
        for buffer in taken {
            buffers.give_back(body_of(buffer));
        }
        let held = buffers.held_bytes();
        assert!((2 * BIG..3 * BIG).contains(&held), "held {held}");

        let small = BodyBuffers::new(2);
        small.give_back(body_of(small.take(1024)));
        assert_eq!(small.held_bytes(), 0);
        let none = BodyBuffers::new(0);
        none.give_back(body_of(none.take(BIG)));
        assert_eq!(none.held_bytes(), 0);
    }

    #[test]
    fn a_small_body_gets_a_fresh_buffer_and_leaves_the_kept_ones() {
        let buffers = BodyBuffers::new(1);
        buffers.give_back(body_of(buffers.take(BIG)));
        let small = buffers.take(100);
        assert!(small.capacity() < MIN_KEPT_BYTES);
        assert!(buffers.held_bytes() >= BIG);
    }

    #[test]
    fn idle_buffers_are_let_go() {
        let mut free = vec![
            (Vec::with_capacity(BIG), Instant::now()),
            (Vec::with_capacity(BIG), Instant::now()),
        ];
        drop_idle(&mut free, Instant::now());
        assert_eq!(free.len(), 2);
        drop_idle(&mut free, Instant::now() + IDLE + Duration::from_millis(1));
        assert!(free.is_empty());
    }
}
