//! The EMF source over real loopback sockets: routing by mode, plain JSON and junk, a line
//! over the limit closing the connection, and a full budget stopping the reads.

use std::io::{Read, Write};
use std::time::Duration;

use super::*;
use crate::pipeline::testing::Events;

const BASIC: &str = include_str!("../../../tests/fixtures/emf-1-basic-tcp.json");
const MULTI: &str = include_str!("../../../tests/fixtures/emf-2-multi-dimension-sets-tcp.json");
const UDP: &str = include_str!("../../../tests/fixtures/emf-6-basic-udp-datagram.json");

fn settings(mode: EmfMode) -> EmfSettings {
    EmfSettings {
        mode,
        log_group: "/metrics/default".into(),
        log_stream: "host".into(),
        max_document_bytes: MAX_DOCUMENT_BYTES,
        max_connections: 4,
    }
}

struct Running {
    address: SocketAddr,
    logs: Events,
    metrics: mpsc::Receiver<MetricDatum>,
    token: CancellationToken,
}

async fn start_tcp(mode: EmfMode, budget: Budget, max_document_bytes: usize) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let (log_tx, logs) = mpsc::channel(100);
    let (metric_tx, metrics) = mpsc::channel(100);
    let token = CancellationToken::new();
    let outputs = EmfOutputs {
        logs: Some(log_tx),
        metrics: Some(metric_tx),
    };
    let settings = EmfSettings {
        max_document_bytes,
        ..settings(mode)
    };
    tokio::spawn(run_tcp(listener, settings, budget, outputs, token.clone()));
    Running {
        address,
        logs: Events::new(logs),
        metrics,
        token,
    }
}

/// The next log event, failing after 5 s.
async fn next(events: &mut Events) -> LogEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("in time")
        .expect("open")
}

