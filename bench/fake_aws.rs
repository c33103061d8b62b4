//! The benchmarks' fake AWS endpoint: one port that answers every call cloudtail makes to
//! X-Ray, CloudWatch Logs and CloudWatch, counts what it receives, and does nothing else.
//!
//! It listens on `127.0.0.1:PORT` (HTTP/1.1, keep-alive), prints `listening on 127.0.0.1:PORT`
//! on stdout once it accepts connections, and routes each request by its protocol:
//!
//! - X-Ray, REST JSON, by path: `POST /TraceSegments` (PutTraceSegments: counts the strings of
//!   `TraceSegmentDocuments`, answers `{"UnprocessedTraceSegments":[]}`), `POST
//!   /TelemetryRecords` (answers `{}`); any other path is a 404.
//! - CloudWatch Logs, JSON 1.1, by `X-Amz-Target: Logs_20140328.<Op>`: PutLogEvents counts its
//!   events, their message bytes and the events seen twice ([`logs`]); any other operation
//!   (CreateLogGroup, CreateLogStream, PutRetentionPolicy...) answers `{}`.
//! - CloudWatch, Smithy RPC v2 CBOR, by `smithy-protocol: rpc-v2-cbor` or the path
//!   `/service/GraniteServiceVersion20100801/operation/<Op>`: PutMetricData (gzip undone) counts
//!   its datums, samples and the sum of their values ([`cbor`]); any other operation answers
//!   an empty CBOR map.
//! - `GET /stats`: one JSON object, flat totals first (so `grep -o '"key":N' | head -1` reads
//!   them), then `"operations"` with each operation's calls, accepted, throttled, failed,
//!   documents and body bytes; `connections` counts the connections that carried an AWS call. `*_calls`, documents and bytes count accepted calls only, so
//!   after a drain they are what the agent delivered.
//!
//! Options: `--port P` (0, the default, picks a free port); `--tls-cert-out FILE` (HTTPS with a
//! self-signed certificate for `localhost`, made at start and written to FILE as PEM, for
//! cloudtail's `[aws] ca_bundle`); `--delay-ms N` (every call counted at once and answered
//! after N ms); `--throttle-every K` (every K-th call of an operation answered with its
//! service's throttling error); `--fail-every K` (every K-th call answered with its service's
//! 5xx); `--fault-ops A,B` (the operations the faults apply to; default the three data calls
//! PutTraceSegments, PutLogEvents, PutMetricData, so set-up calls always succeed).
//!
//! It runs on one thread (the benchmark's second core is shared with the load generator), never
//! checks signatures, never stores a body, and never reaches the network.

#[path = "fake_aws/answer.rs"]
mod answer;
#[path = "fake_aws/cbor.rs"]
mod cbor;
#[path = "fake_aws/logs.rs"]
mod logs;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use answer::{bad_body, fault, reply, success, Fault, Service};

const CBOR_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
const USAGE: &str = "usage: fake_aws [--port P] [--tls-cert-out FILE] [--delay-ms N] \
                     [--throttle-every K] [--fail-every K] [--fault-ops A,B]";

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    port: u16,
    tls_cert_out: Option<String>,
    delay: Duration,
    throttle_every: u64,
    fail_every: u64,
    /// Which operations the faults apply to, by [`Operation::index`].
    fault_ops: [bool; Operation::ALL.len()],
}

impl Default for Options {
    fn default() -> Self {
        let mut fault_ops = [false; Operation::ALL.len()];
        for op in Operation::ALL {
            fault_ops[op.index()] = op.carries_data();
        }
        Options {
            port: 0,
            tls_cert_out: None,
            delay: Duration::ZERO,
            throttle_every: 0,
            fail_every: 0,
            fault_ops,
        }
    }
}

/// The calls the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    PutTraceSegments,
    PutTelemetryRecords,
    PutLogEvents,
    OtherLogs,
    PutMetricData,
    OtherCloudWatch,
}

