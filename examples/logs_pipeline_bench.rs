//! Throughput of the logs pipeline and of request planning, with a sink that only resolves acks.
//!
//! `cargo run --release --example logs_pipeline_bench [EVENTS] [DESTINATIONS] [MESSAGE_BYTES]
//! [baseline]`; `baseline` replaces the pipeline with a loop that drops events, to show what the
//! producer side (budget, message copy, channel) costs on its own.
//! Measures the agent's own cost per event (batching per destination, queueing, dispatch,
//! sorting and splitting into requests), never AWS. Prints events/s and MB/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudtail::pipeline::ack::Ack;
use cloudtail::pipeline::budget::Budget;
use cloudtail::pipeline::logs::{run, LogsSettings};
use cloudtail::pipeline::{Destination, LogEvent, Sink};
use cloudtail::sinks::cloudwatch_logs::batch::plan;
use tokio::sync::mpsc;

/// Plans each batch as the real sink does, then resolves every ack.
#[derive(Clone)]
struct PlanOnly;

impl Sink<LogEvent> for PlanOnly {
    async fn send(&self, batch: Vec<LogEvent>) {
        let plan = plan(batch);
        for event in plan.requests.into_iter().flatten().chain(plan.invalid) {
            event.ack.done();
        }
    }
}

async fn drain(mut rx: mpsc::Receiver<Vec<LogEvent>>) {
    while let Some(group) = rx.recv().await {
        for event in group {
            event.ack.done();
        }
    }
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let events = arg(1, 2_000_000);
    let destinations = arg(2, 16);
    let size = arg(3, 200);
    let budget = Budget::new(256 << 20);
    let to: Vec<Arc<Destination>> = (0..destinations)
        .map(|n| {
            Arc::new(Destination {
                group: "/bench/app".into(),
                stream: format!("stream-{n}"),
                retention_days: None,
                group_class: None,
                emf: false,
            })
        })
        .collect();
    let message = "x".repeat(size);
    let (tx, rx) = mpsc::channel(64);
    let settings = LogsSettings {
        flush_interval: Duration::from_secs(1),
        ..LogsSettings::default()
    };
    let started = Instant::now();
    let baseline = std::env::args().nth(4).is_some_and(|a| a == "baseline");
    let pipeline = if baseline {
        tokio::spawn(drain(rx))
    } else {
        tokio::spawn(run(rx, PlanOnly, settings))
    };
    let base = 1_764_000_000_000i64;
    for n in 0..events {
        let permit = budget.acquire(size).await.expect("budget");
        let event = LogEvent {
            // Shuffled within a few seconds: the sort has work to do.
            timestamp_ms: base + ((n * 7919) % 5000) as i64,
            message: message.clone().into(),
            destination: Arc::clone(&to[n % destinations]),
            ack: Ack::none(),
            permit,
        };
        if tx.send(vec![event]).await.is_err() {
            break;
        }
    }
    drop(tx);
    pipeline.await.expect("pipeline");
    let secs = started.elapsed().as_secs_f64();
    let bytes = (events * (size + 26)) as f64;
    println!(
        "{events} events of {size} B over {destinations} destinations: {:.2} s, {:.0} events/s, {:.1} MB/s (API bytes)",
        secs,
        events as f64 / secs,
        bytes / secs / 1e6
    );
}
