//! The parsers on sample text taken from a Linux 6.x host and a Docker container.

use super::*;

pub(crate) const STAT: &str = "cpu  4705 356 584 3699176 23 0 50 0 0 0\n\
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n\
intr 1462898\nctxt 3463\nbtime 1700000000\n";

pub(crate) const MEMINFO: &str = "MemTotal:       16310012 kB\nMemFree:         9129640 kB\n\
MemAvailable:   12232060 kB\nBuffers:          187064 kB\nCached:          3084916 kB\n";

pub(crate) const MOUNTS: &str = "overlay / overlay rw,relatime,lowerdir=/x 0 0\n\
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n\
tmpfs /dev tmpfs rw,nosuid,size=65536k,mode=755 0 0\n\
/dev/nvme0n1p1 /etc/hosts ext4 rw,relatime 0 0\n\
/dev/nvme0n1p1 /etc/hostname ext4 rw,relatime 0 0\n\
/dev/nvme1n1 /data\\040dir xfs rw,relatime 0 0\n\
cgroup2 /sys/fs/cgroup cgroup2 ro 0 0\n\
garbage\n";

pub(crate) const DISKSTATS: &str = "   7       0 loop0 46 0 2152 13 0 0 0 0 0 20 13 0 0 0 0 0 0\n\
 259       0 nvme0n1 108395 26213 7226050 45560 1201380 1149430 44310920 1089300 0 513416 1172345 0 0 0 0 89610 37484\n\
 259       1 nvme0n1p1 108232 26213 7215842 45492 1201380 1149430 44310920 1089300 2 513360 1134793 0 0 0 0 0 0\n";

pub(crate) const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit\n\
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n\
  eth0: 98765432 65432 1 2 0 0 0 0 12345678 23456 3 4 0 0 0 0\n";

#[test]
fn cpu_line() {
    let cpu = parse_stat(STAT).expect("cpu");
    assert_eq!(
        cpu,
        CpuTimes {
            user: 4705,
            nice: 356,
            system: 584,
            idle: 3_699_176,
            iowait: 23,
            irq: 0,
            softirq: 50,
            steal: 0
        }
    );
    assert_eq!(cpu.total(), 4705 + 356 + 584 + 3_699_176 + 23 + 50);
    assert_eq!(parse_stat("cpu0 1 2 3 4\n"), None);
    assert_eq!(parse_stat("cpu  1 2 x 4\n"), None);
}

#[test]
fn meminfo_in_bytes() {
    assert_eq!(
        parse_meminfo(MEMINFO),
        Some(Memory {
            total: 16_310_012 * 1024,
            available: 12_232_060 * 1024
        })
    );
    assert_eq!(
        parse_meminfo("MemTotal: 1 kB\n"),
        None,
        "old kernels lack MemAvailable"
    );
}

#[test]
fn mounts_skip_pseudo_file_systems_and_bind_mounts() {
    let mounts = parse_mounts(MOUNTS);
    let paths: Vec<&str> = mounts.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, ["/", "/etc/hosts", "/data dir"]);
    assert_eq!(mounts[2].fstype, "xfs");
    assert_eq!(mounts[2].device, "/dev/nvme1n1");
}

#[test]
fn diskstats_skip_loop_devices() {
    let disks = parse_diskstats(DISKSTATS);
    assert_eq!(disks.len(), 2);
    let (name, io) = &disks[0];
    assert_eq!(name, "nvme0n1");
    assert_eq!(io.reads, 108_395);
    assert_eq!(io.read_bytes, 7_226_050 * 512);
    assert_eq!(io.read_time_ms, 45_560);
    assert_eq!(io.writes, 1_201_380);
    assert_eq!(io.write_bytes, 44_310_920 * 512);
    assert_eq!(io.io_time_ms, 513_416);
    assert_eq!(disks[1].1.in_progress, 2);
    assert!(parse_diskstats("1 2\n").is_empty());
}

#[test]
fn net_dev_skips_loopback() {
    let nets = parse_net_dev(NET_DEV);
    assert_eq!(nets.len(), 1);
    assert_eq!(
        nets[0],
        (
            "eth0".to_owned(),
            NetIo {
                bytes_recv: 98_765_432,
                packets_recv: 65_432,
                err_in: 1,
                drop_in: 2,
                bytes_sent: 12_345_678,
                packets_sent: 23_456,
                err_out: 3,
                drop_out: 4
            }
        )
    );
}

#[test]
fn cgroup_files() {
    let stat = "usage_usec 8000000\nuser_usec 6000000\nsystem_usec 2000000\n";
    assert_eq!(parse_cgroup_cpu_usage_usec(stat), Some(8_000_000));
    assert_eq!(parse_cgroup_bytes("536870912\n"), Some(536_870_912));
    assert_eq!(parse_cgroup_bytes("max\n"), None);
    assert_eq!(
        parse_cgroup_path("0::/system.slice/docker-abc.scope\n"),
        Some("/system.slice/docker-abc.scope".into())
    );
    assert_eq!(parse_cgroup_path("0::/\n"), Some(String::new()));
    assert_eq!(parse_cgroup_path("1:name=systemd:/\n"), None);
}
