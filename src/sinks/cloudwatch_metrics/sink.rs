//! Sends calls of metric datums with `PutMetricData`, retrying what can succeed later.
//!
//! The pipeline hands over calls that already keep the API's limits (one namespace, at most
//! 1,000 datums, 150 values and 30 dimensions each, finite values); this file only converts
//! them to the SDK's types and sends them. A call is retried with the shared backoff
//! (throttling, 5xx, timeouts, connection errors) for at most `retry_max_duration`, and not
//! past the shutdown deadline (`abort`); its budget is held meanwhile, so a long outage fills
//! the budget and the pipeline drops its oldest queued calls. A call CloudWatch refuses for
//! good (400 InvalidParameter...) is counted as refused and logged. With a disk spill (StatsD
//! running and `[buffer] disk_mb` set), a call given up on (retried too long, or still failing
//! at the shutdown deadline) is written to the spill instead of being dropped, to be sent again
//! when AWS is back or after a restart. This sink never drops a call without counting every
//! datum in it, and never retries on the SDK's own layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{
    Dimension, MetricDatum as SdkDatum, StandardUnit, StatisticSet as SdkStatistics,
};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;
use tokio_util::sync::CancellationToken;

use crate::pipeline::metrics::spilled;
use crate::pipeline::retry::{Backoff, Retry};
use crate::pipeline::spill::Spill;
use crate::pipeline::{MetricDatum, MetricValue, Sink};
use crate::sinks::classify::{classify, Verdict};
use crate::telemetry::{self, DropReason, COUNTERS};

/// How long a failing call is retried by default. Metrics are only worth as much as they are
/// recent; the budget bounds the backlog anyway.
pub const DEFAULT_RETRY_MAX_DURATION: Duration = Duration::from_secs(600);

/// The `PutMetricData` sink.
#[derive(Clone)]
pub struct CloudWatchMetricsSink {
    client: Client,
    backoff: Backoff,
    retry_max_duration: Duration,
    /// Cancelled when the shutdown deadline passes: retries stop, what is left is counted.
    abort: CancellationToken,
    /// Where a call given up on goes instead of being dropped.
    spill: Option<Arc<Spill>>,
}

impl CloudWatchMetricsSink {
    /// A sink over `client` (built from the shared SDK config, SDK retries off); `abort` ends
    /// retries at the shutdown deadline.
    pub fn new(client: Client, abort: CancellationToken) -> Self {
        CloudWatchMetricsSink {
            client,
            backoff: Backoff::default(),
            retry_max_duration: DEFAULT_RETRY_MAX_DURATION,
            abort,
            spill: None,
        }
    }

    /// The same sink writing the calls it gives up on to `spill` (when given) instead of
    /// dropping them.
    pub fn with_spill(mut self, spill: Option<Arc<Spill>>) -> Self {
        self.spill = spill;
        self
    }

    /// The same sink retrying a failing call for at most `duration`.
    pub fn with_retry_max_duration(mut self, duration: Duration) -> Self {
        self.retry_max_duration = duration;
        self
    }

    /// The same sink with another backoff (tests use a short one).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    async fn put(&self, namespace: &str, data: Vec<SdkDatum>) -> Result<(), Verdict> {
        COUNTERS.metrics.put_calls.inc();
        let call = self
            .client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send();
        match call.await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify(&error)),
        }
    }

    /// Waits before the next attempt; false when the shutdown deadline came first.
    async fn wait(&self, attempt: u32) -> bool {
        tokio::select! {
            _ = self.abort.cancelled() => false,
            _ = tokio::time::sleep(self.backoff.delay(attempt)) => true,
        }
    }
}

