//! The TOML `[buffer]` table: the memory budget every pipeline shares, each pipeline's floor in
//! it, and the disk spill for datagrams. The schema (serde only, the reference docs of every
//! key) and the checks that turn it into a [`BufferConfig`] (less `memory_mb`, which the flag
//! `-m` can also set and `file.rs` checks).
//!
//! No I/O: the spill directory is created by the agent at start, not here.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Default floor of the traces pipeline: 20% of the budget.
pub const DEFAULT_TRACES_FLOOR: f64 = 0.2;
/// Default floor of the logs pipeline: 20% of the budget.
pub const DEFAULT_LOGS_FLOOR: f64 = 0.2;
/// Default floor of the metrics pipeline: 10% of the budget.
pub const DEFAULT_METRICS_FLOOR: f64 = 0.1;
/// The floors together may reserve at most this much, so some budget is always shared.
pub const MAX_FLOORS_SUM: f64 = 0.9;
/// The largest spill accepted: 1 TiB in MB, well past any sane disk share.
const MAX_DISK_MB: u64 = 1 << 20;

/// The memory budget, its floors and the disk spill.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// `-m/--buffer-memory`, `TotalBufferSizeMB`, `[buffer] memory_mb`; `None` (or 0 in the
    /// daemon's YAML) means 1% of the cgroup memory limit, else of host RAM, at least 3 MB.
    pub memory_mb: Option<u64>,
    /// `[buffer] traces_floor`, `logs_floor`, `metrics_floor`: the fraction of the budget
    /// reserved for each pipeline (traces, logs, metrics), when it runs.
    pub floors: [f64; 3],
    /// `[buffer] disk_mb`: the disk spill's cap in MB; 0 (the default) turns it off.
    pub disk_mb: u64,
    /// `[buffer] spill_dir`: where the spill's files live; `None` is `spill` under the logs'
    /// `state_dir` (`/var/lib/cloudtail/spill` by default).
    pub spill_dir: Option<PathBuf>,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            memory_mb: None,
            floors: [
                DEFAULT_TRACES_FLOOR,
                DEFAULT_LOGS_FLOOR,
                DEFAULT_METRICS_FLOOR,
            ],
            disk_mb: 0,
            spill_dir: None,
        }
    }
}

/// `[buffer]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSection {
    /// Memory in MB (at least 3) for data waiting to be sent, shared by every pipeline; when
    /// full, new data is dropped and counted (or spilled to disk, see `disk_mb`). Default: 1%
    /// of the cgroup memory limit, else of host RAM, at least 3 MB. More rides out longer AWS
    /// outages; less bounds the agent's RSS. Flag `-m/--buffer-memory` wins over it.
    pub memory_mb: Option<u64>,
    /// Fraction of `memory_mb` only traces may use, 0 to 0.9. Default 0.2. Only reserved when
    /// traces run. Higher protects traces from a logs or metrics flood; lower leaves more to
    /// share.
    #[serde(default = "default_traces_floor")]
    pub traces_floor: f64,
    /// Fraction of `memory_mb` only log files may use, 0 to 0.9. Default 0.2. Only reserved
    /// when log files are tailed. It keeps log lines flowing while a trace flood fills the rest.
    #[serde(default = "default_logs_floor")]
    pub logs_floor: f64,
    /// Fraction of `memory_mb` only metrics (EMF, StatsD, host) may use, 0 to 0.9. Default 0.1.
    /// Only reserved when a metrics source runs. The three floors add up to at most 0.9.
    #[serde(default = "default_metrics_floor")]
    pub metrics_floor: f64,
    /// Disk in MB for datagrams that find no memory: X-Ray segments and EMF events over UDP
    /// are written to `spill_dir` (one spill each, sharing this cap equally) and sent, oldest
    /// first, when memory frees up (AWS is back) or after a restart. When full, the oldest
    /// spilled documents are dropped and counted. Default 0: off (such documents are dropped
    /// and counted, as the X-Ray daemon does).
    #[serde(default)]
    pub disk_mb: u64,
    /// Directory of the disk spill. Default: `spill` under `[logs] state_dir`
    /// ("/var/lib/cloudtail/spill"). Must be writable and survive restarts.
    pub spill_dir: Option<PathBuf>,
}

