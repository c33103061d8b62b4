//! One byte budget for the process: a semaphore whose permits are bytes.
//!
//! Every item a source queues holds a [`Permit`] for its size (plus a fixed per-item overhead
//! for the bookkeeping around it) until its batch is delivered or dropped, so the bytes held by
//! the agent never exceed the budget, however slow AWS is. Datagram sources only ever
//! [`Budget::try_acquire`] (a full budget means "drop and count"); file and TCP sources will
//! `await` [`Budget::acquire`], so the file or the kernel holds the backlog instead of us.
//! The budget never allocates or frees memory itself: it only counts.

//! One byte budget for the process, shared by the traces, logs and metrics pipelines.
//!
//! Every item a source queues holds a [`Permit`] for its size (plus a fixed per-item overhead
//! for the bookkeeping around it) until its batch is delivered or dropped, so the bytes held by
//! the agent never exceed the budget, however slow AWS is. Datagram sources only ever
//! [`Budget::try_acquire`] (a full budget means "spill or drop, and count"); file and TCP
//! sources `await` [`Budget::acquire`], so the file or the kernel holds the backlog instead.
//!
//! Each pipeline has a floor: bytes no other pipeline may take. Above its floor a pipeline
//! draws from what is left (the shared part), first come first served. So a trace flood can
//! fill the shared part and its own floor, yet log lines still find their floor free. The rule
//! is one inequality: `Σ max(in_use, floor)` over the pipelines never exceeds the total.
//! The budget never allocates or frees memory itself: it only counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Bytes charged per item on top of its payload: the `String` header, the batch's `Vec` slot
/// and the channel slot it passed through. A flood of tiny datagrams must not slip past the
/// budget because each payload is small.
pub const ITEM_OVERHEAD_BYTES: usize = 64;

/// The smallest budget the agent accepts, as the X-Ray daemon does (3 MB).
pub const MIN_BUDGET_BYTES: usize = 3 * 1024 * 1024;

/// The pipelines that share the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// X-Ray segments.
    Traces,
    /// Log events from files (and what the logs sink holds in flight).
    Logs,
    /// EMF documents, StatsD and host metrics, queued `PutMetricData` calls.
    Metrics,
}

impl Pipeline {
    /// Every pipeline, in the order of [`Floors`] and of `/metrics`.
    pub const ALL: [Pipeline; 3] = [Pipeline::Traces, Pipeline::Logs, Pipeline::Metrics];

    fn index(self) -> usize {
        self as usize
    }
}

/// Bytes reserved for each pipeline, indexed like [`Pipeline::ALL`]. Their sum is at most the
/// total (the constructor scales them down if not).
pub type Floors = [usize; 3];

/// The shared state behind every [`Budget`] handle.
#[derive(Debug)]
struct Pool {
    total_bytes: usize,
    floors: Floors,
    in_use: Mutex<[usize; 3]>,
    /// Woken when bytes are given back, for [`Budget::acquire`].
    released: Notify,
    /// Tasks waiting in [`Budget::acquire`]; releases skip the wake-up when there are none.
    waiters: AtomicUsize,
}

/// One pipeline's handle on the shared byte budget. Cloning is cheap; every clone of every
/// pipeline draws from the same total.
#[derive(Debug, Clone)]
pub struct Budget {
    pool: Arc<Pool>,
    pipeline: Pipeline,
}

/// Bytes held from a [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    _inner: Held,
}

/// The bytes a permit holds from one pipeline's share; given back when dropped.
#[derive(Debug)]
struct Charge {
    pool: Arc<Pool>,
    pipeline: Pipeline,
    bytes: usize,
}

/// A permit of its own, or a share of one taken for a group of items.
#[derive(Debug)]
enum Held {
    Own(Charge),
    Shared(Arc<Charge>),
}

impl Permit {
    /// The bytes this permit's charge holds (a shared one: the whole group's).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        match &self._inner {
            Held::Own(charge) => charge.bytes,
            Held::Shared(charge) => charge.bytes,
        }
    }

    /// Turns a permit taken for a group of items (see [`Budget::acquire_items`]) into one
    /// [`Permit`] per item. The group's bytes come back when the last item is dropped: a
    /// reader taking budget once per read, not once per line, pays for that with slightly
    /// later releases, never with a smaller charge.
    pub fn shared(self) -> SharedPermit {
        SharedPermit(match self._inner {
            Held::Own(inner) => Arc::new(inner),
            Held::Shared(inner) => inner,
        })
    }
}

