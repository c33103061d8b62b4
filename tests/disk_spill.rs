//! The disk spills through the real binary: with X-Ray (or CloudWatch Logs, for EMF over UDP,
//! or CloudWatch, for StatsD aggregates) down and a small budget, what finds no memory goes to
//! disk instead of being dropped, and lands once AWS is back, also after the agent was killed
//! with `-9` (or stopped with SIGTERM) and restarted. In its own
//! test binary (floods of loopback datagrams disturb other tests); its tests take turns for the
//! same reason.

mod support;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    free_tcp_port, free_udp_port, local, new_segment_id, new_trace_id, now_secs, wait_until,
    xray_datagram, Agent, Moto,
};

/// Floods from two tests at once would share the kernel's loopback backlog.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DOCUMENTS: usize = 3000;
const DOCUMENT_BYTES: usize = 2000;

/// `DOCUMENTS` segments of about `DOCUMENT_BYTES`: (segment id, body), in sending order.
fn documents() -> Vec<(String, String)> {
    (0..DOCUMENTS)
        .map(|n| {
            let id = new_segment_id();
            let now = now_secs();
            let body = json!({
                "name": format!("spill-{n}"), "id": id, "trace_id": new_trace_id(),
                "start_time": now - 0.5, "end_time": now,
            })
            .to_string();
            (id, format!("{body:<DOCUMENT_BYTES$}"))
        })
        .collect()
}

/// Writes the config (X-Ray only, 3 MB of memory, 64 MB of disk spill in `dir/spill`) and
/// starts an agent on fresh ports; returns it and its UDP address.
fn start(moto: &Moto, dir: &Path) -> (Agent, SocketAddr) {
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let role = format!(
        "[xray]\nudp_address = \"127.0.0.1:{udp}\"\ntcp_address = \"127.0.0.1:{tcp}\"\n\
         telemetry_records = false\n"
    );
    (start_with(moto, dir, &role), local(udp))
}

/// Starts an agent with 3 MB of memory and 64 MB of disk spill in `dir/spill`, running the
/// role that `role` (TOML tables) describes; waits until it is ready.
fn start_with(moto: &Moto, dir: &Path, role: &str) -> Agent {
    start_with_disk(moto, dir, role, 64)
}

/// [`start_with`] with `disk_mb` of spill (0: off), and 2 s to flush at SIGTERM.
fn start_with_disk(moto: &Moto, dir: &Path, role: &str, disk_mb: u64) -> Agent {
    let telemetry = free_tcp_port();
    let config = format!(
        "[agent]\ntelemetry_address = \"127.0.0.1:{telemetry}\"\nshutdown_timeout = \"2s\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\nlocal_mode = true\n\
         [buffer]\nmemory_mb = 3\ndisk_mb = {disk_mb}\nspill_dir = \"{}\"\n{role}",
        moto.endpoint(),
        spill_dir(dir).display()
    );
    let path = dir.join("cloudtail.toml");
    std::fs::write(&path, config).expect("config");
    let mut agent = Agent::builder()
        .args(["--config", path.to_str().expect("utf-8"), "-l", "debug"])
        .telemetry_addr(local(telemetry))
        .start();
    agent.ready();
    agent
}

fn spill_dir(dir: &Path) -> PathBuf {
    dir.join("spill")
}

/// Sends every document, paced so the kernel keeps up, and waits until the agent read them.
fn send_all(agent: &Agent, to: SocketAddr, docs: &[(String, String)]) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for (n, (_, body)) in docs.iter().enumerate() {
        while socket.send_to(&xray_datagram(body), to).is_err() {
            std::thread::sleep(Duration::from_micros(100));
        }
        if n % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let read = wait_until(Duration::from_secs(30), || {
        let m = agent.metrics();
        let received = m.get("cloudtail_xray_segments_received_total");
        let kernel = m.get("cloudtail_xray_kernel_drops_total").unwrap_or(0.0);
        received.unwrap_or(0.0) + kernel >= docs.len() as f64
    });
    let m = agent.metrics();
    assert!(read, "the agent read every datagram: {m:?}");
    assert_eq!(
        m.get("cloudtail_xray_kernel_drops_total"),
        Some(0.0),
        "the flood was paced for no kernel drops"
    );
}

