//! The part between sources and sinks: the memory budget, batching, retry policy, and the
//! loops that move items from one to the other.
//!
//! The pipeline knows neither files nor sockets nor AWS: only items with a size. Sources take
//! budget permits before they queue an item; the permit travels with the item into a batch and
//! is given back when the batch is delivered or dropped.

use std::future::Future;
use std::hash::{Hash, Hasher};

pub mod ack;
pub mod batch;
pub mod budget;
pub mod logs;
pub mod message;
pub mod metrics;
pub mod retry;
pub mod spill;
pub mod traces;
pub mod unit;

pub use message::{Message, SharedText};
pub use unit::Unit;

use std::sync::Arc;

use ack::Ack;
use budget::Permit;

/// One X-Ray document (a segment, a subsegment or an array of subsegments) as received: the
/// body is shipped as is. It holds its share of the memory budget until dropped.
#[derive(Debug)]
pub struct Segment {
    /// The document text, validated by the source: usually a slice of one copy of all the
    /// documents of a read (see `sources::xray`).
    pub document: Message,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Hashes what tells destinations apart cheaply: the names' lengths and last bytes and the
/// EMF flag, a subset of what `Eq` compares, so equal destinations hash alike. The logs
/// pipeline looks every event's destination up; hashing both names in full was ~3% of the
/// agent's CPU at full speed, and `Arc`'s equality checks the pointer before the names.
impl Hash for Destination {
    fn hash<H: Hasher>(&self, state: &mut H) {
        fn tail(name: &str) -> u64 {
            let bytes = name.as_bytes();
            match bytes.last_chunk::<8>() {
                Some(word) => u64::from_le_bytes(*word),
                None => bytes.iter().fold(0, |h, b| h << 8 | u64::from(*b)),
            }
        }
        state.write_u64(tail(&self.group) ^ (self.group.len() as u64).rotate_left(32));
        state.write_u64(tail(&self.stream) ^ (self.stream.len() as u64).rotate_left(32));
        state.write_u8(u8::from(self.emf));
    }
}

/// One event for CloudWatch Logs.
#[derive(Debug)]
pub struct LogEvent {
    /// Event time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The message, at most 1 MB minus overhead (the source splits or truncates longer ones).
    pub message: Message,
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

/// One CloudWatch metric datum, as sources produce it and `PutMetricData` takes it.
///
/// The pipeline aggregates datums with the same (namespace, name, dimensions, unit, storage
/// resolution, period) before shipping, so a source may hand on one datum per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    /// The CloudWatch namespace (1-255 characters), shared by the datums of one source.
    pub namespace: Arc<str>,
    /// The metric name (1-255 characters).
    pub name: String,
    /// The unit.
    pub unit: Unit,
    /// Dimension name/value pairs; at most 30 (more is dropped and counted by the pipeline).
    pub dimensions: Vec<(String, String)>,
    /// When the value was observed, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// 1 (high resolution) or 60 seconds; anything else is sent as 60.
    pub storage_resolution: u32,
    /// The observations.
    pub value: MetricValue,
}

/// What a datum carries: samples or a summary of them.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// Distinct values and how often each was seen (same length; counts may be fractional
    /// after sample-rate correction). The pipeline splits more than 150 into several datums.
    Values {
        /// The values.
        values: Vec<f64>,
        /// How many times each value occurred.
        counts: Vec<f64>,
    },
    /// A summary of many samples.
    Statistics(StatisticSet),
}

/// `StatisticValues` of a datum: a summary of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticSet {
    /// How many samples.
    pub sample_count: f64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub minimum: f64,
    /// The largest.
    pub maximum: f64,
}

impl StatisticSet {
    /// The summary of one sample seen `count` times.
    pub fn of(value: f64, count: f64) -> Self {
        StatisticSet {
            sample_count: count,
            sum: value * count,
            minimum: value,
            maximum: value,
        }
    }

