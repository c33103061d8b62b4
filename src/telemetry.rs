//! The agent's own counters, and the `/metrics` + `/healthz` server that shows them.
//!
//! Counters are the one global state allowed (plain atomics, no lock, no allocation), so any
//! task can count without a handle. Each event is defined once here: the function that counts
//! it also writes its log line, so a log line and its counter never disagree. Engine code calls
//! these functions, never the atomics' names in a format string. The HTTP server is for a local
//! scraper or `cloudtail status`; it binds loopback by default and serves nothing else.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod logs;

pub use logs::{
    logs_abandoned, logs_credentials_error, logs_group_created, logs_put_call, logs_rejected,
    logs_retry, logs_sent, logs_stream_created, LogsCounters, LogsRejectReason, LOGS_WARN_EVERY,
};

pub mod metrics;

pub use metrics::{
    emf_document, emf_dropped, metric_datums_dropped, statsd_lines, DropReason, EmfDropReason,
    EmfResult,
};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero, usable in a `static`.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the value, for counts the kernel keeps (it only grows, so a plain max is right).
    pub fn raise_to(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// Why a datagram on the X-Ray port was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No `\n` between header and body.
    NoHeader,
    /// The header is not `{"format":"json","version":1}`.
    BadHeader,
    /// Nothing after the header.
    EmptyBody,
    /// The body is not UTF-8 (the X-Ray API takes text).
    NotUtf8,
    /// The body is not a JSON object or array.
    NotJson,
    /// A document lacks a well-formed `id` or `trace_id`.
    BadIds,
    /// X-Ray answered the document in `UnprocessedTraceSegments`.
    Unprocessed,
    /// X-Ray refused the whole call in a way a retry cannot fix.
    Refused,
}

impl RejectReason {
    const ALL: [RejectReason; 8] = [
        RejectReason::NoHeader,
        RejectReason::BadHeader,
        RejectReason::EmptyBody,
        RejectReason::NotUtf8,
        RejectReason::NotJson,
        RejectReason::BadIds,
        RejectReason::Unprocessed,
        RejectReason::Refused,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::NoHeader => "no_header",
            RejectReason::BadHeader => "bad_header",
            RejectReason::EmptyBody => "empty_body",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::NotJson => "not_json",
            RejectReason::BadIds => "bad_ids",
            RejectReason::Unprocessed => "unprocessed",
            RejectReason::Refused => "refused",
        }
    }
}

/// Why a failed call to AWS failed, in the X-Ray daemon's telemetry categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// No answer in time.
    Timeout,
    /// The TCP connection was refused.
    ConnectionRefused,
    /// The endpoint's name did not resolve.
    UnknownHost,
    /// An HTTP 4xx answer (throttling included).
    Http4xx,
    /// An HTTP 5xx answer.
    Http5xx,
    /// Anything else (TLS, reset, credentials).
    Other,
}

/// Counters of the traces pipeline.
#[derive(Debug, Default)]
pub struct XrayCounters {
    /// Datagrams read from the UDP socket.
    pub received: Counter,
    /// Documents X-Ray accepted.
    pub sent: Counter,
    /// Documents dropped because the memory budget was full (the daemon's spillover).
    pub spillover: Counter,
    /// Datagrams the kernel dropped before we could read them (`SO_RXQ_OVFL`).
    pub kernel_drops: Counter,
    /// Documents given up after `retry_max_duration` or at the shutdown deadline.
    pub expired: Counter,
    /// `PutTraceSegments` calls made, retries included.
    pub put_calls: Counter,
    /// Calls retried after a retryable failure.
    pub retries: Counter,
    rejected: [Counter; 8],
    backend: [Counter; 6],
}

