//! When the X-Ray source reads: on every readiness, or in paced drains with a pause between.
//!
//! Waking up per datagram is what a UDP source costs at moderate rates: every wake-up is an
//! epoll return, a `recvmmsg` that finds one datagram, one that finds none, a hand-off to the
//! batcher and a park. Below [`PACE_BELOW_PER_SEC`] the source therefore reads in drains: it
//! reads until the socket is empty, hands everything to the batcher at once, and sleeps a few
//! milliseconds on a timer while the kernel queues what arrives. At higher rates wake-ups are
//! already shared by many datagrams, and a reader that pauses competes with the senders for
//! the core, so from [`READ_ON_READINESS_FROM_PER_SEC`] up the source reads on readiness, one
//! `recvmmsg` per wake-up. The rate is measured over windows of at least [`RATE_WINDOW`]; the
//! two thresholds differ so a rate near one of them does not flip the mode every window.
//!
//! The kernel buffer holds the datagrams during a pause, so the pause must stay well below the
//! time that buffer takes to fill. The longest pause is what fills a quarter of the buffer at
//! the readiness threshold (at most [`MAX_PAUSE`]; a buffer too small for [`MIN_PAUSE`] is
//! never paced), so a burst up to that rate finds room. The pacer also watches how much of the
//! buffer each drain found queued and halves the pause when that is more than a quarter (down
//! to no pause at all: the readiness mode), and doubles it back when it is less than a
//! sixteenth. It never reads or sleeps itself; it only decides.

use std::time::{Duration, Instant};

/// The longest pause: at 4,000 datagrams/s it gathers ~80 per drain (a batch and a half), and
/// adds at most this much latency to a segment that then waits up to the batch flush interval
/// anyway.
pub const MAX_PAUSE: Duration = Duration::from_millis(20);

/// The shortest pause worth a timer (the runtime's timer resolution); below it, no pause.
pub const MIN_PAUSE: Duration = Duration::from_millis(1);

/// Below this rate (datagrams per second over a window) the source reads in paced drains.
pub const PACE_BELOW_PER_SEC: u64 = 15_000;

/// From this rate up the source reads on readiness.
pub const READ_ON_READINESS_FROM_PER_SEC: u64 = 20_000;

/// The shortest window a rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_millis(100);

/// What the kernel charges a queued datagram beyond its payload (`skb` truesize), roughly.
const KERNEL_OVERHEAD_BYTES: usize = 1024;

/// What a typical queued segment costs the kernel buffer: an SDK segment of ~1.2 KB plus
/// [`KERNEL_OVERHEAD_BYTES`].
const TYPICAL_QUEUED_BYTES: u64 = 1200 + KERNEL_OVERHEAD_BYTES as u64;

/// How the source reads now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One read per readiness, the socket watched by the runtime all the time.
    Readiness,
    /// Drains with a pause between them; the socket watched only while idle.
    Paced,
}

/// What the source does after a drain in the paced mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDrain {
    /// Sleep this long, then drain again.
    Pause(Duration),
    /// The drain found nothing: wait until the socket is readable.
    Idle,
    /// The rate or the queue is too high for pauses: switch to reading on readiness.
    Readiness,
}

/// The pacing state of one socket.
#[derive(Debug, Clone)]
pub struct Pacer {
    mode: Mode,
    pause: Duration,
    longest_pause: Duration,
    capacity_bytes: usize,
    queued_bytes: usize,
    window_start: Instant,
    window_datagrams: u64,
}

