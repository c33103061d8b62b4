//! The CloudWatch Logs side: one logs pipeline and sink that every log source shares (files,
//! EMF documents in logs mode), and the log-file role, with group retention set at start and
//! its metric filters publishing into the metrics pipeline.

use tokio::sync::mpsc;

use super::reload::FilesReload;
use super::{RunError, Wiring};
use crate::aws::AwsContext;
use crate::config::{Config, LogsConfig};
use crate::pipeline::budget::Pipeline;
use crate::pipeline::logs::{self, LogsSettings};
use crate::pipeline::{LogEvent, MetricDatum};
use crate::sinks::cloudwatch_logs::{
    prepare_groups, request_memory_for_budget, CloudWatchLogsSink,
};
use crate::sources::file::{Checkpointer, FileSource, NameContext};

/// Room in the hand-off from the sources to the batcher, in groups of events (a file read's,
/// up to 256; an EMF read's); sources hold budget for what waits. Four groups keep about the
/// thousand events the channel held when it carried single events: with 64, fifty files
/// draining after an outage filled more of the budget with read buffers pinned by a few
/// unsent lines each (+7 MiB peak RSS).
const LOG_CHANNEL: usize = 4;

/// Starts the logs pipeline and its sink; the returned sender feeds it. The pipeline flushes
/// and ends once every clone of the sender is dropped.
pub(super) fn start_pipeline(
    config: &Config,
    aws: &AwsContext,
    wiring: &Wiring,
) -> mpsc::Sender<Vec<LogEvent>> {
    let mut settings = LogsSettings::default();
    let mut per_stream = settings.per_destination;
    if let Some(logs) = &config.logs {
        settings.flush_interval = logs.flush_interval;
        per_stream = logs.concurrency;
        settings.per_destination = logs.concurrency;
    }
    let client = aws_sdk_cloudwatchlogs::Client::new(&aws.sdk);
    let sink = CloudWatchLogsSink::new(client, per_stream, wiring.abort.clone())
        .with_request_memory(request_memory_for_budget(wiring.budget.total_bytes()));
    let (tx, rx) = mpsc::channel::<Vec<LogEvent>>(LOG_CHANNEL);
    wiring.tracker.spawn(logs::run(rx, sink, settings));
    tx
}

/// Starts tailing; returns the checkpointer whose final write must follow the drain, and the
/// handle that hands the source a reloaded `[[logs.files]]` list.
/// `metric_tx`: where the metric filters publish (`None` when the config has none).
pub(super) async fn start_files(
    config: &Config,
    settings: &LogsConfig,
    aws: &AwsContext,
    wiring: &Wiring,
    tx: mpsc::Sender<Vec<LogEvent>>,
    metric_tx: Option<mpsc::Sender<MetricDatum>>,
) -> Result<(Checkpointer, FilesReload), RunError> {
    let names = NameContext::gather(config.aws.local_mode, Some(aws.region.clone())).await;
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let mut source = FileSource::new(settings, names.clone())?.with_reloads(reload_rx);
    if let Some(metric_tx) = metric_tx {
        source = source.with_metrics(metric_tx);
    }
    let checkpointer = source.checkpointer();
    let client = aws_sdk_cloudwatchlogs::Client::new(&aws.sdk);
    let groups = source.startup_destinations();
    prepare_groups(
        &client,
        &groups,
        &wiring.tracker,
        wiring.token.child_token(),
    )
    .await;
    let token = wiring.token.child_token();
    wiring
        .tracker
        .spawn(source.run(wiring.budget_for(Pipeline::Logs), tx, token));
    tracing::info!(files = settings.files.len(), "Log files role started.");
    let reload = FilesReload {
        tx: reload_tx,
        names,
        client,
    };
    Ok((checkpointer, reload))
}
