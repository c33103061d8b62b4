//! Test support shared by the integration tests (`tests/*.rs` do `mod support;`).
//!
//! Owns the processes a test starts and kills them when dropped: the stub AWS endpoint
//! ([`Moto`], which runs `tests/support/moto_front.py` under the test venv's python) and the
//! agent under test ([`Agent`], the real `cloudtail` binary in its own temp dir). Talks to them
//! over loopback only, with a tiny std-only HTTP/1.1 client ([`http_request`]), and to the stub
//! endpoint through the real AWS SDK clients ([`xray_client`], [`logs_client`],
//! [`cloudwatch_client`]). Never reaches the network, never reads the machine's AWS credentials
//! or config, and never leaves a child process running after the test (children are killed on
//! drop; the stub endpoint also exits when the test process dies, as it watches its stdin).
//!
//! The venv (moto, boto3, aws-xray-sdk, ...) is made by `scripts/setup`; its python is
//! `$CLOUDTAIL_TEST_PYTHON` or `<repo>/.venv/bin/python` ([`python`]).
//!
//! Helpers panic with a message (and the child's logs) instead of returning errors: a test that
//! cannot start its stub or its agent has nothing else to do.
//!
//! Files: `http.rs` (the HTTP client), `moto.rs` (the stub endpoint), `agent.rs` (the binary),
//! `metrics.rs` (Prometheus text), `aws.rs` (SDK clients, BatchGetTraces, JSON comparison);
//! this file holds the venv, python runners, ports, polling and ids, and re-exports the rest.
#![allow(dead_code)]

mod agent;
mod aws;
mod http;
pub mod logs;
mod metrics;
mod moto;

// Re-exports: each test file uses only some of them.
#[allow(unused_imports)]
pub use agent::{Agent, AgentBuilder};
#[allow(unused_imports)]
pub use aws::{
    batch_get_trace_documents, batch_get_traces, cloudwatch_client,
    cloudwatch_client_without_retries, json_diff, logs_client, metric_sum_last_hour,
    test_credentials, xray_client,
};
#[allow(unused_imports)]
pub use http::{http_get, http_request, HttpResponse};
#[allow(unused_imports)]
pub use metrics::Metrics;
#[allow(unused_imports)]
pub use moto::Moto;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long [`Agent::wait_ready`] waits for `/healthz` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Moto::start`] waits for the stub endpoint to print its port and answer.
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Connect / read / write timeout of the tiny HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);
/// The access key and secret every test uses (the stub verifies SigV4 with them).
pub const TEST_ACCESS_KEY: &str = "testing";
/// See [`TEST_ACCESS_KEY`].
pub const TEST_SECRET_KEY: &str = "testing";
/// The region tests sign for unless they say otherwise.
pub const TEST_REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------------------------
// Paths and the test venv

/// The repository root (`CARGO_MANIFEST_DIR`).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/support`, where the python helpers live.
pub fn support_dir() -> PathBuf {
    repo_dir().join("tests").join("support")
}

/// The test venv's python: `$CLOUDTAIL_TEST_PYTHON`, else `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    match std::env::var_os("CLOUDTAIL_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_dir().join(".venv").join("bin").join("python"),
    }
}

/// [`python`], after checking it is there; panics with how to make the venv otherwise.
fn require_python() -> PathBuf {
    let py = python();
    if py.components().count() > 1 && !py.exists() {
        panic!(
            "the test python {} does not exist: run scripts/setup (or .ci/run) to create the \
             venv, or point CLOUDTAIL_TEST_PYTHON at a python with moto[server], cbor2, boto3 \
             and aws-xray-sdk",
            py.display()
        );
    }
    py
}

/// Runs `tests/support/<script>` with the venv's python and waits for it.
pub fn run_python(script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let py = require_python();
    let path = support_dir().join(script);
    Command::new(&py)
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", py.display(), path.display()))
}

/// Sends `count` segments (each with two subsegments, annotations and metadata) to the X-Ray
/// daemon at `daemon` with the real `aws-xray-sdk` (`xray_emit.py`), and returns one object per
/// segment: `{"trace_id", "id", "name", "bytes", "document", "raw"}`, where `raw` is the segment
/// document's JSON text exactly as the SDK put it on the wire and `document` that text parsed. `extra_args` go to `xray_emit.py` (`--pad-bytes N`,
/// `--subsegments N`, `--name S`, `--interval-ms N`).
pub fn xray_emit(daemon: SocketAddr, count: usize, extra_args: &[&str]) -> Vec<Value> {
    let count = count.to_string();
    let mut args = vec!["--count", count.as_str()];
    args.extend_from_slice(extra_args);
    let daemon = daemon.to_string();
    let out = run_python(
        "xray_emit.py",
        &args,
        &[("AWS_XRAY_DAEMON_ADDRESS", daemon.as_str())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "xray_emit.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("xray_emit.py line {l:?}: {e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Ports, polling, ids

/// A UDP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
pub fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    sock.local_addr().expect("udp local_addr").port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
pub fn free_tcp_port() -> u16 {
    let sock = TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
    sock.local_addr().expect("tcp local_addr").port()
}

/// `127.0.0.1:<port>`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `cond` every 50 ms until it is true (returns true) or `timeout` passed (returns false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_until`] for async conditions (SDK calls), polling every 100 ms on tokio's clock.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds since the epoch, as X-Ray documents write times.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A fresh X-Ray trace id, `1-<8 hex epoch secs>-<24 hex random>`.
pub fn new_trace_id() -> String {
    let secs = now_secs() as u32;
    let random: [u8; 12] = rand::random();
    format!("1-{secs:08x}-{}", hex(&random))
}

/// A fresh segment id, 16 hex digits.
pub fn new_segment_id() -> String {
    let random: [u8; 8] = rand::random();
    hex(&random)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends one datagram from an ephemeral port on 127.0.0.1.
pub fn send_udp(to: SocketAddr, datagram: &[u8]) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    sock.send_to(datagram, to)
        .unwrap_or_else(|e| panic!("send {} bytes to {to}: {e}", datagram.len()));
}

/// The X-Ray daemon protocol header the SDKs send.
pub const XRAY_HEADER: &str = "{\"format\":\"json\",\"version\":1}";

/// A minimal well-formed segment named `name`: (trace id, body).
pub fn xray_segment(name: &str) -> (String, String) {
    let trace_id = new_trace_id();
    let now = now_secs();
    let body = serde_json::json!({
        "name": name, "id": new_segment_id(), "trace_id": trace_id,
        "start_time": now - 0.5, "end_time": now,
    })
    .to_string();
    (trace_id, body)
}

/// `body` behind the daemon protocol header, as one datagram.
pub fn xray_datagram(body: &str) -> Vec<u8> {
    format!("{XRAY_HEADER}\n{body}").into_bytes()
}
