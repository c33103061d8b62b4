//! How the X-Ray role meets its AWS environment: telemetry records, backend error categories,
//! the region from ECS task metadata, and `-r` role assumption. The real binary against the
//! local emulator, plus small local servers standing in for the ECS metadata endpoint and for
//! an endpoint that never answers.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};
use support::{new_segment_id, new_trace_id, now_secs, send_udp, wait_until, Agent, Moto};

fn datagram() -> (String, Vec<u8>) {
    let trace_id = new_trace_id();
    let now = now_secs();
    let body = json!({"name": "env", "id": new_segment_id(), "trace_id": trace_id,
                      "start_time": now - 0.1, "end_time": now});
    (
        trace_id,
        format!("{{\"format\":\"json\",\"version\":1}}\n{body}").into_bytes(),
    )
}

#[test]
fn telemetry_records_report_the_last_interval() {
    let moto = Moto::start();
    let agent = Agent::start_xray(&moto);
    for _ in 0..3 {
        send_udp(agent.udp_addr(), &datagram().1);
    }
    send_udp(agent.udp_addr(), b"junk without header");
    send_udp(agent.udp_addr(), b"{\"format\":\"json\",\"version\":1}\n");
    let arrived = wait_until(Duration::from_secs(80), || {
        !moto.requests_for("PutTelemetryRecords").is_empty()
    });
    assert!(
        arrived,
        "no PutTelemetryRecords within 80 s\n{}",
        agent.logs()
    );
    let request = &moto.requests_for("PutTelemetryRecords")[0];
    let record = &request["body"]["TelemetryRecords"][0];
    assert_eq!(record["SegmentsReceivedCount"], 5, "{request}");
    assert_eq!(record["SegmentsSentCount"], 3, "{request}");
    assert_eq!(record["SegmentsRejectedCount"], 2, "{request}");
    assert_eq!(record["SegmentsSpilloverCount"], 0, "{request}");
    assert!(
        request["body"]["Hostname"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{request}"
    );
}

#[test]
fn refused_connections_and_timeouts_are_told_apart() {
    let closed = support::free_tcp_port();
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    // Accepts and holds connections without ever answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    for (endpoint, kind) in [
        (format!("http://127.0.0.1:{closed}"), "connection_refused"),
        (format!("http://{silent_addr}"), "timeout"),
    ] {
        let mut agent = Agent::xray_builder_for(&endpoint).start();
        agent.ready();
        send_udp(agent.udp_addr(), &datagram().1);
        let series = format!("cloudtail_backend_errors_total{{kind=\"{kind}\"}}");
        let counted = wait_until(Duration::from_secs(30), || {
            agent.metric(&series).unwrap_or(0.0) >= 1.0
        });
        assert!(
            counted,
            "{series} not counted for {endpoint}\n{}",
            agent.logs()
        );
        assert_eq!(
            agent.metric("cloudtail_xray_segments_sent_total"),
            Some(0.0)
        );
    }
}

/// Serves `GET /task` like the ECS task metadata endpoint v4.
fn fake_ecs_metadata(region: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body =
        json!({"TaskARN": format!("arn:aws:ecs:{region}:123456789012:task/demo/0123456789abcdef"),
                      "Cluster": "demo"})
        .to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let reply = if request.starts_with("GET /v4/task ") {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    format!("http://{addr}/v4")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_region_comes_from_ecs_task_metadata() {
    let moto = Moto::start();
    let metadata = fake_ecs_metadata("eu-west-1");
    let mut agent = Agent::ports_builder()
        .args(["--endpoint", &moto.endpoint()])
        .env("ECS_CONTAINER_METADATA_URI_V4", &metadata)
        .start();
    agent.ready();
    send_udp(agent.udp_addr(), &datagram().1);
    let sent = wait_until(Duration::from_secs(20), || {
        agent.metric("cloudtail_xray_segments_sent_total") == Some(1.0)
    });
    assert!(sent, "{}", agent.logs());
    let signed: Vec<Value> = moto.requests_for("PutTraceSegments");
    let auth = signed[0]["headers"]["Authorization"]
        .as_str()
        .or_else(|| signed[0]["headers"]["authorization"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        auth.contains("/eu-west-1/xray/aws4_request"),
        "signed for another region: {auth}"
    );
}

#[test]
fn dash_r_assumes_the_role_before_uploading() {
    let moto = Moto::start();
    let role = "arn:aws:iam::123456789012:role/xray-upload";
    let mut agent = Agent::xray_builder(&moto).args(["-r", role]).start();
    agent.ready();
    send_udp(agent.udp_addr(), &datagram().1);
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .metric("cloudtail_xray_segments_sent_total")
            == Some(1.0)),
        "{}",
        agent.logs()
    );
    let assumed = moto.requests_for("AssumeRole");
    assert!(!assumed.is_empty(), "no AssumeRole call\n{}", agent.logs());
    let put = moto.requests_for("PutTraceSegments");
    let auth = put[0]["headers"]["Authorization"]
        .as_str()
        .or_else(|| put[0]["headers"]["authorization"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        !auth.contains("Credential=testing/"),
        "uploaded with the base credentials: {auth}"
    );
}

/// A forward HTTP proxy that relays each connection to `upstream` and records the request
/// lines it saw.
fn relay_proxy(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    return;
                };
                let (mut client_r, mut server_w) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (mut server_r, mut client_w) = (server, client);
                let back = std::thread::spawn(move || std::io::copy(&mut server_r, &mut client_w));
                let mut first = [0u8; 512];
                if let Ok(n) = client_r.read(&mut first) {
                    let text = String::from_utf8_lossy(&first[..n]);
                    if let Some(line) = text.lines().next() {
                        record.lock().expect("lock").push(line.to_string());
                    }
                    let _ = server_w.write_all(&first[..n]);
                    let _ = std::io::copy(&mut client_r, &mut server_w);
                }
                let _ = server_w.shutdown(std::net::Shutdown::Write);
                let _ = back.join();
            });
        }
    });
    (addr, seen)
}

#[test]
fn dash_p_sends_aws_calls_through_the_proxy() {
    let moto = Moto::start();
    let (proxy, seen) = relay_proxy(moto.addr());
    let mut agent = Agent::xray_builder(&moto)
        .args(["-p", &proxy.to_string()])
        .start();
    agent.ready();
    send_udp(agent.udp_addr(), &datagram().1);
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .metric("cloudtail_xray_segments_sent_total")
            == Some(1.0)),
        "{}",
        agent.logs()
    );
    let lines = seen.lock().expect("lock").clone();
    let expected = format!("POST {}/TraceSegments", moto.endpoint());
    assert!(
        lines.iter().any(|l| l.starts_with(&expected)),
        "proxy saw {lines:?}"
    );
}

#[test]
fn the_sampling_proxy_follows_http_proxy_and_no_proxy() {
    let moto = Moto::start();
    // Nothing listens here: a call that goes through this proxy fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_proxy = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let mut excluded = Agent::xray_builder(&moto)
        .env("HTTP_PROXY", &dead_proxy)
        .env("NO_PROXY", "localhost,127.0.0.1")
        .start();
    excluded.ready();
    assert_eq!(excluded.sampling_status(), 200, "{}", excluded.logs());
    let mut proxied = Agent::xray_builder(&moto)
        .env("HTTP_PROXY", &dead_proxy)
        .start();
    proxied.ready();
    let status = proxied.sampling_status();
    assert!(
        status >= 500,
        "went around HTTP_PROXY: {status}\n{}",
        proxied.logs()
    );
}
