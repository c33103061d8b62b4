//! The part between sources and sinks: the memory budget, batching, retry policy, and the
//! loops that move items from one to the other.
//!
//! The pipeline knows neither files nor sockets nor AWS: only items with a size. Sources take
//! budget permits before they queue an item; the permit travels with the item into a batch and
//! is given back when the batch is delivered or dropped.

use std::future::Future;

pub mod batch;
pub mod budget;
pub mod retry;
pub mod traces;

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
