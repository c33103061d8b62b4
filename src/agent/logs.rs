//! The log-file role: files → logs pipeline → `PutLogEvents`, with group retention set at start.
//! The logs pipeline's channel is the one other log sources (EMF) will share.

use tokio::sync::mpsc;

use super::{RunError, Wiring};
use crate::aws::AwsContext;
use crate::config::{Config, LogsConfig};
use crate::pipeline::logs::{self, LogsSettings};
use crate::pipeline::LogEvent;
use crate::sinks::cloudwatch_logs::{prepare_groups, CloudWatchLogsSink};
use crate::sources::file::{Checkpointer, FileSource, NameContext};

/// Room in the hand-off from the tailers to the batcher; tailers hold budget for what waits.
const LOG_CHANNEL: usize = 1024;

/// Starts tailing; returns the checkpointer whose final write must follow the drain.
pub(super) async fn start(
    config: &Config,
    settings: &LogsConfig,
    aws: &AwsContext,
    wiring: &Wiring,
) -> Result<Checkpointer, RunError> {
    let names = NameContext::gather(config.aws.local_mode, Some(aws.region.clone())).await;
    let source = FileSource::new(settings, names)?;
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
    let sink = CloudWatchLogsSink::new(client, settings.concurrency, wiring.abort.clone());
    let (tx, rx) = mpsc::channel::<LogEvent>(LOG_CHANNEL);
    let pipeline = LogsSettings {
        flush_interval: settings.flush_interval,
        per_destination: settings.concurrency,
        ..LogsSettings::default()
    };
    wiring.tracker.spawn(logs::run(rx, sink, pipeline));
    let token = wiring.token.child_token();
    wiring
        .tracker
        .spawn(source.run(wiring.budget.clone(), tx, token));
    tracing::info!(files = settings.files.len(), "Log files role started.");
    Ok(checkpointer)
}
