//! The logs pipeline's telemetry events: each function counts one event and writes its log
//! line, rate-limited where a flood is possible (rejections, retries, credential failures).
//!
//! Part of `telemetry`: engine code calls these through `crate::telemetry`, never the atomics.
//! Nothing here blocks or allocates on the counting path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{write_labeled, write_metric, Counter, COUNTERS};

/// Why CloudWatch Logs will never take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsRejectReason {
    /// More than 2 hours in the future (`tooNewLogEventStartIndex`).
    TooNew,
    /// Older than 14 days (`tooOldLogEventEndIndex`).
    TooOld,
    /// Older than the group's retention (`expiredLogEventEndIndex`).
    Expired,
    /// Empty, too large, or refused alone with `InvalidParameterException`.
    Invalid,
}

impl LogsRejectReason {
    const ALL: [LogsRejectReason; 4] = [
        LogsRejectReason::TooNew,
        LogsRejectReason::TooOld,
        LogsRejectReason::Expired,
        LogsRejectReason::Invalid,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            LogsRejectReason::TooNew => "too_new",
            LogsRejectReason::TooOld => "too_old",
            LogsRejectReason::Expired => "expired",
            LogsRejectReason::Invalid => "invalid",
        }
    }
}

/// Counters of the logs pipeline and its CloudWatch Logs sink.
#[derive(Debug, Default)]
pub struct LogsCounters {
    /// Events CloudWatch Logs accepted.
    pub events_sent: Counter,
    /// Bytes of accepted events, as the API counts them (message + 26).
    pub bytes_sent: Counter,
    /// `PutLogEvents` calls made, retries included.
    pub put_calls: Counter,
    /// Calls (put or setup) retried after a retryable failure.
    pub retries: Counter,
    /// Log groups this agent created.
    pub groups_created: Counter,
    /// Log streams this agent created.
    pub streams_created: Counter,
    rejected: [Counter; 4],
}

impl LogsCounters {
    /// All at zero, usable in a `static`.
    pub const fn new() -> Self {
        LogsCounters {
            events_sent: Counter::new(),
            bytes_sent: Counter::new(),
            put_calls: Counter::new(),
            retries: Counter::new(),
            groups_created: Counter::new(),
            streams_created: Counter::new(),
            rejected: [const { Counter::new() }; 4],
        }
    }

    /// Events rejected for `reason`.
    pub fn rejected(&self, reason: LogsRejectReason) -> &Counter {
        &self.rejected[reason as usize]
    }
}

/// At most one line per cause this often; the counters carry the rest.
pub const LOGS_WARN_EVERY: Duration = Duration::from_secs(60);

/// A clock-free rate limit for warn lines: `allow` is true at most once per `every`.
#[derive(Debug)]
struct RateLimit(AtomicU64);

impl RateLimit {
    const fn new() -> Self {
        RateLimit(AtomicU64::new(0))
    }

    fn allow(&self, every: Duration) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .max(1);
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now >= last.saturating_add(every.as_secs()))
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

static LOGS_REJECT_WARN: [RateLimit; 4] = [const { RateLimit::new() }; 4];
static LOGS_CREDENTIALS_WARN: RateLimit = RateLimit::new();
static LOGS_RETRY_WARN: RateLimit = RateLimit::new();
static LOGS_ABANDONED_WARN: RateLimit = RateLimit::new();

/// CloudWatch Logs accepted `events` events of `bytes` API bytes.
pub fn logs_sent(events: u64, bytes: u64) {
    COUNTERS.logs.events_sent.add(events);
    COUNTERS.logs.bytes_sent.add(bytes);
}

/// Events CloudWatch Logs will never take; one warn line per reason and minute.
pub fn logs_rejected(reason: LogsRejectReason, count: u64, group: &str, stream: &str) {
    COUNTERS.logs.rejected(reason).add(count);
    if LOGS_REJECT_WARN[reason as usize].allow(LOGS_WARN_EVERY) {
        tracing::warn!(
            reason = reason.label(),
            count,
            group,
            stream,
            "CloudWatch Logs rejected log events; they are skipped."
        );
    }
}

/// One `PutLogEvents` call is about to be made.
pub fn logs_put_call() {
    COUNTERS.logs.put_calls.inc();
}

