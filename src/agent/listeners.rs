//! The socket sources a reload can restart: StatsD, and EMF's TCP and UDP listeners.
//!
//! Each runs under a token of its own, so one can stop while the others keep their sockets and
//! connections. On reload, a changed `[statsd]` table restarts the StatsD source: on a new
//! address the new socket is bound first (if that fails, the old source keeps running and the
//! error is logged), on the same address the new run takes over the old socket; the stopping
//! run hands on the interval it aggregated, so nothing is lost. A changed EMF address restarts
//! that listener alone (bound first, likewise); its old connections are closed after what
//! they had read. Adding or removing a source, or changing other EMF settings, waits for the
//! next start (the pipelines it feeds are set up at start). Senders into the pipelines are
//! held weakly here, so this never keeps a pipeline open at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{RunError, Wiring};
use crate::config::{EmfConfig, StatsdConfig};
use crate::pipeline::budget::Budget;
use crate::pipeline::spill::Spill;
use crate::pipeline::{LogEvent, MetricDatum};
use crate::sources::{emf, statsd, udp};

/// Kernel receive buffer asked for the EMF and StatsD UDP sockets.
pub(super) const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// The restartable socket sources that run.
#[derive(Default)]
pub(super) struct Listeners {
    statsd: Option<StatsdRunning>,
    emf: Option<EmfRunning>,
}

/// The StatsD source as it runs.
struct StatsdRunning {
    config: StatsdConfig,
    socket: Arc<UdpSocket>,
    token: CancellationToken,
    tx: mpsc::WeakSender<MetricDatum>,
}

/// What EMF's listeners run with, kept to start one again.
pub(super) struct EmfParts {
    /// The settings built at start (placeholders resolved).
    pub settings: emf::EmfSettings,
    /// The metrics pipeline's budget.
    pub budget: Budget,
    /// Where documents go.
    pub outputs: emf::EmfOutputs,
    /// The UDP listener's spill.
    pub spill: Option<Arc<Spill>>,
}

/// EMF's listeners as they run.
struct EmfRunning {
    config: EmfConfig,
    settings: emf::EmfSettings,
    budget: Budget,
    logs: Option<mpsc::WeakSender<Vec<LogEvent>>>,
    metrics: Option<mpsc::WeakSender<MetricDatum>>,
    spill: Option<Arc<Spill>>,
    tcp: CancellationToken,
    udp: CancellationToken,
}

impl Listeners {
    /// Starts the StatsD source on `socket`, feeding `tx`.
    pub(super) fn start_statsd(
        &mut self,
        config: &StatsdConfig,
        socket: UdpSocket,
        tx: &mpsc::Sender<MetricDatum>,
        wiring: &Wiring,
    ) {
        let running = StatsdRunning {
            config: config.clone(),
            socket: Arc::new(socket),
            token: wiring.token.child_token(),
            tx: tx.downgrade(),
        };
        spawn_statsd(&running, tx.clone(), wiring);
        self.statsd = Some(running);
    }

    /// Starts EMF's listeners.
    pub(super) fn start_emf(
        &mut self,
        config: &EmfConfig,
        listener: TcpListener,
        socket: UdpSocket,
        parts: EmfParts,
        wiring: &Wiring,
    ) {
        let running = EmfRunning {
            config: config.clone(),
            settings: parts.settings,
            budget: parts.budget,
            logs: parts.outputs.logs.as_ref().map(mpsc::Sender::downgrade),
            metrics: parts.outputs.metrics.as_ref().map(mpsc::Sender::downgrade),
            spill: parts.spill,
            tcp: wiring.token.child_token(),
            udp: wiring.token.child_token(),
        };
        let outputs = parts.outputs;
        running.spawn_tcp(listener, outputs.clone(), wiring);
        running.spawn_udp(socket, outputs, wiring);
        self.emf = Some(running);
    }

    /// Applies a new `[statsd]` table (when StatsD runs and still should: adding or removing
    /// it waits for the next start).
    pub(super) fn reload_statsd(&mut self, new: Option<&StatsdConfig>, wiring: &Wiring) {
        let (Some(running), Some(new)) = (&mut self.statsd, new) else {
            return;
        };
        if running.config == *new {
            return;
        }
        let socket = if running.config.address == new.address {
            Arc::clone(&running.socket)
        } else {
            match bind_udp(new.address, "the StatsD listener", "[statsd] address") {
                Ok(socket) => Arc::new(socket),
                Err(error) => {
                    tracing::error!(%error, "The new StatsD listener could not start; the old one keeps running.");
                    return;
                }
            }
        };
        let Some(tx) = running.tx.upgrade() else {
            return; // shutting down
        };
        running.token.cancel();
        let restarted = StatsdRunning {
            config: new.clone(),
            socket,
            token: wiring.token.child_token(),
            tx: running.tx.clone(),
        };
        spawn_statsd(&restarted, tx, wiring);
        tracing::info!(address = %new.address, "StatsD source restarted with the new settings.");
        *running = restarted;
    }