/// A value that goes up and down (files watched).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// A gauge at zero, usable in a `static`.
    pub const fn new() -> Self {
        Gauge(AtomicU64::new(0))
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Removes one, never below zero.
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of the file source (the reading side of the logs pipeline).
#[derive(Debug, Default)]
pub struct FileSourceCounters {
    /// Lines read from files (before multi-line grouping and filters).
    pub lines_read: Counter,
    /// Events not shipped because of `include_lines`/`exclude_lines`.
    pub events_filtered: Counter,
    /// Matches counted by local metric filters (one per filter an event matched).
    pub metric_filter_matches: Counter,
    /// Events cut to the PutLogEvents per-event limit.
    pub events_truncated: Counter,
    /// Lines that held invalid UTF-8 (or UTF-16), shipped with U+FFFD.
    pub invalid_utf8: Counter,
    /// Events whose timestamp could not be read; they got the read time.
    pub timestamp_unparsed: Counter,
    /// Files being tailed now.
    pub files_watched: Gauge,
}

/// Every counter of the process.
#[derive(Debug, Default)]
pub struct Counters {
    /// Traces pipeline.
    pub xray: XrayCounters,
    /// Logs pipeline (the CloudWatch Logs sink's side).
    pub logs: LogsCounters,
    /// The file source.
    pub file_source: FileSourceCounters,
    /// Metrics pipeline and its sources (EMF, StatsD, host).
    pub metrics: metrics::MetricsCounters,
}

/// The process's counters.
pub static COUNTERS: Counters = Counters {
    xray: XrayCounters {
        received: Counter::new(),
        sent: Counter::new(),
        spillover: Counter::new(),
        kernel_drops: Counter::new(),
        expired: Counter::new(),
        put_calls: Counter::new(),
        retries: Counter::new(),
        rejected: [const { Counter::new() }; 8],
        backend: [const { Counter::new() }; 6],
    },
    logs: LogsCounters::new(),
    file_source: FileSourceCounters {
        lines_read: Counter::new(),
        events_filtered: Counter::new(),
        metric_filter_matches: Counter::new(),
        events_truncated: Counter::new(),
        invalid_utf8: Counter::new(),
        timestamp_unparsed: Counter::new(),
        files_watched: Gauge::new(),
    },
    metrics: metrics::MetricsCounters::new(),
};

impl XrayCounters {
    /// Documents rejected for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> &Counter {
        let index = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.rejected[index]
    }

    /// All rejected documents, every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(Counter::get).sum()
    }

    /// Backend failures of one category.
    pub fn backend(&self, error: BackendError) -> &Counter {
        &self.backend[error as usize]
    }
}

/// A datagram was rejected; logged at debug (a flood of junk must not flood the log).
pub fn segment_rejected(reason: RejectReason, count: u64) {
    COUNTERS.xray.rejected(reason).add(count);
    tracing::debug!(reason = reason.label(), count, "Rejected X-Ray documents.");
}

/// A log event was cut to the PutLogEvents per-event limit; logged at debug (one huge line
/// a second must not flood the log).
pub fn log_event_truncated(path: &std::path::Path) {
    COUNTERS.file_source.events_truncated.inc();
    tracing::debug!(path = %path.display(), "Truncated a log event over the per-event limit.");
}

/// A log event's timestamp could not be read with `timestamp_format`; it gets the read time.
pub fn log_timestamp_unparsed(path: &std::path::Path) {
    COUNTERS.file_source.timestamp_unparsed.inc();
    tracing::debug!(path = %path.display(), "Could not read a log event's timestamp; using the read time.");
}

/// A failed AWS call, counted by category for the telemetry records and `/metrics`.
pub fn backend_error(error: BackendError) {
    COUNTERS.xray.backend(error).inc();
}

/// A value read at scrape time from a component that keeps its own count (the budget, the
/// sampling proxy): name, Prometheus type (`gauge` or `counter`), value.
pub type Reading = (&'static str, &'static str, f64);

/// Readings the agent collects at scrape time.
pub type GaugeFn = Arc<dyn Fn() -> Vec<Reading> + Send + Sync>;