/// A group's permit, handed out to its items (see [`Permit::shared`]).
#[derive(Debug, Clone)]
pub struct SharedPermit(Arc<Charge>);

impl SharedPermit {
    /// One more item's hold on the group's bytes.
    pub fn share(&self) -> Permit {
        Permit {
            _inner: Held::Shared(Arc::clone(&self.0)),
        }
    }
}

impl Budget {
    /// A budget of `total_bytes` without floors (tests, or a single pipeline).
    pub fn new(total_bytes: usize) -> Self {
        Self::with_floors(total_bytes, [0; 3])
    }

    /// A budget of `total_bytes` with `floors` reserved per pipeline; the handle returned is
    /// for traces, [`Budget::for_pipeline`] gives the others.
    pub fn with_floors(total_bytes: usize, floors: Floors) -> Self {
        let sum: usize = floors.iter().sum();
        let floors = if sum > total_bytes {
            floors.map(|f| f.saturating_mul(total_bytes) / sum.max(1))
        } else {
            floors
        };
        Budget {
            pool: Arc::new(Pool {
                total_bytes,
                floors,
                in_use: Mutex::new([0; 3]),
                released: Notify::new(),
                waiters: AtomicUsize::new(0),
            }),
            pipeline: Pipeline::Traces,
        }
    }

    /// A handle charging `pipeline`, on the same budget.
    pub fn for_pipeline(&self, pipeline: Pipeline) -> Budget {
        Budget {
            pool: Arc::clone(&self.pool),
            pipeline,
        }
    }

    /// The budget's size in bytes (all pipelines).
    pub fn total_bytes(&self) -> usize {
        self.pool.total_bytes
    }

    /// Bytes held right now, all pipelines, by items waiting, batched or being sent.
    pub fn in_use_bytes(&self) -> usize {
        self.pool.lock().iter().sum()
    }

    /// Bytes held right now by `pipeline`.
    pub fn pipeline_in_use_bytes(&self, pipeline: Pipeline) -> usize {
        self.pool.lock()[pipeline.index()]
    }

    /// The floor reserved for `pipeline`.
    pub fn floor_bytes(&self, pipeline: Pipeline) -> usize {
        self.pool.floors[pipeline.index()]
    }

    /// Takes `bytes` (plus [`ITEM_OVERHEAD_BYTES`]) if they are free now; `None` when the
    /// budget is full for this pipeline or the item could never fit.
    pub fn try_acquire(&self, bytes: usize) -> Option<Permit> {
        let charge = bytes.saturating_add(ITEM_OVERHEAD_BYTES);
        let mut in_use = self.pool.lock();
        if !self.pool.fits(&in_use, self.pipeline, charge) {
            return None;
        }
        in_use[self.pipeline.index()] += charge;
        Some(Permit {
            _inner: Held::Own(Charge {
                pool: Arc::clone(&self.pool),
                pipeline: self.pipeline,
                bytes: charge,
            }),
        })
    }

    /// Waits until `items` items of `bytes` in all are covered (each with its overhead, as if
    /// acquired one by one), in one acquisition. `None` if that is more than this pipeline
    /// could ever hold.
    pub async fn acquire_items(&self, items: usize, bytes: usize) -> Option<Permit> {
        self.acquire(items_bytes(items, bytes)).await
    }

    /// As [`Budget::acquire_items`], if they are free now (see [`Budget::try_acquire`]).
    pub fn try_acquire_items(&self, items: usize, bytes: usize) -> Option<Permit> {
        self.try_acquire(items_bytes(items, bytes))
    }

    /// Waits until `bytes` (plus overhead) are free. `None` if the item is larger than this
    /// pipeline could ever hold, which no amount of waiting would fix.
    pub async fn acquire(&self, bytes: usize) -> Option<Permit> {
        let charge = bytes.saturating_add(ITEM_OVERHEAD_BYTES);
        if charge > self.pool.most_for(self.pipeline) {
            return None;
        }
        loop {
            let released = self.pool.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes us.
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire(bytes) {
                return Some(permit);
            }
            let _waiting = Waiting::new(&self.pool.waiters);
            // A release may have happened before `waiters` was raised: look once more.
            if let Some(permit) = self.try_acquire(bytes) {
                return Some(permit);
            }
            released.await;
        }
    }
}

/// What `items` items of `bytes` in all are charged beyond the one overhead that
/// [`Budget::acquire`] adds: the overheads of the others.
fn items_bytes(items: usize, bytes: usize) -> usize {
    let overhead = items.saturating_sub(1).saturating_mul(ITEM_OVERHEAD_BYTES);
    bytes.saturating_add(overhead)
}

