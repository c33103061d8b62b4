//! Tests of the logs pipeline with a recording fake sink and a paused clock.

use super::*;
use crate::pipeline::ack::{Ack, AckTracker};
use crate::pipeline::budget::Budget;
use std::sync::Mutex;

/// Records every batch; sends to streams named `slow*` wait for `gate` permits; every send
/// takes `delay`.
#[derive(Clone)]
struct Recorder {
    log: Arc<Mutex<Log>>,
    gate: Arc<Semaphore>,
    delay: Duration,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            log: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Log {
    started: Vec<(String, Vec<String>)>,
    finished: Vec<(String, Vec<String>)>,
    in_flight: usize,
    max_in_flight: usize,
    per_stream: HashMap<String, usize>,
    max_per_stream: usize,
}

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("lock")
    }
}

impl Sink<LogEvent> for Recorder {
    async fn send(&self, batch: Vec<LogEvent>) {
        let stream = batch[0].destination.stream.clone();
        let messages: Vec<String> = batch.iter().map(|e| e.message.to_string()).collect();
        assert!(
            batch.iter().all(|e| e.destination.stream == stream),
            "a batch mixes destinations"
        );
        {
            let mut log = self.log();
            log.started.push((stream.clone(), messages.clone()));
            log.in_flight += 1;
            log.max_in_flight = log.max_in_flight.max(log.in_flight);
            let n = log.per_stream.entry(stream.clone()).or_default();
            *n += 1;
            let n = *n;
            log.max_per_stream = log.max_per_stream.max(n);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if stream.starts_with("slow") {
            self.gate.acquire().await.expect("gate").forget();
        }
        let mut log = self.log();
        log.in_flight -= 1;
        *log.per_stream.entry(stream.clone()).or_default() -= 1;
        log.finished.push((stream, messages));
        drop(log);
        for event in batch {
            event.ack.done();
        }
    }
}

fn destination(stream: &str) -> Arc<Destination> {
    Arc::new(Destination {
        group: "g".into(),
        stream: stream.into(),
        retention_days: None,
        group_class: None,
        emf: false,
    })
}

fn event(budget: &Budget, to: &Arc<Destination>, message: String, ack: Ack) -> LogEvent {
    let permit = budget.try_acquire(message.len()).expect("budget");
    LogEvent {
        timestamp_ms: 1,
        message: message.into(),
        destination: Arc::clone(to),
        ack,
        permit,
    }
}

fn settings() -> LogsSettings {
    LogsSettings {
        flush_interval: Duration::from_secs(1),
        ..LogsSettings::default()
    }
}

/// Sends `events` (stream, message) into a fresh pipeline, closes it, waits for the end.
async fn run_all(sink: Recorder, settings: LogsSettings, events: Vec<(Arc<Destination>, String)>) {
    let budget = Budget::new(1 << 30);
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(run(rx, sink, settings));
    for (to, message) in events {
        tx.send(vec![event(&budget, &to, message, Ack::none())])
            .await
            .expect("send");
    }
    drop(tx);
    task.await.expect("pipeline");
    assert_eq!(budget.in_use_bytes(), 0, "every permit returned");
}

fn sizes(batches: &[(String, Vec<String>)], stream: &str) -> Vec<usize> {
    batches
        .iter()
        .filter(|(s, _)| s == stream)
        .map(|(_, m)| m.len())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn one_batch_per_destination_and_everything_flushed_on_close() {
    let (a, b) = (destination("a"), destination("b"));
    let events = (0..50)
        .map(|n| {
            let to = if n % 2 == 0 { &a } else { &b };
            (Arc::clone(to), format!("{n}"))
        })
        .collect();
    let sink = Recorder::default();
    run_all(sink.clone(), settings(), events).await;
    let log = sink.log();
    let a_msgs: Vec<String> = log
        .finished
        .iter()
        .filter(|(s, _)| s == "a")
        .flat_map(|(_, m)| m.clone())
        .collect();
    let expected: Vec<String> = (0..50).step_by(2).map(|n| n.to_string()).collect();
    assert_eq!(a_msgs, expected, "every event once, in read order");
    assert_eq!(sizes(&log.finished, "b").iter().sum::<usize>(), 25);
}

#[tokio::test(start_paused = true)]
async fn closes_at_ten_thousand_events() {
    let a = destination("a");
    let events = (0..25_000)
        .map(|_| (Arc::clone(&a), "x".to_string()))
        .collect();
    let sink = Recorder::default();
    run_all(sink.clone(), settings(), events).await;
    let mut got = sizes(&sink.log().finished, "a");
    got.sort_unstable();
    assert_eq!(got, vec![5_000, 10_000, 10_000]);
}

#[tokio::test(start_paused = true)]
async fn closes_before_a_mebibyte_counting_the_overhead() {
    let a = destination("a");
    // 10 × (104_831 + 26) = 1_048_570 fits; an eleventh does not.
    let events = (0..25)
        .map(|_| (Arc::clone(&a), "x".repeat(104_831)))
        .collect();
    let sink = Recorder::default();
    run_all(sink.clone(), settings(), events).await;
    let mut got = sizes(&sink.log().finished, "a");
    got.sort_unstable();
    assert_eq!(got, vec![5, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_ships_after_the_flush_interval() {
    let budget = Budget::new(1 << 20);
    let (tx, rx) = mpsc::channel(10);
    let sink = Recorder::default();
    let _task = tokio::spawn(run(rx, sink.clone(), settings()));
    let a = destination("a");
    tx.send(vec![event(&budget, &a, "one".into(), Ack::none())])
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(vec![event(&budget, &a, "two".into(), Ack::none())])
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(sink.log().finished.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sizes(&sink.log().finished, "a"),
        vec![2],
        "age counts from the oldest"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_stream_does_not_block_the_others() {
    let budget = Budget::new(1 << 20);
    let (tx, rx) = mpsc::channel(100);
    let sink = Recorder::default();
    let settings = LogsSettings {
        concurrency: 4,
        per_destination: 2,
        max_batch_events: 1,
        ..settings()
    };
    let task = tokio::spawn(run(rx, sink.clone(), settings));
    let (slow, fast) = (destination("slow"), destination("fast"));
    for n in 0..5 {
        tx.send(vec![event(&budget, &slow, format!("s{n}"), Ack::none())])
            .await
            .expect("send");
    }
    for n in 0..20 {
        tx.send(vec![event(&budget, &fast, format!("f{n}"), Ack::none())])
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let log = sink.log();
        assert_eq!(
            sizes(&log.finished, "fast").len(),
            20,
            "fast stream delivered"
        );
        assert_eq!(
            sizes(&log.started, "slow").len(),
            2,
            "slow stream holds its cap"
        );
        assert!(sizes(&log.finished, "slow").is_empty());
    }
    sink.gate.add_permits(5);
    drop(tx);
    task.await.expect("pipeline");
    assert_eq!(sizes(&sink.log().finished, "slow").len(), 5);
    assert_eq!(budget.in_use_bytes(), 0);
}

#[tokio::test(start_paused = true)]
async fn never_more_in_flight_than_the_caps() {
    let streams: Vec<Arc<Destination>> = (0..6).map(|n| destination(&format!("s{n}"))).collect();
    let events = (0..300)
        .map(|n| (Arc::clone(&streams[n % 6]), format!("{n}")))
        .collect();
    let sink = Recorder {
        delay: Duration::from_millis(50),
        ..Recorder::default()
    };
    let settings = LogsSettings {
        concurrency: 5,
        per_destination: 2,
        max_batch_events: 7,
        ..settings()
    };
    run_all(sink.clone(), settings, events).await;
    let log = sink.log();
    assert!(log.max_in_flight <= 5, "global cap: {}", log.max_in_flight);
    assert_eq!(log.max_in_flight, 5, "the cap is used");
    assert!(log.max_per_stream <= 2, "per-destination cap");
    let total: usize = log.finished.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(total, 300);
}

#[tokio::test(start_paused = true)]
async fn batches_are_dispatched_oldest_first() {
    let streams: Vec<Arc<Destination>> = ["a", "b", "a", "c", "b"]
        .iter()
        .map(|s| destination(s))
        .collect();
    let events: Vec<(Arc<Destination>, String)> = streams
        .iter()
        .enumerate()
        .map(|(n, to)| (Arc::clone(to), format!("{n}")))
        .collect();
    let sink = Recorder {
        delay: Duration::from_millis(10),
        ..Recorder::default()
    };
    let settings = LogsSettings {
        concurrency: 1,
        max_batch_events: 1,
        ..settings()
    };
    run_all(sink.clone(), settings, events).await;
    let order: Vec<String> = sink
        .log()
        .started
        .iter()
        .map(|(_, m)| m[0].clone())
        .collect();
    assert_eq!(order, vec!["0", "1", "2", "3", "4"]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_flush_waits_for_every_send_and_ack() {
    let budget = Budget::new(1 << 20);
    let tracker = AckTracker::new(0);
    let (tx, rx) = mpsc::channel(100);
    let sink = Recorder {
        delay: Duration::from_secs(3),
        ..Recorder::default()
    };
    let task = tokio::spawn(run(rx, sink.clone(), settings()));
    let a = destination("a");
    for n in 1..=30u64 {
        let ack = tracker.register(n * 10);
        tx.send(vec![event(&budget, &a, format!("{n}"), ack)])
            .await
            .expect("send");
    }
    drop(tx);
    task.await.expect("pipeline");
    assert_eq!(tracker.committed(), 300);
    assert_eq!(tracker.outstanding(), 0);
    assert_eq!(budget.in_use_bytes(), 0);
}

#[test]
fn a_burst_of_mixed_destinations_keeps_each_lane_in_order() {
    let budget = Budget::new(1 << 20);
    let mut state = State::new(settings());
    let t0 = Instant::now();
    let a = destination("a");
    let b = destination("b");
    // Equal to `a` but another allocation, as two files writing to one stream have.
    let a_again = destination("a");
    let order = [
        (&a, "1"),
        (&a, "2"),
        (&b, "x"),
        (&a_again, "3"),
        (&a, "4"),
        (&b, "y"),
    ];
    let mut burst: Vec<LogEvent> = order
        .iter()
        .map(|(to, m)| event(&budget, to, (*m).into(), Ack::none()))
        .collect();
    state.push_all(&mut burst, t0);
    assert!(burst.is_empty());
    state.close_due(t0 + Duration::from_secs(1));
    let mut sent = Vec::new();
    while let Some((to, batch)) = state.next_ready() {
        let messages: Vec<String> = batch.iter().map(|e| e.message.to_string()).collect();
        sent.push((to.stream.clone(), messages));
    }
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                "a".to_string(),
                vec!["1".into(), "2".into(), "3".into(), "4".into()]
            ),
            ("b".to_string(), vec!["x".into(), "y".into()]),
        ]
    );
}

#[test]
fn lanes_are_forgotten_once_idle() {
    let budget = Budget::new(1 << 20);
    let mut state = State::new(settings());
    let t0 = Instant::now();
    for stream in ["a", "b"] {
        let to = destination(stream);
        state.push_all(&mut vec![event(&budget, &to, "m".into(), Ack::none())], t0);
    }
    assert_eq!(state.next_deadline(), Some(t0 + Duration::from_secs(1)));
    state.close_due(t0 + Duration::from_secs(1));
    assert!(state.next_deadline().is_none());
    let mut sent = Vec::new();
    while let Some((to, batch)) = state.next_ready() {
        sent.push(to);
        drop(batch);
    }
    assert_eq!(sent.len(), 2);
    assert!(!state.has_batches());
    for to in &sent {
        state.finished(to);
    }
    assert!(state.lanes.is_empty() && state.eligible.is_empty() && state.deadlines.is_empty());
}
