//! The CloudWatch Logs sink against the stub endpoint (moto behind `moto_front.py`).
//!
//! Drives `CloudWatchLogsSink`, `prepare_groups` and the logs pipeline directly through the real
//! AWS SDK, with the SDK's own retries off as the agent configures them; no agent binary, no
//! files. Checks what lands in moto, the requests it journaled, the acks and the counters.
//! Tests run one at a time (the counters are process-wide) and each starts its own stub.

mod logs_sink;
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use cloudtail::pipeline::ack::{AckTracker, DROPPED_UNRESOLVED};
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::{Destination, LogEvent, Sink};
use cloudtail::sinks::cloudwatch_logs::prepare_groups;
use cloudtail::telemetry::{LogsRejectReason, COUNTERS};
use logs_sink::{client, destination, events, now_ms, retention, sink, stored, HOUR_MS, SERIAL};
use support::Moto;

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
            message: format!("m{n}").into(),
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
            message: message.into(),
            destination: Arc::clone(&streams[(n % 3) as usize]),
            ack: tracker.register(n + 1),
        };
        tx.send(vec![event]).await.expect("pipeline open");
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
