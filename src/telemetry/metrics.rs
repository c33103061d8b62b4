//! The counters of the metrics side: EMF documents, StatsD lines, host collection, and the
//! `PutMetricData` pipeline (datums sent, calls, drops by reason).
//!
//! Like the rest of `telemetry`, each event is defined once here: the function that counts it
//! also writes its log line. Engine code calls these functions and never formats a counter
//! name. This file must never allocate on the counting path (StatsD counts millions of lines a
//! second): the counters are plain atomics indexed by a reason enum.

use std::fmt::Write as _;

use super::{write_labeled, write_metric, Counter};

/// What became of one line read from the EMF port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmfResult {
    /// A valid Embedded Metric Format document.
    Emf,
    /// JSON, but not EMF (no `_aws`): shipped as a plain log event.
    PlainJson,
    /// Not JSON (or not UTF-8): dropped.
    NotJson,
    /// Longer than the 1 MB document limit: dropped, the TCP connection closed.
    TooLarge,
    /// Has `_aws` but breaks the EMF rules: shipped as a plain log event, never as EMF.
    Invalid,
}

impl EmfResult {
    const ALL: [EmfResult; 5] = [
        EmfResult::Emf,
        EmfResult::PlainJson,
        EmfResult::NotJson,
        EmfResult::TooLarge,
        EmfResult::Invalid,
    ];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            EmfResult::Emf => "emf",
            EmfResult::PlainJson => "plain_json",
            EmfResult::NotJson => "not_json",
            EmfResult::TooLarge => "too_large",
            EmfResult::Invalid => "invalid",
        }
    }
}

/// Why an accepted EMF document or plain JSON event could not be handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmfDropReason {
    /// The memory budget was full (UDP) or the document is larger than the whole budget.
    Budget,
    /// The pipeline's channel was full (UDP) or closed.
    Channel,
    /// No pipeline takes this kind of output (e.g. no logs pipeline in `metrics` mode).
    NoOutput,
}

impl EmfDropReason {
    const ALL: [EmfDropReason; 3] = [
        EmfDropReason::Budget,
        EmfDropReason::Channel,
        EmfDropReason::NoOutput,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            EmfDropReason::Budget => "budget",
            EmfDropReason::Channel => "channel",
            EmfDropReason::NoOutput => "no_output",
        }
    }
}

/// Why metric datums were dropped instead of sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A value or statistic was NaN or infinite (PutMetricData refuses them).
    NonFinite,
    /// More than 30 dimensions.
    TooManyDimensions,
    /// An empty or over-long name, namespace or dimension.
    Invalid,
    /// Older than two weeks or more than two hours ahead: CloudWatch would refuse it.
    Timestamp,
    /// The memory budget was needed: the oldest aggregated batches went first.
    Budget,
    /// CloudWatch refused the call in a way a retry cannot fix.
    Refused,
    /// Retried too long, or still queued at the shutdown deadline.
    Expired,
    /// A source could not hand datums to the pipeline (channel closed).
    Channel,
}

impl DropReason {
    const ALL: [DropReason; 8] = [
        DropReason::NonFinite,
        DropReason::TooManyDimensions,
        DropReason::Invalid,
        DropReason::Timestamp,
        DropReason::Budget,
        DropReason::Refused,
        DropReason::Expired,
        DropReason::Channel,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::NonFinite => "non_finite",
            DropReason::TooManyDimensions => "too_many_dimensions",
            DropReason::Invalid => "invalid",
            DropReason::Timestamp => "timestamp",
            DropReason::Budget => "budget",
            DropReason::Refused => "refused",
            DropReason::Expired => "expired",
            DropReason::Channel => "channel",
        }
    }
}

/// Counters of the metrics pipeline and its sources.
#[derive(Debug, Default)]
pub struct MetricsCounters {
    emf_documents: [Counter; 5],
    emf_dropped: [Counter; 3],
    statsd_ok: Counter,
    statsd_malformed: Counter,
    /// StatsD datagrams the kernel dropped before they were read (`SO_RXQ_OVFL`).
    pub statsd_kernel_drops: Counter,
    /// Host metric readings that failed (a /proc file missing or unreadable).
    pub host_errors: Counter,
    /// Datums CloudWatch accepted.
    pub datums_sent: Counter,
    /// `PutMetricData` calls made, retries included.
    pub put_calls: Counter,
    /// Calls retried after a retryable failure.
    pub retries: Counter,
    datums_dropped: [Counter; 8],
}