/// Counts a task in [`Pool::waiters`] while it exists, also when its future is dropped
/// mid-wait (a `select!` that took another branch).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, [usize; 3]> {
        // The counts stay consistent even if a holder panicked: each update is one statement.
        self.in_use
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `pipeline` may take `charge` more bytes while every floor stays available.
    fn fits(&self, in_use: &[usize; 3], pipeline: Pipeline, charge: usize) -> bool {
        let committed: usize = Pipeline::ALL
            .iter()
            .map(|p| {
                let used = in_use[p.index()];
                let used = if *p == pipeline {
                    used.saturating_add(charge)
                } else {
                    used
                };
                used.max(self.floors[p.index()])
            })
            .fold(0usize, usize::saturating_add);
        committed <= self.total_bytes
    }

    /// The most `pipeline` can ever hold: the total less the other pipelines' floors.
    fn most_for(&self, pipeline: Pipeline) -> usize {
        let others: usize = Pipeline::ALL
            .iter()
            .filter(|p| **p != pipeline)
            .map(|p| self.floors[p.index()])
            .sum();
        self.total_bytes.saturating_sub(others)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        {
            let mut in_use = self.pool.lock();
            let slot = &mut in_use[self.pipeline.index()];
            *slot = slot.saturating_sub(self.bytes);
        }
        if self.pool.waiters.load(Ordering::SeqCst) > 0 {
            self.pool.released.notify_waiters();
        }
    }
}

/// Splits `total_bytes` into floors by fraction, for the pipelines that run (the others get
/// none, so their share stays usable by the rest).
pub fn floors_for(total_bytes: usize, fractions: [f64; 3], running: [bool; 3]) -> Floors {
    let mut floors = [0; 3];
    for i in 0..3 {
        if running[i] {
            floors[i] = (total_bytes as f64 * fractions[i].clamp(0.0, 1.0)) as usize;
        }
    }
    floors
}

/// The default budget: 1% of the memory the agent may use (the cgroup limit when there is one,
/// else the host's RAM), at least [`MIN_BUDGET_BYTES`].
///
/// The X-Ray daemon reads host RAM only, so in a 512 MB container on a 64 GB host it plans a
/// 640 MB buffer and gets OOM-killed; reading the cgroup limit first avoids that.
pub fn default_budget_bytes(cgroup_limit: Option<u64>, host_total: Option<u64>) -> usize {
    let basis = match (cgroup_limit, host_total) {
        (Some(limit), Some(host)) => limit.min(host),
        (Some(limit), None) => limit,
        (None, Some(host)) => host,
        (None, None) => 0,
    };
    let one_percent = usize::try_from(basis / 100).unwrap_or(usize::MAX);
    one_percent.max(MIN_BUDGET_BYTES)
}

/// Reads this process's cgroup memory limit (v2 `memory.max`, else v1 `memory.limit_in_bytes`).
/// `None` when there is no limit or no cgroup file system.
pub fn read_cgroup_memory_limit() -> Option<u64> {
    let v2 = cgroup_v2_path().map(|dir| format!("/sys/fs/cgroup{dir}/memory.max"));
    let candidates = v2.into_iter().chain([
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
    ]);
    candidates
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| parse_cgroup_limit(&text))
}

/// The cgroup v2 path of this process, from `/proc/self/cgroup` (`0::/some/path`).
fn cgroup_v2_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_end_matches('/').to_string())
}

/// A limit file's content as bytes; `max` and the v1 "unlimited" sentinel mean no limit.
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a huge page-aligned number near i64::MAX.
    (value < (1 << 60)).then_some(value)
}

