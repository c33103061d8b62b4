//! The X-Ray daemon's UDP protocol: one datagram is one document, `header\nbody`.
//!
//! Acceptance follows the daemon: the header must be a JSON object whose `format` is `json` (any
//! case) and whose `version` is the integer 1; the body is forwarded byte for byte. On top of
//! that, a body X-Ray could never accept is rejected here, where it is cheap and can be counted
//! by reason: it must be UTF-8 (the API takes text), a JSON object or array, and every
//! top-level document must carry a 16-hex-digit `id` and a `1-xxxxxxxx-xxx…` `trace_id`.
//! This source never blocks on AWS: when the budget is full the document goes to the disk
//! spill when there is one, else it is dropped and counted as spillover, as the daemon does.

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pipeline::budget::Budget;
use crate::pipeline::spill::Spill;
use crate::pipeline::{Segment, SharedText};
use crate::sources::udp::{self, Receiver, BATCH};
use crate::telemetry::{self, RejectReason, COUNTERS};

pub mod pacer;
mod scan;

use pacer::{AfterDrain, Mode, Pacer};

/// The daemon's protocol header.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    format: Cow<'a, str>,
    version: i64,
}

/// Splits a datagram into header and body and checks both; returns the body as text.
pub fn parse_datagram(datagram: &[u8]) -> Result<&str, RejectReason> {
    let newline = datagram
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(RejectReason::NoHeader)?;
    let (header, body) = (&datagram[..newline], &datagram[newline + 1..]);
    check_header(header)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RejectReason::EmptyBody);
    }
    let body = std::str::from_utf8(body).map_err(|_| RejectReason::NotUtf8)?;
    scan::check_body(body)?;
    Ok(body)
}

/// The header the X-Ray SDKs write, accepted without parsing it.
const SDK_HEADER: &[u8] = br#"{"format":"json","version":1}"#;

fn check_header(header: &[u8]) -> Result<(), RejectReason> {
    if header == SDK_HEADER {
        return Ok(());
    }
    let header: Header = serde_json::from_slice(header).map_err(|_| RejectReason::BadHeader)?;
    if header.format.eq_ignore_ascii_case("json") && header.version == 1 {
        Ok(())
    } else {
        Err(RejectReason::BadHeader)
    }
}

fn is_hex(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_hexdigit)
}

/// A segment id: 16 hex digits.
pub fn is_segment_id(s: &str) -> bool {
    s.len() == 16 && is_hex(s.as_bytes())
}

/// A trace id: `1-` + 8 hex digits (epoch seconds) + `-` + 24 hex digits.
pub fn is_trace_id(s: &str) -> bool {
    let s = s.as_bytes();
    s.len() == 35 && s.starts_with(b"1-") && s[10] == b'-' && is_hex(&s[2..10]) && is_hex(&s[11..])
}

/// Full reads in a row within one paced drain before the drain hands off what it gathered and
/// lets the batcher and senders run: a rate spike is read at full speed until the pacer
/// switches to reading on readiness, without starving the rest of the pipeline meanwhile.
const DRAIN_READS_PER_YIELD: usize = 4;

/// The socket, watched by the runtime all the time (reading on readiness) or not (paced).
enum Socket {
    Watched(UdpSocket),
    Plain(std::net::UdpSocket),
}

/// Reads datagrams until `token` is cancelled and hands the accepted documents to `tx` in
/// groups, so the batcher wakes once per group, not per document: below the pacer's rate
/// threshold in paced drains (one group per drain), above it on readiness as a plain reader
/// (one group per `recvmmsg`). See [`pacer`] for when which. Documents that find no memory go
/// to `spill` when there is one.
pub async fn run(
    socket: UdpSocket,
    budget: Budget,
    tx: mpsc::Sender<Vec<Segment>>,
    spill: Option<std::sync::Arc<Spill>>,
    token: CancellationToken,
) {
    let mut source = Source {
        receiver: Receiver::new(),
        pacer: Pacer::new(udp::receive_buffer_bytes(&socket), Instant::now()),
        pending: Vec::with_capacity(BATCH * DRAIN_READS_PER_YIELD),
        budget,
        tx,
        spill,
    };
    let mut socket = match source.pacer.mode() {
        Mode::Readiness => Socket::Watched(socket),
        Mode::Paced => match unwatch(socket) {
            Some(plain) => plain,
            None => return,
        },
    };
    let mut next = AfterDrain::Idle;
    loop {
        socket = match socket {
            Socket::Plain(plain) => {
                let Some(after) = source.paced_drain(&plain, next, &token).await else {
                    return;
                };
                next = after;
                if after != AfterDrain::Readiness {
                    Socket::Plain(plain)
                } else {
                    match watch(plain) {
                        Some(watched) => watched,
                        None => return,
                    }
                }
            }
            Socket::Watched(watched) => {
                let received = tokio::select! {
                    _ = token.cancelled() => return,
                    received = source.receiver.recv(&watched) => received,
                };
                source.read(received);
                if !source.pacer.after_read(Instant::now()) {
                    Socket::Watched(watched)
                } else {
                    next = AfterDrain::Pause(source.pacer.longest_pause());
                    match unwatch(watched) {
                        Some(plain) => plain,
                        None => return,
                    }
                }
            }
        };
    }
}

