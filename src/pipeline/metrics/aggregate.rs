//! The pure half of the metrics pipeline: check a datum against `PutMetricData`'s rules, merge
//! datums of one series and period, and cut the result into calls.
//!
//! A series is (namespace, name, dimensions, unit, storage resolution) and its period starts at
//! the datum's timestamp rounded down to the storage resolution (60 s or 1 s): CloudWatch keeps
//! no finer detail, so merging within a period loses nothing. Values merge into value/count
//! pairs (split into datums of at most 150 pairs when shipped), statistic sets merge into one.
//! Calls hold one namespace, at most 1,000 datums and at most [`MAX_REQUEST_BYTES`] by a
//! conservative estimate of the encoded size. No I/O and no clock: `now` is passed in.
//! This file must never drop a datum silently: every `Err` it returns is counted by the caller.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pipeline::{MetricDatum, MetricValue, StatisticSet, Unit};
use crate::telemetry::DropReason;

/// `PutMetricData` takes at most 1,000 datums per call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// At most 150 values (and counts) per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// At most 30 dimensions per datum.
pub const MAX_DIMENSIONS: usize = 30;
/// The request limit is 1 MB; the estimate below stays under it with room to spare.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Names and namespaces: 1 to 255 characters.
const MAX_NAME_CHARS: usize = 255;
/// Dimension values: 1 to 1,024 characters.
const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// CloudWatch refuses datums older than two weeks; keep an hour of margin for the retries.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000 - 3600 * 1000;
/// ... and more than two hours ahead.
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// Checks `datum` against the API's rules and normalizes it (storage resolution 1 or 60,
/// dimensions sorted by name, a later duplicate name replacing an earlier one).
pub fn check(mut datum: MetricDatum, now_ms: i64) -> Result<MetricDatum, DropReason> {
    let name_ok = |s: &str, max: usize| !s.is_empty() && s.chars().count() <= max;
    if !name_ok(&datum.name, MAX_NAME_CHARS) || !name_ok(&datum.namespace, MAX_NAME_CHARS) {
        return Err(DropReason::Invalid);
    }
    datum.dimensions.reverse();
    datum.dimensions.sort_by(|a, b| a.0.cmp(&b.0));
    datum.dimensions.dedup_by(|a, b| a.0 == b.0);
    if datum.dimensions.len() > MAX_DIMENSIONS {
        return Err(DropReason::TooManyDimensions);
    }
    if !datum
        .dimensions
        .iter()
        .all(|(k, v)| name_ok(k, MAX_NAME_CHARS) && name_ok(v, MAX_DIMENSION_VALUE_CHARS))
    {
        return Err(DropReason::Invalid);
    }
    match &datum.value {
        MetricValue::Values { values, counts } => {
            if values.is_empty() || values.len() != counts.len() {
                return Err(DropReason::Invalid);
            }
            let finite = values.iter().chain(counts).all(|v| v.is_finite());
            if !finite || counts.iter().any(|c| *c < 0.0) {
                return Err(DropReason::NonFinite);
            }
        }
        MetricValue::Statistics(stats) => {
            if !stats.is_finite() {
                return Err(DropReason::NonFinite);
            }
        }
    }
    if datum.timestamp_ms < now_ms - MAX_AGE_MS || datum.timestamp_ms > now_ms + MAX_AHEAD_MS {
        return Err(DropReason::Timestamp);
    }
    if datum.storage_resolution != 1 {
        datum.storage_resolution = 60;
    }
    Ok(datum)
}

/// One series in one period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    namespace: Arc<str>,
    name: String,
    dimensions: Vec<(String, String)>,
    unit: Unit,
    storage_resolution: u32,
    period_start_ms: i64,
}

/// What was observed for one series in one period.
#[derive(Debug, Default)]
struct Observed {
    /// Value/count pairs, unsorted, possibly repeated: merged when drained.
    values: Vec<(f64, f64)>,
    stats: Option<StatisticSet>,
}

/// Datums merged per series and period until [`Aggregator::drain`].
#[derive(Debug, Default)]
pub struct Aggregator {
    series: HashMap<SeriesKey, Observed>,
    pending_bytes: usize,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges a datum that passed [`check`].
    pub fn push(&mut self, datum: MetricDatum) {
        let period_ms = i64::from(datum.storage_resolution.max(1)) * 1000;
        let key = SeriesKey {
            period_start_ms: datum.timestamp_ms - datum.timestamp_ms.rem_euclid(period_ms),
            namespace: datum.namespace,
            name: datum.name,
            dimensions: datum.dimensions,
            unit: datum.unit,
            storage_resolution: datum.storage_resolution,
        };
        let entry = match self.series.get_mut(&key) {
            Some(entry) => entry,
            None => {
                self.pending_bytes += key_bytes(&key);
                self.series.entry(key).or_default()
            }
        };
        match datum.value {
            MetricValue::Values { values, counts } => {
                self.pending_bytes += values.len() * std::mem::size_of::<(f64, f64)>();
                entry.values.extend(values.into_iter().zip(counts));
            }
            MetricValue::Statistics(stats) => match &mut entry.stats {
                Some(existing) => existing.merge(&stats),
                None => entry.stats = Some(stats),
            },
        }
    }