impl Operation {
    /// Every operation, in the order `/stats` lists them.
    const ALL: [Operation; 6] = [
        Operation::PutTraceSegments,
        Operation::PutTelemetryRecords,
        Operation::PutLogEvents,
        Operation::OtherLogs,
        Operation::PutMetricData,
        Operation::OtherCloudWatch,
    ];

    /// Which operation a request is: CBOR by header or path, JSON 1.1 by target, REST by path.
    fn of(method: &Method, path: &str, target: Option<&str>, cbor: bool) -> Option<Operation> {
        if let Some(op) = path.strip_prefix(CBOR_PREFIX) {
            return Some(Operation::cloudwatch(op));
        }
        if cbor {
            return Some(Operation::cloudwatch(path.rsplit('/').next().unwrap_or("")));
        }
        if let Some(op) = target.and_then(|t| t.strip_prefix("Logs_20140328.")) {
            return Some(match op {
                "PutLogEvents" => Operation::PutLogEvents,
                _ => Operation::OtherLogs,
            });
        }
        match (method, path) {
            (&Method::POST, "/TraceSegments") => Some(Operation::PutTraceSegments),
            (&Method::POST, "/TelemetryRecords") => Some(Operation::PutTelemetryRecords),
            _ => None,
        }
    }

    fn cloudwatch(op: &str) -> Operation {
        match op {
            "PutMetricData" => Operation::PutMetricData,
            _ => Operation::OtherCloudWatch,
        }
    }

    fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Operation::PutTraceSegments => "PutTraceSegments",
            Operation::PutTelemetryRecords => "PutTelemetryRecords",
            Operation::PutLogEvents => "PutLogEvents",
            Operation::OtherLogs => "OtherLogs",
            Operation::PutMetricData => "PutMetricData",
            Operation::OtherCloudWatch => "OtherCloudWatch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn service(self) -> Service {
        match self {
            Operation::PutTraceSegments | Operation::PutTelemetryRecords => Service::XRay,
            Operation::PutLogEvents | Operation::OtherLogs => Service::Logs,
            Operation::PutMetricData | Operation::OtherCloudWatch => Service::CloudWatch,
        }
    }

    /// The calls that carry the agent's data (the default targets of the faults).
    fn carries_data(self) -> bool {
        matches!(
            self,
            Operation::PutTraceSegments | Operation::PutLogEvents | Operation::PutMetricData
        )
    }
}

/// Counts of one operation.
#[derive(Debug, Default)]
struct OperationStats {
    calls: AtomicU64,
    accepted: AtomicU64,
    throttled: AtomicU64,
    failed: AtomicU64,
    documents: AtomicU64,
    bytes: AtomicU64,
}

/// Everything the fake counts, shared by the connections.
#[derive(Debug, Default)]
struct Stats {
    operations: [OperationStats; Operation::ALL.len()],
    event_bytes: AtomicU64,
    distinct_events: AtomicU64,
    duplicate_events: AtomicU64,
    unnumbered_events: AtomicU64,
    samples: AtomicU64,
    sum: Mutex<f64>,
    bad_bodies: AtomicU64,
    /// Connections that carried an AWS call (not the `/stats` polls): a client that
    /// reconnects after errors pays a handshake each time over HTTPS.
    connections: AtomicU64,
    seen: Mutex<logs::Seen>,
}

impl Stats {
    fn op(&self, op: Operation) -> &OperationStats {
        &self.operations[op.index()]
    }