/// The socket under the runtime's watch, to read on readiness.
fn watch(socket: std::net::UdpSocket) -> Option<Socket> {
    match UdpSocket::from_std(socket) {
        Ok(watched) => Some(Socket::Watched(watched)),
        Err(error) => {
            tracing::error!(%error, "Cannot watch the X-Ray UDP socket; the source stops.");
            None
        }
    }
}

/// The socket without the runtime's watch, so arrivals during a pause wake nobody.
fn unwatch(socket: UdpSocket) -> Option<Socket> {
    match socket.into_std() {
        Ok(plain) => Some(Socket::Plain(plain)),
        Err(error) => {
            tracing::error!(%error, "Cannot read the X-Ray UDP socket; the source stops.");
            None
        }
    }
}

/// The reading side of the source: buffers, pacing, and where documents go.
struct Source {
    receiver: Receiver,
    pacer: Pacer,
    pending: Vec<Segment>,
    budget: Budget,
    tx: mpsc::Sender<Vec<Segment>>,
    spill: Option<std::sync::Arc<Spill>>,
}

impl Source {
    /// One read on readiness: its documents go to the batcher at once.
    fn read(&mut self, received: std::io::Result<usize>) {
        match received {
            Ok(count) => self.take(count),
            Err(error) => tracing::warn!(%error, "Reading the X-Ray UDP socket failed."),
        }
        self.hand_off();
    }

    /// Waits as `next` says, then reads until the socket is empty and hands what it read to
    /// the batcher; returns what the pacer says next, `None` once `token` is cancelled.
    async fn paced_drain(
        &mut self,
        socket: &std::net::UdpSocket,
        next: AfterDrain,
        token: &CancellationToken,
    ) -> Option<AfterDrain> {
        match next {
            AfterDrain::Pause(pause) => tokio::select! {
                _ = token.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            },
            AfterDrain::Idle | AfterDrain::Readiness => tokio::select! {
                _ = token.cancelled() => return None,
                readable = udp::readable(socket) => if let Err(error) = readable {
                    tracing::warn!(%error, "Waiting on the X-Ray UDP socket failed.");
                },
            },
        }
        let mut full_reads = 0;
        loop {
            match self.receiver.try_recv(socket) {
                Ok(count) => {
                    self.take(count);
                    if count < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Reading the X-Ray UDP socket failed.");
                    break;
                }
            }
            full_reads += 1;
            if full_reads % DRAIN_READS_PER_YIELD == 0 {
                self.hand_off();
                if self.pacer.during_drain(Instant::now()) {
                    return Some(AfterDrain::Readiness);
                }
                tokio::task::yield_now().await;
                if token.is_cancelled() {
                    return None;
                }
            }
        }
        self.hand_off();
        Some(self.pacer.after_drain(Instant::now()))
    }

    /// Counts and validates the `count` datagrams of the last read into `pending`.
    fn take(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        COUNTERS.xray.received.add(count as u64);
        tracing::trace!(count, "Datagrams received.");
        let mut bodies = [""; BATCH];
        let mut accepted = 0;
        let mut bytes = 0;
        for i in 0..count.min(BATCH) {
            let datagram = self.receiver.datagram(i);
            self.pacer.note(datagram.len());
            match parse_datagram(datagram) {
                Ok(body) => {
                    bodies[accepted] = body;
                    accepted += 1;
                    bytes += body.len();
                }
                Err(reason) => telemetry::segment_rejected(reason, 1),
            }
        }
        let spill = self.spill.as_deref();
        keep(
            &bodies[..accepted],
            bytes,
            &self.budget,
            spill,
            &mut self.pending,
        );
        COUNTERS
            .xray
            .kernel_drops
            .raise_to(self.receiver.kernel_drops);
    }

