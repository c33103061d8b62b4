//! The X-Ray daemon drop-in, end to end: the real binary, the local AWS emulator, and the real
//! `aws-xray-sdk` as the client. Each test starts its own emulator and agent on free ports.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    batch_get_trace_documents, send_udp, wait_until, xray_client, xray_emit, Agent, Moto,
};

use support::{xray_datagram as datagram, xray_segment as segment, XRAY_HEADER as HEADER};

/// Waits until every trace id has `expected` documents in X-Ray; returns them.
async fn wait_for_documents(
    moto: &Moto,
    trace_ids: &[String],
    expected: usize,
    timeout: Duration,
) -> Vec<String> {
    let client = xray_client(&moto.endpoint());
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let docs = batch_get_trace_documents(&client, trace_ids).await;
        if docs.len() >= expected || std::time::Instant::now() >= deadline {
            return docs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_from_the_xray_sdk_land_byte_for_byte() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    let sent = xray_emit(agent.udp_addr(), 5, &[]);
    assert_eq!(sent.len(), 5);
    let trace_ids: Vec<String> = sent
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let docs = wait_for_documents(&moto, &trace_ids, 5, Duration::from_secs(20)).await;
    assert_eq!(docs.len(), 5, "documents read back\n{}", agent.logs());
    for s in &sent {
        let raw = s["raw"].as_str().expect("raw document");
        assert!(
            docs.iter().any(|d| d == raw),
            "not found byte for byte: {raw}\nread back: {docs:?}"
        );
        let doc: Value = serde_json::from_str(raw).expect("json");
        assert!(
            doc["subsegments"].as_array().is_some_and(|a| a.len() == 2),
            "{doc}"
        );
        assert!(
            doc["annotations"].is_object() && doc["metadata"].is_object(),
            "{doc}"
        );
    }
    settle(&agent, "cloudtail_xray_segments_sent_total", 5.0);
    let metrics = agent.metrics();
    assert_eq!(
        metrics.get("cloudtail_xray_segments_received_total"),
        Some(5.0)
    );
    assert_eq!(metrics.get("cloudtail_xray_segments_sent_total"), Some(5.0));
    let calls = moto.requests_for("PutTraceSegments");
    assert!(!calls.is_empty());
    for call in calls {
        let stamp = call["headers"]["X-Amzn-Xray-Timestamp"]
            .as_str()
            .or_else(|| call["headers"]["x-amzn-xray-timestamp"].as_str());
        let stamp = stamp.unwrap_or_else(|| panic!("no X-Amzn-Xray-Timestamp header in {call}"));
        let (secs, nanos) = stamp.split_once('.').expect("seconds.nanos");
        assert!(secs.parse::<u64>().is_ok() && nanos.len() == 9, "{stamp}");
    }
}

/// Documents can be stored by X-Ray a moment before the agent has read its answer and counted
/// them: waits (boundedly) until `series` shows `value`; the assertions that follow check it.
fn settle(agent: &Agent, series: &str, value: f64) {
    wait_until(Duration::from_secs(10), || {
        agent.metric(series) == Some(value)
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_sdk_datagrams_are_accepted() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    let dir = support::repo_dir().join("tests/fixtures");
    let mut bodies = Vec::new();
    let mut trace_ids = Vec::new();
    for n in 1..=5 {
        let entry = std::fs::read_dir(&dir)
            .expect("fixtures")
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("xray-udp-{n}-"))
            })
            .expect("fixture");
        let bytes = std::fs::read(entry.path()).expect("read fixture");
        send_udp(agent.udp_addr(), &bytes);
        let text = String::from_utf8(bytes).expect("utf-8");
        let body = text.split_once('\n').expect("header").1.to_string();
        let doc: Value = serde_json::from_str(&body).expect("json");
        trace_ids.push(doc["trace_id"].as_str().expect("trace_id").to_string());
        bodies.push(body);
    }
    trace_ids.sort();
    trace_ids.dedup();
    let docs = wait_for_documents(&moto, &trace_ids, 5, Duration::from_secs(20)).await;
    settle(&agent, "cloudtail_xray_segments_sent_total", 5.0);
    for body in &bodies {
        assert!(
            docs.contains(body),
            "fixture not stored byte for byte: {body}\n{}",
            agent.logs()
        );
    }
    assert_eq!(
        agent.metrics().get("cloudtail_xray_segments_sent_total"),
        Some(5.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_datagrams_are_counted_and_the_next_good_one_lands() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    let (_, good_body) = segment("shape");
    let random: Vec<u8> = (0..65_000).map(|_| rand::random::<u8>()).collect();
    let mut invalid_utf8 = format!("{HEADER}\n{{\"name\":\"").into_bytes();
    invalid_utf8.extend_from_slice(&[0xc3, 0x28, 0xff]);
    invalid_utf8.extend_from_slice(b"\"}");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("no newline", good_body.clone().into_bytes()),
        (
            "bad header",
            format!("{{\"format\":\"xml\"}}\n{good_body}").into_bytes(),
        ),
        (
            "string version",
            format!("{{\"format\":\"json\",\"version\":\"1\"}}\n{good_body}").into_bytes(),
        ),
        ("empty body", format!("{HEADER}\n").into_bytes()),
        ("random bytes", random),
        ("invalid utf-8", invalid_utf8),
    ];
    for (_, bytes) in &bad {
        send_udp(agent.udp_addr(), bytes);
    }
    let counted = wait_until(Duration::from_secs(10), || {
        agent
            .metrics()
            .sum("cloudtail_xray_segments_rejected_total")
            == Some(bad.len() as f64)
    });
    assert!(
        counted,
        "rejected: {:?}\n{}",
        agent
            .metrics()
            .sum("cloudtail_xray_segments_rejected_total"),
        agent.logs()
    );
    let metrics = agent.metrics();
    for reason in ["no_header", "bad_header", "empty_body", "not_utf8"] {
        let series = format!("cloudtail_xray_segments_rejected_total{{reason=\"{reason}\"}}");
        assert!(
            metrics.get(&series).unwrap_or(0.0) >= 1.0,
            "{series} not counted"
        );
    }
    let (trace_id, body) = segment("after-junk");
    send_udp(agent.udp_addr(), &datagram(&body));
    let docs = wait_for_documents(&moto, &[trace_id], 1, Duration::from_secs(20)).await;
    assert_eq!(docs, vec![body], "{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_503_are_retried_until_the_batch_lands() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    moto.inject_faults(json!({"status": 503, "count": 2, "operation": "PutTraceSegments"}));
    moto.inject_faults(json!({"throttle": 2, "operation": "PutTraceSegments"}));
    let (trace_id, body) = segment("retried");
    send_udp(agent.udp_addr(), &datagram(&body));
    let docs = wait_for_documents(&moto, &[trace_id], 1, Duration::from_secs(30)).await;
    assert_eq!(docs, vec![body], "{}", agent.logs());
    settle(&agent, "cloudtail_xray_segments_sent_total", 1.0);
    let metrics = agent.metrics();
    assert!(
        metrics.get("cloudtail_xray_retries_total").unwrap_or(0.0) >= 4.0,
        "retries"
    );
    assert_eq!(
        metrics.get("cloudtail_backend_errors_total{kind=\"http_5xx\"}"),
        Some(2.0)
    );
    assert_eq!(
        metrics.get("cloudtail_backend_errors_total{kind=\"http_4xx\"}"),
        Some(2.0)
    );
    assert_eq!(metrics.get("cloudtail_xray_segments_sent_total"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_rules_through_the_tcp_proxy_are_signed() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    let request = std::fs::read(
        support::repo_dir().join("tests/fixtures/xray-tcp-GetSamplingRules-request.http"),
    )
    .expect("fixture");
    let request = String::from_utf8(request).expect("utf-8");
    let (head, body) = request
        .split_once("\r\n\r\n")
        .or_else(|| request.split_once("\n\n"))
        .expect("http request");
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("content-length")
        })
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = support::http_request(
        agent.tcp_addr(),
        "POST",
        "/GetSamplingRules",
        &header_refs,
        body.as_bytes(),
    )
    .expect("proxy answered");
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        agent.logs()
    );
    let rules = response.json();
    assert_eq!(
        rules["SamplingRuleRecords"][0]["SamplingRule"]["RuleName"], "Default",
        "{rules}"
    );
    let seen = moto.requests_for("GetSamplingRules");
    let auth = seen
        .last()
        .and_then(|r| {
            r["headers"]["Authorization"]
                .as_str()
                .or_else(|| r["headers"]["authorization"].as_str())
                .map(String::from)
        })
        .unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=testing/")
            && auth.contains("/us-east-1/xray/aws4_request"),
        "{auth}"
    );
    assert_eq!(
        agent.metrics().get("cloudtail_proxy_requests_total"),
        Some(1.0)
    );
}

