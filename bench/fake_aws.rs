//! A fast fake AWS endpoint for benchmarks: answers the calls cloudtail makes, counts them, and
//! does nothing else.
//!
//! It listens on `127.0.0.1:PORT` (plain HTTP/1.1, keep-alive), prints
//! `listening on 127.0.0.1:PORT` on stdout once it accepts connections, and serves:
//!
//! - X-Ray (REST-JSON): `POST /TraceSegments` (PutTraceSegments; counts the strings of
//!   `TraceSegmentDocuments`, answers `{"UnprocessedTraceSegments":[]}`) and
//!   `POST /TelemetryRecords` (answers `{}`).
//! - `GET /stats`: `{"calls":N,"documents":N,"bytes":N,"throttled":N,"operations":{...}}`,
//!   totals over every operation (`calls` includes throttled calls; `documents` and `bytes`
//!   count only accepted calls, so after a drain `documents` equals what the agent delivered).
//!
//! Options: `--port P` (0, the default, picks a free port), `--delay-ms N` (each call answers
//! after N ms), `--throttle-every N` (every Nth call of an operation answers its service's
//! throttling error instead). Each operation is one [`Operation`] variant: adding a service
//! (CloudWatch Logs' JSON 1.1 `X-Amz-Target: Logs_20140328.PutLogEvents`, CloudWatch's RPC v2
//! CBOR) is a variant, a line in [`Operation::of`], and arms in [`Operation::documents`],
//! [`Operation::success`] and [`Operation::throttled`].
//!
//! It never checks signatures, never stores what it receives, and never reaches the network.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Command-line options.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    port: u16,
    delay: Duration,
    throttle_every: u64,
}

/// The calls the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// X-Ray `PutTraceSegments`.
    PutTraceSegments,
    /// X-Ray `PutTelemetryRecords`.
    PutTelemetryRecords,
}

impl Operation {
    /// Every operation, in the order `/stats` lists them.
    const ALL: [Operation; 2] = [Operation::PutTraceSegments, Operation::PutTelemetryRecords];

    /// Which operation a request is, from its method, path and `X-Amz-Target`.
    fn of(method: &Method, path: &str, target: Option<&str>) -> Option<Operation> {
        match (method, path, target) {
            (&Method::POST, "/TraceSegments", _) => Some(Operation::PutTraceSegments),
            (&Method::POST, "/TelemetryRecords", _) => Some(Operation::PutTelemetryRecords),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Operation::PutTraceSegments => "PutTraceSegments",
            Operation::PutTelemetryRecords => "PutTelemetryRecords",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// How many documents (segments, log events, metric data) the request body carries.
    fn documents(self, body: &[u8]) -> u64 {
        match self {
            Operation::PutTraceSegments => count_strings_in_array(body, b"TraceSegmentDocuments"),
            Operation::PutTelemetryRecords => 0,
        }
    }

    /// The answer to an accepted call.
    fn success(self) -> Response<Full<Bytes>> {
        match self {
            Operation::PutTraceSegments => {
                json(StatusCode::OK, r#"{"UnprocessedTraceSegments":[]}"#)
            }
            Operation::PutTelemetryRecords => json(StatusCode::OK, "{}"),
        }
    }

    /// The service's throttling answer (X-Ray: 429 `ThrottledException`; JSON 1.1 services
    /// answer 400 with their own `__type`).
    fn throttled(self) -> Response<Full<Bytes>> {
        match self {
            Operation::PutTraceSegments | Operation::PutTelemetryRecords => {
                let mut response = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"__type":"ThrottledException","message":"Rate exceeded"}"#,
                );
                response.headers_mut().insert(
                    "x-amzn-errortype",
                    http::HeaderValue::from_static("ThrottledException"),
                );
                response
            }
        }
    }
}

/// Counts of one operation.
#[derive(Debug, Default)]
struct OperationStats {
    calls: AtomicU64,
    throttled: AtomicU64,
    documents: AtomicU64,
    bytes: AtomicU64,
}

/// Counts of every operation, shared by the connections.
#[derive(Debug, Default)]
struct Stats {
    operations: [OperationStats; Operation::ALL.len()],
}

impl Stats {
    fn to_json(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut total = [0u64; 4];
        let mut operations = serde_json::Map::new();
        for operation in Operation::ALL {
            let s = &self.operations[operation.index()];
            let values = [
                get(&s.calls),
                get(&s.documents),
                get(&s.bytes),
                get(&s.throttled),
            ];
            for (t, v) in total.iter_mut().zip(values) {
                *t += v;
            }
            operations.insert(
                operation.name().to_string(),
                serde_json::json!({
                    "calls": values[0], "documents": values[1],
                    "bytes": values[2], "throttled": values[3],
                }),
            );
        }
        serde_json::json!({
            "calls": total[0], "documents": total[1], "bytes": total[2],
            "throttled": total[3], "operations": operations,
        })
        .to_string()
    }
}

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
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
    options: Options,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let operation = Operation::of(request.method(), request.uri().path(), target);
    let Some(operation) = operation else {
        if request.method() == Method::GET && request.uri().path() == "/stats" {
            let mut response = Response::new(Full::new(Bytes::from(stats.to_json())));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return Ok(response);
        }
        return Ok(json(
            StatusCode::NOT_FOUND,
            r#"{"__type":"UnknownOperationException"}"#,
        ));
    };
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, r#"{"__type":"BadRequest"}"#)),
    };
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    let s = &stats.operations[operation.index()];
    let call = s.calls.fetch_add(1, Ordering::Relaxed) + 1;
    if options.throttle_every > 0 && call.is_multiple_of(options.throttle_every) {
        s.throttled.fetch_add(1, Ordering::Relaxed);
        return Ok(operation.throttled());
    }
    s.documents
        .fetch_add(operation.documents(&body), Ordering::Relaxed);
    s.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok(operation.success())
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--port" => {
                options.port = u16::try_from(value()?).map_err(|_| "--port: too large")?;
            }
            "--delay-ms" => options.delay = Duration::from_millis(value()?),
            "--throttle-every" => options.throttle_every = value()?,
            other => {
                return Err(format!(
                "unknown argument {other:?}; usage: fake_aws [--port P] [--delay-ms N] [--throttle-every N]"
            ))
            }
        }
    }
    Ok(options)
}

fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("fake_aws: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    // One thread: the agent is the subject; the fake must not take the benchmark's other core.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fake_aws: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fake_aws: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    println!("listening on {}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, Arc::clone(&stats), options));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_strings_of_the_array() {
        let body = br#"{"TraceSegmentDocuments":["{\"id\":\"a]\"}","b\\",""]}"#;
        assert_eq!(count_strings_in_array(body, b"TraceSegmentDocuments"), 3);
        assert_eq!(count_strings_in_array(b"{}", b"TraceSegmentDocuments"), 0);
    }
}