async fn recv<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("in time")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_documents_become_emf_log_events_and_plain_json_plain_ones() {
    let mut run = start_tcp(EmfMode::Logs, Budget::new(1 << 20), MAX_DOCUMENT_BYTES).await;
    let mut client = std::net::TcpStream::connect(run.address).expect("connect");
    let text = format!("{BASIC}{MULTI}not json at all\n{{\"level\":\"info\"}}\n");
    client.write_all(text.as_bytes()).expect("write");
    let first = next(&mut run.logs).await;
    assert!(first.destination.emf);
    assert_eq!(first.destination.group, "/probe/emf");
    assert_eq!(first.destination.stream, "emf-stream");
    assert_eq!(first.timestamp_ms, 1_795_822_181_000);
    assert_eq!(first.message, BASIC.trim_end());
    let second = next(&mut run.logs).await;
    assert!(
        Arc::ptr_eq(&first.destination, &second.destination),
        "shared"
    );
    let plain = next(&mut run.logs).await;
    assert!(!plain.destination.emf);
    assert_eq!(plain.destination.group, "/metrics/default");
    assert_eq!(plain.message, "{\"level\":\"info\"}");
    // The client keeps the connection open: more documents follow on it.
    client.write_all(MULTI.as_bytes()).expect("write");
    assert!(next(&mut run.logs).await.destination.emf);
    run.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_mode_sends_datums_not_logs() {
    let mut run = start_tcp(EmfMode::Metrics, Budget::new(1 << 20), MAX_DOCUMENT_BYTES).await;
    let mut client = std::net::TcpStream::connect(run.address).expect("connect");
    client.write_all(MULTI.as_bytes()).expect("write");
    let a = recv(&mut run.metrics).await;
    let b = recv(&mut run.metrics).await;
    assert_eq!((a.name.as_str(), b.name.as_str()), ("Errors", "Errors"));
    assert_eq!(b.dimensions.len(), 2);
    client.write_all(b"{\"plain\":1}\n").expect("write");
    assert!(!next(&mut run.logs).await.destination.emf);
    run.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_the_limit_closes_the_connection() {
    let mut run = start_tcp(EmfMode::Logs, Budget::new(1 << 20), 1000).await;
    let before = crate::telemetry::COUNTERS
        .metrics
        .emf_documents(EmfResult::TooLarge)
        .get();
    let mut client = std::net::TcpStream::connect(run.address).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Endless bytes, no newline: the server stops after the limit and closes.
    let junk = vec![b'x'; 64 * 1024];
    let _ = client.write_all(&junk);
    let mut byte = [0u8; 1];
    let closed = matches!(client.read(&mut byte), Ok(0) | Err(_));
    assert!(closed, "connection closed");
    let after = crate::telemetry::COUNTERS
        .metrics
        .emf_documents(EmfResult::TooLarge)
        .get();
    assert!(after > before);
    // Other clients are still served.
    let mut other = std::net::TcpStream::connect(run.address).expect("connect");
    other.write_all(BASIC.as_bytes()).expect("write");
    assert!(next(&mut run.logs).await.destination.emf);
    run.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_stops_reading_until_events_are_delivered() {
    // Room for two basic documents (about 650 bytes each plus overhead).
    let budget = Budget::new(1500);
    let mut run = start_tcp(EmfMode::Logs, budget.clone(), MAX_DOCUMENT_BYTES).await;
    let mut client = std::net::TcpStream::connect(run.address).expect("connect");
    for _ in 0..6 {
        client.write_all(BASIC.as_bytes()).expect("write");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    while let Ok(event) = run.logs.try_recv() {
        held.push(event);
    }
    assert_eq!(held.len(), 2, "the reader waits for budget");
    drop(held);
    let mut delivered = 0;
    while delivered < 4 {
        drop(next(&mut run.logs).await);
        delivered += 1;
    }
    assert_eq!(budget.in_use_bytes(), 0);
    run.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tcp_document_is_delivered_in_order_through_a_small_channel_and_budget() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    // Room for 3 documents in the budget and 5 in the channel: reads of many documents wait,
    // a chunk at a time, and must not lose or reorder any.
    let (log_tx, logs) = mpsc::channel(5);
    let mut logs = Events::new(logs);
    let token = CancellationToken::new();
    let outputs = EmfOutputs {
        logs: Some(log_tx),
        metrics: None,
    };
    let budget = Budget::new(3 * (BASIC.len() + 64));
    let task = run_tcp(
        listener,
        settings(EmfMode::Logs),
        budget.clone(),
        outputs,
        token.clone(),
    );
    tokio::spawn(task);
    let total = 2_000;
    let writer = std::thread::spawn(move || {
        let mut client = std::net::TcpStream::connect(address).expect("connect");
        let mut text = String::new();
        for i in 0..total {
            text.push_str(&BASIC.replacen("req-42", &format!("req-{i}"), 1));
        }
        client.write_all(text.as_bytes()).expect("write");
    });
    for i in 0..total {
        let event = next(&mut logs).await;
        assert!(event.destination.emf);
        let id = format!("\"req-{i}\"");
        assert!(event.message.contains(&id), "{i}: {}", event.message);
    }
    writer.join().expect("writer");
    assert!(logs.try_recv().is_err(), "nothing more");
    assert_eq!(budget.in_use_bytes(), 0);
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_may_hold_several_lines() {
    let socket =
        crate::sources::udp::bind("127.0.0.1:0".parse().expect("addr"), 1 << 20).expect("bind");
    let address = socket.local_addr().expect("addr");
    let (log_tx, logs) = mpsc::channel(100);
    let mut logs = Events::new(logs);
    let token = CancellationToken::new();
    let outputs = EmfOutputs {
        logs: Some(log_tx),
        metrics: None,
    };
    let budget = Budget::new(1 << 20);
    tokio::spawn(run_udp(
        socket,
        settings(EmfMode::Logs),
        budget,
        outputs,
        None,
        token.clone(),
    ));
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
    client.send_to(UDP.as_bytes(), address).expect("send");
    let two = format!("{MULTI}{MULTI}");
    client
        .send_to(two.trim_end().as_bytes(), address)
        .expect("send");
    for _ in 0..3 {
        let event = next(&mut logs).await;
        assert!(event.destination.emf);
    }
    token.cancel();
}

#[test]
fn invalid_emf_is_shipped_as_a_plain_log() {
    let mut router = Router::new(settings(EmfMode::Logs));
    let doc = BASIC.replace("\"Requests\": 1,", "\"Requests\": \"x\",");
    match router.route(doc.as_bytes()) {
        Item::Log { destination, .. } => assert!(!destination.emf),
        other => panic!("{other:?}"),
    }
    assert!(matches!(router.route(b"   "), Item::Nothing));
}

/// Documents per second through one TCP connection in logs mode (framing, JSON check,
/// budget, channel): `cargo test --release --lib emf_tcp_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn emf_tcp_throughput() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut run = start_tcp(EmfMode::Logs, Budget::new(64 << 20), MAX_DOCUMENT_BYTES).await;
        let documents = 200_000usize;
        let address = run.address;
        let writer = std::thread::spawn(move || {
            let mut client = std::net::TcpStream::connect(address).expect("connect");
            let chunk = BASIC.repeat(100);
            for _ in 0..documents / 100 {
                client.write_all(chunk.as_bytes()).expect("write");
            }
            client
        });
        let started = std::time::Instant::now();
        // Taken as the logs pipeline takes them: everything waiting per wake-up.
        let mut burst = Vec::with_capacity(8);
        let mut received = 0;
        while received < documents {
            run.logs.rx.recv_many(&mut burst, 8).await;
            received += burst.drain(..).map(|group| group.len()).sum::<usize>();
        }
        let secs = started.elapsed().as_secs_f64();
        let _client = writer.join().expect("writer");
        println!(
            "{documents} EMF documents ({} bytes each) in {secs:.2}s: {:.0} documents/s, {:.0} MB/s",
            BASIC.len(),
            documents as f64 / secs,
            (documents * BASIC.len()) as f64 / secs / 1e6
        );
        run.token.cancel();
    });
}
