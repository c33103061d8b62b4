//! StatsD aggregation over one interval, per (name, tags, kind), without allocating per line.
//!
//! The map is keyed by an owned key, created only when a series is first seen; lookups borrow
//! the name and tag text straight from the datagram (the `dyn SeriesRef` trick), so a line of
//! a known series costs a hash, a compare and an update. At the end of an interval
//! [`Aggregator::flush`] turns every series updated in it into a datum: counters summed
//! (divided by their sample rate), gauges their last value, timers and histograms their
//! distinct values with counts (a statistic set beyond 150 distinct values), sets their number
//! of distinct members. Series not updated during a whole interval are forgotten, so memory
//! follows the live series. Tag order matters to the key (`#a:1,b:2` and `#b:2,a:1` are two
//! series with the same dimensions; CloudWatch adds them up). Pure: no I/O, no clock.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use super::parse::{tag_pairs, GaugeUpdate, Kind, Line};
use crate::pipeline::{MetricDatum, MetricValue, StatisticSet, Unit};

/// Distinct values kept per timer or histogram; beyond, only a statistic set.
pub const MAX_DISTINCT_VALUES: usize = 150;
/// Dimensions per datum (CloudWatch's limit); further tags are ignored.
pub const MAX_DIMENSIONS: usize = 30;
/// Series tracked at once; lines of further new series are refused (memory bound).
pub const MAX_SERIES: usize = 100_000;

/// The borrowed view of a series key, used for lookups.
#[derive(Hash, PartialEq, Eq)]
struct KeyRef<'a> {
    name: &'a str,
    tags: &'a str,
    kind: Kind,
}

trait SeriesRef {
    fn key(&self) -> KeyRef<'_>;
}

impl SeriesRef for KeyRef<'_> {
    fn key(&self) -> KeyRef<'_> {
        KeyRef { ..*self }
    }
}

/// The owned key, created once per series.
struct SeriesKey {
    name: Box<str>,
    tags: Box<str>,
    kind: Kind,
}

impl SeriesRef for SeriesKey {
    fn key(&self) -> KeyRef<'_> {
        KeyRef {
            name: &self.name,
            tags: &self.tags,
            kind: self.kind,
        }
    }
}

impl<'a> Borrow<dyn SeriesRef + 'a> for SeriesKey {
    fn borrow(&self) -> &(dyn SeriesRef + 'a) {
        self
    }
}

impl Hash for dyn SeriesRef + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for dyn SeriesRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn SeriesRef + '_ {}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for SeriesKey {}

/// What one series accumulated.
#[derive(Debug)]
enum State {
    Counter(f64),
    Gauge(f64),
    Distribution {
        /// Distinct values and their counts; emptied (and `overflow` set) past the limit.
        values: Vec<(f64, f64)>,
        overflow: bool,
        stats: Option<StatisticSet>,
    },
    Set(HashSet<u64, FastState>),
}

struct Series {
    state: State,
    touched: bool,
}

/// Why a parsed line could not be aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A value did not parse (the parser checks, so only on a bug).
    Malformed,
    /// [`MAX_SERIES`] series are tracked already.
    TooManySeries,
}

/// A multiply-rotate hash (the rustc `FxHasher` scheme) from a per-process random seed: a few
/// cycles per 8 bytes where SipHash takes several times that, which is most of a line's cost.
/// The random seed keeps series names from colliding on purpose across processes; StatsD
/// listens on loopback by default.
#[derive(Clone, Copy)]
pub struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes its bucket from the low bits.
        self.0 ^ (self.0 >> 29)
    }
}