    /// Memory held, roughly, in bytes.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every merged datum, ordered by namespace, name, dimensions and time; values merged
    /// (equal values add their counts) and split into datums of at most 150 pairs.
    pub fn drain(&mut self) -> Vec<MetricDatum> {
        self.pending_bytes = 0;
        let mut drained: Vec<(SeriesKey, Observed)> = self.series.drain().collect();
        drained.sort_by(|(a, _), (b, _)| {
            (
                &a.namespace,
                &a.name,
                &a.dimensions,
                a.period_start_ms,
                a.unit,
            )
                .cmp(&(
                    &b.namespace,
                    &b.name,
                    &b.dimensions,
                    b.period_start_ms,
                    b.unit,
                ))
        });
        let mut out = Vec::with_capacity(drained.len());
        for (key, observed) in drained {
            let datum = |value| MetricDatum {
                namespace: Arc::clone(&key.namespace),
                name: key.name.clone(),
                unit: key.unit,
                dimensions: key.dimensions.clone(),
                timestamp_ms: key.period_start_ms,
                storage_resolution: key.storage_resolution,
                value,
            };
            for chunk in merge_values(observed.values).chunks(MAX_VALUES_PER_DATUM) {
                out.push(datum(MetricValue::Values {
                    values: chunk.iter().map(|(v, _)| *v).collect(),
                    counts: chunk.iter().map(|(_, c)| *c).collect(),
                }));
            }
            if let Some(stats) = observed.stats {
                out.push(datum(MetricValue::Statistics(stats)));
            }
        }
        out
    }
}

fn key_bytes(key: &SeriesKey) -> usize {
    let dims: usize = key
        .dimensions
        .iter()
        .map(|(k, v)| k.len() + v.len() + 48)
        .sum();
    std::mem::size_of::<SeriesKey>() + std::mem::size_of::<Observed>() + key.name.len() + dims
}

/// Sorts value/count pairs and adds up the counts of equal values.
fn merge_values(mut pairs: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(pairs.len());
    for (value, count) in pairs {
        match merged.last_mut() {
            Some(last) if last.0 == value => last.1 += count,
            _ => merged.push((value, count)),
        }
    }
    merged
}

/// A conservative estimate of a datum's size in a `PutMetricData` request (RPC v2 CBOR: every
/// member named by its key, a number in 9 bytes); well above the real size so a call never
/// exceeds the limit.
pub fn estimated_size(datum: &MetricDatum) -> usize {
    const FIXED: usize = 200; // keys, unit, timestamp, storage resolution, headers
    const PER_DIMENSION: usize = 24;
    const PER_VALUE: usize = 20; // a value and its count, 9 bytes each, plus slack
    const STATISTICS: usize = 100;
    let dims: usize = datum
        .dimensions
        .iter()
        .map(|(k, v)| PER_DIMENSION + k.len() + v.len())
        .sum();
    let value = match &datum.value {
        MetricValue::Values { values, .. } => 16 + PER_VALUE * values.len(),
        MetricValue::Statistics(_) => STATISTICS,
    };
    FIXED + datum.name.len() + dims + value
}

/// Cuts datums into calls: one namespace per call, at most [`MAX_DATUMS_PER_CALL`] datums and
/// [`MAX_REQUEST_BYTES`] (estimated) each. Order within a namespace is kept.
pub fn batches(mut datums: Vec<MetricDatum>) -> Vec<Vec<MetricDatum>> {
    datums.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    let mut out: Vec<Vec<MetricDatum>> = Vec::new();
    let mut current: Vec<MetricDatum> = Vec::new();
    let mut bytes = 0;
    for datum in datums {
        let size = estimated_size(&datum) + datum.namespace.len();
        let closes = current.first().is_some_and(|first| {
            first.namespace != datum.namespace
                || current.len() >= MAX_DATUMS_PER_CALL
                || bytes + size > MAX_REQUEST_BYTES
        });
        if closes {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(datum);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The estimated request size of a batch.
pub fn batch_bytes(batch: &[MetricDatum]) -> usize {
    batch
        .iter()
        .map(|d| estimated_size(d) + d.namespace.len())
        .sum()
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
