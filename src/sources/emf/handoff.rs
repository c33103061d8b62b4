//! The EMF source's hand-off to the pipelines: what one read produced goes on together.
//!
//! A connection (or the UDP socket) routes every complete line of one read into a
//! [`Handoff`], then sends the lot. The pipeline task is woken once per read rather than once
//! per document, so a consumer that is faster than the client does not park and wake
//! (a futex round trip) between every two documents. A TCP hand-off takes channel room a chunk
//! at a time ([`mpsc::Sender::reserve_many`]), so a full channel wakes the reader when a chunk
//! is free, not for every slot.
//!
//! Budget is taken per event as it is queued. TCP waits for it, but first sends what is
//! queued, since those events may be what holds the budget: nothing accepted from a TCP
//! client is dropped. UDP never waits: no budget or no channel room means drop and count.
//! This file only moves items; it never reads sockets or parses.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{spilled, EmfOutputs, Item};
use crate::pipeline::ack::Ack;
use crate::pipeline::budget::Budget;
use crate::pipeline::spill::Spill;
use crate::pipeline::{LogEvent, MetricDatum};
use crate::telemetry::{self, DropReason, EmfDropReason};

/// Items routed from one read, not yet handed on.
#[derive(Debug, Default)]
pub(super) struct Handoff {
    logs: Vec<LogEvent>,
    datums: Vec<MetricDatum>,
}

impl Handoff {
    /// An empty hand-off.
    pub(super) fn new() -> Self {
        Handoff::default()
    }

    /// Queues a TCP item, waiting for budget when it is full (after sending what is queued).
    /// False when `token` was cancelled during that wait; what was queued is then sent
    /// already, and only this item is left behind (its bytes were read but never accepted).
    pub(super) async fn push_waiting(
        &mut self,
        item: Item,
        budget: &Budget,
        outputs: &EmfOutputs,
        token: &CancellationToken,
    ) -> bool {
        match item {
            Item::Nothing | Item::TooLarge => true,
            Item::Datums(datums) => {
                self.push_datums(datums, outputs);
                true
            }
            Item::Log {
                timestamp_ms,
                message,
                destination,
            } => {
                if outputs.logs.is_none() {
                    telemetry::emf_dropped(EmfDropReason::NoOutput);
                    return true;
                }
                // The common case takes neither a wait nor the token's lock.
                let permit = match budget.try_acquire(message.len()) {
                    Some(permit) => Some(permit),
                    None => {
                        self.flush_waiting(outputs).await;
                        tokio::select! {
                            _ = token.cancelled() => return false,
                            permit = budget.acquire(message.len()) => permit,
                        }
                    }
                };
                let Some(permit) = permit else {
                    telemetry::emf_dropped(EmfDropReason::Budget);
                    return true;
                };
                self.logs.push(LogEvent {
                    timestamp_ms,
                    message: message.into(),
                    destination,
                    ack: Ack::none(),
                    permit,
                });
                true
            }
        }
    }

    /// Queues a UDP item if budget is free now; else writes it to `spill`, or drops and
    /// counts it.
    pub(super) fn push_now(
        &mut self,
        item: Item,
        budget: &Budget,
        outputs: &EmfOutputs,
        spill: Option<&Spill>,
    ) {
        match item {
            Item::Nothing | Item::TooLarge => {}
            Item::Datums(datums) => self.push_datums(datums, outputs),
            Item::Log {
                timestamp_ms,
                message,
                destination,
            } => {
                if outputs.logs.is_none() {
                    return telemetry::emf_dropped(EmfDropReason::NoOutput);
                }
                // While events wait on disk, new ones queue behind them, in order.
                let permit = match spill {
                    Some(spill) if spill.is_backlogged() => None,
                    _ => budget.try_acquire(message.len()),
                };
                let Some(permit) = permit else {
                    let record = spilled::encode(timestamp_ms, &destination, &message);
                    if !spill.is_some_and(|spill| spill.append(&record)) {
                        telemetry::emf_dropped(EmfDropReason::Budget);
                    }
                    return;
                };
                self.logs.push(LogEvent {
                    timestamp_ms,
                    message: message.into(),
                    destination,
                    ack: Ack::none(),
                    permit,
                });
            }
        }
    }