impl Sink<MetricDatum> for CloudWatchMetricsSink {
    async fn send(&self, batch: Vec<MetricDatum>) {
        let Some(first) = batch.first() else {
            return;
        };
        let namespace = first.namespace.to_string();
        let count = batch.len() as u64;
        let data: Vec<SdkDatum> = batch.iter().map(to_sdk).collect();
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let result = tokio::select! {
                biased;
                _ = self.abort.cancelled() => {
                    return self.give_up(&batch, "shutdown deadline passed");
                }
                result = self.put(&namespace, data.clone()) => result,
            };
            let verdict = match result {
                Ok(()) => return COUNTERS.metrics.datums_sent.add(count),
                Err(verdict) => verdict,
            };
            // Not `telemetry::backend_error`: those counters feed X-Ray's telemetry records,
            // which describe the X-Ray backend only.
            if verdict.retry == Retry::No {
                tracing::warn!(
                    namespace,
                    datums = count,
                    error = %verdict.detail,
                    "CloudWatch refused a PutMetricData call."
                );
                return telemetry::metric_datums_dropped(DropReason::Refused, count);
            }
            if started.elapsed() >= self.retry_max_duration {
                return self.give_up(&batch, &verdict.detail);
            }
            tracing::debug!(attempt, error = %verdict.detail, "PutMetricData failed; retrying.");
            COUNTERS.metrics.retries.inc();
            if !self.wait(attempt).await {
                return self.give_up(&batch, "shutdown deadline passed");
            }
            attempt = attempt.saturating_add(1);
        }
    }
}

impl CloudWatchMetricsSink {
    /// Writes a call that could not be delivered to the spill, or drops and counts it.
    fn give_up(&self, batch: &[MetricDatum], why: &str) {
        let count = batch.len() as u64;
        if let Some(spill) = &self.spill {
            if spill.append(&spilled::encode(batch)) {
                tracing::debug!(
                    datums = count,
                    error = why,
                    "Metric datums spilled to disk."
                );
                return;
            }
        }
        tracing::warn!(
            datums = count,
            error = why,
            "Gave up sending metric datums."
        );
        telemetry::metric_datums_dropped(DropReason::Expired, count);
    }
}

/// The SDK's datum for one of ours.
pub fn to_sdk(datum: &MetricDatum) -> SdkDatum {
    let builder = SdkDatum::builder()
        .metric_name(datum.name.clone())
        .set_dimensions(Some(
            datum
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect(),
        ))
        .timestamp(DateTime::from_millis(datum.timestamp_ms))
        .unit(StandardUnit::from(datum.unit.as_str()))
        .storage_resolution(if datum.storage_resolution == 1 { 1 } else { 60 });
    match &datum.value {
        MetricValue::Values { values, counts } => builder
            .set_values(Some(values.clone()))
            .set_counts(Some(counts.clone()))
            .build(),
        MetricValue::Statistics(s) => builder
            .statistic_values(
                SdkStatistics::builder()
                    .sample_count(s.sample_count)
                    .sum(s.sum)
                    .minimum(s.minimum)
                    .maximum(s.maximum)
                    .build(),
            )
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{StatisticSet, Unit};
    use std::sync::Arc;

    #[test]
    fn converts_every_field() {
        let datum = MetricDatum {
            namespace: Arc::from("NS"),
            name: "Latency".into(),
            unit: Unit::parse("Bytes/Second").expect("unit"),
            dimensions: vec![("Service".into(), "a".into())],
            timestamp_ms: 1_795_822_181_000,
            storage_resolution: 1,
            value: MetricValue::Values {
                values: vec![1.0, 2.5],
                counts: vec![3.0, 1.0],
            },
        };
        let sdk = to_sdk(&datum);
        assert_eq!(sdk.metric_name(), Some("Latency"));
        assert_eq!(sdk.unit(), Some(&StandardUnit::BytesSecond));
        assert_eq!(sdk.values(), [1.0, 2.5]);
        assert_eq!(sdk.counts(), [3.0, 1.0]);
        assert_eq!(sdk.storage_resolution(), Some(1));
        assert_eq!(sdk.dimensions()[0].name(), Some("Service"));
        assert_eq!(
            sdk.timestamp().map(|t| t.to_millis().ok()),
            Some(Some(1_795_822_181_000))
        );
        let stats = MetricDatum {
            value: MetricValue::Statistics(StatisticSet::of(2.0, 4.0)),
            storage_resolution: 60,
            ..datum
        };
        let sdk = to_sdk(&stats);
        let set = sdk.statistic_values().expect("statistics");
        assert_eq!(
            (set.sample_count(), set.sum(), set.minimum(), set.maximum()),
            (Some(4.0), Some(8.0), Some(2.0), Some(2.0))
        );
        assert!(sdk.values().is_empty());
        assert_eq!(sdk.storage_resolution(), Some(60));
    }
}
