//! Host readings to datums, named and dimensioned as the CloudWatch agent names them.
//!
//! Gauges (memory, disk space, cgroup memory, I/Os in progress) are reported as read; counters
//! (CPU ticks, disk I/O, network, cgroup CPU time) as their change since the previous reading,
//! so the first reading reports gauges only. A counter that went backwards (a device reset)
//! reports 0 for that interval. Pure: readings and their timestamp are passed in.

use std::collections::HashMap;
use std::sync::Arc;

use super::procfs::{CpuTimes, DiskIo, Memory, Mount, NetIo};
use crate::pipeline::{MetricDatum, Unit};

/// Space and inodes of one mounted file system (from `statvfs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    /// Which file system.
    pub mount: Mount,
    /// Size in bytes.
    pub total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub free_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Inodes in total.
    pub inodes_total: u64,
    /// Inodes free.
    pub inodes_free: u64,
}

/// The cgroup v2 files of the container cloudtail runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupReading {
    /// `cpu.stat` `usage_usec`.
    pub cpu_usage_usec: Option<u64>,
    /// `memory.current`.
    pub memory_current: Option<u64>,
    /// `memory.max`; `None` when unlimited.
    pub memory_max: Option<u64>,
}

/// One measurement of the host; `None`/empty for what was not collected or not readable.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// When, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// `/proc/stat`.
    pub cpu: Option<CpuTimes>,
    /// `/proc/meminfo`.
    pub memory: Option<Memory>,
    /// Every real file system.
    pub filesystems: Vec<FsUsage>,
    /// `/proc/diskstats`.
    pub disks: Vec<(String, DiskIo)>,
    /// `/proc/net/dev`.
    pub nets: Vec<(String, NetIo)>,
    /// The cgroup.
    pub cgroup: Option<CgroupReading>,
}

#[derive(Debug, Default)]
struct Previous {
    timestamp_ms: i64,
    cpu: Option<CpuTimes>,
    disks: HashMap<String, DiskIo>,
    nets: HashMap<String, NetIo>,
    cgroup_cpu_usec: Option<u64>,
}

/// Turns successive readings into datums.
#[derive(Debug)]
pub struct Collector {
    namespace: Arc<str>,
    append: Vec<(String, String)>,
    storage_resolution: u32,
    previous: Option<Previous>,
}

/// Datums of one reading, sharing namespace, time and appended dimensions.
struct Out<'a> {
    collector: &'a Collector,
    timestamp_ms: i64,
    datums: Vec<MetricDatum>,
}

impl Out<'_> {
    fn push(&mut self, name: &str, unit: Unit, value: f64, dims: &[(&str, &str)]) {
        let mut dimensions = self.collector.append.clone();
        dimensions.extend(dims.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut datum = MetricDatum::single(
            Arc::clone(&self.collector.namespace),
            name,
            unit,
            value,
            self.timestamp_ms,
        );
        datum.dimensions = dimensions;
        datum.storage_resolution = self.collector.storage_resolution;
        self.datums.push(datum);
    }
}

impl Collector {
    /// A collector for `namespace`, adding `append` (placeholders resolved) to every datum.
    /// Readings less than 60 s apart are sent as high resolution, as the agent does.
    pub fn new(namespace: Arc<str>, append: Vec<(String, String)>, interval_secs: u64) -> Self {
        Collector {
            namespace,
            append,
            storage_resolution: if interval_secs < 60 { 1 } else { 60 },
            previous: None,
        }
    }