    fn hand_off(&mut self) {
        hand_off(&mut self.pending, &self.tx, self.spill.as_deref());
    }
}

/// Queues the gathered documents for the batcher; when it is full they go to the spill, or
/// are counted as spillover.
fn hand_off(pending: &mut Vec<Segment>, tx: &mpsc::Sender<Vec<Segment>>, spill: Option<&Spill>) {
    if pending.is_empty() {
        return;
    }
    let group = std::mem::replace(pending, Vec::with_capacity(BATCH));
    if let Err(full) = tx.try_send(group) {
        for segment in full.into_inner() {
            spill_or_drop(spill, &segment.document);
        }
    }
}

/// Queues the accepted documents of one read into `pending`: one copy of them all and one
/// budget charge, shared by their segments, so a read costs one allocation and one look at
/// the budget, not one per document (the copy lives until its last document is sent, when
/// the charge for all of them comes back). When the budget cannot take them all at once, or
/// documents wait on disk, each goes its own way as in [`admit`].
fn keep(
    bodies: &[&str],
    bytes: usize,
    budget: &Budget,
    spill: Option<&Spill>,
    pending: &mut Vec<Segment>,
) {
    if bodies.is_empty() {
        return;
    }
    let charge = if spill.is_some_and(Spill::is_backlogged) {
        None
    } else {
        budget.try_acquire_items(bodies.len(), bytes)
    };
    let Some(charge) = charge else {
        pending.extend(bodies.iter().filter_map(|body| admit(body, budget, spill)));
        return;
    };
    let mut text = String::with_capacity(bytes);
    for body in bodies {
        text.push_str(body);
    }
    let text = SharedText::from(text);
    let charge = charge.shared();
    let mut start = 0;
    for body in bodies {
        let end = start + body.len();
        // Always a document: the range is one of the bodies just copied.
        if let Some(document) = text.message(start..end) {
            pending.push(Segment {
                document,
                permit: charge.share(),
            });
        }
        start = end;
    }
}

/// Takes budget for one valid document, or spills it, or counts it as spillover.
fn admit(body: &str, budget: &Budget, spill: Option<&Spill>) -> Option<Segment> {
    // While documents wait on disk, new ones queue behind them, in order.
    let permit = match spill {
        Some(spill) if spill.is_backlogged() => None,
        _ => budget.try_acquire(body.len()),
    };
    let Some(permit) = permit else {
        spill_or_drop(spill, body);
        return None;
    };
    Some(Segment {
        document: body.into(),
        permit,
    })
}

