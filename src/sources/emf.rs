//! The EMF source: Embedded Metric Format documents on the CloudWatch agent's port, TCP and UDP.
//!
//! TCP clients keep a connection open and write one JSON document per line; UDP clients send
//! one or more lines per datagram. Each line is checked (`emf/parse.rs`) and routed by mode:
//! in `logs` mode a valid document becomes a [`LogEvent`] with `destination.emf = true` (group
//! and stream from `_aws.LogGroupName`/`LogStreamName`, else the configured ones; time from
//! `_aws.Timestamp`); in `metrics` mode its datums go to the metrics pipeline instead. JSON that
//! is not (valid) EMF is shipped as a plain log event (`emf = false`), and anything else is
//! dropped; every line is counted by result.
//!
//! Memory and backpressure: a TCP connection buffers at most one 1 MB line; a longer line (or
//! endless bytes without a newline) closes it. The lines of one read (or one `recvmmsg`) are
//! handed on together (`emf/handoff.rs`), so the pipeline wakes once per read. A TCP reader
//! `await`s budget and channel room, so a full budget stops reading the socket and the kernel
//! pushes back on the client: nothing accepted from it is dropped. UDP never waits: no budget
//! or a full channel means drop and count, or, with the disk spill on, write the event to the
//! spill (`emf/spilled.rs`) to be sent later. This source
//! never touches AWS and never blocks the accept loop on one slow connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{EmfConfig, EmfMode};
use crate::pipeline::budget::Budget;
use crate::pipeline::spill::Spill;
use crate::pipeline::{Destination, LogEvent, MetricDatum};
use crate::placeholders::{legal_log_group, legal_log_stream, Placeholders};
use crate::sources::udp::Receiver;
use crate::telemetry::{self, EmfResult};

pub mod extract;
pub mod framing;
mod handoff;
pub mod parse;
pub mod spilled;
mod typed;

use crate::pipeline::now_ms;
use framing::{LineBuffer, Next};
use handoff::Handoff;
use parse::{EmfDocument, Parsed, Rejected, Summary, MAX_DOCUMENT_BYTES};

/// TCP connections served at once by default; more wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// What the EMF source needs at run time.
#[derive(Debug, Clone)]
pub struct EmfSettings {
    /// Where valid documents go.
    pub mode: EmfMode,
    /// Log group for documents that name none, placeholders resolved and made legal.
    pub log_group: String,
    /// Log stream for documents that name none, likewise.
    pub log_stream: String,
    /// Longest line accepted (1 MB, the EMF limit).
    pub max_document_bytes: usize,
    /// TCP connections served at once.
    pub max_connections: usize,
}

