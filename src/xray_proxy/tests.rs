//! End-to-end tests of the sampling proxy on loopback: a recording stub X-Ray endpoint, the
//! proxy under test, raw HTTP/1.1 clients, and a stub `CONNECT` proxy.
//! They never reach the network beyond 127.0.0.1 and never wait on wall-clock time for long.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{serve, ProxyCounters, ProxyError, ProxyOptions, ProxyTarget, SamplingProxy};

/// What the Python X-Ray SDK (botocore) sends; copied from the shared fixture
/// `xray-tcp-GetSamplingRules-request.http`.
const FIXTURE: &[u8] = b"POST /GetSamplingRules HTTP/1.1\r\n\
Host: 127.0.0.1:2000\r\n\
Accept-Encoding: identity\r\n\
Content-Type: application/json\r\n\
User-Agent: Botocore/1.44.8 ua/2.1 os/linux#6.18.44-fc-v769 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/E,Z,b,N cfg/retry-mode#standard\r\n\
amz-sdk-invocation-id: 913d639b-c359-4657-b14d-2816924749fa\r\n\
amz-sdk-request: attempt=1; max=3\r\n\
Content-Length: 2\r\n\
\r\n\
{}";

const RULES_BODY: &str = r#"{"SamplingRuleRecords":[],"NextToken":null}"#;

/// A request as the stub endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("upstream got no `{name}` header: {:?}", self.headers))
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A stub X-Ray endpoint that records every request and answers 200 after `delay`.
async fn start_upstream(delay: Duration) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let log = Log::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            let service = service_fn(move |request| record(request, Arc::clone(&seen), delay));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, log)
}

async fn record(
    request: Request<Incoming>,
    log: Log,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    log.lock().expect("log lock").push(Seen {
        method: parts.method,
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    tokio::time::sleep(delay).await;
    let response = Response::builder()
        .status(200)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "stub-request-id")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from_static(RULES_BODY.as_bytes())));
    Ok(response.expect("stub response"))
}

struct Running {
    addr: SocketAddr,
    token: CancellationToken,
    counters: Arc<ProxyCounters>,
    task: JoinHandle<()>,
}

async fn start_proxy(target: ProxyTarget) -> Running {
    start_proxy_with(target, ProxyOptions::default()).await
}

async fn start_proxy_with(target: ProxyTarget, options: ProxyOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let token = CancellationToken::new();
    let counters = Arc::clone(&options.counters);
    let proxy = SamplingProxy::new(target, options).expect("proxy starts");
    let task = tokio::spawn(proxy.serve(listener, token.clone()));
    Running {
        addr,
        token,
        counters,
        task,
    }
}

fn credentials(token: Option<&str>) -> Credentials {
    Credentials::new("AKID", "SECRET", token.map(str::to_owned), None, "test")
}

fn target_for(upstream: SocketAddr, credentials: Credentials) -> ProxyTarget {
    let endpoint = format!("http://{upstream}").parse().expect("endpoint");
    ProxyTarget {
        endpoint,
        region: "us-east-1".to_owned(),
        credentials: SharedCredentialsProvider::new(credentials),
    }
}

/// Sends raw bytes, reads one response: status and body (`Content-Length` framed).
async fn roundtrip(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect proxy");
        stream.write_all(request).await.expect("send request");
        read_response(&mut stream).await
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("response within 10 s")
}

async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed before the body end");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, head, buf[head_end..head_end + length].to_vec())
}

