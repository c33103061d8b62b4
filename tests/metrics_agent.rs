//! Metrics through the real binary: EMF from the real `aws-embedded-metrics` client and the
//! captured documents, StatsD from the real `statsd` client, host metrics; read back from the
//! emulator with GetLogEvents, GetMetricStatistics and ListMetrics.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_smithy_types::DateTime;
use support::logs::wait_for_events;
use support::{
    cloudwatch_client, free_tcp_port, free_udp_port, local, now_secs, run_python, send_udp,
    wait_until, Agent, Moto,
};

/// Starts the agent with `tables` (TOML) added to an `[agent]`/`[aws]` preamble.
fn start(moto: &Moto, tables: &str) -> Agent {
    let telemetry = free_tcp_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cloudtail.toml");
    let config = format!(
        "[agent]\ntelemetry_address = \"127.0.0.1:{telemetry}\"\n[aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\n{tables}",
        moto.endpoint()
    );
    std::fs::write(&path, config).expect("config");
    let mut agent = Agent::builder()
        .args(["--config", path.to_str().expect("path"), "-l", "debug"])
        .telemetry_addr(local(telemetry))
        .start();
    agent.ready();
    std::mem::forget(dir); // the agent reads its config once, at start; keep it for debugging
    agent
}

async fn statistics(
    moto: &Moto,
    namespace: &str,
    name: &str,
    dims: &[(&str, &str)],
) -> Vec<aws_sdk_cloudwatch::types::Datapoint> {
    let now = now_secs() as i64;
    let dimensions = dims
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
        .collect();
    cloudwatch_client(&moto.endpoint())
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(name)
        .set_dimensions(Some(dimensions))
        .start_time(DateTime::from_secs(now - 3600))
        .end_time(DateTime::from_secs(now + 600))
        .period(3600)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Maximum)
        .statistics(Statistic::Minimum)
        .send()
        .await
        .map(|out| out.datapoints().to_vec())
        .unwrap_or_default()
}

fn sum(points: &[aws_sdk_cloudwatch::types::Datapoint]) -> f64 {
    points.iter().filter_map(|p| p.sum()).sum()
}

