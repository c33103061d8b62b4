//! X-Ray: `PutTraceSegments` for batches of documents, `PutTelemetryRecords` for the daemon's
//! own counters.

pub mod body;
pub mod sink;
pub mod telemetry_records;
pub mod transport;

pub use sink::XraySink;

use aws_sdk_xray::config::StalledStreamProtectionConfig;

/// The X-Ray client of `PutTelemetryRecords`: the shared SDK configuration (region,
/// credentials chain, endpoint, proxy, SDK retries off), with the SDK's stalled-stream
/// protection off as well (`PutTraceSegments` goes through [`transport`]).
/// Its bodies are a few small in-memory buffers that an attempt timeout already bounds, so
/// watching their throughput only adds work to every call.
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_xray::Client {
    let config = aws_sdk_xray::config::Builder::from(sdk)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .build();
    aws_sdk_xray::Client::from_conf(config)
}

/// The daemon stamps every X-Ray call with the send time, in epoch seconds with nine decimals.
pub const TIMESTAMP_HEADER: &str = "X-Amzn-Xray-Timestamp";

/// Now, formatted for [`TIMESTAMP_HEADER`].
pub fn timestamp_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}
