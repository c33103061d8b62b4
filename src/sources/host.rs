//! The host metrics source: every `interval`, read `/proc`, `statvfs` and the cgroup, and
//! hand the datums to the metrics pipeline.
//!
//! Reading is done on a blocking thread (`statvfs` on a hung network mount can block), one
//! reading at a time; a file that cannot be read is skipped and counted, never fatal. Parsing
//! (`host/procfs.rs`) and the delta math (`host/collect.rs`) are pure. This source never
//! touches AWS, and reads only the collectors the config asks for.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::{HostCollector, HostMetricsConfig};
use crate::pipeline::MetricDatum;
use crate::placeholders::Placeholders;
use crate::telemetry::{self, DropReason, COUNTERS};

pub mod collect;
pub mod procfs;

use crate::pipeline::now_ms;
use collect::{CgroupReading, Collector, FsUsage, Readings};

/// What the host source needs at run time.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// How often the host is read.
    pub interval: Duration,
    /// The namespace of every datum.
    pub namespace: Arc<str>,
    /// What to read.
    pub collect: Vec<HostCollector>,
    /// Dimensions added to every datum, placeholders resolved.
    pub append_dimensions: Vec<(String, String)>,
}

impl HostSettings {
    /// The settings of a `[host_metrics]` table, with placeholders resolved.
    pub fn from_config(config: &HostMetricsConfig, placeholders: &Placeholders) -> Self {
        HostSettings {
            interval: config.interval,
            namespace: Arc::from(config.namespace.as_str()),
            collect: config.collect.clone(),
            append_dimensions: config
                .append_dimensions
                .iter()
                .map(|(k, v)| (k.clone(), placeholders.resolve(v)))
                .collect(),
        }
    }
}

/// Reads the host every interval until `token` is cancelled.
pub async fn run(settings: HostSettings, tx: mpsc::Sender<MetricDatum>, token: CancellationToken) {
    let mut collector = Collector::new(
        Arc::clone(&settings.namespace),
        settings.append_dimensions.clone(),
        settings.interval.as_secs(),
    );
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let collect = settings.collect.clone();
        let readings = match tokio::task::spawn_blocking(move || read(&collect)).await {
            Ok(readings) => readings,
            Err(error) => {
                tracing::warn!(%error, "Reading host metrics failed.");
                continue;
            }
        };
        let mut lost = 0u64;
        for datum in collector.collect(readings) {
            let sent = tokio::select! {
                _ = token.cancelled() => return,
                sent = tx.send(datum) => sent,
            };
            if sent.is_err() {
                lost += 1;
            }
        }
        telemetry::metric_datums_dropped(DropReason::Channel, lost);
    }
}

/// One reading of the collectors asked for; what cannot be read is left out and counted.
pub fn read(collect: &[HostCollector]) -> Readings {
    let mut readings = Readings {
        timestamp_ms: now_ms(),
        ..Readings::default()
    };
    for collector in collect {
        match collector {
            HostCollector::Cpu => {
                readings.cpu = read_text("/proc/stat").and_then(|t| procfs::parse_stat(&t));
            }
            HostCollector::Mem => {
                readings.memory =
                    read_text("/proc/meminfo").and_then(|t| procfs::parse_meminfo(&t));
            }
            HostCollector::Disk => {
                let mounts = read_text("/proc/self/mounts")
                    .map(|t| procfs::parse_mounts(&t))
                    .unwrap_or_default();
                readings.filesystems = mounts.into_iter().filter_map(statvfs).collect();
            }
            HostCollector::DiskIo => {
                readings.disks = read_text("/proc/diskstats")
                    .map(|t| procfs::parse_diskstats(&t))
                    .unwrap_or_default();
            }
            HostCollector::Net => {
                readings.nets = read_text("/proc/net/dev")
                    .map(|t| procfs::parse_net_dev(&t))
                    .unwrap_or_default();
            }
            HostCollector::Cgroup => readings.cgroup = read_cgroup(),
        }
    }
    readings
}

/// The cgroup v2 files of this process's cgroup (unified mount, or `unified/` on a hybrid
/// host); `None` without cgroup v2.
fn read_cgroup() -> Option<CgroupReading> {
    let path = procfs::parse_cgroup_path(&read_text("/proc/self/cgroup")?)?;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find_map(|root| {
            let dir = format!("{root}{path}");
            let file = |name: &str| std::fs::read_to_string(Path::new(&dir).join(name)).ok();
            let reading = CgroupReading {
                cpu_usage_usec: file("cpu.stat")
                    .and_then(|t| procfs::parse_cgroup_cpu_usage_usec(&t)),
                memory_current: file("memory.current").and_then(|t| procfs::parse_cgroup_bytes(&t)),
                memory_max: file("memory.max").and_then(|t| procfs::parse_cgroup_bytes(&t)),
            };
            (reading != CgroupReading::default()).then_some(reading)
        })
}

fn read_text(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            COUNTERS.metrics.host_errors.inc();
            tracing::debug!(path, %error, "Could not read a host metrics file.");
            None
        }
    }
}

/// Space and inodes of a mounted file system; `None` (counted) when `statvfs` fails.
fn statvfs(mount: procfs::Mount) -> Option<FsUsage> {
    let path = std::ffi::CString::new(mount.path.as_bytes()).ok()?;
    // SAFETY: statvfs is plain data, all-zero is valid; the path is a NUL-terminated string
    // that outlives the call, and the kernel writes only into `stat`.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        COUNTERS.metrics.host_errors.inc();
        return None;
    }
    let block = stat.f_frsize as u64;
    let total = (stat.f_blocks as u64).saturating_mul(block);
    let free_all = (stat.f_bfree as u64).saturating_mul(block);
    Some(FsUsage {
        mount,
        total_bytes: total,
        free_bytes: (stat.f_bavail as u64).saturating_mul(block),
        used_bytes: total.saturating_sub(free_all),
        inodes_total: stat.f_files as u64,
        inodes_free: stat.f_ffree as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_can_be_read() {
        let readings = read(&HostCollector::ALL);
        assert!(readings.cpu.is_some());
        assert!(readings.memory.is_some());
        assert!(
            !readings.filesystems.is_empty(),
            "at least the root file system"
        );
        let mut collector = Collector::new(Arc::from("CWAgent"), Vec::new(), 60);
        let first = collector.collect(readings);
        assert!(first.iter().any(|d| d.name == "mem_used_percent"));
        assert!(first.iter().any(|d| d.name == "disk_used_percent"));
        std::thread::sleep(Duration::from_millis(200));
        let second = collector.collect(read(&HostCollector::ALL));
        assert!(second.iter().any(|d| d.name == "cpu_usage_active"));
    }

    #[tokio::test]
    async fn run_hands_datums_on_and_stops_on_the_token() {
        let (tx, mut rx) = mpsc::channel(1000);
        let token = CancellationToken::new();
        let settings = HostSettings {
            interval: Duration::from_secs(1),
            namespace: Arc::from("CWAgent"),
            collect: vec![HostCollector::Mem],
            append_dimensions: vec![("InstanceId".into(), "i-1".into())],
        };
        let task = tokio::spawn(run(settings, tx, token.clone()));
        let datum = rx.recv().await.expect("a datum");
        assert_eq!(&*datum.namespace, "CWAgent");
        assert_eq!(datum.dimensions[0], ("InstanceId".into(), "i-1".into()));
        token.cancel();
        task.await.expect("stopped");
    }
}
