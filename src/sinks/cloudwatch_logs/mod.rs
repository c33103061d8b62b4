//! CloudWatch Logs: `PutLogEvents` for batches of log events, plus the group and stream set-up
//! it needs (creation, log group class, retention).
//!
//! `batch.rs` cuts a closed batch into API-valid requests (pure), `body.rs` writes a request's
//! JSON body (pure) into a buffer `buffers.rs` keeps between calls, `retry.rs` says what to do
//! after a failed call (pure), `sink.rs` sends and resolves acks, `retention.rs` creates groups
//! and streams and holds groups to their retention.

pub mod batch;
pub mod body;
pub mod buffers;
pub mod retention;
pub mod retry;
pub mod sink;

pub use retention::prepare_groups;
pub use sink::{request_memory_for_budget, CloudWatchLogsSink};