/// A CloudWatch Logs call failed and will be retried after a backoff. Logged at debug for the
/// first attempts, then at warn (once a minute) while the failure lasts.
pub fn logs_retry(attempt: u32, group: &str, error: &str) {
    COUNTERS.logs.retries.inc();
    if attempt >= 3 && LOGS_RETRY_WARN.allow(LOGS_WARN_EVERY) {
        tracing::warn!(
            attempt,
            group,
            error,
            "CloudWatch Logs keeps failing; retrying (the files keep the backlog)."
        );
    } else {
        tracing::debug!(
            attempt,
            group,
            error,
            "CloudWatch Logs call failed; retrying."
        );
    }
}

/// A CloudWatch Logs call failed for lack of valid credentials or permissions; it is retried.
pub fn logs_credentials_error(group: &str, error: &str) {
    COUNTERS.logs.retries.inc();
    if LOGS_CREDENTIALS_WARN.allow(LOGS_WARN_EVERY) {
        tracing::warn!(
            group,
            error,
            "CloudWatch Logs refused the agent's credentials; check the role or keys and its \
             logs:PutLogEvents, logs:CreateLogGroup, logs:CreateLogStream and \
             logs:PutRetentionPolicy permissions. Retrying."
        );
    }
}

/// Events still unsent at the shutdown deadline: their acks are dropped unresolved (counted by
/// the ack module), so they are read again on the next start. One line per minute at most.
pub fn logs_abandoned(group: &str, events: u64) {
    if LOGS_ABANDONED_WARN.allow(LOGS_WARN_EVERY) {
        tracing::warn!(
            group,
            events,
            "Shutdown deadline passed with log events unsent; they will be read again on restart."
        );
    } else {
        tracing::debug!(
            group,
            events,
            "Log events left unsent at the shutdown deadline."
        );
    }
}

/// A log group was created.
pub fn logs_group_created(group: &str) {
    COUNTERS.logs.groups_created.inc();
    tracing::info!(group, "Created log group.");
}

/// A log stream was created.
pub fn logs_stream_created(group: &str, stream: &str) {
    COUNTERS.logs.streams_created.inc();
    tracing::debug!(group, stream, "Created log stream.");
}

/// Appends the logs counters to a Prometheus text.
pub(super) fn render(out: &mut String) {
    let l = &COUNTERS.logs;
    let plain = [
        (
            "cloudtail_logs_events_sent_total",
            "Log events accepted by CloudWatch Logs.",
            l.events_sent.get(),
        ),
        (
            "cloudtail_logs_bytes_sent_total",
            "Bytes of accepted log events (message + 26 per event).",
            l.bytes_sent.get(),
        ),
        (
            "cloudtail_logs_put_calls_total",
            "PutLogEvents calls, retries included.",
            l.put_calls.get(),
        ),
        (
            "cloudtail_logs_retries_total",
            "CloudWatch Logs calls retried.",
            l.retries.get(),
        ),
        (
            "cloudtail_logs_groups_created_total",
            "Log groups created by the agent.",
            l.groups_created.get(),
        ),
        (
            "cloudtail_logs_streams_created_total",
            "Log streams created by the agent.",
            l.streams_created.get(),
        ),
    ];
    for (name, help, value) in plain {
        write_metric(out, name, help, "counter", &[("", value as f64)]);
    }
    let rejected: Vec<(String, f64)> = LogsRejectReason::ALL
        .iter()
        .map(|r| {
            (
                format!("reason=\"{}\"", r.label()),
                l.rejected(*r).get() as f64,
            )
        })
        .collect();
    write_labeled(
        out,
        "cloudtail_logs_events_rejected_total",
        "Log events CloudWatch Logs will never accept, by reason.",
        &rejected,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_one_line_per_period() {
        let limit = RateLimit::new();
        assert!(limit.allow(Duration::from_secs(60)));
        assert!(!limit.allow(Duration::from_secs(60)));
        assert!(limit.allow(Duration::ZERO));
    }

    #[test]
    fn logs_counters_are_rendered() {
        logs_rejected(LogsRejectReason::TooOld, 2, "g", "s");
        logs_sent(3, 90);
        let text = super::super::render_prometheus(&[]);
        assert!(text.contains("# TYPE cloudtail_logs_events_sent_total counter"));
        assert!(text.contains("cloudtail_logs_bytes_sent_total "));
        assert!(text.contains("cloudtail_logs_put_calls_total "));
        assert!(text.contains("cloudtail_logs_retries_total "));
        assert!(text.contains("cloudtail_logs_groups_created_total "));
        assert!(text.contains("cloudtail_logs_streams_created_total "));
        for reason in ["too_new", "too_old", "expired", "invalid"] {
            let line = format!("cloudtail_logs_events_rejected_total{{reason=\"{reason}\"}} ");
            assert!(text.contains(&line), "{line}");
        }
    }
}
