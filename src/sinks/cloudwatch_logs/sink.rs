//! Sends closed batches of log events with `PutLogEvents` and resolves their acks.
//!
//! A batch is cut into API-valid requests (`batch.rs`); each request waits for one of the
//! `concurrency` slots of its stream, then is sent until it is delivered or the shutdown
//! deadline passes. No sequence tokens, no `DescribeLogStreams` on this path. After a failure:
//! a missing group or stream is created (`retention.rs`) and the request retried; throttling,
//! outages and credential errors are retried with full-jitter backoff without limit (the file
//! is the buffer); a request refused as a whole is bisected down to single events, and a single
//! event still refused is counted as invalid. Events CloudWatch Logs reports in
//! `rejectedLogEventsInfo` are counted by reason. Every event ends in exactly one of three ways:
//! accepted (ack resolved), rejected for good (counted, ack resolved), or still pending at the
//! shutdown deadline (ack dropped unresolved, so the file is read again from there on restart).
//! This sink never resolves the ack of an event AWS has not taken or refused for good.
//!
//! A call holds a copy of its events beyond the budget's count, the JSON body (`body.rs`):
//! the messages, the JSON around each event and the escapes, under twice the request's API
//! size but for text made mostly of bytes that need escaping. That copy draws from
//! a byte allowance of their own (a sixteenth of the memory budget, at least one full request),
//! so fifty streams retrying at once cannot double the agent's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
use aws_sdk_cloudwatchlogs::Client;
use aws_smithy_types::body::SdkBody;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::batch::{halves, plan};
use super::body::{body_capacity, put_log_events_body};
use super::buffers::BodyBuffers;
use super::retention::ensure_stream;
use super::retry::{judge, Action, Failure};
use crate::pipeline::ack::Ack;
use crate::pipeline::retry::Backoff;
use crate::pipeline::{Destination, LogEvent, Sink};
use crate::telemetry::{self, LogsRejectReason};

/// The header that marks events as Embedded Metric Format documents.
pub const EMF_HEADER: (&str, &str) = ("x-amzn-logs-format", "json/emf");

/// Calls in flight per stream unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The largest request's API size (`PutLogEvents`' limit).
const MAX_REQUEST_BYTES: usize = 1_048_576;

/// The request-copy allowance for a memory budget of `budget_bytes`: a sixteenth of it, and
/// always room for one full request (whose body is counted at twice its size).
pub fn request_memory_for_budget(budget_bytes: usize) -> usize {
    (budget_bytes / 16).max(2 * MAX_REQUEST_BYTES)
}

/// The `PutLogEvents` sink. Cheap to clone; clones share the per-stream slots.
#[derive(Clone)]
pub struct CloudWatchLogsSink {
    inner: Arc<Inner>,
    /// Bytes of request copies in flight, see the module doc; unbounded unless set.
    copies: Arc<Semaphore>,
    /// The allowance's size (a call never asks for more than all of it).
    copies_limit: usize,
}

struct Inner {
    client: Client,
    backoff: Backoff,
    concurrency: usize,
    /// One semaphore per stream that has requests waiting or in flight.
    streams: Mutex<HashMap<Arc<Destination>, Arc<Semaphore>>>,
    /// Cancelled at the shutdown deadline: retries stop, pending acks are dropped unresolved.
    abort: CancellationToken,
    /// Bodies of finished calls, written into again by the next ones.
    bodies: BodyBuffers,
}

/// How one request ended.
enum Outcome {
    /// Accepted or rejected for good; acks resolved.
    Done,
    /// Refused as a whole: bisect it (or count the single event as invalid).
    Refused(Vec<LogEvent>, Failure),
    /// The shutdown deadline passed first.
    Aborted(Vec<LogEvent>),
}

impl CloudWatchLogsSink {
    /// A sink over `client` with up to `concurrency` calls in flight per stream (at least 1);
    /// `abort` ends retries at the shutdown deadline.
    pub fn new(client: Client, concurrency: usize, abort: CancellationToken) -> Self {
        Self::with_backoff(client, concurrency, abort, Backoff::default())
    }

