//! The X-Ray daemon's `PutTelemetryRecords`: every 60 s, once the first datagram arrived, the
//! counts of the last interval (received, sent, spillover, rejected, backend errors by kind),
//! so the X-Ray console shows the agent's health exactly as it showed the daemon's.
//! Best effort: a failed call is logged at debug and its interval's counts are not resent.

use std::time::Duration;

use aws_sdk_xray::primitives::DateTime;
use aws_sdk_xray::types::{BackendConnectionErrors, TelemetryRecord};
use aws_sdk_xray::Client;
use tokio_util::sync::CancellationToken;

use super::{timestamp_now, TIMESTAMP_HEADER};
use crate::sinks::classify::classify;
use crate::telemetry::{Snapshot, COUNTERS};

/// Who is reporting.
#[derive(Debug, Clone, Default)]
pub struct Reporter {
    /// `Hostname` of the records.
    pub hostname: Option<String>,
    /// `EC2InstanceId`.
    pub instance_id: Option<String>,
    /// `ResourceARN` (`-a`).
    pub resource_arn: Option<String>,
}

/// Sends a record every `interval` until `token` is cancelled.
pub async fn run(client: Client, reporter: Reporter, interval: Duration, token: CancellationToken) {
    let mut last = Snapshot::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if COUNTERS.xray.received.get() == 0 {
            continue;
        }
        let now = Snapshot::take();
        if let Some(record) = record(&last, &now) {
            send(&client, &reporter, record).await;
        }
        last = now;
    }
}

/// The record for the interval between two snapshots.
pub fn record(before: &Snapshot, after: &Snapshot) -> Option<TelemetryRecord> {
    let delta = |a: u64, b: u64| i32::try_from(b.saturating_sub(a)).unwrap_or(i32::MAX);
    let backend = |i: usize| delta(before.backend[i], after.backend[i]);
    let errors = BackendConnectionErrors::builder()
        .timeout_count(backend(0))
        .connection_refused_count(backend(1))
        .unknown_host_count(backend(2))
        .http_code4_xx_count(backend(3))
        .http_code5_xx_count(backend(4))
        .other_count(backend(5))
        .build();
    TelemetryRecord::builder()
        .timestamp(DateTime::from(std::time::SystemTime::now()))
        .segments_received_count(delta(before.received, after.received))
        .segments_sent_count(delta(before.sent, after.sent))
        .segments_spillover_count(delta(before.spillover, after.spillover))
        .segments_rejected_count(delta(before.rejected, after.rejected))
        .backend_connection_errors(errors)
        .build()
        .ok()
}

async fn send(client: &Client, reporter: &Reporter, record: TelemetryRecord) {
    let result = client
        .put_telemetry_records()
        .telemetry_records(record)
        .set_hostname(reporter.hostname.clone())
        .set_ec2_instance_id(reporter.instance_id.clone())
        .set_resource_arn(reporter.resource_arn.clone())
        .customize()
        .mutate_request(|request| {
            request
                .headers_mut()
                .insert(TIMESTAMP_HEADER, timestamp_now());
        })
        .send()
        .await;
    if let Err(error) = result {
        tracing::debug!(error = %classify(&error).detail, "PutTelemetryRecords failed.");
    }
}