impl Pacer {
    /// A pacer for a socket whose kernel receive buffer is `capacity_bytes` (as the kernel
    /// reports it); starts paced at its longest pause, or on readiness when the buffer is too
    /// small to pace.
    pub fn new(capacity_bytes: usize, now: Instant) -> Self {
        let longest_pause = longest_pause(capacity_bytes);
        Pacer {
            mode: if longest_pause.is_some() {
                Mode::Paced
            } else {
                Mode::Readiness
            },
            pause: longest_pause.unwrap_or_default(),
            longest_pause: longest_pause.unwrap_or_default(),
            capacity_bytes,
            queued_bytes: 0,
            window_start: now,
            window_datagrams: 0,
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Notes one datagram of `len` bytes read.
    pub fn note(&mut self, len: usize) {
        self.window_datagrams += 1;
        self.queued_bytes = self
            .queued_bytes
            .saturating_add(len.saturating_add(KERNEL_OVERHEAD_BYTES));
    }

    /// After a read in the readiness mode: true when the rate fell below
    /// [`PACE_BELOW_PER_SEC`], and the mode is now paced.
    pub fn after_read(&mut self, now: Instant) -> bool {
        self.queued_bytes = 0;
        match self.rate(now) {
            Some(rate) if rate < PACE_BELOW_PER_SEC && !self.longest_pause.is_zero() => {
                self.mode = Mode::Paced;
                self.pause = self.longest_pause;
                true
            }
            _ => false,
        }
    }

    /// Within a long drain in the paced mode: true when the rate reached
    /// [`READ_ON_READINESS_FROM_PER_SEC`], and the mode is now reading on readiness. A flood
    /// that keeps the socket from ever coming back empty still switches within a window.
    pub fn during_drain(&mut self, now: Instant) -> bool {
        if self
            .rate(now)
            .is_some_and(|rate| rate >= READ_ON_READINESS_FROM_PER_SEC)
        {
            self.queued_bytes = 0;
            self.mode = Mode::Readiness;
            return true;
        }
        false
    }

    /// Called when a drain in the paced mode found the socket empty: what next.
    pub fn after_drain(&mut self, now: Instant) -> AfterDrain {
        let queued = std::mem::take(&mut self.queued_bytes);
        if self
            .rate(now)
            .is_some_and(|rate| rate >= READ_ON_READINESS_FROM_PER_SEC)
        {
            self.mode = Mode::Readiness;
            return AfterDrain::Readiness;
        }
        if queued == 0 {
            return AfterDrain::Idle;
        }
        if queued.saturating_mul(4) > self.capacity_bytes {
            self.pause /= 2;
            if self.pause < MIN_PAUSE {
                self.mode = Mode::Readiness;
                return AfterDrain::Readiness;
            }
        } else if queued.saturating_mul(16) < self.capacity_bytes {
            self.pause = (self.pause * 2).clamp(MIN_PAUSE, self.longest_pause);
        }
        AfterDrain::Pause(self.pause)
    }

    /// The pause a drain starts from after the switch to the paced mode.
    pub fn longest_pause(&self) -> Duration {
        self.longest_pause
    }

    /// Datagrams per second over the window that just closed; `None` while the window is
    /// shorter than [`RATE_WINDOW`].
    fn rate(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < RATE_WINDOW {
            return None;
        }
        let rate = self.window_datagrams.saturating_mul(1_000_000)
            / u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
        self.window_start = now;
        self.window_datagrams = 0;
        Some(rate)
    }
}

/// The time a quarter of `capacity_bytes` takes to fill with typical segments at
/// [`READ_ON_READINESS_FROM_PER_SEC`], at most [`MAX_PAUSE`]; `None` below [`MIN_PAUSE`].
fn longest_pause(capacity_bytes: usize) -> Option<Duration> {
    let quarter = capacity_bytes as u64 / 4;
    let micros =
        quarter.saturating_mul(1_000_000) / (READ_ON_READINESS_FROM_PER_SEC * TYPICAL_QUEUED_BYTES);
    let pause = Duration::from_micros(micros).min(MAX_PAUSE);
    (pause >= MIN_PAUSE).then_some(pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's figure for the default 4 MiB buffer.
    const CAPACITY: usize = 8 << 20;

    /// A drain of `datagrams` taken `after` the previous one.
    fn drain(
        pacer: &mut Pacer,
        now: &mut Instant,
        after: Duration,
        datagrams: usize,
    ) -> AfterDrain {
        *now += after;
        for _ in 0..datagrams {
            pacer.note(1200);
        }
        pacer.after_drain(*now)
    }

    #[test]
    fn a_light_load_keeps_the_longest_pause() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(CAPACITY, now);
        // 4,000/s: 80 datagrams per 20 ms, ~2% of the buffer.
        for _ in 0..100 {
            let next = drain(&mut pacer, &mut now, MAX_PAUSE, 80);
            assert_eq!(next, AfterDrain::Pause(MAX_PAUSE));
        }
        assert_eq!(pacer.mode(), Mode::Paced);
    }

    #[test]
    fn a_high_rate_switches_to_readiness_and_a_low_one_back() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(CAPACITY, now);
        // 22,000/s: 440 datagrams per 20 ms (~12% of the buffer, so the pause alone holds).
        let mut switched = false;
        for _ in 0..10 {
            if drain(&mut pacer, &mut now, MAX_PAUSE, 440) == AfterDrain::Readiness {
                switched = true;
                break;
            }
        }
        assert!(switched, "switched within a window or so");
        assert_eq!(pacer.mode(), Mode::Readiness);
        // 17,000/s on readiness: above the lower threshold, stays.
        for _ in 0..3400 {
            now += Duration::from_nanos(58_824);
            pacer.note(1200);
            assert!(!pacer.after_read(now));
        }
        // 4,000/s: back to paced once a window closes.
        let mut paced = false;
        for _ in 0..500 {
            now += Duration::from_micros(250);
            pacer.note(1200);
            if pacer.after_read(now) {
                paced = true;
                break;
            }
        }
        assert!(paced);
        assert_eq!(pacer.mode(), Mode::Paced);
    }

    #[test]
    fn a_drain_that_never_ends_switches_to_readiness_within_a_window() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(CAPACITY, now);
        let mut switched = false;
        // 125,000/s: 16 datagrams every 128 µs, never an empty read.
        for _ in 0..1000 {
            now += Duration::from_micros(128);
            for _ in 0..16 {
                pacer.note(1200);
            }
            if pacer.during_drain(now) {
                switched = true;
                break;
            }
        }
        assert!(switched);
        assert_eq!(pacer.mode(), Mode::Readiness);
    }

