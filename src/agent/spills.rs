//! The disk spills of the datagram pipelines (X-Ray segments, EMF over UDP, and the metrics
//! pipeline's calls when StatsD runs, since its aggregates come from datagrams): opened at start
//! when `[buffer] disk_mb` is set, under `<spill_dir>/<name>`, sharing the cap equally; and
//! their counters for `/metrics`. The spills themselves live in `pipeline/spill.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::RunError;
use crate::config::Config;
use crate::pipeline::spill::{Spill, SpillCounters};
use crate::telemetry::Reading;

/// Each spill's series, `spill` label included (readings' names are static).
const SERIES: [[&str; 5]; 3] = [
    [
        "cloudtail_spill_written_total{spill=\"traces\"}",
        "cloudtail_spill_replayed_total{spill=\"traces\"}",
        "cloudtail_spill_dropped_total{spill=\"traces\"}",
        "cloudtail_spill_corrupt_total{spill=\"traces\"}",
        "cloudtail_spill_bytes{spill=\"traces\"}",
    ],
    [
        "cloudtail_spill_written_total{spill=\"emf\"}",
        "cloudtail_spill_replayed_total{spill=\"emf\"}",
        "cloudtail_spill_dropped_total{spill=\"emf\"}",
        "cloudtail_spill_corrupt_total{spill=\"emf\"}",
        "cloudtail_spill_bytes{spill=\"emf\"}",
    ],
    [
        "cloudtail_spill_written_total{spill=\"metrics\"}",
        "cloudtail_spill_replayed_total{spill=\"metrics\"}",
        "cloudtail_spill_dropped_total{spill=\"metrics\"}",
        "cloudtail_spill_corrupt_total{spill=\"metrics\"}",
        "cloudtail_spill_bytes{spill=\"metrics\"}",
    ],
];

/// The spills that run.
#[derive(Default)]
pub(super) struct Spills {
    /// X-Ray segments.
    pub traces: Option<Arc<Spill>>,
    /// EMF events received over UDP.
    pub emf: Option<Arc<Spill>>,
    /// `PutMetricData` calls (opened when StatsD runs).
    pub metrics: Option<Arc<Spill>>,
}

impl Spills {
    /// Opens a spill for each datagram source that runs, when `disk_mb` is set.
    pub(super) fn open(config: &Config) -> Result<Spills, RunError> {
        let wanted = [
            config.xray.is_some(),
            config.emf.is_some(),
            config.statsd.is_some(),
        ];
        let count = wanted.iter().filter(|w| **w).count() as u64;
        if config.buffer.disk_mb == 0 || count == 0 {
            return Ok(Spills::default());
        }
        let cap = config.buffer.disk_mb.saturating_mul(1024 * 1024) / count;
        let open =
            |name: &str, wanted: bool| wanted.then(|| open_one(config, name, cap)).transpose();
        Ok(Spills {
            traces: open("traces", wanted[0])?,
            emf: open("emf", wanted[1])?,
            metrics: open("metrics", wanted[2])?,
        })
    }

    /// Their counters, read at scrape time.
    pub(super) fn counters(&self) -> [Option<Arc<SpillCounters>>; 3] {
        [&self.traces, &self.emf, &self.metrics].map(|s| s.as_ref().map(|s| s.counters()))
    }
}

/// `<spill_dir>/<name>`, `spill_dir` defaulting to `spill` under the logs' `state_dir`.
fn open_one(config: &Config, name: &str, cap: u64) -> Result<Arc<Spill>, RunError> {
    let base = match (&config.buffer.spill_dir, &config.logs) {
        (Some(dir), _) => dir.clone(),
        (None, Some(logs)) => logs.state_dir.join("spill"),
        (None, None) => PathBuf::from("/var/lib/cloudtail/spill"),
    };
    let dir = base.join(name);
    let spill = Spill::open(&dir, cap).map_err(|source| RunError::Spill {
        dir: dir.clone(),
        source,
    })?;
    tracing::info!(dir = %dir.display(), cap_bytes = cap, "Disk spill opened.");
    Ok(Arc::new(spill))
}

/// Every spill's counters, each series' readings adjacent.
pub(super) fn readings(spills: &[Option<Arc<SpillCounters>>; 3]) -> Vec<Reading> {
    let mut out = Vec::new();
    for metric in 0..5 {
        for (series, counters) in SERIES.iter().zip(spills) {
            if let Some(c) = counters {
                let (kind, value) = value(c, metric);
                out.push((series[metric], kind, value));
            }
        }
    }
    out
}

/// The `metric`-th series of [`SERIES`]: its type and value.
fn value(c: &SpillCounters, metric: usize) -> (&'static str, f64) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    match metric {
        0 => ("counter", get(&c.written)),
        1 => ("counter", get(&c.replayed)),
        2 => ("counter", get(&c.dropped)),
        3 => ("counter", get(&c.corrupt)),
        _ => ("gauge", get(&c.bytes)),
    }
}
