//! The fault suite: the real binary against the stub endpoint under outages, slowness,
//! throttling, expiring credentials, a full or read-only `state_dir`, repeated `kill -9` and a
//! flood of growing files with the endpoint down.
//!
//! Each scenario prints one row (events sent, landed, lost, duplicated, peak RSS) and asserts
//! the promise: nothing lost from files, no accepted TCP EMF document lost, every UDP drop
//! counted, duplicates only from kills (at most the batches in flight), and peak RSS within the
//! budget + 20 MB.
//!
//! Durations and rates are the full ones times `CLOUDTAIL_FAULT_SCALE` (default 0.2, what CI
//! runs; `scripts/faults` runs them at 1), each with a floor so a scaled run still shows the
//! fault. When `CLOUDTAIL_FAULT_REPORT` names a file, rows are appended to it as well.
//!
//! Files: `load.rs` (writers of log lines, segments and EMF documents, and their tallies),
//! `outage.rs` (endpoint down, slow, throttling), `credentials.rs`, `state_dir.rs`,
//! `kills.rs`, `flood.rs`.

#[path = "../support/mod.rs"]
mod support;

mod credentials;
mod flood;
mod kills;
mod load;
mod outage;
mod state_dir;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{free_tcp_port, free_udp_port, local, Agent, Moto};

