//! Local metric filters: the counters the tailers of one `[[logs.files]]` entry share, and
//! the emitter that turns them into [`MetricDatum`]s every `metric_filter_interval`.
//!
//! A tailer calls [`MetricFilters::count`] on every event it reads, after multi-line grouping
//! and before `include_lines`/`exclude_lines`: a filter counts what is never shipped too. The
//! file source calls [`emit`] on its interval and once more after its tailers stopped, so the
//! last counts are published at shutdown. Counting is an atomic add: it never waits, never
//! allocates and never drops an event. Bytes read twice (a restart below the checkpoint, a
//! copytruncate copy) are counted twice, as they are shipped twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use regex::RegexSet;
use tokio::sync::mpsc;

use crate::config::MetricFilterConfig;
use crate::pipeline::{MetricDatum, MetricValue, StatisticSet};
use crate::telemetry::COUNTERS;

/// One filter: what it publishes, and the matches counted since its last datum.
#[derive(Debug)]
pub struct MetricFilter {
    config: MetricFilterConfig,
    namespace: Arc<str>,
    matches: AtomicU64,
}

/// The filters of one `[[logs.files]]` entry, shared by its tailers.
#[derive(Debug)]
pub struct MetricFilters {
    set: Option<RegexSet>,
    filters: Vec<Arc<MetricFilter>>,
}

impl MetricFilters {
    /// Compiles the entry's patterns into one set; no filters counts nothing.
    pub fn new(configs: &[MetricFilterConfig]) -> Result<Self, regex::Error> {
        let set = if configs.is_empty() {
            None
        } else {
            Some(RegexSet::new(configs.iter().map(|c| &c.pattern))?)
        };
        let filters = configs
            .iter()
            .map(|c| {
                Arc::new(MetricFilter {
                    namespace: Arc::from(c.namespace.as_str()),
                    config: c.clone(),
                    matches: AtomicU64::new(0),
                })
            })
            .collect();
        Ok(MetricFilters { set, filters })
    }

    /// Counts `text` once for every filter whose pattern it matches (one scan for all).
    pub fn count(&self, text: &str) {
        let Some(set) = &self.set else { return };
        for i in set.matches(text).iter() {
            if let Some(filter) = self.filters.get(i) {
                filter.matches.fetch_add(1, Ordering::Relaxed);
                COUNTERS.file_source.metric_filter_matches.inc();
            }
        }
    }

    /// The filters, for the emitter.
    pub fn filters(&self) -> &[Arc<MetricFilter>] {
        &self.filters
    }
}

impl MetricFilter {
    /// Takes the matches counted so far and makes the datum for them: the matches × `value`
    /// as a statistic set, the `default_value` when nothing matched, or `None`.
    pub fn take(&self, timestamp_ms: i64) -> Option<MetricDatum> {
        let matches = self.matches.swap(0, Ordering::Relaxed);
        let stats = match (matches, self.config.default_value) {
            (0, None) => return None,
            (0, Some(default)) => StatisticSet::of(default, 1.0),
            (n, _) => StatisticSet::of(self.config.value, n as f64),
        };
        Some(MetricDatum {
            namespace: Arc::clone(&self.namespace),
            name: self.config.metric.clone(),
            unit: self.config.unit,
            dimensions: self.config.dimensions.clone(),
            timestamp_ms,
            storage_resolution: 60,
            value: MetricValue::Statistics(stats),
        })
    }
}

/// Sends one datum per filter that has something to publish. A closed channel (the metrics
/// pipeline is gone) loses those counts; nothing else can.
pub async fn emit(filters: &[Arc<MetricFilter>], tx: &mpsc::Sender<MetricDatum>) {
    let now = chrono::Utc::now().timestamp_millis();
    for datum in filters.iter().filter_map(|f| f.take(now)) {
        if tx.send(datum).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Unit;

    fn config(pattern: &str, value: f64, default_value: Option<f64>) -> MetricFilterConfig {
        MetricFilterConfig {
            pattern: pattern.into(),
            metric: "ErrorCount".into(),
            namespace: "App".into(),
            unit: Unit::COUNT,
            value,
            default_value,
            dimensions: vec![("Service".into(), "api".into())],
        }
    }

    fn stats(datum: Option<MetricDatum>) -> Option<StatisticSet> {
        match datum?.value {
            MetricValue::Statistics(s) => Some(s),
            MetricValue::Values { .. } => None,
        }
    }

    #[test]
    fn thirty_seven_errors_among_a_thousand_lines_sum_to_37() {
        let filters = MetricFilters::new(&[config("ERROR", 1.0, None)]).unwrap();
        for i in 0..1000 {
            let line = if i % 27 == 0 && i / 27 < 37 {
                format!("{i} ERROR boom")
            } else {
                format!("{i} INFO fine")
            };
            filters.count(&line);
        }
        let datum = filters.filters()[0].take(1_000).unwrap();
        assert_eq!(
            (datum.name.as_str(), &*datum.namespace),
            ("ErrorCount", "App")
        );
        assert_eq!(datum.dimensions, [("Service".into(), "api".into())]);
        assert_eq!(datum.timestamp_ms, 1_000);
        let s = stats(Some(datum)).unwrap();
        assert_eq!(
            (s.sum, s.sample_count, s.minimum, s.maximum),
            (37.0, 37.0, 1.0, 1.0)
        );
        // The count was taken: the next interval starts from zero.
        assert!(filters.filters()[0].take(2_000).is_none());
    }

    #[test]
    fn each_filter_counts_an_event_once_with_its_own_value() {
        let filters =
            MetricFilters::new(&[config("ERROR", 1.0, None), config("5\\d\\d", 0.5, None)])
                .unwrap();
        filters.count("ERROR ERROR 500");
        filters.count("GET 503");
        filters.count("INFO");
        let [errors, status] = filters.filters() else {
            panic!("two filters");
        };
        assert_eq!(stats(errors.take(0)).map(|s| s.sum), Some(1.0));
        let s = stats(status.take(0)).unwrap();
        assert_eq!((s.sum, s.sample_count), (1.0, 2.0));
    }

    #[test]
    fn an_interval_without_a_match_publishes_the_default_value_or_nothing() {
        let filters =
            MetricFilters::new(&[config("ERROR", 1.0, Some(0.0)), config("WARN", 1.0, None)])
                .unwrap();
        filters.count("INFO");
        let s = stats(filters.filters()[0].take(0)).unwrap();
        assert_eq!((s.sum, s.sample_count), (0.0, 1.0));
        assert!(s.is_finite());
        assert!(filters.filters()[1].take(0).is_none());
        MetricFilters::new(&[]).unwrap().count("ERROR");
    }

    #[tokio::test]
    async fn emit_sends_one_datum_per_filter_with_matches() {
        let filters =
            MetricFilters::new(&[config("ERROR", 1.0, None), config("WARN", 1.0, None)]).unwrap();
        filters.count("ERROR");
        let (tx, mut rx) = mpsc::channel(4);
        emit(filters.filters(), &tx).await;
        drop(tx);
        assert_eq!(rx.recv().await.map(|d| d.name), Some("ErrorCount".into()));
        assert!(rx.recv().await.is_none());
    }
}