/// The Prometheus text exposition of every counter plus the given gauges.
pub fn render_prometheus(gauges: &[Reading]) -> String {
    let x = &COUNTERS.xray;
    let mut out = String::with_capacity(4096);
    let plain = [
        (
            "cloudtail_xray_segments_received_total",
            "Datagrams received on the X-Ray UDP port.",
            x.received.get(),
        ),
        (
            "cloudtail_xray_segments_sent_total",
            "Documents accepted by X-Ray.",
            x.sent.get(),
        ),
        (
            "cloudtail_xray_segments_spillover_total",
            "Documents dropped because the memory budget was full.",
            x.spillover.get(),
        ),
        (
            "cloudtail_xray_kernel_drops_total",
            "Datagrams dropped by the kernel before they were read.",
            x.kernel_drops.get(),
        ),
        (
            "cloudtail_xray_segments_expired_total",
            "Documents given up after retrying too long or at shutdown.",
            x.expired.get(),
        ),
        (
            "cloudtail_xray_put_calls_total",
            "PutTraceSegments calls, retries included.",
            x.put_calls.get(),
        ),
        (
            "cloudtail_xray_retries_total",
            "PutTraceSegments calls retried.",
            x.retries.get(),
        ),
    ];
    for (name, help, value) in plain {
        write_metric(&mut out, name, help, "counter", &[("", value as f64)]);
    }
    logs::render(&mut out);
    render_file_source(&mut out);
    let rejected: Vec<(String, f64)> = RejectReason::ALL
        .iter()
        .map(|r| {
            (
                format!("reason=\"{}\"", r.label()),
                x.rejected(*r).get() as f64,
            )
        })
        .collect();
    write_labeled(
        &mut out,
        "cloudtail_xray_segments_rejected_total",
        "Documents rejected, by reason.",
        &rejected,
    );
    let backend = [
        ("timeout", BackendError::Timeout),
        ("connection_refused", BackendError::ConnectionRefused),
        ("unknown_host", BackendError::UnknownHost),
        ("http_4xx", BackendError::Http4xx),
        ("http_5xx", BackendError::Http5xx),
        ("other", BackendError::Other),
    ]
    .map(|(label, e)| (format!("kind=\"{label}\""), x.backend(e).get() as f64));
    write_labeled(
        &mut out,
        "cloudtail_backend_errors_total",
        "Failed AWS calls, by kind.",
        &backend,
    );
    metrics::render(&mut out);
    render_readings(&mut out, gauges);
    out
}

