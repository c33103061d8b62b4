//! The StatsD source: UDP datagrams of `name:value|type[|@rate][|#tags]` lines, aggregated in
//! place over `aggregation_interval`, then handed to the metrics pipeline as datums.
//!
//! Aggregating here (not in the pipeline) is what lets millions of lines a second cost one
//! datum per series per interval: a line is parsed borrowing from the receive buffer and
//! merged into its series without allocating (see `statsd/aggregate.rs`). Malformed lines are
//! counted and skipped, never fatal. Datagram senders never wait for us: what the kernel
//! cannot queue is lost, and counted from `SO_RXQ_OVFL`. On cancellation the interval so far is
//! flushed, so a shutdown loses no aggregated data. This source never touches AWS.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::StatsdConfig;
use crate::pipeline::MetricDatum;
use crate::sources::udp::Receiver;
use crate::telemetry::{self, DropReason, COUNTERS};

pub mod aggregate;
pub mod parse;

use crate::pipeline::now_ms;
use aggregate::{Aggregator, Refused};

/// What the StatsD source needs at run time.
#[derive(Debug, Clone)]
pub struct StatsdSettings {
    /// The namespace of every datum.
    pub namespace: Arc<str>,
    /// How long lines are aggregated before their datums are handed on.
    pub aggregation_interval: Duration,
}

impl StatsdSettings {
    /// The settings of a `[statsd]` table.
    pub fn from_config(config: &StatsdConfig) -> Self {
        StatsdSettings {
            namespace: Arc::from(config.namespace.as_str()),
            aggregation_interval: config.aggregation_interval,
        }
    }
}

/// Reads datagrams until `token` is cancelled, handing the datums of each interval to `tx`;
/// flushes the last interval before returning. `socket` may be shared (`Arc`), so a reload
/// that changes the settings but not the address hands the same socket to the next run.
pub async fn run(
    socket: impl Borrow<UdpSocket>,
    settings: StatsdSettings,
    tx: mpsc::Sender<MetricDatum>,
    token: CancellationToken,
) {
    let mut receiver = Receiver::new();
    let mut aggregator = Aggregator::new();
    let mut ticker = tokio::time::interval(settings.aggregation_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => flush(&mut aggregator, &settings, &tx).await,
            received = receiver.recv(socket.borrow()) => match received {
                Ok(count) => {
                    for i in 0..count {
                        add_datagram(&mut aggregator, receiver.datagram(i));
                    }
                    COUNTERS.metrics.statsd_kernel_drops.raise_to(receiver.kernel_drops);
                }
                Err(error) => tracing::warn!(%error, "Reading the StatsD UDP socket failed."),
            },
        }
    }
    flush(&mut aggregator, &settings, &tx).await;
}

/// Parses and aggregates every line of one datagram; counts the lines once per datagram.
pub fn add_datagram(aggregator: &mut Aggregator, datagram: &[u8]) {
    let text = match std::str::from_utf8(datagram) {
        Ok(text) => text,
        Err(_) => {
            let lines = datagram.split(|&b| b == b'\n').filter(|l| !l.is_empty());
            return telemetry::statsd_lines(0, lines.count() as u64);
        }
    };
    let (mut ok, mut malformed) = (0u64, 0u64);
    for line in text.split('\n') {
        if line.is_empty() || line == "\r" {
            continue;
        }
        match parse::parse_line(line) {
            Ok(parsed) => match aggregator.add(&parsed) {
                Ok(()) => ok += 1,
                Err(Refused::TooManySeries) => {
                    telemetry::metric_datums_dropped(DropReason::Budget, 1);
                }
                Err(Refused::Malformed) => malformed += 1,
            },
            Err(_) => malformed += 1,
        }
    }
    telemetry::statsd_lines(ok, malformed);
}

