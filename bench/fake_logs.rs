//! A fast fake CloudWatch Logs endpoint for the log-file benchmark: answers the calls cloudtail
//! makes, counts PutLogEvents, and does nothing else.
//!
//! It listens on `127.0.0.1:PORT` (plain HTTP/1.1, keep-alive; `--port P`, default 0 picks a
//! free port), prints `listening on 127.0.0.1:PORT` on stdout once it accepts connections, and
//! serves the JSON 1.1 protocol, the operation named by `X-Amz-Target: Logs_20140328.<Op>`:
//!
//! - `PutLogEvents`: counts the call, its events (the length of `logEvents`) and their message
//!   bytes (UTF-8 bytes of each decoded `message`); answers `{}`.
//! - anything else (`CreateLogGroup`, `CreateLogStream`, `PutRetentionPolicy`...): answers `{}`.
//! - `GET /stats`: `{"calls":N,"events":N,"bytes":N,"other_calls":N,"bad_bodies":N}`.
//!
//! With `--tls-cert-out FILE` it serves HTTPS instead, with a self-signed certificate for
//! `localhost` made at start and written to FILE as PEM (give it to cloudtail as
//! `[aws] ca_bundle`, endpoint `https://localhost:PORT`), so that the cost of TLS can be measured.
//!
//! It never checks signatures, never stores what it receives, and never reaches the network.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    other_calls: AtomicU64,
    bad_bodies: AtomicU64,
}

/// The part of a PutLogEvents body the fake reads.
#[derive(Deserialize)]
struct PutLogEvents<'a> {
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    /// Borrowed when the message has no escapes, owned otherwise.
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(body.into()))
        .expect("static response")
}

async fn handle(
    stats: Arc<Stats>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let body = format!(
            "{{\"calls\":{},\"events\":{},\"bytes\":{},\"other_calls\":{},\"bad_bodies\":{}}}",
            stats.calls.load(Ordering::Relaxed),
            stats.events.load(Ordering::Relaxed),
            stats.bytes.load(Ordering::Relaxed),
            stats.other_calls.load(Ordering::Relaxed),
            stats.bad_bodies.load(Ordering::Relaxed),
        );
        return Ok(reply(StatusCode::OK, body));
    }
    let op = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("Logs_20140328."))
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "{}")),
    };
    match op.as_deref() {
        Some("PutLogEvents") => match serde_json::from_slice::<PutLogEvents>(&body) {
            Ok(p) => {
                let bytes: usize = p.log_events.iter().map(|e| e.message.len()).sum();
                stats.calls.fetch_add(1, Ordering::Relaxed);
                stats
                    .events
                    .fetch_add(p.log_events.len() as u64, Ordering::Relaxed);
                stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                Ok(reply(StatusCode::OK, "{}"))
            }
            Err(e) => {
                eprintln!("bad PutLogEvents body: {e}");
                stats.bad_bodies.fetch_add(1, Ordering::Relaxed);
                Ok(reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"__type":"InvalidParameterException","message":"bad body"}"#,
                ))
            }
        },
        _ => {
            stats.other_calls.fetch_add(1, Ordering::Relaxed);
            Ok(reply(StatusCode::OK, "{}"))
        }
    }
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

async fn serve<S>(stream: S, stats: Arc<Stats>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(stats.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port: u16 = 0;
    let mut cert_out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("--port needs a number")
            }
            "--tls-cert-out" => cert_out = Some(args.next().expect("--tls-cert-out needs a path")),
            other => panic!("unknown argument {other}"),
        }
    }
    let tls = cert_out.as_deref().map(tls_acceptor).transpose()?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on {}", listener.local_addr()?);
    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve(stream, stats).await;
                    }
                }
                None => serve(stream, stats).await,
            }
        });
    }
}