    fn push_datums(&mut self, datums: Vec<MetricDatum>, outputs: &EmfOutputs) {
        if outputs.metrics.is_none() {
            return telemetry::emf_dropped(EmfDropReason::NoOutput);
        }
        if self.datums.is_empty() {
            self.datums = datums;
        } else {
            self.datums.extend(datums);
        }
    }

    /// Sends everything queued, waiting for channel room. It does not watch the shutdown
    /// token: the pipelines outlive their sources and keep draining, so the wait ends, and
    /// what was accepted from a TCP client is not lost at shutdown.
    pub(super) async fn flush_waiting(&mut self, outputs: &EmfOutputs) {
        if let Some(tx) = &outputs.logs {
            let lost = send_group(tx, &mut self.logs).await;
            for _ in 0..lost {
                telemetry::emf_dropped(EmfDropReason::Channel);
            }
        }
        if let Some(tx) = &outputs.metrics {
            let lost = send_all(tx, &mut self.datums).await;
            telemetry::metric_datums_dropped(DropReason::Channel, lost as u64);
        }
    }

    /// Sends what the channels have room for now. Log events that find the channel full go to
    /// `spill` when there is one (in order: later events queue behind them there, see
    /// [`Handoff::push_now`]); the rest are dropped and counted.
    pub(super) fn flush_now(&mut self, outputs: &EmfOutputs, spill: Option<&Spill>) {
        if let Some(tx) = &outputs.logs {
            for event in send_group_now(tx, &mut self.logs) {
                let spilled = spill.is_some_and(|spill| {
                    let record =
                        spilled::encode(event.timestamp_ms, &event.destination, &event.message);
                    spill.append(&record)
                });
                if !spilled {
                    telemetry::emf_dropped(EmfDropReason::Channel);
                }
            }
        }
        if let Some(tx) = &outputs.metrics {
            let lost = send_now(tx, &mut self.datums);
            telemetry::metric_datums_dropped(DropReason::Channel, lost as u64);
        }
    }
}

/// Sends `items` in order, a chunk of channel room at a time; returns how many were lost
/// because the channel closed. Leaves `items` empty (its allocation kept for the next read).
async fn send_all<T>(tx: &mpsc::Sender<T>, items: &mut Vec<T>) -> usize {
    // A quarter of the channel: the reader wakes when that much room is free, while the
    // consumer still has the rest to work on.
    let chunk = (tx.max_capacity() / 4).max(1);
    let mut rest = items.drain(..);
    loop {
        let wanted = rest.len().min(chunk);
        if wanted == 0 {
            return 0;
        }
        match tx.reserve_many(wanted).await {
            Ok(permits) => {
                for (permit, item) in permits.zip(rest.by_ref()) {
                    permit.send(item);
                }
            }
            Err(_) => return rest.len(),
        }
    }
}

/// Sends the log events of one read as one group, waiting for channel room; returns how many
/// were lost because the channel closed. Leaves `events` empty, with room for as many.
async fn send_group(tx: &mpsc::Sender<Vec<LogEvent>>, events: &mut Vec<LogEvent>) -> usize {
    if events.is_empty() {
        return 0;
    }
    let group = std::mem::replace(events, Vec::with_capacity(events.len()));
    match tx.send(group).await {
        Ok(()) => 0,
        Err(closed) => closed.0.len(),
    }
}

/// Sends the log events of one read as one group if the channel has room now; returns the
/// events that did not go (all or none). Leaves `events` empty.
fn send_group_now(tx: &mpsc::Sender<Vec<LogEvent>>, events: &mut Vec<LogEvent>) -> Vec<LogEvent> {
    if events.is_empty() {
        return Vec::new();
    }
    let group = std::mem::replace(events, Vec::with_capacity(events.len()));
    match tx.try_send(group) {
        Ok(()) => Vec::new(),
        Err(error) => error.into_inner(),
    }
}

/// Sends what fits in `tx` now; returns how many did not. Leaves `items` empty.
fn send_now<T>(tx: &mpsc::Sender<T>, items: &mut Vec<T>) -> usize {
    items
        .drain(..)
        .map(|item| tx.try_send(item).is_err())
        .filter(|&failed| failed)
        .count()
}
