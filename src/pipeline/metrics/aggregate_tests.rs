//! Tests of the datum checks, the merge and the call cutting, with property tests for the
//! limits: at most 1,000 datums and 1 MB per call, 150 values and 30 dimensions per datum,
//! one namespace per call, and nothing lost that was not counted.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_795_822_181_000;

fn datum(name: &str, values: Vec<f64>) -> MetricDatum {
    let counts = vec![1.0; values.len()];
    MetricDatum {
        namespace: Arc::from("NS"),
        name: name.to_string(),
        unit: Unit::COUNT,
        dimensions: vec![("Service".into(), "a".into())],
        timestamp_ms: NOW,
        storage_resolution: 60,
        value: MetricValue::Values { values, counts },
    }
}

#[test]
fn check_refuses_what_the_api_refuses() {
    assert!(check(datum("ok", vec![1.0]), NOW).is_ok());
    assert_eq!(
        check(datum("nan", vec![1.0, f64::NAN]), NOW),
        Err(DropReason::NonFinite)
    );
    assert_eq!(
        check(datum("inf", vec![f64::INFINITY]), NOW),
        Err(DropReason::NonFinite)
    );
    assert_eq!(check(datum("", vec![1.0]), NOW), Err(DropReason::Invalid));
    let mut many = datum("dims", vec![1.0]);
    many.dimensions = (0..31).map(|i| (format!("k{i}"), "v".into())).collect();
    assert_eq!(check(many, NOW), Err(DropReason::TooManyDimensions));
    let mut old = datum("old", vec![1.0]);
    old.timestamp_ms = NOW - 15 * 24 * 3600 * 1000;
    assert_eq!(check(old, NOW), Err(DropReason::Timestamp));
    let mut stats = datum("stats", vec![]);
    stats.value = MetricValue::Statistics(StatisticSet::of(f64::NAN, 1.0));
    assert_eq!(check(stats, NOW), Err(DropReason::NonFinite));
}

#[test]
fn check_normalizes_resolution_and_dimensions() {
    let mut d = datum("x", vec![1.0]);
    d.storage_resolution = 5;
    d.dimensions = vec![
        ("b".into(), "1".into()),
        ("a".into(), "2".into()),
        ("b".into(), "3".into()),
    ];
    let d = check(d, NOW).expect("valid");
    assert_eq!(d.storage_resolution, 60);
    assert_eq!(
        d.dimensions,
        vec![("a".into(), "2".into()), ("b".into(), "3".into())]
    );
}

#[test]
fn values_of_one_period_merge_into_counts() {
    let mut agg = Aggregator::new();
    agg.push(datum("lat", vec![1.0, 2.0]));
    let mut later = datum("lat", vec![2.0, 3.0]);
    later.timestamp_ms = NOW + 1;
    agg.push(later);
    let mut next_minute = datum("lat", vec![9.0]);
    next_minute.timestamp_ms = NOW + 60_000;
    agg.push(next_minute);
    let out = agg.drain();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].value,
        MetricValue::Values {
            values: vec![1.0, 2.0, 3.0],
            counts: vec![1.0, 2.0, 1.0]
        }
    );
    assert_eq!(out[0].timestamp_ms % 60_000, 0);
    assert!(agg.is_empty());
    assert_eq!(agg.pending_bytes(), 0);
}

#[test]
fn statistic_sets_merge() {
    let mut agg = Aggregator::new();
    let mut a = datum("s", vec![]);
    a.value = MetricValue::Statistics(StatisticSet::of(2.0, 3.0));
    let mut b = a.clone();
    b.value = MetricValue::Statistics(StatisticSet::of(10.0, 1.0));
    agg.push(a);
    agg.push(b);
    let out = agg.drain();
    assert_eq!(
        out,
        vec![MetricDatum {
            value: MetricValue::Statistics(StatisticSet {
                sample_count: 4.0,
                sum: 16.0,
                minimum: 2.0,
                maximum: 10.0
            }),
            timestamp_ms: NOW - NOW % 60_000,
            ..datum("s", vec![])
        }]
    );
}

#[test]
fn many_distinct_values_split_into_datums_of_150() {
    let mut agg = Aggregator::new();
    agg.push(datum("h", (0..400).map(f64::from).collect()));
    let sizes: Vec<usize> = agg
        .drain()
        .iter()
        .map(|d| match &d.value {
            MetricValue::Values { values, .. } => values.len(),
            MetricValue::Statistics(_) => 0,
        })
        .collect();
    assert_eq!(sizes, [150, 150, 100]);
}

