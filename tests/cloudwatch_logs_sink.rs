//! The CloudWatch Logs sink against the stub endpoint (moto behind `moto_front.py`) and against
//! a tiny scripted HTTP endpoint for what moto cannot do (refuse one event, measure concurrency).
//!
//! Drives `CloudWatchLogsSink` and `prepare_groups` directly through the real AWS SDK, with the
//! SDK's own retries off as the agent configures them; no agent binary, no files. Checks what
//! lands in moto, the requests it journaled, the acks and the counters. Tests run one at a time
//! (the counters are process-wide) and each starts its own stub.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::Client;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use cloudtail::pipeline::ack::{AckTracker, DROPPED_UNRESOLVED};
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::retry::Backoff;
use cloudtail::pipeline::{Destination, LogEvent, Sink};
use cloudtail::sinks::cloudwatch_logs::{prepare_groups, CloudWatchLogsSink};
use cloudtail::telemetry::{LogsRejectReason, COUNTERS};
use support::{test_credentials, Moto};

/// The counters are process-wide: one test at a time.
static SERIAL: AsyncMutex<()> = AsyncMutex::const_new(());

const HOUR_MS: i64 = 60 * 60 * 1000;

fn now_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(now.as_millis()).expect("millis")
}

/// A client as the agent builds one: test credentials, no SDK retries.
fn client(endpoint: &str) -> Client {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::v2026_01_12())
        .region(Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

fn sink(client: Client, concurrency: usize, abort: CancellationToken) -> CloudWatchLogsSink {
    let backoff = Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    };
    CloudWatchLogsSink::with_backoff(client, concurrency, abort, backoff)
}

fn destination(group: &str, stream: &str) -> Arc<Destination> {
    Arc::new(Destination {
        group: group.into(),
        stream: stream.into(),
        retention_days: None,
        group_class: None,
        emf: false,
    })
}

/// Events `(timestamp, message)` registered in read order with `tracker` (offsets 1, 2, ...).
fn events(
    tracker: &Arc<AckTracker>,
    budget: &Budget,
    to: &Arc<Destination>,
    items: &[(i64, String)],
) -> Vec<LogEvent> {
    items
        .iter()
        .enumerate()
        .map(|(n, (ts, message))| LogEvent {
            timestamp_ms: *ts,
            message: message.clone(),
            destination: Arc::clone(to),
            ack: tracker.register(n as u64 + 1),
            permit: budget.try_acquire(message.len()).expect("budget"),
        })
        .collect()
}

async fn stored(client: &Client, group: &str, stream: &str) -> Vec<(i64, String)> {
    let out = client
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .start_from_head(true)
        .limit(10_000)
        .send()
        .await
        .expect("GetLogEvents");
    out.events()
        .iter()
        .map(|e| {
            (
                e.timestamp().unwrap_or_default(),
                e.message().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn retention(client: &Client, group: &str) -> Option<i32> {
    let out = client
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .expect("DescribeLogGroups");
    let g = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group))
        .unwrap_or_else(|| panic!("group {group} missing"));
    g.retention_in_days()
}

#[tokio::test]
async fn creates_group_and_stream_then_delivers_everything_in_order() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    let to = Arc::new(Destination {
        retention_days: Some(7),
        group_class: Some("INFREQUENT_ACCESS".into()),
        ..(*destination("/cloudtail/app", "host-1")).clone()
    });
    // 300 events over 30 hours of the last two days, shuffled, with runs of equal timestamps.
    let base = now_ms() - 40 * HOUR_MS;
    let items: Vec<(i64, String)> = (0..300i64)
        .map(|n| {
            let ts = base + ((n * 7919) % 100) * (30 * HOUR_MS / 100);
            (ts, format!("event {n:03}"))
        })
        .collect();
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 24);
    let (groups0, streams0, sent0) = (
        COUNTERS.logs.groups_created.get(),
        COUNTERS.logs.streams_created.get(),
        COUNTERS.logs.events_sent.get(),
    );

    sink(client.clone(), 4, CancellationToken::new())
        .send(events(&tracker, &budget, &to, &items))
        .await;

    assert_eq!(tracker.committed(), 300, "every ack resolved");
    assert_eq!(budget.in_use_bytes(), 0, "every permit returned");
    let mut expected = items.clone();
    expected.sort_by_key(|(ts, _)| *ts); // stable: equal timestamps keep read order
    assert_eq!(stored(&client, &to.group, &to.stream).await, expected);
    assert_eq!(retention(&client, &to.group).await, Some(7));
    // moto ignores the class; the request must carry it.
    let create = &moto.requests_for("CreateLogGroup")[0];
    assert_eq!(create["body"]["logGroupClass"], "INFREQUENT_ACCESS");
    assert_eq!(COUNTERS.logs.groups_created.get(), groups0 + 1);
    assert_eq!(COUNTERS.logs.streams_created.get(), streams0 + 1);
    assert_eq!(COUNTERS.logs.events_sent.get(), sent0 + 300);

    let ops: Vec<String> = moto
        .requests()
        .iter()
        .map(|r| r["operation"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!ops.iter().any(|op| op == "DescribeLogStreams"), "{ops:?}");
    assert_eq!(
        &ops[..4],
        [
            "PutLogEvents",
            "CreateLogStream",
            "CreateLogGroup",
            "PutRetentionPolicy"
        ]
    );
    let puts = moto.requests_for("PutLogEvents");
    let accepted: Vec<&Value> = puts.iter().filter(|r| r["status"] == 200).collect();
    assert!(accepted.len() >= 2, "30 hours need two requests");
    for request in accepted {
        let stamps: Vec<i64> = request["body"]["logEvents"]
            .as_array()
            .expect("logEvents")
            .iter()
            .map(|e| e["timestamp"].as_i64().expect("timestamp"))
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "chronological");
        assert!(stamps[stamps.len() - 1] - stamps[0] < 24 * HOUR_MS, "span");
        assert!(request["body"].get("sequenceToken").is_none());
    }
}

