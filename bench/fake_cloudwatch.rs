//! A fast fake CloudWatch endpoint for the metrics benchmark: answers PutMetricData (Smithy
//! RPC v2 CBOR, as `aws-sdk-cloudwatch` sends it) and the CloudWatch Logs calls (JSON 1.1, for
//! EMF documents in logs mode), counts what it receives, and does nothing else.
//!
//! It listens on `127.0.0.1:PORT` (plain HTTP/1.1, keep-alive; `--port P`, default 0 picks a
//! free port) and prints `listening on 127.0.0.1:PORT` on stdout once it accepts connections.
//!
//! - `POST /service/GraniteServiceVersion20100801/operation/PutMetricData`: the body (gzip
//!   undone when `Content-Encoding: gzip`: the SDK compresses bodies of 10 KiB and more) is
//!   decoded as CBOR; counts the call, its datums (`MetricData`), their samples (the sum of
//!   `Counts`, else the number of `Values`, else `StatisticValues.SampleCount`, else 1 for a
//!   `Value`) and the sum of their values (Σ value × count, `StatisticValues.Sum`, `Value`);
//!   answers an empty CBOR map with `smithy-protocol: rpc-v2-cbor`.
//! - any other CloudWatch operation: answers an empty CBOR map.
//! - `X-Amz-Target: Logs_20140328.PutLogEvents`: counts the call, its events and their message
//!   bytes; other Logs operations (`CreateLogGroup`...) answer `{}`.
//! - `GET /stats`: `{"metric_calls":N,"datums":N,"samples":N,"sum":X,"metric_body_bytes":N,
//!   "log_calls":N,"events":N,"event_bytes":N,"other_calls":N,"bad_bodies":N}`.
//!
//! It never checks signatures, never stores what it receives, and never reaches the network.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

const CBOR_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";

#[derive(Default)]
struct Stats {
    metric_calls: AtomicU64,
    datums: AtomicU64,
    samples: AtomicU64,
    sum: Mutex<f64>,
    metric_body_bytes: AtomicU64,
    log_calls: AtomicU64,
    events: AtomicU64,
    event_bytes: AtomicU64,
    other_calls: AtomicU64,
    bad_bodies: AtomicU64,
}