#[test]
fn daemon_flags_run_as_given() {
    let moto = Moto::start();
    let mut agent = Agent::ports_builder()
        .args([
            "-o",
            "-n",
            "us-east-1",
            "-m",
            "8",
            "-l",
            "dev",
            "--endpoint",
            &moto.endpoint(),
        ])
        .start();
    agent.ready();
    assert_eq!(
        agent.metrics().get("cloudtail_buffer_bytes_total"),
        Some(8.0 * 1024.0 * 1024.0)
    );
    agent.sigterm();
    assert!(
        agent.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        agent.logs()
    );
}

#[test]
fn the_daemons_sample_cfg_yaml_works_with_dash_c() {
    let moto = Moto::start();
    let sample = support::repo_dir().join("config/xray-daemon-cfg.yaml");
    let sample = sample.to_str().expect("path");
    // The sample binds 127.0.0.1:2000 and names no region: the flags override both.
    let mut agent = Agent::ports_builder()
        .args([
            "-c",
            sample,
            "-n",
            "us-east-1",
            "-o",
            "--endpoint",
            &moto.endpoint(),
        ])
        .start();
    agent.ready();
    let (_, body) = segment("from-yaml");
    send_udp(agent.udp_addr(), &datagram(&body));
    let sent = wait_until(Duration::from_secs(20), || {
        agent.metrics().get("cloudtail_xray_segments_sent_total") == Some(1.0)
    });
    assert!(sent, "{}", agent.logs());
}