impl EmfSettings {
    /// The settings of an `[emf]` table, with placeholders resolved.
    pub fn from_config(config: &EmfConfig, placeholders: &Placeholders) -> Self {
        EmfSettings {
            mode: config.mode,
            log_group: legal_log_group(&placeholders.resolve(&config.log_group)),
            log_stream: legal_log_stream(&placeholders.resolve(&config.log_stream)),
            max_document_bytes: MAX_DOCUMENT_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Where the source hands things on; a `None` output drops (and counts) what would go there.
#[derive(Debug, Clone)]
pub struct EmfOutputs {
    /// The logs pipeline: EMF documents in `logs` mode, plain JSON in both modes.
    pub logs: Option<mpsc::Sender<Vec<LogEvent>>>,
    /// The metrics pipeline: datums of EMF documents in `metrics` mode.
    pub metrics: Option<mpsc::Sender<MetricDatum>>,
}

/// What one line turned into.
#[derive(Debug)]
enum Item {
    /// A log event to queue (it still needs its budget).
    Log {
        timestamp_ms: i64,
        message: String,
        destination: Arc<Destination>,
    },
    /// Datums for the metrics pipeline.
    Datums(Vec<MetricDatum>),
    /// Nothing to hand on (counted already).
    Nothing,
    /// The line is too long: close the connection.
    TooLarge,
}

/// Where a line goes.
enum Routed<'a> {
    /// A valid document in `metrics` mode.
    Datums(EmfDocument),
    /// A valid document in `logs` mode.
    Log(Summary<'a>),
    /// Plain JSON, or an invalid document: shipped as a plain log.
    Plain,
}

/// Per connection (or per UDP socket): the settings and the destinations last used, so a
/// stream of documents to one group shares one `Arc<Destination>`.
struct Router {
    settings: EmfSettings,
    recent: Vec<Recent>,
}

impl Router {
    fn new(settings: EmfSettings) -> Self {
        Router {
            settings,
            recent: Vec::new(),
        }
    }

    /// Checks, counts and routes one line.
    fn route(&mut self, line: &[u8]) -> Item {
        let line = trim(line);
        if line.is_empty() {
            return Item::Nothing;
        }
        if line.len() > self.settings.max_document_bytes {
            telemetry::emf_document(EmfResult::TooLarge);
            return Item::TooLarge;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            telemetry::emf_document(EmfResult::NotJson);
            return Item::Nothing;
        };
        let (result, routed) = match self.check(text) {
            Ok(Routed::Plain) => (EmfResult::PlainJson, Routed::Plain),
            Ok(routed) => (EmfResult::Emf, routed),
            Err(Rejected::Invalid(reason)) => {
                tracing::debug!(error = %reason, "Invalid EMF document, shipped as a plain log.");
                (EmfResult::Invalid, Routed::Plain)
            }
            Err(Rejected::NotJson) => {
                telemetry::emf_document(EmfResult::NotJson);
                return Item::Nothing;
            }
            Err(Rejected::TooLarge) => {
                telemetry::emf_document(EmfResult::TooLarge);
                return Item::TooLarge;
            }
        };
        telemetry::emf_document(result);
        let message = text.to_owned();
        match routed {
            Routed::Datums(doc) => Item::Datums(extract::datums(&doc)),
            Routed::Log(summary) => {
                let destination = self.destination(
                    summary.log_group.as_deref(),
                    summary.log_stream.as_deref(),
                    true,
                );
                Item::Log {
                    timestamp_ms: summary.timestamp_ms,
                    message,
                    destination,
                }
            }
            Routed::Plain => Item::Log {
                timestamp_ms: now_ms(),
                message,
                destination: self.destination(None, None, false),
            },
        }
    }

    /// Reads a line as the mode needs it: `metrics` mode extracts the whole document, `logs`
    /// mode only validates it and keeps its routing facts.
    fn check<'a>(&self, text: &'a str) -> Result<Routed<'a>, Rejected> {
        Ok(match self.settings.mode {
            EmfMode::Metrics => match parse::parse_text(text)? {
                Parsed::Emf(doc) => Routed::Datums(doc),
                Parsed::PlainJson => Routed::Plain,
            },
            EmfMode::Logs => match parse::check_text(text)? {
                parse::Routed::Emf(summary) => Routed::Log(summary),
                parse::Routed::PlainJson => Routed::Plain,
            },
        })
    }

    /// The destination for a document's names (`None`: the configured ones). Looked up by
    /// the names as the document gave them, so a hit allocates nothing.
    fn destination(
        &mut self,
        group: Option<&str>,
        stream: Option<&str>,
        emf: bool,
    ) -> Arc<Destination> {
        if let Some(known) = self
            .recent
            .iter()
            .find(|r| r.emf == emf && r.group.as_deref() == group && r.stream.as_deref() == stream)
        {
            return Arc::clone(&known.destination);
        }
        let destination = Arc::new(Destination {
            group: group.map_or_else(|| self.settings.log_group.clone(), legal_log_group),
            stream: stream.map_or_else(|| self.settings.log_stream.clone(), legal_log_stream),
            retention_days: None,
            group_class: None,
            emf,
        });
        if self.recent.len() >= RECENT_DESTINATIONS {
            self.recent.remove(0);
        }
        self.recent.push(Recent {
            group: group.map(str::to_owned),
            stream: stream.map(str::to_owned),
            emf,
            destination: Arc::clone(&destination),
        });
        destination
    }
}

/// Destinations a router remembers; a client rarely writes to more than a few.
const RECENT_DESTINATIONS: usize = 8;

/// A destination and the names it was made from, as a document gave them.
struct Recent {
    group: Option<String>,
    stream: Option<String>,
    emf: bool,
    destination: Arc<Destination>,
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &line[start..end]
}

/// Accepts TCP clients until `token` is cancelled; each connection is read in its own task.
pub async fn run_tcp(
    listener: TcpListener,
    settings: EmfSettings,
    budget: Budget,
    outputs: EmfOutputs,
    token: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // Finished connections are reaped here, so the set holds live ones only.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = token.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let router = Router::new(settings.clone());
                let (budget, outputs, token) = (budget.clone(), outputs.clone(), token.clone());
                connections.spawn(async move {
                    serve(stream, peer, router, budget, outputs, token).await;
                    drop(slot);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "EMF TCP listener could not accept a connection.");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    while connections.join_next().await.is_some() {}
}

/// Reads one connection until the client closes it, a line is too long, or `token`. The
/// lines of each read are handed on together, before the next read.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut router: Router,
    budget: Budget,
    outputs: EmfOutputs,
    token: CancellationToken,
) {
    let mut buffer = LineBuffer::new(router.settings.max_document_bytes);
    let mut handoff = Handoff::new();
    loop {
        let open = route_lines(
            &mut buffer,
            &mut router,
            &mut handoff,
            &budget,
            &outputs,
            &token,
        )
        .await;
        handoff.flush_waiting(&outputs).await;
        if !open {
            tracing::debug!(%peer, "EMF connection closed (a line over the limit, or shutdown).");
            return;
        }
        let read = tokio::select! {
            _ = token.cancelled() => return,
            read = stream.read(buffer.space()) => read,
        };
        match read {
            Ok(0) => break,
            Ok(n) => buffer.filled(n),
            Err(error) => {
                tracing::debug!(%peer, %error, "EMF connection failed.");
                return;
            }
        }
    }
    let item = router.route(buffer.rest());
    handoff.push_waiting(item, &budget, &outputs, &token).await;
    handoff.flush_waiting(&outputs).await;
}

/// Routes every complete line in `buffer` into `handoff`; false when the connection must
/// end (a line too long, or shutdown while waiting for budget).
async fn route_lines(
    buffer: &mut LineBuffer,
    router: &mut Router,
    handoff: &mut Handoff,
    budget: &Budget,
    outputs: &EmfOutputs,
    token: &CancellationToken,
) -> bool {
    loop {
        let item = match buffer.next_line() {
            Next::Line(range) => router.route(buffer.line(range)),
            Next::NeedMore => return true,
            Next::TooLong => {
                telemetry::emf_document(EmfResult::TooLarge);
                return false;
            }
        };
        if matches!(item, Item::TooLarge) {
            return false;
        }
        if !handoff.push_waiting(item, budget, outputs, token).await {
            return false;
        }
    }
}

/// Reads datagrams until `token` is cancelled; every line of each `recvmmsg` is routed
/// without waiting (to `spill`, when given, if it finds no memory), and what one call read is
/// handed on together.
pub async fn run_udp(
    socket: UdpSocket,
    settings: EmfSettings,
    budget: Budget,
    outputs: EmfOutputs,
    spill: Option<Arc<Spill>>,
    token: CancellationToken,
) {
    let spill = spill.as_deref();
    let mut receiver = Receiver::new();
    let mut router = Router::new(settings);
    let mut handoff = Handoff::new();
    loop {
        let received = tokio::select! {
            _ = token.cancelled() => return,
            received = receiver.recv(&socket) => received,
        };
        let count = match received {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, "Reading the EMF UDP socket failed.");
                continue;
            }
        };
        for i in 0..count {
            for line in receiver.datagram(i).split(|&b| b == b'\n') {
                let item = router.route(line);
                handoff.push_now(item, &budget, &outputs, spill);
            }
        }
        handoff.flush_now(&outputs, spill);
    }
}

#[cfg(test)]
#[path = "emf/source_tests.rs"]
mod tests;