/// `20260102T030405Z` → the instant it names.
fn parse_amz_date(text: &str) -> SystemTime {
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    let parsed = aws_smithy_types::DateTime::from_str(
        &rfc3339,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .expect("x-amz-date parses");
    SystemTime::try_from(parsed).expect("x-amz-date in range")
}

/// Recomputes the signature as X-Ray would, from what arrived, and compares.
fn assert_signature_verifies(seen: &Seen, credentials: &Credentials) {
    let authorization = seen.header("authorization");
    let signed_headers = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("SignedHeaders in authorization");
    let signature = authorization
        .split("Signature=")
        .nth(1)
        .expect("Signature in authorization");
    let headers: Vec<(&str, &str)> = signed_headers
        .split(';')
        .map(|name| (name, seen.header(name)))
        .collect();
    let identity: Identity = credentials.clone().into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("xray")
        .time(parse_amz_date(seen.header("x-amz-date")))
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let uri = format!("http://{}{}", seen.header("host"), seen.uri);
    let signable = SignableRequest::new(
        seen.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(&seen.body),
    )
    .expect("signable");
    let expected = sign(signable, &params)
        .expect("sign")
        .signature()
        .to_owned();
    assert_eq!(signature, expected, "signature does not verify");
}

fn only_request(log: &Log) -> Seen {
    let seen = log.lock().expect("log lock");
    assert_eq!(seen.len(), 1, "upstream requests: {seen:?}");
    seen[0].clone()
}

#[tokio::test]
async fn fixture_is_signed_forwarded_and_answered() {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let creds = credentials(Some("SESSION-TOKEN"));
    let proxy = start_proxy(target_for(upstream, creds.clone())).await;

    let (status, head, body) = roundtrip(proxy.addr, FIXTURE).await;
    assert_eq!(status, 200);
    assert_eq!(body, RULES_BODY.as_bytes());
    assert!(head.contains("x-amzn-requestid: stub-request-id"), "{head}");
    assert!(
        head.contains("content-type: application/x-amz-json-1.1"),
        "{head}"
    );
    assert!(
        !head.contains("keep-alive: timeout"),
        "hop-by-hop header passed: {head}"
    );

    let seen = only_request(&log);
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri, "/GetSamplingRules");
    assert_eq!(&seen.body[..], b"{}");
    assert_eq!(seen.header("host"), upstream.to_string());
    let date = &seen.header("x-amz-date")[..8];
    let scope = format!("AWS4-HMAC-SHA256 Credential=AKID/{date}/us-east-1/xray/aws4_request, ");
    assert!(
        seen.header("authorization").starts_with(&scope),
        "{}",
        seen.header("authorization")
    );
    assert_eq!(seen.header("x-amz-security-token"), "SESSION-TOKEN");
    assert_eq!(
        seen.header("amz-sdk-invocation-id"),
        "913d639b-c359-4657-b14d-2816924749fa"
    );
    assert!(seen.header("user-agent").starts_with("Botocore/"));
    let timestamp = seen.header("x-amzn-xray-timestamp");
    let (secs, nanos) = timestamp.split_once('.').expect("seconds.nanos");
    assert!(
        secs.parse::<u64>().is_ok() && nanos.len() == 9,
        "{timestamp}"
    );
    let signed = seen.header("authorization");
    for name in [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amzn-xray-timestamp",
    ] {
        assert!(signed.contains(name), "{name} not signed: {signed}");
    }
    assert_signature_verifies(&seen, &creds);
    assert_eq!(proxy.counters.requests.load(Ordering::Relaxed), 1);
    assert_eq!(proxy.counters.upstream_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn no_session_token_means_no_token_header() {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let creds = credentials(None);
    let proxy = start_proxy(target_for(upstream, creds.clone())).await;
    let request = b"GET /Sampling/Path?b=2&a=1 HTTP/1.1\r\nHost: x\r\nAuthorization: stale\r\nX-Amz-Date: 19990101T000000Z\r\n\r\n";
    let (status, _, _) = roundtrip(proxy.addr, request).await;
    assert_eq!(status, 200);
    let seen = only_request(&log);
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.uri, "/Sampling/Path?b=2&a=1");
    assert!(seen.headers.get("x-amz-security-token").is_none());
    assert_ne!(seen.header("x-amz-date"), "19990101T000000Z");
    assert_signature_verifies(&seen, &creds);
}

#[tokio::test]
async fn base_path_is_kept() {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let creds = credentials(None);
    let mut target = target_for(upstream, creds.clone());
    target.endpoint = format!("http://{upstream}/xray/")
        .parse()
        .expect("endpoint");
    let proxy = start_proxy(target).await;
    let (status, _, _) = roundtrip(proxy.addr, FIXTURE).await;
    assert_eq!(status, 200);
    let seen = only_request(&log);
    assert_eq!(seen.uri, "/xray/GetSamplingRules");
    assert_signature_verifies(&seen, &creds);
}

/// Hands out `AKID1`, `AKID2`, ... : one per call, each valid for `ttl`.
#[derive(Debug)]
struct Rotating {
    calls: AtomicUsize,
    ttl: Duration,
}

impl ProvideCredentials for Rotating {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let expiry = SystemTime::now() + self.ttl;
        let creds = Credentials::new(format!("AKID{n}"), "SECRET", None, Some(expiry), "rotating");
        future::ProvideCredentials::ready(Ok(creds))
    }
}