    /// As [`CloudWatchLogsSink::new`], with a backoff of one's own (tests use a short one).
    pub fn with_backoff(
        client: Client,
        concurrency: usize,
        abort: CancellationToken,
        backoff: Backoff,
    ) -> Self {
        CloudWatchLogsSink {
            inner: Arc::new(Inner {
                client,
                backoff,
                concurrency: concurrency.max(1),
                streams: Mutex::new(HashMap::new()),
                abort,
                bodies: BodyBuffers::new(concurrency.max(1)),
            }),
            copies: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            copies_limit: Semaphore::MAX_PERMITS,
        }
    }

    /// Caps the bytes of request copies in flight at `bytes` (see
    /// [`request_memory_for_budget`]).
    /// The body buffers kept between calls come out of the same allowance: one per full
    /// request it holds (at least one, at most the calls a stream has in flight), so a small
    /// budget keeps few.
    pub fn with_request_memory(mut self, bytes: usize) -> Self {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        self.copies = Arc::new(Semaphore::new(bytes));
        self.copies_limit = bytes;
        let keep = (bytes / (2 * MAX_REQUEST_BYTES)).clamp(1, self.inner.concurrency);
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.bodies = BodyBuffers::new(keep);
        }
        self
    }

    /// Waits until the copies of `request` fit in the allowance; they are released with the
    /// returned permit, after the call.
    async fn reserve_copies(&self, request: &[LogEvent]) -> Option<SemaphorePermit<'_>> {
        let bytes = copy_bytes(request).min(self.copies_limit);
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        // The semaphore is never closed, so this only fails in theory; sending anyway is safe.
        self.copies.acquire_many(bytes).await.ok()
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<Arc<Destination>, Arc<Semaphore>>> {
        // The map only holds semaphores; a panic elsewhere cannot leave it half-updated.
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self, destination: &Arc<Destination>) -> Arc<Semaphore> {
        let concurrency = self.inner.concurrency;
        let mut streams = self.streams();
        let slots = streams
            .entry(Arc::clone(destination))
            .or_insert_with(|| Arc::new(Semaphore::new(concurrency)));
        Arc::clone(slots)
    }

    /// Forgets a stream's semaphore once no batch of it is in this sink.
    fn release(&self, destination: &Arc<Destination>, slots: Arc<Semaphore>) {
        let mut streams = self.streams();
        drop(slots);
        if streams
            .get(destination)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            streams.remove(destination);
        }
    }

    /// All events of one destination: plan, send each request, bisect refusals.
    async fn send_to(&self, destination: Arc<Destination>, events: Vec<LogEvent>) {
        let plan = plan(events);
        reject(plan.invalid, LogsRejectReason::Invalid, &destination);
        let slots = self.slots(&destination);
        let mut work: Vec<Vec<LogEvent>> = plan.requests;
        work.reverse();
        while let Some(request) = work.pop() {
            match self.deliver(&destination, &slots, request).await {
                Outcome::Done => {}
                Outcome::Refused(request, failure) if request.len() > 1 => {
                    tracing::debug!(
                        events = request.len(),
                        error = %failure.verdict.detail,
                        "PutLogEvents refused a request; bisecting."
                    );
                    let (first, second) = halves(request);
                    work.push(second);
                    work.push(first);
                }
                Outcome::Refused(request, failure) => {
                    tracing::debug!(error = %failure.verdict.detail, "PutLogEvents refused an event.");
                    reject(request, LogsRejectReason::Invalid, &destination);
                }
                Outcome::Aborted(request) => {
                    let left = request.len() + work.iter().map(Vec::len).sum::<usize>();
                    telemetry::logs_abandoned(&destination.group, left as u64);
                    break;
                }
            }
        }
        self.release(&destination, slots);
    }

    /// Sends one request until it is done, refused or aborted.
    async fn deliver(
        &self,
        destination: &Destination,
        slots: &Semaphore,
        request: Vec<LogEvent>,
    ) -> Outcome {
        let abort = &self.inner.abort;
        let mut attempt = 0u32;
        let mut created = false;
        loop {
            // Biased: a call that already finished is never thrown away for the deadline.
            let result = tokio::select! {
                biased;
                result = async {
                    let _slot = slots.acquire().await;
                    let _copies = self.reserve_copies(&request).await;
                    self.put(destination, &request).await
                } => result,
                _ = abort.cancelled() => return Outcome::Aborted(request),
            };
            let failure = match result {
                Ok(rejected) => {
                    accept(request, rejected.as_ref(), destination);
                    return Outcome::Done;
                }
                Err(failure) => failure,
            };
            let failure = match failure.action {
                Action::AlreadyDone => {
                    accept(request, None, destination);
                    return Outcome::Done;
                }
                Action::Refused => return Outcome::Refused(request, failure),
                Action::Create => {
                    let setup = tokio::select! {
                        _ = abort.cancelled() => return Outcome::Aborted(request),
                        setup = ensure_stream(&self.inner.client, destination) => setup,
                    };
                    match setup {
                        // Right after creating, retry at once; should the stream still be
                        // missing (eventual consistency), back off from then on.
                        Ok(()) if !created => {
                            created = true;
                            continue;
                        }
                        Ok(()) => failure,
                        Err(setup) if setup.action == Action::Refused => {
                            tracing::error!(
                                group = %destination.group,
                                stream = %destination.stream,
                                error = %setup.verdict.detail,
                                "Could not create the log group or stream; its events are skipped."
                            );
                            reject(request, LogsRejectReason::Invalid, destination);
                            return Outcome::Done;
                        }
                        Err(setup) => setup,
                    }
                }
                Action::Credentials | Action::Retry => failure,
            };
            if failure.action == Action::Credentials {
                telemetry::logs_credentials_error(&destination.group, &failure.verdict.detail);
            } else {
                telemetry::logs_retry(attempt, &destination.group, &failure.verdict.detail);
            }
            tokio::select! {
                _ = abort.cancelled() => return Outcome::Aborted(request),
                _ = tokio::time::sleep(self.inner.backoff.delay(attempt)) => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// One `PutLogEvents` call with a body written by [`put_log_events_body`]. The SDK still
    /// resolves the endpoint, signs, sends and parses the answer; the request's body is
    /// swapped for ours before signing, so the messages are neither copied into the SDK's
    /// input nor escaped by it. Each attempt writes the body afresh rather than holding it
    /// through a backoff, so a stream waiting out throttling holds no request memory.
    async fn put(
        &self,
        destination: &Destination,
        request: &[LogEvent],
    ) -> Result<Option<RejectedLogEventsInfo>, Failure> {
        let events = || request.iter().map(|e| (e.timestamp_ms, e.message.as_str()));
        let group = &destination.group;
        let stream = &destination.stream;
        let buffer = self
            .inner
            .bodies
            .take(body_capacity(group, stream, events()));
        let body = put_log_events_body(buffer, group, stream, events());
        let sent = body.clone();
        telemetry::logs_put_call();
        let emf = destination.emf;
        let call = self
            .inner
            .client
            .put_log_events()
            .log_group_name(&destination.group)
            .log_stream_name(&destination.stream)
            .set_log_events(Some(Vec::new()))
            .customize()
            .mutate_request(move |http| {
                let headers = http.headers_mut();
                if emf {
                    headers.insert(EMF_HEADER.0, EMF_HEADER.1);
                }
                headers.insert("content-length", body.len().to_string());
                *http.body_mut() = SdkBody::from(body.clone());
            })
            .send();
        let result = call.await;
        // The SDK's copies of the body are gone with the finished call.
        self.inner.bodies.give_back(sent);
        match result {
            Ok(output) => Ok(output.rejected_log_events_info),
            Err(error) => Err(judge(&error)),
        }
    }
}

impl Sink<LogEvent> for CloudWatchLogsSink {
    async fn send(&self, batch: Vec<LogEvent>) {
        for (destination, events) in by_destination(batch) {
            self.send_to(destination, events).await;
        }
    }
}

/// Splits a batch by destination (the logs pipeline only ever hands over one destination per
/// batch; this keeps the sink correct for any caller).
fn by_destination(batch: Vec<LogEvent>) -> Vec<(Arc<Destination>, Vec<LogEvent>)> {
    let Some(first) = batch.first().map(|e| Arc::clone(&e.destination)) else {
        return Vec::new();
    };
    if batch.iter().all(|e| e.destination == first) {
        return vec![(first, batch)];
    }
    let mut groups: Vec<(Arc<Destination>, Vec<LogEvent>)> = Vec::new();
    for event in batch {
        match groups.iter_mut().find(|(d, _)| *d == event.destination) {
            Some((_, events)) => events.push(event),
            None => groups.push((Arc::clone(&event.destination), vec![event])),
        }
    }
    groups
}

/// The bytes a call on `request` holds beyond the events themselves: its JSON body, with room
/// for the JSON around each event, escapes and the buffer's growth.
fn copy_bytes(request: &[LogEvent]) -> usize {
    2 * request.iter().map(LogEvent::api_size).sum::<usize>()
}

/// The request was taken: counts accepted and rejected events, resolves every ack.
fn accept(request: Vec<LogEvent>, rejected: Option<&RejectedLogEventsInfo>, to: &Destination) {
    let reasons = rejection_reasons(request.len(), rejected);
    let mut counts = [0u64; 4];
    let (mut sent, mut bytes) = (0u64, 0u64);
    for (event, reason) in request.iter().zip(reasons) {
        match reason {
            Some(reason) => counts[reason as usize] += 1,
            None => {
                sent += 1;
                bytes += event.api_size() as u64;
            }
        }
    }
    Ack::done_all(request.into_iter().map(|event| event.ack));
    telemetry::logs_sent(sent, bytes);
    for (reason, count) in [
        LogsRejectReason::TooNew,
        LogsRejectReason::TooOld,
        LogsRejectReason::Expired,
        LogsRejectReason::Invalid,
    ]
    .into_iter()
    .zip(counts)
    {
        if count > 0 {
            telemetry::logs_rejected(reason, count, &to.group, &to.stream);
        }
    }
}

/// Events CloudWatch Logs will never take: counted, acks resolved.
fn reject(events: Vec<LogEvent>, reason: LogsRejectReason, to: &Destination) {
    if events.is_empty() {
        return;
    }
    telemetry::logs_rejected(reason, events.len() as u64, &to.group, &to.stream);
    Ack::done_all(events.into_iter().map(|event| event.ack));
}

/// For each of `len` events of a request, why it was rejected (`None`: accepted).
/// `tooNewLogEventStartIndex` is the first too-new event; the two end indices are the last
/// too-old and the last expired event. An event both expired and too old counts as expired.
pub fn rejection_reasons(
    len: usize,
    info: Option<&RejectedLogEventsInfo>,
) -> Vec<Option<LogsRejectReason>> {
    let index = |i: Option<i32>| i.and_then(|i| usize::try_from(i).ok());
    let (too_new_from, too_old_to, expired_to) = match info {
        Some(info) => (
            index(info.too_new_log_event_start_index),
            index(info.too_old_log_event_end_index),
            index(info.expired_log_event_end_index),
        ),
        None => (None, None, None),
    };
    (0..len)
        .map(|i| {
            if too_new_from.is_some_and(|from| i >= from) {
                Some(LogsRejectReason::TooNew)
            } else if expired_to.is_some_and(|to| i <= to) {
                Some(LogsRejectReason::Expired)
            } else if too_old_to.is_some_and(|to| i <= to) {
                Some(LogsRejectReason::TooOld)
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogsRejectReason::*;

    #[test]
    fn request_memory_is_a_sixteenth_of_the_budget_but_fits_a_full_request() {
        assert_eq!(request_memory_for_budget(256 << 20), 16 << 20);
        assert_eq!(request_memory_for_budget(8 << 20), 2 * MAX_REQUEST_BYTES);
    }

    #[test]
    fn rejection_indices_map_to_reasons() {
        let info = RejectedLogEventsInfo::builder()
            .too_old_log_event_end_index(2)
            .expired_log_event_end_index(0)
            .too_new_log_event_start_index(5)
            .build();
        assert_eq!(
            rejection_reasons(7, Some(&info)),
            vec![
                Some(Expired),
                Some(TooOld),
                Some(TooOld),
                None,
                None,
                Some(TooNew),
                Some(TooNew)
            ]
        );
        assert_eq!(rejection_reasons(2, None), vec![None, None]);
        let out_of_range = RejectedLogEventsInfo::builder()
            .too_new_log_event_start_index(-1)
            .too_old_log_event_end_index(99)
            .build();
        assert_eq!(
            rejection_reasons(2, Some(&out_of_range)),
            vec![Some(TooOld), Some(TooOld)]
        );
    }
}