    fn to_json(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let total = |f: fn(&OperationStats) -> &AtomicU64| -> u64 {
            self.operations.iter().map(|s| get(f(s))).sum()
        };
        let accepted = |op| get(&self.op(op).accepted);
        let documents = |op| get(&self.op(op).documents);
        let sum = *self.sum.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!(
            "{{\"calls\":{},\"throttled\":{},\"failed\":{},\"bad_bodies\":{},\
             \"trace_calls\":{},\"segments\":{},\
             \"log_calls\":{},\"events\":{},\"event_bytes\":{},\"distinct_events\":{},\
             \"duplicate_events\":{},\"unnumbered_events\":{},\
             \"metric_calls\":{},\"datums\":{},\"samples\":{},\"sum\":{sum},\"metric_body_bytes\":{},\
             \"other_calls\":{},\"connections\":{},\"operations\":{{",
            total(|s| &s.calls),
            total(|s| &s.throttled),
            total(|s| &s.failed),
            get(&self.bad_bodies),
            accepted(Operation::PutTraceSegments),
            documents(Operation::PutTraceSegments),
            accepted(Operation::PutLogEvents),
            documents(Operation::PutLogEvents),
            get(&self.event_bytes),
            get(&self.distinct_events),
            get(&self.duplicate_events),
            get(&self.unnumbered_events),
            accepted(Operation::PutMetricData),
            documents(Operation::PutMetricData),
            get(&self.samples),
            get(&self.op(Operation::PutMetricData).bytes),
            accepted(Operation::OtherLogs)
                + accepted(Operation::OtherCloudWatch)
                + accepted(Operation::PutTelemetryRecords),
            get(&self.connections),
        );
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            let s = self.op(op);
            let _ = write!(
                out,
                "{}\"{}\":{{\"calls\":{},\"accepted\":{},\"throttled\":{},\"failed\":{},\
                 \"documents\":{},\"bytes\":{}}}",
                if i == 0 { "" } else { "," },
                op.name(),
                get(&s.calls),
                get(&s.accepted),
                get(&s.throttled),
                get(&s.failed),
                get(&s.documents),
                get(&s.bytes),
            );
        }
        out.push_str("}}");
        out
    }
}

impl Options {
    /// The fault call number `call` (1-based) of `op` gets, if any; throttling wins a tie.
    fn fault(&self, op: Operation, call: u64) -> Option<Fault> {
        if !self.fault_ops[op.index()] {
            return None;
        }
        let every = |k: u64| k > 0 && call.is_multiple_of(k);
        if every(self.throttle_every) {
            Some(Fault::Throttle)
        } else if every(self.fail_every) {
            Some(Fault::Fail)
        } else {
            None
        }
    }
}

/// Counts an accepted call's content; the number of documents (segments, events, datums).
fn accept(stats: &Stats, op: Operation, body: &[u8], gzip: bool) -> Result<u64, String> {
    match op {
        Operation::PutTraceSegments => Ok(count_strings_in_array(body, b"TraceSegmentDocuments")),
        Operation::PutLogEvents => {
            let counts = logs::count(body, &stats.seen)?;
            stats
                .event_bytes
                .fetch_add(counts.message_bytes, Ordering::Relaxed);
            stats
                .distinct_events
                .fetch_add(counts.distinct, Ordering::Relaxed);
            stats
                .duplicate_events
                .fetch_add(counts.duplicates, Ordering::Relaxed);
            stats
                .unnumbered_events
                .fetch_add(counts.unnumbered, Ordering::Relaxed);
            Ok(counts.events)
        }
        Operation::PutMetricData => {
            let (datums, samples, sum) = if gzip {
                cbor::put_metric_data(&cbor::gunzip(body)?)?
            } else {
                cbor::put_metric_data(body)?
            };
            stats.samples.fetch_add(samples, Ordering::Relaxed);
            *stats.sum.lock().unwrap_or_else(|e| e.into_inner()) += sum;
            Ok(datums)
        }
        Operation::PutTelemetryRecords | Operation::OtherLogs | Operation::OtherCloudWatch => Ok(0),
    }
}

/// The number of elements of the array under `"key"` in a JSON object, when they are strings
/// (`{"key":["a","b\"c"]}` → 2): one pass over the bytes tracking only string and escape
/// state, so the fake costs far less per byte than the agent that produced the body.
fn count_strings_in_array(body: &[u8], key: &[u8]) -> u64 {
    let mut quoted = Vec::with_capacity(key.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(key);
    quoted.push(b'"');
    let Some(at) = body
        .windows(quoted.len())
        .position(|w| w == quoted.as_slice())
    else {
        return 0;
    };
    let rest = &body[at + quoted.len()..];
    let Some(open) = rest.iter().position(|&b| b == b'[') else {
        return 0;
    };
    let (mut count, mut in_string, mut escaped) = (0u64, false, false);
    for &b in &rest[open + 1..] {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
            count += 1;
        } else if b == b']' {
            break;
        }
    }
    count
}