impl MetricsCounters {
    /// All zero, usable in a `static`.
    pub const fn new() -> Self {
        MetricsCounters {
            emf_documents: [const { Counter::new() }; 5],
            emf_dropped: [const { Counter::new() }; 3],
            statsd_ok: Counter::new(),
            statsd_malformed: Counter::new(),
            statsd_kernel_drops: Counter::new(),
            host_errors: Counter::new(),
            datums_sent: Counter::new(),
            put_calls: Counter::new(),
            retries: Counter::new(),
            datums_dropped: [const { Counter::new() }; 8],
        }
    }

    /// EMF-port lines with `result`.
    pub fn emf_documents(&self, result: EmfResult) -> &Counter {
        &self.emf_documents[index(&EmfResult::ALL, result)]
    }

    /// EMF events dropped for `reason`.
    pub fn emf_dropped(&self, reason: EmfDropReason) -> &Counter {
        &self.emf_dropped[index(&EmfDropReason::ALL, reason)]
    }

    /// StatsD lines parsed (`true`) or malformed (`false`).
    pub fn statsd_lines(&self, ok: bool) -> &Counter {
        if ok {
            &self.statsd_ok
        } else {
            &self.statsd_malformed
        }
    }

    /// Datums dropped for `reason`.
    pub fn datums_dropped(&self, reason: DropReason) -> &Counter {
        &self.datums_dropped[index(&DropReason::ALL, reason)]
    }
}

fn index<T: PartialEq>(all: &[T], item: T) -> usize {
    all.iter().position(|i| *i == item).unwrap_or(0)
}

fn counters() -> &'static MetricsCounters {
    &super::COUNTERS.metrics
}

/// One line read on the EMF port ended as `result`; logged at debug (junk must not flood the
/// log).
pub fn emf_document(result: EmfResult) {
    counters().emf_documents(result).inc();
    if result != EmfResult::Emf && result != EmfResult::PlainJson {
        tracing::debug!(result = result.label(), "EMF line not shipped as EMF.");
    }
}

/// An EMF-port event could not be handed on.
pub fn emf_dropped(reason: EmfDropReason) {
    counters().emf_dropped(reason).inc();
    tracing::debug!(reason = reason.label(), "Dropped an EMF event.");
}

/// StatsD lines parsed and malformed in one datagram (counted per datagram, not per line).
pub fn statsd_lines(ok: u64, malformed: u64) {
    counters().statsd_lines(true).add(ok);
    if malformed > 0 {
        counters().statsd_lines(false).add(malformed);
        tracing::debug!(malformed, "Malformed StatsD lines.");
    }
}

/// `count` datums were dropped for `reason`. Loss after retries (refused, expired, budget) is
/// logged at warn; invalid input at debug.
pub fn metric_datums_dropped(reason: DropReason, count: u64) {
    if count == 0 {
        return;
    }
    counters().datums_dropped(reason).add(count);
    match reason {
        DropReason::Budget | DropReason::Refused | DropReason::Expired | DropReason::Channel => {
            tracing::warn!(
                reason = reason.label(),
                datums = count,
                "Dropped metric datums."
            );
        }
        _ => tracing::debug!(
            reason = reason.label(),
            datums = count,
            "Dropped invalid metric datums."
        ),
    }
}

/// The metrics counters at one moment, for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// EMF-port lines, every result.
    pub emf_lines: u64,
    /// StatsD lines, ok and malformed.
    pub statsd_lines: u64,
    /// Datums CloudWatch accepted.
    pub datums_sent: u64,
    /// Datums dropped, every reason.
    pub datums_dropped: u64,
}

