//! The metrics pipeline and the `PutMetricData` sink against the stub AWS endpoint, through the
//! real `aws-sdk-cloudwatch` client (Smithy RPC v2 CBOR): datums go in, calls of at most 1,000
//! datums come out, and `GetMetricStatistics` reads back exactly what was put. Runs no agent
//! binary: it drives `cloudtail::pipeline::metrics::run` and the sink directly.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_smithy_types::DateTime;
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::metrics::{self, MetricsSettings};
use cloudtail::pipeline::retry::Backoff;
use cloudtail::pipeline::{MetricDatum, MetricValue, StatisticSet, Unit};
use cloudtail::sinks::cloudwatch_metrics::CloudWatchMetricsSink;
use cloudtail::telemetry::COUNTERS;
use serde_json::json;
use support::{cloudwatch_client, now_secs, Moto};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One timestamp for every datum of the test process, so datums merge in one period.
fn now_ms() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let now = (now_secs() * 1000.0) as i64;
        now - now % 60_000 + 1_000
    })
}

fn datum(namespace: &str, name: &str, value: MetricValue) -> MetricDatum {
    MetricDatum {
        namespace: Arc::from(namespace),
        name: name.to_string(),
        unit: Unit::MILLISECONDS,
        dimensions: vec![("Service".into(), "checkout".into())],
        timestamp_ms: now_ms(),
        storage_resolution: 60,
        value,
    }
}

/// A client as the agent builds it: the SDK's own retries off, the sink's retries only.
fn agent_client(moto: &Moto) -> aws_sdk_cloudwatch::Client {
    support::cloudwatch_client_without_retries(&moto.endpoint())
}

fn sink(moto: &Moto) -> CloudWatchMetricsSink {
    CloudWatchMetricsSink::new(agent_client(moto), CancellationToken::new()).with_backoff(Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
    })
}

/// Sends `datums` through a pipeline into `moto` and waits for the shutdown flush.
async fn ship(moto: &Moto, datums: Vec<MetricDatum>) {
    let (tx, rx) = mpsc::channel(1024);
    let settings = MetricsSettings::new(Budget::new(64 << 20));
    let pipeline = tokio::spawn(metrics::run(rx, sink(moto), settings));
    for d in datums {
        tx.send(d).await.expect("pipeline open");
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), pipeline)
        .await
        .expect("flushed in time")
        .expect("pipeline task");
}

async fn statistics(moto: &Moto, namespace: &str, name: &str) -> (f64, f64, f64, f64) {
    let now = now_secs() as i64;
    let out = cloudwatch_client(&moto.endpoint())
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(name)
        .dimensions(
            Dimension::builder()
                .name("Service")
                .value("checkout")
                .build(),
        )
        .start_time(DateTime::from_secs(now - 600))
        .end_time(DateTime::from_secs(now + 600))
        .period(60)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .expect("GetMetricStatistics");
    let points = out.datapoints();
    let sum = points.iter().filter_map(|p| p.sum()).sum();
    let count = points.iter().filter_map(|p| p.sample_count()).sum();
    let min = points
        .iter()
        .filter_map(|p| p.minimum())
        .fold(f64::INFINITY, f64::min);
    let max = points
        .iter()
        .filter_map(|p| p.maximum())
        .fold(f64::NEG_INFINITY, f64::max);
    (sum, count, min, max)
}

