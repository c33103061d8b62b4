//! The metrics role: EMF on TCP/UDP, StatsD on UDP, host metrics and the log files' metric
//! filters into one metrics pipeline and its `PutMetricData` sink. EMF documents in logs mode
//! go to the shared logs pipeline. The pipeline flushes and ends once every sender is dropped.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::listeners::{bind_udp, EmfParts, Listeners};
use super::{bind_tcp, RunError, Wiring};
use crate::aws::AwsContext;
use crate::config::{Config, EmfMode};
use crate::pipeline::budget::{Budget, Pipeline};
use crate::pipeline::metrics::{self, MetricsSettings};
use crate::pipeline::spill::{self, Spill};
use crate::pipeline::{LogEvent, MetricDatum};
use crate::placeholders::Placeholders;
use crate::sinks::cloudwatch_metrics::CloudWatchMetricsSink;
use crate::sources::{emf, host};

/// Room in the hand-off from the metric sources to the aggregator.
const METRIC_CHANNEL: usize = 4096;

/// True when the config turns on any metric source (metric filters included).
pub(super) fn enabled(config: &Config) -> bool {
    config.emf.is_some()
        || config.statsd.is_some()
        || config.host_metrics.is_some()
        || has_filters(config)
}

/// True when some `[[logs.files]]` entry has metric filters.
pub(super) fn has_filters(config: &Config) -> bool {
    config
        .logs
        .as_ref()
        .is_some_and(|l| l.files.iter().any(|f| !f.metric_filters.is_empty()))
}

/// Starts the metrics pipeline and its sink, and the replay of `spill` (when StatsD runs with
/// a disk spill); the returned sender feeds the pipeline.
pub(super) fn start_pipeline(
    aws: &AwsContext,
    wiring: &Wiring,
    spill: Option<Arc<Spill>>,
) -> mpsc::Sender<MetricDatum> {
    let (tx, rx) = mpsc::channel::<MetricDatum>(METRIC_CHANNEL);
    let client = aws_sdk_cloudwatch::Client::new(&aws.sdk);
    let sink = CloudWatchMetricsSink::new(client, wiring.abort.clone()).with_spill(spill.clone());
    let budget = wiring.budget_for(Pipeline::Metrics);
    if let Some(spill) = &spill {
        let token = wiring.token.child_token();
        let replay = metrics::replay(Arc::clone(spill), budget.clone(), sink.clone(), token);
        wiring.tracker.spawn(replay);
    }
    let settings = MetricsSettings {
        spill,
        ..MetricsSettings::new(budget)
    };
    wiring.tracker.spawn(metrics::run(rx, sink, settings));
    tx
}

/// True when EMF documents go to CloudWatch Logs (so the logs pipeline must run).
pub(super) fn needs_logs(config: &Config) -> bool {
    config.emf.as_ref().is_some_and(|e| e.mode == EmfMode::Logs)
}

/// Binds every metric source the config names and starts it, feeding `tx` (from
/// [`start_pipeline`]); `tx` is dropped when no source needs it. Returns the socket sources a
/// reload may restart.
pub(super) async fn start(
    config: &Config,
    wiring: &Wiring,
    log_tx: Option<mpsc::Sender<Vec<LogEvent>>>,
    tx: mpsc::Sender<MetricDatum>,
    emf_spill: Option<Arc<Spill>>,
) -> Result<Listeners, RunError> {
    let placeholders = Placeholders::discover(config.aws.local_mode).await;
    let mut listeners = Listeners::default();
    if let Some(emf_config) = &config.emf {
        let listener = bind_tcp(
            emf_config.tcp_address,
            "the EMF TCP listener",
            "[emf] tcp_address",
        )
        .await?;
        let socket = bind_udp(
            emf_config.udp_address,
            "the EMF UDP listener",
            "[emf] udp_address",
        )?;
        let outputs = emf::EmfOutputs {
            logs: log_tx,
            metrics: Some(tx.clone()),
        };
        let budget = wiring.budget_for(Pipeline::Metrics);
        let spill = emf_spill.filter(|_| outputs.logs.is_some());
        if let (Some(spill), Some(log_tx)) = (&spill, &outputs.logs) {
            replay_emf(wiring, Arc::clone(spill), budget.clone(), log_tx.clone());
        }
        let parts = EmfParts {
            settings: emf::EmfSettings::from_config(emf_config, &placeholders),
            budget,
            outputs,
            spill,
        };
        listeners.start_emf(emf_config, listener, socket, parts, wiring);
    }
    if let Some(statsd_config) = &config.statsd {
        let socket = bind_udp(
            statsd_config.address,
            "the StatsD listener",
            "[statsd] address",
        )?;
        listeners.start_statsd(statsd_config, socket, &tx, wiring);
    }
    if let Some(host_config) = &config.host_metrics {
        let settings = host::HostSettings::from_config(host_config, &placeholders);
        wiring
            .tracker
            .spawn(host::run(settings, tx, wiring.token.child_token()));
    }
    tracing::info!("Metrics role started.");
    Ok(listeners)
}

/// Sends EMF events spilled to disk back to the logs pipeline as memory frees up.
fn replay_emf(
    wiring: &Wiring,
    spill: Arc<Spill>,
    budget: Budget,
    log_tx: mpsc::Sender<Vec<LogEvent>>,
) {
    let token = wiring.token.child_token();
    let decode = |payload, permit| emf::spilled::decode(payload, permit).map(|event| vec![event]);
    let task = spill::replay(spill, budget, log_tx, decode, token);
    wiring.tracker.spawn(task);
}
