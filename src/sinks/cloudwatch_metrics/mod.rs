//! CloudWatch metrics: `PutMetricData` for calls the metrics pipeline cut (one namespace, at
//! most 1,000 datums, under 1 MB). The client speaks Smithy RPC v2 CBOR, as current SDKs do.

pub mod sink;

pub use sink::CloudWatchMetricsSink;