async fn handle(
    request: Request<Incoming>,
    stats: Arc<Stats>,
    options: Arc<Options>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = request.headers();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let cbor = headers
        .get("smithy-protocol")
        .is_some_and(|v| v.as_bytes() == b"rpc-v2-cbor");
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let path = request.uri().path();
    let Some(op) = Operation::of(request.method(), path, target, cbor) else {
        if request.method() == Method::GET && path == "/stats" {
            return Ok(reply(StatusCode::OK, "application/json", stats.to_json()));
        }
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "application/json",
            &br#"{"__type":"UnknownOperationException"}"#[..],
        ));
    };
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(bad_body(op, &e.to_string())),
    };
    let response = answer(&stats, &options, op, &body, gzip);
    // Counted first, answered after the delay: like AWS, the fake has taken a call whose answer
    // the client may stop waiting for (a retry after the agent's attempt timeout is a duplicate).
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    Ok(response)
}

/// Counts a call and makes its answer: the fault the options give it, or its success.
fn answer(
    stats: &Stats,
    options: &Options,
    op: Operation,
    body: &[u8],
    gzip: bool,
) -> Response<Full<Bytes>> {
    let s = stats.op(op);
    let call = s.calls.fetch_add(1, Ordering::Relaxed) + 1;
    match options.fault(op, call) {
        Some(Fault::Throttle) => {
            s.throttled.fetch_add(1, Ordering::Relaxed);
            return fault(op, Fault::Throttle);
        }
        Some(Fault::Fail) => {
            s.failed.fetch_add(1, Ordering::Relaxed);
            return fault(op, Fault::Fail);
        }
        None => {}
    }
    match accept(stats, op, body, gzip) {
        Ok(documents) => {
            s.accepted.fetch_add(1, Ordering::Relaxed);
            s.documents.fetch_add(documents, Ordering::Relaxed);
            s.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            success(op)
        }
        Err(why) => {
            stats.bad_bodies.fetch_add(1, Ordering::Relaxed);
            bad_body(op, &why)
        }
    }
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut text = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--port" => {
                options.port = u16::try_from(number(text()?)?).map_err(|_| "--port: too large")?;
            }
            "--tls-cert-out" => options.tls_cert_out = Some(text()?),
            "--delay-ms" => options.delay = Duration::from_millis(number(text()?)?),
            "--throttle-every" => options.throttle_every = number(text()?)?,
            "--fail-every" => options.fail_every = number(text()?)?,
            "--fault-ops" => {
                options.fault_ops = [false; Operation::ALL.len()];
                for name in text()?.split(',').filter(|n| !n.is_empty()) {
                    let op = Operation::parse(name).ok_or_else(|| {
                        let known: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
                        format!(
                            "--fault-ops: unknown operation {name:?} (one of {})",
                            known.join(", ")
                        )
                    })?;
                    options.fault_ops[op.index()] = true;
                }
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(options)
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`, written to `cert_out`.
fn tls_acceptor(cert_out: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(std::io::Error::other)?;
    std::fs::write(cert_out, certified.cert.pem())?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(std::io::Error::other)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn main() -> std::process::ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("fake_aws: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    // One thread: the agent is the subject; the fake must not take the benchmark's other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime.and_then(|runtime| runtime.block_on(serve(options))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fake_aws: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds the port, says where, and serves until Ctrl-C.
async fn serve(options: Options) -> std::io::Result<()> {
    let tls = options
        .tls_cert_out
        .as_deref()
        .map(tls_acceptor)
        .transpose()?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    println!("listening on {}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let stats = Arc::new(Stats::default());
    tokio::select! {
        served = accept_loop(listener, tls, stats, Arc::new(options)) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Serves each accepted connection in its own task.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stats: Arc<Stats>,
    options: Arc<Options>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (stats, options, tls) = (Arc::clone(&stats), Arc::clone(&options), tls.clone());
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        connection(stream, stats, options).await;
                    }
                }
                None => connection(stream, stats, options).await,
            }
        });
    }
}

async fn connection<S>(stream: S, stats: Arc<Stats>, options: Arc<Options>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Counted on its first AWS call: the benchmark's own `GET /stats` polls open a connection
    // each and would drown the agent's.
    let counted = std::sync::atomic::AtomicBool::new(false);
    let service = service_fn(move |req: Request<Incoming>| {
        if req.uri().path() != "/stats" && !counted.swap(true, Ordering::Relaxed) {
            stats.connections.fetch_add(1, Ordering::Relaxed);
        }
        handle(req, Arc::clone(&stats), Arc::clone(&options))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

#[cfg(test)]
#[path = "fake_aws/sdk_tests.rs"]
mod sdk_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_the_strings_of_the_array() {
        let body = br#"{"TraceSegmentDocuments":["{\"id\":\"a]\"}","b\\",""]}"#;
        assert_eq!(count_strings_in_array(body, b"TraceSegmentDocuments"), 3);
        assert_eq!(count_strings_in_array(b"{}", b"TraceSegmentDocuments"), 0);
    }

    #[test]
    fn routes_each_protocol() {
        let post = &Method::POST;
        let logs = Some("Logs_20140328.PutLogEvents");
        assert_eq!(
            Operation::of(post, "/", logs, false),
            Some(Operation::PutLogEvents)
        );
        let create = Some("Logs_20140328.CreateLogStream");
        assert_eq!(
            Operation::of(post, "/", create, false),
            Some(Operation::OtherLogs)
        );
        let cbor_path = "/service/GraniteServiceVersion20100801/operation/PutMetricData";
        assert_eq!(
            Operation::of(post, cbor_path, None, true),
            Some(Operation::PutMetricData)
        );
        assert_eq!(
            Operation::of(post, "/x/ListMetrics", None, true),
            Some(Operation::OtherCloudWatch)
        );
        assert_eq!(
            Operation::of(post, "/TraceSegments", None, false),
            Some(Operation::PutTraceSegments)
        );
        assert_eq!(
            Operation::of(&Method::GET, "/TraceSegments", None, false),
            None
        );
    }

    #[test]
    fn faults_hit_every_kth_data_call_only() {
        let options = parse_options(args(&["--throttle-every", "10", "--fail-every", "4"]));
        let options = options.expect("valid options");
        let faults: Vec<_> = (1..=20)
            .map(|call| options.fault(Operation::PutLogEvents, call))
            .collect();
        assert_eq!(faults[3], Some(Fault::Fail));
        assert_eq!(faults[9], Some(Fault::Throttle));
        assert_eq!(faults[19], Some(Fault::Throttle), "throttling wins a tie");
        assert_eq!(faults.iter().flatten().count(), 2 + 4);
        assert_eq!(options.fault(Operation::OtherLogs, 10), None);

        let only = parse_options(args(&["--throttle-every", "1", "--fault-ops", "OtherLogs"]));
        let only = only.expect("valid options");
        assert_eq!(only.fault(Operation::OtherLogs, 1), Some(Fault::Throttle));
        assert_eq!(only.fault(Operation::PutLogEvents, 1), None);
        assert!(parse_options(args(&["--fault-ops", "Nope"])).is_err());
        assert!(parse_options(args(&["--delay-ms"])).is_err());
    }

    #[test]
    fn stats_put_the_flat_totals_first() {
        let stats = Stats::default();
        stats
            .op(Operation::PutLogEvents)
            .calls
            .fetch_add(3, Ordering::Relaxed);
        stats
            .op(Operation::PutLogEvents)
            .accepted
            .fetch_add(2, Ordering::Relaxed);
        let json = stats.to_json();
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["calls"], 3);
        assert_eq!(parsed["log_calls"], 2);
        assert_eq!(parsed["operations"]["PutLogEvents"]["accepted"], 2);
        let operations = json.find("\"operations\"").unwrap_or(0);
        assert!(json.find("\"calls\"").is_some_and(|at| at < operations));
        assert!(json.find("\"throttled\"").is_some_and(|at| at < operations));
    }
}