/// The scale applied to the full durations and rates (`CLOUDTAIL_FAULT_SCALE`, default 0.2).
pub fn scale() -> f64 {
    std::env::var("CLOUDTAIL_FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(0.2)
}

/// `full` times [`scale`], at least `floor`.
pub fn scaled(full: Duration, floor: Duration) -> Duration {
    full.mul_f64(scale()).max(floor)
}

/// Peak RSS allowed above the budget.
pub const RSS_MARGIN_MB: u64 = 20;

/// `[buffer] memory_mb` of every scenario.
pub const BUDGET_MB: u64 = 32;

/// File-backed RSS of the idle release binary (BENCHMARKS.md: `RssFile` ≈ 11.3 MiB): the
/// promise is for that binary. When the suite runs a debug build (a test build of the debug
/// profile without `CLOUDTAIL_TEST_BIN`, which `scripts/faults` points at the release binary)
/// the agent's own `RssFile` stands in for this figure in the limit, up or down: a debug
/// binary maps several MB more code, and how much of it stays resident depends on what else
/// maps it, so only the heap is held to the release binary's room.
const RELEASE_FILE_RSS_KB: u64 = 11_600;

/// One field (in KiB) of `/proc/<pid>/status`; 0 when unreadable.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The peak RSS `agent` may reach: the budget + 20 MB, with a debug build's code pages in
/// place of the release binary's.
pub fn rss_limit_kb(agent: &Agent) -> u64 {
    let limit = (BUDGET_MB + RSS_MARGIN_MB) * 1024;
    let debug_binary = cfg!(debug_assertions) && std::env::var_os("CLOUDTAIL_TEST_BIN").is_none();
    if debug_binary {
        match status_kb(agent.pid(), "RssFile:") {
            0 => limit, // the agent is gone: nothing to measure
            file_kb => (limit + file_kb).saturating_sub(RELEASE_FILE_RSS_KB),
        }
    } else {
        limit
    }
}

/// One printed row of the suite's table.
#[derive(Debug, Default)]
pub struct Row {
    /// The scenario's short name.
    pub scenario: String,
    /// What the row counts (log lines, segments, EMF documents).
    pub what: &'static str,
    /// Sent by the test (written to files, datagrams sent, documents written on the socket).
    pub sent: usize,
    /// Distinct items found at AWS.
    pub landed: usize,
    /// Sent but neither landed nor counted as dropped.
    pub lost: usize,
    /// Extra copies at AWS.
    pub duplicated: usize,
    /// Drops the agent counted (UDP only).
    pub dropped: usize,
    /// Peak RSS of the agent (VmHWM), KiB; the highest over restarts.
    pub peak_rss_kb: u64,
    /// What the peak may reach, KiB ([`rss_limit_kb`]).
    pub limit_kb: u64,
    /// Anything else worth a word.
    pub note: String,
}

impl Row {
    /// Prints the row (and appends it to `CLOUDTAIL_FAULT_REPORT` when set).
    pub fn print(&self) {
        let line = format!(
            "| {:<23} | {:<9} | {:>7} | {:>7} | {:>4} | {:>5} | {:>7} | {:>5.1} / {:>4.1} | {} |",
            self.scenario,
            self.what,
            self.sent,
            self.landed,
            self.lost,
            self.duplicated,
            self.dropped,
            self.peak_rss_kb as f64 / 1024.0,
            self.limit_kb as f64 / 1024.0,
            self.note
        );
        println!("{line}");
        if let Some(path) = std::env::var_os("CLOUDTAIL_FAULT_REPORT") {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = appended {
                eprintln!("cannot append to {path:?}: {e}");
            }
        }
    }

    /// A row for `seen[n]` copies of item `n` at AWS; for datagrams, the drops the agent
    /// counted are not losses. Peak RSS and its limit are read from `agent`.
    pub fn new(
        scenario: &str,
        what: &'static str,
        seen: &[u32],
        dropped: usize,
        agent: &Agent,
    ) -> Row {
        let (landed, missing, duplicated) = load::tally(seen);
        Row {
            scenario: scenario.to_string(),
            what,
            sent: seen.len(),
            landed,
            lost: missing.saturating_sub(dropped),
            duplicated,
            dropped,
            peak_rss_kb: agent.peak_rss_kb(),
            limit_kb: rss_limit_kb(agent),
            note: String::new(),
        }
    }

    /// The acceptance every row shares: nothing lost, RSS within the budget + 20 MB.
    pub fn assert_accepted(&self, logs: &str) {
        assert_eq!(self.lost, 0, "{self:?} lost items\n{logs}");
        assert!(
            self.peak_rss_kb <= self.limit_kb,
            "{self:?}: peak RSS {} kB above the budget + {RSS_MARGIN_MB} MB ({} kB)",
            self.peak_rss_kb,
            self.limit_kb
        );
    }
}

/// A directory of log files and a state dir that outlive any one agent, and the config the
/// agents run on.
pub struct Rig {
    /// `logs/` and `state/` (and the config).
    pub dir: tempfile::TempDir,
    /// The stub endpoint's URL.
    pub endpoint: String,
    /// `[logs] concurrency`.
    pub concurrency: usize,
    /// Tables appended to the config (`[[logs.files]]`, `[xray]`, `[emf]`).
    pub tables: String,
    /// UDP port of `[xray]` when [`Rig::with_xray`] was called.
    pub xray_udp: Option<u16>,
    /// TCP port of `[xray]` (the sampling proxy) when [`Rig::with_xray`] was called.
    pub xray_tcp: Option<u16>,
    /// TCP port of `[emf]` when [`Rig::with_emf`] was called.
    pub emf_tcp: Option<u16>,
    /// Ports handed out so far: a free port is only free until used, so none is given twice.
    ports: Vec<u16>,
}

impl Rig {
    /// A fresh rig against `moto`.
    pub fn new(moto: &Moto) -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("cloudtail-faults-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
        Rig {
            dir,
            endpoint: moto.endpoint(),
            concurrency: 4,
            tables: String::new(),
            xray_udp: None,
            xray_tcp: None,
            emf_tcp: None,
            ports: Vec::new(),
        }
    }

    /// `<dir>/logs/<name>`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    /// `<dir>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Ships `logs/<name>` to `group`/`stream`.
    pub fn with_file(mut self, name: &str, group: &str, stream: &str) -> Rig {
        let path = self.log_path(name);
        self.tables.push_str(&format!(
            "[[logs.files]]\npath = \"{}\"\nlog_group = \"{group}\"\nlog_stream = \"{stream}\"\n\n",
            path.display()
        ));
        self
    }

    /// Ships every `logs/*.log`, each to its own stream of `group`.
    pub fn with_glob(mut self, group: &str) -> Rig {
        self.tables.push_str(&format!(
            "[[logs.files]]\npath = \"{}/*.log\"\nlog_group = \"{group}\"\n\n",
            self.dir.path().join("logs").display()
        ));
        self
    }

    /// Turns on the X-Ray daemon role on free ports.
    pub fn with_xray(mut self) -> Rig {
        let udp = self.port(free_udp_port);
        let tcp = self.port(free_tcp_port);
        self.tables.push_str(&format!(
            "[xray]\nudp_address = \"127.0.0.1:{udp}\"\ntcp_address = \"127.0.0.1:{tcp}\"\n\n"
        ));
        self.xray_udp = Some(udp);
        self.xray_tcp = Some(tcp);
        self
    }

    /// Turns on EMF (logs mode) on free ports, to `group`/`stream`.
    pub fn with_emf(mut self, group: &str, stream: &str) -> Rig {
        let tcp = self.port(free_tcp_port);
        let udp = self.port(free_udp_port);
        self.tables.push_str(&format!(
            "[emf]\ntcp_address = \"127.0.0.1:{tcp}\"\nudp_address = \"127.0.0.1:{udp}\"\n\
             log_group = \"{group}\"\nlog_stream = \"{stream}\"\nmode = \"logs\"\n\n"
        ));
        self.emf_tcp = Some(tcp);
        self
    }

    /// A port from `free` not handed out before by this rig.
    fn port(&mut self, free: fn() -> u16) -> u16 {
        loop {
            let port = free();
            if !self.ports.contains(&port) {
                self.ports.push(port);
                return port;
            }
        }
    }

    /// The whole config for an agent with its telemetry on `telemetry_port`.
    pub fn config(&self, telemetry_port: u16) -> String {
        format!(
            "[agent]\ntelemetry_address = \"127.0.0.1:{telemetry_port}\"\nshutdown_timeout = \"10s\"\n\n\
             [aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\n\
             [buffer]\nmemory_mb = {}\n\n\
             [logs]\nstate_dir = \"{}\"\nflush_interval = \"1s\"\nconcurrency = {}\n\n{}",
            self.endpoint,
            BUDGET_MB,
            self.state_dir().display(),
            self.concurrency,
            self.tables
        )
    }

    /// Writes the config and starts an agent on it; waits until it is ready.
    pub fn start(&self) -> Agent {
        self.start_with(|b| b)
    }

    /// Writes the config and starts an agent on it, the builder first passed to `adjust`
    /// (environment changes); waits until it is ready.
    pub fn start_with(
        &self,
        adjust: impl FnOnce(support::AgentBuilder) -> support::AgentBuilder,
    ) -> Agent {
        let telemetry = loop {
            let port = free_tcp_port();
            if !self.ports.contains(&port) {
                break port;
            }
        };
        let path = self.dir.path().join("cloudtail.toml");
        std::fs::write(&path, self.config(telemetry)).expect("write config");
        let builder = Agent::builder()
            .args(["--config", path.to_str().expect("utf-8 path"), "-l", "info"])
            .telemetry_addr(local(telemetry));
        let mut agent = adjust(builder).start();
        agent.ready();
        agent
    }
}

/// The highest offset in the checkpoint file on disk (0 when there is none).
pub fn checkpointed(state_dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(state_dir.join("checkpoints.json")) else {
        return 0;
    };
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    doc["checkpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["offset"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}