#[tokio::test]
async fn rejected_events_are_counted_and_acknowledged() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    let to = destination("rejects", "s");
    let now = now_ms();
    let items = vec![
        (now - 20 * 24 * HOUR_MS, "old 1".to_string()),
        (now - 19 * 24 * HOUR_MS, "old 2".to_string()),
        (now - 1000, "ok 1".to_string()),
        (now, "ok 2".to_string()),
        (now + 3 * HOUR_MS, "new 1".to_string()),
    ];
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let rejected = |r| COUNTERS.logs.rejected(r).get();
    let (old0, new0) = (
        rejected(LogsRejectReason::TooOld),
        rejected(LogsRejectReason::TooNew),
    );
    let sent0 = COUNTERS.logs.events_sent.get();

    sink(client.clone(), 4, CancellationToken::new())
        .send(events(&tracker, &budget, &to, &items))
        .await;

    assert_eq!(
        tracker.committed(),
        5,
        "rejected events are acknowledged too"
    );
    let messages: Vec<String> = stored(&client, "rejects", "s")
        .await
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(messages, ["ok 1", "ok 2"]);
    assert_eq!(rejected(LogsRejectReason::TooOld), old0 + 2);
    assert_eq!(rejected(LogsRejectReason::TooNew), new0 + 1);
    assert_eq!(COUNTERS.logs.events_sent.get(), sent0 + 2);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_delivered() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    let to = destination("retries", "s");
    client
        .create_log_group()
        .log_group_name("retries")
        .send()
        .await
        .expect("group");
    client
        .create_log_stream()
        .log_group_name("retries")
        .log_stream_name("s")
        .send()
        .await
        .expect("stream");
    moto.inject_faults(json!({"throttle": 2, "operation": "PutLogEvents"}));
    moto.inject_faults(json!({"status": 503, "count": 1, "operation": "PutLogEvents"}));
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let retries0 = COUNTERS.logs.retries.get();

    let items = vec![(now_ms(), "hello".to_string())];
    sink(client.clone(), 4, CancellationToken::new())
        .send(events(&tracker, &budget, &to, &items))
        .await;

    assert_eq!(tracker.committed(), 1);
    assert_eq!(stored(&client, "retries", "s").await.len(), 1);
    assert_eq!(COUNTERS.logs.retries.get(), retries0 + 3);
    let faults: Vec<Value> = moto
        .requests_for("PutLogEvents")
        .iter()
        .map(|r| r["fault"].clone())
        .collect();
    assert_eq!(faults.len(), 4, "{faults:?}");
}

