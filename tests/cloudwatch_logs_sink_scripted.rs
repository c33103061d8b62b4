//! The CloudWatch Logs sink against a scripted PutLogEvents endpoint, for what moto cannot do:
//! refuse one event of a request (bisection), answer credential errors, measure how many calls
//! one stream has in flight. Tests run one at a time (the counters are process-wide).

mod logs_sink;
mod support;

use std::time::Duration;

use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::Client;
use tokio_util::sync::CancellationToken;

use cloudtail::pipeline::ack::AckTracker;
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::{LogEvent, Sink};
use cloudtail::telemetry::{LogsRejectReason, COUNTERS};
use logs_sink::{client, destination, events, now_ms, scripted, sink, SERIAL};

#[tokio::test]
async fn a_refused_request_is_bisected_down_to_the_bad_event() {
    let _serial = SERIAL.lock().await;
    let (addr, script) = scripted(Duration::ZERO, &[]).await;
    let client = client(&format!("http://{addr}"));
    let to = destination("g", "s");
    let items: Vec<(i64, String)> = (0..8)
        .map(|n| {
            let message = if n == 5 {
                "poison".into()
            } else {
                format!("m{n}")
            };
            (now_ms() + n, message)
        })
        .collect();
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let invalid0 = COUNTERS.logs.rejected(LogsRejectReason::Invalid).get();
    let sent0 = COUNTERS.logs.events_sent.get();

    sink(client, 4, CancellationToken::new())
        .send(events(&tracker, &budget, &to, &items))
        .await;

    assert_eq!(tracker.committed(), 8);
    assert_eq!(
        COUNTERS.logs.rejected(LogsRejectReason::Invalid).get(),
        invalid0 + 1
    );
    assert_eq!(COUNTERS.logs.events_sent.get(), sent0 + 7);
    let sizes: Vec<usize> = script
        .lock()
        .expect("lock")
        .requests
        .iter()
        .map(Vec::len)
        .collect();
    // 8 refused → [0..4] ok, [4..8] refused → [4, 5] refused → [4] ok, [5] refused; [6, 7] ok.
    assert_eq!(sizes, [8, 4, 4, 2, 1, 1, 2]);
}

#[tokio::test]
async fn calls_per_stream_never_exceed_the_concurrency() {
    let _serial = SERIAL.lock().await;
    let (addr, script) = scripted(Duration::from_millis(150), &[]).await;
    let client = client(&format!("http://{addr}"));
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let sink = sink(client, 2, CancellationToken::new());
    let mut sends = Vec::new();
    let mut offset = 0u64;
    for n in 0..6 {
        let stream = if n % 3 == 0 { "other" } else { "busy" };
        let to = destination("g", stream);
        offset += 1;
        let event = LogEvent {
            timestamp_ms: now_ms(),
            message: format!("m{n}").into(),
            destination: to,
            ack: tracker.register(offset),
            permit: budget.try_acquire(2).expect("budget"),
        };
        let sink = sink.clone();
        sends.push(tokio::spawn(async move { sink.send(vec![event]).await }));
    }
    for send in sends {
        send.await.expect("send");
    }
    assert_eq!(tracker.committed(), 6);
    let max = |stream: &str| script.lock().expect("lock").in_flight[stream].1;
    // Four batches for "busy": two at a time; "other" is not held back by "busy".
    assert_eq!(max("busy"), 2);
    assert_eq!(max("other"), 2);
}

#[tokio::test]
async fn credential_errors_are_retried_until_they_clear() {
    let _serial = SERIAL.lock().await;
    let failures = [
        (400, "UnrecognizedClientException"),
        (400, "ExpiredTokenException"),
        (403, "AccessDeniedException"),
    ];
    let (addr, script) = scripted(Duration::ZERO, &failures).await;
    let client = client(&format!("http://{addr}"));
    let to = destination("g", "s");
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let retries0 = COUNTERS.logs.retries.get();

    sink(client, 4, CancellationToken::new())
        .send(events(&tracker, &budget, &to, &[(now_ms(), "m".into())]))
        .await;

    assert_eq!(tracker.committed(), 1);
    assert_eq!(COUNTERS.logs.retries.get(), retries0 + 3);
    assert_eq!(script.lock().expect("lock").requests.len(), 4);
}

#[derive(Debug)]
struct NoCredentials;

impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "none in the chain",
            ),
        ))
    }
}

#[tokio::test]
async fn missing_credentials_are_retried_until_the_deadline() {
    let _serial = SERIAL.lock().await;
    let (addr, script) = scripted(Duration::ZERO, &[]).await;
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::v2026_01_12())
        .region(Region::new("us-east-1"))
        .credentials_provider(NoCredentials)
        .endpoint_url(format!("http://{addr}"))
        .retry_config(RetryConfig::disabled())
        .build();
    let abort = CancellationToken::new();
    let sink = sink(Client::from_conf(config), 4, abort.clone());
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let retries0 = COUNTERS.logs.retries.get();
    let batch = events(
        &tracker,
        &budget,
        &destination("g", "s"),
        &[(now_ms(), "m".into())],
    );
    let task = tokio::spawn(async move { sink.send(batch).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    abort.cancel();
    task.await.expect("send");
    assert!(COUNTERS.logs.retries.get() >= retries0 + 2, "kept retrying");
    assert_eq!(tracker.committed(), 0);
    assert!(
        script.lock().expect("lock").requests.is_empty(),
        "nothing sent unsigned"
    );
}