/// Readings in order; a name may carry labels (`name{pipeline="logs"}`), and readings of one
/// name must be adjacent so that its `# TYPE` line is written once.
fn render_readings(out: &mut String, readings: &[Reading]) {
    let mut last = "";
    for (series, kind, value) in readings {
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (*series, ""),
        };
        if name != last {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            last = name;
        }
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The file source's counters and its `files_watched` gauge.
fn render_file_source(out: &mut String) {
    let f = &COUNTERS.file_source;
    let counters = [
        (
            "cloudtail_logs_lines_read_total",
            "Lines read from log files.",
            &f.lines_read,
        ),
        (
            "cloudtail_logs_events_filtered_total",
            "Events not shipped because of include_lines/exclude_lines.",
            &f.events_filtered,
        ),
        (
            "cloudtail_logs_metric_filter_matches_total",
            "Matches counted by local metric filters.",
            &f.metric_filter_matches,
        ),
        (
            "cloudtail_logs_events_truncated_total",
            "Events cut to the PutLogEvents per-event limit.",
            &f.events_truncated,
        ),
        (
            "cloudtail_logs_invalid_utf8_total",
            "Lines with invalid text, shipped with U+FFFD.",
            &f.invalid_utf8,
        ),
        (
            "cloudtail_logs_timestamp_unparsed_total",
            "Events whose timestamp could not be read (read time used).",
            &f.timestamp_unparsed,
        ),
    ];
    for (name, help, counter) in counters {
        write_metric(out, name, help, "counter", &[("", counter.get() as f64)]);
    }
    write_metric(
        out,
        "cloudtail_logs_files_watched",
        "Log files being tailed now.",
        "gauge",
        &[("", f.files_watched.get() as f64)],
    );
}

pub(crate) fn write_metric(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    values: &[(&str, f64)],
) {
    if !help.is_empty() {
        let _ = writeln!(out, "# HELP {name} {help}");
    }
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in values {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

pub(crate) fn write_labeled(out: &mut String, name: &str, help: &str, values: &[(String, f64)]) {
    let borrowed: Vec<(&str, f64)> = values.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    write_metric(out, name, help, "counter", &borrowed);
}

/// Set once every source is listening and every pipeline runs. Until then `/healthz` answers
/// 503: a supervisor or a client that waits for it must not send to a port not yet bound.
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the agent started: `/healthz` answers 200 from now on.
pub fn mark_started() {
    STARTED.store(true, std::sync::atomic::Ordering::Release);
}

/// Serves `/metrics` and `/healthz` (503 until [`mark_started`]) until `token` is cancelled.
pub async fn serve(listener: TcpListener, gauges: GaugeFn, token: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "Telemetry server could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let gauges = Arc::clone(&gauges);
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, Arc::clone(&gauges)));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = conn.await {
                tracing::debug!(%error, "Telemetry connection ended with an error.");
            }
        });
    }
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    gauges: GaugeFn,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" if STARTED.load(std::sync::atomic::Ordering::Acquire) => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".to_string(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render_prometheus(&gauges()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// Logs one summary line a minute at info, instead of a line per batch.
pub async fn log_summaries(every: Duration, token: CancellationToken) {
    let mut last = Snapshot::take();
    let mut last_metrics = metrics::MetricsSnapshot::take();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Snapshot::take();
        if now != last {
            tracing::info!(
                received = now.received - last.received,
                sent = now.sent - last.sent,
                rejected = now.rejected - last.rejected,
                spillover = now.spillover - last.spillover,
                kernel_drops = now.kernel_drops - last.kernel_drops,
                "Traces in the last interval."
            );
        }
        last = now;
        let metrics_now = metrics::MetricsSnapshot::take();
        metrics_now.log_since(&last_metrics);
        last_metrics = metrics_now;
    }
}

/// The traces counters at one moment, for deltas (summary lines, telemetry records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Datagrams received.
    pub received: u64,
    /// Documents sent.
    pub sent: u64,
    /// Documents rejected.
    pub rejected: u64,
    /// Documents dropped for lack of memory.
    pub spillover: u64,
    /// Datagrams dropped by the kernel.
    pub kernel_drops: u64,
    /// Backend errors by category, in [`BackendError`] order.
    pub backend: [u64; 6],
}

impl Snapshot {
    /// Reads the counters now.
    pub fn take() -> Self {
        let x = &COUNTERS.xray;
        Snapshot {
            received: x.received.get(),
            sent: x.sent.get(),
            rejected: x.rejected_total(),
            spillover: x.spillover.get(),
            kernel_drops: x.kernel_drops.get(),
            backend: std::array::from_fn(|i| x.backend[i].get()),
        }
    }
}

/// Parses an address for the `status` command's client side.
pub fn metrics_url(address: SocketAddr) -> String {
    format!("http://{address}/metrics")
}

#[cfg(test)]
mod tests {
    #[test]
    fn labeled_readings_share_one_type_line() {
        let readings = [
            ("cloudtail_x{pipeline=\"traces\"}", "gauge", 1.0),
            ("cloudtail_x{pipeline=\"logs\"}", "gauge", 2.0),
            ("cloudtail_y", "counter", 3.0),
        ];
        let text = super::render_prometheus(&readings);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        assert_eq!(
            tail,
            [
                "cloudtail_y 3",
                "# TYPE cloudtail_y counter",
                "cloudtail_x{pipeline=\"logs\"} 2",
                "cloudtail_x{pipeline=\"traces\"} 1",
                "# TYPE cloudtail_x gauge",
            ]
        );
    }
}
