//! One byte budget for the process: a semaphore whose permits are bytes.
//!
//! Every item a source queues holds a [`Permit`] for its size (plus a fixed per-item overhead
//! for the bookkeeping around it) until its batch is delivered or dropped, so the bytes held by
//! the agent never exceed the budget, however slow AWS is. Datagram sources only ever
//! [`Budget::try_acquire`] (a full budget means "drop and count"); file and TCP sources will
//! `await` [`Budget::acquire`], so the file or the kernel holds the backlog instead of us.
//! The budget never allocates or frees memory itself: it only counts.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes charged per item on top of its payload: the `String` header, the batch's `Vec` slot
/// and the channel slot it passed through. A flood of tiny datagrams must not slip past the
/// budget because each payload is small.
pub const ITEM_OVERHEAD_BYTES: usize = 64;

/// The smallest budget the agent accepts, as the X-Ray daemon does (3 MB).
pub const MIN_BUDGET_BYTES: usize = 3 * 1024 * 1024;

/// A shared byte budget. Cloning is cheap and every clone draws from the same budget.
#[derive(Debug, Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    total_bytes: usize,
}

/// Bytes held from a [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    _inner: Held,
}

/// A permit of its own, or a share of one taken for a group of items.
#[derive(Debug)]
enum Held {
    Own(OwnedSemaphorePermit),
    Shared(Arc<OwnedSemaphorePermit>),
}

impl Permit {
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
pub struct SharedPermit(Arc<OwnedSemaphorePermit>);

impl SharedPermit {
    /// One more item's hold on the group's bytes.
    pub fn share(&self) -> Permit {
        Permit {
            _inner: Held::Shared(Arc::clone(&self.0)),
        }
    }
}

impl Budget {
    /// A budget of `total_bytes`, capped to what one semaphore can count (4 GiB per acquire).
    pub fn new(total_bytes: usize) -> Self {
        let total_bytes = total_bytes.min(Semaphore::MAX_PERMITS);
        Budget {
            semaphore: Arc::new(Semaphore::new(total_bytes)),
            total_bytes,
        }
    }

    /// The budget's size in bytes.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bytes held right now by items waiting, batched or being sent.
    pub fn in_use_bytes(&self) -> usize {
        self.total_bytes
            .saturating_sub(self.semaphore.available_permits())
    }

    /// Takes `bytes` (plus [`ITEM_OVERHEAD_BYTES`]) if they are free now; `None` when the
    /// budget is full or the item could never fit.
    pub fn try_acquire(&self, bytes: usize) -> Option<Permit> {
        let charge = u32::try_from(bytes.saturating_add(ITEM_OVERHEAD_BYTES)).ok()?;
        Arc::clone(&self.semaphore)
            .try_acquire_many_owned(charge)
            .ok()
            .map(|inner| Permit {
                _inner: Held::Own(inner),
            })
    }

    /// Waits until `bytes` (plus overhead) are free. `None` if the item is larger than the
    /// whole budget, which no amount of waiting would fix.
    pub async fn acquire(&self, bytes: usize) -> Option<Permit> {
        let charge = bytes.saturating_add(ITEM_OVERHEAD_BYTES);
        if charge > self.total_bytes {
            return None;
        }
        let charge = u32::try_from(charge).ok()?;
        Arc::clone(&self.semaphore)
            .acquire_many_owned(charge)
            .await
            .ok()
            .map(|inner| Permit {
                _inner: Held::Own(inner),
            })
    }

    /// Waits until `items` items of `bytes` in all are covered (each with its overhead, as if
    /// acquired one by one), in one acquisition. `None` if that is more than the whole budget.
    pub async fn acquire_items(&self, items: usize, bytes: usize) -> Option<Permit> {
        let overhead = items.saturating_sub(1).saturating_mul(ITEM_OVERHEAD_BYTES);
        self.acquire(bytes.saturating_add(overhead)).await
    }
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