impl Stats {
    fn json(&self) -> String {
        let sum = *self.sum.lock().unwrap_or_else(|e| e.into_inner());
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{{\"metric_calls\":{},\"datums\":{},\"samples\":{},\"sum\":{sum},\"metric_body_bytes\":{},\
             \"log_calls\":{},\"events\":{},\"event_bytes\":{},\"other_calls\":{},\"bad_bodies\":{}}}",
            n(&self.metric_calls),
            n(&self.datums),
            n(&self.samples),
            n(&self.metric_body_bytes),
            n(&self.log_calls),
            n(&self.events),
            n(&self.event_bytes),
            n(&self.other_calls),
            n(&self.bad_bodies),
        )
    }
}

/// A decoded CBOR item: only what a PutMetricData body holds.
#[derive(Debug, Clone)]
enum Cbor {
    Int(i128),
    Float(f64),
    Text(String),
    Bytes,
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Other,
}

impl Cbor {
    fn get(&self, key: &str) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Cbor::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Cbor::Int(i) => Some(*i as f64),
            Cbor::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn items(&self) -> &[Cbor] {
        match self {
            Cbor::Array(items) => items,
            _ => &[],
        }
    }
}

/// A CBOR reader over one body (RFC 8949; definite and indefinite lengths).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("length")?;
        let slice = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(slice)
    }

    /// The argument of an initial byte; `None` for an indefinite length.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, String> {
        let width = match info {
            0..=23 => return Ok(Some(u64::from(info))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Ok(None),
            _ => return Err(format!("reserved additional info {info}")),
        };
        let raw = self.take(width)?;
        Ok(Some(
            raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        ))
    }

    fn item(&mut self) -> Result<Cbor, String> {
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return self.simple(info);
        }
        let argument = self.argument(info)?;
        match (major, argument) {
            (0, Some(n)) => Ok(Cbor::Int(i128::from(n))),
            (1, Some(n)) => Ok(Cbor::Int(-1 - i128::from(n))),
            (2, _) => self.string(argument, 2).map(|_| Cbor::Bytes),
            (3, _) => self
                .string(argument, 3)
                .map(|raw| Cbor::Text(String::from_utf8_lossy(&raw).into_owned())),
            (4, _) => {
                let mut items = Vec::new();
                while self.more(items.len(), argument)? {
                    items.push(self.item()?);
                }
                Ok(Cbor::Array(items))
            }
            (5, _) => {
                let mut entries = Vec::new();
                while self.more(entries.len(), argument)? {
                    let key = self.item()?;
                    entries.push((key, self.item()?));
                }
                Ok(Cbor::Map(entries))
            }
            (6, _) => self.item(), // a tag: the tagged item stands for itself here
            _ => Err(format!("bad initial byte {initial:#04x}")),
        }
    }

    /// Whether another element follows: by count, or until the break byte (indefinite).
    fn more(&mut self, done: usize, argument: Option<u64>) -> Result<bool, String> {
        match argument {
            Some(n) => Ok((done as u64) < n),
            None => {
                if self.bytes.get(self.at) == Some(&0xff) {
                    self.at += 1;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn string(&mut self, argument: Option<u64>, major: u8) -> Result<Vec<u8>, String> {
        match argument {
            Some(n) => Ok(self
                .take(usize::try_from(n).map_err(|_| "length")?)?
                .to_vec()),
            None => {
                let mut out = Vec::new();
                while self.bytes.get(self.at) != Some(&0xff) {
                    let initial = self.byte()?;
                    if initial >> 5 != major {
                        return Err("bad chunk".into());
                    }
                    let n = self.argument(initial & 0x1f)?.ok_or("nested indefinite")?;
                    out.extend_from_slice(self.take(usize::try_from(n).map_err(|_| "length")?)?);
                }
                self.at += 1;
                Ok(out)
            }
        }
    }

    fn simple(&mut self, info: u8) -> Result<Cbor, String> {
        match info {
            25 => {
                let raw = self.take(2)?;
                Ok(Cbor::Float(half(u16::from_be_bytes([raw[0], raw[1]]))))
            }
            26 => {
                let raw = self.take(4)?;
                Ok(Cbor::Float(f64::from(f32::from_be_bytes([
                    raw[0], raw[1], raw[2], raw[3],
                ]))))
            }
            27 => {
                let raw = self.take(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                Ok(Cbor::Float(f64::from_be_bytes(b)))
            }
            24 => self.take(1).map(|_| Cbor::Other),
            0..=23 => Ok(Cbor::Other),
            _ => Err(format!("bad simple value {info}")),
        }
    }
}

/// An IEEE 754 half-precision float.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

/// (datums, samples, sum) of a PutMetricData request.
fn put_metric_data(body: &[u8]) -> Result<(u64, u64, f64), String> {
    let mut reader = Reader { bytes: body, at: 0 };
    let root = reader.item()?;
    let data = root.get("MetricData").ok_or("no MetricData")?.items();
    let (mut samples, mut sum) = (0u64, 0.0f64);
    for datum in data {
        let (n, s) = datum_samples(datum);
        samples += n;
        sum += s;
    }
    Ok((data.len() as u64, samples, sum))
}

fn datum_samples(datum: &Cbor) -> (u64, f64) {
    if let Some(values) = datum.get("Values") {
        let values = values.items();
        let counts: Vec<f64> = datum
            .get("Counts")
            .map(|c| c.items().iter().filter_map(Cbor::number).collect())
            .unwrap_or_default();
        let mut samples = 0.0;
        let mut sum = 0.0;
        for (i, value) in values.iter().enumerate() {
            let count = counts.get(i).copied().unwrap_or(1.0);
            samples += count;
            sum += value.number().unwrap_or(0.0) * count;
        }
        return (samples.round() as u64, sum);
    }
    if let Some(stats) = datum.get("StatisticValues") {
        let samples = stats
            .get("SampleCount")
            .and_then(Cbor::number)
            .unwrap_or(0.0);
        let sum = stats.get("Sum").and_then(Cbor::number).unwrap_or(0.0);
        return (samples.round() as u64, sum);
    }
    (1, datum.get("Value").and_then(Cbor::number).unwrap_or(0.0))
}

/// The part of a PutLogEvents body the fake reads.
#[derive(Deserialize)]
struct PutLogEvents<'a> {
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000");
    if content_type == "application/cbor" {
        builder = builder.header("smithy-protocol", "rpc-v2-cbor");
    }
    builder
        .body(Full::new(body.into()))
        .expect("static response")
}

const EMPTY_CBOR_MAP: &[u8] = &[0xa0];

fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

async fn handle(
    stats: Arc<Stats>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        return Ok(reply(StatusCode::OK, "application/json", stats.json()));
    }
    let cbor_op = req
        .uri()
        .path()
        .strip_prefix(CBOR_PREFIX)
        .map(str::to_owned);
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let logs_op = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("Logs_20140328."))
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "application/json", "{}")),
    };
    if let Some(op) = cbor_op {
        return Ok(cloudwatch(&stats, &op, &body, gzip));
    }
    if logs_op.as_deref() == Some("PutLogEvents") {
        return Ok(put_log_events(&stats, &body));
    }
    stats.other_calls.fetch_add(1, Ordering::Relaxed);
    Ok(reply(StatusCode::OK, "application/x-amz-json-1.1", "{}"))
}