/// Host RAM from `/proc/meminfo` (`MemTotal: N kB`).
pub fn read_host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&text)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_returned_when_dropped() {
        let budget = Budget::new(1000);
        let a = budget.try_acquire(500).expect("fits");
        assert_eq!(budget.in_use_bytes(), 500 + ITEM_OVERHEAD_BYTES);
        assert!(
            budget.try_acquire(500).is_none(),
            "second item exceeds budget"
        );
        drop(a);
        assert_eq!(budget.in_use_bytes(), 0);
        assert!(budget.try_acquire(500).is_some());
    }

    #[test]
    fn a_flood_in_one_pipeline_leaves_the_others_their_floor() {
        let budget = Budget::with_floors(10_000, [1_000, 2_000, 1_000]);
        let traces = budget.for_pipeline(Pipeline::Traces);
        let logs = budget.for_pipeline(Pipeline::Logs);
        let metrics = budget.for_pipeline(Pipeline::Metrics);
        let mut held = Vec::new();
        while let Some(p) = traces.try_acquire(100 - ITEM_OVERHEAD_BYTES) {
            held.push(p);
        }
        // Traces got their floor plus the shared part, not the others' floors.
        assert_eq!(budget.pipeline_in_use_bytes(Pipeline::Traces), 7_000);
        let logs_held: Vec<Permit> = (0..20)
            .map(|_| {
                logs.try_acquire(100 - ITEM_OVERHEAD_BYTES)
                    .expect("logs floor")
            })
            .collect();
        assert!(logs.try_acquire(0).is_none(), "logs past their floor");
        assert!(metrics.try_acquire(900).is_some(), "metrics floor");
        assert_eq!(
            budget.in_use_bytes(),
            9_000,
            "the metrics permit was dropped at once"
        );
        drop(held);
        assert_eq!(budget.pipeline_in_use_bytes(Pipeline::Traces), 0);
        // With traces idle, logs may go past their floor into the shared part.
        let more = logs.try_acquire(5_000 - ITEM_OVERHEAD_BYTES);
        assert!(more.is_some());
        drop(logs_held);
    }

    #[tokio::test]
    async fn a_waiting_acquire_wakes_when_bytes_come_back() {
        let budget = Budget::with_floors(1_000, [0, 500, 0]);
        let logs = budget.for_pipeline(Pipeline::Logs);
        let first = logs.try_acquire(900).expect("fits");
        let waiter = tokio::spawn({
            let logs = logs.clone();
            async move { logs.acquire(500).await.map(|p| p.bytes()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.ok().and_then(|r| r.ok()).flatten(), Some(564));
        // Traces can never hold more than the total less the logs floor.
        assert!(budget.acquire(600).await.is_none());
    }

    #[tokio::test]
    async fn an_abandoned_wait_stops_counting_as_a_waiter() {
        let budget = Budget::new(100);
        let held = budget.try_acquire(10).expect("fits");
        let wait = tokio::time::timeout(std::time::Duration::from_millis(10), budget.acquire(30));
        assert!(wait.await.is_err(), "no room: timed out");
        assert_eq!(budget.pool.waiters.load(Ordering::SeqCst), 0);
        drop(held);
    }

    #[test]
    fn floors_are_only_reserved_for_running_pipelines() {
        let floors = floors_for(1_000, [0.2, 0.3, 0.1], [true, false, true]);
        assert_eq!(floors, [200, 0, 100]);
        let scaled = Budget::with_floors(100, [100, 100, 0]);
        assert_eq!(scaled.floor_bytes(Pipeline::Traces), 50);
    }

    #[tokio::test]
    async fn a_shared_permit_charges_per_item_and_returns_with_the_last_item() {
        let budget = Budget::new(10_000);
        let group = budget.acquire_items(3, 300).await.expect("fits");
        assert_eq!(budget.in_use_bytes(), 300 + 3 * ITEM_OVERHEAD_BYTES);
        let shared = group.shared();
        let items: Vec<Permit> = (0..3).map(|_| shared.share()).collect();
        drop(shared);
        let mut items = items.into_iter();
        items.next();
        items.next();
        assert_eq!(budget.in_use_bytes(), 300 + 3 * ITEM_OVERHEAD_BYTES);
        drop(items);
        assert_eq!(budget.in_use_bytes(), 0);
    }

    #[tokio::test]
    async fn acquire_refuses_items_larger_than_the_budget() {
        let budget = Budget::new(100);
        assert!(budget.acquire(1000).await.is_none());
        assert!(budget.acquire(10).await.is_some());
    }

    #[test]
    fn default_budget_prefers_the_cgroup_limit() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(
            default_budget_bytes(Some(512 * 1024 * 1024), Some(64 * gib)),
            MIN_BUDGET_BYTES.max(5_368_709)
        );
        assert_eq!(
            default_budget_bytes(None, Some(64 * gib)),
            (64 * gib / 100) as usize
        );
        assert_eq!(default_budget_bytes(None, None), MIN_BUDGET_BYTES);
        assert_eq!(
            default_budget_bytes(Some(100 << 20), None),
            MIN_BUDGET_BYTES
        );
    }

    #[test]
    fn cgroup_and_meminfo_parsing() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(536_870_912));
        assert_eq!(parse_cgroup_limit("9223372036854771712"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo_total("garbage"), None);
    }
}
