//! Names, units, dimensions and the delta math of host metrics.

use super::*;
use crate::pipeline::MetricValue;
use crate::sources::host::procfs::{parse_diskstats, parse_meminfo, parse_net_dev, parse_stat};

const T0: i64 = 1_795_822_140_000;

fn value(datums: &[MetricDatum], name: &str, dim: Option<(&str, &str)>) -> f64 {
    let d = datums
        .iter()
        .find(|d| {
            d.name == name
                && dim.is_none_or(|(k, v)| d.dimensions.iter().any(|(dk, dv)| dk == k && dv == v))
        })
        .unwrap_or_else(|| panic!("{name} missing"));
    match &d.value {
        MetricValue::Values { values, .. } => values[0],
        MetricValue::Statistics(s) => s.sum,
    }
}

fn collector() -> Collector {
    Collector::new(
        Arc::from("CWAgent"),
        vec![("InstanceId".into(), "i-123".into())],
        60,
    )
}

#[test]
fn cpu_is_reported_from_the_second_reading_as_percentages() {
    let mut c = collector();
    let first = Readings {
        timestamp_ms: T0,
        cpu: parse_stat("cpu  100 0 100 700 100 0 0 0\n"),
        ..Readings::default()
    };
    assert!(c.collect(first).is_empty());
    let second = Readings {
        timestamp_ms: T0 + 60_000,
        cpu: parse_stat("cpu  150 0 120 1000 110 0 0 0 0 0\n"),
        ..Readings::default()
    };
    let out = c.collect(second);
    // Δ total = 50 + 20 + 300 + 10 = 380.
    let pct = |v: f64| v * 100.0 / 380.0;
    let cpu = Some(("cpu", "cpu-total"));
    assert!((value(&out, "cpu_usage_user", cpu) - pct(50.0)).abs() < 1e-9);
    assert!((value(&out, "cpu_usage_system", cpu) - pct(20.0)).abs() < 1e-9);
    assert!((value(&out, "cpu_usage_iowait", cpu) - pct(10.0)).abs() < 1e-9);
    assert!((value(&out, "cpu_usage_active", cpu) - pct(70.0)).abs() < 1e-9);
    let d = out
        .iter()
        .find(|d| d.name == "cpu_usage_active")
        .expect("active");
    assert_eq!(d.unit, Unit::PERCENT);
    assert_eq!(d.storage_resolution, 60);
    assert_eq!(d.timestamp_ms, T0 + 60_000);
    assert_eq!(
        d.dimensions,
        vec![
            ("InstanceId".into(), "i-123".into()),
            ("cpu".into(), "cpu-total".into())
        ]
    );
}

#[test]
fn memory_and_disk_gauges_come_at_once() {
    let mut c = Collector::new(Arc::from("CWAgent"), Vec::new(), 10);
    let fs = FsUsage {
        mount: Mount {
            device: "/dev/nvme0n1p1".into(),
            path: "/".into(),
            fstype: "ext4".into(),
        },
        total_bytes: 100 << 30,
        free_bytes: 30 << 30,
        used_bytes: 60 << 30,
        inodes_total: 1000,
        inodes_free: 400,
    };
    let out = c.collect(Readings {
        timestamp_ms: T0,
        memory: parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 250 kB\n"),
        filesystems: vec![fs],
        ..Readings::default()
    });
    assert_eq!(value(&out, "mem_used_percent", None), 75.0);
    assert_eq!(value(&out, "mem_available", None), 250.0 * 1024.0);
    let root = Some(("path", "/"));
    assert!((value(&out, "disk_used_percent", root) - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(value(&out, "disk_free", root), (30u64 << 30) as f64);
    assert_eq!(value(&out, "disk_inodes_free", root), 400.0);
    let d = out
        .iter()
        .find(|d| d.name == "disk_free")
        .expect("disk_free");
    assert_eq!(d.storage_resolution, 1, "10 s interval: high resolution");
    let names: Vec<&str> = d.dimensions.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["path", "device", "fstype"]);
}

#[test]
fn disk_io_and_network_are_deltas_per_device() {
    let mut c = collector();
    let disks0 = "259 0 nvme0n1 100 0 1000 50 200 0 4000 80 1 300 0\n";
    let disks1 = "259 0 nvme0n1 150 0 1800 70 260 0 4100 90 3 340 0\n";
    let net0 = "eth0: 1000 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n";
    let net1 = "eth0: 4000 40 1 0 0 0 0 0 800 9 0 2 0 0 0 0\n";
    let first = c.collect(Readings {
        timestamp_ms: T0,
        disks: parse_diskstats(disks0),
        nets: parse_net_dev(net0),
        ..Readings::default()
    });
    assert_eq!(first.len(), 1, "only the in-progress gauge: {first:?}");
    let out = c.collect(Readings {
        timestamp_ms: T0 + 60_000,
        disks: parse_diskstats(disks1),
        nets: parse_net_dev(net1),
        ..Readings::default()
    });
    let disk = Some(("name", "nvme0n1"));
    assert_eq!(value(&out, "diskio_reads", disk), 50.0);
    assert_eq!(value(&out, "diskio_read_bytes", disk), 800.0 * 512.0);
    assert_eq!(value(&out, "diskio_write_time", disk), 10.0);
    assert_eq!(value(&out, "diskio_io_time", disk), 40.0);
    assert_eq!(value(&out, "diskio_iops_in_progress", disk), 3.0);
    let eth = Some(("interface", "eth0"));
    assert_eq!(value(&out, "net_bytes_recv", eth), 3000.0);
    assert_eq!(value(&out, "net_bytes_sent", eth), 300.0);
    assert_eq!(value(&out, "net_packets_sent", eth), 4.0);
    assert_eq!(value(&out, "net_err_in", eth), 1.0);
    assert_eq!(value(&out, "net_drop_out", eth), 2.0);
}

#[test]
fn cgroup_cpu_is_a_share_of_one_core_and_memory_of_its_limit() {
    let mut c = collector();
    let reading = |usec, at| Readings {
        timestamp_ms: at,
        cgroup: Some(CgroupReading {
            cpu_usage_usec: Some(usec),
            memory_current: Some(256 << 20),
            memory_max: Some(512 << 20),
        }),
        ..Readings::default()
    };
    let first = c.collect(reading(1_000_000, T0));
    assert_eq!(value(&first, "cgroup_memory_used_percent", None), 50.0);
    assert!(first.iter().all(|d| d.name != "cgroup_cpu_usage_percent"));
    let out = c.collect(reading(31_000_000, T0 + 60_000));
    assert_eq!(value(&out, "cgroup_cpu_usage_percent", None), 50.0);
    assert_eq!(
        value(&out, "cgroup_memory_max", None),
        (512u64 << 20) as f64
    );
}
