//! The part between sources and sinks: the memory budget, batching, retry policy, and the
//! loops that move items from one to the other.
//!
//! The pipeline knows neither files nor sockets nor AWS: only items with a size. Sources take
//! budget permits before they queue an item; the permit travels with the item into a batch and
//! is given back when the batch is delivered or dropped.

use std::future::Future;

pub mod ack;
pub mod batch;
pub mod budget;
pub mod logs;
pub mod retry;
pub mod traces;

use std::sync::Arc;

use ack::Ack;
use budget::Permit;

/// One X-Ray document (a segment, a subsegment or an array of subsegments) as received: the
/// body is shipped as is. It holds its share of the memory budget until dropped.
#[derive(Debug)]
pub struct Segment {
    /// The document text, validated by the source.
    pub document: String,
    /// Budget held for this document.
    pub permit: Permit,
}

/// Where a closed batch goes. A sink owns the whole life of a batch: sending, classifying a
/// failure, retrying under the shared policy, counting what it finally delivered or dropped.
/// When `send` returns, the batch is done either way and its budget is given back.
pub trait Sink<T>: Clone + Send + Sync + 'static {
    /// Delivers `batch` or gives up on it, counting the outcome.
    fn send(&self, batch: Vec<T>) -> impl Future<Output = ()> + Send;
}

/// Where a log event goes, and how its group must be set up when it has to be created.
/// Shared (`Arc`) by every event of a file or connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Log group name, placeholders already resolved and made legal.
    pub group: String,
    /// Log stream name, likewise.
    pub stream: String,
    /// Retention applied to the group at start and on creation; `None` leaves it alone.
    pub retention_days: Option<i32>,
    /// `STANDARD` or `INFREQUENT_ACCESS`, used when the group is created.
    pub group_class: Option<String>,
    /// Events are Embedded Metric Format documents (sent with `x-amzn-logs-format: json/emf`).
    pub emf: bool,
}

/// One event for CloudWatch Logs.
#[derive(Debug)]
pub struct LogEvent {
    /// Event time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The message, at most 1 MB minus overhead (the source splits or truncates longer ones).
    pub message: String,
    /// Group and stream.
    pub destination: Arc<Destination>,
    /// Resolved once AWS took the event (or refused it for good).
    pub ack: Ack,
    /// Budget held for this event.
    pub permit: Permit,
}

/// PutLogEvents counts every event as its UTF-8 bytes plus this overhead.
pub const LOG_EVENT_OVERHEAD_BYTES: usize = 26;

impl LogEvent {
    /// The size PutLogEvents counts for this event.
    pub fn api_size(&self) -> usize {
        self.message.len() + LOG_EVENT_OVERHEAD_BYTES
    }
}