/// Builds [`FastHasher`]s from one random seed.
#[derive(Clone, Copy)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        FastState(rand::random())
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// The series of the current interval.
pub struct Aggregator {
    series: HashMap<SeriesKey, Series, FastState>,
    member_hasher: FastState,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Aggregator {
            series: HashMap::default(),
            member_hasher: FastState::default(),
        }
    }

    /// Series tracked (updated this interval or the one before).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Adds one parsed line.
    pub fn add(&mut self, line: &Line<'_>) -> Result<(), Refused> {
        let lookup = KeyRef {
            name: line.name,
            tags: line.tags,
            kind: line.kind,
        };
        let series = match self.series.get_mut(&lookup as &dyn SeriesRef) {
            Some(series) => series,
            None => {
                if self.series.len() >= MAX_SERIES {
                    return Err(Refused::TooManySeries);
                }
                let key = SeriesKey {
                    name: line.name.into(),
                    tags: line.tags.into(),
                    kind: line.kind,
                };
                self.series.entry(key).or_insert(Series {
                    state: empty_state(line.kind),
                    touched: false,
                })
            }
        };
        series.touched = true;
        let weight = 1.0 / line.rate;
        match &mut series.state {
            State::Counter(sum) => {
                for v in line.values() {
                    *sum += v.map_err(|_| Refused::Malformed)? * weight;
                }
            }
            State::Gauge(last) => match line.gauge().map_err(|_| Refused::Malformed)? {
                GaugeUpdate::Set(v) => *last = v,
                GaugeUpdate::Add(v) => *last += v,
            },
            State::Distribution {
                values,
                overflow,
                stats,
            } => {
                for v in line.values() {
                    let v = v.map_err(|_| Refused::Malformed)?;
                    observe(values, overflow, stats, v, weight);
                }
            }
            State::Set(members) => {
                members.insert(self.member_hasher.hash_one(line.value));
            }
        }
        Ok(())
    }

    /// The datums of every series updated since the last flush, stamped `timestamp_ms` in
    /// `namespace`; resets them and forgets series idle for a whole interval.
    pub fn flush(&mut self, namespace: &Arc<str>, timestamp_ms: i64) -> Vec<MetricDatum> {
        let mut out = Vec::new();
        self.series.retain(|key, series| {
            if !series.touched {
                return false;
            }
            series.touched = false;
            if let Some(value) = take(&mut series.state) {
                out.push(MetricDatum {
                    namespace: Arc::clone(namespace),
                    name: key.name.to_string(),
                    unit: unit_of(key.kind),
                    dimensions: dimensions(&key.tags),
                    timestamp_ms,
                    storage_resolution: 60,
                    value,
                });
            }
            true
        });
        out
    }
}

fn empty_state(kind: Kind) -> State {
    match kind {
        Kind::Counter => State::Counter(0.0),
        Kind::Gauge => State::Gauge(0.0),
        Kind::Timer | Kind::Histogram => State::Distribution {
            values: Vec::new(),
            overflow: false,
            stats: None,
        },
        Kind::Set => State::Set(HashSet::default()),
    }
}

fn observe(
    values: &mut Vec<(f64, f64)>,
    overflow: &mut bool,
    stats: &mut Option<StatisticSet>,
    v: f64,
    weight: f64,
) {
    let sample = StatisticSet::of(v, weight);
    match stats {
        Some(s) => s.merge(&sample),
        None => *stats = Some(sample),
    }
    if *overflow {
        return;
    }
    if let Some((_, count)) = values.iter_mut().find(|(value, _)| *value == v) {
        *count += weight;
    } else if values.len() < MAX_DISTINCT_VALUES {
        values.push((v, weight));
    } else {
        *overflow = true;
        values.clear();
    }
}

/// The interval's value of a series, and its reset for the next interval (gauges keep their
/// last value so relative updates go on from it).
fn take(state: &mut State) -> Option<MetricValue> {
    let single = |v: f64| MetricValue::Values {
        values: vec![v],
        counts: vec![1.0],
    };
    match state {
        State::Counter(sum) => {
            let value = single(*sum);
            *sum = 0.0;
            Some(value)
        }
        State::Gauge(last) => Some(single(*last)),
        State::Distribution {
            values,
            overflow,
            stats,
        } => {
            let value = if *overflow || values.is_empty() {
                stats.map(MetricValue::Statistics)
            } else {
                Some(MetricValue::Values {
                    values: values.iter().map(|(v, _)| *v).collect(),
                    counts: values.iter().map(|(_, c)| *c).collect(),
                })
            };
            values.clear();
            *overflow = false;
            *stats = None;
            value
        }
        State::Set(members) => {
            let value = single(members.len() as f64);
            members.clear();
            Some(value)
        }
    }
}

/// Tags as dimensions: sorted by key, a repeated key keeps its last value, at most 30.
fn dimensions(tags: &str) -> Vec<(String, String)> {
    let mut dims: Vec<(String, String)> = tag_pairs(tags)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    dims.reverse();
    dims.sort_by(|a, b| a.0.cmp(&b.0));
    dims.dedup_by(|a, b| a.0 == b.0);
    dims.truncate(MAX_DIMENSIONS);
    dims
}

/// The unit of a kind's datums (timers are milliseconds).
pub fn unit_of(kind: Kind) -> Unit {
    match kind {
        Kind::Timer => Unit::MILLISECONDS,
        Kind::Counter | Kind::Set => Unit::COUNT,
        Kind::Gauge | Kind::Histogram => Unit::NONE,
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
