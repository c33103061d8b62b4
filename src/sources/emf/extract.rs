//! EMF `mode = "metrics"`: the datums CloudWatch would extract from a document.
//!
//! Every metric of a directive becomes one datum per dimension set (one datum without
//! dimensions when the directive has no set), in the directive's namespace, with its unit,
//! storage resolution and the document's timestamp; an array of values becomes distinct values
//! with counts. Pure; the document was validated by `parse`, so nothing here can fail.

use std::sync::Arc;

use super::parse::EmfDocument;
use crate::pipeline::{MetricDatum, MetricValue};

/// The datums of a valid document.
pub fn datums(doc: &EmfDocument) -> Vec<MetricDatum> {
    let mut out = Vec::new();
    for directive in &doc.directives {
        let namespace: Arc<str> = Arc::from(directive.namespace.as_str());
        let no_dimensions = [Vec::new()];
        let sets: &[Vec<(String, String)>] = if directive.dimension_sets.is_empty() {
            &no_dimensions
        } else {
            &directive.dimension_sets
        };
        for metric in &directive.metrics {
            let value = values_with_counts(&metric.values);
            for set in sets {
                out.push(MetricDatum {
                    namespace: Arc::clone(&namespace),
                    name: metric.name.clone(),
                    unit: metric.unit,
                    dimensions: set.clone(),
                    timestamp_ms: doc.timestamp_ms,
                    storage_resolution: metric.storage_resolution,
                    value: value.clone(),
                });
            }
        }
    }
    out
}

/// Distinct values in first-seen order, each with how often it occurs.
fn values_with_counts(samples: &[f64]) -> MetricValue {
    let mut values: Vec<f64> = Vec::with_capacity(samples.len());
    let mut counts: Vec<f64> = Vec::with_capacity(samples.len());
    for &sample in samples {
        match values.iter().position(|v| *v == sample) {
            Some(i) => counts[i] += 1.0,
            None => {
                values.push(sample);
                counts.push(1.0);
            }
        }
    }
    MetricValue::Values { values, counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Unit;
    use crate::sources::emf::parse::{parse, Parsed};

    fn doc(text: &str) -> EmfDocument {
        match parse(text.trim_end().as_bytes()) {
            Ok(Parsed::Emf(doc)) => doc,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_datum_per_metric_and_dimension_set() {
        let d = doc(include_str!(
            "../../../tests/fixtures/emf-2-multi-dimension-sets-tcp.json"
        ));
        let out = datums(&d);
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[0].namespace, "Probe/EMF");
        assert_eq!(
            out[0].dimensions,
            vec![("Service".into(), "sidecar".into())]
        );
        assert_eq!(out[1].dimensions.len(), 2);
        assert_eq!(out[1].timestamp_ms, 1_795_822_242_070);
        assert_eq!(out[0].unit, Unit::COUNT);
    }

    #[test]
    fn value_arrays_keep_units_resolution_and_counts() {
        let d = doc(include_str!("../../../tests/fixtures/emf-1-basic-tcp.json"));
        let out = datums(&d);
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0].value,
            MetricValue::Values {
                values: vec![100.0, 150.5],
                counts: vec![1.0, 1.0]
            }
        );
        assert_eq!(out[1].storage_resolution, 1);
        assert_eq!(out[0].dimensions.len(), 5);
        assert_eq!(
            values_with_counts(&[1.0, 2.0, 1.0]),
            MetricValue::Values {
                values: vec![1.0, 2.0],
                counts: vec![2.0, 1.0]
            }
        );
    }

    #[test]
    fn no_dimension_set_means_one_datum_without_dimensions() {
        let d = doc(
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Metrics":[{"Name":"A"}]}]},"A":3}"#,
        );
        let out = datums(&d);
        assert_eq!(out.len(), 1);
        assert!(out[0].dimensions.is_empty());
    }
}
