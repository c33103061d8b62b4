//! Calls of metric datums as disk spill records: what the metrics pipeline writes when an
//! aggregated call finds no memory or cannot be delivered before it would be dropped, and what
//! the replay turns back into a call.
//!
//! A record is one call (one namespace, already cut to the API's limits), as JSON: a replayed
//! call is sent as is, never aggregated or counted a second time. Pure: no I/O.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pipeline::{MetricDatum, MetricValue, StatisticSet, Unit};

/// One datum as written to disk; the namespace is stored once per call.
#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    unit: String,
    dimensions: Vec<(String, String)>,
    timestamp_ms: i64,
    storage_resolution: u32,
    /// Values and counts, or `None` for a statistic set.
    values: Option<(Vec<f64>, Vec<f64>)>,
    /// Sample count, sum, minimum, maximum.
    statistics: Option<[f64; 4]>,
}

/// One call as written to disk.
#[derive(Serialize, Deserialize)]
struct Call {
    namespace: String,
    datums: Vec<Stored>,
}

/// `batch` (one namespace) as a spill record; empty when there is nothing to write.
pub fn encode(batch: &[MetricDatum]) -> Vec<u8> {
    let Some(first) = batch.first() else {
        return Vec::new();
    };
    let call = Call {
        namespace: first.namespace.to_string(),
        datums: batch.iter().map(store).collect(),
    };
    serde_json::to_vec(&call).unwrap_or_default()
}

fn store(datum: &MetricDatum) -> Stored {
    let (values, statistics) = match &datum.value {
        MetricValue::Values { values, counts } => (Some((values.clone(), counts.clone())), None),
        MetricValue::Statistics(s) => (None, Some([s.sample_count, s.sum, s.minimum, s.maximum])),
    };
    Stored {
        name: datum.name.clone(),
        unit: datum.unit.as_str().to_owned(),
        dimensions: datum.dimensions.clone(),
        timestamp_ms: datum.timestamp_ms,
        storage_resolution: datum.storage_resolution,
        values,
        statistics,
    }
}

/// A spill record back as a call; `None` if it is not one of ours.
pub fn decode(payload: &[u8]) -> Option<Vec<MetricDatum>> {
    let call: Call = serde_json::from_slice(payload).ok()?;
    let namespace: Arc<str> = Arc::from(call.namespace);
    call.datums
        .into_iter()
        .map(|stored| restore(Arc::clone(&namespace), stored))
        .collect::<Option<Vec<_>>>()
        .filter(|batch| !batch.is_empty())
}

fn restore(namespace: Arc<str>, stored: Stored) -> Option<MetricDatum> {
    let value = match (stored.values, stored.statistics) {
        (Some((values, counts)), None) => MetricValue::Values { values, counts },
        (None, Some([sample_count, sum, minimum, maximum])) => {
            MetricValue::Statistics(StatisticSet {
                sample_count,
                sum,
                minimum,
                maximum,
            })
        }
        _ => return None,
    };
    Some(MetricDatum {
        namespace,
        name: stored.name,
        unit: Unit::parse(&stored.unit)?,
        dimensions: stored.dimensions,
        timestamp_ms: stored.timestamp_ms,
        storage_resolution: stored.storage_resolution,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_survives_the_round_trip() {
        let namespace: Arc<str> = Arc::from("StatsD");
        let values = MetricDatum {
            namespace: Arc::clone(&namespace),
            name: "lat".into(),
            unit: Unit::parse("Milliseconds").expect("unit"),
            dimensions: vec![("env".into(), "prod\n\"x\"".into())],
            timestamp_ms: 1_700_000_040_000,
            storage_resolution: 60,
            value: MetricValue::Values {
                values: vec![10.0, 20.5],
                counts: vec![3.0, 0.5],
            },
        };
        let stats = MetricDatum {
            name: "big".into(),
            storage_resolution: 1,
            value: MetricValue::Statistics(StatisticSet {
                sample_count: 200.0,
                sum: 1234.5,
                minimum: -1.0,
                maximum: 99.0,
            }),
            ..values.clone()
        };
        let batch = vec![values, stats];
        let record = encode(&batch);
        assert_eq!(decode(&record), Some(batch));
        assert_eq!(decode(b"not a record"), None);
        assert!(encode(&[]).is_empty());
        assert_eq!(decode(br#"{"namespace":"N","datums":[]}"#), None);
    }
}
