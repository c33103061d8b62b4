//! Shared by the CloudWatch Logs sink tests (`tests/cloudwatch_logs_sink*.rs` do
//! `mod logs_sink;`): clients built as the agent builds them (SDK retries off), a sink with a
//! short backoff, events registered with an ack tracker, read-back helpers, and a scripted
//! PutLogEvents endpoint for what moto cannot do. Never: reaches the network.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::Client;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use cloudtail::pipeline::ack::AckTracker;
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::retry::Backoff;
use cloudtail::pipeline::{Destination, LogEvent};
use cloudtail::sinks::cloudwatch_logs::CloudWatchLogsSink;

use super::support::test_credentials;

/// The counters are process-wide: one test at a time.
pub static SERIAL: AsyncMutex<()> = AsyncMutex::const_new(());

pub const HOUR_MS: i64 = 60 * 60 * 1000;

pub fn now_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(now.as_millis()).expect("millis")
}

/// A client as the agent builds one: test credentials, no SDK retries.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::v2026_01_12())
        .region(Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

pub fn sink(client: Client, concurrency: usize, abort: CancellationToken) -> CloudWatchLogsSink {
    let backoff = Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    };
    CloudWatchLogsSink::with_backoff(client, concurrency, abort, backoff)
}

pub fn destination(group: &str, stream: &str) -> Arc<Destination> {
    Arc::new(Destination {
        group: group.into(),
        stream: stream.into(),
        retention_days: None,
        group_class: None,
        emf: false,
    })
}

/// Events `(timestamp, message)` registered in read order with `tracker` (offsets 1, 2, ...).
pub fn events(
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
            message: message.clone().into(),
            destination: Arc::clone(to),
            ack: tracker.register(n as u64 + 1),
            permit: budget.try_acquire(message.len()).expect("budget"),
        })
        .collect()
}

pub async fn stored(client: &Client, group: &str, stream: &str) -> Vec<(i64, String)> {
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

pub async fn retention(client: &Client, group: &str) -> Option<i32> {
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

// ---------------------------------------------------------------------------------------------
// A scripted endpoint: PutLogEvents answers 400 InvalidParameterException when the request holds
// a message containing "poison", else 200 after `delay`; it records every request's messages and
// the most requests it had in flight at once.

#[derive(Default)]
pub struct Script {
    /// Errors (status, code) to answer the first requests with, in order.
    pub failures: VecDeque<(u16, &'static str)>,
    pub requests: Vec<Vec<String>>,
    /// Stream → (in flight now, most in flight at once).
    pub in_flight: HashMap<String, (usize, usize)>,
}

pub async fn scripted(
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