async fn flush(
    aggregator: &mut Aggregator,
    settings: &StatsdSettings,
    tx: &mpsc::Sender<MetricDatum>,
) {
    let datums = aggregator.flush(&settings.namespace, now_ms());
    let mut lost = 0u64;
    for datum in datums {
        if tx.send(datum).await.is_err() {
            lost += 1;
        }
    }
    telemetry::metric_datums_dropped(DropReason::Channel, lost);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::MetricValue;

    #[tokio::test]
    async fn datagrams_become_datums_and_shutdown_flushes() {
        let socket =
            crate::sources::udp::bind("127.0.0.1:0".parse().expect("addr"), 1 << 20).expect("bind");
        let address = socket.local_addr().expect("addr");
        let (tx, mut rx) = mpsc::channel(100);
        let token = CancellationToken::new();
        let settings = StatsdSettings {
            namespace: Arc::from("StatsD"),
            aggregation_interval: Duration::from_secs(3600),
        };
        let task = tokio::spawn(run(socket, settings, tx, token.clone()));
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        client
            .send_to(b"hits:1|c\nhits:2|c|#env:prod\njunk\nhits:4|c", address)
            .expect("send");
        let before = COUNTERS.metrics.statsd_lines(false).get();
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
        task.await.expect("source");
        let mut datums = Vec::new();
        while let Some(d) = rx.recv().await {
            datums.push(d);
        }
        datums.sort_by(|a, b| a.dimensions.cmp(&b.dimensions));
        let values: Vec<MetricValue> = datums.iter().map(|d| d.value.clone()).collect();
        let single = |v: f64| MetricValue::Values {
            values: vec![v],
            counts: vec![1.0],
        };
        assert_eq!(values, vec![single(5.0), single(2.0)]);
        assert!(COUNTERS.metrics.statsd_lines(false).get() >= before.max(1));
    }

    /// Lines per second through the real socket path (recvmmsg, UTF-8 check, parse,
    /// aggregate) on a current-thread runtime, i.e. one core:
    /// `cargo test --release --lib statsd_socket_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn statsd_socket_throughput() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let socket = runtime.block_on(async {
            crate::sources::udp::bind("127.0.0.1:0".parse().expect("addr"), 32 << 20).expect("bind")
        });
        let address = socket.local_addr().expect("addr");
        let mut datagram = String::new();
        for i in 0..60 {
            datagram.push_str(&format!("app.req.{}:1|c|#env:prod,svc:api\n", i % 40));
        }
        let datagrams = 200_000u64;
        let lines = datagrams * 60;
        let (tx, rx) = mpsc::channel(100_000);
        let token = CancellationToken::new();
        let settings = StatsdSettings {
            namespace: Arc::from("StatsD"),
            aggregation_interval: Duration::from_secs(3600),
        };
        let ok_before = COUNTERS.metrics.statsd_lines(true).get();
        let sender = std::thread::spawn(move || {
            let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
            let started = std::time::Instant::now();
            for _ in 0..datagrams {
                let _ = client.send_to(datagram.as_bytes(), address);
            }
            started.elapsed()
        });
        let started = std::time::Instant::now();
        let stopper = token.clone();
        runtime.block_on(async move {
            let source = tokio::spawn(run(socket, settings, tx, token));
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = COUNTERS.metrics.statsd_lines(true).get() - ok_before;
                if now == last && now > 0 {
                    break;
                }
                last = now;
            }
            stopper.cancel();
            let _ = source.await;
            drop(rx);
        });
        let send_time = sender.join().expect("sender");
        let received = COUNTERS.metrics.statsd_lines(true).get() - ok_before;
        let elapsed = started.elapsed().as_secs_f64() - 0.2;
        println!(
            "sent {lines} lines in {:.2}s; aggregated {received} ({:.1}%) in {elapsed:.2}s: \
             {:.2} M lines/s; kernel drops {}",
            send_time.as_secs_f64(),
            received as f64 * 100.0 / lines as f64,
            received as f64 / elapsed / 1e6,
            COUNTERS.metrics.statsd_kernel_drops.get()
        );
    }
}