/// Sends the real `aws-embedded-metrics` client's documents to the EMF TCP port.
fn emit_emf(tcp: u16) {
    let out = run_python(
        "metrics_emit.py",
        &["--emf", &format!("127.0.0.1:{tcp}")],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn emf_from_the_real_client_lands_as_log_events() {
    let moto = Moto::start();
    let (tcp, udp) = (free_tcp_port(), free_udp_port());
    let agent = start(&moto, &format!(
        "[emf]\ntcp_address = \"127.0.0.1:{tcp}\"\nudp_address = \"127.0.0.1:{udp}\"\nlog_group = \"/metrics/default\"\nlog_stream = \"emf-test\"\nmode = \"logs\"\n"
    ));
    emit_emf(tcp);
    // The client names its own group (`<service>-metrics`); the stream falls back to config.
    let events = wait_for_events(
        &moto.endpoint(),
        "real-metrics",
        "emf-test",
        4,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(events.len(), 4, "{}", agent.logs());
    for (_, message) in &events {
        let doc: serde_json::Value = serde_json::from_str(message).expect("json");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Real/EMF",
            "{doc}"
        );
    }
    let puts = moto.requests_for("PutLogEvents");
    assert!(
        puts.iter()
            .any(|r| r["headers"]["x-amzn-logs-format"] == "json/emf"),
        "{puts:?}"
    );
    let fixtures = support::repo_dir().join("tests/fixtures");
    let mut stream = TcpStream::connect(local(tcp)).expect("connect");
    for n in 1..=5 {
        let entry = std::fs::read_dir(&fixtures)
            .expect("fixtures")
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("emf-{n}-"))
            })
            .expect("fixture");
        let text = std::fs::read_to_string(entry.path()).expect("read");
        stream.write_all(text.trim_end().as_bytes()).expect("write");
        stream.write_all(b"\n").expect("newline");
    }
    let udp_fixture =
        std::fs::read(fixtures.join("emf-6-basic-udp-datagram.json")).expect("udp fixture");
    send_udp(local(udp), &udp_fixture);
    let series = "cloudtail_emf_documents_total{result=\"emf\"}";
    assert!(
        wait_until(Duration::from_secs(10), || agent.metric(series)
            == Some(10.0)),
        "{:?}\n{}",
        agent.metric(series),
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn emf_in_metrics_mode_lands_as_metric_statistics() {
    let moto = Moto::start();
    let (tcp, udp) = (free_tcp_port(), free_udp_port());
    let agent = start(&moto, &format!(
        "[emf]\ntcp_address = \"127.0.0.1:{tcp}\"\nudp_address = \"127.0.0.1:{udp}\"\nmode = \"metrics\"\n"
    ));
    emit_emf(tcp);
    let mut points = Vec::new();
    for _ in 0..60 {
        points = statistics(&moto, "Real/EMF", "Latency", &[("Service", "real")]).await;
        if sum(&points) >= 60.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(sum(&points), 60.0, "{points:?}\n{}", agent.logs());
    assert!(
        moto.requests_for("PutLogEvents").is_empty(),
        "metrics mode must not ingest logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn statsd_from_the_real_client_sums_exactly() {
    const COUNT: usize = 10_000;
    let moto = Moto::start();
    let port = free_udp_port();
    let agent = start(&moto, &format!(
        "[statsd]\naddress = \"127.0.0.1:{port}\"\nnamespace = \"Test/StatsD\"\naggregation_interval = \"2s\"\n"
    ));
    let out = run_python(
        "statsd_emit.py",
        &[&format!("127.0.0.1:{port}"), "--count", &COUNT.to_string()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..60 {
        let hits = statistics(&moto, "Test/StatsD", "hits", &[]).await;
        if sum(&hits) >= COUNT as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    std::thread::sleep(Duration::from_secs(3));
    let hits = statistics(&moto, "Test/StatsD", "hits", &[]).await;
    assert_eq!(sum(&hits), COUNT as f64, "{hits:?}\n{}", agent.logs());
    let temp = statistics(&moto, "Test/StatsD", "temp", &[]).await;
    let last = temp
        .iter()
        .filter_map(|p| p.maximum())
        .fold(f64::MIN, f64::max);
    assert_eq!(last, (COUNT - 1) as f64, "the last gauge value: {temp:?}");
    let lat = statistics(&moto, "Test/StatsD", "lat", &[]).await;
    let samples: f64 = lat.iter().filter_map(|p| p.sample_count()).sum();
    assert_eq!(samples, COUNT as f64, "{lat:?}");
    let min = lat
        .iter()
        .filter_map(|p| p.minimum())
        .fold(f64::MAX, f64::min);
    let max = lat
        .iter()
        .filter_map(|p| p.maximum())
        .fold(f64::MIN, f64::max);
    assert_eq!((min, max), (10.0, 30.0));
    let expected_sum: f64 = (0..COUNT).map(|n| [10.0, 20.0, 30.0][n % 3]).sum();
    assert_eq!(sum(&lat), expected_sum);
    assert_eq!(
        agent.metric("cloudtail_statsd_lines_total{result=\"malformed\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_metrics_appear_after_one_interval() {
    let moto = Moto::start();
    let agent = start(&moto, "[host_metrics]\ninterval = \"1s\"\nnamespace = \"Test/Host\"\ncollect = [\"cpu\", \"mem\"]\n");
    let client = cloudwatch_client(&moto.endpoint());
    let mut names = Vec::new();
    for _ in 0..40 {
        let listed = client.list_metrics().namespace("Test/Host").send().await;
        names = listed
            .map(|l| {
                l.metrics()
                    .iter()
                    .filter_map(|m| m.metric_name().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|n| n == "cpu_usage_active")
            && names.iter().any(|n| n == "mem_used_percent")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("host metrics not listed: {names:?}\n{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_metrics_input_is_counted_and_good_input_still_lands() {
    let moto = Moto::start();
    let (tcp, udp, statsd_port) = (free_tcp_port(), free_udp_port(), free_udp_port());
    let agent = start(&moto, &format!(
        "[emf]\ntcp_address = \"127.0.0.1:{tcp}\"\nudp_address = \"127.0.0.1:{udp}\"\nmode = \"metrics\"\n\
         [statsd]\naddress = \"127.0.0.1:{statsd_port}\"\nnamespace = \"Test/Bad\"\naggregation_interval = \"2s\"\n"
    ));
    let ts = (now_secs() * 1000.0) as i64;
    let directive = |metrics: Vec<serde_json::Value>, dims: Vec<String>| {
        serde_json::json!({
            "_aws": {"Timestamp": ts, "CloudWatchMetrics": [{"Namespace": "Test/Bad", "Dimensions": [dims], "Metrics": metrics}]}
        })
    };
    let many: Vec<serde_json::Value> = (0..101)
        .map(|n| serde_json::json!({"Name": format!("m{n}")}))
        .collect();
    let mut too_many_metrics = directive(many, vec![]);
    for n in 0..101 {
        too_many_metrics[format!("m{n}")] = 1.into();
    }
    let dims: Vec<String> = (0..31).map(|n| format!("d{n}")).collect();
    let mut too_many_dims = directive(vec![serde_json::json!({"Name": "x"})], dims.clone());
    too_many_dims["x"] = 1.into();
    for d in &dims {
        too_many_dims[d] = "v".into();
    }
    let mut long_array = directive(vec![serde_json::json!({"Name": "x"})], vec![]);
    long_array["x"] = serde_json::json!((0..101).collect::<Vec<_>>());
    let bad_lines = [
        serde_json::json!({"no_aws": true}).to_string(),
        too_many_metrics.to_string(),
        too_many_dims.to_string(),
        long_array.to_string(),
        format!("{{\"_aws\":{{\"Timestamp\":{ts},\"CloudWatchMetrics\":[{{\"Namespace\":\"Test/Bad\",\"Dimensions\":[[]],\"Metrics\":[{{\"Name\":\"x\"}}]}}]}},\"x\":NaN}}"),
        "not json at all".to_string(),
    ];
    let mut stream = TcpStream::connect(local(tcp)).expect("connect");
    for line in &bad_lines {
        stream.write_all(line.as_bytes()).expect("write");
        stream.write_all(b"\n").expect("write");
    }
    for junk in ["no_value|c", "x:abc|c", "y:1|zz", ":::", "z:1|c|@notarate"] {
        send_udp(local(statsd_port), junk.as_bytes());
    }
    // An endless line: the connection is closed at the limit, memory stays bounded.
    let mut endless = TcpStream::connect(local(tcp)).expect("connect");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 3 * 1024 * 1024 && endless.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    let counted = wait_until(Duration::from_secs(15), || {
        let m = agent.metrics();
        m.get("cloudtail_emf_documents_total{result=\"too_large\"}")
            .unwrap_or(0.0)
            >= 1.0
            && m.get("cloudtail_statsd_lines_total{result=\"malformed\"}")
                .unwrap_or(0.0)
                >= 5.0
            && m.get("cloudtail_emf_documents_total{result=\"not_json\"}")
                .unwrap_or(0.0)
                >= 1.0
    });
    assert!(counted, "{:?}\n{}", agent.metrics(), agent.logs());
    let good = directive(
        vec![serde_json::json!({"Name": "good", "Unit": "Count"})],
        vec![],
    );
    let mut good = good;
    good["good"] = 7.into();
    stream
        .write_all(format!("{good}\n").as_bytes())
        .expect("write good");
    send_udp(local(statsd_port), b"fine:5|c");
    let mut landed = false;
    for _ in 0..60 {
        let emf = sum(&statistics(&moto, "Test/Bad", "good", &[]).await);
        let statsd = sum(&statistics(&moto, "Test/Bad", "fine", &[]).await);
        if emf == 7.0 && statsd == 5.0 {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        landed,
        "good input after bad input must land\n{}",
        agent.logs()
    );
    let rss_kb = agent.rss_kb();
    assert!(rss_kb < 64 * 1024, "RSS {rss_kb} kB after an endless line");
}
