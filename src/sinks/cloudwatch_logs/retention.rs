//! Log groups and streams: creating them (with the group's class) and holding every configured
//! group to its retention.
//!
//! At start, [`prepare_groups`] creates every configured group that has `retention_days` and
//! sets its retention, even when the group already existed with another value; failures are
//! logged and retried in the background until shutdown, never fatal. On the send path the sink
//! calls [`ensure_stream`] after a `ResourceNotFoundException`, which creates the stream and,
//! when the group is missing too, the group (class, then retention). "Already exists" is success:
//! another call, or another agent, may race us. This file never retries on its own except in
//! the start-up task, never calls `DescribeLogGroups`/`DescribeLogStreams`, and never deletes.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::LogGroupClass;
use aws_sdk_cloudwatchlogs::Client;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::retry::{judge, Action, Failure};
use crate::pipeline::retry::Backoff;
use crate::pipeline::Destination;
use crate::telemetry;

/// How long [`prepare_groups`] waits for the first attempt on every group before it returns and
/// lets the rest go on in the background.
pub const FIRST_PASS_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the group of `destination` (with its class) unless it exists, then sets its
/// retention when one is configured.
pub async fn ensure_group(client: &Client, destination: &Destination) -> Result<(), Failure> {
    let group = destination.group.as_str();
    let mut create = client.create_log_group().log_group_name(group);
    if let Some(class) = &destination.group_class {
        create = create.log_group_class(LogGroupClass::from(class.as_str()));
    }
    match create.send().await {
        Ok(_) => telemetry::logs_group_created(group),
        Err(error) => {
            let failure = judge(&error);
            if failure.action != Action::AlreadyDone {
                return Err(failure);
            }
        }
    }
    set_retention(client, destination).await
}

/// Sets the group's retention to the configured value (a no-op without one).
async fn set_retention(client: &Client, destination: &Destination) -> Result<(), Failure> {
    let Some(days) = destination.retention_days else {
        return Ok(());
    };
    client
        .put_retention_policy()
        .log_group_name(&destination.group)
        .retention_in_days(days)
        .send()
        .await
        .map(|_| ())
        .map_err(|error| judge(&error))
}

/// Creates the stream of `destination`; when its group is missing, creates the group first.
pub async fn ensure_stream(client: &Client, destination: &Destination) -> Result<(), Failure> {
    match create_stream(client, destination).await {
        Err(failure) if failure.action == Action::Create => {
            ensure_group(client, destination).await?;
            create_stream(client, destination).await
        }
        other => other,
    }
}

async fn create_stream(client: &Client, destination: &Destination) -> Result<(), Failure> {
    let call = client
        .create_log_stream()
        .log_group_name(&destination.group)
        .log_stream_name(&destination.stream)
        .send();
    match call.await {
        Ok(_) => {
            telemetry::logs_stream_created(&destination.group, &destination.stream);
            Ok(())
        }
        Err(error) => match judge(&error) {
            failure if failure.action == Action::AlreadyDone => Ok(()),
            failure => Err(failure),
        },
    }
}

/// For every distinct group among `destinations` that has `retention_days`: creates it if
/// missing and sets its retention. Each group gets its own task on `tracker`, retrying with
/// backoff until it succeeds, the failure cannot be fixed by waiting (logged at error), or
/// `token` is cancelled. Returns once every group had its first attempt, or after
/// [`FIRST_PASS_TIMEOUT`]. Never fails: logs keep flowing whatever happens here.
pub async fn prepare_groups(
    client: &Client,
    destinations: &[Destination],
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    let mut first_attempts = Vec::new();
    for destination in distinct_groups(destinations) {
        let (tx, rx) = oneshot::channel();
        first_attempts.push(rx);
        tracker.spawn(prepare_one(
            client.clone(),
            destination,
            Backoff::default(),
            tx,
            token.clone(),
        ));
    }
    let all = async {
        for rx in first_attempts {
            let _ = rx.await;
        }
    };
    let _ = tokio::time::timeout(FIRST_PASS_TIMEOUT, all).await;
}

/// One destination per group that has a retention, the first one configured for it; a group
/// configured twice with different settings is logged (the first wins).
fn distinct_groups(destinations: &[Destination]) -> Vec<Destination> {
    let mut groups: Vec<Destination> = Vec::new();
    for destination in destinations.iter().filter(|d| d.retention_days.is_some()) {
        match groups.iter().find(|g| g.group == destination.group) {
            Some(first)
                if first.retention_days != destination.retention_days
                    || first.group_class != destination.group_class =>
            {
                tracing::warn!(
                    group = %destination.group,
                    used = ?first.retention_days,
                    ignored = ?destination.retention_days,
                    "Log group configured twice with different settings; the first one is used."
                );
            }
            Some(_) => {}
            None => groups.push(destination.clone()),
        }
    }
    groups
}

async fn prepare_one(
    client: Client,
    destination: Destination,
    backoff: Backoff,
    first_attempt: oneshot::Sender<()>,
    token: CancellationToken,
) {
    let mut first_attempt = Some(first_attempt);
    let mut attempt = 0u32;
    loop {
        let result = tokio::select! {
            _ = token.cancelled() => return,
            result = ensure_group(&client, &destination) => result,
        };
        if let Some(tx) = first_attempt.take() {
            let _ = tx.send(());
        }
        let failure = match result {
            Ok(()) => {
                tracing::info!(
                    group = %destination.group,
                    retention_days = ?destination.retention_days,
                    "Log group ready."
                );
                return;
            }
            Err(failure) => failure,
        };
        match failure.action {
            Action::Refused => {
                tracing::error!(
                    group = %destination.group,
                    retention_days = ?destination.retention_days,
                    error = %failure.verdict.detail,
                    "Could not set up the log group; fix its name, class or retention_days."
                );
                return;
            }
            Action::Credentials => {
                telemetry::logs_credentials_error(&destination.group, &failure.verdict.detail)
            }
            _ => telemetry::logs_retry(attempt, &destination.group, &failure.verdict.detail),
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff.delay(attempt)) => {}
        }
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(group: &str, stream: &str, retention: Option<i32>) -> Destination {
        Destination {
            group: group.into(),
            stream: stream.into(),
            retention_days: retention,
            group_class: None,
            emf: false,
        }
    }

    #[test]
    fn one_setup_per_group_with_retention() {
        let destinations = [
            dest("a", "s1", Some(7)),
            dest("a", "s2", Some(7)),
            dest("b", "s1", None),
            dest("c", "s1", Some(30)),
            dest("c", "s2", Some(90)),
        ];
        let groups: Vec<(String, Option<i32>)> = distinct_groups(&destinations)
            .into_iter()
            .map(|d| (d.group, d.retention_days))
            .collect();
        assert_eq!(
            groups,
            vec![("a".to_string(), Some(7)), ("c".to_string(), Some(30))]
        );
    }
}
