//! Where data leaves: one module per AWS API. A sink knows nothing of files or sockets; it
//! takes closed batches from a pipeline, sends them, retries under the shared policy, and
//! counts what was delivered, rejected or given up.

pub mod classify;
pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
pub mod json_body;
pub mod xray;