/// Segment ids in `PutTraceSegments` calls X-Ray answered with 200.
fn landed_ids(moto: &Moto) -> HashSet<String> {
    moto.requests_for("PutTraceSegments")
        .iter()
        .filter(|r| r["status"] == 200)
        .flat_map(|r| {
            r["body"]["TraceSegmentDocuments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| {
            let text = d.as_str()?;
            let doc: Value = serde_json::from_str(text).ok()?;
            doc["id"].as_str().map(String::from)
        })
        .collect()
}

/// Waits until every id of `wanted` landed; returns those that did not.
fn wait_landed(moto: &Moto, wanted: &[&String], timeout: Duration) -> Vec<String> {
    let mut missing = Vec::new();
    wait_until(timeout, || {
        let landed = landed_ids(moto);
        missing = wanted
            .iter()
            .filter(|id| !landed.contains(**id))
            .map(|id| (*id).clone())
            .collect();
        missing.is_empty()
    });
    missing
}

fn x_ray_down(moto: &Moto) {
    moto.inject_faults(
        json!({"status": 503, "count": 100_000_000, "operation": "PutTraceSegments"}),
    );
}

fn spill_metric(agent: &Agent, name: &str) -> f64 {
    agent
        .metric(&format!("{name}{{spill=\"traces\"}}"))
        .unwrap_or_else(|| panic!("{name} in /metrics: {:?}", agent.metrics()))
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_disk_spill_a_flood_loses_nothing_while_x_ray_is_down() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let moto = Moto::start();
    x_ray_down(&moto);
    let dir = tempfile::tempdir().expect("dir");
    let (agent, udp) = start(&moto, dir.path());
    let docs = documents();
    send_all(&agent, udp, &docs);
    let m = agent.metrics();
    assert_eq!(
        m.get("cloudtail_xray_segments_spillover_total"),
        Some(0.0),
        "nothing dropped while the spill has room: {m:?}"
    );
    let written = spill_metric(&agent, "cloudtail_spill_written_total");
    assert!(
        written > 0.0,
        "the budget was full and the spill took the rest"
    );
    assert_eq!(spill_metric(&agent, "cloudtail_spill_dropped_total"), 0.0);
    assert!(spill_metric(&agent, "cloudtail_spill_bytes") >= written * DOCUMENT_BYTES as f64);
    assert!(m.get("cloudtail_buffer_bytes_in_use").unwrap_or(f64::MAX) <= (3 << 20) as f64);

    // X-Ray back (the journal restarts empty): every document lands, spilled ones included.
    moto.reset();
    let ids: Vec<&String> = docs.iter().map(|(id, _)| id).collect();
    let missing = wait_landed(&moto, &ids, Duration::from_secs(180));
    assert!(
        missing.is_empty(),
        "{} of {DOCUMENTS} documents never landed: {:?}\n{}",
        missing.len(),
        agent.metrics(),
        agent.logs()
    );
    assert_eq!(
        spill_metric(&agent, "cloudtail_spill_replayed_total"),
        written
    );
    assert_eq!(spill_metric(&agent, "cloudtail_spill_corrupt_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn spilled_documents_land_after_a_kill_and_a_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let moto = Moto::start();
    x_ray_down(&moto);
    let dir = tempfile::tempdir().expect("dir");
    let (mut agent, udp) = start(&moto, dir.path());
    let docs = documents();
    send_all(&agent, udp, &docs);
    let written = spill_metric(&agent, "cloudtail_spill_written_total") as usize;
    assert!(written > 0, "{:?}", agent.metrics());
    assert_eq!(spill_metric(&agent, "cloudtail_spill_replayed_total"), 0.0);
    // Once one document spilled, every later one followed it to disk, in order.
    let spilled: Vec<&String> = docs[DOCUMENTS - written..]
        .iter()
        .map(|(id, _)| id)
        .collect();
    agent.kill9();

    moto.reset();
    let (restarted, _) = start(&moto, dir.path());
    let missing = wait_landed(&moto, &spilled, Duration::from_secs(120));
    assert!(
        missing.is_empty(),
        "{} of {written} spilled documents never landed after the restart: {:?}\n{}",
        missing.len(),
        restarted.metrics(),
        restarted.logs()
    );
    assert_eq!(
        spill_metric(&restarted, "cloudtail_spill_corrupt_total"),
        0.0
    );
    let drained = wait_until(Duration::from_secs(10), || {
        spill_metric(&restarted, "cloudtail_spill_bytes") == 0.0
    });
    assert!(drained, "replayed files are deleted");
}

/// `count` EMF documents of about `DOCUMENT_BYTES`, numbered by their `Seq` property.
fn emf_documents(count: usize) -> Vec<String> {
    let ms = (now_secs() * 1000.0) as i64;
    (0..count)
        .map(|n| {
            json!({
                "_aws": {"Timestamp": ms, "LogGroupName": "/spill/emf", "LogStreamName": "emf",
                         "CloudWatchMetrics": [{"Namespace": "Spill", "Dimensions": [["Service"]],
                                                "Metrics": [{"Name": "Requests", "Unit": "Count"}]}]},
                "Service": "svc", "Requests": 1, "Seq": n, "Pad": "x".repeat(DOCUMENT_BYTES / 2),
            })
            .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn emf_over_udp_spills_while_cloudwatch_logs_is_down_and_lands_after() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let moto = Moto::start();
    moto.inject_faults(json!({"status": 503, "count": 100_000_000, "operation": "PutLogEvents"}));
    let dir = tempfile::tempdir().expect("dir");
    let (tcp, udp) = (free_tcp_port(), free_udp_port());
    let role = format!(
        "[emf]\ntcp_address = \"127.0.0.1:{tcp}\"\nudp_address = \"127.0.0.1:{udp}\"\n\
         log_group = \"/spill/emf\"\nlog_stream = \"emf\"\nmode = \"logs\"\n"
    );
    let agent = start_with(&moto, dir.path(), &role);

    const COUNT: usize = 5000;
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for (n, doc) in emf_documents(COUNT).iter().enumerate() {
        while socket.send_to(doc.as_bytes(), local(udp)).is_err() {
            std::thread::sleep(Duration::from_micros(100));
        }
        if n % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let series = "cloudtail_emf_documents_total{result=\"emf\"}";
    let read = wait_until(Duration::from_secs(30), || {
        agent.metric(series) == Some(COUNT as f64)
    });
    assert!(read, "every document read: {:?}", agent.metrics());
    let m = agent.metrics();
    assert_eq!(
        m.get("cloudtail_emf_dropped_total{reason=\"budget\"}"),
        Some(0.0),
        "nothing dropped while the spill has room: {m:?}"
    );
    let written = m
        .get("cloudtail_spill_written_total{spill=\"emf\"}")
        .expect("the EMF spill's counters");
    assert!(
        written > 0.0,
        "the budget was full and the spill took the rest"
    );

    moto.inject_faults(json!({"clear": true}));
    let events = support::logs::wait_for_events(
        &moto.endpoint(),
        "/spill/emf",
        "emf",
        COUNT,
        Duration::from_secs(180),
    )
    .await;
    let mut seen = vec![0u32; COUNT];
    for (_, message) in &events {
        let doc: Value = serde_json::from_str(message).expect("json");
        if let Some(n) = doc["Seq"].as_u64() {
            seen[n as usize] += 1;
        }
    }
    let lost = seen.iter().filter(|c| **c == 0).count();
    let twice = seen.iter().filter(|c| **c > 1).count();
    assert!(
        lost == 0 && twice == 0,
        "{lost} documents lost, {twice} duplicated\n{:?}",
        agent.metrics()
    );
    assert_eq!(
        agent.metric("cloudtail_spill_replayed_total{spill=\"emf\"}"),
        Some(written)
    );
}

/// StatsD series sent: more than the 3 MB budget holds as queued `PutMetricData` calls.
const SHARDS: usize = 20_000;
/// Increments of each series.
const ROUNDS: usize = 3;
/// `hits` lines per datagram; each datagram also adds its line count to `total`.
const LINES_PER_DATAGRAM: usize = 40;

/// Starts an agent running StatsD only on a fresh port; returns it and the port.
fn start_statsd(moto: &Moto, dir: &Path, disk_mb: u64) -> (Agent, u16) {
    let port = free_udp_port();
    let role = format!(
        "[statsd]\naddress = \"127.0.0.1:{port}\"\nnamespace = \"Spill/StatsD\"\n\
         aggregation_interval = \"1s\"\n"
    );
    (start_with_disk(moto, dir, &role, disk_mb), port)
}

/// Sends `ROUNDS` increments of `hits` for each of `SHARDS` series (`#shard:N`), and as many
/// to `total` (no tags), paced; waits until the agent parsed every line.
fn send_statsd(agent: &Agent, port: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut datagrams = 0;
    for _ in 0..ROUNDS {
        for first in (0..SHARDS).step_by(LINES_PER_DATAGRAM) {
            let shards = first..(first + LINES_PER_DATAGRAM).min(SHARDS);
            let mut text = format!("total:{}|c\n", shards.len());
            for shard in shards {
                text.push_str(&format!("hits:1|c|#shard:{shard}\n"));
            }
            while socket.send_to(text.as_bytes(), local(port)).is_err() {
                std::thread::sleep(Duration::from_micros(100));
            }
            datagrams += 1;
            if datagrams % 50 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let lines = (SHARDS * ROUNDS + datagrams) as f64;
    let read = wait_until(Duration::from_secs(30), || {
        agent.metric("cloudtail_statsd_lines_total{result=\"ok\"}") == Some(lines)
    });
    let m = agent.metrics();
    assert!(read, "every line parsed: {m:?}");
    assert_eq!(m.get("cloudtail_statsd_kernel_drops_total"), Some(0.0));
}

fn cloudwatch_down(moto: &Moto) {
    moto.inject_faults(json!({"status": 503, "count": 100_000_000, "operation": "PutMetricData"}));
}

/// The sum of metric `name` over every `PutMetricData` call CloudWatch answered with 200.
fn landed_sum(moto: &Moto, name: &str) -> f64 {
    moto.requests_for("PutMetricData")
        .iter()
        .filter(|r| r["status"] == 200)
        .flat_map(|r| {
            r["body"]["MetricData"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|d| d["MetricName"] == name)
        .map(|d| {
            let numbers = |key: &str| -> Vec<f64> {
                d[key]
                    .as_array()
                    .map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_f64).collect())
            };
            let (values, counts) = (numbers("Values"), numbers("Counts"));
            let listed: f64 = values.iter().zip(&counts).map(|(v, c)| v * c).sum();
            listed + d["StatisticValues"]["Sum"].as_f64().unwrap_or(0.0)
        })
        .sum()
}

/// The sum CloudWatch reports for `name` (no dimensions) over the last hour.
async fn statistics_sum(moto: &Moto, name: &str) -> f64 {
    support::metric_sum_last_hour(&moto.endpoint(), "Spill/StatsD", name).await
}

fn metric_drops(agent: &Agent, reason: &str) -> f64 {
    agent
        .metric(&format!(
            "cloudtail_metrics_datums_dropped_total{{reason=\"{reason}\"}}"
        ))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn statsd_aggregates_spill_while_cloudwatch_is_down_and_sum_exactly_after_a_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let moto = Moto::start();
    cloudwatch_down(&moto);
    let dir = tempfile::tempdir().expect("dir");
    let (mut agent, port) = start_statsd(&moto, dir.path(), 64);
    send_statsd(&agent, port);
    // The pipeline closes its window within 10 s: the calls the budget cannot hold spill.
    let series = "cloudtail_spill_written_total{spill=\"metrics\"}";
    let spilled = wait_until(Duration::from_secs(30), || {
        agent.metric(series).unwrap_or(0.0) > 0.0
    });
    assert!(
        spilled,
        "the budget was full and the spill took the rest: {:?}",
        agent.metrics()
    );
    assert_eq!(metric_drops(&agent, "budget"), 0.0, "{:?}", agent.metrics());
    assert_eq!(metric_drops(&agent, "expired"), 0.0);

    // SIGTERM while CloudWatch is still down: what is in flight or queued at the deadline
    // goes to the spill too.
    agent.sigterm();
    assert!(
        agent.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        agent.logs()
    );
    assert!(
        !agent.logs().contains("Gave up sending metric datums"),
        "{}",
        agent.logs()
    );

    moto.inject_faults(json!({"clear": true}));
    let (restarted, _) = start_statsd(&moto, dir.path(), 64);
    let expected = (SHARDS * ROUNDS) as f64;
    let landed = wait_until(Duration::from_secs(120), || {
        landed_sum(&moto, "hits") >= expected && landed_sum(&moto, "total") >= expected
    });
    assert!(
        landed,
        "hits {} and total {} of {expected} landed: {:?}\n{}",
        landed_sum(&moto, "hits"),
        landed_sum(&moto, "total"),
        restarted.metrics(),
        restarted.logs()
    );
    let drained = wait_until(Duration::from_secs(10), || {
        restarted.metric("cloudtail_spill_bytes{spill=\"metrics\"}") == Some(0.0)
    });
    assert!(
        drained,
        "replayed files are deleted: {:?}",
        restarted.metrics()
    );
    assert_eq!(landed_sum(&moto, "hits"), expected, "no call sent twice");
    assert_eq!(statistics_sum(&moto, "total").await, expected);
    assert_eq!(
        restarted.metric("cloudtail_spill_corrupt_total{spill=\"metrics\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_disk_spill_statsd_aggregates_the_budget_cannot_hold_are_dropped_and_counted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let moto = Moto::start();
    cloudwatch_down(&moto);
    let dir = tempfile::tempdir().expect("dir");
    let (agent, port) = start_statsd(&moto, dir.path(), 0);
    send_statsd(&agent, port);
    let dropped = wait_until(Duration::from_secs(30), || {
        metric_drops(&agent, "budget") > 0.0
    });
    let m = agent.metrics();
    assert!(
        dropped,
        "the oldest queued calls made room and were counted: {m:?}"
    );
    assert_eq!(
        m.get("cloudtail_spill_written_total{spill=\"metrics\"}"),
        None
    );
    assert!(!spill_dir(dir.path()).join("metrics").exists());
}