fn cloudwatch(stats: &Stats, op: &str, body: &Bytes, gzip: bool) -> Response<Full<Bytes>> {
    if op != "PutMetricData" {
        stats.other_calls.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::OK, "application/cbor", EMPTY_CBOR_MAP);
    }
    let decoded = if gzip {
        gunzip(body).and_then(|plain| put_metric_data(&plain))
    } else {
        put_metric_data(body)
    };
    match decoded {
        Ok((datums, samples, sum)) => {
            stats.metric_calls.fetch_add(1, Ordering::Relaxed);
            stats.datums.fetch_add(datums, Ordering::Relaxed);
            stats.samples.fetch_add(samples, Ordering::Relaxed);
            stats
                .metric_body_bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            *stats.sum.lock().unwrap_or_else(|e| e.into_inner()) += sum;
            reply(StatusCode::OK, "application/cbor", EMPTY_CBOR_MAP)
        }
        Err(e) => {
            eprintln!("bad PutMetricData body: {e}");
            stats.bad_bodies.fetch_add(1, Ordering::Relaxed);
            // {"__type": "InvalidParameterValue", "message": "bad body"}
            let mut error = vec![0xa2, 0x66];
            error.extend_from_slice(b"__type");
            error.push(0x75);
            error.extend_from_slice(b"InvalidParameterValue");
            error.push(0x67);
            error.extend_from_slice(b"message");
            error.push(0x68);
            error.extend_from_slice(b"bad body");
            reply(StatusCode::BAD_REQUEST, "application/cbor", error)
        }
    }
}

fn put_log_events(stats: &Stats, body: &Bytes) -> Response<Full<Bytes>> {
    match serde_json::from_slice::<PutLogEvents>(body) {
        Ok(p) => {
            let bytes: usize = p.log_events.iter().map(|e| e.message.len()).sum();
            stats.log_calls.fetch_add(1, Ordering::Relaxed);
            stats
                .events
                .fetch_add(p.log_events.len() as u64, Ordering::Relaxed);
            stats.event_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            reply(StatusCode::OK, "application/x-amz-json-1.1", "{}")
        }
        Err(e) => {
            eprintln!("bad PutLogEvents body: {e}");
            stats.bad_bodies.fetch_add(1, Ordering::Relaxed);
            reply(
                StatusCode::BAD_REQUEST,
                "application/x-amz-json-1.1",
                r#"{"__type":"InvalidParameterException","message":"bad body"}"#,
            )
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("--port needs a number")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on {}", listener.local_addr()?);
    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(stats.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