#[tokio::test]
async fn emf_destinations_carry_the_format_header() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    let emf = Arc::new(Destination {
        emf: true,
        ..(*destination("emf", "metrics")).clone()
    });
    let plain = destination("emf", "plain");
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let sink = sink(client.clone(), 4, CancellationToken::new());
    let doc = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]}}"#.to_string();
    sink.send(events(&tracker, &budget, &emf, &[(now_ms(), doc)]))
        .await;
    sink.send(events(&tracker, &budget, &plain, &[(now_ms(), "x".into())]))
        .await;

    let headers: Vec<(String, Value)> = moto
        .requests_for("PutLogEvents")
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            (
                r["body"]["logStreamName"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                r["headers"]["x-amzn-logs-format"].clone(),
            )
        })
        .collect();
    assert_eq!(
        headers,
        [
            ("metrics".to_string(), json!("json/emf")),
            ("plain".to_string(), Value::Null)
        ]
    );
}

#[tokio::test]
async fn at_the_shutdown_deadline_acks_stay_unresolved() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    moto.inject_faults(json!({"down": true}));
    let to = destination("down", "s");
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let abort = CancellationToken::new();
    let dropped0 = DROPPED_UNRESOLVED.load(Ordering::Relaxed);
    let items: Vec<(i64, String)> = (0..3).map(|n| (now_ms(), format!("m{n}"))).collect();
    let batch = events(&tracker, &budget, &to, &items);
    let sink = sink(client, 4, abort.clone());
    let task = tokio::spawn(async move { sink.send(batch).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !task.is_finished(),
        "retries without limit before the deadline"
    );
    abort.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("send returns at the deadline")
        .expect("send task");
    assert_eq!(tracker.committed(), 0, "nothing acknowledged");
    assert_eq!(tracker.outstanding(), 3);
    assert!(DROPPED_UNRESOLVED.load(Ordering::Relaxed) >= dropped0 + 3);
    assert_eq!(budget.in_use_bytes(), 0, "permits returned");
}

#[tokio::test]
async fn prepare_groups_sets_retention_on_new_and_existing_groups() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    client
        .create_log_group()
        .log_group_name("existing")
        .send()
        .await
        .expect("group");
    client
        .put_retention_policy()
        .log_group_name("existing")
        .retention_in_days(30)
        .send()
        .await
        .expect("retention");
    let with = |group: &str, days: Option<i32>| Destination {
        retention_days: days,
        ..(*destination(group, "s")).clone()
    };
    let destinations = [
        with("existing", Some(7)),
        with("fresh", Some(14)),
        with("untouched", None),
    ];
    let tracker = TaskTracker::new();
    prepare_groups(&client, &destinations, &tracker, CancellationToken::new()).await;
    tracker.close();
    tracker.wait().await;
    assert_eq!(retention(&client, "existing").await, Some(7));
    assert_eq!(retention(&client, "fresh").await, Some(14));
    let groups = client
        .describe_log_groups()
        .send()
        .await
        .expect("DescribeLogGroups");
    assert_eq!(groups.log_groups().len(), 2, "no group without retention");
}

// ---------------------------------------------------------------------------------------------
// A scripted endpoint: PutLogEvents answers 400 InvalidParameterException when the request holds
// a message containing "poison", else 200 after `delay`; it records every request's messages and
// the most requests it had in flight at once.

