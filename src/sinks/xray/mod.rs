//! X-Ray: `PutTraceSegments` for batches of documents, `PutTelemetryRecords` for the daemon's
//! own counters.

pub mod body;
pub mod sink;
pub mod telemetry_records;

pub use sink::XraySink;

/// The daemon stamps every X-Ray call with the send time, in epoch seconds with nine decimals.
pub const TIMESTAMP_HEADER: &str = "X-Amzn-Xray-Timestamp";

/// Now, formatted for [`TIMESTAMP_HEADER`].
pub fn timestamp_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}