#[tokio::test]
async fn values_counts_and_statistic_sets_read_back_with_get_metric_statistics() {
    let moto = Moto::start();
    let values = |v: &[f64], c: &[f64]| MetricValue::Values {
        values: v.to_vec(),
        counts: c.to_vec(),
    };
    ship(
        &moto,
        vec![
            datum(
                "Cloudtail/Test",
                "Latency",
                values(&[10.0, 20.0], &[2.0, 1.0]),
            ),
            datum(
                "Cloudtail/Test",
                "Latency",
                values(&[20.0, 40.0], &[1.0, 1.0]),
            ),
            datum(
                "Cloudtail/Test",
                "Summary",
                MetricValue::Statistics(StatisticSet {
                    sample_count: 4.0,
                    sum: 10.0,
                    minimum: 1.0,
                    maximum: 4.0,
                }),
            ),
            datum("Cloudtail/Test", "Broken", values(&[f64::NAN], &[1.0])),
        ],
    )
    .await;
    // 10 + 10 + 20 + 20 + 40: merged per minute, counts kept.
    let (sum, count, min, max) = statistics(&moto, "Cloudtail/Test", "Latency").await;
    assert_eq!((sum, count, min, max), (100.0, 5.0, 10.0, 40.0));
    let summary = statistics(&moto, "Cloudtail/Test", "Summary").await;
    assert_eq!(summary, (10.0, 4.0, 1.0, 4.0));
    let broken = statistics(&moto, "Cloudtail/Test", "Broken").await;
    assert_eq!(broken.1, 0.0, "NaN never reaches CloudWatch");

    let puts = moto.requests_for("PutMetricData");
    assert_eq!(puts.len(), 1, "one namespace, one call: {puts:?}");
    assert_eq!(puts[0]["protocol"], "rpcv2-cbor");
    assert_eq!(puts[0]["status"], 200);
    let data = puts[0]["body"]["MetricData"]
        .as_array()
        .expect("MetricData");
    assert_eq!(data.len(), 2, "Latency merged into one datum");
    let latency = data
        .iter()
        .find(|d| d["MetricName"] == "Latency")
        .expect("Latency");
    assert_eq!(latency["Unit"], "Milliseconds");
    assert_eq!(latency["Values"], json!([10.0, 20.0, 40.0]));
    assert_eq!(latency["Counts"], json!([2.0, 2.0, 1.0]));
}

#[tokio::test]
async fn thousands_of_series_go_out_in_calls_of_at_most_a_thousand() {
    let moto = Moto::start();
    let sent_before = COUNTERS.metrics.datums_sent.get();
    let datums = (0..2500)
        .map(|i| {
            let mut d = datum(
                "Cloudtail/Volume",
                &format!("m{i:04}"),
                MetricValue::Values {
                    values: vec![1.0],
                    counts: vec![1.0],
                },
            );
            d.dimensions.push(("Shard".into(), (i % 7).to_string()));
            d
        })
        .collect();
    ship(&moto, datums).await;
    let puts = moto.requests_for("PutMetricData");
    let sizes: Vec<usize> = puts
        .iter()
        .map(|p| p["body"]["MetricData"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 2500);
    assert_eq!(sizes.len(), 3, "full calls at volume: {sizes:?}");
    assert!(COUNTERS.metrics.datums_sent.get() - sent_before >= 2500);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried() {
    let moto = Moto::start();
    moto.inject_faults(json!({"status": 503, "count": 2, "operation": "PutMetricData"}));
    let retries_before = COUNTERS.metrics.retries.get();
    ship(
        &moto,
        vec![datum(
            "Cloudtail/Retry",
            "Latency",
            MetricValue::Values {
                values: vec![5.0],
                counts: vec![1.0],
            },
        )],
    )
    .await;
    let puts = moto.requests_for("PutMetricData");
    let statuses: Vec<_> = puts.iter().map(|p| p["status"].clone()).collect();
    assert_eq!(statuses, [json!(503), json!(503), json!(200)]);
    let retried = COUNTERS.metrics.retries.get() - retries_before;
    let calls = COUNTERS.metrics.put_calls.get();
    assert!(retried >= 2, "retried {retried}, calls {calls}");
    let (sum, count, ..) = statistics(&moto, "Cloudtail/Retry", "Latency").await;
    assert_eq!((sum, count), (5.0, 1.0));
}

#[tokio::test]
async fn calls_full_of_values_stay_under_one_megabyte() {
    let moto = Moto::start();
    // 600 series with 150 distinct values each: the byte limit, not the count, cuts the calls.
    let datums = (0..600)
        .map(|i| {
            let values: Vec<f64> = (0..150).map(|v| f64::from(v) + 0.5).collect();
            let counts = vec![1.0; values.len()];
            datum(
                "Cloudtail/Bytes",
                &format!("histogram-{i:04}"),
                MetricValue::Values { values, counts },
            )
        })
        .collect();
    ship(&moto, datums).await;
    let puts = moto.requests_for("PutMetricData");
    let mut total = 0;
    for put in &puts {
        let datums = put["body"]["MetricData"].as_array().map_or(0, Vec::len);
        let bytes = put["body_bytes"].as_u64().unwrap_or(u64::MAX);
        let encoding = put["headers"]["Content-Encoding"].clone();
        println!("{datums} datums in {bytes} bytes (encoding {encoding})");
        assert_eq!(put["status"], 200);
        assert!(bytes < 1_048_576, "{bytes}");
        total += datums;
    }
    assert_eq!(total, 600);
    assert!(puts.len() >= 2, "the byte limit cut the calls");
}
