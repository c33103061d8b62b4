//! The X-Ray daemon's TCP side: a reverse proxy that signs sampling calls and forwards them.
//!
//! The X-Ray SDK samplers (`POST /GetSamplingRules`, `POST /SamplingTargets`) send unsigned
//! HTTP/1.1 requests to the daemon's TCP address (default `127.0.0.1:2000`). This module owns
//! that listener: each connection runs in its own task (hyper, keep-alive), each request is
//! read into memory (at most [`MAX_REQUEST_BODY_BYTES`]), given the endpoint's `Host`, an
//! `X-Amzn-Xray-Timestamp` and a fresh SigV4 signature (service `xray`), sent to the X-Ray
//! endpoint, and the endpoint's status, headers and body are handed back as they came.
//!
//! It talks to: the client sockets it accepts, the credentials provider it is given (through a
//! refresh-ahead cache, so rotations are picked up before expiry), and the X-Ray endpoint
//! (directly or through an HTTP CONNECT proxy).
//!
//! It must never: forward a request unsigned or with the client's own `Authorization`/`X-Amz-*`
//! headers, buffer an unbounded body, retry on its own (the SDK samplers poll again), or keep
//! accepting once its token is cancelled. On cancellation it stops accepting, lets in-flight
//! requests finish (bounded by the upstream timeout), closes idle keep-alive connections, and
//! returns.

mod forward;
mod upstream;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use forward::Forwarder;

/// Largest request body accepted from a client, in bytes; larger requests get `413`.
/// Sampling requests are a few kilobytes (`SamplingTargets` carries at most 25 statistics).
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// Largest response body taken from the X-Ray endpoint, in bytes; larger ones become `502`.
pub const MAX_RESPONSE_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Default for [`ProxyOptions::upstream_timeout`]: 10 seconds.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers before its connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where the proxy forwards to and with which identity; resolved from the config at startup.
#[derive(Debug, Clone)]
pub struct ProxyTarget {
    /// The X-Ray endpoint: scheme, host, optional port and optional base path, e.g.
    /// `https://xray.us-east-1.amazonaws.com` or `http://127.0.0.1:4566`.
    pub endpoint: http::Uri,
    /// The region that goes into the SigV4 credential scope, e.g. `us-east-1`.
    pub region: String,
    /// The agent's credentials. The proxy caches what they return and asks again 5 minutes
    /// before expiry (every 15 minutes at most), so rotated credentials are picked up before
    /// the old ones lapse, without a provider call (IMDS, ECS, STS) per sampling request.
    pub credentials: SharedCredentialsProvider,
}

/// How the proxy reaches the target, and where it counts; [`Default`] is direct, 10 s, fresh
/// counters.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// An HTTP proxy (`http://[user:pass@]host:port`) reached with `CONNECT`, for both `https`
    /// and `http` endpoints (the daemon's `-p/--proxy-address`). `None` connects directly.
    pub proxy: Option<http::Uri>,
    /// The whole budget of one upstream exchange (connect, send, read the response); past it
    /// the client gets `504`. Default [`DEFAULT_UPSTREAM_TIMEOUT`].
    pub upstream_timeout: Duration,
    /// Where requests and failures are counted; keep a clone to report them.
    pub counters: Arc<ProxyCounters>,
    /// Extra trusted root certificates (PEM) besides the system's: `[aws] ca_bundle` or
    /// `AWS_CA_BUNDLE`, checked by the caller.
    pub extra_roots: Option<Arc<[u8]>>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            proxy: None,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            counters: Arc::default(),
            extra_roots: None,
        }
    }
}

/// The proxy's own counters, shared with whoever reports them (`/metrics`, `cloudtail status`).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Requests received from clients, whatever became of them.
    pub requests: AtomicU64,
    /// Requests the proxy could not forward or answer for: credentials or signing failed, the
    /// endpoint was unreachable, failed mid-response, or timed out (answered `500`/`502`/`504`).
    /// An endpoint's own error statuses (`4xx`/`5xx` from X-Ray) are passed on, not counted.
    pub upstream_errors: AtomicU64,
    /// Requests refused as the client's fault: body too large, too slow, or malformed
    /// (answered `4xx` by the proxy itself, never forwarded).
    pub rejected: AtomicU64,
}

/// A startup error: the proxy could not be built from its [`ProxyTarget`] and [`ProxyOptions`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The endpoint is not an absolute `http`/`https` URI without query or user info.
    #[error("invalid X-Ray endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The proxy address is not an `http://host[:port]` URI.
    #[error("invalid proxy address `{proxy}`: {reason}")]
    InvalidProxy {
        /// The proxy address as configured, without its password.
        proxy: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The sampling proxy, built and checked, ready to serve a listener.
#[derive(Debug)]
pub struct SamplingProxy {
    forwarder: Arc<Forwarder>,
}

impl SamplingProxy {
    /// Checks the endpoint and proxy address and loads the TLS roots: call it at startup, so a
    /// bad setting stops the agent before anything is accepted.
    pub fn new(target: ProxyTarget, options: ProxyOptions) -> Result<Self, ProxyError> {
        let forwarder = Forwarder::new(target, options)?;
        Ok(Self {
            forwarder: Arc::new(forwarder),
        })
    }

    /// Serves `listener` until `token` is cancelled: then stops accepting at once, lets
    /// in-flight requests finish (each bounded by the upstream timeout), closes idle
    /// keep-alive connections, and returns when every connection task has ended.
    pub async fn serve(self, listener: TcpListener, token: CancellationToken) {
        let tracker = TaskTracker::new();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "X-Ray sampling proxy listening.");
        }
        accept_loop(&listener, &self.forwarder, &tracker, &token).await;
        drop(listener);
        tracker.close();
        tracker.wait().await;
        tracing::debug!("X-Ray sampling proxy stopped.");
    }
}

/// [`SamplingProxy::new`] with default [`ProxyOptions`], then [`SamplingProxy::serve`].
///
/// A startup error is logged and ends the task (nothing is listened to); callers that want it
/// fatal, a proxy address or the counters use [`SamplingProxy`] directly.
pub async fn serve(listener: TcpListener, target: ProxyTarget, token: CancellationToken) {
    match SamplingProxy::new(target, ProxyOptions::default()) {
        Ok(proxy) => proxy.serve(listener, token).await,
        Err(error) => tracing::error!(%error, "X-Ray sampling proxy not started."),
    }
}

/// Accepts connections and spawns one task each, until `token` is cancelled.
async fn accept_loop(
    listener: &TcpListener,
    forwarder: &Arc<Forwarder>,
    tracker: &TaskTracker,
    token: &CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(serve_connection(
                    stream,
                    peer,
                    Arc::clone(forwarder),
                    token.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "X-Ray sampling proxy failed to accept a connection.");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// Runs one client connection; on cancellation finishes the request in flight, then closes.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    forwarder: Arc<Forwarder>,
    token: CancellationToken,
) {
    let service = service_fn(move |request| {
        let forwarder = Arc::clone(&forwarder);
        async move { Ok::<_, Infallible>(forwarder.handle(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => Some(result),
        () = token.cancelled() => None,
    };
    let result = match result {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "X-Ray sampling proxy connection ended with an error.");
    }
}