    /// Adds `other`'s samples to this summary.
    pub fn merge(&mut self, other: &StatisticSet) {
        self.sample_count += other.sample_count;
        self.sum += other.sum;
        self.minimum = self.minimum.min(other.minimum);
        self.maximum = self.maximum.max(other.maximum);
    }

    /// True when every field is a finite number and the count is positive.
    pub fn is_finite(&self) -> bool {
        [self.sample_count, self.sum, self.minimum, self.maximum]
            .iter()
            .all(|v| v.is_finite())
            && self.sample_count > 0.0
    }
}

impl MetricDatum {
    /// A datum of one value.
    pub fn single(
        namespace: Arc<str>,
        name: impl Into<String>,
        unit: Unit,
        value: f64,
        timestamp_ms: i64,
    ) -> Self {
        MetricDatum {
            namespace,
            name: name.into(),
            unit,
            dimensions: Vec::new(),
            timestamp_ms,
            storage_resolution: 60,
            value: MetricValue::Values {
                values: vec![value],
                counts: vec![1.0],
            },
        }
    }

    /// The same datum with `dimensions` added.
    pub fn with_dimensions(mut self, dimensions: Vec<(String, String)>) -> Self {
        self.dimensions.extend(dimensions);
        self
    }
}

/// Now, in milliseconds since the epoch (0 if the clock is before 1970), as CloudWatch stamps
/// events and datums.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Test helpers shared by the sources' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::VecDeque;

    use tokio::sync::mpsc;

    use super::LogEvent;

    /// The logs channel read one event at a time, as if sources sent events one by one
    /// (they send a read's events as one group).
    pub(crate) struct Events {
        /// The channel itself.
        pub rx: mpsc::Receiver<Vec<LogEvent>>,
        waiting: VecDeque<LogEvent>,
    }

    impl Events {
        pub(crate) fn new(rx: mpsc::Receiver<Vec<LogEvent>>) -> Self {
            Events {
                rx,
                waiting: VecDeque::new(),
            }
        }

        /// The next event; `None` once the channel is closed and empty.
        pub(crate) async fn recv(&mut self) -> Option<LogEvent> {
            loop {
                if let Some(event) = self.waiting.pop_front() {
                    return Some(event);
                }
                let group = self.rx.recv().await?;
                self.waiting.extend(group);
            }
        }

        /// The next event if one is there now.
        pub(crate) fn try_recv(&mut self) -> Result<LogEvent, mpsc::error::TryRecvError> {
            loop {
                if let Some(event) = self.waiting.pop_front() {
                    return Ok(event);
                }
                let group = self.rx.try_recv()?;
                self.waiting.extend(group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::hash::BuildHasher;

    fn destination(group: &str, stream: &str, emf: bool) -> Destination {
        Destination {
            group: group.into(),
            stream: stream.into(),
            retention_days: None,
            group_class: None,
            emf,
        }
    }

    #[test]
    fn equal_destinations_hash_alike_and_different_ones_stay_apart() {
        let state = std::collections::hash_map::RandomState::new();
        let a = destination("/app/web", "i-0123/access.log", false);
        let same = destination("/app/web", "i-0123/access.log", false);
        assert_eq!(state.hash_one(&a), state.hash_one(&same));

        // Same lengths and last bytes: one hash, told apart by `Eq`.
        let twins = [
            destination("/app/aaa-x", "s", false),
            destination("/app/bbb-x", "s", false),
            destination("/app/aaa-x", "s", true),
            destination("", "", false),
            destination("g", "a-stream-name-longer-than-eight", false),
        ];
        let mut lanes: HashMap<Arc<Destination>, usize> = HashMap::new();
        for (i, d) in twins.iter().enumerate() {
            lanes.insert(Arc::new(d.clone()), i);
        }
        assert_eq!(lanes.len(), twins.len());
        for (i, d) in twins.iter().enumerate() {
            assert_eq!(lanes.get(&Arc::new(d.clone())), Some(&i));
        }
    }
}