    /// The datums of `readings`.
    pub fn collect(&mut self, readings: Readings) -> Vec<MetricDatum> {
        let previous = self.previous.take();
        let mut out = Out {
            collector: self,
            timestamp_ms: readings.timestamp_ms,
            datums: Vec::new(),
        };
        if let (Some(before), Some(now)) = (previous.as_ref().and_then(|p| p.cpu), readings.cpu) {
            cpu(&mut out, &before, &now);
        }
        if let Some(memory) = readings.memory {
            mem(&mut out, &memory);
        }
        for fs in &readings.filesystems {
            disk(&mut out, fs);
        }
        for (name, now) in &readings.disks {
            let before = previous.as_ref().and_then(|p| p.disks.get(name));
            diskio(&mut out, name, before, now);
        }
        for (name, now) in &readings.nets {
            if let Some(before) = previous.as_ref().and_then(|p| p.nets.get(name)) {
                net(&mut out, name, before, now);
            }
        }
        if let Some(cgroup) = &readings.cgroup {
            let before = previous
                .as_ref()
                .and_then(|p| Some((p.cgroup_cpu_usec?, p.timestamp_ms)));
            cgroup_metrics(&mut out, cgroup, before, readings.timestamp_ms);
        }
        let datums = out.datums;
        self.previous = Some(Previous {
            timestamp_ms: readings.timestamp_ms,
            cpu: readings.cpu,
            disks: readings.disks.into_iter().collect(),
            nets: readings.nets.into_iter().collect(),
            cgroup_cpu_usec: readings.cgroup.and_then(|c| c.cpu_usage_usec),
        });
        datums
    }
}

fn cpu(out: &mut Out<'_>, before: &CpuTimes, now: &CpuTimes) {
    let total = now.total().saturating_sub(before.total());
    if total == 0 {
        return;
    }
    let pct = |now: u64, before: u64| now.saturating_sub(before) as f64 * 100.0 / total as f64;
    let idle = pct(now.idle, before.idle);
    let iowait = pct(now.iowait, before.iowait);
    let dims = [("cpu", "cpu-total")];
    let active = (100.0 - idle - iowait).max(0.0);
    out.push("cpu_usage_active", Unit::PERCENT, active, &dims);
    let fields = [
        ("cpu_usage_user", now.user, before.user),
        ("cpu_usage_system", now.system, before.system),
        ("cpu_usage_iowait", now.iowait, before.iowait),
        ("cpu_usage_idle", now.idle, before.idle),
        ("cpu_usage_nice", now.nice, before.nice),
        ("cpu_usage_irq", now.irq, before.irq),
        ("cpu_usage_softirq", now.softirq, before.softirq),
        ("cpu_usage_steal", now.steal, before.steal),
    ];
    for (name, n, b) in fields {
        out.push(name, Unit::PERCENT, pct(n, b), &dims);
    }
}

fn mem(out: &mut Out<'_>, m: &Memory) {
    if m.total == 0 {
        return;
    }
    let used = m.total.saturating_sub(m.available);
    let pct = |v: u64| v as f64 * 100.0 / m.total as f64;
    out.push("mem_used_percent", Unit::PERCENT, pct(used), &[]);
    out.push(
        "mem_available_percent",
        Unit::PERCENT,
        pct(m.available),
        &[],
    );
    out.push("mem_available", Unit::BYTES, m.available as f64, &[]);
    out.push("mem_used", Unit::BYTES, used as f64, &[]);
    out.push("mem_total", Unit::BYTES, m.total as f64, &[]);
}

fn disk(out: &mut Out<'_>, fs: &FsUsage) {
    let dims = [
        ("path", fs.mount.path.as_str()),
        ("device", fs.mount.device.as_str()),
        ("fstype", fs.mount.fstype.as_str()),
    ];
    let usable = fs.used_bytes + fs.free_bytes;
    if usable > 0 {
        let used_pct = fs.used_bytes as f64 * 100.0 / usable as f64;
        out.push("disk_used_percent", Unit::PERCENT, used_pct, &dims);
    }
    out.push("disk_free", Unit::BYTES, fs.free_bytes as f64, &dims);
    out.push("disk_used", Unit::BYTES, fs.used_bytes as f64, &dims);
    out.push("disk_total", Unit::BYTES, fs.total_bytes as f64, &dims);
    if fs.inodes_total > 0 {
        let inodes_used = fs.inodes_total.saturating_sub(fs.inodes_free);
        out.push(
            "disk_inodes_free",
            Unit::COUNT,
            fs.inodes_free as f64,
            &dims,
        );
        out.push("disk_inodes_used", Unit::COUNT, inodes_used as f64, &dims);
        out.push(
            "disk_inodes_total",
            Unit::COUNT,
            fs.inodes_total as f64,
            &dims,
        );
    }
}