    /// Applies a new `[emf]` table: changed addresses restart their listener. Nothing is done
    /// when more than the addresses changed (see [`emf_needs_restart`]).
    pub(super) fn reload_emf(&mut self, new: Option<&EmfConfig>, wiring: &Wiring) {
        let (Some(running), Some(new)) = (&mut self.emf, new) else {
            return;
        };
        if emf_needs_restart(Some(&running.config), Some(new)) {
            return;
        }
        let Some(outputs) = running.outputs() else {
            return; // shutting down
        };
        if new.tcp_address != running.config.tcp_address {
            match bind_tcp(new.tcp_address) {
                Ok(listener) => {
                    running.tcp.cancel();
                    running.tcp = wiring.token.child_token();
                    running.spawn_tcp(listener, outputs.clone(), wiring);
                    running.config.tcp_address = new.tcp_address;
                    tracing::info!(address = %new.tcp_address, "EMF TCP listener restarted.");
                }
                Err(error) => {
                    tracing::error!(%error, "The new EMF TCP listener could not start; the old one keeps running.")
                }
            }
        }
        if new.udp_address != running.config.udp_address {
            match bind_udp(new.udp_address, "the EMF UDP listener", "[emf] udp_address") {
                Ok(socket) => {
                    running.udp.cancel();
                    running.udp = wiring.token.child_token();
                    running.spawn_udp(socket, outputs, wiring);
                    running.config.udp_address = new.udp_address;
                    tracing::info!(address = %new.udp_address, "EMF UDP listener restarted.");
                }
                Err(error) => {
                    tracing::error!(%error, "The new EMF UDP listener could not start; the old one keeps running.")
                }
            }
        }
    }
}

/// Whether going from `running` to `new` needs a restart of the agent: EMF added or removed,
/// or a setting other than its addresses changed (the routing and the pipelines it feeds are
/// set up at start).
pub(super) fn emf_needs_restart(running: Option<&EmfConfig>, new: Option<&EmfConfig>) -> bool {
    match (running, new) {
        (Some(running), Some(new)) => {
            let same_addresses = EmfConfig {
                tcp_address: running.tcp_address,
                udp_address: running.udp_address,
                ..new.clone()
            };
            same_addresses != *running
        }
        (None, None) => false,
        _ => true,
    }
}

impl EmfRunning {
    /// Strong senders again; `None` when a pipeline already closed (shutting down).
    fn outputs(&self) -> Option<emf::EmfOutputs> {
        let logs = match &self.logs {
            Some(weak) => Some(weak.upgrade()?),
            None => None,
        };
        let metrics = match &self.metrics {
            Some(weak) => Some(weak.upgrade()?),
            None => None,
        };
        Some(emf::EmfOutputs { logs, metrics })
    }

    fn spawn_tcp(&self, listener: TcpListener, outputs: emf::EmfOutputs, wiring: &Wiring) {
        let (settings, budget) = (self.settings.clone(), self.budget.clone());
        let task = emf::run_tcp(listener, settings, budget, outputs, self.tcp.clone());
        wiring.tracker.spawn(task);
    }

    fn spawn_udp(&self, socket: UdpSocket, outputs: emf::EmfOutputs, wiring: &Wiring) {
        let spill = self.spill.clone().filter(|_| outputs.logs.is_some());
        let (settings, budget) = (self.settings.clone(), self.budget.clone());
        let task = emf::run_udp(socket, settings, budget, outputs, spill, self.udp.clone());
        wiring.tracker.spawn(task);
    }
}

fn spawn_statsd(running: &StatsdRunning, tx: mpsc::Sender<MetricDatum>, wiring: &Wiring) {
    let settings = statsd::StatsdSettings::from_config(&running.config);
    let socket = Arc::clone(&running.socket);
    let task = statsd::run(socket, settings, tx, running.token.clone());
    wiring.tracker.spawn(task);
}

/// Binds a UDP listener; the error names the key that sets its address.
pub(super) fn bind_udp(
    address: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<UdpSocket, RunError> {
    udp::bind(address, RECEIVE_BUFFER_BYTES).map_err(|source| RunError::Bind {
        what,
        address,
        flag,
        source,
    })
}

/// Binds EMF's TCP listener without awaiting (a reload runs in a synchronous step).
fn bind_tcp(address: SocketAddr) -> Result<TcpListener, RunError> {
    let bound = std::net::TcpListener::bind(address)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .and_then(TcpListener::from_std);
    bound.map_err(|source| RunError::Bind {
        what: "the EMF TCP listener",
        address,
        flag: "[emf] tcp_address",
        source,
    })
}