/// Two requests on one keep-alive connection; the access key id each was signed with.
async fn two_requests_with(ttl: Duration) -> Vec<String> {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let mut target = target_for(upstream, credentials(None));
    let calls = AtomicUsize::new(0);
    target.credentials = SharedCredentialsProvider::new(Rotating { calls, ttl });
    let proxy = start_proxy(target).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    for _ in 0..2 {
        stream.write_all(FIXTURE).await.expect("send");
        assert_eq!(read_response(&mut stream).await.0, 200);
    }
    let seen = log.lock().expect("log lock").clone();
    seen.iter()
        .map(|s| {
            s.header("authorization")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn rotated_credentials_are_used_before_the_old_ones_expire() {
    // Valid for 4 minutes: inside the refresh window, so every request asks again.
    let keys = two_requests_with(Duration::from_secs(240)).await;
    assert_eq!(
        keys,
        [
            "AWS4-HMAC-SHA256 Credential=AKID1",
            "AWS4-HMAC-SHA256 Credential=AKID2"
        ]
    );
}

#[tokio::test]
async fn long_lived_credentials_are_cached() {
    let keys = two_requests_with(Duration::from_secs(3600)).await;
    assert_eq!(
        keys,
        [
            "AWS4-HMAC-SHA256 Credential=AKID1",
            "AWS4-HMAC-SHA256 Credential=AKID1"
        ]
    );
}

#[tokio::test]
async fn upstream_down_is_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let proxy = start_proxy(target_for(addr, credentials(None))).await;
    let (status, head, body) = roundtrip(proxy.addr, FIXTURE).await;
    assert_eq!(status, 502);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(String::from_utf8_lossy(&body).starts_with(r#"{"message":"#));
    assert_eq!(proxy.counters.upstream_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let (upstream, _log) = start_upstream(Duration::from_secs(5)).await;
    let options = ProxyOptions {
        upstream_timeout: Duration::from_millis(200),
        ..ProxyOptions::default()
    };
    let proxy = start_proxy_with(target_for(upstream, credentials(None)), options).await;
    let (status, _, _) = roundtrip(proxy.addr, FIXTURE).await;
    assert_eq!(status, 504);
    assert_eq!(proxy.counters.upstream_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn oversized_body_is_413_and_not_forwarded() {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let proxy = start_proxy(target_for(upstream, credentials(None))).await;
    let request = b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{";
    let (status, _, _) = roundtrip(proxy.addr, request).await;
    assert_eq!(status, 413);
    // Chunked, so only the limiter can tell.
    let mut chunked =
        b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..17 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b' '; 0x10000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _, _) = roundtrip(proxy.addr, &chunked).await;
    assert_eq!(status, 413);
    assert!(log.lock().expect("log lock").is_empty());
    assert_eq!(proxy.counters.rejected.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn cancel_finishes_in_flight_then_stops_listening() {
    let (upstream, log) = start_upstream(Duration::from_millis(300)).await;
    let proxy = start_proxy(target_for(upstream, credentials(None))).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { roundtrip(addr, FIXTURE).await });
    // Cancel only once the request has reached the endpoint, i.e. is truly in flight.
    let reached = async {
        while log.lock().expect("log lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reached)
        .await
        .expect("request reached the endpoint");
    proxy.token.cancel();
    let (status, _, body) = in_flight.await.expect("client task");
    assert_eq!(status, 200, "in-flight request was cut");
    assert_eq!(body, RULES_BODY.as_bytes());
    let stopped = tokio::time::timeout(Duration::from_secs(5), proxy.task).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "serve did not return: {stopped:?}"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after cancel"
    );
}

#[tokio::test]
async fn idle_keep_alive_connection_does_not_block_shutdown() {
    let (upstream, _log) = start_upstream(Duration::ZERO).await;
    let proxy = start_proxy(target_for(upstream, credentials(None))).await;
    let mut idle = TcpStream::connect(proxy.addr).await.expect("connect");
    idle.write_all(FIXTURE).await.expect("send");
    assert_eq!(read_response(&mut idle).await.0, 200);
    proxy.token.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), proxy.task).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "serve did not return: {stopped:?}"
    );
}

#[tokio::test]
async fn bad_endpoint_fails_at_start() {
    let mut target = target_for("127.0.0.1:1".parse().expect("addr"), credentials(None));
    target.endpoint = "ftp://xray.example".parse().expect("uri");
    let result = SamplingProxy::new(target, ProxyOptions::default());
    assert!(
        matches!(result, Err(ProxyError::InvalidEndpoint { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn serve_logs_a_bad_target_and_returns() {
    let mut target = target_for("127.0.0.1:1".parse().expect("addr"), credentials(None));
    target.endpoint = "ftp://xray.example".parse().expect("uri");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let never = CancellationToken::new();
    let served = tokio::time::timeout(Duration::from_secs(5), serve(listener, target, never));
    assert!(
        served.await.is_ok(),
        "serve kept running without a usable target"
    );
}

#[tokio::test]
async fn serve_forwards_until_cancelled() {
    // The short form `agent.rs` uses: default options, startup errors logged.
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let target = target_for(upstream, credentials(None));
    let task = tokio::spawn(serve(listener, target, token.clone()));
    assert_eq!(roundtrip(addr, FIXTURE).await.0, 200);
    assert_eq!(only_request(&log).uri, "/GetSamplingRules");
    token.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "serve did not return: {stopped:?}"
    );
}

/// A stub HTTP proxy: records each `CONNECT` head, then splices bytes both ways.
async fn start_connect_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind connect proxy");
    let addr = listener.local_addr().expect("connect proxy addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                seen.lock().expect("heads lock").push(head);
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
                if client.write_all(ok).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn connect_proxy_tunnels_with_basic_auth() {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let (connect_proxy, heads) = start_connect_proxy().await;
    let creds = credentials(Some("T"));
    let proxy_uri = format!("http://user:pass@{connect_proxy}");
    let options = ProxyOptions {
        proxy: Some(proxy_uri.parse().expect("proxy uri")),
        ..ProxyOptions::default()
    };
    let proxy = start_proxy_with(target_for(upstream, creds.clone()), options).await;
    let (status, _, body) = roundtrip(proxy.addr, FIXTURE).await;
    assert_eq!(status, 200);
    assert_eq!(body, RULES_BODY.as_bytes());
    let heads = heads.lock().expect("heads lock").clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with(&format!("CONNECT {upstream} HTTP/1.1\r\n")),
        "{}",
        heads[0]
    );
    // base64("user:pass")
    assert!(
        heads[0]
            .to_lowercase()
            .contains("proxy-authorization: basic dxnlcjpwyxnz"),
        "{}",
        heads[0]
    );
    assert_signature_verifies(&only_request(&log), &creds);
}

#[tokio::test]
#[should_panic(expected = "signature does not verify")]
async fn verifier_catches_a_tampered_request() {
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let creds = credentials(Some("SESSION-TOKEN"));
    let proxy = start_proxy(target_for(upstream, creds.clone())).await;
    assert_eq!(roundtrip(proxy.addr, FIXTURE).await.0, 200);
    let mut seen = only_request(&log);
    seen.body = Bytes::from_static(b"{ }");
    assert_signature_verifies(&seen, &creds);
}

#[tokio::test]
async fn https_endpoint_speaks_tls() {
    // The stub speaks plain HTTP, so a TLS handshake against it must fail: 502, not a
    // plaintext request.
    let (upstream, log) = start_upstream(Duration::ZERO).await;
    let mut target = target_for(upstream, credentials(None));
    target.endpoint = format!("https://{upstream}").parse().expect("endpoint");
    let proxy = start_proxy(target).await;
    let (status, _, _) = roundtrip(proxy.addr, FIXTURE).await;
    assert_eq!(status, 502);
    assert!(log.lock().expect("log lock").is_empty());
}
