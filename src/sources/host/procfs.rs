//! Parsers for the kernel's text files the host metrics come from: `/proc/stat`,
//! `/proc/meminfo`, `/proc/self/mounts`, `/proc/diskstats`, `/proc/net/dev`, and the cgroup v2
//! `cpu.stat`, `memory.current`, `memory.max`.
//!
//! Pure: each function takes the file's text and returns numbers; a malformed line is skipped,
//! a missing field is `None`, nothing panics. Reading the files, and turning counters into
//! rates, is the caller's business.

/// Cumulative CPU time of all CPUs, in clock ticks (the `cpu` line of `/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Normal processes in user mode (guest time included, as the kernel counts it).
    pub user: u64,
    /// Niced processes in user mode.
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Waiting for I/O.
    pub iowait: u64,
    /// Servicing interrupts.
    pub irq: u64,
    /// Servicing softirqs.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

impl CpuTimes {
    /// Every tick counted once (guest time is already in user and nice).
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

/// The aggregate `cpu` line of `/proc/stat`.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut fields = line.split_whitespace().skip(1).map(|f| f.parse::<u64>());
    let mut next = || fields.next().and_then(Result::ok);
    Some(CpuTimes {
        user: next()?,
        nice: next()?,
        system: next()?,
        idle: next()?,
        iowait: next().unwrap_or(0),
        irq: next().unwrap_or(0),
        softirq: next().unwrap_or(0),
        steal: next().unwrap_or(0),
    })
}

/// Memory from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable` (what can be allocated without swapping).
    pub available: u64,
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        kib.checked_mul(1024)
    };
    Some(Memory {
        total: field("MemTotal:")?,
        available: field("MemAvailable:")?,
    })
}

/// A mounted file system worth measuring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device (`/dev/nvme0n1p1`, `overlay`).
    pub device: String,
    /// Where it is mounted.
    pub path: String,
    /// Its type (`ext4`, `xfs`, `overlay`).
    pub fstype: String,
}

/// File system types that hold no user data (kernel interfaces, memory-backed, read-only
/// images), skipped as the CloudWatch agent and telegraf skip them.
pub const PSEUDO_FILE_SYSTEMS: [&str; 27] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "devfs",
    "tmpfs",
    "ramfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "bpf",
    "tracefs",
    "debugfs",
    "mqueue",
    "hugetlbfs",
    "fusectl",
    "configfs",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "squashfs",
    "iso9660",
    "efivarfs",
    "selinuxfs",
    "fuse.lxcfs",
];

/// The real file systems of `/proc/self/mounts`, one per device (a device bind-mounted in
/// several places, as Docker does for `/etc/hosts`, is measured once, at its first mount).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(path), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if PSEUDO_FILE_SYSTEMS.contains(&fstype) || mounts.iter().any(|m| m.device == device) {
            continue;
        }
        mounts.push(Mount {
            device: unescape(device),
            path: unescape(path),
            fstype: fstype.to_owned(),
        });
    }
    mounts
}

/// Undoes the octal escapes of mount fields (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cumulative I/O counters of one block device (`/proc/diskstats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskIo {
    /// Reads completed.
    pub reads: u64,
    /// Bytes read (sectors × 512).
    pub read_bytes: u64,
    /// Milliseconds spent reading.
    pub read_time_ms: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Milliseconds spent writing.
    pub write_time_ms: u64,
    /// Milliseconds the device was busy.
    pub io_time_ms: u64,
    /// I/Os in progress now (a gauge, not a counter).
    pub in_progress: u64,
}

/// Every block device of `/proc/diskstats` except loop and RAM devices.
pub fn parse_diskstats(text: &str) -> Vec<(String, DiskIo)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let name = *f.get(2)?;
            if name.starts_with("loop") || name.starts_with("ram") {
                return None;
            }
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            Some((
                name.to_owned(),
                DiskIo {
                    reads: n(3)?,
                    read_bytes: n(5)?.saturating_mul(512),
                    read_time_ms: n(6)?,
                    writes: n(7)?,
                    write_bytes: n(9)?.saturating_mul(512),
                    write_time_ms: n(10)?,
                    in_progress: n(11)?,
                    io_time_ms: n(12)?,
                },
            ))
        })
        .collect()
}

/// Cumulative counters of one network interface (`/proc/net/dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetIo {
    /// Bytes received.
    pub bytes_recv: u64,
    /// Packets received.
    pub packets_recv: u64,
    /// Receive errors.
    pub err_in: u64,
    /// Received packets dropped.
    pub drop_in: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Send errors.
    pub err_out: u64,
    /// Packets dropped on send.
    pub drop_out: u64,
}

/// Every interface of `/proc/net/dev` except loopback.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetIo)> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.is_empty() {
                return None;
            }
            let f: Vec<u64> = counters
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            let n = |i: usize| f.get(i).copied();
            Some((
                name.to_owned(),
                NetIo {
                    bytes_recv: n(0)?,
                    packets_recv: n(1)?,
                    err_in: n(2)?,
                    drop_in: n(3)?,
                    bytes_sent: n(8)?,
                    packets_sent: n(9)?,
                    err_out: n(10)?,
                    drop_out: n(11)?,
                },
            ))
        })
        .collect()
}

/// `usage_usec` of a cgroup v2 `cpu.stat`.
pub fn parse_cgroup_cpu_usage_usec(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// A cgroup v2 `memory.current` or `memory.max`; `None` for `max` (no limit).
pub fn parse_cgroup_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The cgroup v2 path of a process, from its `/proc/<pid>/cgroup` (`0::/some/path`).
pub fn parse_cgroup_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
#[path = "procfs_tests.rs"]
mod tests;
