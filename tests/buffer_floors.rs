//! One memory budget for every pipeline, with a floor for each: a trace flood with X-Ray down
//! fills the traces' share, yet log lines and EMF documents sent meanwhile still get memory and
//! land. In its own test binary: the flood's loopback datagrams would disturb other tests.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::logs::wait_for_events;
use support::{
    free_tcp_port, free_udp_port, local, new_segment_id, new_trace_id, now_secs, send_udp,
    wait_until, xray_datagram, Agent, Moto,
};

const MEMORY_MB: u64 = 4;
const LINES: usize = 200;

/// A valid segment padded to about `size` bytes.
fn padded_segment(size: usize) -> String {
    let now = now_secs();
    let body = json!({
        "name": "flood", "id": new_segment_id(), "trace_id": new_trace_id(),
        "start_time": now - 0.5, "end_time": now,
    })
    .to_string();
    format!("{body:<size$}")
}

/// Sends segments until `stop`, paced so the kernel keeps up.
fn flood(to: std::net::SocketAddr, stop: Arc<AtomicBool>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let payload = xray_datagram(&padded_segment(2000));
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..50 {
            let _ = socket.send_to(&payload, to);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_flood_does_not_starve_logs_or_metrics() {
    let moto = Moto::start();
    moto.inject_faults(
        json!({"status": 503, "count": 100_000_000, "operation": "PutTraceSegments"}),
    );
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, b"").expect("log file");
    let (telemetry, udp, tcp) = (free_tcp_port(), free_udp_port(), free_tcp_port());
    let (emf_tcp, emf_udp) = (free_tcp_port(), free_udp_port());
    let config = format!(
        "[agent]\ntelemetry_address = \"127.0.0.1:{telemetry}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\nlocal_mode = true\n\
         [buffer]\nmemory_mb = {MEMORY_MB}\n\
         [xray]\nudp_address = \"127.0.0.1:{udp}\"\ntcp_address = \"127.0.0.1:{tcp}\"\ntelemetry_records = false\n\
         [emf]\ntcp_address = \"127.0.0.1:{emf_tcp}\"\nudp_address = \"127.0.0.1:{emf_udp}\"\n\
         log_group = \"/floors/emf\"\nlog_stream = \"emf\"\nmode = \"logs\"\n\
         [logs]\nstate_dir = \"{state}\"\nflush_interval = \"1s\"\n\
         [[logs.files]]\npath = \"{log}\"\nlog_group = \"floors\"\nlog_stream = \"app\"\n",
        endpoint = moto.endpoint(),
        state = dir.path().join("state").display(),
        log = log.display(),
    );
    let path = dir.path().join("cloudtail.toml");
    std::fs::write(&path, config).expect("config");
    let mut agent = Agent::builder()
        .args(["--config", path.to_str().expect("utf-8"), "-l", "debug"])
        .telemetry_addr(local(telemetry))
        .start();
    agent.ready();

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || flood(local(udp), stop)
    });
    let full = wait_until(Duration::from_secs(60), || {
        agent
            .metric("cloudtail_xray_segments_spillover_total")
            .unwrap_or(0.0)
            > 0.0
    });
    assert!(
        full,
        "the flood fills the traces' share: {:?}",
        agent.metrics()
    );

    // Log lines and an EMF document while the flood goes on.
    let lines: Vec<String> = (0..LINES)
        .map(|n| format!("during the flood {n:04}"))
        .collect();
    std::fs::write(&log, lines.join("\n") + "\n").expect("append");
    let ms = (now_secs() * 1000.0) as i64;
    let emf = json!({
        "_aws": {"Timestamp": ms, "LogGroupName": "/floors/emf", "LogStreamName": "emf",
                 "CloudWatchMetrics": [{"Namespace": "Floors", "Dimensions": [["Service"]],
                                        "Metrics": [{"Name": "Requests", "Unit": "Count"}]}]},
        "Service": "svc", "Requests": 1,
    })
    .to_string();
    send_udp(local(emf_udp), emf.as_bytes());

    let events = wait_for_events(
        &moto.endpoint(),
        "floors",
        "app",
        LINES,
        Duration::from_secs(60),
    )
    .await;
    let emf_events = wait_for_events(
        &moto.endpoint(),
        "/floors/emf",
        "emf",
        1,
        Duration::from_secs(30),
    )
    .await;
    let m = agent.metrics();
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flood thread");

    let messages: Vec<&String> = events.iter().map(|(_, m)| m).collect();
    assert!(
        messages == lines.iter().collect::<Vec<_>>(),
        "every log line lands during the flood, once, in order: {} of {LINES} did\n{m:?}",
        messages.len()
    );
    assert_eq!(emf_events.len(), 1, "the EMF document lands\n{m:?}");
    assert_eq!(
        m.get("cloudtail_emf_dropped_total{reason=\"budget\"}"),
        Some(0.0)
    );
    let total = (MEMORY_MB * 1024 * 1024) as f64;
    let traces = m
        .get("cloudtail_buffer_pipeline_bytes_in_use{pipeline=\"traces\"}")
        .expect("per-pipeline bytes");
    let floors = ["logs", "metrics"].map(|p| {
        m.get(&format!(
            "cloudtail_buffer_pipeline_bytes_floor{{pipeline=\"{p}\"}}"
        ))
        .expect("floor")
    });
    assert!(floors.iter().all(|f| *f > 0.0), "{floors:?}");
    let traces_most = total - floors.iter().sum::<f64>();
    // Full: within one document of everything the others' floors leave.
    assert!(
        traces <= traces_most && traces > traces_most - 4096.0,
        "traces hold {traces} of at most {traces_most}"
    );
    assert!(m.get("cloudtail_buffer_bytes_in_use").unwrap_or(f64::MAX) <= total);
    assert!(m
        .get("cloudtail_buffer_pipeline_bytes_in_use{pipeline=\"logs\"}")
        .is_some());
}