#[derive(Default)]
struct Script {
    /// Errors (status, code) to answer the first requests with, in order.
    failures: std::collections::VecDeque<(u16, &'static str)>,
    requests: Vec<Vec<String>>,
    /// Stream → (in flight now, most in flight at once).
    in_flight: HashMap<String, (usize, usize)>,
}

async fn scripted(
    delay: Duration,
    failures: &[(u16, &'static str)],
) -> (SocketAddr, Arc<Mutex<Script>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(Mutex::new(Script {
        failures: failures.iter().copied().collect(),
        ..Script::default()
    }));
    let shared = Arc::clone(&script);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = Arc::clone(&shared);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| answer(req, Arc::clone(&script), delay));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, script)
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    script: Arc<Mutex<Script>>,
    delay: Duration,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages: Vec<String> = parsed["logEvents"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let stream = parsed["logStreamName"].as_str().unwrap_or("").to_string();
    let failure = {
        let mut s = script.lock().expect("lock");
        s.requests.push(messages.clone());
        let (now, max) = s.in_flight.entry(stream.clone()).or_default();
        *now += 1;
        *max = (*max).max(*now);
        s.failures.pop_front()
    };
    tokio::time::sleep(delay).await;
    if let Some((now, _)) = script.lock().expect("lock").in_flight.get_mut(&stream) {
        *now -= 1;
    }
    let (status, body) = match failure {
        Some((status, code)) => (
            status,
            format!(r#"{{"__type":"{code}","message":"scripted"}}"#),
        ),
        None if messages.iter().any(|m| m.contains("poison")) => (
            400,
            r#"{"__type":"InvalidParameterException","message":"bad event"}"#.to_string(),
        ),
        None => (200, "{}".to_string()),
    };
    let response = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body)))
        .expect("response");
    Ok(response)
}

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
            message: format!("m{n}"),
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

#[tokio::test]
async fn concurrent_batches_to_a_new_stream_race_to_create_it() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    let to = destination("race", "s");
    let tracker = AckTracker::new(0);
    let budget = Budget::new(1 << 20);
    let (groups0, streams0) = (
        COUNTERS.logs.groups_created.get(),
        COUNTERS.logs.streams_created.get(),
    );
    let sink = sink(client.clone(), 4, CancellationToken::new());
    let mut sends = Vec::new();
    for n in 0..4u64 {
        let event = LogEvent {
            timestamp_ms: now_ms(),
            message: format!("m{n}"),
            destination: Arc::clone(&to),
            ack: tracker.register(n + 1),
            permit: budget.try_acquire(2).expect("budget"),
        };
        let sink = sink.clone();
        sends.push(tokio::spawn(async move { sink.send(vec![event]).await }));
    }
    for send in sends {
        send.await.expect("send");
    }
    assert_eq!(tracker.committed(), 4);
    assert_eq!(stored(&client, "race", "s").await.len(), 4);
    assert_eq!(COUNTERS.logs.groups_created.get(), groups0 + 1);
    assert_eq!(COUNTERS.logs.streams_created.get(), streams0 + 1);
    let creates = moto.requests_for("CreateLogStream").len();
    assert!(
        creates >= 2,
        "several calls raced to create the stream: {creates}"
    );
}

#[tokio::test]
async fn pipeline_and_sink_ship_every_event_of_several_streams() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let client = client(&moto.endpoint());
    let streams: Vec<Arc<Destination>> = (0..3)
        .map(|n| destination("/pipeline", &format!("s{n}")))
        .collect();
    let tracker = AckTracker::new(0);
    let budget = Budget::new(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let settings = cloudtail::pipeline::logs::LogsSettings {
        flush_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let abort = CancellationToken::new();
    let pipeline = tokio::spawn(cloudtail::pipeline::logs::run(
        rx,
        sink(client.clone(), 4, abort),
        settings,
    ));
    let total = 24_000u64;
    let base = now_ms() - 30 * HOUR_MS;
    let started = std::time::Instant::now();
    for n in 0..total {
        let message = format!("event {n}");
        let event = LogEvent {
            // Shuffled over 30 hours: every batch needs sorting and a cut at 24 hours.
            timestamp_ms: base + ((n as i64 * 7919) % 30_000) * (HOUR_MS / 1000),
            permit: budget.acquire(message.len()).await.expect("budget"),
            message,
            destination: Arc::clone(&streams[(n % 3) as usize]),
            ack: tracker.register(n + 1),
        };
        tx.send(event).await.expect("pipeline open");
    }
    drop(tx);
    pipeline.await.expect("pipeline");
    let elapsed = started.elapsed();

    assert_eq!(
        tracker.committed(),
        total,
        "every ack resolved at the flush"
    );
    assert_eq!(budget.in_use_bytes(), 0);
    let mut stored_total = 0;
    for to in &streams {
        let events = stored(&client, &to.group, &to.stream).await;
        assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
        stored_total += events.len() as u64;
    }
    assert_eq!(stored_total, total);
    let puts = moto.requests_for("PutLogEvents").len();
    eprintln!("{total} events through pipeline + sink + moto in {elapsed:?}, {puts} PutLogEvents");
}