impl MetricsSnapshot {
    /// Reads the counters now.
    pub fn take() -> Self {
        let m = counters();
        MetricsSnapshot {
            emf_lines: m.emf_documents.iter().map(Counter::get).sum(),
            statsd_lines: m.statsd_ok.get() + m.statsd_malformed.get(),
            datums_sent: m.datums_sent.get(),
            datums_dropped: m.datums_dropped.iter().map(Counter::get).sum(),
        }
    }

    /// Logs the change since `last` at info, if there was any.
    pub fn log_since(&self, last: &MetricsSnapshot) {
        if self != last {
            tracing::info!(
                emf_lines = self.emf_lines - last.emf_lines,
                statsd_lines = self.statsd_lines - last.statsd_lines,
                datums_sent = self.datums_sent - last.datums_sent,
                datums_dropped = self.datums_dropped - last.datums_dropped,
                "Metrics in the last interval."
            );
        }
    }
}

/// Appends the metrics counters to a Prometheus text exposition.
pub(super) fn render(out: &mut String) {
    let m = counters();
    let labeled = |label: &str, pairs: Vec<(&str, u64)>| -> Vec<(String, f64)> {
        pairs
            .into_iter()
            .map(|(l, v)| {
                let mut key = String::new();
                let _ = write!(key, "{label}=\"{l}\"");
                (key, v as f64)
            })
            .collect()
    };
    let emf = EmfResult::ALL.map(|r| (r.label(), m.emf_documents(r).get()));
    write_labeled(
        out,
        "cloudtail_emf_documents_total",
        "Lines read on the EMF port, by result.",
        &labeled("result", emf.to_vec()),
    );
    let emf_dropped = EmfDropReason::ALL.map(|r| (r.label(), m.emf_dropped(r).get()));
    write_labeled(
        out,
        "cloudtail_emf_dropped_total",
        "EMF events that could not be handed on, by reason.",
        &labeled("reason", emf_dropped.to_vec()),
    );
    let statsd = vec![
        ("ok", m.statsd_lines(true).get()),
        ("malformed", m.statsd_lines(false).get()),
    ];
    write_labeled(
        out,
        "cloudtail_statsd_lines_total",
        "StatsD lines received, by result.",
        &labeled("result", statsd),
    );
    let plain = [
        (
            "cloudtail_statsd_kernel_drops_total",
            "StatsD datagrams dropped by the kernel before they were read.",
            m.statsd_kernel_drops.get(),
        ),
        (
            "cloudtail_host_metrics_errors_total",
            "Host metric readings that failed.",
            m.host_errors.get(),
        ),
        (
            "cloudtail_metrics_datums_sent_total",
            "Metric datums accepted by CloudWatch.",
            m.datums_sent.get(),
        ),
        (
            "cloudtail_metrics_put_calls_total",
            "PutMetricData calls, retries included.",
            m.put_calls.get(),
        ),
        (
            "cloudtail_metrics_retries_total",
            "PutMetricData calls retried.",
            m.retries.get(),
        ),
    ];
    for (name, help, value) in plain {
        write_metric(out, name, help, "counter", &[("", value as f64)]);
    }
    let dropped = DropReason::ALL.map(|r| (r.label(), m.datums_dropped(r).get()));
    write_labeled(
        out,
        "cloudtail_metrics_datums_dropped_total",
        "Metric datums dropped, by reason.",
        &labeled("reason", dropped.to_vec()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        emf_document(EmfResult::TooLarge);
        statsd_lines(3, 1);
        metric_datums_dropped(DropReason::NonFinite, 2);
        let text = crate::telemetry::render_prometheus(&[]);
        for needle in [
            "cloudtail_emf_documents_total{result=\"too_large\"} ",
            "cloudtail_emf_documents_total{result=\"plain_json\"} ",
            "cloudtail_statsd_lines_total{result=\"malformed\"} ",
            "cloudtail_metrics_datums_dropped_total{reason=\"non_finite\"} ",
            "cloudtail_metrics_datums_sent_total ",
            "cloudtail_metrics_put_calls_total ",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert!(counters().emf_documents(EmfResult::TooLarge).get() >= 1);
        assert!(counters().datums_dropped(DropReason::NonFinite).get() >= 2);
    }
}