impl Default for BufferSection {
    fn default() -> Self {
        BufferSection {
            memory_mb: None,
            traces_floor: DEFAULT_TRACES_FLOOR,
            logs_floor: DEFAULT_LOGS_FLOOR,
            metrics_floor: DEFAULT_METRICS_FLOOR,
            disk_mb: 0,
            spill_dir: None,
        }
    }
}

fn default_traces_floor() -> f64 {
    DEFAULT_TRACES_FLOOR
}
fn default_logs_floor() -> f64 {
    DEFAULT_LOGS_FLOOR
}
fn default_metrics_floor() -> f64 {
    DEFAULT_METRICS_FLOOR
}

impl BufferSection {
    /// Checks the floors and the spill; `memory_mb` is left `None` for the caller to fill.
    pub(crate) fn resolve(&self) -> Result<BufferConfig, ConfigError> {
        let floors = [
            floor("buffer.traces_floor", self.traces_floor)?,
            floor("buffer.logs_floor", self.logs_floor)?,
            floor("buffer.metrics_floor", self.metrics_floor)?,
        ];
        let sum: f64 = floors.iter().sum();
        if sum > MAX_FLOORS_SUM + 1e-9 {
            return Err(ConfigError::invalid(
                "buffer.traces_floor + buffer.logs_floor + buffer.metrics_floor",
                format!("{sum}"),
                "is too large",
                "keep the floors' sum at most 0.9, so some of the budget is shared",
            ));
        }
        if self.disk_mb > MAX_DISK_MB {
            return Err(ConfigError::invalid(
                "buffer.disk_mb",
                self.disk_mb.to_string(),
                "is too large",
                format!("use at most {MAX_DISK_MB} (MB), or 0 to turn the disk spill off"),
            ));
        }
        if self
            .spill_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid(
                "buffer.spill_dir",
                "\"\"",
                "is empty",
                "use a writable directory that survives restarts, or remove the key",
            ));
        }
        Ok(BufferConfig {
            memory_mb: None,
            floors,
            disk_mb: self.disk_mb,
            spill_dir: self.spill_dir.clone(),
        })
    }
}

fn floor(key: &str, fraction: f64) -> Result<f64, ConfigError> {
    if (0.0..=MAX_FLOORS_SUM).contains(&fraction) {
        return Ok(fraction);
    }
    Err(ConfigError::invalid(
        key,
        fraction.to_string(),
        "is out of range",
        "use a fraction of the budget from 0 to 0.9, e.g. 0.2",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BufferConfig, String> {
        let section: BufferSection = toml::from_str(text).map_err(|e| e.to_string())?;
        section.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_reserve_half_and_spill_nothing() {
        let cfg = parse("").expect("defaults");
        assert_eq!(cfg, BufferConfig::default());
        assert_eq!(cfg.floors, [0.2, 0.2, 0.1]);
        assert_eq!(cfg.disk_mb, 0);
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let e = parse("logs_floor = 1.5").unwrap_err();
        assert!(
            e.contains("`buffer.logs_floor` = 1.5 is out of range"),
            "{e}"
        );
        let e = parse("traces_floor = -0.1").unwrap_err();
        assert!(e.contains("`buffer.traces_floor`"), "{e}");
        let e = parse("traces_floor = 0.5\nlogs_floor = 0.5").unwrap_err();
        assert!(e.contains("at most 0.9"), "{e}");
        let e = parse("disk_mb = 99999999").unwrap_err();
        assert!(e.contains("`buffer.disk_mb`"), "{e}");
        let e = parse("spill_dir = \"\"").unwrap_err();
        assert!(e.contains("`buffer.spill_dir`"), "{e}");
    }

    #[test]
    fn values_are_kept() {
        let cfg = parse("disk_mb = 64\nspill_dir = \"/tmp/s\"\nmetrics_floor = 0\n").expect("ok");
        assert_eq!(cfg.disk_mb, 64);
        assert_eq!(cfg.spill_dir, Some(PathBuf::from("/tmp/s")));
        assert_eq!(cfg.floors[2], 0.0);
    }
}