#[test]
fn a_thousand_small_datums_fit_one_call() {
    let datums: Vec<MetricDatum> = (0..2500)
        .map(|i| datum(&format!("m{i}"), vec![1.0]))
        .collect();
    let sizes: Vec<usize> = batches(datums).iter().map(Vec::len).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
}

#[test]
fn namespaces_never_share_a_call() {
    let mut other = datum("b", vec![1.0]);
    other.namespace = Arc::from("Other");
    let out = batches(vec![datum("a", vec![1.0]), other, datum("c", vec![1.0])]);
    assert_eq!(out.len(), 2);
    for batch in &out {
        assert!(batch.iter().all(|d| d.namespace == batch[0].namespace));
    }
}

fn arb_datum() -> impl Strategy<Value = MetricDatum> {
    (
        0usize..3,
        0usize..40,
        0usize..36,
        prop::collection::vec((0u8..50, 1u8..4), 1..400),
        any::<bool>(),
        0i64..180_000,
    )
        .prop_map(|(ns, name, dims, samples, stats, offset)| {
            let dimensions = (0..dims).map(|i| (format!("d{i}"), "v".into())).collect();
            let value = if stats {
                MetricValue::Statistics(StatisticSet::of(f64::from(samples[0].0), 2.0))
            } else {
                MetricValue::Values {
                    values: samples.iter().map(|(v, _)| f64::from(*v)).collect(),
                    counts: samples.iter().map(|(_, c)| f64::from(*c)).collect(),
                }
            };
            MetricDatum {
                namespace: Arc::from(format!("NS{ns}")),
                name: format!("metric-{name}-{}", "x".repeat(name * 3)),
                unit: Unit::COUNT,
                dimensions,
                timestamp_ms: NOW + offset,
                storage_resolution: if name % 2 == 0 { 1 } else { 60 },
                value,
            }
        })
}

/// (namespace, name, dimension count) → (Σ count, Σ value × count).
type Totals = HashMap<(String, String, usize), (f64, f64)>;

fn add(totals: &mut Totals, d: &MetricDatum) {
    let key = (d.namespace.to_string(), d.name.clone(), d.dimensions.len());
    let entry = totals.entry(key).or_default();
    match &d.value {
        MetricValue::Values { values, counts } => {
            for (v, c) in values.iter().zip(counts) {
                entry.0 += c;
                entry.1 += v * c;
            }
        }
        MetricValue::Statistics(s) => {
            entry.0 += s.sample_count;
            entry.1 += s.sum;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn calls_keep_every_limit_and_lose_nothing(datums in prop::collection::vec(arb_datum(), 1..1500)) {
        let mut agg = Aggregator::new();
        let mut expected = Totals::new();
        let mut refused = 0;
        for d in datums {
            match check(d, NOW) {
                Ok(d) => {
                    add(&mut expected, &d);
                    agg.push(d);
                }
                Err(reason) => {
                    prop_assert_eq!(reason, DropReason::TooManyDimensions);
                    refused += 1;
                }
            }
        }
        let mut got = Totals::new();
        for batch in batches(agg.drain()) {
            prop_assert!(!batch.is_empty());
            prop_assert!(batch.len() <= MAX_DATUMS_PER_CALL);
            prop_assert!(batch_bytes(&batch) <= MAX_REQUEST_BYTES);
            for d in &batch {
                prop_assert_eq!(&d.namespace, &batch[0].namespace);
                prop_assert!(d.dimensions.len() <= MAX_DIMENSIONS);
                if let MetricValue::Values { values, counts } = &d.value {
                    prop_assert!(!values.is_empty() && values.len() <= MAX_VALUES_PER_DATUM);
                    prop_assert_eq!(values.len(), counts.len());
                }
                add(&mut got, d);
            }
        }
        prop_assert_eq!(got.len(), expected.len());
        for (key, (count, sum)) in &expected {
            let (got_count, got_sum) = got[key];
            prop_assert!((got_count - count).abs() < 1e-6, "{:?}", key);
            prop_assert!((got_sum - sum).abs() < 1e-6 * sum.abs().max(1.0), "{:?}", key);
        }
        let _ = refused;
    }
}
