//! Sends batches of X-Ray documents with `PutTraceSegments`, retrying what can succeed later.
//!
//! A batch is retried with the shared backoff while it is younger than `retry_max_duration`
//! (its documents keep holding budget meanwhile, so a long outage fills the budget and the
//! source starts counting spillover — bounded memory, counted loss). The X-Ray daemon instead
//! drops a batch after one failed retry. Documents X-Ray lists as unprocessed are counted as
//! rejected and logged with their trace id, at most one line per [`UNPROCESSED_LOG_EVERY`].
//! This sink never drops a batch without counting every document in it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::body::put_trace_segments_body;
use super::transport::{Transport, Unprocessed};
use crate::pipeline::retry::{Backoff, Retry};
use crate::pipeline::{Segment, Sink};
use crate::sinks::classify::Verdict;
use crate::telemetry::{self, RejectReason, COUNTERS};

/// At most one log line about unprocessed documents this often (the rest are counted).
pub const UNPROCESSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// The `PutTraceSegments` sink.
#[derive(Clone)]
pub struct XraySink {
    transport: Arc<Transport>,
    backoff: Backoff,
    retry_max_duration: Duration,
    /// Cancelled when the shutdown deadline passes: retries stop, what is left is counted.
    abort: CancellationToken,
}

impl XraySink {
    /// A sink over `transport`; `abort` ends retries at the shutdown deadline.
    pub fn new(
        transport: Arc<Transport>,
        retry_max_duration: Duration,
        abort: CancellationToken,
    ) -> Self {
        XraySink {
            transport,
            backoff: Backoff::default(),
            retry_max_duration,
            abort,
        }
    }

    /// One `PutTraceSegments` attempt with a body written by [`put_trace_segments_body`],
    /// shared (not copied) by every attempt of a batch.
    async fn put(&self, body: &Bytes) -> Result<Vec<Unprocessed>, Verdict> {
        COUNTERS.xray.put_calls.inc();
        self.transport.put(body).await
    }

    /// Waits before the next attempt; false when the shutdown deadline came first.
    async fn wait(&self, attempt: u32) -> bool {
        tokio::select! {
            _ = self.abort.cancelled() => false,
            _ = tokio::time::sleep(self.backoff.delay(attempt)) => true,
        }
    }
}

impl Sink<Segment> for XraySink {
    async fn send(&self, batch: Vec<Segment>) {
        let count = batch.len() as u64;
        let body = put_trace_segments_body(batch.iter().map(|s| s.document.as_str()));
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let result = tokio::select! {
                _ = self.abort.cancelled() => {
                    return give_up(count, "shutdown deadline passed");
                }
                result = self.put(&body) => result,
            };
            let verdict = match result {
                Ok(unprocessed) => return delivered(&batch, &unprocessed),
                Err(verdict) => verdict,
            };
            telemetry::backend_error(verdict.kind);
            if verdict.retry == Retry::No {
                tracing::warn!(documents = count, error = %verdict.detail, "X-Ray refused a batch.");
                return telemetry::segment_rejected(RejectReason::Refused, count);
            }
            if started.elapsed() >= self.retry_max_duration {
                return give_up(count, &verdict.detail);
            }
            tracing::debug!(attempt, error = %verdict.detail, "PutTraceSegments failed; retrying.");
            COUNTERS.xray.retries.inc();
            if !self.wait(attempt).await {
                return give_up(count, "shutdown deadline passed");
            }
            attempt = attempt.saturating_add(1);
        }
    }
}

fn delivered(batch: &[Segment], unprocessed: &[Unprocessed]) {
    let rejected = unprocessed.len() as u64;
    COUNTERS
        .xray
        .sent
        .add((batch.len() as u64).saturating_sub(rejected));
    if rejected > 0 {
        telemetry::segment_rejected(RejectReason::Unprocessed, rejected);
        log_unprocessed(batch, unprocessed);
    }
}

fn give_up(count: u64, why: &str) {
    COUNTERS.xray.expired.add(count);
    tracing::warn!(
        documents = count,
        error = why,
        "Gave up sending X-Ray documents."
    );
}

static LAST_UNPROCESSED_LOG: AtomicU64 = AtomicU64::new(0);

/// Logs the first unprocessed document with its trace id, rate-limited.
fn log_unprocessed(batch: &[Segment], unprocessed: &[Unprocessed]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let last = LAST_UNPROCESSED_LOG.load(Ordering::Relaxed);
    if now < last.saturating_add(UNPROCESSED_LOG_EVERY.as_secs())
        || LAST_UNPROCESSED_LOG
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let Some(first) = unprocessed.first() else {
        return;
    };
    let id = first.id.as_deref().unwrap_or("");
    let trace_id = trace_id_of(batch, id).unwrap_or_default();
    tracing::warn!(
        id,
        trace_id,
        code = first.error_code.as_deref().unwrap_or(""),
        message = first.message.as_deref().unwrap_or(""),
        unprocessed = unprocessed.len(),
        "X-Ray did not process some documents."
    );
}

/// The trace id of the document with segment id `id` in the batch (parsed only on this path).
fn trace_id_of(batch: &[Segment], id: &str) -> Option<String> {
    batch.iter().find_map(|segment| {
        let doc: serde_json::Value = serde_json::from_str(&segment.document).ok()?;
        let docs = match doc {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        docs.into_iter().find_map(|d| {
            (d.get("id")?.as_str()? == id).then(|| d.get("trace_id")?.as_str().map(String::from))?
        })
    })
}