fn diskio(out: &mut Out<'_>, name: &str, before: Option<&DiskIo>, now: &DiskIo) {
    let dims = [("name", name)];
    out.push(
        "diskio_iops_in_progress",
        Unit::COUNT,
        now.in_progress as f64,
        &dims,
    );
    let Some(b) = before else {
        return;
    };
    let delta = |n: u64, b: u64| n.saturating_sub(b) as f64;
    let fields = [
        ("diskio_reads", Unit::COUNT, delta(now.reads, b.reads)),
        ("diskio_writes", Unit::COUNT, delta(now.writes, b.writes)),
        (
            "diskio_read_bytes",
            Unit::BYTES,
            delta(now.read_bytes, b.read_bytes),
        ),
        (
            "diskio_write_bytes",
            Unit::BYTES,
            delta(now.write_bytes, b.write_bytes),
        ),
        (
            "diskio_read_time",
            Unit::MILLISECONDS,
            delta(now.read_time_ms, b.read_time_ms),
        ),
        (
            "diskio_write_time",
            Unit::MILLISECONDS,
            delta(now.write_time_ms, b.write_time_ms),
        ),
        (
            "diskio_io_time",
            Unit::MILLISECONDS,
            delta(now.io_time_ms, b.io_time_ms),
        ),
    ];
    for (metric, unit, value) in fields {
        out.push(metric, unit, value, &dims);
    }
}

fn net(out: &mut Out<'_>, name: &str, b: &NetIo, now: &NetIo) {
    let dims = [("interface", name)];
    let delta = |n: u64, b: u64| n.saturating_sub(b) as f64;
    let fields = [
        (
            "net_bytes_sent",
            Unit::BYTES,
            delta(now.bytes_sent, b.bytes_sent),
        ),
        (
            "net_bytes_recv",
            Unit::BYTES,
            delta(now.bytes_recv, b.bytes_recv),
        ),
        (
            "net_packets_sent",
            Unit::COUNT,
            delta(now.packets_sent, b.packets_sent),
        ),
        (
            "net_packets_recv",
            Unit::COUNT,
            delta(now.packets_recv, b.packets_recv),
        ),
        ("net_err_in", Unit::COUNT, delta(now.err_in, b.err_in)),
        ("net_err_out", Unit::COUNT, delta(now.err_out, b.err_out)),
        ("net_drop_in", Unit::COUNT, delta(now.drop_in, b.drop_in)),
        ("net_drop_out", Unit::COUNT, delta(now.drop_out, b.drop_out)),
    ];
    for (metric, unit, value) in fields {
        out.push(metric, unit, value, &dims);
    }
}

/// `before` is the previous (usage_usec, timestamp_ms).
fn cgroup_metrics(out: &mut Out<'_>, c: &CgroupReading, before: Option<(u64, i64)>, now_ms: i64) {
    if let (Some(usage), Some((prev_usage, prev_ms))) = (c.cpu_usage_usec, before) {
        let wall_usec = (now_ms - prev_ms).max(0) as f64 * 1000.0;
        if wall_usec > 0.0 {
            let pct = usage.saturating_sub(prev_usage) as f64 * 100.0 / wall_usec;
            out.push("cgroup_cpu_usage_percent", Unit::PERCENT, pct, &[]);
        }
    }
    if let Some(current) = c.memory_current {
        out.push("cgroup_memory_current", Unit::BYTES, current as f64, &[]);
        if let Some(max) = c.memory_max.filter(|m| *m > 0) {
            out.push("cgroup_memory_max", Unit::BYTES, max as f64, &[]);
            let pct = current as f64 * 100.0 / max as f64;
            out.push("cgroup_memory_used_percent", Unit::PERCENT, pct, &[]);
        }
    }
}

#[cfg(test)]
#[path = "collect_tests.rs"]
mod tests;
