//! How long the X-Ray source lets datagrams gather in the kernel before it reads again.
//!
//! Waking up per datagram is what a UDP source costs at moderate rates: every wake-up is an
//! epoll return, a `recvmmsg` that finds one datagram, one that finds none, a hand-off to the
//! batcher and a park. After a read that emptied the socket the source therefore sleeps a few
//! milliseconds on a timer and then reads everything that arrived meanwhile in one go; after a
//! full read it reads again at once, so a flood is read as fast as without the pause.
//!
//! The kernel buffer holds the datagrams during the pause, so the pause must stay well below the
//! time that buffer takes to fill. The pacer watches how much of the buffer the last drain
//! found queued and halves the pause when that is more than a quarter (down to no pause at
//! all: waiting on readiness, as without the pacer), and doubles it back when it is less than a
//! sixteenth. It never reads or sleeps itself; it only decides.

use std::time::Duration;

/// The longest pause: at 4,000 datagrams/s it gathers ~20 per read, and adds at most this much
/// latency to a segment that then waits up to the batch flush interval anyway.
pub const MAX_PAUSE: Duration = Duration::from_millis(5);

/// The shortest pause worth a timer (the runtime's timer resolution); below it, no pause.
pub const MIN_PAUSE: Duration = Duration::from_millis(1);

/// What the kernel charges a queued datagram beyond its payload (`skb` truesize), roughly.
const KERNEL_OVERHEAD_BYTES: usize = 1024;

/// The pause state of one socket.
#[derive(Debug, Clone)]
pub struct Pacer {
    pause: Duration,
    capacity_bytes: usize,
    queued_bytes: usize,
}

impl Pacer {
    /// A pacer for a socket whose kernel receive buffer is `capacity_bytes` (as the kernel
    /// reports it); starts at [`MAX_PAUSE`].
    pub fn new(capacity_bytes: usize) -> Self {
        Pacer {
            pause: MAX_PAUSE,
            capacity_bytes,
            queued_bytes: 0,
        }
    }

    /// Notes one datagram of `len` bytes read in the current drain.
    pub fn note(&mut self, len: usize) {
        self.queued_bytes = self
            .queued_bytes
            .saturating_add(len.saturating_add(KERNEL_OVERHEAD_BYTES));
    }

    /// Called when a read found the socket empty: ends the drain and returns how long to
    /// wait before reading again; `None` means wait for the socket to become readable, which is
    /// also the answer when the drain found nothing (an idle socket costs no timer).
    pub fn pause(&mut self) -> Option<Duration> {
        let queued = std::mem::take(&mut self.queued_bytes);
        if queued == 0 {
            return None;
        }
        if queued.saturating_mul(4) > self.capacity_bytes {
            self.pause /= 2;
            if self.pause < MIN_PAUSE {
                self.pause = Duration::ZERO;
            }
        } else if queued.saturating_mul(16) < self.capacity_bytes {
            self.pause = (self.pause * 2).clamp(MIN_PAUSE, MAX_PAUSE);
        }
        (!self.pause.is_zero()).then_some(self.pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPACITY: usize = 1 << 20;

    fn drain(pacer: &mut Pacer, datagrams: usize) -> Option<Duration> {
        for _ in 0..datagrams {
            pacer.note(1200);
        }
        pacer.pause()
    }

    #[test]
    fn a_light_load_keeps_the_longest_pause() {
        let mut pacer = Pacer::new(CAPACITY);
        for _ in 0..10 {
            assert_eq!(drain(&mut pacer, 20), Some(MAX_PAUSE));
        }
    }

    #[test]
    fn a_filling_buffer_shortens_the_pause_down_to_none() {
        let mut pacer = Pacer::new(CAPACITY);
        // 200 × 2,224 B ≈ 42% of the buffer: too close to full.
        assert_eq!(drain(&mut pacer, 200), Some(MAX_PAUSE / 2));
        assert_eq!(drain(&mut pacer, 200), Some(MAX_PAUSE / 4));
        assert_eq!(drain(&mut pacer, 200), None);
        assert_eq!(
            drain(&mut pacer, 200),
            None,
            "stays at readiness under load"
        );
    }

    #[test]
    fn the_pause_grows_back_when_the_load_falls() {
        let mut pacer = Pacer::new(CAPACITY);
        for _ in 0..4 {
            drain(&mut pacer, 200);
        }
        assert_eq!(drain(&mut pacer, 5), Some(MIN_PAUSE));
        assert_eq!(drain(&mut pacer, 5), Some(MIN_PAUSE * 2));
        assert_eq!(drain(&mut pacer, 5), Some(MIN_PAUSE * 4));
        assert_eq!(drain(&mut pacer, 5), Some(MAX_PAUSE));
    }

    #[test]
    fn a_middling_load_keeps_the_pause_it_has() {
        let mut pacer = Pacer::new(CAPACITY);
        drain(&mut pacer, 200);
        // 60 × 2,224 B ≈ 13%: between a sixteenth and a quarter.
        assert_eq!(drain(&mut pacer, 60), Some(MAX_PAUSE / 2));
    }

    #[test]
    fn an_empty_drain_waits_for_readiness_and_keeps_the_pause() {
        let mut pacer = Pacer::new(CAPACITY);
        drain(&mut pacer, 200);
        assert_eq!(drain(&mut pacer, 0), None);
        assert_eq!(drain(&mut pacer, 60), Some(MAX_PAUSE / 2));
    }

    #[test]
    fn a_tiny_buffer_never_pauses_for_long() {
        // The common default rmem (212,992 B, reported doubled): 5 ms of 4,000/s is 20
        // datagrams, ~21% of it, which is kept; anything heavier shortens the pause.
        let mut pacer = Pacer::new(2 * 212_992);
        assert_eq!(drain(&mut pacer, 20), Some(MAX_PAUSE));
        assert_eq!(drain(&mut pacer, 60), Some(MAX_PAUSE / 2));
    }
}