#[test]
fn an_unknown_yaml_key_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "Version: 2\nSocket:\n  UDPAdress: \"127.0.0.1:2000\"\n",
    )
    .expect("write");
    let mut agent = Agent::start(["-c", cfg.to_str().expect("path"), "-n", "us-east-1"]);
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", agent.logs());
    assert!(agent.stderr().contains("UDPAdress"), "{}", agent.stderr());
}

#[test]
fn no_region_fails_with_exit_2_naming_the_fix() {
    let mut agent = Agent::ports_builder().arg("-o").start();
    let status = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(2), "{}", agent.logs());
    let stderr = agent.stderr();
    assert!(
        stderr.contains("--region") && stderr.contains("AWS_REGION"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sends_what_is_queued_before_exiting() {
    let moto = Moto::start();
    let mut agent = Agent::start_xray(&moto);
    moto.inject_faults(json!({"down": true, "mode": "503"}));
    let mut trace_ids = Vec::new();
    let mut bodies = Vec::new();
    for n in 0..20 {
        let (trace_id, body) = segment(&format!("queued-{n}"));
        send_udp(agent.udp_addr(), &datagram(&body));
        trace_ids.push(trace_id);
        bodies.push(body);
    }
    assert!(wait_until(Duration::from_secs(10), || agent
        .metrics()
        .get("cloudtail_xray_segments_received_total")
        == Some(20.0)));
    agent.sigterm();
    std::thread::sleep(Duration::from_millis(1500));
    moto.inject_faults(json!({"down": false}));
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit {status}\n{}", agent.logs());
    let docs = wait_for_documents(&moto, &trace_ids, 20, Duration::from_secs(5)).await;
    for body in &bodies {
        assert!(
            docs.contains(body),
            "lost at shutdown: {body}\n{}",
            agent.logs()
        );
    }
}