/// A document that found no room in memory: to the disk spill if it takes it, else counted as
/// spillover.
fn spill_or_drop(spill: Option<&Spill>, body: &str) {
    if !spill.is_some_and(|spill| spill.append(body.as_bytes())) {
        COUNTERS.xray.spillover.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: &str = r#"{"name":"a","id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","start_time":1,"end_time":2}"#;

    fn datagram(header: &str, body: &str) -> Vec<u8> {
        format!("{header}\n{body}").into_bytes()
    }

    #[test]
    fn accepts_the_sdk_header_and_spacing_variants() {
        for header in [
            r#"{"format":"json","version":1}"#,
            r#"{"format": "json", "version": 1}"#,
            r#"{ "version":1, "format":"JSON", "extra": true }"#,
        ] {
            assert_eq!(
                parse_datagram(&datagram(header, SEGMENT)),
                Ok(SEGMENT),
                "{header}"
            );
        }
    }

    #[test]
    fn rejects_bad_headers() {
        let cases = [
            (
                r#"{"format":"json","version":"1"}"#,
                RejectReason::BadHeader,
            ),
            (r#"{"format":"json","version":2}"#, RejectReason::BadHeader),
            (r#"{"format":"xml","version":1}"#, RejectReason::BadHeader),
            (r#"{"version":1}"#, RejectReason::BadHeader),
            ("not json", RejectReason::BadHeader),
        ];
        for (header, reason) in cases {
            assert_eq!(
                parse_datagram(&datagram(header, SEGMENT)),
                Err(reason),
                "{header}"
            );
        }
        assert_eq!(
            parse_datagram(SEGMENT.as_bytes()),
            Err(RejectReason::NoHeader)
        );
    }

    #[test]
    fn rejects_bad_bodies() {
        let header = r#"{"format":"json","version":1}"#;
        assert_eq!(
            parse_datagram(&datagram(header, "")),
            Err(RejectReason::EmptyBody)
        );
        assert_eq!(
            parse_datagram(&datagram(header, " \n")),
            Err(RejectReason::EmptyBody)
        );
        assert_eq!(
            parse_datagram(&datagram(header, "[]")),
            Err(RejectReason::EmptyBody)
        );
        assert_eq!(
            parse_datagram(&datagram(header, "{\"id\":")),
            Err(RejectReason::NotJson)
        );
        assert_eq!(
            parse_datagram(&datagram(header, "42")),
            Err(RejectReason::NotJson)
        );
        assert_eq!(
            parse_datagram(&datagram(header, r#"{"id":"x","trace_id":"1-2-3"}"#)),
            Err(RejectReason::BadIds)
        );
        let mut invalid_utf8 = datagram(header, "{\"name\":\"");
        invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
        invalid_utf8.extend_from_slice(b"\"}");
        assert_eq!(parse_datagram(&invalid_utf8), Err(RejectReason::NotUtf8));
    }

    #[test]
    fn accepts_arrays_of_subsegments() {
        let header = r#"{"format":"json","version":1}"#;
        let body = format!("[{SEGMENT},{SEGMENT}]");
        assert_eq!(parse_datagram(&datagram(header, &body)), Ok(body.as_str()));
    }

    #[test]
    fn trace_and_segment_id_shapes() {
        assert!(is_trace_id("1-581cf771-a006649127e371903a2de979"));
        assert!(!is_trace_id("2-581cf771-a006649127e371903a2de979"));
        assert!(!is_trace_id("1-581cf771-a006649127e371903a2de97"));
        assert!(!is_trace_id("1-581cf771-a006649127e371903a2de979-1"));
        assert!(is_segment_id("70de5b6f19ff9a0a"));
        assert!(!is_segment_id("70de5b6f19ff9a0"));
        assert!(!is_segment_id("70de5b6f19ff9a0z"));
    }

    #[test]
    fn the_documents_of_a_read_share_one_copy_and_one_charge() {
        let budget = Budget::new(1 << 20);
        let bodies = [r#"{"id":"a"}"#, r#"{"id":"bb"}"#, r#"{"id":"ccc"}"#];
        let bytes: usize = bodies.iter().map(|b| b.len()).sum();
        let mut pending = Vec::new();
        keep(&bodies, bytes, &budget, None, &mut pending);
        let documents: Vec<&str> = pending.iter().map(|s| s.document.as_str()).collect();
        assert_eq!(documents, bodies);
        assert!(pending.iter().all(|s| s.document.is_shared()));
        let first = pending[0].document.as_ptr();
        assert_eq!(
            pending[2].document.as_ptr(),
            first.wrapping_add(bodies[0].len() + bodies[1].len()),
            "one copy, documents back to back"
        );
        let charged = budget.in_use_bytes();
        assert_eq!(
            charged,
            bytes + 3 * crate::pipeline::budget::ITEM_OVERHEAD_BYTES,
            "charged as if one by one"
        );
        let last = pending.pop();
        pending.clear();
        assert_eq!(budget.in_use_bytes(), charged, "the copy lives on");
        drop(last);
        assert_eq!(budget.in_use_bytes(), 0);
    }

    #[test]
    fn a_read_the_budget_cannot_take_whole_is_taken_document_by_document() {
        let body = "x".repeat(1000);
        let budget = Budget::new(2500);
        let bodies = [body.as_str(); 3];
        let spillover = COUNTERS.xray.spillover.get();
        let mut pending = Vec::new();
        keep(&bodies, 3000, &budget, None, &mut pending);
        assert_eq!(pending.len(), 2, "as many as fit");
        assert!(pending.iter().all(|s| !s.document.is_shared()));
        assert!(COUNTERS.xray.spillover.get() > spillover);
    }
}