    #[test]
    fn a_filling_buffer_shortens_the_pause_down_to_readiness() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(CAPACITY, now);
        // 1,000 × 2,224 B ≈ 27% of the buffer: too close to full, whatever the rate.
        let step = Duration::from_millis(200);
        let mut last = MAX_PAUSE;
        for _ in 0..5 {
            match drain(&mut pacer, &mut now, step, 1000) {
                AfterDrain::Pause(pause) => {
                    assert_eq!(pause, last / 2);
                    last = pause;
                }
                AfterDrain::Readiness => return,
                AfterDrain::Idle => panic!("not idle"),
            }
        }
        panic!("still pausing at {last:?}");
    }

    #[test]
    fn the_pause_grows_back_when_the_load_falls() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(CAPACITY, now);
        let step = Duration::from_millis(200);
        drain(&mut pacer, &mut now, step, 1000);
        drain(&mut pacer, &mut now, step, 1000);
        assert_eq!(
            drain(&mut pacer, &mut now, step, 5),
            AfterDrain::Pause(MAX_PAUSE / 2)
        );
        assert_eq!(
            drain(&mut pacer, &mut now, step, 5),
            AfterDrain::Pause(MAX_PAUSE)
        );
    }

    #[test]
    fn an_empty_drain_waits_for_readiness_in_the_paced_mode() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(CAPACITY, now);
        assert_eq!(drain(&mut pacer, &mut now, MAX_PAUSE, 0), AfterDrain::Idle);
        assert_eq!(pacer.mode(), Mode::Paced);
    }

    #[test]
    fn a_small_buffer_gets_a_short_pause_and_a_tiny_one_none() {
        // The common default rmem (212,992 B, reported doubled): a quarter of it fills in
        // ~2.4 ms at the readiness threshold.
        let now = Instant::now();
        let small = Pacer::new(2 * 212_992, now);
        assert_eq!(small.mode(), Mode::Paced);
        assert!(small.longest_pause() >= MIN_PAUSE);
        assert!(small.longest_pause() < Duration::from_millis(3));
        assert_eq!(Pacer::new(CAPACITY, now).longest_pause(), MAX_PAUSE);
        let mut tiny = Pacer::new(100_000, now);
        assert_eq!(tiny.mode(), Mode::Readiness);
        let mut later = now;
        for _ in 0..1000 {
            later += Duration::from_millis(1);
            tiny.note(1200);
            assert!(!tiny.after_read(later), "never paced");
        }
    }
}
